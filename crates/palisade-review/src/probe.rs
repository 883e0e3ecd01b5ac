//! The ports worth asking about: every port a pod, Service or rule names, and for each
//! protocol one port that nothing names, standing for "any other port".

use std::collections::BTreeSet;
use std::fmt;

use palisade_core::calico::rule::CalicoPort;
use palisade_core::cluster::{Cluster, TargetPort};
use palisade_core::policy::Match;
use palisade_core::port::{PortSpec, Protocol};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Probe {
    pub port: u16,
    pub protocol: Protocol,
    /// Stands for every port of the protocol that no pod, Service or rule names.
    pub other: bool,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.other {
            write!(f, "other {}", self.protocol)
        } else {
            write!(f, "{}/{}", self.port, self.protocol)
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
    for s in &cluster.services {
        for sp in &s.ports {
            if let TargetPort::Number(n) = sp.target {
                out.insert((sp.protocol, n, n));
            }
        }
    }
    for pol in &cluster.policies {
        for rule in pol.ingress.iter().chain(pol.egress.iter()).flatten() {
            match &rule.matches {
                Match::Kubernetes { ports, .. } => {
                    for rp in ports.iter().flatten() {
                        if let PortSpec::Range(a, b) = rp.port {
                            out.insert((rp.protocol, a, b));
                        }
                    }
                }
                Match::Calico(c) => {
                    let protos: Vec<Protocol> = match c.protocol.as_ref() {
                        Some((n, _)) => Protocol::ALL.into_iter().filter(|p| p.number() == *n).collect(),
                        None => vec![Protocol::TCP, Protocol::UDP],
                    };
                    let entities = [&c.source, &c.destination];
                    let ports = entities.iter().flat_map(|e| e.ports.iter().chain(e.not_ports.iter()));
                    for port in ports {
                        if let CalicoPort::Range(a, b) = port {
                            out.extend(protos.iter().map(|&p| (p, *a, *b)));
                        }
                    }
                }
            }
        }
    }
}

/// The probes for a cluster: each named port (both ends of a range), then one unnamed port
/// per protocol (TCP and UDP always; SCTP when something names it).
pub fn probes(cluster: &Cluster) -> Vec<Probe> {
    probes_of(&[cluster])
}

/// Probes that serve several clusters alike (to compare them): every port any of them names.
pub fn probes_of(clusters: &[&Cluster]) -> Vec<Probe> {
    let mut ranges = BTreeSet::new();
    clusters.iter().for_each(|c| named_ranges(c, &mut ranges));
    let mut set = BTreeSet::new();
    for &(protocol, a, b) in &ranges {
        set.insert(Probe { port: a, protocol, other: false });
        set.insert(Probe { port: b, protocol, other: false });
    }
    let mut protocols: BTreeSet<Protocol> = [Protocol::TCP, Protocol::UDP].into();
    protocols.extend(ranges.iter().map(|r| r.0));
    for protocol in protocols {
        let named = |p: u16| ranges.iter().any(|&(pr, a, b)| pr == protocol && (a..=b).contains(&p));
        if let Some(port) = (1..=u16::MAX).find(|&p| !named(p)) {
            set.insert(Probe { port, protocol, other: true });
        }
    }
    let mut v: Vec<Probe> = set.into_iter().collect();
    v.sort_by_key(|p| (p.other, p.protocol, p.port));
    v
}

/// Describes a set of probes compactly: `80/TCP, 443/TCP, any UDP` (a protocol is "any" when
/// every probe of it, its unnamed port included, is in the set).
pub fn describe(all: &[Probe], chosen: &[Probe]) -> String {
    let mut parts = Vec::new();
    let mut chosen = chosen.to_vec();
    chosen.sort_by_key(|p| (p.protocol, p.other, p.port));
    let protocols: BTreeSet<Protocol> = chosen.iter().map(|p| p.protocol).collect();
    for protocol in protocols {
        let of = |v: &[Probe]| v.iter().filter(|p| p.protocol == protocol).count();
        if of(all) == of(&chosen) {
            parts.push(format!("any {protocol}"));
        } else {
            parts.extend(chosen.iter().filter(|p| p.protocol == protocol).map(|p| p.to_string()));
        }
    }
    parts.join(", ")
}
