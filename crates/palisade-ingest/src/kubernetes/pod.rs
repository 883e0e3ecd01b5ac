//! Pods: addresses, container ports, the workload that owns them; finished pods left out.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{self as core, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use palisade_core::cluster::{NsId, Pod, WorkloadRef};
use palisade_core::field::{FieldPath, Problems};
use palisade_core::port::ContainerPort;

use super::meta::{check_labels, parse_ip};
use super::port::{check_port_name, check_port_number, protocol};
use super::stored_pod::{StoredContainer, StoredPod};
use crate::object::Item;

fn root() -> FieldPath {
    FieldPath::root()
}

/// A Pod object as the engine's pod.
pub(crate) fn pod_from(pod: &StoredPod, item: &Item, ns: NsId, p: &mut Problems) -> Pod {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    check_labels(&labels, p);
    let spec = pod.spec.as_ref();
    let ips = pod_ips(pod, p);
    let ports = match spec {
        Some(spec) => {
            fn ports(list: &[StoredContainer]) -> Vec<Option<&[core::ContainerPort]>> {
                list.iter().map(|c| c.ports.as_deref()).collect()
            }
            let init = spec.init_containers.as_deref().map(ports);
            ports_of(&ports(&spec.containers), init.as_deref(), &root().key("spec"), p)
        }
        None => Vec::new(),
    };
    Pod {
        namespace: ns,
        name: item.name.clone(),
        labels,
        ips,
        ports,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        node: spec.and_then(|s| s.node_name.clone()),
        service_account: spec.and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into()),
        workload: owner_workload(&pod.metadata),
        derived: false,
        replicas: Some(1),
        location: item.input.locate.locate(&root()),
    }
}

/// `Succeeded` or `Failed`: a pod whose containers all terminated. It holds no address any
/// more (its IP may already be another pod's) and sends nothing.
pub(crate) fn finished_phase(pod: &StoredPod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref().filter(|p| matches!(*p, "Succeeded" | "Failed"))
}

fn pod_ips(pod: &StoredPod, p: &mut Problems) -> Vec<IpAddr> {
    let Some(status) = &pod.status else { return Vec::new() };
    let path = root().key("status");
    let mut ips: Vec<IpAddr> = Vec::new();
    if let Some(ip) = status.pod_ip.as_deref().and_then(|s| parse_ip(s, &path.key("podIP"), p)) {
        ips.push(ip);
    }
    for (i, entry) in status.pod_ips.iter().flatten().enumerate() {
        if let Some(ip) = parse_ip(&entry.ip, &path.key("podIPs").index(i).key("ip"), p) {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    ips
}

/// Container ports of a pod spec (init containers' too), checked as the API server checks them
/// (`validateContainerPorts`: a valid number, a valid name, no name twice in one container).
pub(crate) fn container_ports(spec: &PodSpec, path: &FieldPath, p: &mut Problems) -> Vec<ContainerPort> {
    fn ports(list: &[core::Container]) -> Vec<Option<&[core::ContainerPort]>> {
        list.iter().map(|c| c.ports.as_deref()).collect()
    }
    let init = spec.init_containers.as_deref().map(ports);
    ports_of(&ports(&spec.containers), init.as_deref(), path, p)
}

/// [`container_ports`] over each container's ports (of the full API type or the stored form).
fn ports_of(
    containers: &[Option<&[core::ContainerPort]>],
    init: Option<&[Option<&[core::ContainerPort]>]>,
    path: &FieldPath,
    p: &mut Problems,
) -> Vec<ContainerPort> {
    let mut out = Vec::new();
    for (field, containers) in [("containers", Some(containers)), ("initContainers", init)] {
        for (ci, ports) in containers.into_iter().flatten().enumerate() {
            // The API server refuses a port name twice in one container (not across containers).
            let mut names: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
            for (pi, port) in ports.iter().copied().flatten().enumerate() {
                let pp = path.key(field).index(ci).key("ports").index(pi);
                let protocol = protocol(port.protocol.as_deref(), &pp.key("protocol"), p);
                let number = match check_port_number(port.container_port) {
                    Ok(n) => n,
                    Err(e) => {
                        p.error(&pp.key("containerPort"), e, "containerPort must be between 1 and 65535");
                        continue;
                    }
                };
                if let Some(name) = &port.name {
                    if let Err(e) = check_port_name(name) {
                        p.error(
                            &pp.key("name"),
                            e,
                            "port names are IANA service names: at most 15 of a-z, 0-9, '-', with a letter",
                        );
                    } else if let Some(first) = names.insert(name, pi) {
                        names.insert(name, first);
                        p.error(
                            &pp.key("name"),
                            format!("duplicate port name {name:?}: ports[{first}] of this container has it already"),
                            "port names are unique within a container, as the API server requires; rename or remove one",
                        );
                    }
                }
                out.push(ContainerPort { name: port.name.clone(), port: number, protocol });
            }
        }
    }
    out
}

/// The workload of a pod from its owner references; a ReplicaSet owned by a Deployment
/// (name `<deployment>-<pod-template-hash>`) counts as the Deployment.
fn owner_workload(meta: &ObjectMeta) -> Option<WorkloadRef> {
    let owner = meta.owner_references.as_ref()?.iter().find(|o| o.controller.unwrap_or(true))?;
    let hash = meta.labels.as_ref().and_then(|l| l.get("pod-template-hash"));
    if owner.kind == "ReplicaSet" {
        if let Some(deploy) = hash.and_then(|h| owner.name.strip_suffix(&format!("-{h}"))) {
            return Some(WorkloadRef { kind: "Deployment".into(), name: deploy.to_string() });
        }
    }
    Some(WorkloadRef { kind: owner.kind.clone(), name: owner.name.clone() })
}
