//! The ends of a connection: pods, host endpoints, nodes and the outside world, and the
//! connection between two of them (after any Service DNAT).

use std::net::IpAddr;

use crate::model::cluster::{Cluster, HostId, NodeId, PodId};
use crate::model::port::Protocol;

/// What stands at one end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Pod(PodId),
    /// A Calico HostEndpoint (found by its expected IPs).
    Host(HostId),
    Node(NodeId),
    External,
}

/// One end of a connection: the endpoint and the IP it uses (if known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Side {
    pub endpoint: Endpoint,
    pub ip: Option<IpAddr>,
}

impl Side {
    pub fn pod(cluster: &Cluster, id: PodId) -> Side {
        let ip = cluster.primary_ip(id);
        if cluster.pods[id].host_network {
            // A host-network pod is the node's network stack: policy sees the host.
            if let Some(h) = ip.and_then(|ip| cluster.host_by_ip(ip)) {
                return Side { endpoint: Endpoint::Host(h), ip };
            }
            if let Some(node) = ip.and_then(|ip| cluster.node_by_ip(ip)) {
                return Side { endpoint: Endpoint::Node(node), ip };
            }
        }
        Side { endpoint: Endpoint::Pod(id), ip }
    }
    /// A node as it sends: from its first address, which may be a Calico host endpoint's.
    pub fn node(cluster: &Cluster, n: NodeId) -> Side {
        match cluster.nodes[n].addresses.first() {
            Some(&ip) => Side::ip(cluster, ip),
            None => Side { endpoint: Endpoint::Node(n), ip: None },
        }
    }
    /// The endpoint behind an IP: a pod, a host endpoint, a node, or something outside.
    pub fn ip(cluster: &Cluster, ip: IpAddr) -> Side {
        let endpoint = if let Some(p) = cluster.pod_by_ip(ip) {
            Endpoint::Pod(p)
        } else if let Some(h) = cluster.host_by_ip(ip) {
            Endpoint::Host(h)
        } else if let Some(n) = cluster.node_by_ip(ip) {
            Endpoint::Node(n)
        } else {
            Endpoint::External
        };
        Side { endpoint, ip: Some(ip) }
    }
    /// The pod at this end, when it is one.
    pub fn pod_id(&self) -> Option<PodId> {
        match self.endpoint {
            Endpoint::Pod(p) => Some(p),
            _ => None,
        }
    }
}

/// The source port assumed when none is given: the first of Linux's ephemeral ports.
pub const EPHEMERAL_PORT: u16 = 32768;

#[derive(Clone, Copy, Debug)]
pub struct Connection {
    pub src: Side,
    pub dst: Side,
    /// Destination port (0 for protocols without ports).
    pub port: u16,
    pub protocol: Protocol,
    pub src_port: u16,
    /// For ICMP: type and code (echo request by default).
    pub icmp_type: u8,
    pub icmp_code: u8,
}

impl Connection {
    pub fn new(src: Side, dst: Side, port: u16, protocol: Protocol) -> Connection {
        let icmp_type = if protocol == Protocol::ICMPv6 { 128 } else { 8 };
        Connection { src, dst, port, protocol, src_port: EPHEMERAL_PORT, icmp_type, icmp_code: 0 }
    }
}

/// Describes an endpoint for people: `ns/pod`, `node n1`, `host endpoint h`, or the IP.
pub fn describe(cluster: &Cluster, side: &Side) -> String {
    let ip = side.ip.map(|i| i.to_string());
    match side.endpoint {
        Endpoint::Pod(p) => cluster.pod_key(p),
        Endpoint::Host(h) => format!("host endpoint {} ({})", cluster.host_endpoints[h].name, ip.unwrap_or_default()),
        Endpoint::Node(n) => format!("node {} ({})", cluster.nodes[n].name, ip.unwrap_or_default()),
        Endpoint::External => ip.unwrap_or_else(|| "?".into()),
    }
}
