//! The IR as one nf_tables batch: each command as netlink messages, each rule as the
//! expressions nft itself would make of it (same registers, dependencies and anonymous sets),
//! so that a table loaded over netlink lists exactly like one loaded with `nft -f`
//! (`tests/netlink_vs_nft.rs`).

use std::net::IpAddr;

use nix::libc;

use crate::ir::{
    Addr, Command, CtState, Element, Family, Hook, IcmpField, Interface, PortField, Rule, SetKind, Stmt, Verdict, TABLE,
};
use crate::netlink::{attr, Attrs, Batch};

const REG_1: u32 = libc::NFT_REG_1 as u32;
/// `NFTA_FIB_F_SADDR` and `NFT_FIB_RESULT_ADDRTYPE` (linux/netfilter/nf_tables.h).
const FIB_F_SADDR: u32 = 1;
const FIB_RESULT_ADDRTYPE: u32 = 3;
const REG32_00: u32 = libc::NFT_REG32_00 as u32;

/// nft's data type numbers (`enum datatypes`), used as set key types so listings print right.
pub mod dtype {
    pub const VERDICT: u32 = 1;
    pub const IPADDR: u32 = 7;
    pub const IP6ADDR: u32 = 8;
    pub const INET_PROTOCOL: u32 = 12;
    pub const INET_SERVICE: u32 = 13;
    pub const ICMP_TYPE: u32 = 14;
    pub const ICMP6_TYPE: u32 = 29;
    /// A concatenation's type: its parts' types, 6 bits each.
    pub fn concat(parts: &[u32]) -> u32 {
        parts.iter().fold(0, |acc, t| (acc << 6) | t)
    }
}

/// One expression of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    Meta {
        key: u32,
        dreg: u32,
    },
    Cmp {
        sreg: u32,
        op: u32,
        data: Vec<u8>,
    },
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Lookup {
        set: SetRef,
        sreg: u32,
        dreg: Option<u32>,
        invert: bool,
    },
    Range {
        sreg: u32,
        op: u32,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Bitwise {
        reg: u32,
        len: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    Ct {
        key: u32,
        dreg: u32,
    },
    /// `fib saddr type`: the route type of the source address (`local` for the namespace's own).
    Fib {
        flags: u32,
        result: u32,
        dreg: u32,
    },
    Counter,
    Log {
        prefix: String,
    },
    Dynset {
        set: String,
        sreg: u32,
    },
    Verdict {
        code: i32,
        chain: Option<String>,
    },
}

/// A named set, or an anonymous one built in the same batch (index into `Encoded::anonymous`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetRef {
    Named(String),
    Anonymous(usize),
}

/// A constant set written inline in a rule (`{ 80, 443 }`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnonSet {
    pub key_type: u32,
    pub key_len: u32,
    pub interval: bool,
    /// Keys; for intervals, (start, end exclusive or `None` up to the top).
    pub elements: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    pub exprs: Vec<Expr>,
    pub anonymous: Vec<AnonSet>,
    pub comment: Option<String>,
}

/// A rule's expressions as nft linearizes them: the same registers, the same dependencies
/// (`meta nfproto` before a network header field, `meta l4proto` before an ICMP field, each
/// only where earlier statements do not already pin it down) and the same anonymous sets, so
/// that a table loaded over netlink lists exactly like one loaded with `nft -f`.
pub fn encode_rule(rule: &Rule) -> Encoded {
    let mut l = Linearizer { out: Encoded::default(), nfproto: false, l4proto: false };
    for s in &rule.stmts {
        l.stmt(s);
    }
    l.out.comment = rule.comment.clone();
    l.out
}

struct Linearizer {
    out: Encoded,
    /// Which family and transport protocol earlier expressions already pin down.
    nfproto: bool,
    l4proto: bool,
}

/// Where a field lives in the packet: (base, offset, length).
fn address_field(family: Family, a: Addr) -> (u32, u32, u32) {
    let net = libc::NFT_PAYLOAD_NETWORK_HEADER as u32;
    match (family, a) {
        (Family::V4, Addr::Saddr) => (net, 12, 4),
        (Family::V4, Addr::Daddr) => (net, 16, 4),
        (Family::V6, Addr::Saddr) => (net, 8, 16),
        (Family::V6, Addr::Daddr) => (net, 24, 16),
    }
}

fn port_field(p: PortField) -> (u32, u32, u32) {
    let th = libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32;
    match p {
        PortField::Sport => (th, 0, 2),
        PortField::Dport => (th, 2, 2),
    }
}

fn cmp_op(negate: bool) -> u32 {
    (if negate { libc::NFT_CMP_NEQ } else { libc::NFT_CMP_EQ }) as u32
}

fn ct_bit(s: CtState) -> u32 {
    match s {
        CtState::Invalid => 1,
        CtState::Established => 2,
        CtState::Related => 4,
        CtState::New => 8,
    }
}

/// Registers are 4 bytes wide; a concatenation's parts start on register boundaries.
fn words_of(len: u32) -> u32 {
    len.div_ceil(4)
}

/// The five ICMPv6 neighbor discovery types, in the order the base chains list them.
const NEIGHBOR_DISCOVERY: [u8; 5] = [135, 136, 133, 134, 137];

impl Linearizer {
    fn push(&mut self, e: Expr) {
        self.out.exprs.push(e);
    }

    fn meta_cmp(&mut self, key: i32, value: u8) {
        self.push(Expr::Meta { key: key as u32, dreg: REG_1 });
        self.push(Expr::Cmp { sreg: REG_1, op: libc::NFT_CMP_EQ as u32, data: vec![value] });
    }

    fn nfproto_dependency(&mut self, family: Family) {
        if !self.nfproto {
            let f = if family == Family::V4 { libc::NFPROTO_IPV4 } else { libc::NFPROTO_IPV6 };
            self.meta_cmp(libc::NFT_META_NFPROTO, f as u8);
            self.nfproto = true;
        }
    }

    fn address(&mut self, family: Family, a: Addr, dreg: u32) -> u32 {
        self.nfproto_dependency(family);
        let (base, offset, len) = address_field(family, a);
        self.push(Expr::Payload { base, offset, len, dreg });
        len
    }

    fn port(&mut self, p: PortField, dreg: u32) {
        let (base, offset, len) = port_field(p);
        self.push(Expr::Payload { base, offset, len, dreg });
    }

    /// An ICMP header field; ICMP needs its network layer too, unless the protocol was
    /// matched explicitly.
    fn icmp(&mut self, v6: bool, field: IcmpField) {
        if !self.l4proto {
            self.nfproto_dependency(if v6 { Family::V6 } else { Family::V4 });
            self.meta_cmp(libc::NFT_META_L4PROTO, if v6 { 58 } else { 1 });
            self.l4proto = true;
        }
        let th = libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32;
        let offset = if field == IcmpField::Type { 0 } else { 1 };
        self.push(Expr::Payload { base: th, offset, len: 1, dreg: REG_1 });
    }

    fn lookup(&mut self, set: &str, invert: bool) {
        self.push(Expr::Lookup { set: SetRef::Named(set.to_string()), sreg: REG_1, dreg: None, invert });
    }

    fn lookup_anon(&mut self, set: AnonSet, invert: bool) {
        self.out.anonymous.push(set);
        let set = SetRef::Anonymous(self.out.anonymous.len() - 1);
        self.push(Expr::Lookup { set, sreg: REG_1, dreg: None, invert });
    }

    fn stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::Nfproto(f) => {
                let v = if *f == Family::V4 { libc::NFPROTO_IPV4 } else { libc::NFPROTO_IPV6 };
                self.meta_cmp(libc::NFT_META_NFPROTO, v as u8);
                self.nfproto = true;
            }
            Stmt::L4proto { negate, protocols } => {
                self.push(Expr::Meta { key: libc::NFT_META_L4PROTO as u32, dreg: REG_1 });
                if let [one] = protocols[..] {
                    self.push(Expr::Cmp { sreg: REG_1, op: cmp_op(*negate), data: vec![one] });
                    self.l4proto |= !negate;
                } else {
                    let elements = protocols.iter().map(|p| (vec![*p], None)).collect();
                    let set = AnonSet { key_type: dtype::INET_PROTOCOL, key_len: 1, interval: false, elements };
                    self.lookup_anon(set, *negate);
                }
            }
            Stmt::Address { family, field, negate, set } => {
                self.address(*family, *field, REG_1);
                self.lookup(set, *negate);
            }
            Stmt::AddressPort { family, addr, port, negate, set } => {
                let len = self.address(*family, *addr, REG_1);
                self.port(*port, REG32_00 + words_of(len));
                self.lookup(set, *negate);
            }
            Stmt::AddressPair { family, set } => {
                let len = self.address(*family, Addr::Saddr, REG_1);
                self.address(*family, Addr::Daddr, REG32_00 + words_of(len));
                self.lookup(set, false);
            }
            Stmt::Ports { field, negate, ranges } => {
                self.port(*field, REG_1);
                self.values(ranges, 2, dtype::INET_SERVICE, *negate);
            }
            Stmt::Icmp { v6, field, negate, value } => {
                self.icmp(*v6, *field);
                self.push(Expr::Cmp { sreg: REG_1, op: cmp_op(*negate), data: vec![*value] });
            }
            Stmt::NeighborDiscovery => {
                self.icmp(true, IcmpField::Type);
                let ranges: Vec<(u16, u16)> =
                    NEIGHBOR_DISCOVERY.iter().map(|t| (u16::from(*t), u16::from(*t))).collect();
                self.values(&ranges, 1, dtype::ICMP6_TYPE, false);
            }
            Stmt::ProtocolPorts(items) => {
                self.push(Expr::Meta { key: libc::NFT_META_L4PROTO as u32, dreg: REG_1 });
                self.port(PortField::Dport, REG32_00 + 1);
                let elements = items
                    .iter()
                    .map(|(proto, port)| {
                        let mut key = vec![*proto, 0, 0, 0];
                        key.extend_from_slice(&port.to_be_bytes());
                        key.extend_from_slice(&[0, 0]);
                        (key, None)
                    })
                    .collect();
                let key_type = dtype::concat(&[dtype::INET_PROTOCOL, dtype::INET_SERVICE]);
                self.lookup_anon(AnonSet { key_type, key_len: 8, interval: false, elements }, false);
            }
            Stmt::Loopback { interface, negate } => {
                let k = if *interface == Interface::In { libc::NFT_META_IIF } else { libc::NFT_META_OIF };
                self.push(Expr::Meta { key: k as u32, dreg: REG_1 });
                // Interface indexes are host-endian; lo is 1 in every namespace.
                self.push(Expr::Cmp { sreg: REG_1, op: cmp_op(*negate), data: 1u32.to_ne_bytes().to_vec() });
            }
            Stmt::LocalSource => {
                self.push(Expr::Fib { flags: FIB_F_SADDR, result: FIB_RESULT_ADDRTYPE, dreg: REG_1 });
                let local = u32::from(libc::RTN_LOCAL);
                self.push(Expr::Cmp { sreg: REG_1, op: libc::NFT_CMP_EQ as u32, data: local.to_ne_bytes().to_vec() });
            }
            Stmt::Ct(states) => {
                let bits = states.iter().fold(0, |acc, s| acc | ct_bit(*s));
                self.push(Expr::Ct { key: libc::NFT_CT_STATE as u32, dreg: REG_1 });
                self.push(Expr::Bitwise { reg: REG_1, len: 4, mask: bits.to_ne_bytes().to_vec(), xor: vec![0; 4] });
                self.push(Expr::Cmp { sreg: REG_1, op: libc::NFT_CMP_NEQ as u32, data: vec![0; 4] });
            }
            Stmt::NoteFlow { family, set } => {
                // The first part goes to register 1 (nft's choice); the rest follow in 32-bit
                // registers.
                let len = self.address(*family, Addr::Saddr, REG_1);
                let mut words = words_of(len);
                self.address(*family, Addr::Daddr, REG32_00 + words);
                words += words_of(len);
                self.push(Expr::Meta { key: libc::NFT_META_L4PROTO as u32, dreg: REG32_00 + words });
                words += 1;
                self.port(PortField::Dport, REG32_00 + words);
                self.push(Expr::Dynset { set: set.clone(), sreg: REG_1 });
            }
            Stmt::Vmap { family, field, map } => {
                self.address(*family, *field, REG_1);
                let dreg = Some(libc::NFT_REG_VERDICT as u32);
                self.push(Expr::Lookup { set: SetRef::Named(map.clone()), sreg: REG_1, dreg, invert: false });
            }
            Stmt::Counter => self.push(Expr::Counter),
            Stmt::Log(prefix) => self.push(Expr::Log { prefix: prefix.clone() }),
            Stmt::Verdict(v) => {
                let (code, chain) = match v {
                    Verdict::Accept => (libc::NF_ACCEPT, None),
                    Verdict::Drop => (libc::NF_DROP, None),
                    Verdict::Return => (libc::NFT_RETURN, None),
                    Verdict::Goto(c) => (libc::NFT_GOTO, Some(c.clone())),
                    Verdict::Jump(c) => (libc::NFT_JUMP, Some(c.clone())),
                };
                self.push(Expr::Verdict { code, chain });
            }
        }
    }

    /// Ports, ICMP types: one value or range is a comparison (as nft makes it), more are an
    /// anonymous set (of merged intervals when any is a range).
    fn values(&mut self, ranges: &[(u16, u16)], len: u32, key_type: u32, negate: bool) {
        let bytes = |v: u16| if len == 1 { vec![v as u8] } else { v.to_be_bytes().to_vec() };
        if let [(a, b)] = ranges[..] {
            if a == b {
                self.push(Expr::Cmp { sreg: REG_1, op: cmp_op(negate), data: bytes(a) });
            } else {
                let op = if negate { libc::NFT_RANGE_NEQ } else { libc::NFT_RANGE_EQ };
                self.push(Expr::Range { sreg: REG_1, op: op as u32, from: bytes(a), to: bytes(b) });
            }
            return;
        }
        let interval = ranges.iter().any(|(a, b)| a != b);
        let elements = if interval {
            merged(ranges.to_vec(), len, bytes)
        } else {
            ranges.iter().map(|r| (bytes(r.0), None)).collect()
        };
        self.lookup_anon(AnonSet { key_type, key_len: len, interval, elements }, negate);
    }
}

/// Sorted, merged ranges as interval elements: (start, end exclusive).
fn merged(mut ranges: Vec<(u16, u16)>, len: u32, bytes: impl Fn(u16) -> Vec<u8>) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    ranges.sort();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    let top = if len == 1 { u16::from(u8::MAX) } else { u16::MAX };
    out.into_iter().map(|(a, b)| (bytes(a), (b < top).then(|| bytes(b + 1)))).collect()
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::Cmp { .. } => "cmp",
            Expr::Payload { .. } => "payload",
            Expr::Lookup { .. } => "lookup",
            Expr::Range { .. } => "range",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Ct { .. } => "ct",
            Expr::Fib { .. } => "fib",
            Expr::Counter => "counter",
            Expr::Log { .. } => "log",
            Expr::Dynset { .. } => "dynset",
            Expr::Verdict { .. } => "immediate",
        }
    }

    /// Writes the expression; `anon` names the rule's anonymous sets: (name, batch set id).
    pub fn encode(&self, a: &mut Attrs, anon: &[(String, u32)]) {
        a.nest(attr::LIST_ELEM, |e| {
            e.str(attr::EXPR_NAME, self.name());
            e.nest(attr::EXPR_DATA, |d| self.data(d, anon));
        });
    }

    fn data(&self, d: &mut Attrs, anon: &[(String, u32)]) {
        match self {
            Expr::Meta { key, dreg } => {
                d.u32(attr::META_KEY, *key).u32(attr::META_DREG, *dreg);
            }
            Expr::Cmp { sreg, op, data } => {
                d.u32(attr::CMP_SREG, *sreg).u32(attr::CMP_OP, *op);
                d.nest(attr::CMP_DATA, |v| {
                    v.bytes(attr::DATA_VALUE, data);
                });
            }
            Expr::Payload { base, offset, len, dreg } => {
                d.u32(attr::PAYLOAD_DREG, *dreg)
                    .u32(attr::PAYLOAD_BASE, *base)
                    .u32(attr::PAYLOAD_OFFSET, *offset)
                    .u32(attr::PAYLOAD_LEN, *len);
            }
            Expr::Lookup { set, sreg, dreg, invert } => {
                match set {
                    SetRef::Named(name) => {
                        d.str(attr::LOOKUP_SET, name);
                    }
                    SetRef::Anonymous(i) => {
                        d.str(attr::LOOKUP_SET, &anon[*i].0).u32(attr::LOOKUP_SET_ID, anon[*i].1);
                    }
                }
                d.u32(attr::LOOKUP_SREG, *sreg);
                if let Some(r) = dreg {
                    d.u32(attr::LOOKUP_DREG, *r);
                }
                if *invert {
                    d.u32(attr::LOOKUP_FLAGS, libc::NFT_LOOKUP_F_INV as u32);
                }
            }
            Expr::Range { sreg, op, from, to } => {
                d.u32(attr::RANGE_SREG, *sreg).u32(attr::RANGE_OP, *op);
                d.nest(attr::RANGE_FROM_DATA, |v| {
                    v.bytes(attr::DATA_VALUE, from);
                });
                d.nest(attr::RANGE_TO_DATA, |v| {
                    v.bytes(attr::DATA_VALUE, to);
                });
            }
            Expr::Bitwise { reg, len, mask, xor } => {
                d.u32(attr::BITWISE_SREG, *reg).u32(attr::BITWISE_DREG, *reg).u32(attr::BITWISE_LEN, *len);
                d.nest(attr::BITWISE_MASK, |v| {
                    v.bytes(attr::DATA_VALUE, mask);
                });
                d.nest(attr::BITWISE_XOR, |v| {
                    v.bytes(attr::DATA_VALUE, xor);
                });
            }
            Expr::Ct { key, dreg } => {
                d.u32(attr::CT_KEY, *key).u32(attr::CT_DREG, *dreg);
            }
            Expr::Fib { flags, result, dreg } => {
                d.u32(attr::FIB_DREG, *dreg).u32(attr::FIB_RESULT, *result).u32(attr::FIB_FLAGS, *flags);
            }
            Expr::Counter => {}
            Expr::Log { prefix } => {
                d.str(attr::LOG_PREFIX, prefix);
            }
            Expr::Dynset { set, sreg } => {
                d.str(attr::DYNSET_SET_NAME, set)
                    .u32(attr::DYNSET_OP, libc::NFT_DYNSET_OP_UPDATE as u32)
                    .u32(attr::DYNSET_SREG_KEY, *sreg);
            }
            Expr::Verdict { code, chain } => {
                d.u32(attr::IMMEDIATE_DREG, libc::NFT_REG_VERDICT as u32);
                d.nest(attr::IMMEDIATE_DATA, |v| {
                    v.nest(attr::DATA_VERDICT, |v| {
                        v.u32(attr::VERDICT_CODE, *code as u32);
                        if let Some(c) = chain {
                            v.str(attr::VERDICT_CHAIN, c);
                        }
                    });
                });
            }
        }
    }
}

/// A rule comment as nftnl user data: type 0 (comment), length, text with its NUL.
pub fn comment_userdata(comment: &str) -> Vec<u8> {
    let mut text: Vec<u8> = comment.as_bytes().iter().copied().take(254).collect();
    text.push(0);
    let mut out = vec![0u8, text.len() as u8];
    out.extend(text);
    out
}

/// An address as set key bytes.
pub fn addr_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The commands as one nf_tables batch.
pub fn encode(commands: &[Command]) -> Batch {
    let mut e = Encoder { batch: Batch::new(), next_set_id: 1 };
    for (i, c) in commands.iter().enumerate() {
        e.command(i, c);
    }
    e.batch
}

struct Encoder {
    batch: Batch,
    next_set_id: u32,
}

const CREATE: i32 = libc::NLM_F_CREATE;
/// Elements per message: the largest (an IPv6 map element with its chain name) is under 100
/// bytes, and a message's element list must stay under 64 KiB.
const ELEMENTS_PER_MESSAGE: usize = 512;

impl Encoder {
    fn set_id(&mut self) -> u32 {
        self.next_set_id += 1;
        self.next_set_id
    }

    fn command(&mut self, what: usize, c: &Command) {
        match c {
            Command::ReplaceTable => {
                let table = |a: &mut Attrs| {
                    a.str(attr::TABLE_NAME, TABLE);
                };
                self.batch.msg(what, libc::NFT_MSG_NEWTABLE, CREATE, table);
                self.batch.msg(what, libc::NFT_MSG_DELTABLE, 0, table);
                self.batch.msg(what, libc::NFT_MSG_NEWTABLE, CREATE, table);
            }
            Command::AddSet { name, kind } => {
                let id = self.set_id();
                self.batch.msg(what, libc::NFT_MSG_NEWSET, CREATE, |a| set_attrs(a, name, *kind, id));
            }
            Command::Elements { set, items, add, .. } => {
                let elements: Vec<KeyElement> = items.iter().flat_map(element).collect();
                let kind_msg = if *add { libc::NFT_MSG_NEWSETELEM } else { libc::NFT_MSG_DELSETELEM };
                // An attribute's length is 16 bits: large sets take several messages.
                for chunk in elements.chunks(ELEMENTS_PER_MESSAGE) {
                    self.batch.msg(what, kind_msg, if *add { CREATE } else { 0 }, |a| {
                        a.str(attr::SET_ELEM_LIST_TABLE, TABLE).str(attr::SET_ELEM_LIST_SET, set);
                        write_elements(a, chunk);
                    });
                }
            }
            Command::AddChain { name, hook } => {
                self.batch.msg(what, libc::NFT_MSG_NEWCHAIN, CREATE, |a| {
                    a.str(attr::CHAIN_TABLE, TABLE).str(attr::CHAIN_NAME, name);
                    if let Some(hook) = hook {
                        let num = match hook {
                            Hook::Prerouting => libc::NF_INET_PRE_ROUTING,
                            Hook::Input => libc::NF_INET_LOCAL_IN,
                            Hook::Output => libc::NF_INET_LOCAL_OUT,
                            Hook::Postrouting => libc::NF_INET_POST_ROUTING,
                        };
                        a.nest(attr::CHAIN_HOOK, |h| {
                            h.u32(attr::HOOK_HOOKNUM, num as u32).u32(attr::HOOK_PRIORITY, 0);
                        });
                        a.u32(attr::CHAIN_POLICY, libc::NF_ACCEPT as u32).str(attr::CHAIN_TYPE, "filter");
                    }
                });
            }
            Command::AddRule { chain, rule } => self.rule(what, chain, rule),
            Command::FlushChain(chain) => self.batch.msg(what, libc::NFT_MSG_DELRULE, 0, |a| {
                a.str(attr::RULE_TABLE, TABLE).str(attr::RULE_CHAIN, chain);
            }),
            Command::DeleteChain(name) => self.batch.msg(what, libc::NFT_MSG_DELCHAIN, 0, |a| {
                a.str(attr::CHAIN_TABLE, TABLE).str(attr::CHAIN_NAME, name);
            }),
            Command::DeleteSet(name) => self.batch.msg(what, libc::NFT_MSG_DELSET, 0, |a| {
                a.str(attr::SET_TABLE, TABLE).str(attr::SET_NAME, name);
            }),
        }
    }

    fn rule(&mut self, what: usize, chain: &str, rule: &Rule) {
        let rule = encode_rule(rule);
        let mut anon = Vec::new();
        for set in &rule.anonymous {
            let id = self.set_id();
            // The kernel numbers anonymous sets itself; the rule finds this one by its id.
            let name = "__set%d".to_string();
            self.batch.msg(what, libc::NFT_MSG_NEWSET, CREATE, |a| anon_set_attrs(a, &name, set, id));
            let mut elements: Vec<KeyElement> = Vec::new();
            // As nft does: an interval set not starting at zero opens with an end at zero.
            if set.interval && set.elements.first().is_some_and(|(start, _)| start.iter().any(|b| *b != 0)) {
                elements.push(KeyElement { key: vec![0; set.key_len as usize], end: true, jump: None });
            }
            elements.extend(
                set.elements.iter().flat_map(|(start, end)| interval(start.clone(), end.clone(), set.interval)),
            );
            self.batch.msg(what, libc::NFT_MSG_NEWSETELEM, CREATE, |a| {
                a.str(attr::SET_ELEM_LIST_TABLE, TABLE)
                    .str(attr::SET_ELEM_LIST_SET, &name)
                    .u32(attr::SET_ELEM_LIST_SET_ID, id);
                write_elements(a, &elements);
            });
            anon.push((name, id));
        }
        self.batch.msg(what, libc::NFT_MSG_NEWRULE, CREATE | libc::NLM_F_APPEND, |a| {
            a.str(attr::RULE_TABLE, TABLE).str(attr::RULE_CHAIN, chain);
            a.nest(attr::RULE_EXPRESSIONS, |list| {
                for e in &rule.exprs {
                    e.encode(list, &anon);
                }
            });
            if let Some(c) = &rule.comment {
                a.bytes(attr::RULE_USERDATA, &comment_userdata(c));
            }
        });
    }
}

fn set_attrs(a: &mut Attrs, name: &str, kind: SetKind, id: u32) {
    a.str(attr::SET_TABLE, TABLE).str(attr::SET_NAME, name);
    let (t, l) = match kind.family() {
        Family::V4 => (dtype::IPADDR, 4),
        Family::V6 => (dtype::IP6ADDR, 16),
    };
    let (flags, key_type, key_len) = match kind {
        SetKind::Addresses(_) => (libc::NFT_SET_INTERVAL, t, l),
        SetKind::AddressPorts(_) => (0, dtype::concat(&[t, dtype::INET_SERVICE]), l + 4),
        SetKind::AddressPairs(_) => (0, dtype::concat(&[t, t]), 2 * l),
        SetKind::Map(_) => (libc::NFT_SET_MAP, t, l),
        SetKind::Flows(_) => {
            let key = dtype::concat(&[t, t, dtype::INET_PROTOCOL, dtype::INET_SERVICE]);
            (libc::NFT_SET_EVAL | libc::NFT_SET_TIMEOUT, key, 2 * l + 8)
        }
    };
    a.u32(attr::SET_FLAGS, flags as u32).u32(attr::SET_KEY_TYPE, key_type).u32(attr::SET_KEY_LEN, key_len);
    if let SetKind::Map(_) = kind {
        a.u32(attr::SET_DATA_TYPE, libc::NFT_DATA_VERDICT).u32(attr::SET_DATA_LEN, 0);
    }
    if let SetKind::Flows(_) = kind {
        a.u64(attr::SET_TIMEOUT, 3_600_000);
        a.nest(attr::SET_DESC, |d| {
            d.u32(attr::SET_DESC_SIZE, crate::ir::FLOW_CAPACITY as u32);
        });
    }
    a.u32(attr::SET_ID, id);
}

fn anon_set_attrs(a: &mut Attrs, name: &str, set: &AnonSet, id: u32) {
    let mut flags = libc::NFT_SET_ANONYMOUS | libc::NFT_SET_CONSTANT;
    if set.interval {
        flags |= libc::NFT_SET_INTERVAL;
    }
    a.str(attr::SET_TABLE, TABLE)
        .str(attr::SET_NAME, name)
        .u32(attr::SET_FLAGS, flags as u32)
        .u32(attr::SET_KEY_TYPE, set.key_type)
        .u32(attr::SET_KEY_LEN, set.key_len)
        .u32(attr::SET_ID, id);
    a.nest(attr::SET_DESC, |d| {
        d.u32(attr::SET_DESC_SIZE, set.elements.len() as u32);
    });
}

/// One kernel set element: key, interval-end flag, and for maps the chain to jump to.
struct KeyElement {
    key: Vec<u8>,
    end: bool,
    jump: Option<String>,
}

fn write_elements(a: &mut Attrs, elements: &[KeyElement]) {
    a.nest(attr::SET_ELEM_LIST_ELEMENTS, |list| {
        for el in elements {
            list.nest(attr::LIST_ELEM, |e| {
                e.nest(attr::SET_ELEM_KEY, |k| {
                    k.bytes(attr::DATA_VALUE, &el.key);
                });
                if el.end {
                    e.u32(attr::SET_ELEM_FLAGS, libc::NFT_SET_ELEM_INTERVAL_END as u32);
                }
                if let Some(chain) = &el.jump {
                    e.nest(attr::SET_ELEM_DATA, |d| {
                        d.nest(attr::DATA_VERDICT, |v| {
                            v.u32(attr::VERDICT_CODE, libc::NFT_JUMP as u32).str(attr::VERDICT_CHAIN, chain);
                        });
                    });
                }
            });
        }
    });
}

/// An interval as a start element and, unless it runs to the top, an end element.
fn interval(start: Vec<u8>, end: Option<Vec<u8>>, is_interval: bool) -> Vec<KeyElement> {
    let mut out = vec![KeyElement { key: start, end: false, jump: None }];
    if is_interval {
        out.extend(end.map(|key| KeyElement { key, end: true, jump: None }));
    }
    out
}

/// The kernel elements of one set or map element.
fn element(e: &Element) -> Vec<KeyElement> {
    match e {
        Element::Net(net) => {
            let end = next_address(&net.broadcast());
            interval(addr_bytes(&net.network()), end.map(|e| addr_bytes(&e)), true)
        }
        Element::AddressPort(ip, port) => {
            let mut key = addr_bytes(ip);
            key.extend_from_slice(&port.to_be_bytes());
            key.extend_from_slice(&[0, 0]);
            vec![KeyElement { key, end: false, jump: None }]
        }
        Element::AddressPair(a, b) => {
            let mut key = addr_bytes(a);
            key.extend(addr_bytes(b));
            vec![KeyElement { key, end: false, jump: None }]
        }
        Element::Jump(ip, chain) => vec![KeyElement { key: addr_bytes(ip), end: false, jump: Some(chain.clone()) }],
        Element::MapKey(ip) => vec![KeyElement { key: addr_bytes(ip), end: false, jump: None }],
    }
}

fn next_address(ip: &IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(a) => u32::from(*a).checked_add(1).map(|n| IpAddr::V4(n.into())),
        IpAddr::V6(a) => u128::from(*a).checked_add(1).map(|n| IpAddr::V6(n.into())),
    }
}
