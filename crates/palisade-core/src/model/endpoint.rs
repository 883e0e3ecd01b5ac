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
    /// The endpoint behind an IP, by what the address is: a pod on the pod network, a host
    /// endpoint, a node, a host-network pod at an address no node lists (its node's stack, as
    /// [`Side::pod`] sees it), or something outside.
    pub fn ip(cluster: &Cluster, ip: IpAddr) -> Side {
        let endpoint = if let Some(p) = cluster.pod_by_ip(ip) {
            Endpoint::Pod(p)
        } else if let Some(h) = cluster.host_by_ip(ip) {
            Endpoint::Host(h)
        } else if let Some(n) = cluster.node_by_ip(ip) {
            Endpoint::Node(n)
        } else if let Some(p) = cluster.host_pod_by_ip(ip) {
            Endpoint::Pod(p)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::ClusterBuilder;

    /// What each address is, as `check` by IP sees it: (address, description).
    const BY_ADDRESS: &[(&str, &str)] = &[
        ("10.0.1.1", "x/web"),
        ("10.0.0.1", "node n1 (10.0.0.1)"),
        ("10.0.0.2", "host endpoint eth0-n2 (10.0.0.2)"),
        // Host-network pods at an address no node lists are their node's stack, not outside.
        ("10.0.0.9", "x/agent"),
        ("10.0.0.10", "x/stray"),
        ("203.0.113.10", "203.0.113.10"),
    ];

    #[test]
    fn an_address_is_classified_by_what_holds_it() {
        let c = ClusterBuilder::new()
            .ns("x", &[])
            .node("n1", "10.0.0.1")
            .node("n2", "10.0.0.2")
            .host_endpoint("eth0-n2", "n2", "10.0.0.2")
            .pod_on("x/web", "n1", false, "10.0.1.1")
            .pod_on("x/proxy", "n1", true, "10.0.0.1")
            .pod_on("x/agent", "n1", true, "10.0.0.9")
            .pod_on("x/stray", "n2", true, "10.0.0.10")
            .build();
        for (ip, want) in BY_ADDRESS {
            let side = Side::ip(&c, ip.parse().unwrap());
            assert_eq!(describe(&c, &side), *want, "{ip}");
        }
        // By name and by address alike, for every pod.
        for p in c.pod_ids() {
            let ip = c.primary_ip(p).unwrap();
            assert_eq!(Side::pod(&c, p), Side::ip(&c, ip), "{}", c.pod_key(p));
        }
    }
}
