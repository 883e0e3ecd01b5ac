//! What one endpoint can open (a compromised pod's blast radius, or what the internet reaches),
//! what can open it, and the multi-hop paths through pods it could take over on the way.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use fixedbitset::FixedBitSet;
use palisade_core::cluster::{Cluster, PodId};
use serde::Serialize;

use crate::connectivity::{Address, Connectivity};
use crate::one_pod::PodConnectivity;
use crate::probe::{describe, Probe};
use crate::workload::Workloads;

/// Whose reach: a pod, or an address endpoint of the connectivity (a piece of the outside
/// world, a node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Pod(PodId),
    Address(usize),
}

impl Subject {
    /// `ns/pod`, or the address endpoint's name.
    pub fn name(self, cluster: &Cluster, conn: &Connectivity) -> String {
        match self {
            Subject::Pod(p) => cluster.pod_key(p),
            Subject::Address(e) => conn.addresses[e].name.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Target {
    /// A workload key, or an address endpoint (`outside 0.0.0.0/0`, `node n1`).
    pub name: String,
    /// Pods of that workload involved, out of its pods.
    pub pods: usize,
    pub of: usize,
    pub ports: String,
}

#[derive(Debug, Serialize)]
pub struct Hop {
    pub hops: usize,
    pub workload: String,
    /// One shortest path: the start, then pods and the ports each step uses.
    pub path: Vec<(String, String)>,
}

/// One end of an allowed connection: a pod or an address endpoint.
enum End {
    Pod(PodId),
    Address(usize),
}

/// Pods `subject` may open on probe `i` (`outbound`), or that may open it.
fn pods_of(cluster: &Cluster, conn: &Connectivity, subject: Subject, i: usize, outbound: bool) -> FixedBitSet {
    match subject {
        Subject::Pod(pod) => {
            let m = &conn.matrices[i];
            let mut set = FixedBitSet::with_capacity(cluster.pods.len());
            // Itself only when it stands for a workload's replicas (one replica to another).
            let replicas = cluster.pods[pod].is_replica_group();
            for other in cluster.pod_ids().filter(|&o| o != pod || replicas) {
                set.set(other.index(), if outbound { m.allowed(pod, other) } else { m.allowed(other, pod) });
            }
            set
        }
        Subject::Address(e) if outbound => conn.from_address[i][e].clone(),
        Subject::Address(e) => conn.to_address[i][e].clone(),
    }
}

/// The other end of each allowed connection, per probe: pods and address endpoints.
fn ends(cluster: &Cluster, conn: &Connectivity, subject: Subject, outbound: bool) -> Vec<(End, Probe)> {
    let mut out = Vec::new();
    for (i, probe) in conn.probes.iter().enumerate() {
        out.extend(pods_of(cluster, conn, subject, i, outbound).ones().map(|p| (End::Pod(PodId::new(p)), *probe)));
        match subject {
            Subject::Pod(pod) => {
                let addresses = if outbound { &conn.to_address[i] } else { &conn.from_address[i] };
                for (e, pods) in addresses.iter().enumerate() {
                    if pods.contains(pod.index()) {
                        out.push((End::Address(e), *probe));
                    }
                }
            }
            Subject::Address(a) => {
                let between = &conn.between[i];
                let others = (0..between.len()).filter(|&e| if outbound { between[a][e] } else { between[e][a] });
                out.extend(others.map(|e| (End::Address(e), *probe)));
            }
        }
    }
    out
}

/// Every workload and address endpoint `subject` may open (`outbound`), or that may open it.
pub fn reach(
    cluster: &Cluster,
    conn: &Connectivity,
    workloads: &Workloads,
    subject: Subject,
    outbound: bool,
) -> Vec<Target> {
    let ends = ends(cluster, conn, subject, outbound);
    targets(cluster, workloads, &conn.probes, &conn.addresses, ends)
}

/// [`reach`] for a pod from its own connectivity alone (one row or column of each matrix,
/// as `outbound` says; the same targets as from the whole cluster's).
pub fn reach_pod(cluster: &Cluster, one: &PodConnectivity, workloads: &Workloads, outbound: bool) -> Vec<Target> {
    let mut ends = Vec::new();
    let replicas = cluster.pods[one.pod].is_replica_group();
    for (i, probe) in one.probes.iter().enumerate() {
        let pods = if outbound { &one.row[i] } else { &one.column[i] };
        // Itself only when it stands for a workload's replicas (one replica to another).
        let others = pods.ones().filter(|&p| p != one.pod.index() || replicas);
        ends.extend(others.map(|p| (End::Pod(PodId::new(p)), *probe)));
        let addresses = if outbound { &one.to_address[i] } else { &one.from_address[i] };
        ends.extend(addresses.ones().map(|e| (End::Address(e), *probe)));
    }
    targets(cluster, workloads, &one.probes, &one.addresses, ends)
}

/// The other ends grouped by workload or address endpoint, with the ports of each.
fn targets(
    cluster: &Cluster,
    workloads: &Workloads,
    all: &[Probe],
    addresses: &[Address],
    ends: Vec<(End, Probe)>,
) -> Vec<Target> {
    // name -> (pods of it involved, probes, pods it has)
    let mut by: BTreeMap<String, (BTreeSet<usize>, Vec<Probe>, usize)> = BTreeMap::new();
    for (end, probe) in ends {
        let (name, member, of) = match end {
            End::Pod(p) => {
                let w = workloads.of_pod[p.index()];
                (workloads.key(cluster, w), p.index(), workloads.list[w].pods.len())
            }
            End::Address(e) => (addresses[e].name.clone(), 0, 1),
        };
        let entry = by.entry(name).or_insert_with(|| (BTreeSet::new(), Vec::new(), of));
        entry.0.insert(member);
        if !entry.1.contains(&probe) {
            entry.1.push(probe);
        }
    }
    by.into_iter()
        .map(|(name, (members, mut probes, of))| {
            probes.sort();
            Target { name, pods: members.len(), of, ports: describe(all, &probes) }
        })
        .collect()
}

/// Breadth-first over pods: each workload first reached within `max` hops from `subject`
/// (following connections outward), with one shortest path to it. From an address endpoint
/// the first hop is into the pods it may open.
pub fn hops(cluster: &Cluster, conn: &Connectivity, workloads: &Workloads, subject: Subject, max: usize) -> Vec<Hop> {
    let n = cluster.pods.len();
    // How each pod was first reached: from a pod, or from the start (None), and on which probes.
    let mut prev: Vec<Option<(Option<PodId>, Vec<Probe>)>> = vec![None; n];
    let mut depth = vec![usize::MAX; n];
    let mut queue = VecDeque::new();
    match subject {
        Subject::Pod(p) => {
            depth[p.index()] = 0;
            queue.push_back(p);
        }
        Subject::Address(_) if max > 0 => {
            for p in cluster.pod_ids() {
                let probes: Vec<Probe> = (0..conn.probes.len())
                    .filter(|&i| pods_of(cluster, conn, subject, i, true).contains(p.index()))
                    .map(|i| conn.probes[i])
                    .collect();
                if !probes.is_empty() {
                    (depth[p.index()], prev[p.index()]) = (1, Some((None, probes)));
                    queue.push_back(p);
                }
            }
        }
        Subject::Address(_) => {}
    }
    while let Some(p) = queue.pop_front() {
        if depth[p.index()] == max {
            continue;
        }
        for next in cluster.pod_ids() {
            if depth[next.index()] != usize::MAX {
                continue;
            }
            let probes: Vec<Probe> = conn.pair(p, next);
            if !probes.is_empty() {
                depth[next.index()] = depth[p.index()] + 1;
                prev[next.index()] = Some((Some(p), probes));
                queue.push_back(next);
            }
        }
    }
    let mut first: BTreeMap<usize, PodId> = BTreeMap::new();
    for p in cluster.pod_ids().filter(|&p| Subject::Pod(p) != subject && depth[p.index()] != usize::MAX) {
        let w = workloads.of_pod[p.index()];
        let best = first.entry(w).or_insert(p);
        if depth[p.index()] < depth[best.index()] {
            *best = p;
        }
    }
    let mut out: Vec<Hop> = first
        .into_iter()
        .map(|(w, p)| {
            let mut path = Vec::new();
            let mut at = Some(p);
            while let Some(pod) = at {
                let Some((from, probes)) = &prev[pod.index()] else { break };
                path.push((cluster.pod_key(pod), describe(&conn.probes, probes)));
                at = *from;
            }
            path.push((subject.name(cluster, conn), String::new()));
            path.reverse();
            Hop { hops: depth[p.index()], workload: workloads.key(cluster, w), path }
        })
        .collect();
    out.sort_by(|a, b| (a.hops, &a.workload).cmp(&(b.hops, &b.workload)));
    out
}
