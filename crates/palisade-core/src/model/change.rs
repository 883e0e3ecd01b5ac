//! Changes to a built cluster: pods and policies that come and go (the store's shortcuts;
//! `palisade-ingest::patch` works them out), and what a store reports a change touched
//! ([`Touched`]: objects by key, the part of the model each feeds).

use std::collections::BTreeMap;

use crate::model::cluster::{Pod, PodId, PolicyId};
use crate::model::policy::Policy;

/// Pod objects that came, changed or went, applied to a built cluster without building it
/// again (the agent's path for pod churn).
#[derive(Default)]
pub struct PodPatch {
    /// Pods that leave (gone, or replaced by a new version).
    pub remove: Vec<PodId>,
    pub add: Vec<Pod>,
}

/// Enforced policy objects that came, changed or went, applied to a built cluster without
/// building it again (the agent's path for a policy edit).
#[derive(Default)]
pub struct PolicyPatch {
    /// Indexes in `Cluster::policies` of the policies that leave.
    pub remove: Vec<PolicyId>,
    pub add: Vec<Policy>,
}

/// The object kinds (as `palisade_ingest::Object::kind` names them) whose changes the
/// incremental paths follow, the store's patch and `Compiled::sync` alike: pods, and the policy
/// kinds compiled group by group (Kubernetes, Calico and Calico global policies). Staged
/// policies, cluster network policies (their tiers), workloads, ServiceAccounts and everything
/// else take the full build and compile.
pub const FOLLOWED_KINDS: [&str; 4] = ["Pod", "NetworkPolicy", "Calico NetworkPolicy", "GlobalNetworkPolicy"];

/// How a store names an object: kind (`Pod`, `NetworkPolicy`, `GlobalNetworkPolicy`, ...),
/// namespace (the default namespace for namespaced objects that name none; `None` for
/// cluster-scoped kinds) and name. `palisade_ingest::store::key` gives an object's key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    /// Whether changes of this object's kind are followed by what they touch
    /// ([`FOLLOWED_KINDS`]).
    pub fn followed(&self) -> bool {
        FOLLOWED_KINDS.contains(&self.kind)
    }
}

/// What a change did to one object, between two `finish`es of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Came,
    Changed,
    Went,
}

impl Change {
    /// Two changes to one object in a row as one (`None`: it came and went, nothing is left).
    pub fn then(self, next: Change) -> Option<Change> {
        match (self, next) {
            (Change::Came, Change::Went) => None,
            (Change::Came, _) => Some(Change::Came),
            (Change::Went, Change::Came | Change::Changed) => Some(Change::Changed),
            (_, next) => Some(next),
        }
    }
}

/// The part of the model an object kind feeds (a workload stands for pods, an EndpointSlice
/// for its Service, a ServiceAccount for its pods' Calico labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Area {
    Pods,
    Policies,
    Namespaces,
    Tiers,
    Sets,
    Services,
    Nodes,
    HostEndpoints,
}

/// Objects that came, changed or went, by key, with the area of the model each feeds: what a
/// store's `finish` reports, and what `palisade_nft::Compiled::sync` follows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub objects: BTreeMap<ObjectKey, (Area, Change)>,
}

impl Touched {
    /// One object's change.
    pub fn one(key: ObjectKey, area: Area, change: Change) -> Touched {
        Touched { objects: BTreeMap::from([(key, (area, change))]) }
    }

    /// Adds a later change to the same or other objects.
    pub fn merge(&mut self, later: Touched) {
        for (key, (area, change)) in later.objects {
            match self.objects.get(&key).map(|(_, c)| c.then(change)) {
                Some(None) => {
                    self.objects.remove(&key);
                }
                Some(Some(c)) => {
                    self.objects.insert(key, (area, c));
                }
                None => {
                    self.objects.insert(key, (area, change));
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The objects of one area that changed, and how.
    pub fn area(&self, area: Area) -> impl Iterator<Item = (&ObjectKey, Change)> {
        self.objects.iter().filter(move |(_, (a, _))| *a == area).map(|(k, (_, c))| (k, *c))
    }
}
