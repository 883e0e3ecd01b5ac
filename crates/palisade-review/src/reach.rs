//! What one pod can open (a compromised pod's blast radius), what can open it, and the
//! multi-hop paths through pods it could take over on the way.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use palisade_core::cluster::{Cluster, PodId};
use serde::Serialize;

use crate::connectivity::Connectivity;
use crate::probe::{describe, Probe};
use crate::workload::Workloads;

#[derive(Debug, Serialize)]
pub struct Target {
    /// A workload key, or `ip:BLOCK` for an address block.
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
    /// One shortest path: pods and the ports each step uses.
    pub path: Vec<(String, String)>,
}

/// The other end of each allowed connection, per probe.
fn ends(
    cluster: &Cluster,
    conn: &Connectivity,
    pod: PodId,
    outbound: bool,
) -> Vec<(Option<PodId>, Option<usize>, Probe)> {
    let mut out = Vec::new();
    for (i, probe) in conn.probes.iter().enumerate() {
        let m = &conn.matrices[i];
        for other in (0..cluster.pods.len()).filter(|&o| o != pod) {
            let allowed = if outbound { m.allowed(pod, other) } else { m.allowed(other, pod) };
            if allowed {
                out.push((Some(other), None, *probe));
            }
        }
        let blocks = if outbound { &conn.to_external[i] } else { &conn.from_external[i] };
        for (e, pods) in blocks.iter().enumerate() {
            if pods.contains(pod) {
                out.push((None, Some(e), *probe));
            }
        }
    }
    out
}

/// Every workload and address block `pod` may open (`outbound`) or that may open `pod`.
pub fn reach(cluster: &Cluster, conn: &Connectivity, workloads: &Workloads, pod: PodId, outbound: bool) -> Vec<Target> {
    // name -> (pods of it involved, probes, pods it has)
    let mut by: BTreeMap<String, (BTreeSet<usize>, Vec<Probe>, usize)> = BTreeMap::new();
    for (other, block, probe) in ends(cluster, conn, pod, outbound) {
        let (name, member, of) = match (other, block) {
            (Some(p), _) => {
                let w = workloads.of_pod[p];
                (workloads.key(cluster, w), p, workloads.list[w].pods.len())
            }
            (_, Some(e)) => (format!("ip:{}", conn.externals[e].block), 0, 1),
            _ => unreachable!("an end is a pod or a block"),
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
            Target { name, pods: members.len(), of, ports: describe(&conn.probes, &probes) }
        })
        .collect()
}

/// Breadth-first over pods: each workload first reached within `max` hops from `pod`
/// (following connections outward), with one shortest path to it.
pub fn hops(cluster: &Cluster, conn: &Connectivity, workloads: &Workloads, pod: PodId, max: usize) -> Vec<Hop> {
    let n = cluster.pods.len();
    let mut prev: Vec<Option<(PodId, Vec<Probe>)>> = vec![None; n];
    let mut depth = vec![usize::MAX; n];
    depth[pod] = 0;
    let mut queue = VecDeque::from([pod]);
    while let Some(p) = queue.pop_front() {
        if depth[p] == max {
            continue;
        }
        for next in 0..n {
            if depth[next] != usize::MAX {
                continue;
            }
            let probes: Vec<Probe> = conn.pair(p, next);
            if !probes.is_empty() {
                depth[next] = depth[p] + 1;
                prev[next] = Some((p, probes));
                queue.push_back(next);
            }
        }
    }
    let mut first: BTreeMap<usize, PodId> = BTreeMap::new();
    for p in (0..n).filter(|&p| p != pod && depth[p] != usize::MAX) {
        let w = workloads.of_pod[p];
        let best = first.entry(w).or_insert(p);
        if depth[p] < depth[*best] {
            *best = p;
        }
    }
    let mut out: Vec<Hop> = first
        .into_iter()
        .map(|(w, p)| {
            let mut path = Vec::new();
            let mut at = p;
            while let Some((from, probes)) = &prev[at] {
                path.push((cluster.pod_key(at), describe(&conn.probes, probes)));
                at = *from;
            }
            path.push((cluster.pod_key(pod), String::new()));
            path.reverse();
            Hop { hops: depth[p], workload: workloads.key(cluster, w), path }
        })
        .collect();
    out.sort_by(|a, b| (a.hops, &a.workload).cmp(&(b.hops, &b.workload)));
    out
}
