//! What changes between two policy sets: connections gained and lost, by workload pair and port,
//! between pods, pieces of the outside world and nodes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fixedbitset::FixedBitSet;

use palisade_core::cluster::{Cluster, PodId};
use palisade_core::port::Protocol;
use serde::Serialize;

use crate::connectivity::{Address, Connectivity};
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
    /// A workload (`ns/deployment/web`), or an address endpoint (`outside 0.0.0.0/0`, `node n1`).
    pub from: String,
    pub to: String,
    pub ports: String,
    /// Endpoint pairs per probe (a stretch of ports such as `81-442/TCP`).
    pub pairs: BTreeMap<String, usize>,
    /// Endpoint pairs with some port gained (lost).
    pub endpoint_pairs: usize,
    /// Connections: each endpoint pair on each port and protocol counts once.
    pub connections: u64,
    /// One connection, as `palisade check` takes it: source, destination (pods by name,
    /// address endpoints by their address), port.
    pub example: (String, String, String),
}

#[derive(Debug, Serialize)]
pub struct Diff {
    pub gained: Vec<Group>,
    pub lost: Vec<Group>,
}

/// Endpoints by name across both versions, so that the same pod in two inputs is one endpoint.
#[derive(Default)]
pub(crate) struct Endpoints {
    pub(crate) names: Vec<String>,
    /// The workload (or the address endpoint itself) each endpoint belongs to.
    workloads: Vec<String>,
    /// What `palisade check` takes for it: `ns/pod`, or the address.
    checkable: Vec<String>,
    /// The ports a pod declares (for examples on a port it serves).
    ports: Vec<Vec<(u16, Protocol)>>,
    index: HashMap<String, usize>,
}

impl Endpoints {
    pub(crate) fn add(
        &mut self,
        name: String,
        workload: String,
        checkable: String,
        ports: Vec<(u16, Protocol)>,
    ) -> usize {
        if let Some(&i) = self.index.get(&name) {
            return i;
        }
        self.names.push(name.clone());
        self.workloads.push(workload);
        self.checkable.push(checkable);
        self.ports.push(ports);
        self.index.insert(name, self.names.len() - 1);
        self.names.len() - 1
    }
}

impl Version<'_> {
    /// Each pod and each address endpoint of this version, as endpoints of `all`.
    fn place(&self, all: &mut Endpoints) -> (Vec<usize>, Vec<usize>) {
        place(self.cluster, self.workloads, &self.conn.addresses, all)
    }

    /// Every allowed connection on probe `i` between two different endpoints, as rows of `all`.
    fn rows(&self, i: usize, n: usize, (pods, addresses): &(Vec<usize>, Vec<usize>)) -> Vec<FixedBitSet> {
        let mut rows = vec![FixedBitSet::with_capacity(n); n];
        let conn = self.conn;
        let c = self.cluster;
        for (s, row) in conn.matrices[i].rows.iter().enumerate() {
            // A pod to itself never leaves it, unless it stands for a workload's replicas.
            let replicas = c.pods[PodId::new(s)].is_replica_group();
            row.ones().filter(|&d| d != s || replicas).for_each(|d| rows[pods[s]].insert(pods[d]));
        }
        for (e, set) in conn.to_address[i].iter().enumerate() {
            set.ones().for_each(|p| rows[pods[p]].insert(addresses[e]));
        }
        for (e, set) in conn.from_address[i].iter().enumerate() {
            set.ones().for_each(|p| rows[addresses[e]].insert(pods[p]));
        }
        for (e, set) in conn.between[i].iter().enumerate() {
            set.ones().for_each(|f| rows[addresses[e]].insert(addresses[f]));
        }
        rows
    }
}

/// Each pod and each address endpoint of a version, as endpoints of `all`.
pub(crate) fn place(
    c: &Cluster,
    w: &Workloads,
    addresses: &[Address],
    all: &mut Endpoints,
) -> (Vec<usize>, Vec<usize>) {
    let pods = c
        .pod_ids()
        .map(|p| {
            let ports = c.pods[p].ports.iter().map(|cp| (cp.port, cp.protocol)).collect();
            all.add(c.pod_key(p), w.key(c, w.of_pod[p.index()]), c.pod_key(p), ports)
        })
        .collect();
    let addresses =
        addresses.iter().map(|a| all.add(a.name.clone(), a.name.clone(), a.address.to_string(), Vec::new())).collect();
    (pods, addresses)
}

/// Compares two versions; both connectivities must come from the same
/// [`Cuts`](crate::connectivity::Cuts).
pub fn diff(old: &Version, new: &Version) -> Diff {
    let mut space = Endpoints::default();
    let (new_ids, old_ids) = (new.place(&mut space), old.place(&mut space));
    let n = space.names.len();
    let mut changes: [Changes; 2] = Default::default();
    for (i, probe) in new.conn.probes.iter().enumerate() {
        let (before, after) = (old.rows(i, n, &old_ids), new.rows(i, n, &new_ids));
        for (src, (b, a)) in before.iter().zip(&after).enumerate() {
            for (k, (has, lacks)) in [(a, b), (b, a)].into_iter().enumerate() {
                has.difference(lacks).for_each(|dst| tally(&mut changes[k], &space, src, dst, *probe));
            }
        }
    }
    let [gained, lost] = changes.map(|c| group(c, &new.conn.probes, &space));
    Diff { gained, lost }
}

/// Counts one endpoint pair gained or lost on one probe. Pairs must come in the order the
/// whole comparison meets them (probe, source, gained before lost, destination): the first
/// pair of the best rank is the example.
pub(crate) fn tally(changes: &mut Changes, space: &Endpoints, src: usize, dst: usize, probe: Probe) {
    let key = (space.workloads[src].clone(), space.workloads[dst].clone());
    let entry = changes.entry(key).or_insert_with(|| (BTreeMap::new(), BTreeSet::new(), (src, dst, probe)));
    *entry.0.entry(probe).or_default() += 1;
    entry.1.insert((src, dst));
    // A port the destination serves makes the best example, then any port someone named (a
    // one-port probe), then a stretch's first port.
    let rank = |(_, d, p): (usize, usize, Probe)| (space.ports[d].contains(&(p.port, p.protocol)), p.port == p.end);
    if rank((src, dst, probe)) > rank(entry.2) {
        entry.2 = (src, dst, probe);
    }
}

/// (from workload, to workload) -> endpoint pairs per probe, the endpoint pairs, and one
/// example connection.
pub(crate) type Changes =
    BTreeMap<(String, String), (BTreeMap<Probe, usize>, BTreeSet<(usize, usize)>, (usize, usize, Probe))>;

pub(crate) fn group(by: Changes, all: &[Probe], space: &Endpoints) -> Vec<Group> {
    by.into_iter()
        .map(|((from, to), (counts, endpoints, (src, dst, probe)))| {
            let example = (
                space.checkable[src].clone(),
                space.checkable[dst].clone(),
                match probe.protocol.has_ports() {
                    true => format!("{}/{}", probe.port, probe.protocol),
                    false => probe.protocol.to_string(),
                },
            );
            let probes: Vec<Probe> = counts.keys().copied().collect();
            let ports = describe(all, &probes);
            let connections = counts.iter().map(|(p, &n)| n as u64 * u64::from(p.end - p.port + 1)).sum();
            let pairs = counts.into_iter().map(|(p, n)| (p.to_string(), n)).collect();
            Group { from, to, ports, pairs, endpoint_pairs: endpoints.len(), connections, example }
        })
        .collect()
}
