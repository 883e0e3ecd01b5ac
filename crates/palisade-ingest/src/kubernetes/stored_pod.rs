//! A Pod as the store keeps it: the fields the engine reads, nothing else.
//!
//! A Pod is decoded and validated as the full API type (`k8s_openapi`'s `Pod`, every field
//! checked and every problem placed), then stripped into this form before it is kept. The full
//! type is 4 KB of structs before its strings (a container alone is 1 KB), and a pod written by
//! `kubectl get -o json` carries managed fields, annotations, images, environment, probes and
//! conditions the engine never reads: a cluster of pods held that way took 30x its input.
//! The fields kept are those `palisade-kube`'s `strip` keeps for the agent: metadata (without
//! managed fields and annotations), node, host network, service account, each container's name,
//! ports and restart policy (a sidecar's), and the phase and addresses.

use k8s_openapi::api::core::v1::{self as core, ContainerPort, PodIP};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// The kept part of a Pod; field names and JSON shape as in the Kubernetes API.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct StoredPod {
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<StoredPodSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StoredPodStatus>,
}

/// The kept part of a `PodSpec`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPodSpec {
    #[serde(default)]
    pub containers: Vec<StoredContainer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Vec<StoredContainer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// The kept part of a `Container`: its name, ports and restart policy.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredContainer {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ContainerPort>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
}

/// The kept part of a `PodStatus`: the phase and the addresses.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPodStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    #[serde(default, rename = "podIPs", skip_serializing_if = "Option::is_none")]
    pub pod_ips: Option<Vec<PodIP>>,
}

impl From<core::Pod> for StoredPod {
    /// Strips a decoded Pod: its strings move, nothing is copied.
    fn from(pod: core::Pod) -> StoredPod {
        let mut metadata = pod.metadata;
        metadata.managed_fields = None;
        metadata.annotations = None;
        StoredPod { metadata, spec: pod.spec.map(StoredPodSpec::from), status: pod.status.map(StoredPodStatus::from) }
    }
}

impl From<core::PodSpec> for StoredPodSpec {
    fn from(spec: core::PodSpec) -> StoredPodSpec {
        // Not collected in place: that would keep each `Container`'s 2 KB as spare capacity.
        let containers = |list: Vec<core::Container>| {
            let mut kept = Vec::with_capacity(list.len());
            kept.extend(list.into_iter().map(StoredContainer::from));
            kept
        };
        StoredPodSpec {
            containers: containers(spec.containers),
            init_containers: spec.init_containers.map(containers),
            host_network: spec.host_network,
            node_name: spec.node_name,
            service_account_name: spec.service_account_name,
        }
    }
}

impl From<core::Container> for StoredContainer {
    fn from(c: core::Container) -> StoredContainer {
        StoredContainer { name: c.name, ports: c.ports, restart_policy: c.restart_policy }
    }
}

impl From<core::PodStatus> for StoredPodStatus {
    fn from(s: core::PodStatus) -> StoredPodStatus {
        StoredPodStatus { phase: s.phase, pod_ip: s.pod_ip, pod_ips: s.pod_ips }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_pod_keeps_what_the_engine_reads_and_drops_the_rest() {
        let full: core::Pod = serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "x", "labels": {"app": "web"},
                         "annotations": {"note": "y"}, "managedFields": [{"manager": "kubectl"}],
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "w-1", "uid": "u"}]},
            "spec": {"nodeName": "n1", "hostNetwork": false, "serviceAccountName": "sa",
                     "containers": [{"name": "c", "image": "nginx", "env": [{"name": "E", "value": "v"}],
                                     "ports": [{"name": "http", "containerPort": 80}]}],
                     "initContainers": [{"name": "side", "image": "i", "restartPolicy": "Always"}]},
            "status": {"phase": "Running", "podIP": "198.18.0.1", "podIPs": [{"ip": "198.18.0.1"}],
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .expect("a Pod");
        let stored = StoredPod::from(full);
        let want = json!({
            "metadata": {"name": "a", "namespace": "x", "labels": {"app": "web"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "w-1", "uid": "u"}]},
            "spec": {"nodeName": "n1", "hostNetwork": false, "serviceAccountName": "sa",
                     "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80}]}],
                     "initContainers": [{"name": "side", "restartPolicy": "Always"}]},
            "status": {"phase": "Running", "podIP": "198.18.0.1", "podIPs": [{"ip": "198.18.0.1"}]},
        });
        assert_eq!(serde_json::to_value(&stored).expect("serializes"), want);
        // Its JSON reads back as the same value (fixtures and benchmarks write pods this way).
        assert_eq!(serde_json::from_value::<StoredPod>(want).expect("reads back"), stored);
    }
}
