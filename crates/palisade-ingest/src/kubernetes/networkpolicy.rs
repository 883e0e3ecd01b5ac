//! Kubernetes NetworkPolicy (networking.k8s.io/v1): validated like the API server and
//! lowered to the engine's rules.
//!
//! The lowering follows Calico's own conversion (which decides alike, as a property test
//! holds it to): each written rule becomes one Allow rule per peer and protocol; a pod peer's
//! selectors become one expression over pods' labels as Calico sees them, limited to pods
//! (`projectcalico.org/orchestrator == "k8s"`, so network sets and host endpoints never
//! match) and to the policy's namespace (`projectcalico.org/namespace`) or the selected ones
//! (`pcns.` labels); an ipBlock becomes nets and notNets; `port` omitted is every port of the
//! protocol. Each rule keeps its origin, so traces still quote the peers and ports as written.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use palisade_core::cluster::{NsId, DEFAULT_TIER};
use palisade_core::expr::{Expr, NAMESPACE_LABEL, NAMESPACE_PREFIX, ORCHESTRATOR_LABEL};
use palisade_core::field::{FieldPath, Location, Problems};
use palisade_core::policy::{Direction, Policy, PolicyKind, KUBERNETES_ORDER};
use palisade_core::port::Protocol;
use palisade_core::rule::{Action, Entity, Form, Origin, PeerWords, Port, Rule, Written};

use super::port::{self, RulePort};
use super::selector::{self, Selector};

/// The namespace a peer's pods are in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum NamespaceScope {
    /// No namespaceSelector: the policy's own namespace.
    Own,
    /// namespaceSelector given: every namespace it selects.
    Matching(Selector),
}

/// An ipBlock: a network less its exceptions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct IpBlock {
    cidr: IpNet,
    except: Vec<IpNet>,
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cidr)?;
        if !self.except.is_empty() {
            let ex: Vec<String> = self.except.iter().map(|e| e.to_string()).collect();
            write!(f, " except {}", ex.join(", "))?;
        }
        Ok(())
    }
}

/// One entry of `from`/`to`, validated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Peer {
    /// podSelector and/or namespaceSelector (both in one peer: AND).
    Pods {
        namespaces: NamespaceScope,
        pods: Selector,
    },
    IpBlock(IpBlock),
}

/// Validates `np` (in namespace `ns`) and compiles it; problems go to `problems`.
pub fn compile(np: &NetworkPolicy, ns: NsId, ns_name: &str, problems: &mut Problems) -> Policy {
    let spec_path = FieldPath::root().key("spec");
    let spec = np.spec.clone().unwrap_or_default();
    if np.spec.is_none() {
        problems.error(
            &FieldPath::root(),
            "spec is required",
            "a NetworkPolicy needs a spec with at least podSelector",
        );
    }
    let selector = match &spec.pod_selector {
        Some(s) => selector::compile(s, &spec_path.key("podSelector"), problems),
        None => Selector::everything(),
    };
    let (isolates_ingress, isolates_egress) = policy_types(&spec, &spec_path, problems);
    let ingress_rules = spec.ingress.iter().flatten().map(|r| (r.from.as_ref(), r.ports.as_ref()));
    let egress_rules = spec.egress.iter().flatten().map(|r| (r.to.as_ref(), r.ports.as_ref()));
    let ingress = compile_rules(ingress_rules, Direction::Ingress, ns_name, &spec_path, problems);
    let egress = compile_rules(egress_rules, Direction::Egress, ns_name, &spec_path, problems);
    warn_ignored_rules(&spec, isolates_ingress, isolates_egress, &spec_path, problems);
    Policy {
        kind: PolicyKind::Kubernetes,
        namespace: Some(ns),
        name: np.metadata.name.clone().unwrap_or_default(),
        tier: DEFAULT_TIER,
        order: Some(KUBERNETES_ORDER),
        subject: Expr::and([
            Expr::Eq(NAMESPACE_LABEL.into(), ns_name.into()),
            Expr::Eq(ORCHESTRATOR_LABEL.into(), "k8s".into()),
            selector.to_expr(),
        ]),
        ingress: isolates_ingress.then_some(ingress),
        egress: isolates_egress.then_some(egress),
        location: problems.locate.locate(&FieldPath::root()),
    }
}

/// policyTypes with the API server's defaulting: Ingress always, Egress when egress rules exist.
fn policy_types(
    spec: &k8s_openapi::api::networking::v1::NetworkPolicySpec,
    spec_path: &FieldPath,
    problems: &mut Problems,
) -> (bool, bool) {
    let types = spec.policy_types.clone().unwrap_or_default();
    if types.is_empty() {
        let has_egress = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
        return (true, has_egress);
    }
    let path = spec_path.key("policyTypes");
    if types.len() > 2 {
        problems.error(&path, "may not specify more than two policyTypes", "policyTypes lists Ingress, Egress or both");
    }
    let (mut ingress, mut egress) = (false, false);
    for (i, t) in types.iter().enumerate() {
        let seen = match t.as_str() {
            "Ingress" => std::mem::replace(&mut ingress, true),
            "Egress" => std::mem::replace(&mut egress, true),
            other => {
                problems.error(
                    &path.index(i),
                    format!("unsupported policy type {other:?}"),
                    "supported values: \"Ingress\", \"Egress\" (case-sensitive)",
                );
                false
            }
        };
        if seen {
            problems.warn(&path.index(i), format!("policy type {t} is listed twice"), "list each policy type once");
        }
    }
    (ingress, egress)
}

fn warn_ignored_rules(
    spec: &k8s_openapi::api::networking::v1::NetworkPolicySpec,
    ingress: bool,
    egress: bool,
    spec_path: &FieldPath,
    problems: &mut Problems,
) {
    if !ingress && spec.ingress.as_ref().is_some_and(|r| !r.is_empty()) {
        problems.warn(
            &spec_path.key("ingress"),
            "ingress rules are ignored: policyTypes does not include Ingress",
            "add Ingress to policyTypes, or remove these rules",
        );
    }
    if !egress && spec.egress.as_ref().is_some_and(|r| !r.is_empty()) {
        problems.warn(
            &spec_path.key("egress"),
            "egress rules are ignored: policyTypes does not include Egress",
            "add Egress to policyTypes, or remove these rules",
        );
    }
}

fn compile_rules<'a>(
    rules: impl Iterator<Item = (Option<&'a Vec<NetworkPolicyPeer>>, Option<&'a Vec<NetworkPolicyPort>>)>,
    dir: Direction,
    ns_name: &str,
    spec_path: &FieldPath,
    problems: &mut Problems,
) -> Vec<Rule> {
    let mut out = Vec::new();
    for (i, (peers, ports)) in rules.enumerate() {
        let rule_path = spec_path.key(dir.field()).index(i);
        let peers: Option<Vec<Peer>> = peers.filter(|p| !p.is_empty()).map(|list| {
            list.iter()
                .enumerate()
                .filter_map(|(j, p)| compile_peer(p, &rule_path.key(dir.peers_field()).index(j), problems))
                .collect()
        });
        let ports: Option<Vec<RulePort>> = ports.filter(|p| !p.is_empty()).map(|list| {
            list.iter().enumerate().map(|(j, p)| compile_port(p, &rule_path.key("ports").index(j), problems)).collect()
        });
        let location = problems.locate.locate(&problems.base.join(&rule_path));
        out.extend(lower(i, dir, ns_name, peers.as_deref(), ports.as_deref(), location));
    }
    // A policy lives as long as the cluster: growth's slack (a `Rule` is ~0.5 KB, the first
    // push reserves four) was a tenth of a whole load's memory.
    out.shrink_to_fit();
    out
}

/// One written rule as rules of the one language: one per peer (all peers: one) and protocol
/// of its ports (no ports: one, for every protocol).
fn lower(
    index: usize,
    dir: Direction,
    ns_name: &str,
    peers: Option<&[Peer]>,
    ports: Option<&[RulePort]>,
    location: Option<Location>,
) -> Vec<Rule> {
    let form = Form::Peers {
        peers: peers.map(|ps| ps.iter().map(|p| describe_peer(p, ns_name)).collect()),
        ports: ports.map(|ps| ps.iter().map(RulePort::words).collect()),
    };
    let written = Arc::new(Written { location, form, name: None });
    let peer_entities: Vec<(Option<usize>, Entity)> = match peers {
        None => vec![(None, Entity::default())],
        Some(list) => list.iter().enumerate().map(|(j, p)| (Some(j), peer_entity(p, ns_name))).collect(),
    };
    let mut out = Vec::new();
    for (peer, entity) in peer_entities {
        for (protocol, port_list) in port_groups(ports) {
            let mut peer_side = entity.clone();
            let mut own_side = Entity::default();
            // Kubernetes ports are destination ports: the peer's on egress, the pod's own on ingress.
            match dir {
                Direction::Egress => peer_side.ports = port_list,
                Direction::Ingress => own_side.ports = port_list,
            }
            let (source, destination) = match dir {
                Direction::Ingress => (peer_side, own_side),
                Direction::Egress => (own_side, peer_side),
            };
            out.push(Rule {
                action: Action::Allow,
                protocol: protocol.map(Protocol::number),
                not_protocol: None,
                ip_version: None,
                icmp: None,
                not_icmp: None,
                source,
                destination,
                origin: Origin { rule: index, peer, written: written.clone() },
            });
        }
    }
    out
}

/// Ports by protocol, each protocol's in the order written; no ports field: every protocol.
fn port_groups(ports: Option<&[RulePort]>) -> Vec<(Option<Protocol>, Vec<Port>)> {
    let Some(ports) = ports else { return vec![(None, Vec::new())] };
    let mut groups: Vec<(Option<Protocol>, Vec<Port>)> = Vec::new();
    for p in ports {
        match groups.iter_mut().find(|(proto, _)| *proto == Some(p.protocol)) {
            Some((_, list)) => list.push(p.lowered()),
            None => groups.push((Some(p.protocol), vec![p.lowered()])),
        }
    }
    groups
}

/// The pods or addresses a peer admits, as an entity of the one rule language.
fn peer_entity(p: &Peer, ns_name: &str) -> Entity {
    match p {
        Peer::IpBlock(b) => Entity { nets: vec![b.cidr], not_nets: b.except.clone(), ..Entity::default() },
        Peer::Pods { namespaces, pods } => {
            let scope = match namespaces {
                NamespaceScope::Own => Expr::Eq(NAMESPACE_LABEL.into(), ns_name.into()),
                NamespaceScope::Matching(sel) => sel.to_expr().prefixed(NAMESPACE_PREFIX),
            };
            let only_pods = Expr::Eq(ORCHESTRATOR_LABEL.into(), "k8s".into());
            Entity { selector: Some(Expr::and([only_pods, scope, pods.to_expr()])), ..Entity::default() }
        }
    }
}

/// A peer as traces quote it: `ipBlock 10.0.0.0/8 except 10.1.0.0/16`, `pods app=web in
/// namespace shop`, `pods <all> in namespaces team=a`; a non-empty selector names pods.
fn describe_peer(p: &Peer, ns_name: &str) -> PeerWords {
    match p {
        Peer::IpBlock(b) => PeerWords { text: format!("ipBlock {b}"), by_labels: false, domains: Vec::new() },
        Peer::Pods { namespaces, pods } => {
            let ns = match namespaces {
                NamespaceScope::Own => format!("namespace {ns_name}"),
                NamespaceScope::Matching(s) => format!("namespaces {s}"),
            };
            let by_labels =
                !pods.is_everything() || matches!(namespaces, NamespaceScope::Matching(s) if !s.is_everything());
            PeerWords { text: format!("pods {pods} in {ns}"), by_labels, domains: Vec::new() }
        }
    }
}

fn compile_port(p: &NetworkPolicyPort, path: &FieldPath, problems: &mut Problems) -> RulePort {
    let protocol = port::protocol(p.protocol.as_deref(), &path.key("protocol"), problems);
    let port = port::compile_port_spec(p.port.as_ref(), p.end_port, path, problems);
    RulePort { protocol, port }
}

fn compile_peer(p: &NetworkPolicyPeer, path: &FieldPath, problems: &mut Problems) -> Option<Peer> {
    let selectors = usize::from(p.pod_selector.is_some()) + usize::from(p.namespace_selector.is_some());
    if let Some(block) = &p.ip_block {
        if selectors > 0 {
            problems.error(
                path,
                "may not specify both ipBlock and another peer",
                "an ipBlock stands alone in its peer; write the podSelector/namespaceSelector as a separate list item",
            );
        }
        return compile_ip_block(block, &path.key("ipBlock"), problems).map(Peer::IpBlock);
    }
    if selectors == 0 {
        problems.error(
            path,
            "must specify a peer",
            "a peer needs podSelector, namespaceSelector (both together mean AND) or ipBlock; to allow every peer, omit the from/to list",
        );
        return None;
    }
    let pods = match &p.pod_selector {
        Some(s) => selector::compile(s, &path.key("podSelector"), problems),
        None => Selector::everything(),
    };
    let namespaces = match &p.namespace_selector {
        Some(s) => NamespaceScope::Matching(selector::compile(s, &path.key("namespaceSelector"), problems)),
        None => NamespaceScope::Own,
    };
    Some(Peer::Pods { namespaces, pods })
}

pub(crate) fn parse_cidr(s: &str, path: &FieldPath, problems: &mut Problems) -> Option<IpNet> {
    match IpNet::from_str(s) {
        Ok(n) => {
            if n.trunc() != n {
                problems.warn(
                    path,
                    format!("CIDR {s} has host bits set; it means {}", n.trunc()),
                    format!("write the network address: {}", n.trunc()),
                );
            }
            Some(n.trunc())
        }
        Err(_) => {
            problems.error(
                path,
                format!("invalid CIDR {s:?}"),
                "a CIDR is an IPv4 or IPv6 network with a prefix length, e.g. 10.0.0.0/8 or fd00::/64",
            );
            None
        }
    }
}

fn compile_ip_block(b: &IPBlock, path: &FieldPath, problems: &mut Problems) -> Option<IpBlock> {
    if b.cidr.is_empty() {
        problems.error(&path.key("cidr"), "cidr is required", "give the network, e.g. 0.0.0.0/0");
        return None;
    }
    let cidr = parse_cidr(&b.cidr, &path.key("cidr"), problems)?;
    let mut except = Vec::new();
    for (i, e) in b.except.iter().flatten().enumerate() {
        let p = path.key("except").index(i);
        let Some(net) = parse_cidr(e, &p, problems) else { continue };
        let strict_subset = cidr.contains(&net.network())
            && net.prefix_len() > cidr.prefix_len()
            && matches!((cidr, net), (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_)));
        if !strict_subset {
            problems.error(
                &p,
                format!("except {e} must be a strict subset of cidr {}", b.cidr),
                format!("each except entry must lie inside {} and be smaller than it", b.cidr),
            );
            continue;
        }
        except.push(net);
    }
    Some(IpBlock { cidr, except })
}

#[cfg(test)]
mod tests {
    use palisade_core::cluster::Cluster;
    use palisade_core::endpoint::{Connection, Side};
    use palisade_core::verdict::{decide, Step, Verdict};
    use serde_json::json;

    use super::*;
    use crate::fixture::Objects;

    fn shop() -> Objects {
        Objects::new()
            .ns("shop", json!({}))
            .ns("ops", json!({"team": "ops"}))
            .pod("shop/web", json!({"app": "web"}), "10.0.0.1")
            .pod("shop/db", json!({"app": "db"}), "10.0.0.2")
            .pod("ops/probe", json!({"app": "probe"}), "10.0.1.1")
    }

    const DB: &str = r#"{"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{
        "from": [{"podSelector": {"matchLabels": {"app": "web"}}}, {"namespaceSelector": {"matchLabels": {"team": "ops"}}},
                 {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.1.0/24"]}}],
        "ports": [{"port": 5432}, {"protocol": "UDP", "port": 53}, {"protocol": "TCP"}]}]}"#;

    #[test]
    fn one_rule_per_peer_and_protocol_with_the_written_words_kept() {
        let cluster = shop().netpol("shop/db", serde_json::from_str(DB).unwrap()).build().unwrap();
        let rules = cluster.policies[0].ingress.as_ref().unwrap();
        // Three peers, two protocols; TCP keeps its ports in the order written.
        assert_eq!(rules.len(), 6);
        assert!(rules.iter().all(|r| r.origin.rule == 0 && r.action == Action::Allow));
        let peers: Vec<Option<usize>> = rules.iter().map(|r| r.origin.peer).collect();
        assert_eq!(peers, [Some(0), Some(0), Some(1), Some(1), Some(2), Some(2)]);
        assert_eq!(rules[0].protocol, Some(6));
        assert_eq!(rules[0].destination.ports, [Port::Range(5432, 5432), Port::ALL]);
        assert_eq!(rules[1].destination.ports, [Port::Range(53, 53)]);
        let source = |i: usize| rules[i].source.selector.as_ref().map(|e| e.to_string());
        let pods =
            "projectcalico.org/orchestrator == \"k8s\" && projectcalico.org/namespace == \"shop\" && app == \"web\"";
        assert_eq!(source(0).as_deref(), Some(pods));
        let ns = "projectcalico.org/orchestrator == \"k8s\" && pcns.team == \"ops\"";
        assert_eq!(source(2).as_deref(), Some(ns));
        assert_eq!((rules[4].source.nets.len(), rules[4].source.not_nets.len()), (1, 1));
        let subject =
            "projectcalico.org/namespace == \"shop\" && projectcalico.org/orchestrator == \"k8s\" && app == \"db\"";
        assert_eq!(cluster.policies[0].subject.to_string(), subject);
    }

    fn ingress_detail(cluster: &Cluster, src: (&str, &str), port: u16, protocol: Protocol) -> (Verdict, String) {
        let side = |(ns, name): (&str, &str)| Side::pod(cluster, cluster.pod(ns, name).unwrap());
        let d = decide(cluster, &Connection::new(side(src), side(("shop", "db")), port, protocol));
        let detail = d.trace.iter().find_map(|s| match s {
            Step::Policies { direction: Direction::Ingress, policies, .. } => Some(policies[0].rules[0].detail.clone()),
            _ => None,
        });
        (d.verdict, detail.unwrap())
    }

    #[test]
    fn traces_quote_the_ports_and_peers_as_written() {
        let cluster = shop().netpol("shop/db", serde_json::from_str(DB).unwrap()).build().unwrap();
        let (v, detail) = ingress_detail(&cluster, ("shop", "web"), 5432, Protocol::TCP);
        assert_eq!(v, Verdict::Allow);
        assert_eq!(detail, "port 5432 matches TCP/5432; peer [0] pods app=web in namespace shop matches shop/web");
        let (v, detail) = ingress_detail(&cluster, ("shop", "web"), 8080, Protocol::TCP);
        assert_eq!(
            (v, detail.as_str()),
            (Verdict::Allow, "port 8080 matches TCP/any; peer [0] pods app=web in namespace shop matches shop/web")
        );
        let (v, detail) = ingress_detail(&cluster, ("shop", "web"), 5432, Protocol::SCTP);
        assert_eq!(v, Verdict::Deny);
        assert_eq!(detail, "SCTP/5432 is not among ports [TCP/5432, UDP/53, TCP/any]");
        let (v, detail) = ingress_detail(&cluster, ("ops", "probe"), 53, Protocol::UDP);
        assert_eq!(v, Verdict::Allow);
        assert_eq!(detail, "port 53 matches UDP/53; peer [1] pods <all> in namespaces team=ops matches ops/probe");
    }

    #[test]
    fn a_pod_cannot_pass_for_a_namespace_by_its_own_labels() {
        // shop has no team label; a pod labelled pcns.team=ops must not match namespaceSelector team=ops.
        let spoof = shop().pod("shop/spoof", json!({"pcns.team": "ops"}), "172.16.0.9");
        let cluster = spoof.netpol("shop/db", serde_json::from_str(DB).unwrap()).build().unwrap();
        let (v, detail) = ingress_detail(&cluster, ("shop", "spoof"), 53, Protocol::UDP);
        assert_eq!(v, Verdict::Deny);
        let none = "port 53 matches UDP/53; shop/spoof matches none of the peers: \
            [0] pods app=web in namespace shop: namespace or pod labels do not match; \
            [1] pods <all> in namespaces team=ops: namespace or pod labels do not match; \
            [2] ipBlock 10.0.0.0/8 except 10.0.1.0/24: 172.16.0.9 is outside 10.0.0.0/8";
        assert_eq!(detail, none);
        let (_, detail) = ingress_detail(&cluster, ("ops", "probe"), 5432, Protocol::TCP);
        assert!(detail.ends_with("[1] pods <all> in namespaces team=ops matches ops/probe"), "{detail}");
    }
}
