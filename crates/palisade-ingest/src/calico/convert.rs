//! Converting between Kubernetes NetworkPolicy and Calico NetworkPolicy.
//!
//! Kubernetes → Calico is lossless and follows Calico's own conversion: order 1000 in the
//! default tier, one Allow rule per peer and protocol, selectors limited to Kubernetes pods
//! (`projectcalico.org/orchestrator == "k8s"`) so that NetworkSets never widen a rule.
//! Calico → Kubernetes succeeds only where the meaning is kept; every rule that cannot be
//! expressed is named with the reason, and its policy is not emitted.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy as K8sPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::resource::{self, EntityRule, NumOrString, PolicySpec};
use palisade_core::expr::{Expr, ORCHESTRATOR_LABEL};
use palisade_core::field::{FieldPath, Nowhere, Problems};
use palisade_core::policy::KUBERNETES_ORDER;

use crate::kubernetes::selector::compile as compile_selector;

/// Kubernetes' label selector as a Calico expression.
pub fn selector_expr(sel: Option<&LabelSelector>) -> Expr {
    let Some(sel) = sel else { return Expr::All };
    let mut problems = Problems::new(String::new(), &Nowhere);
    compile_selector(sel, &FieldPath::root(), &mut problems).to_expr()
}

fn k8s_pods(sel: Option<&LabelSelector>) -> String {
    Expr::and([Expr::Eq(ORCHESTRATOR_LABEL.into(), "k8s".into()), selector_expr(sel)]).to_string()
}

/// Kubernetes NetworkPolicy → Calico NetworkPolicy with the same verdicts.
pub fn to_calico(np: &K8sPolicy) -> resource::NetworkPolicy {
    let spec = np.spec.clone().unwrap_or_default();
    let types = spec.policy_types.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| {
        let mut t = vec!["Ingress".to_string()];
        if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
            t.push("Egress".into());
        }
        t
    });
    let has = |t: &str| types.iter().any(|x| x == t);
    let ingress = spec.ingress.iter().flatten().flat_map(|r| rules(r.from.as_ref(), r.ports.as_ref(), true));
    let egress = spec.egress.iter().flatten().flat_map(|r| rules(r.to.as_ref(), r.ports.as_ref(), false));
    let ingress: Vec<resource::Rule> = ingress.collect();
    let egress: Vec<resource::Rule> = egress.collect();
    resource::NetworkPolicy {
        api_version: Some("projectcalico.org/v3".into()),
        kind: Some("NetworkPolicy".into()),
        metadata: ObjectMeta {
            name: np.metadata.name.clone(),
            namespace: np.metadata.namespace.clone(),
            ..Default::default()
        },
        spec: Some(PolicySpec {
            order: Some(KUBERNETES_ORDER),
            selector: Some(k8s_pods(spec.pod_selector.as_ref())),
            types: Some(types.iter().filter(|t| *t == "Ingress" || *t == "Egress").cloned().collect()),
            ingress: has("Ingress").then_some(ingress),
            egress: has("Egress").then_some(egress),
            ..Default::default()
        }),
    }
}

/// One Kubernetes rule → Calico rules: one per peer and protocol.
fn rules(
    peers: Option<&Vec<NetworkPolicyPeer>>,
    ports: Option<&Vec<NetworkPolicyPort>>,
    ingress: bool,
) -> Vec<resource::Rule> {
    let peers: Vec<Option<EntityRule>> = match peers.filter(|p| !p.is_empty()) {
        None => vec![None],
        Some(list) => list.iter().map(|p| Some(peer(p))).collect(),
    };
    let by_protocol = port_groups(ports);
    let mut out = Vec::new();
    for p in &peers {
        for (protocol, port_list) in &by_protocol {
            let mut peer_side = p.clone();
            let mut dst = if ingress { None } else { peer_side.take() };
            let src = if ingress { peer_side } else { None };
            if let Some(list) = port_list {
                dst.get_or_insert_with(EntityRule::default).ports = Some(list.clone());
            }
            out.push(resource::Rule {
                action: "Allow".into(),
                protocol: protocol.clone().map(NumOrString::Str),
                source: src,
                destination: dst,
                ..Default::default()
            });
        }
    }
    out
}

/// Ports grouped by protocol; `None` protocol = no ports field (all traffic), `None` list =
/// every port of the protocol.
#[allow(clippy::type_complexity)]
fn port_groups(ports: Option<&Vec<NetworkPolicyPort>>) -> Vec<(Option<String>, Option<Vec<NumOrString>>)> {
    let Some(ports) = ports.filter(|p| !p.is_empty()) else { return vec![(None, None)] };
    let mut groups: BTreeMap<String, Option<Vec<NumOrString>>> = BTreeMap::new();
    for p in ports {
        let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
        let value = match (&p.port, p.end_port) {
            (None, _) => None,
            (Some(IntOrString::Int(a)), Some(b)) => Some(NumOrString::Str(format!("{a}:{b}"))),
            (Some(IntOrString::Int(a)), None) => Some(NumOrString::Num(i64::from(*a))),
            (Some(IntOrString::String(name)), _) => Some(NumOrString::Str(name.clone())),
        };
        let slot = groups.entry(proto).or_insert_with(|| Some(Vec::new()));
        match (value, slot.as_mut()) {
            (None, _) => *slot = None,
            (Some(v), Some(list)) => list.push(v),
            (Some(_), None) => {}
        }
    }
    groups.into_iter().map(|(p, l)| (Some(p), l)).collect()
}

fn peer(p: &NetworkPolicyPeer) -> EntityRule {
    if let Some(b) = &p.ip_block {
        return EntityRule {
            nets: Some(vec![b.cidr.clone()]),
            not_nets: b.except.clone().filter(|e| !e.is_empty()),
            ..Default::default()
        };
    }
    EntityRule {
        selector: Some(k8s_pods(p.pod_selector.as_ref())),
        namespace_selector: p.namespace_selector.as_ref().map(|s| selector_expr(Some(s)).to_string()),
        ..Default::default()
    }
}

/// A rule (or policy) that has no Kubernetes equivalent, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unconvertible {
    pub path: String,
    pub reason: NoEquivalent,
}

/// What of a Calico policy Kubernetes NetworkPolicy cannot express.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoEquivalent {
    #[error("tiers have no Kubernetes equivalent")]
    Tier,
    #[error("Kubernetes selects pods by labels only")]
    ServiceAccountSelector,
    #[error("Kubernetes policies are unordered; with Deny or Pass rules, order changes verdicts")]
    Order,
    #[error("action {0}: Kubernetes rules can only allow")]
    Action(String),
    #[error("{0} has no Kubernetes equivalent")]
    Field(&'static str),
    #[error("protocol {0}: Kubernetes rules name TCP, UDP or SCTP only")]
    Protocol(String),
    #[error("conditions on the {0} (the policy's own pods) have no Kubernetes equivalent beyond spec.podSelector")]
    OwnSide(&'static str),
    #[error("source ports and notPorts have no Kubernetes equivalent")]
    SourcePorts,
    #[error("port range {0:?}")]
    PortRange(String),
    #[error("port 0 has no Kubernetes equivalent")]
    PortZero,
    #[error("notSelector, serviceAccounts and services have no Kubernetes peer equivalent")]
    PeerFields,
    #[error("a selector and nets together mean AND; Kubernetes peers are alternatives (OR)")]
    SelectorAndNets,
    #[error("notNets across several nets cannot be written as ipBlock.except")]
    NotNetsAcrossNets,
    #[error("notNets without nets (everything except) needs 0.0.0.0/0 and ::/0 ipBlocks; write them explicitly")]
    NotNetsAlone,
    #[error("global() selects non-namespaced endpoints, which Kubernetes peers cannot")]
    Global,
    #[error("selector {text:?}: {error}")]
    Syntax { text: String, error: palisade_core::expr::ParseError },
    #[error("selector term `{0}` has no Kubernetes label-selector equivalent")]
    Term(String),
    #[error("selector {0:?} uses Calico pseudo-labels")]
    PseudoLabels(String),
}

/// Calico NetworkPolicy → Kubernetes NetworkPolicy, or every reason it cannot be.
pub fn to_kubernetes(p: &resource::NetworkPolicy) -> Result<K8sPolicy, Vec<Unconvertible>> {
    let mut why = Vec::new();
    let mut no = |path: &str, reason: NoEquivalent| why.push(Unconvertible { path: path.into(), reason });
    let spec = p.spec.clone().unwrap_or_default();
    if spec.tier.as_deref().is_some_and(|t| t != "default") {
        no("spec.tier", NoEquivalent::Tier);
    }
    if spec.service_account_selector.is_some() {
        no("spec.serviceAccountSelector", NoEquivalent::ServiceAccountSelector);
    }
    let denies =
        spec.ingress.iter().chain(spec.egress.iter()).flatten().any(|r| r.action != "Allow" && r.action != "Log");
    if spec.order.is_some() && denies {
        no("spec.order", NoEquivalent::Order);
    }
    let pod_selector = match label_selector(spec.selector.as_deref().unwrap_or("all()")) {
        Ok(s) => s,
        Err(e) => {
            no("spec.selector", e);
            LabelSelector::default()
        }
    };
    let policy_expr = Expr::parse(spec.selector.as_deref().unwrap_or("all()")).ok();
    let (has_in, has_eg) =
        (spec.ingress.as_ref().is_some_and(|r| !r.is_empty()), spec.egress.as_ref().is_some_and(|r| !r.is_empty()));
    let types = spec.types.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| {
        let mut t = Vec::new();
        if has_in || !has_eg {
            t.push("Ingress".to_string());
        }
        if has_eg {
            t.push("Egress".into());
        }
        t
    });
    let mut convert = |field: &str, list: &Option<Vec<resource::Rule>>| -> Vec<K8sRule> {
        let mut out = Vec::new();
        for (i, r) in list.iter().flatten().enumerate() {
            match k8s_rule(r, field == "ingress", &policy_expr) {
                Ok(Some(rule)) => out.push(rule),
                Ok(None) => {}
                Err(e) => no(&format!("spec.{field}[{i}]"), e),
            }
        }
        out
    };
    let ingress: Vec<_> = convert("ingress", &spec.ingress)
        .into_iter()
        .map(|(from, ports)| NetworkPolicyIngressRule { from, ports })
        .collect();
    let egress: Vec<_> =
        convert("egress", &spec.egress).into_iter().map(|(to, ports)| NetworkPolicyEgressRule { to, ports }).collect();
    if !why.is_empty() {
        return Err(why);
    }
    Ok(K8sPolicy {
        metadata: ObjectMeta {
            name: p.metadata.name.clone(),
            namespace: p.metadata.namespace.clone(),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pod_selector),
            policy_types: Some(types),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    })
}

type K8sRule = (Option<Vec<NetworkPolicyPeer>>, Option<Vec<NetworkPolicyPort>>);

/// `Ok(None)`: a Log rule, which changes no verdict.
fn k8s_rule(r: &resource::Rule, ingress: bool, policy_expr: &Option<Expr>) -> Result<Option<K8sRule>, NoEquivalent> {
    match r.action.as_str() {
        "Allow" => {}
        "Log" => return Ok(None),
        other => return Err(NoEquivalent::Action(other.to_string())),
    }
    for (set, field) in [
        (r.not_protocol.is_some(), "notProtocol"),
        (r.icmp.is_some(), "icmp"),
        (r.not_icmp.is_some(), "notICMP"),
        (r.ip_version.is_some(), "ipVersion"),
        (r.http.is_some(), "http"),
    ] {
        if set {
            return Err(NoEquivalent::Field(field));
        }
    }
    let protocol = match &r.protocol {
        None => None,
        Some(p) => match p.to_string().to_ascii_uppercase().as_str() {
            "TCP" | "6" => Some("TCP"),
            "UDP" | "17" => Some("UDP"),
            "SCTP" | "132" => Some("SCTP"),
            other => return Err(NoEquivalent::Protocol(other.to_string())),
        },
    };
    let src = r.source.clone().unwrap_or_default();
    let dst = r.destination.clone().unwrap_or_default();
    let (own, peer) = if ingress { (&dst, &src) } else { (&src, &dst) };
    let own_side = if ingress { "destination" } else { "source" };
    // An own-side selector equal to the policy's selector says nothing new.
    let redundant =
        own.selector.as_deref().and_then(|t| Expr::parse(t).ok()).is_some_and(|e| Some(&e) == policy_expr.as_ref());
    if (own.selector.is_some() && !redundant)
        || own.namespace_selector.is_some()
        || own.nets.is_some()
        || own.not_nets.is_some()
        || own.not_selector.is_some()
        || own.service_accounts.is_some()
    {
        return Err(NoEquivalent::OwnSide(own_side));
    }
    if src.ports.is_some() || src.not_ports.is_some() || dst.not_ports.is_some() {
        return Err(NoEquivalent::SourcePorts);
    }
    let ports = match (&dst.ports, protocol) {
        (Some(list), Some(proto)) => Some(list.iter().map(|p| k8s_port(p, proto)).collect::<Result<Vec<_>, _>>()?),
        (None, Some(proto)) => {
            Some(vec![NetworkPolicyPort { protocol: Some(proto.into()), port: None, end_port: None }])
        }
        (_, None) => None,
    };
    Ok(Some((k8s_peer(peer)?, ports)))
}

fn k8s_port(p: &NumOrString, proto: &str) -> Result<NetworkPolicyPort, NoEquivalent> {
    let (port, end_port) = match p {
        NumOrString::Num(n) => (IntOrString::Int(*n as i32), None),
        NumOrString::Str(s) => match s.split_once(':') {
            Some((a, b)) => {
                let parse = |x: &str| x.trim().parse::<i32>().map_err(|_| NoEquivalent::PortRange(s.clone()));
                let (a, b) = (parse(a)?, parse(b)?);
                (IntOrString::Int(a), (a != b).then_some(b))
            }
            None => match s.parse::<i32>() {
                Ok(n) => (IntOrString::Int(n), None),
                Err(_) => (IntOrString::String(s.clone()), None),
            },
        },
    };
    if matches!(port, IntOrString::Int(0)) {
        return Err(NoEquivalent::PortZero);
    }
    Ok(NetworkPolicyPort { protocol: Some(proto.into()), port: Some(port), end_port })
}

fn k8s_peer(e: &EntityRule) -> Result<Option<Vec<NetworkPolicyPeer>>, NoEquivalent> {
    if e.not_selector.is_some() || e.service_accounts.is_some() || e.services.is_some() {
        return Err(NoEquivalent::PeerFields);
    }
    let selects = e.selector.is_some() || e.namespace_selector.is_some();
    let nets = e.nets.clone().unwrap_or_default();
    let not_nets = e.not_nets.clone().unwrap_or_default();
    if selects && (!nets.is_empty() || !not_nets.is_empty()) {
        return Err(NoEquivalent::SelectorAndNets);
    }
    if !nets.is_empty() || !not_nets.is_empty() {
        if nets.len() != 1 && !not_nets.is_empty() {
            return Err(NoEquivalent::NotNetsAcrossNets);
        }
        if nets.is_empty() {
            return Err(NoEquivalent::NotNetsAlone);
        }
        let peers = nets
            .iter()
            .map(|n| NetworkPolicyPeer {
                ip_block: Some(IPBlock { cidr: n.clone(), except: (!not_nets.is_empty()).then(|| not_nets.clone()) }),
                ..Default::default()
            })
            .collect();
        return Ok(Some(peers));
    }
    if !selects {
        return Ok(None);
    }
    let pod_selector = label_selector(e.selector.as_deref().unwrap_or("all()"))?;
    let namespace_selector = match e.namespace_selector.as_deref() {
        None => None,
        Some(s) if s.trim() == "global()" => return Err(NoEquivalent::Global),
        Some(s) => Some(label_selector(s)?),
    };
    Ok(Some(vec![NetworkPolicyPeer { pod_selector: Some(pod_selector), namespace_selector, ip_block: None }]))
}

/// A Calico expression as a Kubernetes label selector, when it is a conjunction of simple terms.
fn label_selector(text: &str) -> Result<LabelSelector, NoEquivalent> {
    let e = Expr::parse(text).map_err(|error| NoEquivalent::Syntax { text: text.to_string(), error })?;
    let terms = match e {
        Expr::And(ts) => ts,
        Expr::All => Vec::new(),
        other => vec![other],
    };
    let mut labels = BTreeMap::new();
    let mut exprs = Vec::new();
    let req = |key: &str, op: &str, values: Option<&BTreeSet<String>>| LabelSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: values.map(|v| v.iter().cloned().collect()),
    };
    for t in terms {
        match &t {
            // Kubernetes peers and podSelectors only ever select pods.
            Expr::Eq(k, v) if k == ORCHESTRATOR_LABEL && v == "k8s" => {}
            Expr::All => {}
            // matchLabels holds one value per key: a second equality on the key goes to matchExpressions.
            Expr::Eq(k, v) if labels.contains_key(k) => exprs.push(req(k, "In", Some(&BTreeSet::from([v.clone()])))),
            Expr::Eq(k, v) => {
                labels.insert(k.clone(), v.clone());
            }
            Expr::Ne(k, v) => exprs.push(req(k, "NotIn", Some(&BTreeSet::from([v.clone()])))),
            Expr::In(k, vs) if !vs.is_empty() => exprs.push(req(k, "In", Some(vs))),
            Expr::NotIn(k, vs) if !vs.is_empty() => exprs.push(req(k, "NotIn", Some(vs))),
            Expr::Has(k) => exprs.push(req(k, "Exists", None)),
            Expr::Not(inner) if matches!(**inner, Expr::Has(_)) => {
                let Expr::Has(k) = &**inner else { unreachable!() };
                exprs.push(req(k, "DoesNotExist", None));
            }
            other => return Err(NoEquivalent::Term(other.to_string())),
        }
    }
    if labels
        .keys()
        .chain(exprs.iter().map(|r| &r.key))
        .any(|k| k.starts_with("projectcalico.org/") || k.starts_with("pcns.") || k.starts_with("pcsa."))
    {
        return Err(NoEquivalent::PseudoLabels(text.to_string()));
    }
    Ok(LabelSelector {
        match_labels: (!labels.is_empty()).then_some(labels),
        match_expressions: (!exprs.is_empty()).then_some(exprs),
    })
}
