//! A compiled Calico rule: protocol, ICMP type/code, IP version, and the source and
//! destination entity conditions (nets, selectors, ports). How it matches a connection is
//! [`crate::decide::matching`]'s.

use ipnet::IpNet;

use crate::model::expr::Expr;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CalicoPort {
    Range(u16, u16),
    /// Resolved against the named ports of the endpoint on that side.
    Named(String),
}

impl std::fmt::Display for CalicoPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalicoPort::Range(a, b) if a == b => write!(f, "{a}"),
            CalicoPort::Range(a, b) => write!(f, "{a}:{b}"),
            CalicoPort::Named(n) => f.write_str(n),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Icmp {
    pub type_: Option<u8>,
    pub code: Option<u8>,
}

/// The conditions on one side (source or destination) of a rule.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entity {
    pub nets: Vec<IpNet>,
    pub not_nets: Vec<IpNet>,
    /// Selector, namespace scope, namespaceSelector and serviceAccounts folded into one.
    pub selector: Option<Expr>,
    pub not_selector: Option<Expr>,
    pub ports: Vec<CalicoPort>,
    pub not_ports: Vec<CalicoPort>,
    /// The fields as written, for traces.
    pub written: String,
}

impl Entity {
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
            && self.not_nets.is_empty()
            && self.selector.is_none()
            && self.not_selector.is_none()
            && self.ports.is_empty()
            && self.not_ports.is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CalicoRule {
    /// IP protocol number and the name it was written as.
    pub protocol: Option<(u8, String)>,
    pub not_protocol: Option<(u8, String)>,
    pub ip_version: Option<u8>,
    pub icmp: Option<Icmp>,
    pub not_icmp: Option<Icmp>,
    pub source: Entity,
    pub destination: Entity,
}

impl CalicoRule {
    pub fn uses_named_ports(&self) -> bool {
        let named = |ps: &[CalicoPort]| ps.iter().any(|p| matches!(p, CalicoPort::Named(_)));
        named(&self.destination.ports)
            || named(&self.destination.not_ports)
            || named(&self.source.ports)
            || named(&self.source.not_ports)
    }
}
