//! Palisade's lab: the cluster the manifests describe, built on this machine from network
//! namespaces, enforced by Palisade's nftables table in the node namespace, and probed pair by
//! pair, so that what the kernel does can be compared with what the engine decides.

pub mod topology;
pub mod traffic;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_core::cluster::{Cluster, PodId};
use palisade_core::index::Index;
use palisade_core::port::Protocol;
use palisade_core::verdict::Side;

pub use topology::{allowed_address, LabError, Topology};

#[derive(Clone, Debug)]
pub struct LabOptions {
    pub probes: Vec<(u16, Protocol)>,
    /// How long a probe waits before it counts as dropped.
    pub timeout: Duration,
    /// Probes in flight at once.
    pub parallel: usize,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions { probes: vec![(80, Protocol::TCP)], timeout: Duration::from_millis(400), parallel: 256 }
    }
}

/// What one probe (port, protocol) showed.
#[derive(Clone, Debug)]
pub struct ProbeResult {
    pub port: u16,
    pub protocol: Protocol,
    /// `observed[i][j]`: lab pod i reached lab pod j.
    pub observed: Vec<Vec<bool>>,
    pub expected: Vec<Vec<bool>>,
}

impl ProbeResult {
    pub fn differences(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (i, row) in self.observed.iter().enumerate() {
            for (j, &o) in row.iter().enumerate() {
                if o != self.expected[i][j] {
                    out.push((i, j));
                }
            }
        }
        out
    }
}

#[derive(Clone, Debug, Default)]
pub struct LabReport {
    /// The pods in the lab, in output order.
    pub pods: Vec<PodId>,
    /// Pods left out, and why.
    pub skipped: Vec<(PodId, String)>,
    /// Probes not run, and why (SCTP on a kernel without it).
    pub skipped_probes: Vec<String>,
    pub results: Vec<ProbeResult>,
    pub ruleset_stats: palisade_nft::Stats,
}

/// Removes the lab's namespaces when the user presses Ctrl-C.
pub fn install_interrupt_cleanup() {
    let _ = ctrlc::set_handler(|| {
        topology::remove_all_live();
        eprintln!("interrupted: lab namespaces removed");
        std::process::exit(130);
    });
}

/// Which pods the lab can build: pods with addresses, on the pod network.
fn plan(cluster: &Cluster) -> (Vec<PodId>, Vec<(PodId, String)>) {
    let mut pods = Vec::new();
    let mut skipped = Vec::new();
    for p in cluster.pods_sorted() {
        let why = match Side::pod(cluster, p).endpoint {
            _ if cluster.pods[p].ips.is_empty() => Some("no IP (built from a workload template)"),
            _ => None,
        };
        match why {
            None => pods.push(p),
            Some(w) => skipped.push((p, w.to_string())),
        }
    }
    (pods, skipped)
}

/// Builds the lab, enforces, probes, compares with the engine, and tears everything down.
pub fn run(
    cluster: &Cluster,
    opts: &LabOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<LabReport, LabError> {
    let (pods, skipped) = plan(cluster);
    for &p in &pods {
        if let Some(ip) = cluster.pods[p].ips.iter().find(|ip| !allowed_address(ip)) {
            return Err(LabError::Refused(format!(
                "pod {} has address {ip}; lab pods may only use 198.18.0.0/15 or fd00::/8",
                cluster.pod_key(p)
            )));
        }
    }
    let mut report = LabReport { pods: pods.clone(), skipped, ..Default::default() };
    let sctp = traffic::sctp_available();
    let probes: Vec<(u16, Protocol)> = opts
        .probes
        .iter()
        .copied()
        .filter(|(port, proto)| {
            let ok = match proto {
                Protocol::SCTP => sctp,
                Protocol::TCP | Protocol::UDP => true,
                _ => false,
            };
            if !ok {
                let why = if *proto == Protocol::SCTP {
                    "this kernel has no SCTP"
                } else {
                    "the lab probes TCP, UDP and SCTP only"
                };
                report.skipped_probes.push(format!("{port}/{proto}: skipped, {why}"));
            }
            ok
        })
        .collect();
    let layout: Vec<(Vec<IpAddr>, bool)> =
        pods.iter().map(|&p| (cluster.pods[p].ips.clone(), cluster.pods[p].host_network)).collect();
    let topo = Topology::build(&layout)?;
    let ruleset = palisade_nft::compile(cluster, &palisade_nft::Options::default());
    report.ruleset_stats = ruleset.stats();
    // As the agent does: one netlink transaction in the node's namespace.
    palisade_nft::kernel::Kernel::open(Some(&topo.node))
        .and_then(|k| k.apply(&palisade_nft::script::full_commands(&ruleset)))
        .map_err(|e| LabError::Refused(e.to_string()))?;
    start_servers(cluster, &pods, &topo, &probes)?;
    let mut index = Index::new(cluster);
    let total = probes.len() * pods.len() * pods.len();
    let done = AtomicUsize::new(0);
    for &(port, protocol) in &probes {
        let m = index.matrix(port, protocol);
        let expected = pods.iter().map(|&s| pods.iter().map(|&d| m.allowed(s, d)).collect()).collect();
        let observed = probe_all(cluster, &pods, &topo, port, protocol, opts, &|| {
            progress(done.fetch_add(1, Ordering::SeqCst) + 1, total)
        })?;
        report.results.push(ProbeResult { port, protocol, observed, expected });
    }
    drop(topo);
    Ok(report)
}

fn start_servers(
    cluster: &Cluster,
    pods: &[PodId],
    topo: &Topology,
    probes: &[(u16, Protocol)],
) -> Result<(), LabError> {
    let mut node_addresses = BTreeSet::new();
    for (k, &p) in pods.iter().enumerate() {
        // Host-network pods share the node: one set of servers per address.
        let addr = topo.pods[k].on_node.then(|| cluster.pods[p].ips[0]);
        if addr.is_some_and(|a| !node_addresses.insert(a)) {
            continue;
        }
        let mut ports: BTreeSet<(u16, Protocol)> = probes.iter().copied().collect();
        ports.extend(
            cluster.pods[p]
                .ports
                .iter()
                .filter(|c| matches!(c.protocol, Protocol::TCP | Protocol::UDP))
                .map(|c| (c.port, c.protocol)),
        );
        let ports: Vec<(u16, Protocol)> = ports.into_iter().filter(|(_, pr)| *pr != Protocol::SCTP).collect();
        let dual = cluster.pods[p].ips.iter().any(IpAddr::is_ipv6);
        traffic::serve(&topo.pods[k].netns, &ports, dual, addr)
            .map_err(|e| LabError::Refused(format!("cannot start servers in {}: {e}", cluster.pod_key(p))))?;
    }
    Ok(())
}

/// Probes every ordered pair, `parallel` at a time; a silent probe is tried once more.
fn probe_all(
    cluster: &Cluster,
    pods: &[PodId],
    topo: &Topology,
    port: u16,
    protocol: Protocol,
    opts: &LabOptions,
    tick: &(dyn Fn() + Sync),
) -> Result<Vec<Vec<bool>>, LabError> {
    let n = pods.len();
    let pairs: Vec<(usize, usize)> = (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).collect();
    let mut results = vec![vec![false; n]; n];
    let mut error = None;
    for chunk in pairs.chunks(opts.parallel.max(1)) {
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&(i, j)| {
                    let netns = topo.pods[i].netns.clone();
                    let src = topo.pods[i].on_node.then(|| cluster.pods[pods[i]].ips[0]);
                    let dst = cluster.pods[pods[j]].ips[0];
                    let timeout = opts.timeout;
                    scope.spawn(move || {
                        let first = traffic::probe(&netns, src, dst, port, protocol, timeout)?;
                        let r =
                            if first { Ok(true) } else { traffic::probe(&netns, src, dst, port, protocol, timeout) };
                        tick();
                        r.map(|ok| (i, j, ok))
                    })
                })
                .collect();
            for h in handles {
                match h.join() {
                    Ok(Ok((i, j, ok))) => results[i][j] = ok,
                    Ok(Err(e)) => error = Some(e.to_string()),
                    Err(_) => error = Some("a probe thread panicked".into()),
                }
            }
        });
        if let Some(e) = error.take() {
            return Err(LabError::Refused(format!("probe failed: {e}")));
        }
    }
    Ok(results)
}
