//! Protocols and the ports containers declare.

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

/// A protocol name that is none of the five.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}: use TCP, UDP, SCTP, ICMP or ICMPv6")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;
    /// Command-line spelling: any case.
    fn from_str(s: &str) -> Result<Self, UnknownProtocol> {
        match s.to_ascii_uppercase().as_str() {
            "ICMP" => Ok(Protocol::ICMP),
            "ICMPV6" => Ok(Protocol::ICMPv6),
            u => Protocol::from_api(u).ok_or_else(|| UnknownProtocol(s.to_string())),
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
