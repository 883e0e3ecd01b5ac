//! Who can open what: every pod pair on every probe (through the bitset index), and every pod
//! against every address endpoint: each piece of the outside world and each node (through the
//! engine, one address per endpoint).

use std::collections::HashMap;
use std::net::IpAddr;

use fixedbitset::FixedBitSet;
use palisade_core::cluster::{Cluster, PodId, PolicyId};
use palisade_core::family::Families;
use palisade_core::index::{Index, Matrix, Sides};
use palisade_core::matching;
use palisade_core::policy::Direction;
use palisade_core::port::ContainerPort;
use palisade_core::verdict::{decide, placement, Applicable, Connection, Placement, Side, Verdict};
use serde::Serialize;

use crate::outside::{pieces_of, Piece};
use crate::probe::{probes_of, Probe};

/// Where connections are counted: the probes (the ports cut into stretches every rule treats
/// alike) and the pieces of the outside world (the address space cut at every named CIDR).
/// Two versions compared with each other must share one `Cuts`.
#[derive(Clone, Debug)]
pub struct Cuts {
    pub probes: Vec<Probe>,
    pub pieces: Vec<Piece>,
}

impl Cuts {
    /// Cut at every boundary any of the clusters names.
    pub fn of(clusters: &[&Cluster]) -> Cuts {
        Cuts { probes: probes_of(clusters), pieces: pieces_of(clusters) }
    }
}

/// What an address endpoint stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressKind {
    /// A piece of the world outside the cluster ([`Piece`]).
    Outside,
    /// A node (or a Calico host endpoint) of the cluster.
    Node,
}

/// An endpoint that is an address rather than a pod, decided at that address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Address {
    /// `outside 0.0.0.0/0 except 10.0.0.0/8`, `node worker-1`, `host endpoint eth0-n1`.
    pub name: String,
    pub address: IpAddr,
    pub kind: AddressKind,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

pub struct Connectivity {
    pub probes: Vec<Probe>,
    /// One pod matrix per probe.
    pub matrices: Vec<Matrix>,
    pub addresses: Vec<Address>,
    /// `[probe][address]`: the pods that may open a connection to it.
    pub to_address: Vec<Vec<FixedBitSet>>,
    /// `[probe][address]`: the pods it may open a connection to.
    pub from_address: Vec<Vec<FixedBitSet>>,
    /// `[probe][address]`: the other address endpoints it may open a connection to (nodes,
    /// host endpoints and the outside world among each other; never one piece of the outside
    /// world to another, which is no traffic of the cluster's).
    pub between: Vec<Vec<FixedBitSet>>,
    /// `[egress, ingress][pod]`: the policies that apply to each pod, for explaining
    /// connections without scanning every policy ([`palisade_core::verdict::decide_known`]).
    pub applicable: Applicable,
    /// Per probe, the sides its matrix was made of ([`Index::sides`]), when asked for
    /// ([`Connectivity::compute_keeping_sides`]; empty otherwise): lint reads them again.
    pub sides: Vec<Sides>,
}

impl Connectivity {
    /// Computes everything; `tick` is called once per unit of work out of [`Connectivity::work`].
    pub fn compute(cluster: &Cluster, cuts: Cuts, tick: impl FnMut()) -> Connectivity {
        Connectivity::compute_with(cluster, cuts, tick, Shortcuts { classes: true, keep_sides: false })
    }

    /// [`Connectivity::compute`], keeping each probe's sides in [`Connectivity::sides`] for
    /// lint to read (the report runs both): no second pass over every policy per probe.
    pub fn compute_keeping_sides(cluster: &Cluster, cuts: Cuts, tick: impl FnMut()) -> Connectivity {
        Connectivity::compute_with(cluster, cuts, tick, Shortcuts { classes: true, keep_sides: true })
    }

    /// [`Connectivity::compute`] deciding every pod against every address through the engine's
    /// per-connection path, pod by pod, never a shortcut or a class of pods (for tests that
    /// hold the two alike).
    pub fn compute_by_decide(cluster: &Cluster, cuts: Cuts) -> Connectivity {
        Connectivity::compute_with(cluster, cuts, || {}, Shortcuts { classes: false, keep_sides: false })
    }

    fn compute_with(cluster: &Cluster, cuts: Cuts, mut tick: impl FnMut(), how: Shortcuts) -> Connectivity {
        let shortcut = how.classes;
        let mut index = Index::new(cluster);
        if how.keep_sides {
            index.keep_sides();
        }
        let addresses = addresses(cluster, &cuts.pieces);
        let applicable = [index.applicable(Direction::Egress), index.applicable(Direction::Ingress)];
        let each = || cluster.pod_ids().map(|p| vec![p]).collect::<Vec<_>>();
        let outside = if shortcut { classes(cluster, &applicable, false) } else { each() };
        let nodes = match addresses.iter().any(|a| a.kind == AddressKind::Node) {
            false => Vec::new(),
            true if shortcut => classes(cluster, &applicable, true),
            true => each(),
        };
        let kubernetes = shortcut && !cluster.uses_calico() && cluster.host_endpoints.is_empty();
        let families = PodFamilies::new(cluster);
        let pod_free = PodFree::new(cluster);
        let mut matrices = Vec::with_capacity(cuts.probes.len());
        let (mut to_address, mut from_address, mut between) = (Vec::new(), Vec::new(), Vec::new());
        for probe in &cuts.probes {
            let mut matrix = index.matrix(probe.port, probe.protocol);
            families.keep_pairs(&mut matrix.rows, probe.protocol.families());
            matrices.push(matrix);
            tick();
            let (to, from): (Vec<_>, Vec<_>) = addresses
                .iter()
                .map(|a| {
                    tick();
                    let (mut to, mut from) = match (kubernetes, a.kind) {
                        (true, AddressKind::Outside) => {
                            kubernetes_sides(cluster, &outside, &applicable, &pod_free, a.address, probe)
                        }
                        (false, AddressKind::Outside) => decided_sides(cluster, &outside, a.address, probe),
                        // Nodes always through the engine: traffic between a pod and its own
                        // node follows rules of its own that a shortcut would have to repeat.
                        (_, AddressKind::Node) => decided_sides(cluster, &nodes, a.address, probe),
                    };
                    let able = families.pods(probe.protocol.families().intersect(Families::of(a.address)));
                    to.intersect_with(&able);
                    from.intersect_with(&able);
                    (to, from)
                })
                .unzip();
            to_address.push(to);
            from_address.push(from);
            between.push(addresses_between(cluster, &addresses, probe));
        }
        let sides = index.kept_sides();
        debug_assert!(!how.keep_sides || sides.len() == cuts.probes.len(), "one matrix, one sides per probe");
        Connectivity { probes: cuts.probes, matrices, addresses, to_address, from_address, between, applicable, sides }
    }

    /// Units of work `compute` reports, for a progress bar.
    pub fn work(cluster: &Cluster, cuts: &Cuts) -> u64 {
        (cuts.probes.len() * (1 + addresses(cluster, &cuts.pieces).len())) as u64
    }

    /// The probes on which `src` may open a connection to `dst` (two different pods).
    pub fn pair(&self, src: PodId, dst: PodId) -> Vec<Probe> {
        let on = self.matrices.iter().zip(&self.probes).filter(|(m, _)| m.allowed(src, dst));
        on.map(|(_, p)| *p).collect()
    }

    /// The address endpoint of this name.
    pub fn address(&self, name: &str) -> Option<usize> {
        self.addresses.iter().position(|a| a.name == name)
    }
}

/// How [`Connectivity::compute_with`] works: pods in classes against addresses (or each pod
/// through the engine), and whether the matrices' sides are kept.
#[derive(Clone, Copy)]
struct Shortcuts {
    classes: bool,
    keep_sides: bool,
}

/// The pieces of the outside world, then each node (at its first address) and each host
/// endpoint that stands at no node's address.
pub fn addresses(cluster: &Cluster, pieces: &[Piece]) -> Vec<Address> {
    let mut out: Vec<Address> = pieces
        .iter()
        .map(|p| Address { name: p.to_string(), address: p.address, kind: AddressKind::Outside })
        .collect();
    for n in &cluster.nodes {
        if let Some(&address) = n.addresses.first() {
            out.push(Address { name: format!("node {}", n.name), address, kind: AddressKind::Node });
        }
    }
    for h in &cluster.host_endpoints {
        let Some(&address) = h.ips.first() else { continue };
        if cluster.node_by_ip(address).is_none() {
            out.push(Address { name: format!("host endpoint {}", h.name), address, kind: AddressKind::Node });
        }
    }
    out
}

/// Each address endpoint to each other one through the engine (nodes and host endpoints have
/// policy of their own), except outside to outside.
fn addresses_between(cluster: &Cluster, addresses: &[Address], probe: &Probe) -> Vec<FixedBitSet> {
    let n = addresses.len();
    let sides: Vec<Side> = addresses.iter().map(|a| Side::ip(cluster, a.address)).collect();
    let mut out = vec![FixedBitSet::with_capacity(n); n];
    for (s, row) in out.iter_mut().enumerate() {
        for d in (0..n).filter(|&d| d != s) {
            let (a, b) = (&addresses[s], &addresses[d]);
            // Outside to outside is not the cluster's traffic; a connection needs one family
            // both addresses and the protocol share.
            let shared = [Families::of(a.address), Families::of(b.address), probe.protocol.families()];
            if (a.kind == AddressKind::Outside && b.kind == AddressKind::Outside) || !Families::meet(shared) {
                continue;
            }
            let conn = Connection::new(sides[s], sides[d], probe.port, probe.protocol);
            row.set(d, decide(cluster, &conn).verdict == Verdict::Allow);
        }
    }
    out
}

/// The IP families an end has addresses of: a pod's addresses' (both when it has none), else
/// the family of the address it stands at. A connection needs one its ends and protocol share.
pub fn side_families(cluster: &Cluster, side: &Side) -> Families {
    match (side.pod_id(), side.ip) {
        (Some(p), _) => Families::of_addresses(&cluster.pods[p].ips),
        (None, Some(ip)) => Families::of(ip),
        (None, None) => Families::BOTH,
    }
}

/// The IP families of each pod (its addresses'; both when they are unknown), so that no
/// connection is counted in a family one of its ends has no address of: an IPv4-only pod
/// sends no ICMPv6 and no IPv6 address reaches it.
pub struct PodFamilies {
    v4: FixedBitSet,
    v6: FixedBitSet,
    of: Vec<Families>,
}

impl PodFamilies {
    pub fn new(cluster: &Cluster) -> PodFamilies {
        let n = cluster.pods.len();
        let of: Vec<Families> = cluster.pods.iter().map(|p| Families::of_addresses(&p.ips)).collect();
        let (mut v4, mut v6) = (FixedBitSet::with_capacity(n), FixedBitSet::with_capacity(n));
        for (i, f) in of.iter().enumerate() {
            v4.set(i, f.v4);
            v6.set(i, f.v6);
        }
        PodFamilies { v4, v6, of }
    }

    /// The pods with an address of one of `families`.
    pub(crate) fn pods(&self, families: Families) -> FixedBitSet {
        let mut out = FixedBitSet::with_capacity(self.of.len());
        if families.v4 {
            out.union_with(&self.v4);
        }
        if families.v6 {
            out.union_with(&self.v6);
        }
        out
    }

    /// Keeps in one pod's row or column only the pods it shares a family of `protocol`'s with.
    pub fn keep_line(&self, line: &mut FixedBitSet, pod: PodId, protocol: Families) {
        line.intersect_with(&self.pods(self.of[pod.index()].intersect(protocol)));
    }

    /// Keeps in a pod matrix (`rows[src]` holds the destinations) only the pairs that share a
    /// family of `protocol`'s.
    pub fn keep_pairs(&self, rows: &mut [FixedBitSet], protocol: Families) {
        let masks: Vec<(Families, FixedBitSet)> = [Families::V4, Families::V6, Families::BOTH, Families::NONE]
            .into_iter()
            .map(|f| (f, self.pods(f.intersect(protocol))))
            .collect();
        for (row, f) in rows.iter_mut().zip(&self.of) {
            let family = f.intersect(protocol);
            let (_, mask) = masks.iter().find(|(m, _)| *m == family).expect("every set of families is listed");
            row.intersect_with(mask);
        }
    }
}

/// Pods that an outside address sees alike: the same policies apply to them in each
/// direction and they have the same container ports (named ports). Seen from a node, pods
/// also differ by the node they run on, and a host-network pod is the node itself. Calico
/// rules can also name the pod's own labels and address, so there every pod is its own class.
fn classes(cluster: &Cluster, applicable: &[Vec<Vec<PolicyId>>; 2], by_node: bool) -> Vec<Vec<PodId>> {
    if cluster.uses_calico() || !cluster.host_endpoints.is_empty() {
        return cluster.pod_ids().map(|p| vec![p]).collect();
    }
    let [egress, ingress] = applicable;
    // (egress policies, ingress policies, container ports, host network, node, the pod itself)
    type Key<'a> = (&'a [PolicyId], &'a [PolicyId], &'a [ContainerPort], bool, Option<Placement<'a>>, Option<PodId>);
    let mut by_key: HashMap<Key, Vec<PodId>> = HashMap::new();
    for p in cluster.pod_ids() {
        let pod = &cluster.pods[p];
        let node = by_node.then(|| placement(cluster, p)).flatten();
        let itself = (by_node && pod.host_network).then_some(p);
        by_key
            .entry((&egress[p.index()], &ingress[p.index()], &pod.ports, pod.host_network, node, itself))
            .or_default()
            .push(p);
    }
    by_key.into_values().collect()
}

/// Each class decided at its first pod through the engine's per-connection path, both ways.
pub(crate) fn decided_sides(
    cluster: &Cluster,
    classes: &[Vec<PodId>],
    address: IpAddr,
    probe: &Probe,
) -> (FixedBitSet, FixedBitSet) {
    let n = cluster.pods.len();
    let (mut to, mut from) = (FixedBitSet::with_capacity(n), FixedBitSet::with_capacity(n));
    let other = Side::ip(cluster, address);
    for class in classes {
        let pod = Side::pod(cluster, class[0]);
        let allowed = |src, dst| decide(cluster, &Connection::new(src, dst, probe.port, probe.protocol)).verdict;
        let (t, f) = (allowed(pod, other) == Verdict::Allow, allowed(other, pod) == Verdict::Allow);
        for &p in class {
            to.set(p.index(), t);
            from.set(p.index(), f);
        }
    }
    (to, from)
}

/// Kubernetes policy only: a pod may open (or be opened by) an outside address when that side
/// is not isolated, or one of its policies has a rule that matches the connection (they all
/// allow). No trace, no scan over unrelated policies; a policy whose rules answer alike for
/// every pod ([`PodFree`]) is matched once per address and probe, not once per class.
pub(crate) fn kubernetes_sides(
    cluster: &Cluster,
    classes: &[Vec<PodId>],
    applicable: &[Vec<Vec<PolicyId>>; 2],
    pod_free: &PodFree,
    address: IpAddr,
    probe: &Probe,
) -> (FixedBitSet, FixedBitSet) {
    let n = cluster.pods.len();
    let other = Side::ip(cluster, address);
    let mut sides = [FixedBitSet::with_capacity(n), FixedBitSet::with_capacity(n)];
    for (k, dir) in [Direction::Egress, Direction::Ingress].into_iter().enumerate() {
        // Per policy, its answer once known, for the policies that answer alike for every pod.
        let mut known: Vec<Option<bool>> = vec![None; cluster.policies.len()];
        // Pods of one class have the same policies and ports: one answer serves them all.
        for class in classes {
            let p = class[0];
            let list = &applicable[k][p.index()];
            let pod = Side::pod(cluster, p);
            let conn = match dir {
                Direction::Egress => Connection::new(pod, other, probe.port, probe.protocol),
                Direction::Ingress => Connection::new(other, pod, probe.port, probe.protocol),
            };
            let matched = |pol: PolicyId| {
                let mut rules = cluster.policies[pol].rules(dir).into_iter().flatten();
                rules.any(|r| matching::matches(cluster, r, &conn))
            };
            let mut admits = |pol: &PolicyId| match pod_free.0[k][pol.index()] {
                true => *known[pol.index()].get_or_insert_with(|| matched(*pol)),
                false => matched(*pol),
            };
            let allowed = !cluster.is_policy_subject(p) || list.is_empty() || list.iter().any(&mut admits);
            class.iter().for_each(|&q| sides[k].set(q.index(), allowed));
        }
    }
    let [to, from] = sides;
    (to, from)
}

/// `[egress, ingress][policy]`: whether the policy's rules in that direction match a
/// connection between one of its pods and an address alike for every pod it applies to: no
/// rule looks at the pod's own end (its labels, addresses, named ports or IP version).
pub(crate) struct PodFree(pub [Vec<bool>; 2]);

impl PodFree {
    pub(crate) fn new(cluster: &Cluster) -> PodFree {
        PodFree([Direction::Egress, Direction::Ingress].map(|dir| {
            let alike = |r: &palisade_core::rule::Rule| {
                let own = match dir {
                    Direction::Egress => &r.source,
                    Direction::Ingress => &r.destination,
                };
                r.ip_version.is_none() && !own.has_address() && !own.uses_named_ports()
            };
            cluster.policies.iter().map(|pol| pol.rules(dir).into_iter().flatten().all(alike)).collect()
        }))
    }
}
