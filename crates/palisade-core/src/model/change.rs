//! Changes to a built cluster: pods and policies that come and go (the agent's shortcuts;
//! `palisade-ingest::patch` works them out, the enforcer applies them).

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
