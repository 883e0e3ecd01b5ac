//! Lowering a checked ClusterNetworkPolicy / AdminNetworkPolicy / BaselineAdminNetworkPolicy
//! to the one rule language, placed where Calico 3.32 places them (`docs/cnp-spec.md` §2-§10).
//!
//! - Tier: Admin policies in `kube-admin` (order 1000), Baseline ones in `kube-baseline`
//!   (order 10000000), both ending in Pass; `order` = priority (the BaselineAdminNetworkPolicy:
//!   1000). Ties: Felix's `<name>/<namespace>/<kind>` ([`palisade_core::policy::Policy::sort_name`]).
//! - A direction without rules is left out (no implicit isolation).
//! - Subjects and `namespaces`/`pods` peers: pods' Calico labels, limited to pods
//!   (`projectcalico.org/orchestrator == "k8s"`; host-network pods are never candidates),
//!   namespace labels under `pcns.`; an omitted namespaceSelector selects every namespace.
//! - `nodes`: the selected Nodes' addresses; `networks`: the CIDRs (pod addresses included; a
//!   Service IP is never seen, DNAT comes first); `domainNames`: the addresses the user's DNS
//!   facts give the names. A peer that matches no address matches nothing.
//! - One rule per (peer, protocol); named ports resolve on the destination pod.
//! - A rule with a peer of unknown fields fails closed: Accept matches nothing, Deny or Pass
//!   becomes Deny of everything.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use palisade_core::cluster::{Cluster, TierId};
use palisade_core::expr::{Expr, NAMESPACE_PREFIX, ORCHESTRATOR_LABEL};
use palisade_core::field::{Location, Problems};
use palisade_core::policy::{Direction, Policy, PolicyKind};
use palisade_core::port::Protocol;
use palisade_core::rule::{Action, Entity, Form, Origin, PeerWords, Port, PortWords, Rule, Written};

use super::domain;
use super::validate::{Api, Checked, CheckedPeer, CheckedPort, CheckedRule, Pods, TierKind};

/// Where the two tiers are in the cluster being built.
#[derive(Clone, Copy, Debug)]
pub struct Tiers {
    pub admin: TierId,
    pub baseline: TierId,
}

/// The BaselineAdminNetworkPolicy's order in `kube-baseline` (Calico 3.31 placed it at 1000).
pub const BANP_ORDER: f64 = 1000.0;

/// Lowers a checked policy named `name`; `cluster` gives the Nodes and DNS facts.
pub fn lower(c: &Checked, name: &str, cluster: &Cluster, tiers: Tiers, problems: &Problems) -> Policy {
    let kind = match c.api {
        Api::Cnp => PolicyKind::ClusterNetworkPolicy,
        Api::Anp => PolicyKind::AdminNetworkPolicy,
        Api::Banp => PolicyKind::BaselineAdminNetworkPolicy,
    };
    let rules = |list: &[CheckedRule], dir| -> Option<Vec<Rule>> {
        let out: Vec<Rule> = list.iter().flat_map(|r| lower_rule(r, dir, cluster, problems)).collect();
        (!list.is_empty()).then_some(out)
    };
    Policy {
        kind,
        namespace: None,
        name: name.to_string(),
        tier: match c.tier {
            TierKind::Admin => tiers.admin,
            TierKind::Baseline => tiers.baseline,
        },
        order: Some(c.priority.map_or(BANP_ORDER, f64::from)),
        subject: pods_expr(&c.subject),
        ingress: rules(&c.ingress, Direction::Ingress),
        egress: rules(&c.egress, Direction::Egress),
        location: problems.locate.locate(&palisade_core::field::FieldPath::root()),
    }
}

/// Pods (never host-network ones, which carry no Calico pod labels as candidates) in the
/// selected namespaces.
fn pods_expr(p: &Pods) -> Expr {
    Expr::and([
        Expr::Eq(ORCHESTRATOR_LABEL.into(), "k8s".into()),
        p.namespaces.to_expr().prefixed(NAMESPACE_PREFIX),
        p.pods.to_expr(),
    ])
}

/// An expression no endpoint satisfies: a peer that names no address.
fn nothing() -> Expr {
    Expr::Not(Box::new(Expr::All))
}

fn lower_rule(r: &CheckedRule, dir: Direction, cluster: &Cluster, problems: &Problems) -> Vec<Rule> {
    let location: Option<Location> = problems.locate.locate(&problems.base.join(&r.path));
    let unknown = r.peers.iter().position(|p| matches!(p, CheckedPeer::Unknown(_)));
    let ports_words = match unknown {
        Some(_) => None,
        None => r.ports.as_ref().map(|l| l.iter().map(port_words).collect()),
    };
    let form =
        Form::Peers { peers: Some(r.peers.iter().map(|p| peer_words(p, r.action)).collect()), ports: ports_words };
    let written = Arc::new(Written { location, form, name: r.name.clone() });
    let origin = |peer: Option<usize>| Origin { rule: r.index, peer, written: written.clone() };
    if let Some(j) = unknown {
        // Fail closed (types.go: "treat the rule as matching no traffic" / "as a 'Deny all' rule").
        let (action, peer) = match r.action {
            Action::Allow => (Action::Allow, Entity { selector: Some(nothing()), ..Entity::default() }),
            _ => (Action::Deny, Entity::default()),
        };
        return vec![rule(action, None, dir, peer, Vec::new(), origin(Some(j)))];
    }
    let mut out = Vec::new();
    for (j, p) in r.peers.iter().enumerate() {
        let entity = peer_entity(p, cluster);
        for (protocol, ports) in port_groups(r.ports.as_deref()) {
            out.push(rule(r.action, protocol, dir, entity.clone(), ports, origin(Some(j))));
        }
    }
    out
}

/// One rule: the peer on the remote end, ports always on the destination.
fn rule(
    action: Action,
    protocol: Option<Protocol>,
    dir: Direction,
    mut peer: Entity,
    ports: Vec<Port>,
    origin: Origin,
) -> Rule {
    let mut own = Entity::default();
    match dir {
        Direction::Egress => peer.ports = ports,
        Direction::Ingress => own.ports = ports,
    }
    let (source, destination) = match dir {
        Direction::Ingress => (peer, own),
        Direction::Egress => (own, peer),
    };
    Rule {
        action,
        protocol: protocol.map(Protocol::number),
        not_protocol: None,
        ip_version: None,
        icmp: None,
        not_icmp: None,
        source,
        destination,
        origin,
    }
}

/// Ports by protocol in the order written; named ports (any protocol: the container port's
/// own decides) in a group of their own; no ports: all traffic.
fn port_groups(ports: Option<&[CheckedPort]>) -> Vec<(Option<Protocol>, Vec<Port>)> {
    let Some(ports) = ports else { return vec![(None, Vec::new())] };
    let mut groups: Vec<(Option<Protocol>, Vec<Port>)> = Vec::new();
    for p in ports {
        let (proto, port) = match p {
            CheckedPort::Numbers(proto, a, b) => (Some(*proto), Port::Range(*a, *b)),
            CheckedPort::Named(n) => (None, Port::Named(n.clone())),
        };
        match groups.iter_mut().find(|(g, _)| *g == proto) {
            Some((_, list)) => list.push(port),
            None => groups.push((proto, vec![port])),
        }
    }
    groups
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// The endpoints a peer admits.
fn peer_entity(p: &CheckedPeer, cluster: &Cluster) -> Entity {
    let nets = |nets: Vec<IpNet>| match nets.is_empty() {
        true => Entity { selector: Some(nothing()), ..Entity::default() },
        false => Entity { nets, ..Entity::default() },
    };
    match p {
        CheckedPeer::Pods(pods) => Entity { selector: Some(pods_expr(pods)), ..Entity::default() },
        CheckedPeer::Nodes(sel) => nets(
            cluster
                .nodes
                .iter()
                .filter(|n| sel.matches(&n.labels))
                .flat_map(|n| n.addresses.iter().copied().map(host_net))
                .collect(),
        ),
        CheckedPeer::Networks(list) => Entity { nets: list.clone(), ..Entity::default() },
        CheckedPeer::DomainNames(names) => {
            let mut ips: Vec<IpNet> = cluster
                .dns
                .iter()
                .filter(|(name, _)| names.iter().any(|pat| domain::matches(pat, name)))
                .map(|(_, ip)| host_net(*ip))
                .collect();
            ips.sort();
            ips.dedup();
            nets(ips)
        }
        CheckedPeer::Unknown(_) => Entity { selector: Some(nothing()), ..Entity::default() },
    }
}

fn selector_text(s: &crate::kubernetes::selector::Selector) -> String {
    s.to_string()
}

/// A peer as traces quote it.
fn peer_words(p: &CheckedPeer, action: Action) -> PeerWords {
    let plain = |text: String, by_labels: bool| PeerWords { text, by_labels, domains: Vec::new() };
    match p {
        CheckedPeer::Pods(pods) if pods.by_namespace => {
            plain(format!("namespaces {}", selector_text(&pods.namespaces)), !pods.namespaces.is_everything())
        }
        CheckedPeer::Pods(pods) => {
            let ns = match pods.namespaces.is_everything() {
                true => "every namespace".to_string(),
                false => format!("namespaces {}", selector_text(&pods.namespaces)),
            };
            plain(
                format!("pods {} in {ns}", selector_text(&pods.pods)),
                !(pods.pods.is_everything() && pods.namespaces.is_everything()),
            )
        }
        CheckedPeer::Nodes(sel) => plain(format!("nodes {}", selector_text(sel)), false),
        CheckedPeer::Networks(list) => {
            plain(format!("networks {}", list.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")), false)
        }
        CheckedPeer::DomainNames(names) => {
            PeerWords { text: format!("domainNames {}", names.join(", ")), by_labels: false, domains: names.clone() }
        }
        CheckedPeer::Unknown(fields) => {
            let closed = match action {
                Action::Allow => "the rule matches nothing",
                _ => "the rule denies everything",
            };
            plain(
                format!("a peer with fields unknown to this version ({}): fails closed, {closed}", fields.join(", ")),
                false,
            )
        }
    }
}

fn port_words(p: &CheckedPort) -> PortWords {
    match p {
        CheckedPort::Numbers(proto, a, b) if a == b => {
            PortWords { text: format!("{proto}/{a}"), protocol: proto.number(), named: false }
        }
        CheckedPort::Numbers(proto, a, b) => {
            PortWords { text: format!("{proto}/{a}-{b}"), protocol: proto.number(), named: false }
        }
        CheckedPort::Named(n) => PortWords { text: format!("named port {n}"), protocol: 0, named: true },
    }
}
