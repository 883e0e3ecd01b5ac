//! Validating Calico resources like Calico's API server and compiling them into the engine's
//! model: tiers, ordered policies with actions, network sets and host endpoints.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::resource::{self, EntityRule, NumOrString, PolicySpec};
use super::rule::{CalicoPort, CalicoRule, Entity, Icmp};
use crate::cluster::{HostEndpoint, NetworkSet, StagedAction, Tier};
use crate::expr::{self, Expr};
use crate::field::{FieldPath, Problems};
use crate::label::Labels;
use crate::peer::NsId;
use crate::policy::{Action, Direction, Match, Policy, PolicyKind, Rule, Subject};
use crate::port::{check_port_name, ContainerPort, Protocol};

fn root() -> FieldPath {
    FieldPath::root()
}

const SELECTOR_HELP: &str = "Calico selectors: k == \"v\", k != \"v\", k in {\"a\", \"b\"}, k not in {...}, has(k), !has(k), k contains/starts with/ends with \"s\", all(), global(), combined with !, && and || and parentheses; strings in single or double quotes";

/// Parses a selector field, reporting the column of any error inside it.
pub fn selector(text: &str, path: &FieldPath, problems: &mut Problems) -> Option<Expr> {
    match Expr::parse(text) {
        Ok(e) => Some(e),
        Err(e) => {
            problems.error_in(path, text, e.offset, format!("invalid selector: {e}"), SELECTOR_HELP);
            None
        }
    }
}

fn opt_selector(text: Option<&String>, path: &FieldPath, problems: &mut Problems) -> Option<Expr> {
    let text = text.filter(|t| !t.trim().is_empty())?;
    selector(text, path, problems)
}

pub fn compile_tier(name: &str, spec: Option<&resource::TierSpec>, problems: &mut Problems) -> Tier {
    let spec = spec.cloned().unwrap_or_default();
    let pass_at_end = match spec.default_action.as_deref() {
        None | Some("Deny") => false,
        Some("Pass") => true,
        Some(other) => {
            problems.error(
                &root().key("spec").key("defaultAction"),
                format!("unknown defaultAction {other:?}"),
                "a tier's defaultAction is Deny (the default) or Pass",
            );
            false
        }
    };
    let mut order = spec.order;
    if name == "default" {
        if spec.order.is_some_and(|o| o != crate::cluster::DEFAULT_TIER_ORDER) {
            problems.warn(
                &root().key("spec").key("order"),
                "Calico fixes the default tier's order at 1000000; this order is not used",
                "leave the default tier's order unset",
            );
        }
        order = Some(crate::cluster::DEFAULT_TIER_ORDER);
    }
    Tier { name: name.to_string(), order, pass_at_end, location: problems.locate.locate(&root()) }
}

/// What a policy resource needs besides its spec.
pub struct PolicyContext<'a> {
    pub kind: PolicyKind,
    pub name: &'a str,
    pub namespace: Option<(NsId, &'a str)>,
    pub staged: bool,
}

/// Compiles a Calico NetworkPolicy or GlobalNetworkPolicy (staged or not).
/// `tier_id` resolves a tier name, `None` when no such tier exists.
pub fn compile_policy(
    spec: Option<&PolicySpec>,
    ctx: &PolicyContext,
    tier_id: &dyn Fn(&str) -> Option<usize>,
    problems: &mut Problems,
) -> Policy {
    let spec_path = root().key("spec");
    let spec = spec.cloned().unwrap_or_default();
    let tier_name = spec.tier.clone().unwrap_or_else(|| "default".into());
    let tier = tier_id(&tier_name).unwrap_or_else(|| {
        problems.error(
            &spec_path.key("tier"),
            format!("tier {tier_name:?} does not exist"),
            "create the Tier (projectcalico.org/v3 Tier) first, or leave spec.tier out for the default tier",
        );
        crate::cluster::DEFAULT_TIER
    });
    check_global_only_fields(&spec, ctx, &spec_path, problems);
    check_staged_action(&spec, ctx.staged, &spec_path, problems);
    let subject = Subject::Endpoints(subject(&spec, ctx, &spec_path, problems));
    let (ingress_on, egress_on) = types(&spec, &spec_path, problems);
    let ns_name = ctx.namespace.map(|(_, n)| n);
    let rules = |dir: Direction, list: &Option<Vec<resource::Rule>>, problems: &mut Problems| -> Vec<Rule> {
        list.iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| compile_rule(r, ns_name, &spec_path.key(dir.field()).index(i), problems))
            .collect()
    };
    let ingress = rules(Direction::Ingress, &spec.ingress, problems);
    let egress = rules(Direction::Egress, &spec.egress, problems);
    Policy {
        kind: ctx.kind,
        namespace: ctx.namespace.map(|(id, _)| id),
        name: ctx.name.to_string(),
        tier,
        order: spec.order,
        subject,
        ingress: ingress_on.then_some(ingress),
        egress: egress_on.then_some(egress),
        location: problems.locate.locate(&root()),
    }
}

fn check_global_only_fields(spec: &PolicySpec, ctx: &PolicyContext, path: &FieldPath, problems: &mut Problems) {
    if ctx.kind == PolicyKind::CalicoGlobal {
        for (set, field) in [(spec.do_not_track, "doNotTrack"), (spec.pre_dnat, "preDNAT")] {
            if set == Some(true) {
                problems.warn(
                    &path.key(field),
                    format!("{field} policies act on host endpoints outside connection tracking/before DNAT; Palisade decides them as ordinary policy"),
                    "check such host-endpoint policies on the node itself",
                );
            }
        }
        return;
    }
    let fields = [
        (spec.namespace_selector.is_some(), "namespaceSelector"),
        (spec.do_not_track.is_some(), "doNotTrack"),
        (spec.pre_dnat.is_some(), "preDNAT"),
        (spec.apply_on_forward.is_some(), "applyOnForward"),
    ];
    for (present, field) in fields {
        if present {
            problems.error(
                &path.key(field),
                format!("{field} is a GlobalNetworkPolicy field; a namespaced NetworkPolicy has none"),
                "remove it, or make this a GlobalNetworkPolicy",
            );
        }
    }
}

fn check_staged_action(spec: &PolicySpec, staged: bool, path: &FieldPath, problems: &mut Problems) {
    match (&spec.staged_action, staged) {
        (None, _) => {}
        (Some(_), false) => problems.error(
            &path.key("stagedAction"),
            "stagedAction belongs to staged policies only",
            "remove it, or use StagedNetworkPolicy/StagedGlobalNetworkPolicy",
        ),
        (Some(a), true) if staged_action(Some(a)).is_none() => problems.error(
            &path.key("stagedAction"),
            format!("unknown stagedAction {a:?}"),
            "stagedAction is Set (the default), Delete, Learn or Ignore",
        ),
        _ => {}
    }
}

/// `Some(None)`: Learn/Ignore, which change nothing that would be enforced.
pub fn staged_action(a: Option<&String>) -> Option<Option<StagedAction>> {
    match a.map(String::as_str) {
        None | Some("Set") => Some(Some(StagedAction::Set)),
        Some("Delete") => Some(Some(StagedAction::Delete)),
        Some("Learn" | "Ignore") => Some(None),
        Some(_) => None,
    }
}

/// The endpoints a policy selects, as one expression over endpoint labels.
fn subject(spec: &PolicySpec, ctx: &PolicyContext, path: &FieldPath, problems: &mut Problems) -> Expr {
    let mut parts = Vec::new();
    if let Some((_, ns)) = ctx.namespace {
        parts.push(Expr::Eq(expr::NAMESPACE_LABEL.into(), ns.into()));
    }
    if let Some(e) = opt_selector(spec.selector.as_ref(), &path.key("selector"), problems) {
        parts.push(e);
    }
    if ctx.kind == PolicyKind::CalicoGlobal {
        if let Some(e) = opt_selector(spec.namespace_selector.as_ref(), &path.key("namespaceSelector"), problems) {
            parts.push(e.namespace_scope());
        }
    }
    let sa_path = path.key("serviceAccountSelector");
    if let Some(e) = opt_selector(spec.service_account_selector.as_ref(), &sa_path, problems) {
        parts.push(e.prefixed(expr::SERVICE_ACCOUNT_PREFIX));
    }
    Expr::and(parts)
}

/// `types`, defaulted as Calico does: Ingress unless there are only egress rules, Egress
/// when there are egress rules.
fn types(spec: &PolicySpec, path: &FieldPath, problems: &mut Problems) -> (bool, bool) {
    let has_in = spec.ingress.as_ref().is_some_and(|r| !r.is_empty());
    let has_eg = spec.egress.as_ref().is_some_and(|r| !r.is_empty());
    let Some(types) = spec.types.as_ref().filter(|t| !t.is_empty()) else {
        return (has_in || !has_eg, has_eg);
    };
    let (mut ingress, mut egress) = (false, false);
    for (i, t) in types.iter().enumerate() {
        match t.as_str() {
            "Ingress" => ingress = true,
            "Egress" => egress = true,
            other => problems.error(
                &path.key("types").index(i),
                format!("unknown policy type {other:?}"),
                "types lists Ingress, Egress or both (case-sensitive)",
            ),
        }
    }
    for (has, on, dir) in [(has_in, ingress, "ingress"), (has_eg, egress, "egress")] {
        if has && !on {
            problems.error(
                &path.key(dir),
                format!("{dir} rules are given but types does not include {}", capitalize(dir)),
                "add the direction to types, or remove the rules: Calico rejects this policy",
            );
        }
    }
    (ingress, egress)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

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

fn compile_rule(r: &resource::Rule, ns: Option<&str>, path: &FieldPath, problems: &mut Problems) -> Rule {
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
        compile_entity(&e, ns, number, ip_version, &path.key(field), problems)
    };
    let source = side(&r.source, "source", problems);
    let destination = side(&r.destination, "destination", problems);
    let rule = CalicoRule { protocol: proto, not_protocol: not_proto, ip_version, icmp, not_icmp, source, destination };
    Rule {
        action: act,
        matches: Match::Calico(Box::new(rule)),
        location: problems.locate.locate(&problems.base.join(path)),
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
    crate::policy::parse_cidr(s, path, problems)
}

fn nets(list: Option<&Vec<String>>, version: Option<u8>, path: &FieldPath, problems: &mut Problems) -> Vec<IpNet> {
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

fn ports(
    list: Option<&Vec<NumOrString>>,
    proto: Option<u8>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<CalicoPort> {
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

fn port(p: &NumOrString, path: &FieldPath, problems: &mut Problems) -> Option<CalicoPort> {
    let number = |n: i64, problems: &mut Problems| -> Option<u16> {
        u16::try_from(n).ok().or_else(|| {
            problems.error(path, format!("port {n} is out of range"), PORT_HELP);
            None
        })
    };
    match p {
        NumOrString::Num(n) => number(*n, problems).map(|n| CalicoPort::Range(n, n)),
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
                return Some(CalicoPort::Range(a, b));
            }
            if let Ok(n) = s.parse::<i64>() {
                return number(n, problems).map(|n| CalicoPort::Range(n, n));
            }
            if let Err(e) = check_port_name(s) {
                problems.error(path, e, PORT_HELP);
                return None;
            }
            Some(CalicoPort::Named(s.clone()))
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
        written: written(e),
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

/// Labels of a namespaced thing as Calico endpoints carry them: its namespace's labels with
/// `pcns.` and `projectcalico.org/namespace`.
pub fn namespace_pseudo_labels(ns_name: &str, ns_labels: &Labels, out: &mut Labels) {
    out.insert(expr::NAMESPACE_LABEL.into(), ns_name.into());
    for (k, v) in ns_labels {
        out.insert(format!("{}{k}", expr::NAMESPACE_PREFIX), v.clone());
    }
    out.insert(format!("{}{}", expr::NAMESPACE_PREFIX, expr::NAME_LABEL), ns_name.into());
}

pub fn compile_network_set(
    name: &str,
    namespace: Option<(NsId, &str, &Labels)>,
    labels: &Labels,
    spec: Option<&resource::NetworkSetSpec>,
    problems: &mut Problems,
) -> NetworkSet {
    let path = root().key("spec").key("nets");
    let nets = nets(spec.and_then(|s| s.nets.as_ref()), None, &path, problems);
    let mut all = labels.clone();
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
        labels: labels.clone(),
        ips,
        ports,
        default_allow,
        location: problems.locate.locate(&root()),
    }
}
