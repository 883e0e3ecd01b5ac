//! The connect-rate probe against a real lab: it counts what got through and what a drop
//! rule stopped, and makes exactly the attempts it is asked for. Needs root; set
//! PALISADE_SKIP_LAB=1 to skip.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use palisade_lab::rate::{connect_rate, RateOptions};
use palisade_lab::Topology;

fn lab_possible() -> bool {
    if std::env::var_os("PALISADE_SKIP_LAB").is_some() {
        eprintln!("PALISADE_SKIP_LAB is set: lab test skipped");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { nix::libc::geteuid() } == 0;
    assert!(root, "the lab tests need root; run as root or set PALISADE_SKIP_LAB=1");
    true
}

#[test]
fn the_rate_probe_counts_connections_and_drops() {
    if !lab_possible() {
        return;
    }
    let (client, server): (IpAddr, IpAddr) = ("198.19.251.1".parse().unwrap(), "198.19.251.2".parse().unwrap());
    let topo = Topology::build(&[(vec![client], false), (vec![server], false)]).expect("lab");
    let dst = SocketAddr::new(server, 8080);
    palisade_lab::rate::serve(&topo.pods[1].netns, dst).expect("server");
    let opts = RateOptions { connections: 50, workers: 2, ..Default::default() };
    let open = connect_rate(&topo.pods[0].netns, dst, &opts).expect("probe");
    assert_eq!((open.connected, open.failed), (50, 0));
    assert!(open.per_second() > 0.0);

    // A port with no listener answers with a reset: refused, not established.
    let closed = connect_rate(&topo.pods[0].netns, SocketAddr::new(server, 8081), &opts).expect("probe");
    assert_eq!((closed.connected, closed.failed), (0, 50));

    // Side by side: every batch of the open port establishes, none of the closed one's does.
    let refused = SocketAddr::new(server, 8081);
    let rates =
        palisade_lab::rate::paired_rates(&topo.pods[0].netns, &[dst, refused], 5, 4, Duration::from_millis(500))
            .expect("probe");
    assert_eq!(rates.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4]);
    assert!(rates[0].iter().all(|&r| r > 0.0), "{rates:?}");
    assert!(rates[1].iter().all(|&r| r == 0.0), "{rates:?}");

    let drop =
        "table inet palisade {\n chain f {\n  type filter hook forward priority 0;\n  tcp dport 8080 drop\n }\n}\n";
    palisade_nft::script::apply(drop, Some(&topo.node)).expect("nft");
    let few = RateOptions { connections: 3, timeout: Duration::from_millis(200), workers: 1, ..Default::default() };
    let dropped = connect_rate(&topo.pods[0].netns, dst, &few).expect("probe");
    assert_eq!((dropped.connected, dropped.failed), (0, 3));
}
