//! Data plane figures (issue 19): new TCP connections per second from a client pod to a server
//! pod selected by 1 and by 1,000 policies, with 1,000 and with 100,000 peers in their sets,
//! each table compiled with Allow runs merged (the design now) and unmerged (one rule per
//! policy, the design before), all configurations interleaved round by round. Needs root.
//!
//! Policy `i` of `n` admits TCP on [`PORT`] from the pods labelled `peer=p<i>`; the peers are
//! spread over the policies, so 1 and 1,000 policies admit the same addresses. The client
//! carries the label of the last policy, so without merging its first packet walks every rule
//! of the server's group chain before one matches (the worst case; the best would be the
//! first). The peers besides the client are model-only pods (addresses in 10.0.0.0/8, every
//! other one so that no two merge into one interval): they fill the sets, no traffic comes
//! from them. A table with a single peer shows what the set's size costs by itself.

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
use palisade_lab::rate::{connect_rate, RateOptions};
use palisade_lab::Topology;
use palisade_nft::kernel::Kernel;
use palisade_nft::script::{self, Command};
use palisade_nft::{Compiled, Options};

const CLIENT: &str = "198.19.250.1";
const SERVER: &str = "198.19.250.2";
/// The port the server listens on and the policies admit.
pub const PORT: u16 = 8080;
const NS: &str = "dp";

/// What a data plane run measures.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Interleaved rounds (each configuration once per round; medians are reported).
    pub rounds: usize,
    /// Connection attempts per measurement (bounded by `max` too).
    pub connections: usize,
    /// Peers in the sets of the second series (the first has 1,000).
    pub peers: usize,
    /// Connections in flight at once.
    pub workers: usize,
}

/// One table measured: how many policies select the server, how many peers fill their sets,
/// and whether the compiler merged Allow runs.
struct Config {
    label: String,
    policies: usize,
    peers: usize,
    merged: bool,
    commands: Vec<Command>,
}

fn labels(pairs: &[(&str, String)]) -> Option<BTreeMap<String, String>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

fn pod(name: String, labels: Option<BTreeMap<String, String>>, ip: String) -> Object {
    Object::Pod(Pod {
        metadata: ObjectMeta { name: Some(name), namespace: Some(NS.into()), labels, ..Default::default() },
        status: Some(PodStatus { pod_ip: Some(ip), ..Default::default() }),
        ..Default::default()
    })
}

/// The `k`-th model-only peer address: every other address of 10.0.0.0/8.
fn peer_address(k: usize) -> String {
    let n = 2 * k as u32 + 2;
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

/// The cluster: the server, `peers` peers (at least one per policy) spread over `policies`
/// policies, the client among the last policy's.
pub fn objects(policies: usize, peers: usize) -> Vec<Object> {
    let name = |i: usize| format!("p{i:05}");
    let mut out = vec![Object::Namespace(Namespace {
        metadata: ObjectMeta { name: Some(NS.into()), labels: labels(&[("ns", NS.into())]), ..Default::default() },
        ..Default::default()
    })];
    out.push(pod("server".into(), labels(&[("app", "server".into())]), SERVER.into()));
    out.push(pod("client".into(), labels(&[("peer", name(policies - 1))]), CLIENT.into()));
    for k in 0..peers.max(policies) - 1 {
        let i = k % policies;
        out.push(pod(format!("peer-{k}"), labels(&[("peer", name(i))]), peer_address(k)));
    }
    for i in 0..policies {
        let from = NetworkPolicyPeer {
            pod_selector: Some(LabelSelector { match_labels: labels(&[("peer", name(i))]), ..Default::default() }),
            ..Default::default()
        };
        let port = NetworkPolicyPort {
            port: Some(IntOrString::Int(PORT.into())),
            protocol: Some("TCP".into()),
            end_port: None,
        };
        out.push(Object::NetworkPolicy(NetworkPolicy {
            metadata: ObjectMeta { name: Some(name(i)), namespace: Some(NS.into()), ..Default::default() },
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: labels(&[("app", "server".into())]),
                    ..Default::default()
                }),
                ingress: Some(vec![NetworkPolicyIngressRule { from: Some(vec![from]), ports: Some(vec![port]) }]),
                policy_types: Some(vec!["Ingress".into()]),
                ..Default::default()
            }),
        }));
    }
    out
}

/// Compiles one configuration and says what its table holds.
fn config(policies: usize, peers: usize, merged: bool) -> Config {
    let inputs: Vec<Input> = objects(policies, peers)
        .into_iter()
        .map(|object| Input { object, locate: std::sync::Arc::new(Nowhere) })
        .collect();
    let cluster = build(&inputs, &BuildOptions::default()).unwrap_or_else(|p| panic!("invalid bench cluster: {p:?}"));
    let opts = Options { unmerged: !merged, ..Default::default() };
    let compiled = Compiled::new(&cluster, &opts);
    let rs = compiled.ruleset();
    let s = rs.stats();
    let server = SERVER.parse::<IpAddr>().expect("address");
    let entry = rs.maps.get("ingress_4").and_then(|m| m.get(&server)).expect("the server has an ingress chain");
    let label = format!(
        "{policies:>5} {} {peers:>6} peers, {}",
        if policies == 1 { "policy  " } else { "policies" },
        if merged { "merged  " } else { "unmerged" }
    );
    println!(
        "{label}: {} rules in the server's chain, {} chains, {} rules, {} sets, {} elements in the table",
        rs.chains[entry].len(),
        s.chains,
        s.rules,
        s.sets,
        s.set_elements
    );
    Config { label, policies, peers, merged, commands: script::full_commands(rs) }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Builds the lab (client and server pods), compiles every configuration, then measures each
/// once per round, rotating the order from round to round, and prints medians and ratios.
pub fn run(plan: &Plan) {
    let ip = |s: &str| s.parse::<IpAddr>().expect("address");
    let topo = Topology::build(&[(vec![ip(CLIENT)], false), (vec![ip(SERVER)], false)]).expect("lab");
    palisade_lab::rate::serve(&topo.pods[1].netns, SocketAddr::new(ip(SERVER), PORT)).expect("server");
    let client = topo.pods[0].netns.clone();
    let kernel = Kernel::open(Some(&topo.node)).expect("netlink");
    let mut configs = Vec::new();
    configs.push(config(1, 1, true));
    for peers in [1_000, plan.peers] {
        for policies in [1, 1_000] {
            for merged in [true, false] {
                configs.push(config(policies, peers, merged));
            }
        }
    }
    let bare = Config { label: "no table".into(), policies: 0, peers: 0, merged: true, commands: Vec::new() };
    configs.insert(0, bare);
    let dst = SocketAddr::new(ip(SERVER), PORT);
    let opts = RateOptions {
        connections: plan.connections,
        max: Duration::from_secs(10),
        timeout: Duration::from_millis(500),
        workers: plan.workers,
    };
    let warm = RateOptions { connections: 200, ..opts.clone() };
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for round in 0..plan.rounds {
        for k in 0..configs.len() {
            let i = (k + round) % configs.len();
            let c = &configs[i];
            if c.commands.is_empty() {
                script::nft(Some(&topo.node)).args(["delete", "table", "inet", "palisade"]).output().ok();
            } else {
                kernel.apply(&c.commands).expect("the kernel takes the table");
            }
            connect_rate(&client, dst, &warm).expect("rate probe");
            let rate = connect_rate(&client, dst, &opts).expect("rate probe");
            if rate.failed > 0 {
                eprintln!(
                    "{}: {} of {} attempts failed ({:?})",
                    c.label,
                    rate.failed,
                    rate.connected + rate.failed,
                    rate.first_error
                );
            }
            samples[i].push(rate.per_second());
        }
        eprintln!("round {} of {} done", round + 1, plan.rounds);
    }
    let medians: Vec<f64> = samples.iter().cloned().map(median).collect();
    for (c, (m, s)) in configs.iter().zip(medians.iter().zip(&samples)) {
        let runs: Vec<String> = s.iter().map(|r| format!("{r:.0}")).collect();
        println!("{:<40}{m:>9.0} conn/s  (median of {}: {})", c.label, s.len(), runs.join(" "));
    }
    for peers in [1_000, plan.peers] {
        for merged in [true, false] {
            let find = |policies| {
                configs
                    .iter()
                    .position(|c| c.policies == policies && c.peers == peers && c.merged == merged)
                    .map(|i| medians[i])
                    .expect("measured")
            };
            println!(
                "1,000 vs 1 policy, {peers} peers, {}: {:.1} %",
                if merged { "merged" } else { "unmerged" },
                100.0 * find(1_000) / find(1)
            );
        }
    }
}
