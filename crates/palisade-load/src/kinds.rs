//! The kinds each API group that Palisade reads serves, as a cluster's discovery lists them
//! (Kubernetes 1.33 API reference; Calico 3.30 `projectcalico.org/v3` and its CRDs).
//!
//! kubectl maps every object to a served kind before it sends anything, and fails with "no
//! matches for kind" otherwise. In these groups a kind that is not served is almost always a
//! misspelt policy (`Networkpolicy`): ignoring it would drop a policy silently, so it is an
//! error that names the closest served kind. Kinds of other groups are only counted.

/// The groups whose kinds are checked (the core group is `""`).
const READ_GROUPS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "Binding",
            "ComponentStatus",
            "ConfigMap",
            "Endpoints",
            "Event",
            "LimitRange",
            "Namespace",
            "Node",
            "PersistentVolume",
            "PersistentVolumeClaim",
            "Pod",
            "PodTemplate",
            "ReplicationController",
            "ResourceQuota",
            "Secret",
            "Service",
            "ServiceAccount",
        ],
    ),
    ("apps", &["ControllerRevision", "DaemonSet", "Deployment", "ReplicaSet", "StatefulSet"]),
    ("batch", &["CronJob", "Job"]),
    ("discovery.k8s.io", &["EndpointSlice"]),
    ("networking.k8s.io", &["ClusterCIDR", "IPAddress", "Ingress", "IngressClass", "NetworkPolicy", "ServiceCIDR"]),
    ("policy.networking.k8s.io", &["AdminNetworkPolicy", "BaselineAdminNetworkPolicy", "ClusterNetworkPolicy"]),
    ("projectcalico.org", CALICO),
    ("crd.projectcalico.org", CALICO),
];

/// Calico's kinds in both its API group and its storage group (the IPAM kinds and the
/// calicoctl-only `Node` and `WorkloadEndpoint` included, as dumps hold them).
const CALICO: &[&str] = &[
    "BGPConfiguration",
    "BGPFilter",
    "BGPPeer",
    "BlockAffinity",
    "CalicoNodeStatus",
    "ClusterInformation",
    "FelixConfiguration",
    "GlobalNetworkPolicy",
    "GlobalNetworkSet",
    "HostEndpoint",
    "IPAMBlock",
    "IPAMConfig",
    "IPAMConfiguration",
    "IPAMHandle",
    "IPPool",
    "IPReservation",
    "KubeControllersConfiguration",
    "NetworkPolicy",
    "NetworkSet",
    "Node",
    "Profile",
    "StagedGlobalNetworkPolicy",
    "StagedKubernetesNetworkPolicy",
    "StagedNetworkPolicy",
    "Tier",
    "WorkloadEndpoint",
];

/// The group of an `apiVersion` (`""` for `v1`).
pub fn group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The kinds served in `group`, when it is a group Palisade reads.
pub fn served(group: &str) -> Option<&'static [&'static str]> {
    READ_GROUPS.iter().find(|(g, _)| *g == group).map(|(_, kinds)| *kinds)
}

/// Whether `kind` (an object kind or its `XxxList`) is served in the read `group`; `None` when
/// Palisade does not read the group.
pub fn is_served(group: &str, kind: &str) -> Option<bool> {
    let kinds = served(group)?;
    let stem = kind.strip_suffix("List").unwrap_or(kind);
    Some(kinds.contains(&kind) || kinds.contains(&stem))
}

/// The served kind (or list kind) closest to a kind that is not served: the same letters in
/// another case first, else the nearest by edit distance (at most a third of its length).
pub fn closest(group: &str, kind: &str) -> Option<String> {
    let kinds = served(group)?;
    let candidates = kinds.iter().flat_map(|k| [k.to_string(), format!("{k}List")]);
    let lower = kind.to_lowercase();
    let mut best: Option<(usize, String)> = None;
    for c in candidates {
        let d = if c.to_lowercase() == lower { 0 } else { strsim::damerau_levenshtein(&c.to_lowercase(), &lower) + 1 };
        if best.as_ref().is_none_or(|(bd, _)| d < *bd) {
            best = Some((d, c));
        }
    }
    best.filter(|(d, c)| *d == 0 || *d <= c.len() / 3 + 1).map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_kinds_are_told_from_served_ones() {
        assert_eq!(is_served("networking.k8s.io", "NetworkPolicy"), Some(true));
        assert_eq!(is_served("networking.k8s.io", "NetworkPolicyList"), Some(true));
        assert_eq!(is_served("networking.k8s.io", "Networkpolicy"), Some(false));
        assert_eq!(is_served("", "ConfigMap"), Some(true));
        assert_eq!(is_served("example.com", "Anything"), None);
        assert_eq!(group("v1"), "");
        assert_eq!(group("policy.networking.k8s.io/v1alpha2"), "policy.networking.k8s.io");
        for (g, wrong, right) in [
            ("networking.k8s.io", "Networkpolicy", "NetworkPolicy"),
            ("networking.k8s.io", "NetworkPolicies", "NetworkPolicy"),
            ("projectcalico.org", "GlobalNetworkpolicy", "GlobalNetworkPolicy"),
            ("crd.projectcalico.org", "GlobalNetworkPolcy", "GlobalNetworkPolicy"),
            ("policy.networking.k8s.io", "ClusterNetworkPolicies", "ClusterNetworkPolicy"),
            ("policy.networking.k8s.io", "AdminNetworkpolicy", "AdminNetworkPolicy"),
            ("", "Namepsace", "Namespace"),
            ("apps", "Deploymnet", "Deployment"),
            ("networking.k8s.io", "NetworkPolicylist", "NetworkPolicyList"),
        ] {
            assert_eq!(closest(g, wrong).as_deref(), Some(right), "{wrong}");
        }
        assert_eq!(closest("networking.k8s.io", "Gateway"), None);
    }
}
