//! The one rule language every policy API lowers to.
//!
//! A [`Rule`] has an action and conditions: protocol (or not), ICMP type/code (or not), IP
//! version, and a source and a destination [`Entity`] (nets or not, a selector over endpoint
//! labels or not, ports or not). This is the shape of Calico's rule (projectcalico.org/v3
//! `Rule`, `EntityRule`); a Kubernetes NetworkPolicy rule lowers to one such rule per peer and
//! protocol, as Calico's own conversion does. How a rule matches a connection is
//! [`crate::decide::matching`]'s alone.
//!
//! Each rule keeps its [`Origin`]: which written rule it came from and that rule's words, so
//! that traces and findings speak the language of the API that wrote the policy.

use std::fmt;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Serialize;

use crate::model::expr::Expr;
use crate::model::field::{FieldPath, Location};

/// What a matching rule does (Calico's actions; Kubernetes rules only allow).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Action {
    Allow,
    Deny,
    /// Skip the rest of this tier; the next tier that selects the endpoint decides.
    Pass,
    /// Record and go on to the next rule.
    Log,
}

impl Action {
    /// Calico's spelling: `Allow`, `Deny`, `Pass`, `Log`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "Allow",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
            Action::Log => "Log",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A port condition: a range of numbers (one number is `Range(n, n)`), or a named port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    Range(u16, u16),
    /// Resolved against the named ports of the endpoint on that side.
    Named(String),
}

impl Port {
    /// Every port number: what a Kubernetes port of a protocol without `port` means.
    pub const ALL: Port = Port::Range(0, u16::MAX);
}

impl fmt::Display for Port {
    /// Calico's notation: `80`, `8000:8080`, `http`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Range(a, b) if a == b => write!(f, "{a}"),
            Port::Range(a, b) => write!(f, "{a}:{b}"),
            Port::Named(n) => f.write_str(n),
        }
    }
}

/// ICMP type and code; `None` matches any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Icmp {
    pub type_: Option<u8>,
    pub code: Option<u8>,
}

/// The conditions on one end (source or destination) of a rule. Empty fields set no condition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Entity {
    pub nets: Vec<IpNet>,
    pub not_nets: Vec<IpNet>,
    /// One expression over endpoint labels (pseudo-labels included) that holds the API's
    /// selector, namespace scope and service accounts; it matches pods, host endpoints and
    /// network sets (see [`crate::decide::matching::candidates`]).
    pub selector: Option<Expr>,
    pub not_selector: Option<Expr>,
    pub ports: Vec<Port>,
    pub not_ports: Vec<Port>,
}

impl Entity {
    /// Whether it sets no condition at all (it admits every endpoint on every port).
    pub fn is_empty(&self) -> bool {
        !self.has_address() && self.ports.is_empty() && self.not_ports.is_empty()
    }
    /// Whether the entity sets conditions on who the endpoint is (nets or selectors).
    pub fn has_address(&self) -> bool {
        !self.nets.is_empty() || !self.not_nets.is_empty() || self.selector.is_some() || self.not_selector.is_some()
    }
    /// Whether any of its ports is named.
    pub fn uses_named_ports(&self) -> bool {
        self.ports.iter().chain(&self.not_ports).any(|p| matches!(p, Port::Named(_)))
    }
}

/// One rule: when every condition holds, its action decides.
#[derive(Clone, Debug)]
pub struct Rule {
    pub action: Action,
    /// IP protocol number.
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    /// 4 or 6.
    pub ip_version: Option<u8>,
    pub icmp: Option<Icmp>,
    pub not_icmp: Option<Icmp>,
    pub source: Entity,
    pub destination: Entity,
    pub origin: Origin,
}

impl Rule {
    /// Whether a port condition on either end is a named port.
    pub fn uses_named_ports(&self) -> bool {
        self.source.uses_named_ports() || self.destination.uses_named_ports()
    }
}

/// Where a rule came from: the written rule it was lowered from and its words.
#[derive(Clone, Debug)]
pub struct Origin {
    /// Index of the written rule in its policy's ingress or egress list.
    pub rule: usize,
    /// For APIs whose rules list peers: the peer (`from[j]`/`to[j]`) this rule was lowered from.
    pub peer: Option<usize>,
    /// The written rule, shared by every rule lowered from it.
    pub written: Arc<Written>,
}

impl Origin {
    /// The written rule's path in its object: `spec.ingress[0]`.
    pub fn path(&self, dir: &str) -> FieldPath {
        FieldPath::root().key("spec").key(dir).index(self.rule)
    }

    /// The names of the `domainNames` peer (ClusterNetworkPolicy) this rule was lowered from;
    /// empty for every other peer. Such a rule matches the addresses the cluster's DNS facts
    /// give the names, which an enforcer without DNS interception cannot know.
    pub fn domain_names(&self) -> &[String] {
        match (&self.written.form, self.peer) {
            (Form::Peers { peers: Some(peers), .. }, Some(j)) => peers.get(j).map_or(&[], |p| p.domains.as_slice()),
            _ => &[],
        }
    }
}

/// A rule as its API wrote it: what traces and findings quote.
#[derive(Clone, Debug)]
pub struct Written {
    pub location: Option<Location>,
    pub form: Form,
    /// The rule's own name, for APIs whose rules have one (ClusterNetworkPolicy).
    pub name: Option<String>,
}

/// The two shapes rules are written in.
#[derive(Clone, Debug)]
pub enum Form {
    /// A source and a destination (Calico): the protocol names and each end's fields as
    /// written (`selector app == "x", ports [80]`).
    Entities { protocol: Option<String>, not_protocol: Option<String>, source: String, destination: String },
    /// A list of peers and a list of ports (Kubernetes NetworkPolicy); `None` is "all".
    Peers { peers: Option<Vec<PeerWords>>, ports: Option<Vec<PortWords>> },
}

/// One entry of a written peer list: `pods app=web in namespace shop`, `ipBlock 10.0.0.0/8`.
#[derive(Clone, Debug)]
pub struct PeerWords {
    pub text: String,
    /// It names pods or namespaces by labels (a non-empty selector), rather than admitting
    /// everyone or an address block: an intent to reach particular pods.
    pub by_labels: bool,
    /// For a `domainNames` peer: its names, which traces explain with the cluster's DNS
    /// facts ([`crate::model::cluster::Cluster::dns`]); empty for every other peer.
    pub domains: Vec<String>,
}

/// One entry of a written port list: `TCP/80`, `UDP/any`, `TCP/http`.
#[derive(Clone, Debug)]
pub struct PortWords {
    pub text: String,
    /// IP protocol number.
    pub protocol: u8,
    pub named: bool,
}
