//! Palisade's lab: the cluster the manifests describe, built on this machine from network
//! namespaces, enforced by Palisade's nftables table in the node namespace, and probed pair by
//! pair, so that what the kernel does can be compared with what the engine decides.
//!
//! The node namespace stands for every node at once: it holds the nodes' addresses (and the
//! host-network pods'), and a node's probes leave from its own address, so the table tells
//! nodes apart by address (see `palisade_nft::own_node`).

pub mod rate;
pub mod standing;
pub mod topology;
pub mod traffic;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_core::cluster::{Cluster, NodeId, PodId};
use palisade_core::index::Index;
use palisade_core::port::Protocol;
use palisade_core::verdict::{decide, Connection, Side, Verdict};

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

/// One row and column of the lab: a pod, or a node (from its first address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabEnd {
    Pod(PodId),
    Node(NodeId),
}

impl LabEnd {
    /// `namespace/pod`, or `node:NAME`.
    pub fn key(self, cluster: &Cluster) -> String {
        match self {
            LabEnd::Pod(p) => cluster.pod_key(p),
            LabEnd::Node(n) => format!("node:{}", cluster.nodes[n].name),
        }
    }
    fn side(self, cluster: &Cluster) -> Side {
        match self {
            LabEnd::Pod(p) => Side::pod(cluster, p),
            LabEnd::Node(n) => Side::node(cluster, n),
        }
    }
    /// The address probes go to (and, from the node namespace, leave from).
    fn address(self, cluster: &Cluster) -> IpAddr {
        match self {
            LabEnd::Pod(p) => cluster.pods[p].ips[0],
            LabEnd::Node(n) => cluster.nodes[n].addresses[0],
        }
    }
}

/// What one probe (port, protocol) showed.
#[derive(Clone, Debug)]
pub struct ProbeResult {
    pub port: u16,
    pub protocol: Protocol,
    /// `observed[i][j]`: lab endpoint i reached lab endpoint j.
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
    /// The pods in the lab, in output order, then its nodes: the grids' rows and columns.
    pub ends: Vec<LabEnd>,
    /// Pods and nodes left out, and why.
    pub skipped: Vec<(LabEnd, String)>,
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

/// What the lab can build: pods with addresses, then nodes whose first address is a lab one.
pub(crate) fn plan(cluster: &Cluster) -> (Vec<LabEnd>, Vec<(LabEnd, String)>) {
    let mut ends = Vec::new();
    let mut skipped = Vec::new();
    for p in cluster.pods_sorted() {
        match cluster.pods[p].ips.is_empty() {
            false => ends.push(LabEnd::Pod(p)),
            true => skipped.push((LabEnd::Pod(p), "no IP (built from a workload template)".to_string())),
        }
    }
    let mut nodes: Vec<NodeId> = cluster.node_ids().collect();
    nodes.sort_by_key(|&n| cluster.nodes[n].name.clone());
    for n in nodes {
        match cluster.nodes[n].addresses.first() {
            Some(ip) if allowed_address(ip) => ends.push(LabEnd::Node(n)),
            Some(ip) => skipped.push((LabEnd::Node(n), format!("its address {ip} is outside the lab's ranges"))),
            None => skipped.push((LabEnd::Node(n), "no address".to_string())),
        }
    }
    (ends, skipped)
}

/// The engine's answer for every ordered pair: the matrix between pods, the per-connection
/// path where a node is one end.
fn expected(cluster: &Cluster, index: &mut Index, ends: &[LabEnd], port: u16, protocol: Protocol) -> Vec<Vec<bool>> {
    let m = index.matrix(port, protocol);
    let pair = |s: LabEnd, d: LabEnd| match (s, d) {
        (LabEnd::Pod(s), LabEnd::Pod(d)) => m.allowed(s, d),
        _ if s == d => true,
        _ => {
            let conn = Connection::new(s.side(cluster), d.side(cluster), port, protocol);
            decide(cluster, &conn).verdict == Verdict::Allow
        }
    };
    ends.iter().map(|&s| ends.iter().map(|&d| pair(s, d)).collect()).collect()
}

/// Builds the lab, enforces, probes, compares with the engine, and tears everything down.
pub fn run(
    cluster: &Cluster,
    opts: &LabOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<LabReport, LabError> {
    let (ends, skipped) = plan(cluster);
    let pods: Vec<PodId> = ends.iter().filter_map(|e| if let LabEnd::Pod(p) = e { Some(*p) } else { None }).collect();
    for &p in &pods {
        if let Some(ip) = cluster.pods[p].ips.iter().find(|ip| !allowed_address(ip)) {
            return Err(LabError::Refused(format!(
                "pod {} has address {ip}; lab pods may only use 198.18.0.0/15 or fd00::/8",
                cluster.pod_key(p)
            )));
        }
    }
    let mut report = LabReport { ends: ends.clone(), skipped, ..Default::default() };
    let sctp = traffic::sctp_available();
    let probes: Vec<(u16, Protocol)> = opts
        .probes
        .iter()
        .copied()
        .filter(|(port, proto)| {
            let ok = match *proto {
                Protocol::SCTP => sctp,
                Protocol::TCP | Protocol::UDP => true,
                _ => false,
            };
            if !ok {
                let why = if *proto == Protocol::SCTP {
                    "this kernel has no SCTP"
                } else {
                    "the lab probes TCP, UDP and SCTP only (the engine and nft decide every protocol)"
                };
                // A protocol without ports (GRE, protocol 47) is named without a port.
                let what = if proto.has_ports() { format!("{port}/{proto}") } else { proto.to_string() };
                report.skipped_probes.push(format!("{what}: skipped, {why}"));
            }
            ok
        })
        .collect();
    let layout: Vec<(Vec<IpAddr>, bool)> =
        pods.iter().map(|&p| (cluster.pods[p].ips.clone(), cluster.pods[p].host_network)).collect();
    let node_addresses: Vec<IpAddr> = ends
        .iter()
        .filter_map(|e| if let LabEnd::Node(n) = e { Some(*n) } else { None })
        .flat_map(|n| cluster.nodes[n].addresses.iter().copied().filter(allowed_address))
        .collect();
    let topo = Topology::build_with_node_addresses(&layout, &node_addresses)?;
    let ruleset = palisade_nft::compile(cluster, &palisade_nft::Options::default());
    report.ruleset_stats = ruleset.stats();
    // As the agent does: one netlink transaction in the node's namespace.
    palisade_nft::kernel::Kernel::open(Some(&topo.node))
        .and_then(|k| k.apply(&palisade_nft::script::full_commands(&ruleset)))
        .map_err(|e| LabError::Refused(e.to_string()))?;
    start_servers(cluster, &ends, &topo, &probes)?;
    let mut index = Index::new(cluster);
    let total = probes.len() * ends.len() * ends.len();
    let done = AtomicUsize::new(0);
    for &(port, protocol) in &probes {
        let expected = expected(cluster, &mut index, &ends, port, protocol);
        let observed = probe_all(cluster, &ends, &topo, port, protocol, opts, &|| {
            progress(done.fetch_add(1, Ordering::SeqCst) + 1, total)
        })?;
        report.results.push(ProbeResult { port, protocol, observed, expected });
    }
    drop(topo);
    Ok(report)
}

/// Where an endpoint lives: its namespace, and the address it is bound to when it shares the
/// node's namespace (host-network pods, nodes).
pub(crate) fn place(cluster: &Cluster, topo: &Topology, ends: &[LabEnd], k: usize) -> (String, Option<IpAddr>) {
    match ends[k] {
        LabEnd::Pod(_) => {
            let lab = &topo.pods[k];
            (lab.netns.clone(), lab.on_node.then(|| ends[k].address(cluster)))
        }
        LabEnd::Node(_) => (topo.node.clone(), Some(ends[k].address(cluster))),
    }
}

pub(crate) fn start_servers(
    cluster: &Cluster,
    ends: &[LabEnd],
    topo: &Topology,
    probes: &[(u16, Protocol)],
) -> Result<(), LabError> {
    let mut node_addresses = BTreeSet::new();
    for (k, &end) in ends.iter().enumerate() {
        // Host-network pods and nodes share the node namespace: one set of servers per address.
        let (netns, addr) = place(cluster, topo, ends, k);
        if addr.is_some_and(|a| !node_addresses.insert(a)) {
            continue;
        }
        let mut ports: BTreeSet<(u16, Protocol)> = probes.iter().copied().collect();
        let (declared, ips) = match end {
            LabEnd::Pod(p) => (cluster.pods[p].ports.as_slice(), cluster.pods[p].ips.as_slice()),
            LabEnd::Node(n) => (&[][..], cluster.nodes[n].addresses.as_slice()),
        };
        ports.extend(
            declared
                .iter()
                .filter(|c| matches!(c.protocol, Protocol::TCP | Protocol::UDP))
                .map(|c| (c.port, c.protocol)),
        );
        let ports: Vec<(u16, Protocol)> = ports.into_iter().filter(|(_, pr)| *pr != Protocol::SCTP).collect();
        let dual = ips.iter().any(IpAddr::is_ipv6);
        traffic::serve(&netns, &ports, dual, addr)
            .map_err(|e| LabError::Refused(format!("cannot start servers in {}: {e}", end.key(cluster))))?;
    }
    Ok(())
}

/// Probes every ordered pair, `parallel` at a time; a silent probe is tried once more.
fn probe_all(
    cluster: &Cluster,
    ends: &[LabEnd],
    topo: &Topology,
    port: u16,
    protocol: Protocol,
    opts: &LabOptions,
    tick: &(dyn Fn() + Sync),
) -> Result<Vec<Vec<bool>>, LabError> {
    let n = ends.len();
    let pairs: Vec<(usize, usize)> = (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).collect();
    let mut results = vec![vec![false; n]; n];
    let mut error = None;
    for chunk in pairs.chunks(opts.parallel.max(1)) {
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&(i, j)| {
                    let (netns, src) = place(cluster, topo, ends, i);
                    let dst = ends[j].address(cluster);
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
