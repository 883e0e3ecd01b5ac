//! Data plane figures (issue 19): new TCP connections per second from a client pod to a server
//! pod selected by 1 policy and to one selected by 1,000 policies, with 1,000 and with 100,000
//! peers in their sets, each table compiled with Allow runs merged (the design now) and
//! unmerged (one rule per policy, the design before). Needs root.
//!
//! Both servers are in the same table and the probe alternates between them in short batches
//! (`palisade_lab::rate::paired_rates`), so the machine's other work weighs on both alike; the
//! figure is the median batch rate of each and their ratio. `server-one` is selected by policy
//! `one`, which admits every peer (`all=yes`); `server-many` by policies `p00000`..`p00999`,
//! policy `i` admitting the peers labelled `peer=p<i>`: the same addresses in both cases. The
//! client carries the label of the last one, so without merging its first packet to
//! `server-many` walks every rule of that group chain before one matches (the worst case).
//! The peers besides the client are model-only pods (addresses in 10.0.0.0/8, every other one
//! so that no two merge into one interval): they fill the sets, no traffic comes from them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, PodStatus};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use palisade_core::field::Nowhere;
use palisade_ingest::{build, BuildOptions, Input, Object};
use palisade_lab::Topology;
use palisade_nft::kernel::Kernel;
use palisade_nft::script::{self, Command};
use palisade_nft::{Compiled, Options};

const CLIENT: &str = "198.19.250.1";
/// The server selected by one policy.
const ONE: &str = "198.19.250.2";
/// The server selected by [`MANY`] policies.
const SERVER_MANY: &str = "198.19.250.3";
/// Policies selecting `server-many`.
const MANY: usize = 1_000;
/// The port the server listens on and the policies admit.
pub const PORT: u16 = 8080;
const NS: &str = "dp";

/// What a data plane run measures.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Batches per server and table (medians are reported).
    pub rounds: usize,
    /// Connection attempts per batch.
    pub connections: usize,
    /// Peers in the sets of the second series (the first has 1,000).
    pub peers: usize,
    /// A cluster whose whole table to compile and load both ways first (`None`: skip).
    pub synthetic: Option<Vec<Object>>,
}

fn labels(pairs: &[(&str, String)]) -> Option<BTreeMap<String, String>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

fn pod(name: String, labels: Option<BTreeMap<String, String>>, ip: String) -> Object {
    Object::Pod(
        Pod {
            metadata: ObjectMeta { name: Some(name), namespace: Some(NS.into()), labels, ..Default::default() },
            status: Some(PodStatus { pod_ip: Some(ip), ..Default::default() }),
            ..Default::default()
        }
        .into(),
    )
}

/// The `k`-th model-only peer address: every other address of 10.0.0.0/8.
fn peer_address(k: usize) -> String {
    let n = 2 * k as u32 + 2;
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

/// A policy selecting `app=<app>` that admits TCP on [`PORT`] from pods with label `peer`.
fn policy(name: String, app: &str, peer: (&str, String)) -> Object {
    let select = |pairs: &[(&str, String)]| LabelSelector { match_labels: labels(pairs), ..Default::default() };
    let from = NetworkPolicyPeer { pod_selector: Some(select(&[peer])), ..Default::default() };
    let port =
        NetworkPolicyPort { port: Some(IntOrString::Int(PORT.into())), protocol: Some("TCP".into()), end_port: None };
    Object::NetworkPolicy(NetworkPolicy {
        metadata: ObjectMeta { name: Some(name), namespace: Some(NS.into()), ..Default::default() },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(select(&[("app", app.into())])),
            ingress: Some(vec![NetworkPolicyIngressRule { from: Some(vec![from]), ports: Some(vec![port]) }]),
            policy_types: Some(vec!["Ingress".into()]),
            ..Default::default()
        }),
    })
}

/// The cluster (see the module comment): two servers, `peers` peers (at least [`MANY`]) of
/// which the client is one, policy `one` and [`MANY`] policies.
pub fn objects(peers: usize) -> Vec<Object> {
    let name = |i: usize| format!("p{i:05}");
    let mut out = vec![Object::Namespace(Namespace {
        metadata: ObjectMeta { name: Some(NS.into()), labels: labels(&[("ns", NS.into())]), ..Default::default() },
        ..Default::default()
    })];
    out.push(pod("server-one".into(), labels(&[("app", "one".into())]), ONE.into()));
    out.push(pod("server-many".into(), labels(&[("app", "many".into())]), SERVER_MANY.into()));
    let peer = |i: usize| labels(&[("peer", name(i)), ("all", "yes".into())]);
    out.push(pod("client".into(), peer(MANY - 1), CLIENT.into()));
    for k in 0..peers.max(MANY) - 1 {
        out.push(pod(format!("peer-{k}"), peer(k % MANY), peer_address(k)));
    }
    out.push(policy("one".into(), "one", ("all", "yes".into())));
    for i in 0..MANY {
        out.push(policy(name(i), "many", ("peer", name(i))));
    }
    out
}

/// Compiles the cluster with `peers` peers, merged or not, and says what each server's chain
/// holds; the table's commands.
fn table(peers: usize, merged: bool) -> Vec<Command> {
    let inputs: Vec<Input> =
        objects(peers).into_iter().map(|object| Input { object, locate: std::sync::Arc::new(Nowhere) }).collect();
    let cluster = build(&inputs, &BuildOptions::default()).unwrap_or_else(|p| panic!("invalid bench cluster: {p:?}"));
    let compiled = Compiled::new(&cluster, &Options { unmerged: !merged, ..Default::default() });
    let rs = compiled.ruleset();
    let s = rs.stats();
    let rules = |server: &str| {
        let ip = server.parse::<IpAddr>().expect("address");
        let entry = rs.maps.get("ingress_4").and_then(|m| m.get(&ip)).expect("the server has an ingress chain");
        rs.chains[entry].len()
    };
    println!(
        "{peers:>6} peers, {}: {} / {} rules in the 1- / {MANY}-policy server's chain; {} chains, {} rules, {} sets, {} elements in the table",
        if merged { "merged  " } else { "unmerged" },
        rules(ONE),
        rules(SERVER_MANY),
        s.chains,
        s.rules,
        s.sets,
        s.set_elements
    );
    script::full_commands(rs)
}

/// What merging does to a whole cluster's table (the synthetic one of `--pods`/`--policies`):
/// compile time, size, and the time the kernel takes to load it, merged and unmerged
/// (medians of 3 loads into namespace `netns`).
pub fn synthetic_tables(objects: Vec<Object>, netns: &str) {
    let inputs: Vec<Input> =
        objects.into_iter().map(|object| Input { object, locate: std::sync::Arc::new(Nowhere) }).collect();
    let cluster = build(&inputs, &BuildOptions::default()).unwrap_or_else(|p| panic!("invalid bench cluster: {p:?}"));
    let kernel = Kernel::open(Some(netns)).expect("netlink");
    for merged in [true, false] {
        let t = std::time::Instant::now();
        let compiled = Compiled::new(&cluster, &Options { unmerged: !merged, ..Default::default() });
        let compile = t.elapsed().as_secs_f64();
        let commands = script::full_commands(compiled.ruleset());
        let loads: Vec<f64> = (0..3)
            .map(|_| {
                let t = std::time::Instant::now();
                kernel.apply(&commands).expect("the kernel takes the table");
                t.elapsed().as_secs_f64()
            })
            .collect();
        let s = compiled.ruleset().stats();
        println!(
            "synthetic cluster, {}: compile {compile:.3} s, netlink load {:.3} s; {} chains, {} rules, {} sets, {} elements",
            if merged { "merged  " } else { "unmerged" },
            median(loads),
            s.chains,
            s.rules,
            s.sets,
            s.set_elements
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Builds the lab (client and two server pods), then for each table measures both servers
/// side by side and prints medians and the ratio.
pub fn run(plan: &Plan) {
    let ip = |s: &str| s.parse::<IpAddr>().expect("address");
    let servers = [ONE, SERVER_MANY].map(|s| SocketAddr::new(ip(s), PORT));
    let topo = Topology::build(&[(vec![ip(CLIENT)], false), (vec![ip(ONE)], false), (vec![ip(SERVER_MANY)], false)])
        .expect("lab");
    for (pod, addr) in topo.pods[1..].iter().zip(servers) {
        palisade_lab::rate::serve(&pod.netns, addr).expect("server");
    }
    let client = topo.pods[0].netns.clone();
    let kernel = Kernel::open(Some(&topo.node)).expect("netlink");
    if let Some(objects) = plan.synthetic.clone() {
        synthetic_tables(objects, &topo.node);
    }
    let timeout = Duration::from_millis(500);
    let bare = palisade_lab::rate::paired_rates(&client, &servers, plan.connections, plan.rounds, timeout)
        .expect("rate probe");
    println!("no table: {:.0} / {:.0} conn/s", median(bare[0].clone()), median(bare[1].clone()));
    for peers in [MANY, plan.peers] {
        for merged in [true, false] {
            kernel.apply(&table(peers, merged)).expect("the kernel takes the table");
            // Warm up (caches, conntrack's first entries) before measuring.
            palisade_lab::rate::paired_rates(&client, &servers, 50, 2, timeout).expect("rate probe");
            let rates = palisade_lab::rate::paired_rates(&client, &servers, plan.connections, plan.rounds, timeout)
                .expect("rate probe");
            let (one, many) = (median(rates[0].clone()), median(rates[1].clone()));
            let per_batch: Vec<f64> = rates[1].iter().zip(&rates[0]).map(|(m, o)| m / o).collect();
            println!(
                "{peers:>6} peers, {}: 1 policy {one:>7.0} conn/s, {MANY} policies {many:>7.0} conn/s = {:.1} % (median of per-batch ratios {:.1} %; {} batches of {})",
                if merged { "merged  " } else { "unmerged" },
                100.0 * many / one,
                100.0 * median(per_batch),
                plan.rounds,
                plan.connections
            );
        }
    }
}
