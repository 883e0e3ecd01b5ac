//! Kubernetes NetworkPolicy (networking.k8s.io/v1): validated like the API server and
//! compiled to the engine's policy.

use std::str::FromStr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use palisade_core::cluster::DEFAULT_TIER;
use palisade_core::field::{FieldPath, Problems};
use palisade_core::peer::{IpBlock, NamespaceScope, NsId, Peer};
use palisade_core::policy::{Direction, Policy, PolicyKind, Rule, Subject, KUBERNETES_ORDER};
use palisade_core::port::RulePort;
use palisade_core::selector::Selector;

use super::{port, selector};

/// Validates `np` (in namespace `ns`) and compiles it; problems go to `problems`.
pub fn compile(np: &NetworkPolicy, ns: NsId, problems: &mut Problems) -> Policy {
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
    let ingress = compile_rules(ingress_rules, Direction::Ingress, ns, &spec_path, problems);
    let egress = compile_rules(egress_rules, Direction::Egress, ns, &spec_path, problems);
    warn_ignored_rules(&spec, isolates_ingress, isolates_egress, &spec_path, problems);
    Policy {
        kind: PolicyKind::Kubernetes,
        namespace: Some(ns),
        name: np.metadata.name.clone().unwrap_or_default(),
        tier: DEFAULT_TIER,
        order: Some(KUBERNETES_ORDER),
        subject: Subject::Pods(selector),
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
    ns: NsId,
    spec_path: &FieldPath,
    problems: &mut Problems,
) -> Vec<Rule> {
    rules
        .enumerate()
        .map(|(i, (peers, ports))| {
            let rule_path = spec_path.key(dir.field()).index(i);
            let peers = peers.filter(|p| !p.is_empty()).map(|list| {
                list.iter()
                    .enumerate()
                    .filter_map(|(j, p)| compile_peer(p, ns, &rule_path.key(dir.peers_field()).index(j), problems))
                    .collect()
            });
            let ports = ports.filter(|p| !p.is_empty()).map(|list| {
                list.iter()
                    .enumerate()
                    .map(|(j, p)| compile_port(p, &rule_path.key("ports").index(j), problems))
                    .collect()
            });
            Rule::kubernetes(peers, ports, problems.locate.locate(&problems.base.join(&rule_path)))
        })
        .collect()
}

fn compile_port(p: &NetworkPolicyPort, path: &FieldPath, problems: &mut Problems) -> RulePort {
    let protocol = port::protocol(p.protocol.as_deref(), &path.key("protocol"), problems);
    let port = port::compile_port_spec(p.port.as_ref(), p.end_port, path, problems);
    RulePort { protocol, port }
}

fn compile_peer(p: &NetworkPolicyPeer, ns: NsId, path: &FieldPath, problems: &mut Problems) -> Option<Peer> {
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
        None => NamespaceScope::Own(ns),
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
