//! A node's traffic to the pods that run on it, which the enforcer always accepts, as the
//! engine decides (`palisade_core::verdict::own_node`): kubelet probes depend on it; the
//! NetworkPolicy API reference allows ingress "if the traffic source is the pod's local node";
//! Calico: "traffic from a host to its workload endpoints is always allowed, despite any policy
//! in place".
//!
//! The base chains accept such a packet before the ingress lookup (`postrouting`) and before a
//! host endpoint's egress (`output`), and only when its source is an address of the node's own
//! network namespace (`fib saddr type local`). What "its own pods" means depends on what the
//! table stands for:
//! - with `--node N` the namespace is node N: the `own_node_*` sets hold the addresses of N's
//!   pods, and any local source address qualifies (kubelet picks whichever it likes);
//! - without, every pod is enforced on one machine (the lab: one node namespace for all of
//!   them), so a node is told from another by its addresses: the sets hold
//!   `node address . pod address` pairs, a node's addresses being its Node object's, its host
//!   endpoints' and its host-network pods'.
//!
//! A pod can put a node's address on its packets; the `prerouting` chain drops packets that
//! arrive on any interface but loopback with a local source (IPv4's martian check does it
//! for IPv4 only), so no pod can borrow the exception.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use palisade_core::cluster::{Cluster, PodId};
use palisade_core::verdict::{node_of, Placement, Side};

use crate::ir::{Addr, Element, Family, Rule, Stmt, Verdict};

/// The elements of the `own_node_4` and `own_node_6` sets, and their shape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnNode {
    /// `node address . pod address` pairs (no `--node`); pod addresses otherwise.
    pub by_address: bool,
    pub elements: BTreeMap<Family, BTreeSet<Element>>,
}

impl OwnNode {
    /// `own_node_4` or `own_node_6`.
    pub fn set_name(family: Family) -> String {
        format!("own_node_{}", family.suffix())
    }

    /// The base chain rule that accepts a local source's packet to its own pods.
    pub fn accept_rule(&self, family: Family) -> Rule {
        let set = OwnNode::set_name(family);
        let key = if self.by_address {
            Stmt::AddressPair { family, set }
        } else {
            Stmt::Address { family, field: Addr::Daddr, negate: false, set }
        };
        Rule::new(vec![Stmt::LocalSource, key, Stmt::Counter, Stmt::Verdict(Verdict::Accept)])
    }
}

/// Each node's addresses as the engine knows them: the addresses its Node object, its host
/// endpoints and its host-network pods send from (by the node each resolves to).
pub fn node_addresses(cluster: &Cluster) -> HashMap<String, BTreeSet<IpAddr>> {
    let mut out: HashMap<String, BTreeSet<IpAddr>> = HashMap::new();
    let mut add = |side: Side, ips: &[IpAddr]| {
        // A DaemonSet's template pod (every node) has no address to add.
        if let Some(Placement::Node(node)) = node_of(cluster, &side) {
            out.entry(node.to_string()).or_default().extend(ips.iter().copied());
        }
    };
    for node in &cluster.nodes {
        for &ip in &node.addresses {
            add(Side::ip(cluster, ip), &[ip]);
        }
    }
    for hep in &cluster.host_endpoints {
        for &ip in &hep.ips {
            add(Side::ip(cluster, ip), &[ip]);
        }
    }
    for (p, pod) in cluster.pod_ids().zip(&cluster.pods).filter(|(_, pod)| pod.host_network) {
        add(Side::pod(cluster, p), &pod.ips);
    }
    out
}

/// The set elements pod `p` contributes: none unless it is on the pod network, on a known node
/// and enforced here (`only`: the `--node` name).
pub fn pod_elements(
    cluster: &Cluster,
    p: PodId,
    only: Option<&str>,
    nodes: &HashMap<String, BTreeSet<IpAddr>>,
) -> Vec<(Family, Element)> {
    let pod = &cluster.pods[p];
    let Some(node) = pod.node.as_deref() else { return Vec::new() };
    if !cluster.is_policy_subject(p) || only.is_some_and(|n| n != node) {
        return Vec::new();
    }
    if only.is_some() {
        return pod.ips.iter().map(|ip| (Family::of(ip), Element::Net((*ip).into()))).collect();
    }
    let sources = nodes.get(node).into_iter().flatten();
    sources
        .flat_map(|a| pod.ips.iter().filter(move |ip| ip.is_ipv4() == a.is_ipv4()).map(move |ip| (a, ip)))
        .map(|(a, ip)| (Family::of(ip), Element::AddressPair(*a, *ip)))
        .collect()
}
