//! How a rule matches one connection.
//!
//! A rule matches when every condition it sets holds: protocol, ICMP type/code, IP version,
//! and the source and destination entity conditions (nets, selectors, ports). Selectors are
//! matched the way Felix's IP sets work: an address matches when it belongs to an endpoint
//! (pod or host endpoint) or a network set whose labels the selector selects.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::cluster::Cluster;
use crate::model::endpoint::{describe, Connection, Endpoint, Side};
use crate::model::label::Labels;
use crate::model::port::{ContainerPort, Protocol};
use crate::model::rule::{CalicoPort, CalicoRule, Entity, Icmp};

impl CalicoRule {
    /// Whether the rule matches, and a sentence saying why (or the first reason it does not).
    pub fn evaluate(&self, cluster: &Cluster, conn: &Connection) -> (bool, String) {
        match self.mismatch(cluster, conn) {
            Some(why) => (false, why),
            None => (true, self.summary()),
        }
    }

    /// The conditions that depend only on the packet, not on who sends or receives it.
    pub fn packet_matches(&self, conn: &Connection) -> Result<(), String> {
        let n = conn.protocol.number();
        if let Some((p, name)) = &self.protocol {
            if *p != n {
                return Err(format!("protocol {} is not {name}", conn.protocol));
            }
        }
        if let Some((p, name)) = &self.not_protocol {
            if *p == n {
                return Err(format!("protocol {} is excluded by notProtocol {name}", conn.protocol));
            }
        }
        let icmp_hit = |i: &Icmp| {
            matches!(conn.protocol, Protocol::ICMP | Protocol::ICMPv6)
                && i.type_.is_none_or(|t| t == conn.icmp_type)
                && i.code.is_none_or(|c| c == conn.icmp_code)
        };
        if let Some(i) = &self.icmp {
            if !icmp_hit(i) {
                return Err(format!("ICMP type/code {} is not {}", icmp_text(conn), show_icmp(i)));
            }
        }
        if let Some(i) = &self.not_icmp {
            if icmp_hit(i) {
                return Err(format!("ICMP {} is excluded by notICMP {}", icmp_text(conn), show_icmp(i)));
            }
        }
        Ok(())
    }

    /// Whether an address may carry this rule's IP version (unknown addresses may).
    pub fn version_ok(&self, ip: Option<IpAddr>) -> bool {
        match (self.ip_version, ip) {
            (Some(v), Some(ip)) => (if ip.is_ipv4() { 4 } else { 6 }) == v,
            _ => true,
        }
    }

    fn mismatch(&self, cluster: &Cluster, conn: &Connection) -> Option<String> {
        if let Err(e) = self.packet_matches(conn) {
            return Some(e);
        }
        if !self.version_ok(conn.src.ip) || !self.version_ok(conn.dst.ip) {
            return Some(format!("the connection is not IPv{}", self.ip_version.unwrap_or(0)));
        }
        let src = entity_mismatch(cluster, &self.source, &conn.src, conn.src_port, conn.protocol, "source");
        src.or_else(|| entity_mismatch(cluster, &self.destination, &conn.dst, conn.port, conn.protocol, "destination"))
    }

    fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some((_, name)) = &self.protocol {
            parts.push(format!("protocol {name}"));
        }
        for (side, e) in [("source", &self.source), ("destination", &self.destination)] {
            if !e.written.is_empty() {
                parts.push(format!("{side} {}", e.written));
            }
        }
        if parts.is_empty() {
            "everything".into()
        } else {
            parts.join("; ")
        }
    }
}

fn icmp_text(conn: &Connection) -> String {
    format!("{}/{}", conn.icmp_type, conn.icmp_code)
}

fn show_icmp(i: &Icmp) -> String {
    let t = i.type_.map_or("any".to_string(), |t| t.to_string());
    let c = i.code.map_or("any".to_string(), |c| c.to_string());
    format!("type {t} code {c}")
}

/// The label sets a selector may match for an address: the endpoint's own, and those of every
/// network set containing the address.
pub fn candidates<'c>(cluster: &'c Cluster, side: &Side) -> Vec<&'c Labels> {
    let mut out = Vec::new();
    match side.endpoint {
        Endpoint::Pod(p) if cluster.is_policy_subject(p) => out.push(&cluster.calico_labels[p]),
        Endpoint::Host(h) => out.push(&cluster.host_endpoints[h].labels),
        _ => {}
    }
    if let Some(ip) = side.ip {
        out.extend(cluster.network_sets.iter().filter(|s| s.nets.iter().any(|n| n.contains(&ip))).map(|s| &s.labels));
    }
    out
}

/// Named ports of the endpoint on one side.
pub fn named_ports<'c>(cluster: &'c Cluster, side: &Side) -> &'c [ContainerPort] {
    match side.endpoint {
        Endpoint::Pod(p) => &cluster.pods[p].ports,
        Endpoint::Host(h) => &cluster.host_endpoints[h].ports,
        _ => &[],
    }
}

pub fn port_matches(p: &CalicoPort, port: u16, protocol: Protocol, named: &[ContainerPort]) -> bool {
    match p {
        CalicoPort::Range(a, b) => (*a..=*b).contains(&port),
        CalicoPort::Named(n) => {
            named.iter().any(|c| c.port == port && c.protocol == protocol && c.name.as_deref() == Some(n.as_str()))
        }
    }
}

fn in_nets(nets: &[IpNet], ip: Option<IpAddr>) -> bool {
    ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)))
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// The first condition of an entity that one side fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Miss {
    Nets,
    NotNets,
    Selector,
    NotSelector,
    Ports,
    NotPorts,
}

/// Whether one side of a connection meets an entity's conditions.
pub fn entity_matches(cluster: &Cluster, e: &Entity, side: &Side, port: u16, protocol: Protocol) -> bool {
    e.is_empty() || entity_check(cluster, e, side, port, protocol).is_ok()
}

fn entity_check(cluster: &Cluster, e: &Entity, side: &Side, port: u16, protocol: Protocol) -> Result<(), Miss> {
    address_check(cluster, e, side)?;
    ports_check(e, side, cluster, port, protocol)
}

/// The entity's conditions on who the side is (nets and selectors), not on its port.
pub fn address_matches(cluster: &Cluster, e: &Entity, side: &Side) -> bool {
    address_check(cluster, e, side).is_ok()
}

fn address_check(cluster: &Cluster, e: &Entity, side: &Side) -> Result<(), Miss> {
    if !e.nets.is_empty() && !in_nets(&e.nets, side.ip) {
        return Err(Miss::Nets);
    }
    if in_nets(&e.not_nets, side.ip) {
        return Err(Miss::NotNets);
    }
    if e.selector.is_some() || e.not_selector.is_some() {
        let labels = candidates(cluster, side);
        if e.selector.as_ref().is_some_and(|s| !labels.iter().any(|l| s.matches(l))) {
            return Err(Miss::Selector);
        }
        if e.not_selector.as_ref().is_some_and(|s| labels.iter().any(|l| s.matches(l))) {
            return Err(Miss::NotSelector);
        }
    }
    Ok(())
}

/// The entity's ports and notPorts for one side's port.
pub fn ports_match(e: &Entity, side: &Side, cluster: &Cluster, port: u16, protocol: Protocol) -> bool {
    ports_check(e, side, cluster, port, protocol).is_ok()
}

fn ports_check(e: &Entity, side: &Side, cluster: &Cluster, port: u16, protocol: Protocol) -> Result<(), Miss> {
    let named = named_ports(cluster, side);
    if !e.ports.is_empty() && !e.ports.iter().any(|p| port_matches(p, port, protocol, named)) {
        return Err(Miss::Ports);
    }
    if e.not_ports.iter().any(|p| port_matches(p, port, protocol, named)) {
        return Err(Miss::NotPorts);
    }
    Ok(())
}

/// Why one side fails an entity, in words; `None` when it meets it.
fn entity_mismatch(
    cluster: &Cluster,
    e: &Entity,
    side: &Side,
    port: u16,
    protocol: Protocol,
    which: &str,
) -> Option<String> {
    let miss = entity_check(cluster, e, side, port, protocol).err()?;
    let who = describe(cluster, side);
    Some(match miss {
        Miss::Nets => format!("{which} {who} is not in nets [{}]", list(&e.nets)),
        Miss::NotNets => format!("{which} {who} is in notNets [{}]", list(&e.not_nets)),
        Miss::Selector => format!("{which} {who} is not selected by {}", e.written),
        Miss::NotSelector => {
            format!("{which} {who} is excluded by notSelector {}", e.not_selector.as_ref().expect("checked"))
        }
        Miss::Ports => format!("{which} port {port} is not in ports [{}]", list(&e.ports)),
        Miss::NotPorts => format!("{which} port {port} is in notPorts [{}]", list(&e.not_ports)),
    })
}
