//! Calico NetworkSet, GlobalNetworkSet and HostEndpoint: addresses that rules select by labels,
//! and node interfaces that global policies protect.

use std::net::IpAddr;

use palisade_core::cluster::NsId;
use palisade_core::cluster::{HostEndpoint, NetworkSet};
use palisade_core::expr::ORCHESTRATOR_LABEL;
use palisade_core::field::{FieldPath, Problems};
use palisade_core::label::{namespace_pseudo_labels, Labels};
use palisade_core::port::{ContainerPort, Protocol};

use super::resource;
use super::rule::nets;
use crate::kubernetes::port::check_port_name;

fn root() -> FieldPath {
    FieldPath::root()
}

/// A NetworkSet (`namespace` given) or GlobalNetworkSet: its nets, and its labels with the
/// namespace's pseudo-labels for a namespaced one.
pub fn compile_network_set(
    name: &str,
    namespace: Option<(NsId, &str, &Labels)>,
    labels: &Labels,
    spec: Option<&resource::NetworkSetSpec>,
    problems: &mut Problems,
) -> NetworkSet {
    let path = root().key("spec").key("nets");
    let nets = nets(spec.and_then(|s| s.nets.as_ref()), None, &path, problems);
    let mut all = not_a_pod(labels, problems);
    if let Some((_, ns, ns_labels)) = namespace {
        namespace_pseudo_labels(ns, ns_labels, &mut all);
    }
    NetworkSet {
        namespace: namespace.map(|(id, _, _)| id),
        name: name.to_string(),
        labels: all,
        nets,
        location: problems.locate.locate(&root()),
    }
}

/// Labels of something that is not a pod, without `projectcalico.org/orchestrator`: Calico
/// gives that pseudo-label to workload endpoints, and rules lowered from Kubernetes
/// NetworkPolicies select pods by it, so nothing else may carry it.
fn not_a_pod(labels: &Labels, problems: &mut Problems) -> Labels {
    let mut out = labels.clone();
    if out.remove(ORCHESTRATOR_LABEL).is_some() {
        problems.warn(
            &root().key("metadata").key("labels").key(ORCHESTRATOR_LABEL),
            format!(
                "{ORCHESTRATOR_LABEL} is the pseudo-label Calico gives pods (workload endpoints); here it is ignored"
            ),
            "remove the label: selectors of Kubernetes NetworkPolicies match pods by it",
        );
    }
    out
}

/// A HostEndpoint: its node, interface, expected IPs (how the engine finds it), named ports
/// and whether its profile allows what no policy decides.
pub fn compile_host_endpoint(
    name: &str,
    labels: &Labels,
    spec: Option<&resource::HostEndpointSpec>,
    problems: &mut Problems,
) -> HostEndpoint {
    let path = root().key("spec");
    let spec = spec.cloned().unwrap_or_default();
    let node = spec.node.clone().unwrap_or_default();
    if node.is_empty() {
        problems.error(&path.key("node"), "node is required", "name the node this interface belongs to");
    }
    let interface = spec.interface_name.clone().unwrap_or_default();
    let mut ips = Vec::new();
    for (i, s) in spec.expected_ips.iter().flatten().enumerate() {
        match s.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => problems.error(
                &path.key("expectedIPs").index(i),
                format!("invalid IP {s:?}"),
                "expectedIPs lists plain addresses",
            ),
        }
    }
    if interface.is_empty() && ips.is_empty() {
        problems.error(
            &path,
            "a HostEndpoint needs interfaceName or expectedIPs",
            "give the interface name, its addresses, or both",
        );
    }
    if interface == "*" || ips.is_empty() {
        problems.warn(
            &path,
            "Palisade matches host endpoints by expectedIPs; this one has none it can match traffic to",
            "list the interface's addresses in expectedIPs",
        );
    }
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let pp = path.key("ports").index(i);
        if let Err(e) = check_port_name(&p.name) {
            problems.error(&pp.key("name"), e, "a named port of a host endpoint follows the IANA service-name rules");
        }
        let proto = p.protocol.as_ref().map_or(Some(Protocol::TCP), |v| v.to_string().parse::<Protocol>().ok());
        let number = u16::try_from(p.port).ok().filter(|n| *n > 0);
        match (proto, number) {
            (Some(protocol), Some(port)) => ports.push(ContainerPort { name: Some(p.name.clone()), port, protocol }),
            _ => problems.error(
                &pp,
                "invalid port",
                "a host endpoint port has a name, a protocol (TCP, UDP, SCTP) and a number 1-65535",
            ),
        }
    }
    let default_allow = spec.profiles.iter().flatten().any(|p| p == "projectcalico-default-allow");
    HostEndpoint {
        name: name.to_string(),
        node,
        interface,
        labels: not_a_pod(labels, problems),
        ips,
        ports,
        default_allow,
        location: problems.locate.locate(&root()),
    }
}
