//! The match of a rule against a connection: the one place rule facts are read.
//!
//! A rule matches when every condition it sets holds, checked in Felix's order: the packet's
//! own fields (protocol, ICMP), the IP version of both ends, then the source entity and the
//! destination entity, each first on who the endpoint is (nets, selectors) and then on its
//! port. Selectors are matched the way Felix's IP sets work: an address matches when it
//! belongs to an endpoint (pod or host endpoint) or a network set whose labels the selector
//! selects. Each check says which condition failed ([`Miss`]), so traces can explain it in
//! the words of the API that wrote the rule, and the index, the nftables compiler and the
//! review tools use the same pieces.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::cluster::Cluster;
use crate::model::endpoint::{Connection, Endpoint, Side};
use crate::model::label::EndpointLabels;
use crate::model::port::{ContainerPort, Protocol};
use crate::model::rule::{Entity, Icmp, Port, Rule};

/// A condition on the packet's own fields that fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketMiss {
    Protocol,
    NotProtocol,
    Icmp,
    NotIcmp,
}

/// A condition on who an endpoint is that fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressMiss {
    Nets,
    /// The address is in this `not_nets` entry.
    NotNets(IpNet),
    Selector,
    NotSelector,
}

/// A port condition that fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortsMiss {
    Ports,
    NotPorts,
}

/// Which end of the connection an entity is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Source,
    Destination,
}

impl End {
    /// `source` or `destination`, as traces say it.
    pub fn as_str(self) -> &'static str {
        match self {
            End::Source => "source",
            End::Destination => "destination",
        }
    }
}

/// The first condition of a rule that a connection fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    Packet(PacketMiss),
    /// One end's address is not of the rule's IP version.
    Version,
    Address(End, AddressMiss),
    Ports(End, PortsMiss),
}

/// Whether the rule matches the connection, or the first condition it fails.
pub fn check(cluster: &Cluster, rule: &Rule, conn: &Connection) -> Result<(), Miss> {
    packet(rule, conn).map_err(Miss::Packet)?;
    if !version_ok(rule, conn.src.ip) || !version_ok(rule, conn.dst.ip) {
        return Err(Miss::Version);
    }
    for (end, e, side, port) in [
        (End::Source, &rule.source, &conn.src, conn.src_port),
        (End::Destination, &rule.destination, &conn.dst, conn.port),
    ] {
        address(cluster, e, side).map_err(|m| Miss::Address(end, m))?;
        ports(cluster, e, side, port, conn.protocol).map_err(|m| Miss::Ports(end, m))?;
    }
    Ok(())
}

/// Whether the rule matches the connection.
pub fn matches(cluster: &Cluster, rule: &Rule, conn: &Connection) -> bool {
    check(cluster, rule, conn).is_ok()
}

/// The conditions that depend only on the packet, not on who sends or receives it.
pub fn packet(rule: &Rule, conn: &Connection) -> Result<(), PacketMiss> {
    let n = conn.protocol.number();
    if rule.protocol.is_some_and(|p| p != n) {
        return Err(PacketMiss::Protocol);
    }
    if rule.not_protocol == Some(n) {
        return Err(PacketMiss::NotProtocol);
    }
    let icmp_hit = |i: &Icmp| {
        matches!(conn.protocol, Protocol::ICMP | Protocol::ICMPv6)
            && i.type_.is_none_or(|t| t == conn.icmp_type)
            && i.code.is_none_or(|c| c == conn.icmp_code)
    };
    if rule.icmp.as_ref().is_some_and(|i| !icmp_hit(i)) {
        return Err(PacketMiss::Icmp);
    }
    if rule.not_icmp.as_ref().is_some_and(icmp_hit) {
        return Err(PacketMiss::NotIcmp);
    }
    Ok(())
}

/// Whether an address may carry the rule's IP version (unknown addresses may).
pub fn version_ok(rule: &Rule, ip: Option<IpAddr>) -> bool {
    match (rule.ip_version, ip) {
        (Some(v), Some(ip)) => (if ip.is_ipv4() { 4 } else { 6 }) == v,
        _ => true,
    }
}

/// The label sets a selector may match for an address: the endpoint's own, and those of every
/// network set containing the address.
pub fn candidates<'c>(cluster: &'c Cluster, side: &Side) -> Vec<EndpointLabels<'c>> {
    let mut out = Vec::new();
    match side.endpoint {
        Endpoint::Pod(p) if cluster.is_policy_subject(p) => out.push(cluster.calico_labels(p)),
        Endpoint::Host(h) => out.push(EndpointLabels::plain(&cluster.host_endpoints[h].labels)),
        _ => {}
    }
    if let Some(ip) = side.ip {
        let sets = cluster.network_sets.iter().filter(|s| s.nets.iter().any(|n| n.contains(&ip)));
        out.extend(sets.map(|s| EndpointLabels::plain(&s.labels)));
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

/// Whether a port condition admits `port`/`protocol`; named ports resolve against `named`.
pub fn port_admits(p: &Port, port: u16, protocol: Protocol, named: &[ContainerPort]) -> bool {
    match p {
        Port::Range(a, b) => (*a..=*b).contains(&port),
        Port::Named(n) => {
            named.iter().any(|c| c.port == port && c.protocol == protocol && c.name.as_deref() == Some(n.as_str()))
        }
    }
}

fn in_nets(nets: &[IpNet], ip: Option<IpAddr>) -> bool {
    ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)))
}

/// The entity's conditions on who the side is (nets and selectors), not on its port.
pub fn address(cluster: &Cluster, e: &Entity, side: &Side) -> Result<(), AddressMiss> {
    if !e.nets.is_empty() && !in_nets(&e.nets, side.ip) {
        return Err(AddressMiss::Nets);
    }
    if let Some(net) = side.ip.and_then(|ip| e.not_nets.iter().find(|n| n.contains(&ip))) {
        return Err(AddressMiss::NotNets(*net));
    }
    if e.selector.is_some() || e.not_selector.is_some() {
        let labels = candidates(cluster, side);
        if e.selector.as_ref().is_some_and(|s| !labels.iter().any(|l| s.matches(l))) {
            return Err(AddressMiss::Selector);
        }
        if e.not_selector.as_ref().is_some_and(|s| labels.iter().any(|l| s.matches(l))) {
            return Err(AddressMiss::NotSelector);
        }
    }
    Ok(())
}

/// Whether the entity's nets and selectors admit the side.
pub fn address_matches(cluster: &Cluster, e: &Entity, side: &Side) -> bool {
    address(cluster, e, side).is_ok()
}

/// The entity's ports and notPorts for one side's port: `Ok(Some(i))` when `ports[i]` is the
/// first that admits it, `Ok(None)` when the entity sets no ports.
pub fn ports(
    cluster: &Cluster,
    e: &Entity,
    side: &Side,
    port: u16,
    protocol: Protocol,
) -> Result<Option<usize>, PortsMiss> {
    if e.ports.is_empty() && e.not_ports.is_empty() {
        return Ok(None);
    }
    let named = named_ports(cluster, side);
    let hit = e.ports.iter().position(|p| port_admits(p, port, protocol, named));
    if !e.ports.is_empty() && hit.is_none() {
        return Err(PortsMiss::Ports);
    }
    if e.not_ports.iter().any(|p| port_admits(p, port, protocol, named)) {
        return Err(PortsMiss::NotPorts);
    }
    Ok(hit)
}

/// Whether the entity's ports and notPorts admit one side's port.
pub fn ports_match(cluster: &Cluster, e: &Entity, side: &Side, port: u16, protocol: Protocol) -> bool {
    ports(cluster, e, side, port, protocol).is_ok()
}

/// Whether one side of a connection meets all of an entity's conditions.
pub fn entity_matches(cluster: &Cluster, e: &Entity, side: &Side, port: u16, protocol: Protocol) -> bool {
    e.is_empty() || (address_matches(cluster, e, side) && ports_match(cluster, e, side, port, protocol))
}

/// Whether the entity's port conditions come out the same for every endpoint: no named
/// ports, so the packet alone decides them.
pub fn ports_are_numeric(e: &Entity) -> bool {
    !e.uses_named_ports()
}
