//! The resources the fake serves: group, version, kind, plural and scope, and which API groups
//! (group/version) are served, as discovery reports them.

use std::collections::BTreeSet;

/// One resource type, as an API server's discovery describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group, empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The lowercase plural in URLs (`networkpolicies`).
    pub plural: &'static str,
    pub namespaced: bool,
}

impl Resource {
    /// `v1` for the core group, else `group/version`.
    pub fn api_version(&self) -> String {
        group_version(self.group, self.version)
    }
}

/// `v1` for the core group, else `group/version`.
pub fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

const fn r(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> Resource {
    Resource { group, version, kind, plural, namespaced }
}

/// Calico's kinds; served under `projectcalico.org/v3` by Calico's API server and under
/// `crd.projectcalico.org/v1` as its storage CRDs.
const CALICO: &[(&str, &str, bool)] = &[
    ("NetworkPolicy", "networkpolicies", true),
    ("GlobalNetworkPolicy", "globalnetworkpolicies", false),
    ("StagedNetworkPolicy", "stagednetworkpolicies", true),
    ("StagedGlobalNetworkPolicy", "stagedglobalnetworkpolicies", false),
    ("StagedKubernetesNetworkPolicy", "stagedkubernetesnetworkpolicies", true),
    ("Tier", "tiers", false),
    ("NetworkSet", "networksets", true),
    ("GlobalNetworkSet", "globalnetworksets", false),
    ("HostEndpoint", "hostendpoints", false),
];

/// Every resource the fake knows; which of them are served depends on [`Groups`].
pub fn catalog() -> Vec<Resource> {
    let mut all = vec![
        r("", "v1", "Namespace", "namespaces", false),
        r("", "v1", "Pod", "pods", true),
        r("", "v1", "Node", "nodes", false),
        r("", "v1", "ServiceAccount", "serviceaccounts", true),
        r("", "v1", "Service", "services", true),
        r("", "v1", "Event", "events", true),
        r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true),
        r("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true),
        r("events.k8s.io", "v1", "Event", "events", true),
        r("policy.networking.k8s.io", "v1alpha2", "ClusterNetworkPolicy", "clusternetworkpolicies", false),
        r("policy.networking.k8s.io", "v1alpha1", "AdminNetworkPolicy", "adminnetworkpolicies", false),
        r("policy.networking.k8s.io", "v1alpha1", "BaselineAdminNetworkPolicy", "baselineadminnetworkpolicies", false),
    ];
    for (group, version) in [("projectcalico.org", "v3"), ("crd.projectcalico.org", "v1")] {
        all.extend(CALICO.iter().map(|&(kind, plural, namespaced)| r(group, version, kind, plural, namespaced)));
    }
    all
}

/// The group versions served (`v1` for core, else `group/version`).
#[derive(Clone, Debug)]
pub struct Groups(pub BTreeSet<String>);

impl Groups {
    /// A plain cluster: core, discovery, networking and events; no Calico, no policy.networking.
    pub fn kubernetes() -> Self {
        Groups(["v1", "discovery.k8s.io/v1", "networking.k8s.io/v1", "events.k8s.io/v1"].map(String::from).into())
    }
    /// Adds a group version (`projectcalico.org/v3`, `policy.networking.k8s.io/v1alpha2`, ...).
    pub fn with(mut self, group_version: &str) -> Self {
        self.0.insert(group_version.to_string());
        self
    }
    /// Every group version the fake knows.
    pub fn all() -> Self {
        Groups(catalog().iter().map(Resource::api_version).collect())
    }
    pub fn serves(&self, res: &Resource) -> bool {
        self.0.contains(&res.api_version())
    }
}
