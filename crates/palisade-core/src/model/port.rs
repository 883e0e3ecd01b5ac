//! Protocols, rule ports (number, range, name) and container ports.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub enum Protocol {
    TCP,
    UDP,
    SCTP,
    /// Only Calico rules name ICMP; Kubernetes rules with ports never match it.
    ICMP,
    ICMPv6,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::TCP, Protocol::UDP, Protocol::SCTP];

    /// The API's spelling: exactly `TCP`, `UDP` or `SCTP`.
    pub fn from_api(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::TCP),
            "UDP" => Some(Protocol::UDP),
            "SCTP" => Some(Protocol::SCTP),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::TCP => "TCP",
            Protocol::UDP => "UDP",
            Protocol::SCTP => "SCTP",
            Protocol::ICMP => "ICMP",
            Protocol::ICMPv6 => "ICMPv6",
        }
    }
    /// The IP protocol number.
    /// The protocol with IP protocol number `n`, if it is one of these.
    pub fn from_number(n: u8) -> Option<Protocol> {
        [Protocol::TCP, Protocol::UDP, Protocol::SCTP, Protocol::ICMP, Protocol::ICMPv6]
            .into_iter()
            .find(|p| p.number() == n)
    }
    pub fn number(self) -> u8 {
        match self {
            Protocol::TCP => 6,
            Protocol::UDP => 17,
            Protocol::SCTP => 132,
            Protocol::ICMP => 1,
            Protocol::ICMPv6 => 58,
        }
    }
    /// Whether connections of this protocol have ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::TCP | Protocol::UDP | Protocol::SCTP)
    }
}

impl FromStr for Protocol {
    type Err = String;
    /// Command-line spelling: any case.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "ICMP" => Ok(Protocol::ICMP),
            "ICMPV6" => Ok(Protocol::ICMPv6),
            u => Protocol::from_api(u)
                .ok_or_else(|| format!("unknown protocol {s:?}: use TCP, UDP, SCTP, ICMP or ICMPv6")),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A port a pod's container declares.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

/// Which destination ports a policy rule port admits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortSpec {
    /// `port` omitted: every port of the protocol.
    Any,
    /// `port` (and `endPort`): an inclusive range.
    Range(u16, u16),
    /// A named port, resolved against the destination pod's container ports.
    Named(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RulePort {
    pub protocol: Protocol,
    pub port: PortSpec,
}

impl RulePort {
    /// Whether a connection to `port`/`protocol` matches. `dst_ports` are the destination
    /// pod's container ports (`None` when the destination is not a pod: named ports never match).
    pub fn matches(&self, port: u16, protocol: Protocol, dst_ports: Option<&[ContainerPort]>) -> bool {
        if self.protocol != protocol {
            return false;
        }
        match &self.port {
            PortSpec::Any => true,
            PortSpec::Range(lo, hi) => (*lo..=*hi).contains(&port),
            PortSpec::Named(name) => dst_ports.is_some_and(|ports| {
                ports.iter().any(|c| c.port == port && c.protocol == protocol && c.name.as_deref() == Some(name))
            }),
        }
    }
    pub fn is_named(&self) -> bool {
        matches!(self.port, PortSpec::Named(_))
    }
}

impl fmt::Display for RulePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.port {
            PortSpec::Any => write!(f, "{}/any", self.protocol),
            PortSpec::Range(a, b) if a == b => write!(f, "{}/{a}", self.protocol),
            PortSpec::Range(a, b) => write!(f, "{}/{a}-{b}", self.protocol),
            PortSpec::Named(n) => write!(f, "{}/{n}", self.protocol),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn named_ports_resolve_against_destination_pod() {
        let rp = RulePort { protocol: Protocol::TCP, port: PortSpec::Named("http".into()) };
        let ports = [ContainerPort { name: Some("http".into()), port: 8080, protocol: Protocol::TCP }];
        assert!(rp.matches(8080, Protocol::TCP, Some(&ports)));
        assert!(!rp.matches(80, Protocol::TCP, Some(&ports)));
        assert!(!rp.matches(8080, Protocol::UDP, Some(&ports)));
        assert!(!rp.matches(8080, Protocol::TCP, None), "named ports never match a non-pod destination");
    }
}
