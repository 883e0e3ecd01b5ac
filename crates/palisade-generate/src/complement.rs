//! The egress side of ingress policies (the egress article's algorithm): for each ingress
//! rule peer that selects pods, an egress policy in the peer's namespace that lets those pods
//! open the ingress policy's pods on the same ports.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use palisade_core::cluster::{Cluster, PodId};
use palisade_core::field::{FieldPath, Nowhere, Problems};
use palisade_core::label::NAMESPACE_NAME_LABEL;
use palisade_core::verdict::{selects, Side};
use palisade_ingest::kubernetes::selector::compile as compile_selector;
use palisade_ingest::kubernetes::selector::Selector;
use palisade_ingest::{Input, Object};

use crate::policy::{File, Generated};

/// The complementary egress policies, and notes on peers that have none.
pub fn complement(cluster: &Cluster, inputs: &[Input]) -> (Vec<File>, Vec<String>) {
    let mut files: BTreeMap<(String, String), Vec<Generated>> = BTreeMap::new();
    let mut notes = Vec::new();
    for input in inputs {
        let Object::NetworkPolicy(np) = &input.object else { continue };
        let (Some(name), Some(ns)) = (np.metadata.name.as_deref(), np.metadata.namespace.as_deref()) else { continue };
        let Some(spec) = &np.spec else { continue };
        let types = spec.policy_types.clone().unwrap_or_else(|| vec!["Ingress".into()]);
        if !types.iter().any(|t| t == "Ingress") {
            continue;
        }
        let target = spec.pod_selector.clone().unwrap_or_default();
        for (i, rule) in spec.ingress.iter().flatten().enumerate() {
            let Some(peers) = rule.from.as_ref().filter(|p| !p.is_empty()) else {
                notes.push(format!(
                    "{ns}/{name} ingress rule [{i}] admits every source: no egress policy can name them all"
                ));
                continue;
            };
            for (j, peer) in peers.iter().enumerate() {
                if peer.ip_block.is_some() {
                    notes.push(format!("{ns}/{name} ingress rule [{i}] peer [{j}] is an ipBlock: sources outside the cluster have no egress policy here"));
                    continue;
                }
                for source_ns in source_namespaces(cluster, ns, peer) {
                    match egress_isolated(cluster, &source_ns, peer) {
                        Some(true) => {}
                        Some(false) => {
                            notes.push(format!("{ns}/{name} ingress rule [{i}] peer [{j}]: its pods in {source_ns} are not isolated for egress, so they can connect already (an egress policy would isolate them)"));
                            continue;
                        }
                        None => continue,
                    }
                    let to = NetworkPolicyPeer {
                        namespace_selector: (source_ns != ns).then(|| LabelSelector {
                            match_labels: Some(BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), ns.to_string())])),
                            match_expressions: None,
                        }),
                        pod_selector: Some(target.clone()),
                        ip_block: None,
                    };
                    let policy_name =
                        if source_ns == ns { format!("{name}-egress") } else { format!("{name}-{ns}-egress") };
                    let spec = NetworkPolicySpec {
                        pod_selector: Some(peer.pod_selector.clone().unwrap_or_default()),
                        policy_types: Some(vec!["Egress".into()]),
                        ingress: None,
                        egress: Some(vec![NetworkPolicyEgressRule { to: Some(vec![to]), ports: rule.ports.clone() }]),
                    };
                    let policy = NetworkPolicy {
                        metadata: ObjectMeta {
                            name: Some(policy_name),
                            namespace: Some(source_ns.clone()),
                            ..Default::default()
                        },
                        spec: Some(spec),
                    };
                    let g = Generated {
                        policy,
                        header: vec![format!("The egress side of {ns}/{name} ingress rule [{i}] peer [{j}].")],
                        rule_flows: vec![vec![format!("lets these pods open the pods {ns}/{name} selects")]],
                    };
                    files.entry((source_ns, g.policy.metadata.name.clone().unwrap_or_default())).or_default().push(g);
                }
            }
        }
    }
    let files = files.into_iter().map(|((namespace, stem), policies)| File { namespace, stem, policies }).collect();
    (files, notes)
}

/// The namespaces a peer's pods live in: its own without namespaceSelector, else every
/// namespace of the cluster the selector matches.
fn source_namespaces(cluster: &Cluster, own: &str, peer: &NetworkPolicyPeer) -> Vec<String> {
    let Some(sel) = &peer.namespace_selector else { return vec![own.to_string()] };
    let mut problems = Problems::new(String::new(), &Nowhere);
    let sel = compile_selector(sel, &FieldPath::root(), &mut problems);
    cluster.namespaces.iter().filter(|n| sel.matches(&n.labels)).map(|n| n.name.clone()).collect()
}

/// Whether some pod the peer selects in `ns` is isolated for egress (only then does it need
/// an egress allow; a new egress policy would otherwise isolate it and cut its other traffic).
/// `None` when the peer selects no pod there.
fn egress_isolated(cluster: &Cluster, ns: &str, peer: &NetworkPolicyPeer) -> Option<bool> {
    let mut problems = Problems::new(String::new(), &Nowhere);
    let sel = match &peer.pod_selector {
        Some(s) => compile_selector(s, &FieldPath::root(), &mut problems),
        None => Selector::everything(),
    };
    let egress: Vec<&palisade_core::policy::Policy> = cluster.policies.iter().filter(|p| p.egress.is_some()).collect();
    let pods: Vec<PodId> = cluster
        .pod_ids()
        .filter(|&p| cluster.namespaces[cluster.pods[p].namespace].name == ns && sel.matches(&cluster.pods[p].labels))
        .collect();
    (!pods.is_empty())
        .then(|| pods.iter().any(|&p| egress.iter().any(|pol| selects(cluster, pol, &Side::pod(cluster, p)))))
}
