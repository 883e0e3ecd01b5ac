//! A checked ClusterNetworkPolicy (or AdminNetworkPolicy / BaselineAdminNetworkPolicy) as
//! the Calico GlobalNetworkPolicy Calico 3.32 makes of it
//! (`libcalico-go/lib/backend/k8s/conversion/clusternetworkpolicy.go`, `docs/cnp-spec.md` §10):
//! tier `kube-admin` (Admin) or `kube-baseline` (Baseline), `order` = priority (the BANP at
//! 1000), `types` only for directions with rules, subject as `namespaceSelector` and `selector`
//! limited to Kubernetes pods, one rule per peer and protocol, Accept → Allow, Deny and Pass
//! kept. A rule with a peer of unknown fields fails closed as Calico's converter makes it:
//! an Accept is dropped, a Deny or Pass becomes `Deny` of everything.
//!
//! Unlike Calico's converter, `namespaces` peers also get `selector:
//! projectcalico.org/orchestrator == 'k8s'`, so that a namespaced NetworkSet never widens them
//! (the CNP API matches pods only). `nodes` and `domainNames` peers have no Calico 3.32 form and
//! are refused; a destination named port (no protocol: the container port's own) becomes one
//! rule per protocol, TCP, UDP and SCTP.

use palisade_core::expr::{Expr, ORCHESTRATOR_LABEL};
use palisade_core::policy::Action;
use palisade_core::port::Protocol;

use super::validate::{Api, Checked, CheckedPeer, CheckedPort, CheckedRule, Pods, TierKind};
use crate::calico::resource::{self, EntityRule, NumOrString, PolicySpec};

/// A peer (or policy) Calico 3.32 has no form for, at its field path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct Refused {
    pub path: String,
    pub reason: &'static str,
}

/// The tier and order Calico 3.32 gives a policy of this tier (`names/policy.go`, tier.go).
pub fn tier_name(tier: TierKind) -> &'static str {
    match tier {
        TierKind::Admin => "kube-admin",
        TierKind::Baseline => "kube-baseline",
    }
}

/// The GlobalNetworkPolicy named `name` that decides as `c` does; `Err` lists every peer with
/// no Calico form.
pub fn to_calico(c: &Checked, name: &str) -> Result<resource::GlobalNetworkPolicy, Vec<Refused>> {
    let mut refused = Vec::new();
    let mut rules = |list: &[CheckedRule], dir: &str, ingress: bool| -> Option<Vec<resource::Rule>> {
        let out: Vec<resource::Rule> = list.iter().flat_map(|r| rule(r, dir, ingress, &mut refused)).collect();
        (!list.is_empty()).then_some(out)
    };
    let ingress = rules(&c.ingress, "ingress", true);
    let egress = rules(&c.egress, "egress", false);
    if !refused.is_empty() {
        return Err(refused);
    }
    let types = [("Ingress", ingress.is_some()), ("Egress", egress.is_some())];
    let order = c.priority.map_or(super::lower::BANP_ORDER, f64::from);
    Ok(resource::GlobalNetworkPolicy {
        api_version: Some("projectcalico.org/v3".into()),
        kind: Some("GlobalNetworkPolicy".into()),
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec: Some(PolicySpec {
            tier: Some(tier_name(c.tier).into()),
            order: Some(order),
            selector: Some(pods_selector(&c.subject)),
            namespace_selector: Some(c.subject.namespaces.to_expr().to_string()),
            types: Some(types.iter().filter(|t| t.1).map(|t| t.0.to_string()).collect()),
            ingress,
            egress,
            ..Default::default()
        }),
    })
}

/// Pods only (`projectcalico.org/orchestrator == 'k8s'`), by the pod selector.
fn pods_selector(p: &Pods) -> String {
    Expr::and([Expr::Eq(ORCHESTRATOR_LABEL.into(), "k8s".into()), p.pods.to_expr()]).to_string()
}

fn action_word(a: Action) -> &'static str {
    match a {
        Action::Allow => "Allow",
        Action::Deny => "Deny",
        Action::Pass => "Pass",
        Action::Log => "Log",
    }
}

/// One written rule → Calico rules, one per peer and protocol.
fn rule(r: &CheckedRule, dir: &str, ingress: bool, refused: &mut Vec<Refused>) -> Vec<resource::Rule> {
    let at =
        |j: usize, field: &str| format!("spec.{dir}[{}].{}[{j}].{field}", r.index, if ingress { "from" } else { "to" });
    if r.peers.iter().any(|p| matches!(p, CheckedPeer::Unknown(_))) {
        // Calico 3.32: "treat the rule as matching no traffic" / "as a 'Deny all' rule".
        return match r.action {
            Action::Allow => Vec::new(),
            _ => vec![resource::Rule { action: "Deny".into(), ..Default::default() }],
        };
    }
    let mut out = Vec::new();
    for (j, p) in r.peers.iter().enumerate() {
        let peer = match p {
            CheckedPeer::Pods(pods) => EntityRule {
                selector: Some(pods_selector(pods)),
                namespace_selector: Some(pods.namespaces.to_expr().to_string()),
                ..Default::default()
            },
            CheckedPeer::Networks(nets) => {
                EntityRule { nets: Some(nets.iter().map(|n| n.to_string()).collect()), ..Default::default() }
            }
            CheckedPeer::Nodes(_) => {
                refused.push(Refused { path: at(j, "nodes"), reason: "Calico 3.32 has no form for nodes peers" });
                continue;
            }
            CheckedPeer::DomainNames(_) => {
                refused.push(Refused {
                    path: at(j, "domainNames"),
                    reason: "Calico 3.32 has no form for domainNames peers",
                });
                continue;
            }
            CheckedPeer::Unknown(_) => unreachable!("handled above"),
        };
        for (protocol, ports) in protocol_groups(r.ports.as_deref()) {
            let mut own = EntityRule::default();
            let mut peer = peer.clone();
            // Ports are always the destination's: the subject's on ingress, the peer's on egress.
            match ingress {
                true => own.ports = ports,
                false => peer.ports = ports,
            }
            let (source, destination) = if ingress { (peer, own) } else { (own, peer) };
            out.push(resource::Rule {
                action: action_word(r.action).into(),
                protocol: protocol.map(|p| NumOrString::Str(p.to_string())),
                source: Some(source).filter(|e| *e != EntityRule::default()),
                destination: Some(destination).filter(|e| *e != EntityRule::default()),
                ..Default::default()
            });
        }
    }
    out
}

/// Ports by protocol in the order written; named ports once per protocol a container port can
/// have (Calico needs a protocol beside ports); no ports: all traffic.
fn protocol_groups(ports: Option<&[CheckedPort]>) -> Vec<(Option<Protocol>, Option<Vec<NumOrString>>)> {
    let Some(ports) = ports else { return vec![(None, None)] };
    let mut groups: Vec<(Option<Protocol>, Option<Vec<NumOrString>>)> = Vec::new();
    let mut put = |proto: Protocol, port: NumOrString| match groups.iter_mut().find(|(g, _)| *g == Some(proto)) {
        Some((_, Some(list))) => list.push(port),
        _ => groups.push((Some(proto), Some(vec![port]))),
    };
    for p in ports {
        match p {
            CheckedPort::Numbers(proto, a, b) if a == b => put(*proto, NumOrString::Num(i64::from(*a))),
            CheckedPort::Numbers(proto, a, b) => put(*proto, NumOrString::Str(format!("{a}:{b}"))),
            CheckedPort::Named(n) => {
                for proto in [Protocol::TCP, Protocol::UDP, Protocol::SCTP] {
                    put(proto, NumOrString::Str(n.clone()));
                }
            }
        }
    }
    groups
}

/// Whether Calico 3.32 itself reads this API (it watches only v1alpha2 ClusterNetworkPolicy).
pub fn read_by_calico(api: Api) -> bool {
    api == Api::Cnp
}
