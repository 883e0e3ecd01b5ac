//! Calico rules: action, protocol, ICMP, IP version, and the source and destination entities
//! (nets, selectors, namespaceSelector, serviceAccounts, ports), checked and compiled.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use palisade_core::expr::{self, Expr};
use palisade_core::field::{FieldPath, Problems};
use std::sync::Arc;

use palisade_core::rule::{Action, Entity, Form, Icmp, Origin, Port, Rule, Written};

use super::resource::{self, EntityRule, NumOrString};
use super::selector::opt_selector;
use crate::kubernetes::networkpolicy::parse_cidr;
use crate::kubernetes::port::check_port_name;

fn action(a: &str, path: &FieldPath, problems: &mut Problems) -> Action {
    match a {
        "Allow" => Action::Allow,
        "Deny" => Action::Deny,
        "Pass" => Action::Pass,
        "Log" => Action::Log,
        "" => {
            problems.error(path, "action is required", "each rule needs action: Allow, Deny, Pass or Log");
            Action::Deny
        }
        other => {
            problems.error(
                path,
                format!("unknown action {other:?}"),
                "action is one of Allow, Deny, Pass, Log (case-sensitive)",
            );
            Action::Deny
        }
    }
}

/// Protocol by name or number; returns the number and its name as written.
fn protocol(p: &NumOrString, path: &FieldPath, problems: &mut Problems) -> Option<(u8, String)> {
    let n = match p {
        NumOrString::Num(n) if (1..=255).contains(n) => Some(*n as u8),
        NumOrString::Num(_) => None,
        // Calico's canonical names, or the lowercase ones its v1 model uses.
        NumOrString::Str(s) => match s.as_str() {
            "TCP" | "tcp" => Some(6),
            "UDP" | "udp" => Some(17),
            "ICMP" | "icmp" => Some(1),
            "ICMPv6" | "icmpv6" => Some(58),
            "SCTP" | "sctp" => Some(132),
            "UDPLite" | "udplite" => Some(136),
            other => other.parse::<u8>().ok().filter(|n| *n > 0),
        },
    };
    if n.is_none() {
        problems.error(
            path,
            format!("invalid protocol {p}"),
            "a protocol is TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite (or the same in lowercase) or a number 1-255",
        );
    }
    n.map(|n| (n, p.to_string()))
}

/// Calico allows ports with TCP, UDP and SCTP only.
fn has_ports(protocol: Option<u8>) -> bool {
    matches!(protocol, Some(6 | 17 | 132))
}

/// Rule `index` of a Calico policy, at `path`; `ns` is the policy's namespace (`None`: global).
pub(crate) fn compile_rule(
    r: &resource::Rule,
    index: usize,
    ns: Option<&str>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Rule {
    let act = action(&r.action, &path.key("action"), problems);
    let proto = r.protocol.as_ref().and_then(|p| protocol(p, &path.key("protocol"), problems));
    let not_proto = r.not_protocol.as_ref().and_then(|p| protocol(p, &path.key("notProtocol"), problems));
    let ip_version = r.ip_version.and_then(|v| match v {
        4 | 6 => Some(v as u8),
        _ => {
            problems.error(&path.key("ipVersion"), format!("ipVersion {v} is not 4 or 6"), "ipVersion is 4 or 6");
            None
        }
    });
    let number = proto.as_ref().map(|p| p.0);
    let icmp = r.icmp.as_ref().map(|i| compile_icmp(i, number, &path.key("icmp"), problems));
    let not_icmp = r.not_icmp.as_ref().map(|i| compile_icmp(i, number, &path.key("notICMP"), problems));
    if r.http.is_some() {
        problems.error(
            &path.key("http"),
            "HTTP match rules need Calico's application layer policy; Palisade decides connections at layers 3 and 4",
            "remove the http match, or check these rules in the cluster itself",
        );
    }
    let side = |e: &Option<EntityRule>, field: &str, problems: &mut Problems| {
        let e = e.clone().unwrap_or_default();
        (compile_entity(&e, ns, number, ip_version, &path.key(field), problems), written(&e))
    };
    let (source, source_words) = side(&r.source, "source", problems);
    let (destination, destination_words) = side(&r.destination, "destination", problems);
    let form = Form::Entities {
        protocol: proto.as_ref().map(|p| p.1.clone()),
        not_protocol: not_proto.as_ref().map(|p| p.1.clone()),
        source: source_words,
        destination: destination_words,
    };
    let written = Written { location: problems.locate.locate(&problems.base.join(path)), form, name: None };
    Rule {
        action: act,
        protocol: number,
        not_protocol: not_proto.map(|p| p.0),
        ip_version,
        icmp,
        not_icmp,
        source,
        destination,
        origin: Origin { rule: index, peer: None, written: Arc::new(written) },
    }
}

fn compile_icmp(i: &resource::IcmpFields, proto: Option<u8>, path: &FieldPath, problems: &mut Problems) -> Icmp {
    if !matches!(proto, Some(1 | 58)) {
        problems.error(path, "ICMP fields need protocol ICMP or ICMPv6", "set protocol: ICMP (or ICMPv6) on this rule");
    }
    if i.code.is_some() && i.type_.is_none() {
        problems.error(&path.key("code"), "an ICMP code needs a type", "set type as well");
    }
    let byte = |v: Option<i64>, max: i64, field: &str, problems: &mut Problems| {
        v.and_then(|n| {
            if (0..=max).contains(&n) {
                Some(n as u8)
            } else {
                problems.error(&path.key(field), format!("ICMP {field} {n} is out of range"), format!("0 to {max}"));
                None
            }
        })
    };
    Icmp { type_: byte(i.type_, 254, "type", problems), code: byte(i.code, 255, "code", problems) }
}

/// A CIDR or a bare address (Calico accepts both).
pub fn net(s: &str, path: &FieldPath, problems: &mut Problems) -> Option<IpNet> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(IpNet::from(ip));
    }
    parse_cidr(s, path, problems)
}

/// A list of nets at `path`, each of the rule's IP version when it has one.
pub(crate) fn nets(
    list: Option<&Vec<String>>,
    version: Option<u8>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (i, s) in list.into_iter().flatten().enumerate() {
        let Some(n) = net(s, &path.index(i), problems) else { continue };
        let v = if n.addr().is_ipv4() { 4 } else { 6 };
        if version.is_some_and(|want| want != v) {
            problems.error(
                &path.index(i),
                format!("{n} is IPv{v} but the rule's ipVersion is {}", version.unwrap_or(0)),
                "use addresses of the rule's IP version",
            );
        }
        out.push(n);
    }
    out
}

fn ports(list: Option<&Vec<NumOrString>>, proto: Option<u8>, path: &FieldPath, problems: &mut Problems) -> Vec<Port> {
    let Some(list) = list.filter(|l| !l.is_empty()) else { return Vec::new() };
    if !has_ports(proto) {
        problems.error(
            path,
            "ports need the rule's protocol to be TCP, UDP or SCTP",
            "set protocol on the rule (ports alone do not say which protocol they belong to)",
        );
    }
    list.iter().enumerate().filter_map(|(i, p)| port(p, &path.index(i), problems)).collect()
}

const PORT_HELP: &str = "a port is a number 0-65535, a range \"first:last\", or a named port of the endpoint";

fn port(p: &NumOrString, path: &FieldPath, problems: &mut Problems) -> Option<Port> {
    let number = |n: i64, problems: &mut Problems| -> Option<u16> {
        u16::try_from(n).ok().or_else(|| {
            problems.error(path, format!("port {n} is out of range"), PORT_HELP);
            None
        })
    };
    match p {
        NumOrString::Num(n) => number(*n, problems).map(|n| Port::Range(n, n)),
        NumOrString::Str(s) => {
            if let Some((a, b)) = s.split_once(':') {
                let (Ok(a), Ok(b)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>()) else {
                    problems.error(path, format!("invalid port range {s:?}"), PORT_HELP);
                    return None;
                };
                if a > b {
                    problems.error(path, format!("port range {s:?} runs backwards"), "write the lower port first");
                    return None;
                }
                return Some(Port::Range(a, b));
            }
            if let Ok(n) = s.parse::<i64>() {
                return number(n, problems).map(|n| Port::Range(n, n));
            }
            if let Err(e) = check_port_name(s) {
                problems.error(path, e, PORT_HELP);
                return None;
            }
            Some(Port::Named(s.clone()))
        }
    }
}

fn compile_entity(
    e: &EntityRule,
    ns: Option<&str>,
    proto: Option<u8>,
    version: Option<u8>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Entity {
    if e.services.is_some() {
        problems.error(
            &path.key("services"),
            "service matches are not supported by Palisade yet",
            "match the Service's pods with a selector and its target ports instead",
        );
    }
    let ns_given = e.namespace_selector.as_ref().is_some_and(|s| !s.trim().is_empty());
    let ns_scope = if ns_given {
        opt_selector(e.namespace_selector.as_ref(), &path.key("namespaceSelector"), problems)
            .map(|s| s.namespace_scope())
    } else {
        ns.map(|ns| Expr::Eq(expr::NAMESPACE_LABEL.into(), ns.into()))
    };
    let mut picks = Vec::new();
    if let Some(sa) = &e.service_accounts {
        picks.push(service_accounts(sa, &path.key("serviceAccounts"), problems));
    }
    if let Some(s) = opt_selector(e.selector.as_ref(), &path.key("selector"), problems) {
        picks.push(s);
    }
    let not_selector = opt_selector(e.not_selector.as_ref(), &path.key("notSelector"), problems);
    // As Felix: the namespace scope applies as soon as any selector field is used.
    let selector = match ns_scope {
        Some(scope) if !picks.is_empty() || not_selector.is_some() || ns_given => {
            Some(Expr::and(std::iter::once(scope).chain(picks)))
        }
        _ if !picks.is_empty() => Some(Expr::and(picks)),
        _ => None,
    };
    Entity {
        nets: nets(e.nets.as_ref(), version, &path.key("nets"), problems),
        not_nets: nets(e.not_nets.as_ref(), version, &path.key("notNets"), problems),
        selector,
        not_selector,
        ports: ports(e.ports.as_ref(), proto, &path.key("ports"), problems),
        not_ports: ports(e.not_ports.as_ref(), proto, &path.key("notPorts"), problems),
    }
}

fn service_accounts(sa: &resource::ServiceAccountMatch, path: &FieldPath, problems: &mut Problems) -> Expr {
    let mut parts = Vec::new();
    if let Some(s) = opt_selector(sa.selector.as_ref(), &path.key("selector"), problems) {
        parts.push(s.prefixed(expr::SERVICE_ACCOUNT_PREFIX));
    }
    if let Some(names) = sa.names.as_ref().filter(|n| !n.is_empty()) {
        parts.push(Expr::In(expr::SERVICE_ACCOUNT_LABEL.into(), names.iter().cloned().collect::<BTreeSet<_>>()));
    }
    Expr::and(parts)
}

/// The entity's fields as written, for traces: `selector app == "x", ports [80]`.
fn written(e: &EntityRule) -> String {
    let mut parts = Vec::new();
    let mut text = |name: &str, v: &Option<String>| {
        if let Some(v) = v.as_ref().filter(|v| !v.trim().is_empty()) {
            parts.push(format!("{name} {}", v.trim()));
        }
    };
    text("selector", &e.selector);
    text("namespaceSelector", &e.namespace_selector);
    text("notSelector", &e.not_selector);
    let mut list = |name: &str, v: Option<Vec<String>>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            parts.push(format!("{name} [{}]", v.join(", ")));
        }
    };
    list("nets", e.nets.clone());
    list("notNets", e.not_nets.clone());
    list("ports", e.ports.as_ref().map(|p| p.iter().map(|x| x.to_string()).collect()));
    list("notPorts", e.not_ports.as_ref().map(|p| p.iter().map(|x| x.to_string()).collect()));
    if let Some(sa) = &e.service_accounts {
        let mut s = Vec::new();
        if let Some(n) = sa.names.as_ref().filter(|n| !n.is_empty()) {
            s.push(format!("names [{}]", n.join(", ")));
        }
        if let Some(sel) = &sa.selector {
            s.push(format!("selector {sel}"));
        }
        parts.push(format!("serviceAccounts {}", s.join(" ")));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use palisade_core::field::Severity;
    use palisade_core::rule::{Form, Port};
    use serde_json::json;

    use crate::calico::resource;
    use crate::fixture::Objects;
    use crate::object::Object;

    fn calico(kind: &str, value: serde_json::Value) -> Object {
        match kind {
            "NetworkPolicy" => {
                Object::CalicoNetworkPolicy(serde_json::from_value::<resource::NetworkPolicy>(value).unwrap())
            }
            _ => Object::CalicoGlobalNetworkSet(serde_json::from_value::<resource::GlobalNetworkSet>(value).unwrap()),
        }
    }

    #[test]
    fn a_calico_rule_lowers_one_to_one_with_its_namespace_scope_and_words() {
        let policy = json!({"metadata": {"name": "db", "namespace": "shop"}, "spec": {
            "selector": "app == 'db'",
            "ingress": [{"action": "Allow", "protocol": "TCP",
                "source": {"namespaceSelector": "team == 'ops'", "selector": "app == 'probe'"},
                "destination": {"ports": [80, "8000:8080"]}}]}});
        let cluster = Objects::new().ns("shop", json!({})).object(calico("NetworkPolicy", policy)).build().unwrap();
        let rules = cluster.policies[0].ingress.as_ref().unwrap();
        assert_eq!(rules.len(), 1);
        let r = &rules[0];
        assert_eq!((r.protocol, r.origin.rule, r.origin.peer), (Some(6), 0, None));
        assert_eq!(r.source.selector.as_ref().unwrap().to_string(), "pcns.team == \"ops\" && app == \"probe\"");
        assert_eq!(r.destination.ports, [Port::Range(80, 80), Port::Range(8000, 8080)]);
        let Form::Entities { protocol, source, destination, .. } = &r.origin.written.form else {
            panic!("Calico words")
        };
        assert_eq!(protocol.as_deref(), Some("TCP"));
        assert_eq!(source, "selector app == 'probe', namespaceSelector team == 'ops'");
        assert_eq!(destination, "ports [80, 8000:8080]");
        assert_eq!(cluster.policies[0].subject.to_string(), "projectcalico.org/namespace == \"shop\" && app == \"db\"");
    }

    #[test]
    fn a_network_set_cannot_pass_for_a_pod() {
        let set = json!({"metadata": {"name": "partners", "labels": {"projectcalico.org/orchestrator": "k8s", "role": "partner"}},
            "spec": {"nets": ["192.0.2.0/24"]}});
        let cluster = Objects::new().object(calico("GlobalNetworkSet", set)).build().unwrap();
        let labels = &cluster.network_sets[0].labels;
        assert!(!labels.contains_key("projectcalico.org/orchestrator") && labels.contains_key("role"), "{labels:?}");
        let warning = &cluster.warnings[0];
        assert_eq!(warning.severity, Severity::Warning);
        assert_eq!(warning.path.to_string(), "metadata.labels[projectcalico.org/orchestrator]");
    }
}
