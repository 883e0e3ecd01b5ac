//! Pods grouped into the workloads people think in; every analysis stays exact per pod and
//! only groups when it prints.

use palisade_core::cluster::NsId;
use palisade_core::cluster::{Cluster, PodId};

#[derive(Clone, Debug)]
pub struct Workload {
    pub namespace: NsId,
    /// `deployment/web`, or the pod's name for a pod without a controller.
    pub name: String,
    pub pods: Vec<PodId>,
}

/// Every pod's workload, and the workloads in `namespace/name` order.
#[derive(Clone, Debug)]
pub struct Workloads {
    pub list: Vec<Workload>,
    /// Each pod's workload (by [`PodId::index`]).
    pub of_pod: Vec<usize>,
}

impl Workloads {
    pub fn new(cluster: &Cluster) -> Workloads {
        let mut keyed: std::collections::BTreeMap<(String, String), Vec<PodId>> = Default::default();
        for id in cluster.pods_sorted() {
            let p = &cluster.pods[id];
            let name = match &p.workload {
                Some(w) => format!("{}/{}", w.kind.to_ascii_lowercase(), w.name),
                None => p.name.clone(),
            };
            keyed.entry((cluster.namespaces[p.namespace].name.clone(), name)).or_default().push(id);
        }
        let mut of_pod = vec![0; cluster.pods.len()];
        let list: Vec<Workload> = keyed
            .into_iter()
            .enumerate()
            .map(|(i, ((_, name), pods))| {
                pods.iter().for_each(|&p| of_pod[p.index()] = i);
                Workload { namespace: cluster.pods[pods[0]].namespace, name, pods }
            })
            .collect();
        Workloads { list, of_pod }
    }

    /// `namespace/deployment/web`.
    pub fn key(&self, cluster: &Cluster, w: usize) -> String {
        let wl = &self.list[w];
        format!("{}/{}", cluster.namespaces[wl.namespace].name, wl.name)
    }

    /// Finds a workload by `ns/kind/name`, `ns/name` (a workload or bare pod) or a pod's `ns/pod`.
    pub fn find(&self, cluster: &Cluster, key: &str) -> Option<usize> {
        if let Some(w) = (0..self.list.len()).find(|&w| self.key(cluster, w) == key) {
            return Some(w);
        }
        let (ns, rest) = key.split_once('/')?;
        if let Some(w) = self.list.iter().position(|wl| {
            cluster.namespaces[wl.namespace].name == ns && wl.name.split_once('/').is_some_and(|(_, n)| n == rest)
        }) {
            return Some(w);
        }
        cluster.pod(ns, rest).map(|p| self.of_pod[p.index()])
    }
}
