//! What changes between two policy sets: connections gained and lost, by workload pair and port.

use std::collections::BTreeMap;

use palisade_core::cluster::Cluster;
use serde::Serialize;

use crate::connectivity::Connectivity;
use crate::probe::{describe, Probe};
use crate::workload::Workloads;

/// One side of the comparison.
pub struct Version<'a> {
    pub cluster: &'a Cluster,
    pub conn: &'a Connectivity,
    pub workloads: &'a Workloads,
}

/// A connection by name, so that the same pod in two inputs is the same endpoint.
type Pair = (String, String, Probe);

#[derive(Debug, Serialize)]
pub struct Group {
    pub from: String,
    pub to: String,
    pub ports: String,
    /// Pod pairs per port.
    pub pairs: BTreeMap<String, usize>,
    /// One pod pair, for a `palisade check`.
    pub example: (String, String, String),
}

#[derive(Debug, Serialize)]
pub struct Diff {
    pub gained: Vec<Group>,
    pub lost: Vec<Group>,
}

impl Version<'_> {
    /// Every allowed connection between two different endpoints, with the workload of each end.
    fn pairs(&self) -> BTreeMap<Pair, (String, String)> {
        let (c, conn, w) = (self.cluster, self.conn, self.workloads);
        let pod = |p: usize| (c.pod_key(p), w.key(c, w.of_pod[p]));
        let block = |e: usize| {
            let b = format!("ip:{}", conn.externals[e].block);
            (b.clone(), b)
        };
        let mut out = BTreeMap::new();
        for (i, probe) in conn.probes.iter().enumerate() {
            for s in 0..c.pods.len() {
                for d in conn.matrices[i].rows[s].ones().filter(|&d| d != s) {
                    let ((a, wa), (b, wb)) = (pod(s), pod(d));
                    out.insert((a, b, *probe), (wa, wb));
                }
            }
            for (e, pods) in conn.to_external[i].iter().enumerate() {
                for p in pods.ones() {
                    let ((a, wa), (b, wb)) = (pod(p), block(e));
                    out.insert((a, b, *probe), (wa, wb));
                }
            }
            for (e, pods) in conn.from_external[i].iter().enumerate() {
                for p in pods.ones() {
                    let ((a, wa), (b, wb)) = (block(e), pod(p));
                    out.insert((a, b, *probe), (wa, wb));
                }
            }
        }
        out
    }
}

/// Compares two versions; both connectivities must use the same probes ([`crate::probe::probes_of`]).
pub fn diff(old: &Version, new: &Version) -> Diff {
    let (before, after) = (old.pairs(), new.pairs());
    let gained = group(after.iter().filter(|(k, _)| !before.contains_key(*k)), &new.conn.probes);
    let lost = group(before.iter().filter(|(k, _)| !after.contains_key(*k)), &old.conn.probes);
    Diff { gained, lost }
}

fn group<'a>(changes: impl Iterator<Item = (&'a Pair, &'a (String, String))>, all: &[Probe]) -> Vec<Group> {
    // (from workload, to workload) -> pod pairs per probe, and one example.
    type Example = (String, String, String);
    let mut by: BTreeMap<(String, String), (BTreeMap<Probe, usize>, Example)> = BTreeMap::new();
    for ((a, b, probe), (wa, wb)) in changes {
        let entry = by
            .entry((wa.clone(), wb.clone()))
            .or_insert_with(|| (BTreeMap::new(), (a.clone(), b.clone(), format!("{}/{}", probe.port, probe.protocol))));
        *entry.0.entry(*probe).or_default() += 1;
    }
    by.into_iter()
        .map(|((from, to), (counts, example))| {
            let probes: Vec<Probe> = counts.keys().copied().collect();
            let ports = describe(all, &probes);
            let pairs = counts.into_iter().map(|(p, n)| (p.to_string(), n)).collect();
            Group { from, to, ports, pairs, example }
        })
        .collect()
}
