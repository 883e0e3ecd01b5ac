//! The API objects Palisade reads, one enum over their kinds, and where each came from.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use palisade_core::field::Locate;
use palisade_core::policy::PolicyKind;

use crate::calico::resource as calico;
use crate::clusterpolicy::resource as cnp;
use crate::kubernetes::stored_pod::StoredPod;

/// The kinds the engine uses.
///
/// A Pod is kept in its stripped form ([`StoredPod`], 536 bytes); kinds larger than a Calico
/// policy (648 bytes) are boxed: the workloads, whose pod templates hold a full `PodSpec` (2-3
/// KB of structs), Node (1.5 KB), Service and the cluster network policies. An enum is as
/// large as its largest variant, and every object of a cluster, most of them pods, would
/// otherwise take that much.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Namespace(core::Namespace),
    Pod(StoredPod),
    Deployment(Box<Deployment>),
    ReplicaSet(Box<ReplicaSet>),
    StatefulSet(Box<StatefulSet>),
    DaemonSet(Box<DaemonSet>),
    Job(Box<Job>),
    CronJob(Box<CronJob>),
    Service(Box<core::Service>),
    EndpointSlice(EndpointSlice),
    Node(Box<core::Node>),
    NetworkPolicy(NetworkPolicy),
    ServiceAccount(core::ServiceAccount),
    CalicoNetworkPolicy(calico::NetworkPolicy),
    CalicoGlobalNetworkPolicy(calico::GlobalNetworkPolicy),
    CalicoStagedNetworkPolicy(calico::StagedNetworkPolicy),
    CalicoStagedGlobalNetworkPolicy(calico::StagedGlobalNetworkPolicy),
    CalicoStagedKubernetesNetworkPolicy(calico::StagedKubernetesNetworkPolicy),
    CalicoTier(calico::Tier),
    CalicoNetworkSet(calico::NetworkSet),
    CalicoGlobalNetworkSet(calico::GlobalNetworkSet),
    CalicoHostEndpoint(calico::HostEndpoint),
    ClusterNetworkPolicy(Box<cnp::ClusterNetworkPolicy>),
    AdminNetworkPolicy(Box<cnp::AdminNetworkPolicy>),
    BaselineAdminNetworkPolicy(Box<cnp::BaselineAdminNetworkPolicy>),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::Pod(_) => "Pod",
            Object::Deployment(_) => "Deployment",
            Object::ReplicaSet(_) => "ReplicaSet",
            Object::StatefulSet(_) => "StatefulSet",
            Object::DaemonSet(_) => "DaemonSet",
            Object::Job(_) => "Job",
            Object::CronJob(_) => "CronJob",
            Object::Service(_) => "Service",
            Object::EndpointSlice(_) => "EndpointSlice",
            Object::Node(_) => "Node",
            Object::NetworkPolicy(_) => "NetworkPolicy",
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::CalicoNetworkPolicy(_) => "Calico NetworkPolicy",
            Object::CalicoGlobalNetworkPolicy(_) => "GlobalNetworkPolicy",
            Object::CalicoStagedNetworkPolicy(_) => "StagedNetworkPolicy",
            Object::CalicoStagedGlobalNetworkPolicy(_) => "StagedGlobalNetworkPolicy",
            Object::CalicoStagedKubernetesNetworkPolicy(_) => "StagedKubernetesNetworkPolicy",
            Object::CalicoTier(_) => "Tier",
            Object::CalicoNetworkSet(_) => "NetworkSet",
            Object::CalicoGlobalNetworkSet(_) => "GlobalNetworkSet",
            Object::CalicoHostEndpoint(_) => "HostEndpoint",
            Object::ClusterNetworkPolicy(_) => "ClusterNetworkPolicy",
            Object::AdminNetworkPolicy(_) => "AdminNetworkPolicy",
            Object::BaselineAdminNetworkPolicy(_) => "BaselineAdminNetworkPolicy",
        }
    }
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::ReplicaSet(o) => &o.metadata,
            Object::StatefulSet(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
            Object::Job(o) => &o.metadata,
            Object::CronJob(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
            Object::ServiceAccount(o) => &o.metadata,
            Object::CalicoNetworkPolicy(o) => &o.metadata,
            Object::CalicoGlobalNetworkPolicy(o) => &o.metadata,
            Object::CalicoStagedNetworkPolicy(o) => &o.metadata,
            Object::CalicoStagedGlobalNetworkPolicy(o) => &o.metadata,
            Object::CalicoStagedKubernetesNetworkPolicy(o) => &o.metadata,
            Object::CalicoTier(o) => &o.metadata,
            Object::CalicoNetworkSet(o) => &o.metadata,
            Object::CalicoGlobalNetworkSet(o) => &o.metadata,
            Object::CalicoHostEndpoint(o) => &o.metadata,
            Object::ClusterNetworkPolicy(o) => &o.metadata,
            Object::AdminNetworkPolicy(o) => &o.metadata,
            Object::BaselineAdminNetworkPolicy(o) => &o.metadata,
        }
    }
    /// Whether the object is a policy (of any kind, staged included).
    pub fn is_policy(&self) -> bool {
        matches!(
            self,
            Object::NetworkPolicy(_)
                | Object::CalicoNetworkPolicy(_)
                | Object::CalicoGlobalNetworkPolicy(_)
                | Object::CalicoStagedNetworkPolicy(_)
                | Object::CalicoStagedGlobalNetworkPolicy(_)
                | Object::CalicoStagedKubernetesNetworkPolicy(_)
                | Object::ClusterNetworkPolicy(_)
                | Object::AdminNetworkPolicy(_)
                | Object::BaselineAdminNetworkPolicy(_)
        )
    }
    pub fn is_namespaced(&self) -> bool {
        !matches!(
            self,
            Object::Namespace(_)
                | Object::Node(_)
                | Object::CalicoGlobalNetworkPolicy(_)
                | Object::CalicoStagedGlobalNetworkPolicy(_)
                | Object::CalicoTier(_)
                | Object::CalicoGlobalNetworkSet(_)
                | Object::CalicoHostEndpoint(_)
                | Object::ClusterNetworkPolicy(_)
                | Object::AdminNetworkPolicy(_)
                | Object::BaselineAdminNetworkPolicy(_)
        )
    }
}

/// One object and where it came from.
#[derive(Clone)]
pub struct Input {
    pub object: Object,
    pub locate: Arc<dyn Locate>,
}

impl Input {
    /// How problems name this object (`Problem::object`): `NetworkPolicy x/p`, `Tier t`.
    pub fn label(&self, opts: &BuildOptions) -> String {
        let m = self.object.metadata();
        let ns = match self.object.is_namespaced() {
            true => m.namespace.clone().or_else(|| opts.default_namespace.clone()),
            false => None,
        };
        object_label(self.object.kind(), ns.as_deref(), m.name.as_deref().unwrap_or_default())
    }
}

#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Namespace for namespaced objects that name none (as `kubectl apply -n`).
    pub default_namespace: Option<String>,
    /// DNS facts (name to addresses, as A/AAAA answers) that decide ClusterNetworkPolicy
    /// `domainNames` peers; without one for an address, such a peer does not match it.
    pub dns: BTreeMap<String, Vec<std::net::IpAddr>>,
}

/// An object that passed the metadata checks, with its resolved namespace.
pub(crate) struct Item<'a> {
    pub(crate) input: &'a Input,
    pub(crate) name: String,
    pub(crate) namespace: Option<String>,
}

/// How problems name an object: `NetworkPolicy ns/name`, `Tier name`.
pub(crate) fn object_label(kind: &str, ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Kubernetes, Calico and Calico global policies: the enforced policy kinds the agent's
/// patches take (cluster network policies, which depend on Nodes and tiers, go through a full build).
pub fn enforced_policy_kind(o: &Object) -> Option<PolicyKind> {
    match o {
        Object::NetworkPolicy(_) => Some(PolicyKind::Kubernetes),
        Object::CalicoNetworkPolicy(_) => Some(PolicyKind::Calico),
        Object::CalicoGlobalNetworkPolicy(_) => Some(PolicyKind::CalicoGlobal),

        _ => None,
    }
}

/// Whether a change of this object can be followed by what it touches (a Pod or an enforced
/// policy kind, see [`enforced_policy_kind`]; one list, `palisade_core::change::FOLLOWED_KINDS`,
/// which the nftables side reads too); any other object takes a full build.
pub fn followed_by_patch(o: &Object) -> bool {
    palisade_core::change::FOLLOWED_KINDS.contains(&o.kind())
}

/// Counts objects by kind, for summaries.
pub fn count_kinds(inputs: &[Input]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for i in inputs {
        *m.entry(i.object.kind()).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One object of every kind (contents do not matter: only the variant does).
    fn one_of_each() -> Vec<Object> {
        fn d<T: Default>() -> T {
            T::default()
        }
        vec![
            Object::Namespace(d()),
            Object::Pod(d()),
            Object::Deployment(d()),
            Object::ReplicaSet(d()),
            Object::StatefulSet(d()),
            Object::DaemonSet(d()),
            Object::Job(d()),
            Object::CronJob(d()),
            Object::Service(d()),
            Object::EndpointSlice(d()),
            Object::Node(d()),
            Object::NetworkPolicy(d()),
            Object::ServiceAccount(d()),
            Object::CalicoNetworkPolicy(d()),
            Object::CalicoGlobalNetworkPolicy(d()),
            Object::CalicoStagedNetworkPolicy(d()),
            Object::CalicoStagedGlobalNetworkPolicy(d()),
            Object::CalicoStagedKubernetesNetworkPolicy(d()),
            Object::CalicoTier(d()),
            Object::CalicoNetworkSet(d()),
            Object::CalicoGlobalNetworkSet(d()),
            Object::CalicoHostEndpoint(d()),
            Object::ClusterNetworkPolicy(d()),
            Object::AdminNetworkPolicy(d()),
            Object::BaselineAdminNetworkPolicy(d()),
        ]
    }

    #[test]
    fn the_followed_kinds_are_the_pod_and_the_enforced_policy_kinds() {
        for o in one_of_each() {
            let expected = matches!(o, Object::Pod(_)) || enforced_policy_kind(&o).is_some();
            assert_eq!(followed_by_patch(&o), expected, "{}", o.kind());
        }
    }
}
