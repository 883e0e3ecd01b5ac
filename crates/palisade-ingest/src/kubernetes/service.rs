//! Services and EndpointSlices: ClusterIPs, ports and target ports, backends.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use palisade_core::cluster::{NsId, Service, ServicePort, SliceEndpoint, TargetPort};
use palisade_core::field::{FieldPath, Problems};

use super::meta::parse_ip;
use super::port::{check_port_name, check_port_number, protocol};

fn root() -> FieldPath {
    FieldPath::root()
}

/// A Service object as the engine's Service (backends come from EndpointSlices or pods).
pub(crate) fn compile_service(svc: &core::Service, ns: NsId, name: &str, p: &mut Problems) -> Service {
    let spec = svc.spec.clone().unwrap_or_default();
    let path = root().key("spec");
    let mut cluster_ips = Vec::new();
    let listed = spec.cluster_ips.clone().unwrap_or_default();
    let all = spec.cluster_ip.iter().chain(listed.iter());
    for (i, ip) in all.enumerate() {
        if ip == "None" || ip.is_empty() {
            continue;
        }
        let at = if i == 0 && spec.cluster_ip.is_some() { path.key("clusterIP") } else { path.key("clusterIPs") };
        if let Some(ip) = parse_ip(ip, &at, p) {
            if !cluster_ips.contains(&ip) {
                cluster_ips.push(ip);
            }
        }
    }
    let mut ports = Vec::new();
    for (i, sp) in spec.ports.iter().flatten().enumerate() {
        let pp = path.key("ports").index(i);
        let protocol = protocol(sp.protocol.as_deref(), &pp.key("protocol"), p);
        let Ok(port) = check_port_number(sp.port) else {
            p.error(&pp.key("port"), format!("port {} is out of range", sp.port), "service ports are 1-65535");
            continue;
        };
        let target = match &sp.target_port {
            None => TargetPort::Number(port),
            Some(IntOrString::Int(n)) => match check_port_number(*n) {
                Ok(n) => TargetPort::Number(n),
                Err(e) => {
                    p.error(&pp.key("targetPort"), e, "targetPort is a number 1-65535 or a container port name");
                    continue;
                }
            },
            Some(IntOrString::String(s)) => match check_port_name(s) {
                Ok(()) => TargetPort::Name(s.clone()),
                Err(e) => {
                    p.error(&pp.key("targetPort"), e, "targetPort is a number 1-65535 or a container port name (at most 15 characters of a-z, 0-9 and '-', with a letter)");
                    continue;
                }
            },
        };
        ports.push(ServicePort { name: sp.name.clone(), port, protocol, target });
    }
    Service {
        namespace: ns,
        name: name.to_string(),
        cluster_ips,
        selector: spec.selector.clone(),
        ports,
        endpoints: Vec::new(),
        external_name: spec.external_name.clone().filter(|_| spec.type_.as_deref() == Some("ExternalName")),
    }
}

/// An EndpointSlice's backends.
pub(crate) fn compile_slice(slice: &EndpointSlice, name: &str, p: &mut Problems) -> Vec<SliceEndpoint> {
    let mut ports = Vec::new();
    for (i, ep) in slice.ports.iter().flatten().enumerate() {
        let pp = root().key("ports").index(i);
        let protocol = protocol(ep.protocol.as_deref(), &pp.key("protocol"), p);
        if let Some(n) = ep.port {
            match check_port_number(n) {
                Ok(n) => ports.push((ep.name.clone(), n, protocol)),
                Err(e) => p.error(&pp.key("port"), e, "endpoint ports are 1-65535"),
            }
        }
    }
    let mut out = Vec::new();
    for (i, ep) in slice.endpoints.iter().enumerate() {
        for (j, a) in ep.addresses.iter().enumerate() {
            let at = root().key("endpoints").index(i).key("addresses").index(j);
            if let Some(ip) = parse_ip(a, &at, p) {
                out.push(SliceEndpoint { ip, ports: ports.clone(), slice: name.to_string() });
            }
        }
    }
    out
}
