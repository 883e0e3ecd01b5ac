//! Selecting a workload's pods by stable labels: the fewest labels (preferring the usual
//! app labels) that select exactly its pods in its namespace, never per-rollout ones.

use std::collections::BTreeMap;

use palisade_core::cluster::Cluster;
use palisade_core::label::is_per_rollout;
use palisade_review::workload::Workloads;

/// Label keys tried first, in this order: the ones people read as "which app".
const PREFERRED: [&str; 6] =
    ["app.kubernetes.io/name", "app", "k8s-app", "name", "app.kubernetes.io/component", "component"];

/// Labels that select workload `w`'s pods and no other pod of its namespace, when some exist;
/// otherwise all its stable labels (and `exact` is false).
pub struct WorkloadSelector {
    pub labels: BTreeMap<String, String>,
    pub exact: bool,
}

pub fn select(cluster: &Cluster, workloads: &Workloads, w: usize) -> WorkloadSelector {
    let wl = &workloads.list[w];
    let first = &cluster.pods[wl.pods[0]].labels;
    // Labels every pod of the workload carries with the same value.
    let common: BTreeMap<String, String> = first
        .iter()
        .filter(|(k, v)| !is_per_rollout(k) && wl.pods.iter().all(|&p| cluster.pods[p].labels.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let others: Vec<&BTreeMap<String, String>> = cluster
        .pod_ids()
        .filter(|&p| cluster.pods[p].namespace == wl.namespace && workloads.of_pod[p.index()] != w)
        .map(|p| &cluster.pods[p].labels)
        .collect();
    let selects_other =
        |sel: &BTreeMap<String, String>| others.iter().any(|l| sel.iter().all(|(k, v)| l.get(k) == Some(v)));
    let mut keys: Vec<&String> = common.keys().collect();
    keys.sort_by_key(|k| (PREFERRED.iter().position(|p| p == k).unwrap_or(PREFERRED.len()), k.len(), k.to_string()));
    let mut chosen = BTreeMap::new();
    for k in keys {
        if !chosen.is_empty() && !selects_other(&chosen) {
            break;
        }
        chosen.insert(k.clone(), common[k].clone());
    }
    let exact = !chosen.is_empty() && !selects_other(&chosen);
    WorkloadSelector { labels: if exact { chosen } else { common }, exact }
}
