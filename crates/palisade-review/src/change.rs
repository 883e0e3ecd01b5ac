//! `diff` when only policies changed: the same pods, nodes and everything else on both sides.
//! A pod's egress (ingress) side depends on the policies that apply to it alone, so only the
//! pods a changed policy selects (in either version) can gain or lose a connection, and only
//! in their own rows and columns. Those pods' own sides are evaluated in both versions; the
//! other pods' sides are the same in both, and are evaluated (once, in the new version) only
//! where the touched pods' sides disagree, instead of two whole connectivities.

use std::collections::HashSet;
use std::sync::Arc;

use fixedbitset::FixedBitSet;
use palisade_core::cluster::{Cluster, PodId, PolicyId};
use palisade_core::family::Families;
use palisade_core::index::{Admitted, Index};
use palisade_core::policy::{Direction, Policy};

use crate::connectivity::{
    addresses, decided_sides, kubernetes_sides, Address, AddressKind, Cuts, PodFamilies, PodFree,
};
use crate::diff::{group, place, tally, Changes, Diff, Endpoints};
use crate::probe::Probe;
use crate::workload::Workloads;

/// The comparison [`crate::diff::diff`] makes, from the touched pods' rows and columns alone;
/// `None` when the two versions differ in more than policies (then compare whole
/// connectivities). Both versions are cut by the same `cuts`.
pub fn diff_policies(old: &Cluster, new: &Cluster, workloads: &Workloads, cuts: &Cuts) -> Option<Diff> {
    if !same_but_policies(old, new) {
        return None;
    }
    let (mut before, mut after) = (Side::new(old), Side::new(new));
    let touched = touched(&mut before, &mut after);
    let addresses = addresses(new, &cuts.pieces);
    let mut space = Endpoints::default();
    // As the whole comparison places them: the new version's endpoints first (the old
    // version's are the same ones).
    let (pods, ends) = place(new, workloads, &addresses, &mut space);
    debug_assert!(pods.iter().enumerate().all(|(i, &p)| i == p), "pods are the first endpoints");
    // Nodes reach their own pods whatever the policies say: the same in both versions.
    let (local_rows, local_columns) = after.index.node_lines(&touched, &touched);
    let around = Around { cluster: new, touched: &touched, local_rows, local_columns };
    let mut changes: [Changes; 2] = Default::default();
    for probe in &cuts.probes {
        let mut pairs = around.pod_pairs(&mut before, &mut after, probe);
        let (b, a) =
            (before.address_lines(&touched, probe, &addresses), after.address_lines(&touched, probe, &addresses));
        pairs.extend(address_differences(&touched, &b, &a, &ends));
        pairs.sort_unstable();
        pairs.into_iter().for_each(|(src, k, dst)| tally(&mut changes[k], &space, src, dst, *probe));
    }
    let [gained, lost] = changes.map(|c| group(c, &cuts.probes, &space));
    Some(Diff { gained, lost })
}

/// Whether everything that decides connections other than the policies is the same on both
/// sides (pods in the same order, labels, addresses, nodes, tiers, network sets, DNS facts),
/// and no policy can apply to an address endpoint (a Calico host endpoint: a policy change
/// would then alter connections between nodes and the world too). Compared field by field
/// (the model's `PartialEq`), not through a printed form.
fn same_but_policies(old: &Cluster, new: &Cluster) -> bool {
    if !old.host_endpoints.is_empty() || !new.host_endpoints.is_empty() {
        return false;
    }
    old.namespaces == new.namespaces
        && old.pods == new.pods
        && old.nodes == new.nodes
        && old.services == new.services
        && old.tiers == new.tiers
        && old.network_sets == new.network_sets
        && old.same_service_accounts(new)
        && old.dns == new.dns
}

/// A policy's meaning: everything but where it was written.
fn meaning(p: &Policy) -> String {
    let mut p = p.clone();
    p.location = None;
    for rule in p.ingress.iter_mut().chain(p.egress.iter_mut()).flatten() {
        let mut written = (*rule.origin.written).clone();
        written.location = None;
        rule.origin.written = Arc::new(written);
    }
    format!("{p:?}")
}

/// The pods a policy of one version that the other lacks (in meaning) selects, on either
/// side: by their labels, more than the policy may apply to, never fewer.
fn touched<'c>(old: &mut Side<'c>, new: &mut Side<'c>) -> Vec<PodId> {
    let meanings = |c: &Cluster| c.policies.iter().map(meaning).collect::<Vec<_>>();
    let (a, b) = (meanings(old.cluster), meanings(new.cluster));
    let (in_a, in_b): (HashSet<&String>, HashSet<&String>) = (a.iter().collect(), b.iter().collect());
    let n = new.cluster.pods.len();
    let mut pods = FixedBitSet::with_capacity(n);
    for (side, own, other) in [(old, &a, &in_b), (new, &b, &in_a)] {
        for (pol, m) in side.cluster.policies.iter().zip(own) {
            if !other.contains(m) {
                pods.union_with(&side.index.label_pods(&pol.subject));
            }
        }
    }
    pods.ones().filter(|&p| p < n).map(PodId::new).collect()
}

/// One version: its index (kept across probes, so selectors and applicable policies are
/// worked out once) and what its address endpoints' shortcut needs.
struct Side<'c> {
    cluster: &'c Cluster,
    index: Index<'c>,
    families: PodFamilies,
    applicable: [Vec<Vec<PolicyId>>; 2],
    pod_free: PodFree,
}

/// On one probe, for each touched pod: its connections to (first) and from each address
/// endpoint.
struct AddressLines {
    to: Vec<FixedBitSet>,
    from: Vec<FixedBitSet>,
}

impl<'c> Side<'c> {
    fn new(cluster: &'c Cluster) -> Side<'c> {
        let mut index = Index::new(cluster);
        debug_assert!(!index.has_hosts(), "host endpoints are compared whole");
        let applicable = [index.applicable(Direction::Egress), index.applicable(Direction::Ingress)];
        Side { cluster, index, families: PodFamilies::new(cluster), applicable, pod_free: PodFree::new(cluster) }
    }

    /// The touched pods' own sides on one probe (egress, ingress; `None` for other pods).
    fn own(&mut self, touched: &FixedBitSet, probe: &Probe) -> [Vec<Admitted>; 2] {
        let (port, protocol) = (probe.port, probe.protocol);
        [Direction::Egress, Direction::Ingress].map(|dir| self.index.admitted(dir, port, protocol, touched))
    }

    /// As [`crate::connectivity::Connectivity::compute`] decides them for these pods.
    fn address_lines(&self, touched: &[PodId], probe: &Probe, addresses: &[Address]) -> AddressLines {
        let protocol = probe.protocol.families();
        let c = self.cluster;
        let kubernetes = !c.uses_calico() && c.host_endpoints.is_empty();
        let each: Vec<Vec<PodId>> = touched.iter().map(|&p| vec![p]).collect();
        let (mut to, mut from) = (Vec::new(), Vec::new());
        for a in addresses {
            let (mut t, mut f) = match (kubernetes, a.kind) {
                (true, AddressKind::Outside) => {
                    kubernetes_sides(c, &each, &self.applicable, &self.pod_free, a.address, probe)
                }
                _ => decided_sides(c, &each, a.address, probe),
            };
            let able = self.families.pods(protocol.intersect(Families::of(a.address)));
            t.intersect_with(&able);
            f.intersect_with(&able);
            to.push(t);
            from.push(f);
        }
        AddressLines { to, from }
    }
}

/// Whether one side's admitted set lets `x` through (`None`: not isolated).
fn admits(side: &Admitted, x: usize) -> bool {
    side.as_ref().is_none_or(|s| s.contains(x))
}

/// Where two versions' admitted sets disagree.
fn disagree(a: &Admitted, b: &Admitted, n: usize) -> FixedBitSet {
    let set = |s: &Admitted| match s {
        Some(s) => (**s).clone(),
        None => {
            let mut all = FixedBitSet::with_capacity(n);
            all.insert_range(..);
            all
        }
    };
    let mut d = set(a);
    d.symmetric_difference_with(&set(b));
    d
}

/// The touched pods, and what no policy decides about them (the same in both versions).
struct Around<'a> {
    cluster: &'a Cluster,
    touched: &'a [PodId],
    /// Per touched pod: the pods it reaches as their node, and the nodes that reach it so.
    local_rows: Vec<FixedBitSet>,
    local_columns: Vec<FixedBitSet>,
}

impl Around<'_> {
    /// Every pod pair whose connection differs on one probe, as `(source, 0 gained / 1 lost,
    /// destination)`. An untouched pod's sides are the same in both versions (the same
    /// policies apply to it), so a touched source's row can differ only where its egress
    /// differs or at a touched destination, and a touched destination's column only where its
    /// ingress differs: the untouched pods' opposite sides are evaluated there alone, once.
    fn pod_pairs(&self, before: &mut Side, after: &mut Side, probe: &Probe) -> Vec<(usize, usize, usize)> {
        let n = self.cluster.pods.len();
        let mut is_touched = FixedBitSet::with_capacity(n);
        self.touched.iter().for_each(|p| is_touched.insert(p.index()));
        let [old_e, old_i] = before.own(&is_touched, probe);
        let [new_e, new_i] = after.own(&is_touched, probe);
        let (mut need_i, mut need_e) = (FixedBitSet::with_capacity(n), FixedBitSet::with_capacity(n));
        for p in self.touched.iter().map(|p| p.index()) {
            need_i.union_with(&disagree(&old_e[p], &new_e[p], n));
            need_e.union_with(&disagree(&old_i[p], &new_i[p], n));
        }
        need_i.difference_with(&is_touched);
        need_e.difference_with(&is_touched);
        let (port, protocol) = (probe.port, probe.protocol);
        let rest_i = after.index.admitted(Direction::Ingress, port, protocol, &need_i);
        let rest_e = after.index.admitted(Direction::Egress, port, protocol, &need_e);
        let families = probe.protocol.families();
        let mut out = Vec::new();
        for (k, &p) in self.touched.iter().enumerate() {
            let s = p.index();
            // Row: a destination's ingress is its own version's when touched, else the one both share.
            let ingress =
                |own: &[Admitted], d: usize| admits(if is_touched.contains(d) { &own[d] } else { &rest_i[d] }, s);
            let row = |e: &[Admitted], i: &[Admitted], d: usize| admits(&e[s], d) && ingress(i, d);
            let mut candidates = disagree(&old_e[s], &new_e[s], n);
            candidates.union_with(&is_touched);
            // A pod to itself never leaves it, unless it stands for a workload's replicas.
            if !self.cluster.pods[p].is_replica_group() {
                candidates.set(s, false);
            }
            candidates.difference_with(&self.local_rows[k]);
            after.families.keep_line(&mut candidates, p, families);
            for d in candidates.ones() {
                let (was, is) = (row(&old_e, &old_i, d), row(&new_e, &new_i, d));
                if was != is {
                    out.push((s, usize::from(was), d));
                }
            }
            // Column: sources that are not touched themselves (a touched source's row covers the pair).
            let column = |i: &[Admitted], o: usize| admits(&i[s], o) && admits(&rest_e[o], s);
            let mut candidates = disagree(&old_i[s], &new_i[s], n);
            candidates.difference_with(&is_touched);
            candidates.difference_with(&self.local_columns[k]);
            after.families.keep_line(&mut candidates, p, families);
            for o in candidates.ones() {
                let (was, is) = (column(&old_i, o), column(&new_i, o));
                if was != is {
                    out.push((o, usize::from(was), s));
                }
            }
        }
        out
    }
}

/// Every pair of a touched pod and an address endpoint whose connection differs, as
/// `(source, 0 gained / 1 lost, destination)` in endpoint numbers: address endpoint `e` is `ends[e]`.
fn address_differences(
    touched: &[PodId],
    before: &AddressLines,
    after: &AddressLines,
    ends: &[usize],
) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for &p in touched {
        let s = p.index();
        for (e, &end) in ends.iter().enumerate() {
            for (g, (has, lacks)) in [(after, before), (before, after)].into_iter().enumerate() {
                if has.to[e].contains(s) && !lacks.to[e].contains(s) {
                    out.push((s, g, end));
                }
                if has.from[e].contains(s) && !lacks.from[e].contains(s) {
                    out.push((end, g, s));
                }
            }
        }
    }
    out
}
