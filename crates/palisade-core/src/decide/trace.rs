//! Why a written rule matched or not, in the words of the API that wrote it.
//!
//! Whether it matched is [`crate::decide::matching`]'s answer for the rules lowered from it
//! (it matches when one of them does); which condition failed comes from the same checks.
//! Only the words come from the rule's origin: a Kubernetes rule is explained by its ports
//! and peers (`port 80 matches TCP/80; peer [1] pods app=web in namespace shop matches ...`), a
//! Calico rule by its protocol and its source and destination fields as written.

use std::fmt::Write as _;

use crate::decide::matching::{self, AddressMiss, End, Miss, PacketMiss, PortsMiss};
use crate::model::cluster::{Cluster, KUBE_ADMIN_TIER, KUBE_BASELINE_TIER};
use crate::model::endpoint::{describe, Connection, Side};
use crate::model::policy::{Direction, Policy, PolicyKind};
use crate::model::rule::{Form, Icmp, PeerWords, PortWords, Rule};

/// Whether the rules lowered from one written rule match `conn`, and a sentence saying why
/// (or the first reason they do not). `rules` is never empty.
pub fn explain(cluster: &Cluster, rules: &[Rule], conn: &Connection, dir: Direction) -> (bool, String) {
    let hit = rules.iter().find(|r| matching::matches(cluster, r, conn));
    match &rules[0].origin.written.form {
        Form::Peers { peers, ports } => peers_form(cluster, rules, hit, conn, dir, peers, ports),
        Form::Entities { protocol, not_protocol, source, destination } => {
            let words = EntityWords { protocol, not_protocol, source, destination };
            match hit {
                Some(_) => (true, words.summary()),
                None => {
                    let r = &rules[0];
                    let miss = matching::check(cluster, r, conn).expect_err("no rule matched");
                    (false, words.miss(cluster, r, conn, miss))
                }
            }
        }
    }
}

/// A Kubernetes-shaped rule: ports first (`all ports`, or which port matched), then peers.
fn peers_form(
    cluster: &Cluster,
    rules: &[Rule],
    hit: Option<&Rule>,
    conn: &Connection,
    dir: Direction,
    peers: &Option<Vec<PeerWords>>,
    ports: &Option<Vec<PortWords>>,
) -> (bool, String) {
    let peer = match dir {
        Direction::Egress => &conn.dst,
        Direction::Ingress => &conn.src,
    };
    let mut detail = String::new();
    match ports {
        None => detail.push_str("all ports; "),
        Some(list) => match port_word(cluster, rules, conn, list) {
            Some(word) => {
                let _ = write!(detail, "port {} matches {}; ", conn.port, word.text);
            }
            None => {
                let texts: Vec<&str> = list.iter().map(|p| p.text.as_str()).collect();
                let _ = write!(detail, "{}/{} is not among ports [{}]", conn.protocol, conn.port, texts.join(", "));
                if list.iter().any(|p| p.named) && conn.dst.pod_id().is_none() {
                    detail.push_str(" (named ports only match pod destinations)");
                }
                return (false, detail);
            }
        },
    }
    let Some(peers) = peers else {
        detail.push_str("all peers");
        return (hit.is_some(), detail);
    };
    match hit {
        Some(r) => {
            let j = r.origin.peer.unwrap_or_default();
            let _ = write!(detail, "peer [{j}] {} matches {}", peers[j].text, describe(cluster, peer));
            if !peers[j].domains.is_empty() {
                let names = resolved_names(cluster, peer);
                let _ = write!(detail, " ({} by the DNS facts given)", names.join(", "));
            }
        }
        None => {
            let reasons: Vec<String> = (0..peers.len())
                .map(|j| {
                    let why = match peers[j].domains.as_slice() {
                        [] => why_not_peer(cluster, rules, j, peer, dir),
                        names => why_not_domain(cluster, names, peer),
                    };
                    format!("[{j}] {}: {why}", peers[j].text)
                })
                .collect();
            let _ = write!(detail, "{} matches none of the peers: {}", describe(cluster, peer), reasons.join("; "));
        }
    }
    (hit.is_some(), detail)
}

/// The written port that admits the connection: the first of the rule's protocol whose lowered
/// port admits it (ports are lowered per protocol, in the order written).
fn port_word<'w>(
    cluster: &Cluster,
    rules: &[Rule],
    conn: &Connection,
    words: &'w [PortWords],
) -> Option<&'w PortWords> {
    rules.iter().find_map(|r| {
        matching::packet(r, conn).ok()?;
        let at = matching::ports(cluster, &r.destination, &conn.dst, conn.port, conn.protocol).ok()??;
        // Named ports without a protocol (ClusterNetworkPolicy) are written with protocol 0.
        words.iter().filter(|w| r.protocol.map_or(w.protocol == 0, |p| w.protocol == p)).nth(at)
    })
}

/// The names the user's DNS facts give an endpoint's address.
fn resolved_names(cluster: &Cluster, side: &Side) -> Vec<String> {
    cluster.dns.iter().filter(|(_, ip)| Some(*ip) == side.ip).map(|(n, _)| n.clone()).collect()
}

/// Why a `domainNames` peer does not admit an address: the facts name it otherwise, or
/// there is no fact for it and the verdict depends on DNS.
fn why_not_domain(cluster: &Cluster, names: &[String], side: &Side) -> String {
    let ip = side.ip.map(|i| i.to_string()).unwrap_or_else(|| describe(cluster, side));
    match resolved_names(cluster, side).as_slice() {
        [] => format!(
            "depends on DNS resolution of {}: no address-to-name fact for {ip} was given (the peer does not match it)",
            names.join(", ")
        ),
        known => format!("{ip} is {} by the DNS facts given, which none of its names selects", known.join(", ")),
    }
}

/// How the deciding rule of a cluster network policy is told: `Admin tier:
/// ClusterNetworkPolicy deny-evil priority 10, rule deny-from-evil [0]: Deny`. `None` for
/// other kinds, which keep their words. `tier` is the tier's name in the cluster.
pub fn cluster_policy_decision(
    pol: &Policy,
    rules: &[Rule],
    action: crate::model::rule::Action,
    tier: &str,
) -> Option<String> {
    if !pol.kind.is_cluster_network_policy() {
        return None;
    }
    let tier = match tier {
        KUBE_ADMIN_TIER => "Admin tier".to_string(),
        KUBE_BASELINE_TIER => "Baseline tier".to_string(),
        other => format!("tier {other}"),
    };
    let origin = &rules.first()?.origin;
    let rule = match &origin.written.name {
        Some(n) => format!("rule {n} [{}]", origin.rule),
        None => format!("rule [{}]", origin.rule),
    };
    let priority = match (pol.kind, pol.order) {
        (PolicyKind::BaselineAdminNetworkPolicy, _) | (_, None) => String::new(),
        (_, Some(p)) => format!(" priority {p}"),
    };
    Some(format!("{tier}: {} {}{priority}, {rule}: {action}", pol.kind.as_str(), pol.name))
}

/// Why peer `j` does not admit the endpoint on the other side.
fn why_not_peer(cluster: &Cluster, rules: &[Rule], j: usize, side: &Side, dir: Direction) -> String {
    let Some(r) = rules.iter().find(|r| r.origin.peer == Some(j)) else { return "does not match".into() };
    let e = match dir {
        Direction::Egress => &r.destination,
        Direction::Ingress => &r.source,
    };
    match matching::address(cluster, e, side) {
        Err(AddressMiss::Nets) => match side.ip {
            None => "the endpoint has no IP (built from a workload template)".into(),
            Some(ip) => format!("{ip} is outside {}", list(&e.nets)),
        },
        Err(AddressMiss::NotNets(net)) => {
            format!("{} is excepted by {net}", side.ip.map(|i| i.to_string()).unwrap_or_default())
        }
        Err(AddressMiss::Selector | AddressMiss::NotSelector) => match side.pod_id() {
            None => "not a pod".into(),
            Some(p) if !cluster.is_policy_subject(p) => "host-network pods are not matched by selectors".into(),
            Some(_) => "namespace or pod labels do not match".into(),
        },
        Ok(()) => "does not match".into(),
    }
}

/// A Calico-shaped rule's words: protocol names and each end's fields as written.
struct EntityWords<'w> {
    protocol: &'w Option<String>,
    not_protocol: &'w Option<String>,
    source: &'w str,
    destination: &'w str,
}

impl EntityWords<'_> {
    fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(name) = self.protocol {
            parts.push(format!("protocol {name}"));
        }
        for (side, written) in [("source", self.source), ("destination", self.destination)] {
            if !written.is_empty() {
                parts.push(format!("{side} {written}"));
            }
        }
        if parts.is_empty() {
            "everything".into()
        } else {
            parts.join("; ")
        }
    }

    fn miss(&self, cluster: &Cluster, r: &Rule, conn: &Connection, miss: Miss) -> String {
        let name = |n: &Option<String>| n.clone().unwrap_or_default();
        let icmp = format!("{}/{}", conn.icmp_type, conn.icmp_code);
        match miss {
            Miss::Packet(PacketMiss::Protocol) => format!("protocol {} is not {}", conn.protocol, name(self.protocol)),
            Miss::Packet(PacketMiss::NotProtocol) => {
                format!("protocol {} is excluded by notProtocol {}", conn.protocol, name(self.not_protocol))
            }
            Miss::Packet(PacketMiss::Icmp) => format!("ICMP type/code {icmp} is not {}", show_icmp(r.icmp)),
            Miss::Packet(PacketMiss::NotIcmp) => {
                format!("ICMP {icmp} is excluded by notICMP {}", show_icmp(r.not_icmp))
            }
            Miss::Version => format!("the connection is not IPv{}", r.ip_version.unwrap_or(0)),
            Miss::Address(end, m) => {
                let (e, side) = entity(r, conn, end);
                let (which, who) = (end.as_str(), describe(cluster, side));
                match m {
                    AddressMiss::Nets => format!("{which} {who} is not in nets [{}]", list(&e.nets)),
                    AddressMiss::NotNets(_) => format!("{which} {who} is in notNets [{}]", list(&e.not_nets)),
                    AddressMiss::Selector => format!("{which} {who} is not selected by {}", self.written(end)),
                    AddressMiss::NotSelector => format!(
                        "{which} {who} is excluded by notSelector {}",
                        e.not_selector.as_ref().map(|s| s.to_string()).unwrap_or_default()
                    ),
                }
            }
            Miss::Ports(end, m) => {
                let (e, _) = entity(r, conn, end);
                let port = if end == End::Source { conn.src_port } else { conn.port };
                match m {
                    PortsMiss::Ports => format!("{} port {port} is not in ports [{}]", end.as_str(), list(&e.ports)),
                    PortsMiss::NotPorts => {
                        format!("{} port {port} is in notPorts [{}]", end.as_str(), list(&e.not_ports))
                    }
                }
            }
        }
    }

    fn written(&self, end: End) -> &str {
        match end {
            End::Source => self.source,
            End::Destination => self.destination,
        }
    }
}

fn entity<'a>(r: &'a Rule, conn: &'a Connection, end: End) -> (&'a crate::model::rule::Entity, &'a Side) {
    match end {
        End::Source => (&r.source, &conn.src),
        End::Destination => (&r.destination, &conn.dst),
    }
}

fn show_icmp(i: Option<Icmp>) -> String {
    let i = i.unwrap_or(Icmp { type_: None, code: None });
    let t = i.type_.map_or("any".to_string(), |t| t.to_string());
    let c = i.code.map_or("any".to_string(), |c| c.to_string());
    format!("type {t} code {c}")
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}
