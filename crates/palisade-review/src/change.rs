//! `diff` when only policies changed: the same pods, nodes and everything else on both sides.
//! A pod's egress (ingress) side depends on the policies that apply to it alone, so only the
//! pods a changed policy selects (in either version) can gain or lose a connection, and only
//! in their own rows and columns: those are computed on both sides (each side of the cluster
//! evaluated once per probe, [`Index::lines`]) instead of two whole connectivities.

use std::collections::HashSet;
use std::sync::Arc;

use fixedbitset::FixedBitSet;
use palisade_core::cluster::{Cluster, PodId};
use palisade_core::family::Families;
use palisade_core::index::Index;
use palisade_core::policy::{Direction, Policy};

use crate::connectivity::{addresses, decided_sides, kubernetes_sides, Address, AddressKind, Cuts, PodFamilies};
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
    let touched = touched(old, new);
    let addresses = addresses(new, &cuts.pieces);
    let mut space = Endpoints::default();
    // As the whole comparison places them: the new version's endpoints first (the old
    // version's are the same ones).
    let (pods, ends) = place(new, workloads, &addresses, &mut space);
    debug_assert!(pods.iter().enumerate().all(|(i, &p)| i == p), "pods are the first endpoints");
    let (mut before, mut after) = (Side::new(old, &touched), Side::new(new, &touched));
    let mut changes: [Changes; 2] = Default::default();
    for probe in &cuts.probes {
        let (b, a) = (before.lines(probe, &addresses), after.lines(probe, &addresses));
        let mut pairs = differences(new, &touched, &b, &a, &ends);
        pairs.sort_unstable();
        pairs.into_iter().for_each(|(src, k, dst)| tally(&mut changes[k], &space, src, dst, *probe));
    }
    let [gained, lost] = changes.map(|c| group(c, &cuts.probes, &space));
    Some(Diff { gained, lost })
}

/// Whether everything that decides connections other than the policies is the same on both
/// sides (pods in the same order, labels, addresses, nodes, tiers, network sets, DNS facts),
/// and no policy can apply to an address endpoint (a Calico host endpoint: a policy change
/// would then alter connections between nodes and the world too). The model compares by its
/// `Debug` form, which shows every field.
fn same_but_policies(old: &Cluster, new: &Cluster) -> bool {
    if !old.host_endpoints.is_empty() || !new.host_endpoints.is_empty() {
        return false;
    }
    let rest = |c: &Cluster| {
        format!(
            "{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}",
            c.namespaces,
            c.pods,
            c.nodes,
            c.services,
            c.tiers,
            c.network_sets,
            c.host_endpoints,
            c.calico_labels,
            c.dns
        )
    };
    old.pods.len() == new.pods.len() && rest(old) == rest(new)
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
fn touched(old: &Cluster, new: &Cluster) -> Vec<PodId> {
    let meanings = |c: &Cluster| c.policies.iter().map(meaning).collect::<Vec<_>>();
    let (a, b) = (meanings(old), meanings(new));
    let (in_a, in_b): (HashSet<&String>, HashSet<&String>) = (a.iter().collect(), b.iter().collect());
    let mut pods = FixedBitSet::with_capacity(new.pods.len());
    for (cluster, own, other) in [(old, &a, &in_b), (new, &b, &in_a)] {
        let mut index = Index::new(cluster);
        for (pol, m) in cluster.policies.iter().zip(own) {
            if !other.contains(m) {
                pods.union_with(&index.label_pods(&pol.subject));
            }
        }
    }
    pods.ones().filter(|&p| p < new.pods.len()).map(PodId::new).collect()
}

/// One version around the touched pods.
struct Side<'c> {
    cluster: &'c Cluster,
    index: Index<'c>,
    touched: &'c [PodId],
    families: PodFamilies,
    applicable: [Vec<Vec<palisade_core::cluster::PolicyId>>; 2],
}

/// On one probe: the touched pods' rows and columns, and each one's connections to (first)
/// and from each address endpoint.
struct Lines {
    rows: Vec<FixedBitSet>,
    columns: Vec<FixedBitSet>,
    to: Vec<FixedBitSet>,
    from: Vec<FixedBitSet>,
}

impl<'c> Side<'c> {
    fn new(cluster: &'c Cluster, touched: &'c [PodId]) -> Side<'c> {
        let mut index = Index::new(cluster);
        let applicable = [index.applicable(Direction::Egress), index.applicable(Direction::Ingress)];
        Side { cluster, index, touched, families: PodFamilies::new(cluster), applicable }
    }

    /// As [`crate::connectivity::Connectivity::compute`] decides them for these pods.
    fn lines(&mut self, probe: &Probe, addresses: &[Address]) -> Lines {
        let (mut rows, mut columns) = self.index.lines(probe.port, probe.protocol, self.touched, self.touched);
        let protocol = probe.protocol.families();
        for (line, &p) in rows.iter_mut().chain(columns.iter_mut()).zip(self.touched.iter().cycle()) {
            self.families.keep_line(line, p, protocol);
        }
        let c = self.cluster;
        let kubernetes = !c.uses_calico() && c.host_endpoints.is_empty();
        let each: Vec<Vec<PodId>> = self.touched.iter().map(|&p| vec![p]).collect();
        let (mut to, mut from) = (Vec::new(), Vec::new());
        for a in addresses {
            let (mut t, mut f) = match (kubernetes, a.kind) {
                (true, AddressKind::Outside) => kubernetes_sides(c, &each, &self.applicable, a.address, probe),
                _ => decided_sides(c, &each, a.address, probe),
            };
            let able = self.families.pods(protocol.intersect(Families::of(a.address)));
            t.intersect_with(&able);
            f.intersect_with(&able);
            to.push(t);
            from.push(f);
        }
        Lines { rows, columns, to, from }
    }
}

/// Every endpoint pair whose connection differs, as `(source, 0 gained / 1 lost,
/// destination)` in endpoint numbers: pods are their own index, address endpoint `e` is `ends[e]`.
fn differences(
    cluster: &Cluster,
    touched: &[PodId],
    before: &Lines,
    after: &Lines,
    ends: &[usize],
) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let is_touched = {
        let mut set = FixedBitSet::with_capacity(cluster.pods.len());
        touched.iter().for_each(|p| set.insert(p.index()));
        set
    };
    for (k, &p) in touched.iter().enumerate() {
        let s = p.index();
        // A pod to itself never leaves it, unless it stands for a workload's replicas.
        let replicas = cluster.pods[p].is_replica_group();
        for (g, (has, lacks)) in
            [(&after.rows[k], &before.rows[k]), (&before.rows[k], &after.rows[k])].into_iter().enumerate()
        {
            out.extend(has.difference(lacks).filter(|&d| d != s || replicas).map(|d| (s, g, d)));
        }
        // Sources that are not touched themselves (a touched source's row covers the pair).
        for (g, (has, lacks)) in
            [(&after.columns[k], &before.columns[k]), (&before.columns[k], &after.columns[k])].into_iter().enumerate()
        {
            out.extend(has.difference(lacks).filter(|&o| !is_touched.contains(o)).map(|o| (o, g, s)));
        }
        for (e, &end) in ends.iter().enumerate() {
            for (g, (has, lacks)) in [(&after, &before), (&before, &after)].into_iter().enumerate() {
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
