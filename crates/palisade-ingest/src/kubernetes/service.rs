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

/// How kube-proxy treats one endpoint of a slice, from its conditions (EndpointSlice API:
/// `ready` unset means true, `serving` unset means as `ready`, `terminating` unset means false).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Ready: a backend.
    Ready,
    /// Serving while terminating: a backend only where no endpoint is ready.
    Terminating,
    /// Neither: never a backend.
    Out,
}

/// An EndpointSlice's endpoints, each with its readiness. A slice of `addressType: FQDN`
/// holds names, which kube-proxy ignores: no endpoints, and a warning.
pub(crate) fn compile_slice(slice: &EndpointSlice, name: &str, p: &mut Problems) -> Vec<(SliceEndpoint, Readiness)> {
    if slice.address_type == "FQDN" {
        p.warn(
            &root().key("addressType"),
            "an FQDN EndpointSlice holds names, not addresses: kube-proxy ignores it, and so does Palisade (its endpoints are no backends)",
            "",
        );
        return Vec::new();
    }
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
        let c = ep.conditions.as_ref();
        let ready = c.and_then(|c| c.ready).unwrap_or(true);
        let serving = c.and_then(|c| c.serving).unwrap_or(ready);
        let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
        let readiness = match (ready, serving && terminating) {
            (true, _) => Readiness::Ready,
            (false, true) => Readiness::Terminating,
            (false, false) => Readiness::Out,
        };
        for (j, a) in ep.addresses.iter().enumerate() {
            let at = root().key("endpoints").index(i).key("addresses").index(j);
            if let Some(ip) = parse_ip(a, &at, p) {
                out.push((SliceEndpoint { ip, ports: ports.clone(), slice: name.to_string() }, readiness));
            }
        }
    }
    out
}

/// One Service port of a slice (`None` for a slice without ports).
type PortKey = Option<(Option<String>, u16, palisade_core::port::Protocol)>;

/// A Service's backends from its slices' endpoints, as kube-proxy picks them per Service port:
/// the ready endpoints; where none is ready, the serving terminating ones; never the others.
pub(crate) fn backends(endpoints: Vec<(SliceEndpoint, Readiness)>) -> Vec<SliceEndpoint> {
    let keys = |e: &SliceEndpoint| -> Vec<PortKey> {
        if e.ports.is_empty() {
            vec![None]
        } else {
            e.ports.iter().cloned().map(Some).collect()
        }
    };
    let ready: std::collections::HashSet<PortKey> =
        endpoints.iter().filter(|(_, r)| *r == Readiness::Ready).flat_map(|(e, _)| keys(e)).collect();
    endpoints
        .into_iter()
        .filter_map(|(mut e, r)| {
            let take = |k: &PortKey| r == Readiness::Ready || (r == Readiness::Terminating && !ready.contains(k));
            if e.ports.is_empty() {
                return take(&None).then_some(e);
            }
            e.ports.retain(|port| take(&Some(port.clone())));
            (!e.ports.is_empty()).then_some(e)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::fixture::Objects;
    use crate::object::Object;

    /// One endpoint: its address and conditions (ready, serving, terminating; `None` unset).
    type Endpoint = (&'static str, Option<bool>, Option<bool>, Option<bool>);

    /// What the case shows, each slice's endpoints, the backends kube-proxy uses.
    type Case = (&'static str, &'static [&'static [Endpoint]], &'static [&'static str]);

    const CASES: &[Case] = &[
        ("conditions unset: ready", &[&[("198.18.5.1", None, None, None)]], &["198.18.5.1"]),
        (
            "a not-ready endpoint is no backend",
            &[&[("198.18.5.1", Some(true), None, None), ("198.18.5.2", Some(false), Some(false), None)]],
            &["198.18.5.1"],
        ),
        (
            "a serving terminating endpoint is no backend while one is ready",
            &[&[("198.18.5.1", Some(true), None, None), ("198.18.5.2", Some(false), Some(true), Some(true))]],
            &["198.18.5.1"],
        ),
        (
            "none ready: the serving terminating ones, not the others",
            &[&[
                ("198.18.5.1", Some(false), Some(true), Some(true)),
                ("198.18.5.2", Some(false), Some(false), Some(true)),
                ("198.18.5.3", Some(false), None, None),
            ]],
            &["198.18.5.1"],
        ),
        (
            "ready in another slice of the same Service counts",
            &[&[("198.18.5.1", Some(false), Some(true), Some(true))], &[("198.18.5.2", None, None, None)]],
            &["198.18.5.2"],
        ),
        ("nothing serving: no backend", &[&[("198.18.5.1", Some(false), None, Some(true))]], &[]),
    ];

    fn slice(service: &str, i: usize, endpoints: &[Endpoint], address_type: &str) -> Object {
        let endpoints: Vec<Value> = endpoints
            .iter()
            .map(|(ip, ready, serving, terminating)| {
                json!({"addresses": [ip], "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
            })
            .collect();
        let labels = json!({"kubernetes.io/service-name": service});
        let v = json!({
            "metadata": {"name": format!("{service}-{i}"), "namespace": "shop", "labels": labels},
            "addressType": address_type,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        });
        Object::EndpointSlice(serde_json::from_value(v).expect("an EndpointSlice"))
    }

    fn service(name: &str) -> Object {
        let v = json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"clusterIP": "198.18.200.1", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        });
        Object::Service(Box::new(serde_json::from_value(v).expect("a Service")))
    }

    #[test]
    fn backends_are_the_endpoints_kube_proxy_uses() {
        for (what, slices, want) in CASES {
            let mut objects = Objects::new().ns("shop", json!({})).object(service("web"));
            for (i, endpoints) in slices.iter().enumerate() {
                objects = objects.object(slice("web", i, endpoints, "IPv4"));
            }
            let cluster = objects.build().expect("valid");
            let got: Vec<String> = cluster.services[0].endpoints.iter().map(|e| e.ip.to_string()).collect();
            assert_eq!(got, *want, "{what}");
        }
    }

    #[test]
    fn an_fqdn_slice_is_ignored_with_a_warning() {
        let fqdn = slice("web", 0, &[("db.example.com", None, None, None)], "FQDN");
        let cluster = Objects::new().ns("shop", json!({})).object(service("web")).object(fqdn).build();
        let cluster = cluster.expect("an FQDN slice is no error");
        assert!(cluster.services[0].endpoints.is_empty());
        let warning = cluster.warnings.iter().map(|w| &w.message).find(|w| w.contains("FQDN"));
        assert!(warning.is_some_and(|w| w.contains("kube-proxy ignores it")), "{:?}", cluster.warnings);
    }
}
