//! Protocols and the ports containers declare.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::family::Families;

/// An IP protocol, by its number (IANA's protocol numbers, 1-255). Kubernetes rules and
/// container ports name TCP, UDP or SCTP; Calico rules name any protocol by number or by one of
/// the names `TCP`, `UDP`, `ICMP`, `ICMPv6`, `SCTP`, `UDPLite` (Calico's rule reference,
/// `protocol`), so `47` (GRE) is a protocol as well. The named ones are constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Protocol(u8);

/// The names Calico gives, in the order Palisade lists protocols (the ones with ports first).
const NAMED: [(Protocol, &str); 6] = [
    (Protocol::TCP, "TCP"),
    (Protocol::UDP, "UDP"),
    (Protocol::SCTP, "SCTP"),
    (Protocol::ICMP, "ICMP"),
    (Protocol::ICMPv6, "ICMPv6"),
    (Protocol::UDPLITE, "UDPLite"),
];

#[allow(non_upper_case_globals)]
impl Protocol {
    pub const TCP: Protocol = Protocol(6);
    pub const UDP: Protocol = Protocol(17);
    pub const SCTP: Protocol = Protocol(132);
    /// Only Calico rules name ICMP; Kubernetes rules with ports never match it.
    pub const ICMP: Protocol = Protocol(1);
    pub const ICMPv6: Protocol = Protocol(58);
    /// UDP-Lite (136): Calico names it; its rules cannot name ports.
    pub const UDPLITE: Protocol = Protocol(136);

    /// The protocols Kubernetes NetworkPolicy and container ports name.
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
    /// The protocol with IP protocol number `n` (1-255; 0 is none).
    pub fn from_number(n: u8) -> Option<Protocol> {
        (n != 0).then_some(Protocol(n))
    }
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        self.0
    }
    /// Calico's name for it (`TCP`, ..., `UDPLite`), if it has one.
    pub fn name(self) -> Option<&'static str> {
        NAMED.iter().find(|(p, _)| *p == self).map(|(_, n)| *n)
    }
    /// Whether connections of this protocol have ports (as Calico's `SupportsPorts`: TCP, UDP
    /// and SCTP; rules of other protocols cannot name ports).
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::TCP | Protocol::UDP | Protocol::SCTP)
    }
    /// The IP families it runs over: ICMP over IPv4 only, ICMPv6 over IPv6 only, the rest both.
    pub fn families(self) -> Families {
        match self {
            Protocol::ICMP => Families::V4,
            Protocol::ICMPv6 => Families::V6,
            _ => Families::BOTH,
        }
    }
    /// Place in listings: the named protocols in [`NAMED`]'s order, then the others by number.
    fn rank(self) -> u16 {
        NAMED.iter().position(|(p, _)| *p == self).map_or(NAMED.len() as u16 + u16::from(self.0), |i| i as u16)
    }
}

impl Ord for Protocol {
    fn cmp(&self, other: &Protocol) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl PartialOrd for Protocol {
    fn partial_cmp(&self, other: &Protocol) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A protocol that is neither a name Calico gives nor a number 1-255.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}: use TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite or a protocol number 1-255 (protocol 47)")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;
    /// Command-line spelling: a name in any case, a number (`47`), or the printed form of an
    /// unnamed protocol (`protocol 47`).
    fn from_str(s: &str) -> Result<Self, UnknownProtocol> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        if let Some((p, _)) = NAMED.iter().find(|(_, n)| n.eq_ignore_ascii_case(t)) {
            return Ok(*p);
        }
        let number = lower.strip_prefix("protocol").map_or(lower.as_str(), str::trim);
        number.parse::<u8>().ok().and_then(Protocol::from_number).ok_or_else(|| UnknownProtocol(s.to_string()))
    }
}

impl fmt::Display for Protocol {
    /// The name (`TCP`), or `protocol 47` for one without a name: never a bare number, which
    /// would read as a port.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "protocol {}", self.0),
        }
    }
}

impl Serialize for Protocol {
    /// As Calico writes it: the name, else the number.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.name() {
            Some(n) => s.serialize_str(n),
            None => s.serialize_u8(self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u8),
            Name(String),
        }
        let parsed = match Written::deserialize(d)? {
            Written::Number(n) => Protocol::from_number(n).ok_or_else(|| UnknownProtocol(n.to_string())),
            Written::Name(s) => s.parse(),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

/// A port a pod's container declares.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (written, the protocol, how it prints).
    const SPELLINGS: &[(&str, u8, &str)] = &[
        ("TCP", 6, "TCP"),
        ("tcp", 6, "TCP"),
        ("6", 6, "TCP"),
        ("icmpv6", 58, "ICMPv6"),
        ("UDPLite", 136, "UDPLite"),
        ("47", 47, "protocol 47"),
        ("protocol 47", 47, "protocol 47"),
        ("Protocol 255", 255, "protocol 255"),
    ];

    #[test]
    fn every_protocol_by_name_or_number_and_back() {
        for &(written, n, printed) in SPELLINGS {
            let p: Protocol = written.parse().unwrap_or_else(|e| panic!("{written}: {e}"));
            assert_eq!((p.number(), p.to_string().as_str()), (n, printed), "{written}");
            assert_eq!(p.to_string().parse::<Protocol>(), Ok(p), "printed form of {written} reads back");
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Protocol>(&json).unwrap(), p, "{json}");
        }
        for bad in ["0", "256", "GRE", "protocol", "-1", ""] {
            assert!(bad.parse::<Protocol>().is_err(), "{bad:?}");
        }
        assert_eq!(serde_json::to_string(&Protocol::from_number(47).unwrap()).unwrap(), "47");
        let mut listed = vec![Protocol(47), Protocol::ICMP, Protocol::SCTP, Protocol::TCP, Protocol(2)];
        listed.sort();
        assert_eq!(listed, [Protocol::TCP, Protocol::SCTP, Protocol::ICMP, Protocol(2), Protocol(47)]);
        assert!(!Protocol(47).has_ports() && !Protocol::UDPLITE.has_ports() && Protocol::SCTP.has_ports());
    }
}
