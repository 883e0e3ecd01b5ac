//! The connectivity as a graph of workloads (grouped by namespace), nodes and pieces of the
//! outside world, with edges labelled by ports, and why each edge is allowed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use palisade_core::cluster::{Cluster, PodId};
use palisade_core::policy::{Action, PolicyKind};
use palisade_core::verdict::{decide, Connection, PolicyEval, RuleEval, Side, Step};
use serde::Serialize;

use crate::connectivity::{AddressKind, Connectivity};
use crate::probe::{describe, Probe};
use crate::workload::Workloads;

#[derive(Clone, Debug, Serialize)]
pub struct Node {
    pub id: String,
    pub label: String,
    /// `None` for nodes and the outside world.
    pub namespace: Option<String>,
    /// `workload`, `node` (a cluster node or host endpoint) or `outside`.
    pub kind: &'static str,
    pub pods: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    /// Indexes into [`Graph::probes`] on which some pod pair is allowed.
    pub probes: Vec<usize>,
    pub label: String,
    /// Pod pairs allowed on at least one of those probes, out of all pod pairs of the two ends.
    pub pairs: usize,
    pub total: usize,
    /// No policy restricts it on either side.
    pub unrestricted: bool,
    /// For each probe, why one allowed pair is allowed: the deciding rule on each side.
    pub why: Vec<Why>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Why {
    pub probe: String,
    pub from: String,
    pub to: String,
    pub sides: Vec<String>,
    /// Some policy isolates one of the two sides.
    pub restricted: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Graph {
    pub probes: Vec<Probe>,
    pub probe_labels: Vec<String>,
    pub namespaces: Vec<String>,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// For each probe, the allowed pod-level pairs behind one edge.
type PerProbe = Vec<Vec<(End, End)>>;

/// One end of a pod-level edge: a pod or an address endpoint.
#[derive(Clone, Copy)]
enum End {
    Pod(PodId),
    Address(usize),
}

impl Graph {
    pub fn new(cluster: &Cluster, conn: &Connectivity, workloads: &Workloads) -> Graph {
        let mut nodes: Vec<Node> = (0..workloads.list.len())
            .map(|w| {
                let wl = &workloads.list[w];
                Node {
                    id: workloads.key(cluster, w),
                    label: wl.name.clone(),
                    namespace: Some(cluster.namespaces[wl.namespace].name.clone()),
                    kind: "workload",
                    pods: wl.pods.iter().map(|&p| cluster.pod_key(p)).collect(),
                }
            })
            .collect();
        let first_address = nodes.len();
        nodes.extend(conn.addresses.iter().map(|a| Node {
            id: a.name.clone(),
            label: a.name.clone(),
            namespace: None,
            kind: match a.kind {
                AddressKind::Outside => "outside",
                AddressKind::Node => "node",
            },
            pods: Vec::new(),
        }));
        let mut namespaces: Vec<String> = nodes.iter().filter_map(|n| n.namespace.clone()).collect();
        namespaces.dedup();
        let node_of = |end: End| match end {
            End::Pod(p) => workloads.of_pod[p.index()],
            End::Address(e) => first_address + e,
        };
        // (from node, to node) -> per probe, the allowed pod-level pairs.
        let mut pairs: BTreeMap<(usize, usize), PerProbe> = BTreeMap::new();
        let mut add = |a: End, b: End, probe: usize| {
            let slot = pairs.entry((node_of(a), node_of(b))).or_insert_with(|| vec![Vec::new(); conn.probes.len()]);
            slot[probe].push((a, b));
        };
        for (i, m) in conn.matrices.iter().enumerate() {
            for s in cluster.pod_ids() {
                let replicas = cluster.pods[s].is_replica_group();
                for d in m.rows[s.index()].ones().map(PodId::new).filter(|&d| d != s || replicas) {
                    add(End::Pod(s), End::Pod(d), i);
                }
            }
            for (e, pods) in conn.to_address[i].iter().enumerate() {
                pods.ones().for_each(|p| add(End::Pod(PodId::new(p)), End::Address(e), i));
            }
            for (e, pods) in conn.from_address[i].iter().enumerate() {
                pods.ones().for_each(|p| add(End::Address(e), End::Pod(PodId::new(p)), i));
            }
            for (e, others) in conn.between[i].iter().enumerate() {
                others.ones().for_each(|f| add(End::Address(e), End::Address(f), i));
            }
        }
        let size = |n: usize| nodes[n].pods.len().max(1);
        // Pairs within a workload: its pods two by two, and each template pod standing for
        // replicas with itself (one replica to another).
        let within = |w: usize| {
            let groups = workloads
                .list
                .get(w)
                .filter(|_| w < first_address)
                .map_or(0, |wl| wl.pods.iter().filter(|&&p| cluster.pods[p].is_replica_group()).count());
            size(w) * (size(w) - 1) + groups
        };
        let edges = pairs
            .into_iter()
            .map(|((from, to), per_probe)| {
                let total = if from == to { within(from) } else { size(from) * size(to) };
                edge(cluster, conn, from, to, total, &per_probe)
            })
            .collect();
        let probe_labels = conn.probes.iter().map(|p| p.to_string()).collect();
        Graph { probes: conn.probes.clone(), probe_labels, namespaces, nodes, edges }
    }

    /// Graphviz: a cluster per namespace, nodes and the outside world outside them.
    pub fn dot(&self) -> String {
        let mut out = String::from("digraph palisade {\n  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n");
        for (c, ns) in self.namespaces.iter().enumerate() {
            let _ = writeln!(out, "  subgraph cluster_{c} {{\n    label={};", quote(ns));
            for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.namespace.as_ref() == Some(ns)) {
                let _ = writeln!(out, "    n{i} [label={}];", quote(&node_label(n)));
            }
            out.push_str("  }\n");
        }
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.namespace.is_none()) {
            let shape = if n.kind == "node" { "box3d" } else { "ellipse" };
            let _ = writeln!(out, "  n{i} [label={}, shape={shape}];", quote(&n.label));
        }
        for e in &self.edges {
            let style = if e.unrestricted { ", style=dashed, color=gray50" } else { "" };
            let _ = writeln!(out, "  n{} -> n{} [label={}{style}];", e.from, e.to, quote(&edge_label(e)));
        }
        out.push_str("}\n");
        out
    }
}

fn node_label(n: &Node) -> String {
    match n.pods.len() {
        0 | 1 => n.label.clone(),
        k => format!("{} ({k} pods)", n.label),
    }
}

/// Ports, and how many pod pairs when not all of them.
pub fn edge_label(e: &Edge) -> String {
    if e.pairs < e.total {
        format!("{} ({}/{} pod pairs)", e.label, e.pairs, e.total)
    } else {
        e.label.clone()
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn edge(
    cluster: &Cluster,
    conn: &Connectivity,
    from: usize,
    to: usize,
    total: usize,
    per_probe: &[Vec<(End, End)>],
) -> Edge {
    let probes: Vec<usize> = (0..per_probe.len()).filter(|&i| !per_probe[i].is_empty()).collect();
    let chosen: Vec<Probe> = probes.iter().map(|&i| conn.probes[i]).collect();
    let mut distinct: Vec<(usize, usize)> = Vec::new();
    let key = |e: End| match e {
        End::Pod(p) => p.index(),
        End::Address(x) => usize::MAX - x,
    };
    for &i in &probes {
        distinct.extend(per_probe[i].iter().map(|&(a, b)| (key(a), key(b))));
    }
    distinct.sort_unstable();
    distinct.dedup();
    let why: Vec<Why> = probes.iter().map(|&i| explain(cluster, conn, i, per_probe[i][0])).collect();
    let unrestricted = why.iter().all(|w| !w.restricted);
    Edge { from, to, probes, label: describe(&conn.probes, &chosen), pairs: distinct.len(), total, unrestricted, why }
}

fn side(cluster: &Cluster, conn: &Connectivity, end: End) -> (Side, String) {
    match end {
        End::Pod(p) => (Side::pod(cluster, p), cluster.pod_key(p)),
        End::Address(e) => {
            let a = &conn.addresses[e];
            (Side::ip(cluster, a.address), format!("{} (as {})", a.name, a.address))
        }
    }
}

/// The deciding rule on each side of one allowed connection.
fn explain(cluster: &Cluster, conn: &Connectivity, probe: usize, (a, b): (End, End)) -> Why {
    let p = conn.probes[probe];
    let (src, from) = side(cluster, conn, a);
    let (dst, to) = side(cluster, conn, b);
    let decision = decide(cluster, &Connection::new(src, dst, p.port, p.protocol));
    let sides = decision.trace.iter().filter_map(deciding_rule).collect();
    let restricted = decision.trace.iter().any(|s| matches!(s, Step::Policies { isolated: true, .. }));
    Why { probe: p.to_string(), from, to, sides, restricted }
}

/// A rule that acted, in its API's words: `x/allow-dns rule [0] (file:12) allows`; a cluster
/// network policy's with its tier, priority and rule name: `Admin tier: ClusterNetworkPolicy
/// deny-evil priority 10, rule deny-from-evil [0] (file:12) denies`.
fn rule_words(p: &PolicyEval, r: &RuleEval) -> String {
    let at = r.location.as_deref().map(|l| format!(" ({l})")).unwrap_or_default();
    let cnp = p.kind.is_cluster_network_policy();
    let verb = match r.action {
        Action::Allow if cnp => "accepts",
        Action::Allow => "allows",
        Action::Deny => "denies",
        Action::Pass => "passes",
        Action::Log => "logs",
    };
    if !cnp {
        return format!("{} rule [{}]{at} {verb}", p.policy, r.index);
    }
    let tier = if p.tier == "kube-baseline" { "Baseline" } else { "Admin" };
    let priority = match (p.kind, p.order) {
        (PolicyKind::BaselineAdminNetworkPolicy, _) | (_, None) => String::new(),
        (_, Some(o)) => format!(" priority {o}"),
    };
    let name = r.name.as_deref().map(|n| format!(" {n}")).unwrap_or_default();
    format!("{tier} tier: {} {}{priority}, rule{name} [{}]{at} {verb}", p.kind.as_str(), p.policy, r.index)
}

/// `egress at x/a: x/allow-dns rule [0] (file:12) allows`, or why nothing restricts the side;
/// when a Pass acted, what acted after it too (`..., then ...`).
pub fn deciding_rule(step: &Step) -> Option<String> {
    match step {
        Step::Policies { direction, endpoint, isolated: false, .. } => {
            Some(format!("{direction} at {endpoint}: no policy selects it (not isolated)"))
        }
        Step::Policies { direction, endpoint, policies, reason, .. } => {
            // Every rule that acted, in order: a Pass hands over to what decides after it.
            let acted: Vec<String> = policies
                .iter()
                .filter(|p| p.reached)
                .flat_map(|p| p.rules.iter().filter(|r| r.decisive).map(move |r| rule_words(p, r)))
                .collect();
            let passed_last = policies.iter().filter(|p| p.reached).flat_map(|p| &p.rules).rfind(|r| r.decisive);
            let words = match (acted.is_empty(), passed_last.is_some_and(|r| r.action == Action::Pass)) {
                (true, _) => reason.clone(),
                // Nothing after the Pass decided: say what did.
                (false, true) => format!("{}, then {reason}", acted.join(", then ")),
                (false, false) => acted.join(", then "),
            };
            Some(format!("{direction} at {endpoint}: {words}"))
        }
        Step::NotEnforced { direction, endpoint, reason } => Some(format!("{direction} at {endpoint}: {reason}")),
        _ => None,
    }
}
