//! The kinds Palisade reads from a cluster: what the engine models (namespaces, pods, nodes,
//! service accounts, Services, EndpointSlices, NetworkPolicies), sig-network's cluster-scoped
//! policies and Calico's `projectcalico.org/v3` kinds. `deploy/`'s ClusterRoles grant exactly
//! these (a test holds them to this list).

use kube::discovery::ApiResource;

/// One kind as the API serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind {
    /// API group, empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The lowercase plural in URLs and RBAC rules.
    pub plural: &'static str,
    pub namespaced: bool,
    /// Whether every cluster serves it (else discovery decides whether it is read).
    pub always: bool,
}

impl Kind {
    /// `v1` for the core group, else `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// kube-rs' description of the resource, for a dynamic `Api`.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.into(),
            version: self.version.into(),
            api_version: self.api_version(),
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.api_version(), self.kind)
    }
}

const fn k(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    always: bool,
) -> Kind {
    Kind { group, version, kind, plural, namespaced, always }
}

/// Calico's group as its API server serves it (`calicoctl` and kubectl write these).
pub const CALICO_GROUP: &str = "projectcalico.org";
/// Where Calico stores its objects as CRDs; served alone, it means the Calico API server is
/// missing and the policies cannot be read as written.
pub const CALICO_CRD_GROUP: &str = "crd.projectcalico.org";
/// sig-network's cluster-scoped policy group.
pub const POLICY_GROUP: &str = "policy.networking.k8s.io";

/// Every kind read, in the order the engine builds them (namespaces first).
pub const KINDS: &[Kind] = &[
    k("", "v1", "Namespace", "namespaces", false, true),
    k("", "v1", "Pod", "pods", true, true),
    k("", "v1", "Node", "nodes", false, true),
    k("", "v1", "ServiceAccount", "serviceaccounts", true, true),
    k("", "v1", "Service", "services", true, true),
    k("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true, true),
    k("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true, true),
    k(POLICY_GROUP, "v1alpha2", "ClusterNetworkPolicy", "clusternetworkpolicies", false, false),
    k(POLICY_GROUP, "v1alpha1", "AdminNetworkPolicy", "adminnetworkpolicies", false, false),
    k(POLICY_GROUP, "v1alpha1", "BaselineAdminNetworkPolicy", "baselineadminnetworkpolicies", false, false),
    k(CALICO_GROUP, "v3", "Tier", "tiers", false, false),
    k(CALICO_GROUP, "v3", "NetworkPolicy", "networkpolicies", true, false),
    k(CALICO_GROUP, "v3", "GlobalNetworkPolicy", "globalnetworkpolicies", false, false),
    k(CALICO_GROUP, "v3", "StagedNetworkPolicy", "stagednetworkpolicies", true, false),
    k(CALICO_GROUP, "v3", "StagedGlobalNetworkPolicy", "stagedglobalnetworkpolicies", false, false),
    k(CALICO_GROUP, "v3", "StagedKubernetesNetworkPolicy", "stagedkubernetesnetworkpolicies", true, false),
    k(CALICO_GROUP, "v3", "NetworkSet", "networksets", true, false),
    k(CALICO_GROUP, "v3", "GlobalNetworkSet", "globalnetworksets", false, false),
    k(CALICO_GROUP, "v3", "HostEndpoint", "hostendpoints", false, false),
];

/// The Events API the agent writes to (to report refused objects): `events.k8s.io/v1`.
pub const EVENTS: Kind = k("events.k8s.io", "v1", "Event", "events", true, true);
