//! What changes between two policy sets: connections gained and lost, by workload pair and port.

use std::collections::{BTreeMap, HashMap};

use fixedbitset::FixedBitSet;

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

/// Endpoints by name across both versions, so that the same pod in two inputs is one endpoint.
#[derive(Default)]
struct Space {
    names: Vec<String>,
    /// The workload (or `ip:BLOCK`) each endpoint belongs to.
    workloads: Vec<String>,
    index: HashMap<String, usize>,
}

impl Space {
    fn add(&mut self, name: String, workload: String) -> usize {
        if let Some(&i) = self.index.get(&name) {
            return i;
        }
        self.names.push(name.clone());
        self.workloads.push(workload);
        self.index.insert(name, self.names.len() - 1);
        self.names.len() - 1
    }
}

impl Version<'_> {
    /// Each pod and each address block of this version, as endpoints of `space`.
    fn place(&self, space: &mut Space) -> (Vec<usize>, Vec<usize>) {
        let (c, w) = (self.cluster, self.workloads);
        let pods = (0..c.pods.len()).map(|p| space.add(c.pod_key(p), w.key(c, w.of_pod[p]))).collect();
        let blocks = self
            .conn
            .externals
            .iter()
            .map(|e| space.add(format!("ip:{}", e.block), format!("ip:{}", e.block)))
            .collect();
        (pods, blocks)
    }

    /// Every allowed connection on probe `i` between two different endpoints, as rows of `space`.
    fn rows(&self, i: usize, n: usize, (pods, blocks): &(Vec<usize>, Vec<usize>)) -> Vec<FixedBitSet> {
        let mut rows = vec![FixedBitSet::with_capacity(n); n];
        let conn = self.conn;
        for (s, row) in conn.matrices[i].rows.iter().enumerate() {
            row.ones().filter(|&d| d != s).for_each(|d| rows[pods[s]].insert(pods[d]));
        }
        for (e, set) in conn.to_external[i].iter().enumerate() {
            set.ones().for_each(|p| rows[pods[p]].insert(blocks[e]));
        }
        for (e, set) in conn.from_external[i].iter().enumerate() {
            set.ones().for_each(|p| rows[blocks[e]].insert(pods[p]));
        }
        rows
    }
}

/// Compares two versions; both connectivities must use the same probes ([`crate::probe::probes_of`]).
pub fn diff(old: &Version, new: &Version) -> Diff {
    let mut space = Space::default();
    let (new_ids, old_ids) = (new.place(&mut space), old.place(&mut space));
    let n = space.names.len();
    let mut changes: [Changes; 2] = Default::default();
    for (i, probe) in new.conn.probes.iter().enumerate() {
        let (before, after) = (old.rows(i, n, &old_ids), new.rows(i, n, &new_ids));
        for (src, (b, a)) in before.iter().zip(&after).enumerate() {
            for (k, (has, lacks)) in [(a, b), (b, a)].into_iter().enumerate() {
                for dst in has.difference(lacks) {
                    let key = (space.workloads[src].clone(), space.workloads[dst].clone());
                    let entry = changes[k].entry(key).or_insert_with(|| {
                        let example = (
                            space.names[src].clone(),
                            space.names[dst].clone(),
                            format!("{}/{}", probe.port, probe.protocol),
                        );
                        (BTreeMap::new(), example)
                    });
                    *entry.0.entry(*probe).or_default() += 1;
                }
            }
        }
    }
    let [gained, lost] = changes.map(|c| group(c, &new.conn.probes));
    Diff { gained, lost }
}

/// (from workload, to workload) -> pod pairs per probe, and one example pair.
type Changes = BTreeMap<(String, String), (BTreeMap<Probe, usize>, (String, String, String))>;

fn group(by: Changes, all: &[Probe]) -> Vec<Group> {
    by.into_iter()
        .map(|((from, to), (counts, example))| {
            let probes: Vec<Probe> = counts.keys().copied().collect();
            let ports = describe(all, &probes);
            let pairs = counts.into_iter().map(|(p, n)| (p.to_string(), n)).collect();
            Group { from, to, ports, pairs, example }
        })
        .collect()
}
