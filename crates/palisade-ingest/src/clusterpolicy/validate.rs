//! Validation of ClusterNetworkPolicy (v1alpha2) and AdminNetworkPolicy /
//! BaselineAdminNetworkPolicy (v1alpha1) as the CRD schema and its CEL rules do
//! (network-policy-api `apis/v1alpha2/clusternetworkpolicy_types.go`, v0.1.8 `apis/v1alpha1/`),
//! producing one checked form of both versions that [`super::lower`] turns into rules.
//!
//! Beyond the CRD, as `docs/cnp-spec.md` §12 records: `domainNames` only in Accept rules, and
//! v1alpha1 protocols only TCP, UDP or SCTP. A peer whose only fields are unknown to this
//! version (a newer CRD's) is not an error: its rule fails closed, with a warning.

use std::collections::HashSet;

use ipnet::IpNet;
use palisade_core::field::{FieldPath, Problems, Seg};
use palisade_core::port::Protocol;
use palisade_core::rule::Action;

use super::resource as r;
use crate::kubernetes::selector::{self, Selector};

/// Which of the three kinds an object is: it fixes the tier, the actions and the limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// v1alpha2 ClusterNetworkPolicy.
    Cnp,
    /// v1alpha1 AdminNetworkPolicy.
    Anp,
    /// v1alpha1 BaselineAdminNetworkPolicy.
    Banp,
}

impl Api {
    fn max_items(self) -> usize {
        match self {
            Api::Cnp => 25,
            _ => 100,
        }
    }
    fn actions(self) -> &'static str {
        match self {
            Api::Cnp => "Accept, Deny or Pass",
            Api::Anp => "Allow, Deny or Pass",
            Api::Banp => "Allow or Deny",
        }
    }
    fn action(self, s: &str) -> Option<Action> {
        match (self, s) {
            (Api::Cnp, "Accept") | (Api::Anp | Api::Banp, "Allow") => Some(Action::Allow),
            (_, "Deny") => Some(Action::Deny),
            (Api::Cnp | Api::Anp, "Pass") => Some(Action::Pass),
            _ => None,
        }
    }
    /// The egress peer fields this kind knows.
    fn egress_peers(self) -> &'static str {
        match self {
            Api::Banp => "namespaces, pods, nodes, networks",
            _ => "namespaces, pods, nodes, networks, domainNames",
        }
    }
}

/// The tier a policy sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierKind {
    Admin,
    Baseline,
}

/// A policy as validated, either version.
#[derive(Clone, Debug)]
pub struct Checked {
    pub api: Api,
    pub tier: TierKind,
    /// `None` for the BaselineAdminNetworkPolicy, which has none.
    pub priority: Option<u32>,
    pub subject: Pods,
    pub ingress: Vec<CheckedRule>,
    pub egress: Vec<CheckedRule>,
}

/// Pods by namespace selector AND pod selector (`namespaces` subjects and peers: every pod).
#[derive(Clone, Debug, Default)]
pub struct Pods {
    pub namespaces: Selector,
    pub pods: Selector,
    /// Written as `namespaces` (true) or `pods` (false), for the words traces quote.
    pub by_namespace: bool,
}

#[derive(Clone, Debug)]
pub struct CheckedRule {
    pub index: usize,
    pub name: Option<String>,
    pub action: Action,
    /// The action as written (`Accept`, `Allow`, ...).
    pub action_word: String,
    pub peers: Vec<CheckedPeer>,
    /// `None`: all traffic.
    pub ports: Option<Vec<CheckedPort>>,
    pub path: FieldPath,
}

#[derive(Clone, Debug)]
pub enum CheckedPeer {
    Pods(Pods),
    Nodes(Selector),
    Networks(Vec<IpNet>),
    DomainNames(Vec<String>),
    /// Only fields this version does not know: the rule fails closed.
    Unknown(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckedPort {
    /// A protocol and an inclusive range (one port: `start == end`).
    Numbers(Protocol, u16, u16),
    /// Resolved on the destination pod's container ports.
    Named(String),
}

/// A rule of either version, before checking.
struct RawRule<'a> {
    name: Option<&'a String>,
    action: Option<&'a String>,
    peers: Option<&'a Vec<r::Peer>>,
    ports: RawPorts<'a>,
}

enum RawPorts<'a> {
    V2(Option<&'a Vec<r::ProtocolEntry>>),
    V1(Option<&'a Vec<r::AnpPort>>),
}

fn root() -> FieldPath {
    FieldPath::root()
}

/// Validates a ClusterNetworkPolicy.
pub fn check_cnp(o: &r::ClusterNetworkPolicy, problems: &mut Problems) -> Checked {
    let spec = spec_or_error(o.spec.as_ref(), problems);
    let sp = root().key("spec");
    let tier = match spec.tier.as_deref() {
        Some("Admin") => TierKind::Admin,
        Some("Baseline") => TierKind::Baseline,
        Some(other) => {
            problems.error(&sp.key("tier"), format!("unknown tier {other:?}: Admin or Baseline"), TIER_HELP);
            TierKind::Admin
        }
        None => {
            problems.error(&sp, "tier is required: Admin or Baseline", TIER_HELP);
            TierKind::Admin
        }
    };
    let priority = priority(spec.priority, &sp, problems);
    let subject = subject(Api::Cnp, spec.subject.as_ref(), &sp, problems);
    let ingress = spec.ingress.as_ref().map(|l| {
        l.iter()
            .map(|x| RawRule {
                name: x.name.as_ref(),
                action: x.action.as_ref(),
                peers: x.from.as_ref(),
                ports: RawPorts::V2(x.protocols.as_ref()),
            })
            .collect::<Vec<_>>()
    });
    let egress = spec.egress.as_ref().map(|l| {
        l.iter()
            .map(|x| RawRule {
                name: x.name.as_ref(),
                action: x.action.as_ref(),
                peers: x.to.as_ref(),
                ports: RawPorts::V2(x.protocols.as_ref()),
            })
            .collect::<Vec<_>>()
    });
    let unknown = &o.unknown_peer_fields;
    Checked {
        api: Api::Cnp,
        tier,
        priority,
        subject,
        ingress: rules(Api::Cnp, false, ingress.as_deref(), unknown, problems),
        egress: rules(Api::Cnp, true, egress.as_deref(), unknown, problems),
    }
}

/// Validates an AdminNetworkPolicy (`api` = [`Api::Anp`]) or the BaselineAdminNetworkPolicy.
pub fn check_anp(
    api: Api,
    name: &str,
    spec: Option<&r::AnpSpec>,
    unknown: &[FieldPath],
    problems: &mut Problems,
) -> Checked {
    let spec = spec_or_error(spec, problems);
    let sp = root().key("spec");
    let priority = match api {
        Api::Banp => {
            if name != "default" {
                problems.error(
                    &root().key("metadata").key("name"),
                    format!("BaselineAdminNetworkPolicy must be named \"default\" (it is a singleton), not {name:?}"),
                    "rename it default; a cluster has one BaselineAdminNetworkPolicy",
                );
            }
            None
        }
        _ => priority(spec.priority, &sp, problems),
    };
    let subject = subject(api, spec.subject.as_ref(), &sp, problems);
    let ingress = spec.ingress.as_ref().map(|l| {
        l.iter()
            .map(|x| RawRule {
                name: x.name.as_ref(),
                action: x.action.as_ref(),
                peers: x.from.as_ref(),
                ports: RawPorts::V1(x.ports.as_ref()),
            })
            .collect::<Vec<_>>()
    });
    let egress = spec.egress.as_ref().map(|l| {
        l.iter()
            .map(|x| RawRule {
                name: x.name.as_ref(),
                action: x.action.as_ref(),
                peers: x.to.as_ref(),
                ports: RawPorts::V1(x.ports.as_ref()),
            })
            .collect::<Vec<_>>()
    });
    Checked {
        api,
        tier: if api == Api::Banp { TierKind::Baseline } else { TierKind::Admin },
        priority,
        subject,
        ingress: rules(api, false, ingress.as_deref(), unknown, problems),
        egress: rules(api, true, egress.as_deref(), unknown, problems),
    }
}

const TIER_HELP: &str = "spec.tier is Admin (before NetworkPolicy) or Baseline (after it)";

fn spec_or_error<T: Clone + Default>(spec: Option<&T>, problems: &mut Problems) -> T {
    if spec.is_none() {
        problems.error(&root(), "spec is required", "a cluster network policy needs a spec with a subject");
    }
    spec.cloned().unwrap_or_default()
}

fn priority(p: Option<i64>, sp: &FieldPath, problems: &mut Problems) -> Option<u32> {
    let help = "lower priorities are evaluated first; the API allows 0 to 1000";
    match p {
        None => {
            problems.error(sp, "priority is required: 0 to 1000", help);
            None
        }
        Some(n) if !(0..=1000).contains(&n) => {
            problems.error(&sp.key("priority"), format!("priority {n} must be between 0 and 1000"), help);
            None
        }
        Some(n) => Some(n as u32),
    }
}

fn subject(api: Api, s: Option<&r::Subject>, sp: &FieldPath, problems: &mut Problems) -> Pods {
    let help = "namespaces: a namespace selector, or pods: {namespaceSelector, podSelector}";
    let Some(s) = s else {
        problems.error(sp, "subject is required: one of namespaces, pods", help);
        return Pods::default();
    };
    let path = sp.key("subject");
    match (&s.namespaces, &s.pods) {
        (Some(ns), None) => namespaces(ns, &path.key("namespaces"), problems),
        (None, Some(p)) => pods(api, p, &path.key("pods"), problems),
        _ => {
            problems.error(&path, "subject must set exactly one of namespaces, pods", help);
            Pods::default()
        }
    }
}

fn namespaces(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    path: &FieldPath,
    problems: &mut Problems,
) -> Pods {
    Pods { namespaces: selector::compile(sel, path, problems), pods: Selector::everything(), by_namespace: true }
}

fn pods(api: Api, p: &r::NamespacedPod, path: &FieldPath, problems: &mut Problems) -> Pods {
    let namespaces = match &p.namespace_selector {
        Some(s) => selector::compile(s, &path.key("namespaceSelector"), problems),
        None if api != Api::Cnp => {
            problems.error(
                path,
                "namespaceSelector is required in v1alpha1 (namespaceSelector: {} selects every namespace)",
                "add namespaceSelector: {} for pods in every namespace",
            );
            Selector::everything()
        }
        // v1alpha2: omitted (or empty) selects every namespace.
        None => Selector::everything(),
    };
    let pods = match &p.pod_selector {
        Some(s) => selector::compile(s, &path.key("podSelector"), problems),
        None => {
            problems.error(
                path,
                "podSelector is required (an empty one, {}, selects every pod)",
                "add podSelector: {} for every pod of the selected namespaces",
            );
            Selector::everything()
        }
    };
    Pods { namespaces, pods, by_namespace: false }
}

fn rules(
    api: Api,
    egress: bool,
    list: Option<&[RawRule]>,
    unknown: &[FieldPath],
    problems: &mut Problems,
) -> Vec<CheckedRule> {
    let Some(list) = list else { return Vec::new() };
    let field = if egress { "egress" } else { "ingress" };
    let path = root().key("spec").key(field);
    let max = api.max_items();
    if list.len() > max {
        problems.error(
            &path,
            format!("{field} must list at most {max} rules, found {}", list.len()),
            "split the policy in two",
        );
    }
    list.iter()
        .enumerate()
        .filter_map(|(i, raw)| rule(api, egress, i, raw, &path.index(i), unknown, problems))
        .collect()
}

fn rule(
    api: Api,
    egress: bool,
    index: usize,
    raw: &RawRule,
    path: &FieldPath,
    unknown: &[FieldPath],
    problems: &mut Problems,
) -> Option<CheckedRule> {
    if let Some(n) = raw.name.filter(|n| n.chars().count() > 100) {
        problems.error(
            &path.key("name"),
            format!("rule name is {} characters long, at most 100 are allowed", n.chars().count()),
            "shorten the rule's name",
        );
    }
    let action_help = format!("a rule's action is {}", api.actions());
    let action = match raw.action {
        None => {
            problems.error(path, format!("action is required: {}", api.actions()), &action_help);
            None
        }
        Some(a) => {
            let parsed = api.action(a);
            if parsed.is_none() {
                let msg = match (api, a.as_str()) {
                    (Api::Banp, "Pass") => {
                        "unknown action \"Pass\": a BaselineAdminNetworkPolicy rule is Allow or Deny".into()
                    }
                    _ => format!("unknown action {a:?}: {}", api.actions()),
                };
                problems.error(&path.key("action"), msg, &action_help);
            }
            parsed
        }
    };
    let peers_field = if egress { "to" } else { "from" };
    let max = api.max_items();
    let peers = match raw.peers {
        None => {
            problems.error(
                path,
                format!("{peers_field} is required: 1 to {max} peers"),
                "list the peers the rule is about",
            );
            Vec::new()
        }
        Some(list) => {
            let ppath = path.key(peers_field);
            if list.is_empty() || list.len() > max {
                problems.error(
                    &ppath,
                    format!("{peers_field} must list 1 to {max} peers, found {}", list.len()),
                    "split the rule in two",
                );
            }
            list.iter()
                .enumerate()
                .filter_map(|(j, p)| peer(api, egress, p, &ppath.index(j), unknown, problems))
                .collect()
        }
    };
    let ports = match &raw.ports {
        RawPorts::V2(list) => list.map(|l| protocols(l, &path.key("protocols"), problems)),
        RawPorts::V1(list) => list.map(|l| anp_ports(l, &path.key("ports"), problems)),
    };
    check_named_ports(api, &peers, raw, path, problems);
    if let Some(a) = action.filter(|&a| a != Action::Allow) {
        for (j, p) in peers.iter().enumerate() {
            if matches!(p, CheckedPeer::DomainNames(_)) {
                problems.error(
                    &path.key(peers_field).index(j),
                    format!(
                        "domainNames peers are supported in Accept rules only, not {}: deny by networks, or accept the allowed names above a broader Deny",
                        a.as_str()
                    ),
                    "the API documents domainNames for Accept rules only; Palisade cannot honour a Deny or Pass by name",
                );
            }
        }
    }
    Some(CheckedRule {
        index,
        name: raw.name.cloned(),
        action: action?,
        action_word: raw.action.cloned().unwrap_or_default(),
        peers,
        ports: ports.flatten(),
        path: path.clone(),
    })
}

/// The CEL rule of the experimental channel: no named ports with peers that have none.
fn check_named_ports(api: Api, peers: &[CheckedPeer], raw: &RawRule, path: &FieldPath, problems: &mut Problems) {
    let addressed = peers
        .iter()
        .any(|p| matches!(p, CheckedPeer::Networks(_) | CheckedPeer::Nodes(_) | CheckedPeer::DomainNames(_)));
    if !addressed {
        return;
    }
    let named: Vec<FieldPath> = match &raw.ports {
        RawPorts::V2(Some(l)) => l
            .iter()
            .enumerate()
            .filter(|(_, e)| e.destination_named_port.is_some())
            .map(|(i, _)| path.key("protocols").index(i))
            .collect(),
        RawPorts::V1(Some(l)) => l
            .iter()
            .enumerate()
            .filter(|(_, e)| e.named_port.is_some())
            .map(|(i, _)| path.key("ports").index(i))
            .collect(),
        _ => Vec::new(),
    };
    let (field, peers_text, instead) = match api {
        Api::Cnp => ("destinationNamedPort", "networks, nodes or domainNames", "use a port number"),
        Api::Anp => ("namedPort", "networks, nodes or domainNames", "use portNumber or portRange"),
        Api::Banp => ("namedPort", "networks or nodes", "use portNumber or portRange"),
    };
    for at in named {
        problems.error(
            &at,
            format!(
                "{field} cannot be used with {peers_text} peers (they have no named ports): {instead}, or move those peers to a rule of their own"
            ),
            "the CRD's CEL rule refuses it (experimental channel)",
        );
    }
}

fn peer(
    api: Api,
    egress: bool,
    p: &r::Peer,
    path: &FieldPath,
    unknown: &[FieldPath],
    problems: &mut Problems,
) -> Option<CheckedPeer> {
    let mut unknown_here: Vec<String> = unknown
        .iter()
        .filter(|u| u.0.len() == path.0.len() + 1 && u.0.starts_with(&path.0))
        .filter_map(|u| match u.0.last() {
            Some(Seg::Key(k)) => Some(k.clone()),
            _ => None,
        })
        .collect();
    // Fields of egress peers (or newer ones) in a peer that does not have them are unknown.
    let set = [
        ("namespaces", p.namespaces.is_some(), true),
        ("pods", p.pods.is_some(), true),
        ("nodes", p.nodes.is_some(), egress),
        ("networks", p.networks.is_some(), egress),
        ("domainNames", p.domain_names.is_some(), egress && api != Api::Banp),
    ];
    let known: Vec<&str> = set.iter().filter(|(_, on, ok)| *on && *ok).map(|(n, _, _)| *n).collect();
    unknown_here.extend(set.iter().filter(|(_, on, ok)| *on && !*ok).map(|(n, _, _)| n.to_string()));
    if known.is_empty() && !unknown_here.is_empty() {
        problems.warn(
            path,
            format!(
                "peer fields {} are unknown to this version: the rule fails closed (an Accept rule matches nothing, a Deny or Pass rule denies everything)",
                unknown_here.join(", ")
            ),
            "a newer CRD's peer; upgrade Palisade, or write the peer with the fields this version knows",
        );
        return Some(CheckedPeer::Unknown(unknown_here));
    }
    if known.len() != 1 || !unknown_here.is_empty() {
        let fields = if egress { api.egress_peers() } else { "namespaces, pods" };
        problems.error(
            path,
            format!("a peer must set exactly one of {fields}"),
            "write each selector or address list as its own peer",
        );
        return None;
    }
    Some(match known[0] {
        "namespaces" => CheckedPeer::Pods(namespaces(p.namespaces.as_ref()?, &path.key("namespaces"), problems)),
        "pods" => CheckedPeer::Pods(pods(api, p.pods.as_ref()?, &path.key("pods"), problems)),
        "nodes" => CheckedPeer::Nodes(selector::compile(p.nodes.as_ref()?, &path.key("nodes"), problems)),
        "networks" => CheckedPeer::Networks(networks(p.networks.as_ref()?, &path.key("networks"), problems)),
        _ => CheckedPeer::DomainNames(domain_names(p.domain_names.as_ref()?, &path.key("domainNames"), problems)),
    })
}

fn count(list_len: usize, max: usize, what: &str, noun: &str, path: &FieldPath, problems: &mut Problems) {
    if list_len == 0 || list_len > max {
        problems.error(
            path,
            format!("{what} must list 1 to {max} {noun}, found {list_len}"),
            format!("a {what} list holds 1 to {max} {noun}"),
        );
    }
}

/// Reports the second and later copies of an item of a `listType=set` list.
fn duplicates(list: &[String], what: &str, path: &FieldPath, problems: &mut Problems) {
    let mut seen = HashSet::new();
    for (i, item) in list.iter().enumerate() {
        if !seen.insert(item) {
            problems.error(&path.index(i), format!("duplicate {item:?} in {what} (a set)"), "list each item once");
        }
    }
}

fn networks(list: &[String], path: &FieldPath, problems: &mut Problems) -> Vec<IpNet> {
    count(list.len(), 25, "networks", "CIDRs", path, problems);
    duplicates(list, "networks", path, problems);
    list.iter()
        .enumerate()
        .filter_map(|(i, s)| match s.parse::<IpNet>() {
            // isCIDR takes host bits: 10.0.0.1/8 is 10.0.0.0/8.
            Ok(n) if s.len() <= 43 => Some(n.trunc()),
            _ => {
                problems.error(
                    &path.index(i),
                    format!(
                        "invalid CIDR {s:?}: an IPv4 or IPv6 address and prefix length, like 10.0.0.0/8 or fd00::/8"
                    ),
                    "write an address with a prefix length",
                );
                None
            }
        })
        .collect()
}

fn domain_names(list: &[String], path: &FieldPath, problems: &mut Problems) -> Vec<String> {
    count(list.len(), 25, "domainNames", "names", path, problems);
    duplicates(list, "domainNames", path, problems);
    for (i, name) in list.iter().enumerate() {
        if !super::domain::valid_pattern(name) {
            problems.error(
                &path.index(i),
                format!("invalid domain name {name:?}: labels of letters, digits, '-' and '_', separated by dots, at least two; '*.' only as a whole first label"),
                "write a fully qualified name (api.example.com) or a wildcard of whole labels (*.example.com)",
            );
        }
    }
    list.to_vec()
}

fn port_number(n: Option<i64>, what: &str, path: &FieldPath, problems: &mut Problems) -> Option<u16> {
    match n {
        None => {
            problems.error(path, format!("{what} is required: 1 to 65535"), "give a port number");
            None
        }
        Some(n) if (1..=65535).contains(&n) => Some(n as u16),
        Some(n) => {
            problems.error(&path.key(what), format!("port {n} is out of range: 1 to 65535"), "ports are 1 to 65535");
            None
        }
    }
}

fn protocols(list: &[r::ProtocolEntry], path: &FieldPath, problems: &mut Problems) -> Option<Vec<CheckedPort>> {
    if list.is_empty() || list.len() > 25 {
        problems.error(
            path,
            format!("protocols must list 1 to 25 entries, found {} (leave it out to match all traffic)", list.len()),
            "leave protocols out to match all traffic",
        );
    }
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let at = path.index(i);
        let set = [
            (Some(Protocol::TCP), e.tcp.as_ref(), "tcp"),
            (Some(Protocol::UDP), e.udp.as_ref(), "udp"),
            (Some(Protocol::SCTP), e.sctp.as_ref(), "sctp"),
        ];
        let n = set.iter().filter(|(_, v, _)| v.is_some()).count() + usize::from(e.destination_named_port.is_some());
        if n != 1 {
            problems.error(
                &at,
                "a protocols entry must set exactly one of tcp, udp, sctp, destinationNamedPort",
                "write one protocol per entry",
            );
            continue;
        }
        if let Some(name) = &e.destination_named_port {
            out.push(CheckedPort::Named(name.clone()));
            continue;
        }
        let Some((Some(proto), Some(pp), field)) = set.into_iter().find(|(_, v, _)| v.is_some()) else { continue };
        let Some(dp) = &pp.destination_port else {
            problems.error(
                &at.key(field),
                format!("{field} needs destinationPort (leave the protocols entry out to match every port)"),
                "give destinationPort: {number: N} or {range: {start: A, end: B}}",
            );
            continue;
        };
        let dpath = at.key(field).key("destinationPort");
        match (dp.number, &dp.range) {
            (Some(_), None) => {
                if let Some(n) = port_number(dp.number, "number", &dpath, problems) {
                    out.push(CheckedPort::Numbers(proto, n, n));
                }
            }
            (None, Some(range)) => {
                let rpath = dpath.key("range");
                let (a, b) = (
                    port_number(range.start, "start", &rpath, problems),
                    port_number(range.end, "end", &rpath, problems),
                );
                if let (Some(a), Some(b)) = (a, b) {
                    if a >= b {
                        let hint = if a == b { format!(" (use number: {a} for one port)") } else { String::new() };
                        problems.error(
                            &rpath,
                            format!("range start {a} must be less than end {b}{hint}"),
                            "Start port must be less than End port",
                        );
                    } else {
                        out.push(CheckedPort::Numbers(proto, a, b));
                    }
                }
            }
            _ => {
                problems.error(&dpath, "destinationPort must set exactly one of number, range", "give number or range")
            }
        }
    }
    Some(out)
}

fn v1_protocol(p: Option<&String>, path: &FieldPath, problems: &mut Problems) -> Option<Protocol> {
    match p.map(String::as_str) {
        // The CRD defaults it to TCP.
        None => Some(Protocol::TCP),
        Some(s) => Protocol::from_api(s).or_else(|| {
            problems.error(
                &path.key("protocol"),
                format!("unsupported protocol {s:?}: TCP, UDP or SCTP"),
                "protocols are TCP, UDP or SCTP, in capitals",
            );
            None
        }),
    }
}

fn anp_ports(list: &[r::AnpPort], path: &FieldPath, problems: &mut Problems) -> Option<Vec<CheckedPort>> {
    if list.is_empty() || list.len() > 100 {
        problems.error(
            path,
            format!("ports must list 1 to 100 entries, found {} (leave it out to match all traffic)", list.len()),
            "leave ports out to match all traffic",
        );
    }
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let at = path.index(i);
        let n = usize::from(e.port_number.is_some())
            + usize::from(e.named_port.is_some())
            + usize::from(e.port_range.is_some());
        if n != 1 {
            problems.error(
                &at,
                "a ports entry must set exactly one of portNumber, namedPort, portRange",
                "write one port per entry",
            );
            continue;
        }
        if let Some(pn) = &e.port_number {
            let p = at.key("portNumber");
            let proto = v1_protocol(pn.protocol.as_ref(), &p, problems);
            let port = port_number(pn.port, "port", &p, problems);
            if let (Some(proto), Some(port)) = (proto, port) {
                out.push(CheckedPort::Numbers(proto, port, port));
            }
        } else if let Some(name) = &e.named_port {
            out.push(CheckedPort::Named(name.clone()));
        } else if let Some(range) = &e.port_range {
            let p = at.key("portRange");
            let proto = v1_protocol(range.protocol.as_ref(), &p, problems);
            let (a, b) = (port_number(range.start, "start", &p, problems), port_number(range.end, "end", &p, problems));
            if let (Some(proto), Some(a), Some(b)) = (proto, a, b) {
                // v1alpha1 has no start < end rule: a reversed range matches nothing.
                if a <= b {
                    out.push(CheckedPort::Numbers(proto, a, b));
                } else {
                    problems.warn(
                        &p,
                        format!("range start {a} is after end {b}: it matches no port"),
                        "swap start and end",
                    );
                }
            }
        }
    }
    Some(out)
}
