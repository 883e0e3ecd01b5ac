//! The nftables vocabulary Palisade writes, as types: the table's name, address families,
//! hooks, set kinds and elements, and rules as lists of typed statements (matches, then
//! statements such as `counter`, `log` and a verdict), and the [`Command`]s of a transaction.
//! A ruleset and the commands that load it are made of these; the text renderer prints them
//! as `nft -f` input and the netlink renderer encodes them as one nf_tables batch. Nothing parses
//! nft's text back.
//!
//! The meaning of each item is nft's (nft(8), "EXPRESSIONS" and "STATEMENTS").

use std::net::IpAddr;

use ipnet::IpNet;

/// The one table Palisade owns, in the `inet` family.
pub const TABLE: &str = "palisade";

/// An address family of the `inet` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
    /// nft's payload keyword: `ip` or `ip6`.
    pub fn keyword(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
    /// nft's address type: `ipv4_addr` or `ipv6_addr`.
    pub fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }
    /// The suffix of a per-family set's name: `4` or `6`.
    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }
}

/// The netfilter hooks Palisade's base chains sit on (each chain is named after its hook).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Output,
    Postrouting,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// What a named set holds; decides its declaration and how its elements are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetKind {
    /// Addresses and CIDRs (`flags interval`).
    Addresses(Family),
    /// `address . port` pairs (peers' named ports).
    AddressPorts(Family),
    /// `address . address` pairs (a node's address and one of its pods').
    AddressPairs(Family),
    /// Address → `jump chain` (the egress/ingress/host verdict maps).
    Map(Family),
    /// New connections seen, filled by the base chains (`--flow-log`).
    Flows(Family),
}

impl SetKind {
    pub fn family(self) -> Family {
        match self {
            SetKind::Addresses(f)
            | SetKind::AddressPorts(f)
            | SetKind::AddressPairs(f)
            | SetKind::Map(f)
            | SetKind::Flows(f) => f,
        }
    }
}

/// One element of a named set or verdict map.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    /// An address (a full-length prefix) or a network, of an interval set.
    Net(IpNet),
    /// `address . port`.
    AddressPort(IpAddr, u16),
    /// `address . address`.
    AddressPair(IpAddr, IpAddr),
    /// `address : jump chain`, of a verdict map.
    Jump(IpAddr, String),
    /// A verdict map's key alone: what deleting its element names.
    MapKey(IpAddr),
}

/// A named set of addresses (interval) or `address . port` pairs (named ports).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedSet {
    pub family: Family,
    pub with_port: bool,
    pub elements: std::collections::BTreeSet<Element>,
}

impl NamedSet {
    pub fn kind(&self) -> SetKind {
        if self.with_port {
            SetKind::AddressPorts(self.family)
        } else {
            SetKind::Addresses(self.family)
        }
    }
}

/// Source or destination address of the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    Saddr,
    Daddr,
}

/// Source or destination port of the transport header (`th`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortField {
    Sport,
    Dport,
}

/// An ICMP (or ICMPv6) header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IcmpField {
    Type,
    Code,
}

/// A conntrack state (`ct state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtState {
    Invalid,
    Established,
    Related,
    New,
}

/// A network interface as the base chains match it: only loopback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interface {
    /// `meta iif`: the packet came in on it.
    In,
    /// `meta oif`: the packet goes out on it.
    Out,
}

/// A verdict ending a rule (or a verdict map's element).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Goto(String),
    Jump(String),
}

/// One statement of a rule, in nft's order: matches first, then what the rule does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Stmt {
    /// `meta nfproto ipv4|ipv6`.
    Nfproto(Family),
    /// `meta l4proto P` (`!=`), or `meta l4proto { P, Q }` for more than one protocol.
    L4proto {
        negate: bool,
        protocols: Vec<u8>,
    },
    /// `ip saddr @set` (`!=`).
    Address {
        family: Family,
        field: Addr,
        negate: bool,
        set: String,
    },
    /// `ip daddr . th dport @set` (`!=`).
    AddressPort {
        family: Family,
        addr: Addr,
        port: PortField,
        negate: bool,
        set: String,
    },
    /// `ip saddr . ip daddr @set`.
    AddressPair {
        family: Family,
        set: String,
    },
    /// `th dport { 80, 8000-8080 }` (`!=`): inclusive ranges, as the rule lists them.
    Ports {
        field: PortField,
        negate: bool,
        ranges: Vec<(u16, u16)>,
    },
    /// `icmp type 8`, `icmpv6 code != 0`.
    Icmp {
        v6: bool,
        field: IcmpField,
        negate: bool,
        value: u8,
    },
    /// `icmpv6 type { nd-neighbor-solicit, ... }`: the five neighbor discovery types.
    NeighborDiscovery,
    /// `meta l4proto . th dport { tcp . 22, ... }`.
    ProtocolPorts(Vec<(u8, u16)>),
    /// `meta iif lo` / `meta oif != lo`.
    Loopback {
        interface: Interface,
        negate: bool,
    },
    /// `fib saddr type local`: the source is an address of this network namespace.
    LocalSource,
    /// `ct state a,b`: any of the states.
    Ct(Vec<CtState>),
    /// `update @flows_N { ip saddr . ip daddr . meta l4proto . th dport }`.
    NoteFlow {
        family: Family,
        set: String,
    },
    /// `ip saddr vmap @map`: the verdict is the map's element for the address.
    Vmap {
        family: Family,
        field: Addr,
        map: String,
    },
    Counter,
    /// `log prefix "..."`.
    Log(String),
    Verdict(Verdict),
}

/// One rule: statements and an optional comment (policy, direction, rule and action, which
/// `counters` sums by).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rule {
    pub stmts: Vec<Stmt>,
    pub comment: Option<String>,
}

impl Rule {
    pub fn new(stmts: Vec<Stmt>) -> Rule {
        Rule { stmts, comment: None }
    }
    pub fn with_comment(mut self, comment: impl Into<String>) -> Rule {
        self.comment = Some(comment.into());
        self
    }
    /// The named sets and maps the rule refers to.
    pub fn sets(&self) -> impl Iterator<Item = &str> {
        self.stmts.iter().filter_map(|s| match s {
            Stmt::Address { set, .. }
            | Stmt::AddressPort { set, .. }
            | Stmt::AddressPair { set, .. }
            | Stmt::NoteFlow { set, .. }
            | Stmt::Vmap { map: set, .. } => Some(set.as_str()),
            _ => None,
        })
    }
}

/// Distinct connections remembered at once (an hour each since last seen); more are not noted.
pub const FLOW_CAPACITY: usize = 65_536;

/// One step of a transaction, printed as an `nft -f` line or encoded as netlink messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Create the table, or empty an existing one (`add`, `delete`, `add` in one transaction).
    ReplaceTable,
    AddSet {
        name: String,
        kind: SetKind,
    },
    Elements {
        set: String,
        kind: SetKind,
        items: Vec<Element>,
        add: bool,
    },
    /// A chain; base chains name their hook.
    AddChain {
        name: String,
        hook: Option<Hook>,
    },
    AddRule {
        chain: String,
        rule: Rule,
    },
    FlushChain(String),
    DeleteChain(String),
    DeleteSet(String),
}
