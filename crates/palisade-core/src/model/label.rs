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

/// Labels a selector reads, by key: a label map, or an endpoint's labels as Calico sees them
/// ([`EndpointLabels`], worked out on demand rather than stored per pod).
pub trait LabelLookup {
    /// The value of `key`, if the labels have it.
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelLookup for Labels {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// An endpoint's labels as Calico selectors see them (Calico's endpoint labels, libcalico-go):
/// for a pod its own labels, its namespace's under `pcns.`, its service account's under `pcsa.`
/// and the `projectcalico.org/*` pseudo-labels; for a host endpoint or a network set its own.
/// A pod's own labels under `pcns.` or `pcsa.` are left out and the pseudo-labels override the
/// rest: a pod sets its own labels, so it must not pass for a namespace or service account it
/// is not in. A view over the cluster's maps: a stored copy per pod was a third of a load's
/// memory.
#[derive(Clone, Copy, Debug)]
pub struct EndpointLabels<'c> {
    own: &'c Labels,
    pod: Option<PodContext<'c>>,
}

/// What a pod's labels are seen with: its namespace and service account.
#[derive(Clone, Copy, Debug)]
struct PodContext<'c> {
    namespace: &'c str,
    namespace_labels: &'c Labels,
    account: &'c str,
    account_labels: Option<&'c Labels>,
}

impl<'c> EndpointLabels<'c> {
    /// Labels seen as they are (a host endpoint's, a network set's).
    pub fn plain(own: &'c Labels) -> EndpointLabels<'c> {
        EndpointLabels { own, pod: None }
    }

    /// A pod's labels in `namespace` (with its labels), run as service `account` (with its
    /// labels, when a ServiceAccount object gave some).
    pub fn pod(
        own: &'c Labels,
        (namespace, namespace_labels): (&'c str, &'c Labels),
        (account, account_labels): (&'c str, Option<&'c Labels>),
    ) -> EndpointLabels<'c> {
        EndpointLabels { own, pod: Some(PodContext { namespace, namespace_labels, account, account_labels }) }
    }

    /// Every label once, with the value a selector reads; prefixed keys are built in a buffer
    /// that `f` sees only for the call.
    pub fn for_each(&self, mut f: impl FnMut(&str, &str)) {
        let Some(pod) = self.pod else {
            self.own.iter().for_each(|(k, v)| f(k, v));
            return;
        };
        let overridden = [NAMESPACE_LABEL, ORCHESTRATOR_LABEL, SERVICE_ACCOUNT_LABEL];
        for (k, v) in self.own {
            if !reserved(k) && !overridden.contains(&k.as_str()) {
                f(k, v);
            }
        }
        let mut key = String::new();
        let mut prefixed = |prefix: &str, labels: Option<&Labels>, name: &str| {
            for (k, v) in labels.into_iter().flatten().filter(|(k, _)| *k != NAME_LABEL) {
                key.clear();
                key.push_str(prefix);
                key.push_str(k);
                f(&key, v);
            }
            key.clear();
            key.push_str(prefix);
            key.push_str(NAME_LABEL);
            f(&key, name);
        };
        prefixed(NAMESPACE_PREFIX, Some(pod.namespace_labels), pod.namespace);
        prefixed(SERVICE_ACCOUNT_PREFIX, pod.account_labels, pod.account);
        f(NAMESPACE_LABEL, pod.namespace);
        f(ORCHESTRATOR_LABEL, "k8s");
        f(SERVICE_ACCOUNT_LABEL, pod.account);
    }

    /// The labels as one map (for tests and for printing).
    pub fn to_labels(&self) -> Labels {
        let mut out = Labels::new();
        self.for_each(|k, v| {
            out.insert(k.to_string(), v.to_string());
        });
        out
    }
}

/// Keys a pod cannot set for itself: its namespace's and service account's labels.
fn reserved(key: &str) -> bool {
    key.starts_with(NAMESPACE_PREFIX) || key.starts_with(SERVICE_ACCOUNT_PREFIX)
}

impl<'c> LabelLookup for EndpointLabels<'c> {
    fn label(&self, key: &str) -> Option<&str> {
        let Some(pod) = self.pod else { return self.own.label(key) };
        let of = |name: &'c str, labels: Option<&'c Labels>, k: &str| match k {
            NAME_LABEL => Some(name),
            _ => labels.and_then(|l| l.label(k)),
        };
        if let Some(k) = key.strip_prefix(NAMESPACE_PREFIX) {
            return of(pod.namespace, Some(pod.namespace_labels), k);
        }
        if let Some(k) = key.strip_prefix(SERVICE_ACCOUNT_PREFIX) {
            return of(pod.account, pod.account_labels, k);
        }
        match key {
            NAMESPACE_LABEL => Some(pod.namespace),
            ORCHESTRATOR_LABEL => Some("k8s"),
            SERVICE_ACCOUNT_LABEL => Some(pod.account),
            _ => self.own.label(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A pod that tries to pass for another namespace and service account, in a namespace and
    /// account with labels of their own.
    fn case() -> (Labels, Labels, Labels) {
        let own = labels(&[
            ("app", "web"),
            ("pcns.team", "spoofed"),
            ("pcsa.role", "spoofed"),
            ("projectcalico.org/namespace", "spoofed"),
            ("projectcalico.org/orchestrator", "spoofed"),
            ("projectcalico.org/serviceaccount", "spoofed"),
        ]);
        let ns = labels(&[("team", "a"), ("kubernetes.io/metadata.name", "shop"), ("projectcalico.org/name", "x")]);
        let sa = labels(&[("role", "db"), ("projectcalico.org/name", "x")]);
        (own, ns, sa)
    }

    #[test]
    fn a_pod_is_seen_with_its_namespace_and_account_and_cannot_spoof_them() {
        let (own, ns, sa) = case();
        let view = EndpointLabels::pod(&own, ("shop", &ns), ("api", Some(&sa)));
        let expected = labels(&[
            ("app", "web"),
            ("pcns.team", "a"),
            ("pcns.kubernetes.io/metadata.name", "shop"),
            ("pcns.projectcalico.org/name", "shop"),
            ("pcsa.role", "db"),
            ("pcsa.projectcalico.org/name", "api"),
            ("projectcalico.org/namespace", "shop"),
            ("projectcalico.org/orchestrator", "k8s"),
            ("projectcalico.org/serviceaccount", "api"),
        ]);
        assert_eq!(view.to_labels(), expected);
        let mut seen = Vec::new();
        view.for_each(|k, _| seen.push(k.to_string()));
        assert_eq!(seen.len(), expected.len(), "each key once: {seen:?}");
    }

    #[test]
    fn lookup_agrees_with_the_listed_labels() {
        let (own, ns, sa) = case();
        let views = [
            EndpointLabels::pod(&own, ("shop", &ns), ("api", Some(&sa))),
            EndpointLabels::pod(&own, ("shop", &ns), ("default", None)),
            EndpointLabels::plain(&own),
        ];
        let probes = [
            "app",
            "pcns.team",
            "pcsa.role",
            "pcsa.other",
            "pcns.projectcalico.org/name",
            "pcsa.projectcalico.org/name",
        ]
        .into_iter()
        .chain([NAMESPACE_LABEL, ORCHESTRATOR_LABEL, SERVICE_ACCOUNT_LABEL, "missing"]);
        for view in views {
            let listed = view.to_labels();
            for key in probes.clone() {
                assert_eq!(view.label(key), listed.get(key).map(String::as_str), "{key} in {view:?}");
            }
        }
    }
}
