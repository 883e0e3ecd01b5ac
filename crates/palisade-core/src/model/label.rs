//! Labels, the well-known keys, and labels as Calico selectors see endpoints.

use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

/// The label the API server puts on every namespace (since Kubernetes 1.21).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Labels that controllers set per rollout or per replica: they differ between pods of one
/// workload and say nothing about its role, so nothing should select by them.
pub const PER_ROLLOUT_LABELS: [&str; 7] = [
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "pod-template-generation",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
];

/// Whether a pod is cluster DNS as kubeadm, kops and most distributions deploy it
/// (CoreDNS or kube-dns, labelled `k8s-app: kube-dns`).
pub fn is_kube_dns(labels: &Labels) -> bool {
    labels.get("k8s-app").is_some_and(|v| v == "kube-dns")
}

/// Whether a label key is one of [`PER_ROLLOUT_LABELS`] (or a Job's per-run labels).
pub fn is_per_rollout(key: &str) -> bool {
    PER_ROLLOUT_LABELS.contains(&key) || key == "job-name" || key == "batch.kubernetes.io/job-name"
}

/// The pseudo-label every namespaced Calico endpoint carries.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";
/// The pseudo-label holding a namespace's or service account's own name.
pub const NAME_LABEL: &str = "projectcalico.org/name";
pub const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";
pub const SERVICE_ACCOUNT_LABEL: &str = "projectcalico.org/serviceaccount";
/// Namespace labels as seen on endpoints.
pub const NAMESPACE_PREFIX: &str = "pcns.";
/// Service-account labels as seen on endpoints.
pub const SERVICE_ACCOUNT_PREFIX: &str = "pcsa.";

/// Labels of a namespaced thing as Calico endpoints carry them: its namespace's labels with
/// `pcns.` and `projectcalico.org/namespace`.
pub fn namespace_pseudo_labels(ns_name: &str, ns_labels: &Labels, out: &mut Labels) {
    out.insert(NAMESPACE_LABEL.into(), ns_name.into());
    for (k, v) in ns_labels {
        out.insert(format!("{NAMESPACE_PREFIX}{k}"), v.clone());
    }
    out.insert(format!("{NAMESPACE_PREFIX}{NAME_LABEL}"), ns_name.into());
}
