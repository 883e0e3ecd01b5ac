//! The ports worth asking about: every port a pod, Service or rule names, and for each
//! protocol one port that nothing names, standing for "any other port".

use std::collections::BTreeSet;
use std::fmt;

use palisade_core::cluster::{Cluster, TargetPort};
use palisade_core::policy::Direction;
use palisade_core::port::Protocol;
use palisade_core::rule::Port;
use palisade_core::verdict::failsafe_ports;
use serde::Serialize;

/// One port standing for a stretch of ports (`port..=end`) that every rule, pod and Service
/// treats alike, so that deciding it decides them all: connectivity over the probes is exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Probe {
    pub port: u16,
    pub protocol: Protocol,
    /// The last port of the stretch.
    pub end: u16,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.protocol.has_ports() {
            write!(f, "{}", self.protocol)
        } else if self.port == self.end {
            write!(f, "{}/{}", self.port, self.protocol)
        } else {
            write!(f, "{}-{}/{}", self.port, self.end, self.protocol)
        }
    }
}

/// Port ranges written in the input, per protocol, as inclusive bounds.
fn named_ranges(cluster: &Cluster, out: &mut BTreeSet<(Protocol, u16, u16)>) {
    for p in &cluster.pods {
        out.extend(p.ports.iter().map(|c| (c.protocol, c.port, c.port)));
    }
    for h in &cluster.host_endpoints {
        out.extend(h.ports.iter().map(|c| (c.protocol, c.port, c.port)));
    }
    // Host endpoints always pass Felix's failsafe ports: each is a boundary of its own.
    if !cluster.host_endpoints.is_empty() {
        for dir in [Direction::Ingress, Direction::Egress] {
            out.extend(failsafe_ports(dir).into_iter().map(|(p, n)| (p, n, n)));
        }
    }
    for s in &cluster.services {
        for sp in &s.ports {
            if let TargetPort::Number(n) = sp.target {
                out.insert((sp.protocol, n, n));
            }
        }
    }
    for pol in &cluster.policies {
        for rule in pol.ingress.iter().chain(pol.egress.iter()).flatten() {
            let protos: Vec<Protocol> = match rule.protocol {
                Some(n) => Protocol::from_number(n).filter(|p| p.has_ports()).into_iter().collect(),
                None => vec![Protocol::TCP, Protocol::UDP],
            };
            let entities = [&rule.source, &rule.destination];
            let ports = entities.iter().flat_map(|e| e.ports.iter().chain(e.not_ports.iter()));
            // Every port (a Kubernetes port without a number) names no boundary.
            for port in ports.filter(|p| **p != Port::ALL) {
                if let Port::Range(a, b) = port {
                    out.extend(protos.iter().map(|&p| (p, *a, *b)));
                }
            }
        }
    }
}

/// Whether a rule may decide protocols without ports apart from TCP, UDP and SCTP: it names
/// another protocol, excludes one, sets ICMP conditions, or matches every protocol (Calico).
fn names_other_protocols(cluster: &Cluster) -> bool {
    let rules = cluster.policies.iter().flat_map(|p| p.ingress.iter().chain(p.egress.iter()).flatten());
    rules.into_iter().any(|r| {
        r.protocol.is_none_or(|n| Protocol::from_number(n).is_none_or(|p| !p.has_ports()))
            || r.not_protocol.is_some()
            || r.icmp.is_some()
            || r.not_icmp.is_some()
    })
}

/// Protocols without ports apart from ICMP and ICMPv6 that a rule names or excludes (`47`,
/// `UDPLite`): each is decided on its own.
fn numbered_protocols(cluster: &Cluster) -> BTreeSet<Protocol> {
    let rules = cluster.policies.iter().flat_map(|p| p.ingress.iter().chain(p.egress.iter()).flatten());
    let named = rules.flat_map(|r| [r.protocol, r.not_protocol]).flatten().filter_map(Protocol::from_number);
    named.filter(|p| !p.has_ports() && !matches!(*p, Protocol::ICMP | Protocol::ICMPv6)).collect()
}

/// The probes for a cluster: the ports of every protocol (TCP and UDP always; SCTP when
/// something names it) cut at each boundary of a named port or range.
pub fn probes(cluster: &Cluster) -> Vec<Probe> {
    probes_of(&[cluster])
}

/// Probes that serve several clusters alike (to compare them): cut at every boundary of any.
pub fn probes_of(clusters: &[&Cluster]) -> Vec<Probe> {
    let mut ranges = BTreeSet::new();
    clusters.iter().for_each(|c| named_ranges(c, &mut ranges));
    let mut protocols: BTreeSet<Protocol> = [Protocol::TCP, Protocol::UDP].into();
    protocols.extend(ranges.iter().map(|r| r.0));
    let mut out = Vec::new();
    // ICMP (an echo request, as `check` sends by default) where some rule can tell it apart
    // from the protocols with ports.
    if clusters.iter().any(|c| names_other_protocols(c)) {
        out.extend([Protocol::ICMP, Protocol::ICMPv6].map(|protocol| Probe { port: 0, protocol, end: 0 }));
        let numbered = clusters.iter().flat_map(|c| numbered_protocols(c)).collect::<BTreeSet<_>>();
        out.extend(numbered.into_iter().map(|protocol| Probe { port: 0, protocol, end: 0 }));
    }
    for protocol in protocols.into_iter().filter(|p| p.has_ports()) {
        let mut starts: BTreeSet<u32> = BTreeSet::from([1]);
        for &(_, a, b) in ranges.iter().filter(|r| r.0 == protocol) {
            starts.insert(u32::from(a));
            starts.insert(u32::from(b) + 1);
        }
        let starts: Vec<u32> = starts.into_iter().filter(|&s| (1..=65535).contains(&s)).collect();
        for (i, &s) in starts.iter().enumerate() {
            let end = starts.get(i + 1).map_or(65535, |&n| n - 1);
            out.push(Probe { port: s as u16, protocol, end: end as u16 });
        }
    }
    out
}

/// Describes a set of probes compactly: `80/TCP, 8000-8080/TCP, any UDP` (a protocol is "any"
/// when every probe of it is in the set; adjacent stretches merge).
pub fn describe(all: &[Probe], chosen: &[Probe]) -> String {
    let mut parts = Vec::new();
    let mut chosen = chosen.to_vec();
    chosen.sort_by_key(|p| (p.protocol, p.port));
    let protocols: BTreeSet<Protocol> = chosen.iter().map(|p| p.protocol).collect();
    for protocol in protocols {
        let of = |v: &[Probe]| v.iter().filter(|p| p.protocol == protocol).count();
        if !protocol.has_ports() {
            parts.push(protocol.to_string());
            continue;
        }
        if of(all) == of(&chosen) {
            parts.push(format!("any {protocol}"));
            continue;
        }
        let of_protocol: Vec<Probe> = chosen.iter().filter(|p| p.protocol == protocol).copied().collect();
        parts.extend(merge(&of_protocol).iter().map(Probe::to_string));
    }
    parts.join(", ")
}

/// Adjacent stretches of one protocol merged into one (`80-80` and `81-442` into `80-442`),
/// sorted by protocol and port: the port ranges a set of probes stands for.
pub fn merge(chosen: &[Probe]) -> Vec<Probe> {
    let mut chosen = chosen.to_vec();
    chosen.sort_by_key(|p| (p.protocol, p.port));
    let mut merged: Vec<Probe> = Vec::new();
    for p in chosen {
        match merged.last_mut() {
            Some(last) if last.protocol == p.protocol && u32::from(last.end) + 1 == u32::from(p.port) => {
                last.end = p.end
            }
            _ => merged.push(p),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_cover_every_port_once_and_describe_merges() {
        let p = |port, end| Probe { port, protocol: Protocol::TCP, end };
        let all = vec![p(1, 79), p(80, 80), p(81, 442), p(443, 443), p(444, 65535)];
        assert_eq!(describe(&all, &[p(80, 80), p(443, 443)]), "80/TCP, 443/TCP");
        assert_eq!(describe(&all, &[p(80, 80), p(81, 442), p(443, 443)]), "80-443/TCP");
        assert_eq!(describe(&all, &all), "any TCP");
        let cluster = Cluster::default();
        let probes = probes(&cluster);
        assert_eq!(probes.len(), 2, "one stretch per protocol when nothing is named");
        assert!(probes.iter().all(|p| p.port == 1 && p.end == 65535));
    }
}
