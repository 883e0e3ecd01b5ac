//! The rules Palisade writes, in nft's language, turned into nf_tables expressions the way
//! `nft` itself linearizes them (same registers, dependencies and anonymous sets), so that a
//! table loaded over netlink lists exactly like one loaded with `nft -f`.
//!
//! Only the vocabulary `ruleset` and `script` emit is understood; anything else is an error
//! (and a bug in Palisade), never a silently different rule.

use std::net::IpAddr;

use nix::libc;

use crate::netlink::{attr, Attrs};

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

const REG_1: u32 = libc::NFT_REG_1 as u32;
/// `NFTA_FIB_F_SADDR` and `NFT_FIB_RESULT_ADDRTYPE` (linux/netfilter/nf_tables.h).
const FIB_F_SADDR: u32 = 1;
const FIB_RESULT_ADDRTYPE: u32 = 3;
const REG32_00: u32 = libc::NFT_REG32_00 as u32;

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

/// A named set, or an anonymous one built in the same batch (index into `Rule::anonymous`).
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
pub struct Rule {
    pub exprs: Vec<Expr>,
    pub anonymous: Vec<AnonSet>,
    pub comment: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("Palisade cannot encode this rule for netlink ({why}): {rule}")]
pub struct Unsupported {
    pub rule: String,
    pub why: String,
}

/// The rule's words: quoted strings and `{ ... }` lists kept whole.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut w = String::new();
        let close = match c {
            '"' => Some('"'),
            '{' => Some('}'),
            _ => None,
        };
        if let Some(close) = close {
            w.push(chars.next().expect("peeked"));
            for c in chars.by_ref() {
                w.push(c);
                if c == close {
                    break;
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                w.push(c);
                chars.next();
            }
        }
        out.push(w);
    }
    out
}

fn unquote(w: &str) -> String {
    w.trim_matches('"').to_string()
}

fn list_items(w: &str) -> Vec<String> {
    w.trim_start_matches('{').trim_end_matches('}').split(',').map(|s| s.trim().to_string()).collect()
}

fn protocol_number(name: &str) -> Option<u8> {
    Some(match name {
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        "icmp" => 1,
        "ipv6-icmp" | "icmpv6" => 58,
        "udplite" => 136,
        other => return other.parse().ok(),
    })
}

fn icmpv6_type(name: &str) -> Option<u8> {
    Some(match name {
        "nd-router-solicit" => 133,
        "nd-router-advert" => 134,
        "nd-neighbor-solicit" => 135,
        "nd-neighbor-advert" => 136,
        "nd-redirect" => 137,
        other => return other.parse().ok(),
    })
}

/// Where a field lives in the packet: (base, offset, length).
fn field(proto: &str, name: &str) -> Option<(u32, u32, u32)> {
    let net = libc::NFT_PAYLOAD_NETWORK_HEADER as u32;
    let th = libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32;
    Some(match (proto, name) {
        ("ip", "saddr") => (net, 12, 4),
        ("ip", "daddr") => (net, 16, 4),
        ("ip6", "saddr") => (net, 8, 16),
        ("ip6", "daddr") => (net, 24, 16),
        ("th", "sport") => (th, 0, 2),
        ("th", "dport") => (th, 2, 2),
        ("icmp" | "icmpv6", "type") => (th, 0, 1),
        ("icmp" | "icmpv6", "code") => (th, 1, 1),
        _ => return None,
    })
}

fn ct_state_bits(list: &str) -> Option<u32> {
    list.split(',').try_fold(0u32, |acc, s| {
        Some(
            acc | match s.trim() {
                "invalid" => 1,
                "established" => 2,
                "related" => 4,
                "new" => 8,
                "untracked" => 64,
                _ => return None,
            },
        )
    })
}

/// Registers are 4 bytes wide; a concatenation's parts start on register boundaries.
fn words_of(len: u32) -> u32 {
    len.div_ceil(4)
}

struct Parser {
    words: Vec<String>,
    at: usize,
    rule: Rule,
    /// Which family and transport protocol earlier expressions already pin down, so that
    /// dependencies are added only where nft adds them.
    nfproto: bool,
    l4proto: bool,
    text: String,
}

impl Parser {
    fn next(&mut self) -> Result<String, Unsupported> {
        let w = self.words.get(self.at).cloned().ok_or_else(|| self.err("rule ends too early"))?;
        self.at += 1;
        Ok(w)
    }
    fn peek(&self) -> Option<&str> {
        self.words.get(self.at).map(String::as_str)
    }
    fn err(&self, why: impl Into<String>) -> Unsupported {
        Unsupported { rule: self.text.clone(), why: why.into() }
    }
    fn push(&mut self, e: Expr) {
        self.rule.exprs.push(e);
    }
    /// `!=` before a value, if there.
    fn negated(&mut self) -> bool {
        if self.peek() == Some("!=") {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn meta_cmp(&mut self, key: i32, value: u8) {
        self.push(Expr::Meta { key: key as u32, dreg: REG_1 });
        self.push(Expr::Cmp { sreg: REG_1, op: libc::NFT_CMP_EQ as u32, data: vec![value] });
    }

    fn nfproto_dependency(&mut self, proto: &str) {
        if !self.nfproto {
            let family = if proto == "ip" { libc::NFPROTO_IPV4 } else { libc::NFPROTO_IPV6 };
            self.meta_cmp(libc::NFT_META_NFPROTO, family as u8);
            self.nfproto = true;
        }
    }

    fn l4_dependency(&mut self, proto: &str) {
        if !self.l4proto {
            self.meta_cmp(libc::NFT_META_L4PROTO, if proto == "icmp" { 1 } else { 58 });
            self.l4proto = true;
        }
    }

    fn payload(&mut self, proto: &str, name: &str, dreg: u32) -> Result<u32, Unsupported> {
        let (base, offset, len) = field(proto, name).ok_or_else(|| self.err(format!("field {proto} {name}")))?;
        match proto {
            "ip" | "ip6" => self.nfproto_dependency(proto),
            // ICMP needs its network layer too, unless the protocol was matched explicitly.
            "icmp" | "icmpv6" if !self.l4proto => {
                self.nfproto_dependency(if proto == "icmp" { "ip" } else { "ip6" });
                self.l4_dependency(proto);
            }
            _ => {}
        }
        self.push(Expr::Payload { base, offset, len, dreg });
        Ok(len)
    }

    fn statement(&mut self, w: &str) -> Result<(), Unsupported> {
        match w {
            "meta" => self.meta(),
            "ip" | "ip6" => self.address(w),
            "th" | "icmp" | "icmpv6" => self.scalar(w),
            "ct" => self.ct(),
            "fib" => self.fib(),
            "counter" => {
                self.push(Expr::Counter);
                Ok(())
            }
            "log" => {
                if self.next()? != "prefix" {
                    return Err(self.err("log without prefix"));
                }
                let prefix = unquote(&self.next()?);
                self.push(Expr::Log { prefix });
                Ok(())
            }
            "accept" => self.verdict(libc::NF_ACCEPT, None),
            "drop" => self.verdict(libc::NF_DROP, None),
            "return" => self.verdict(libc::NFT_RETURN, None),
            "goto" | "jump" => {
                let chain = self.next()?;
                self.verdict(if w == "goto" { libc::NFT_GOTO } else { libc::NFT_JUMP }, Some(chain))
            }
            "comment" => {
                self.rule.comment = Some(unquote(&self.next()?));
                Ok(())
            }
            other => Err(self.err(format!("unknown word {other:?}"))),
        }
    }

    fn verdict(&mut self, code: i32, chain: Option<String>) -> Result<(), Unsupported> {
        self.push(Expr::Verdict { code, chain });
        Ok(())
    }

    fn meta(&mut self) -> Result<(), Unsupported> {
        let key = self.next()?;
        match key.as_str() {
            "nfproto" => {
                let value = self.next()?;
                let family = match value.as_str() {
                    "ipv4" => libc::NFPROTO_IPV4,
                    "ipv6" => libc::NFPROTO_IPV6,
                    _ => return Err(self.err("nfproto")),
                };
                self.meta_cmp(libc::NFT_META_NFPROTO, family as u8);
                self.nfproto = true;
                Ok(())
            }
            "l4proto" if self.peek() == Some(".") => self.protocol_port_set(),
            "l4proto" => {
                let negate = self.negated();
                let value = self.next()?;
                self.push(Expr::Meta { key: libc::NFT_META_L4PROTO as u32, dreg: REG_1 });
                if value.starts_with('{') {
                    let keys = list_items(&value)
                        .iter()
                        .map(|p| protocol_number(p).map(|n| (vec![n], None)))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| self.err("protocol list"))?;
                    let set = AnonSet { key_type: dtype::INET_PROTOCOL, key_len: 1, interval: false, elements: keys };
                    self.lookup_anon(set, REG_1, negate);
                } else {
                    let n = protocol_number(&value).ok_or_else(|| self.err("protocol"))?;
                    let op = if negate { libc::NFT_CMP_NEQ } else { libc::NFT_CMP_EQ };
                    self.push(Expr::Cmp { sreg: REG_1, op: op as u32, data: vec![n] });
                    self.l4proto |= !negate;
                }
                Ok(())
            }
            "iif" | "oif" => {
                let negate = self.negated();
                if self.next()? != "lo" {
                    return Err(self.err("only the loopback interface is matched"));
                }
                let k = if key == "iif" { libc::NFT_META_IIF } else { libc::NFT_META_OIF };
                self.push(Expr::Meta { key: k as u32, dreg: REG_1 });
                // Interface indexes are host-endian; lo is 1 in every namespace.
                let op = if negate { libc::NFT_CMP_NEQ } else { libc::NFT_CMP_EQ };
                self.push(Expr::Cmp { sreg: REG_1, op: op as u32, data: 1u32.to_ne_bytes().to_vec() });
                Ok(())
            }
            other => Err(self.err(format!("meta {other}"))),
        }
    }

    /// `meta l4proto . th dport { tcp . 22, ... }` (host endpoint failsafe ports).
    fn protocol_port_set(&mut self) -> Result<(), Unsupported> {
        let (dot, th, port, list) = (self.next()?, self.next()?, self.next()?, self.next()?);
        if dot != "." || th != "th" || port != "dport" || !list.starts_with('{') {
            return Err(self.err("protocol . port"));
        }
        self.push(Expr::Meta { key: libc::NFT_META_L4PROTO as u32, dreg: REG_1 });
        self.payload("th", "dport", REG32_00 + 1)?;
        let mut elements = Vec::new();
        for item in list_items(&list) {
            let (p, n) = item.split_once(" . ").ok_or_else(|| self.err("protocol . port item"))?;
            let proto = protocol_number(p.trim()).ok_or_else(|| self.err("protocol"))?;
            let port: u16 = n.trim().parse().map_err(|_| self.err("port"))?;
            let mut key = vec![proto, 0, 0, 0];
            key.extend_from_slice(&port.to_be_bytes());
            key.extend_from_slice(&[0, 0]);
            elements.push((key, None));
        }
        let key_type = dtype::concat(&[dtype::INET_PROTOCOL, dtype::INET_SERVICE]);
        self.lookup_anon(AnonSet { key_type, key_len: 8, interval: false, elements }, REG_1, false);
        Ok(())
    }

    fn lookup_anon(&mut self, set: AnonSet, sreg: u32, invert: bool) {
        self.rule.anonymous.push(set);
        let set = SetRef::Anonymous(self.rule.anonymous.len() - 1);
        self.push(Expr::Lookup { set, sreg, dreg: None, invert });
    }

    /// `fib saddr type local`: the source is one of this namespace's own addresses.
    fn fib(&mut self) -> Result<(), Unsupported> {
        let (field, what, value) = (self.next()?, self.next()?, self.next()?);
        if (field.as_str(), what.as_str(), value.as_str()) != ("saddr", "type", "local") {
            return Err(self.err("only fib saddr type local"));
        }
        self.push(Expr::Fib { flags: FIB_F_SADDR, result: FIB_RESULT_ADDRTYPE, dreg: REG_1 });
        let local = u32::from(libc::RTN_LOCAL);
        self.push(Expr::Cmp { sreg: REG_1, op: libc::NFT_CMP_EQ as u32, data: local.to_ne_bytes().to_vec() });
        Ok(())
    }

    /// `ip saddr @set`, `ip daddr != @set`, `ip saddr vmap @map`, `ip daddr . th dport @set`,
    /// `ip saddr . ip daddr @set`.
    fn address(&mut self, proto: &str) -> Result<(), Unsupported> {
        let name = self.next()?;
        if self.peek() == Some(".") {
            self.at += 1;
            let (second, field) = (self.next()?, self.next()?);
            let len = self.payload(proto, &name, REG_1)?;
            self.payload(&second, &field, REG32_00 + words_of(len))?;
            let negate = self.negated();
            let set = self.set_name()?;
            self.push(Expr::Lookup { set: SetRef::Named(set), sreg: REG_1, dreg: None, invert: negate });
            return Ok(());
        }
        self.payload(proto, &name, REG_1)?;
        if self.peek() == Some("vmap") {
            self.at += 1;
            let set = self.set_name()?;
            let dreg = Some(libc::NFT_REG_VERDICT as u32);
            self.push(Expr::Lookup { set: SetRef::Named(set), sreg: REG_1, dreg, invert: false });
            return Ok(());
        }
        let negate = self.negated();
        let set = self.set_name()?;
        self.push(Expr::Lookup { set: SetRef::Named(set), sreg: REG_1, dreg: None, invert: negate });
        Ok(())
    }

    fn set_name(&mut self) -> Result<String, Unsupported> {
        let w = self.next()?;
        w.strip_prefix('@').map(str::to_string).ok_or_else(|| self.err(format!("expected @set, got {w:?}")))
    }

    /// Ports, ICMP types and codes: one value, a range, or a list.
    fn scalar(&mut self, proto: &str) -> Result<(), Unsupported> {
        let name = self.next()?;
        let len = self.payload(proto, &name, REG_1)?;
        let negate = self.negated();
        let value = self.next()?;
        let parse = |s: &str| -> Option<u16> {
            if proto == "icmpv6" {
                icmpv6_type(s).map(u16::from)
            } else {
                s.parse().ok()
            }
        };
        let bytes = |v: u16| if len == 1 { vec![v as u8] } else { v.to_be_bytes().to_vec() };
        let mut ranges = Vec::new();
        for item in if value.starts_with('{') { list_items(&value) } else { vec![value.clone()] } {
            let (a, b) = match item.split_once('-').filter(|_| !item.starts_with("nd-")) {
                Some((a, b)) => (parse(a), parse(b)),
                None => (parse(&item), parse(&item)),
            };
            let (Some(a), Some(b)) = (a, b) else { return Err(self.err(format!("value {item:?}"))) };
            ranges.push((a, b));
        }
        // One value or range, listed or not, is a comparison (as nft makes it).
        if let [(a, b)] = ranges[..] {
            if a == b {
                let op = if negate { libc::NFT_CMP_NEQ } else { libc::NFT_CMP_EQ };
                self.push(Expr::Cmp { sreg: REG_1, op: op as u32, data: bytes(a) });
            } else {
                let op = if negate { libc::NFT_RANGE_NEQ } else { libc::NFT_RANGE_EQ };
                self.push(Expr::Range { sreg: REG_1, op: op as u32, from: bytes(a), to: bytes(b) });
            }
            return Ok(());
        }
        let interval = ranges.iter().any(|(a, b)| a != b);
        let key_type = match proto {
            "icmp" => dtype::ICMP_TYPE,
            "icmpv6" => dtype::ICMP6_TYPE,
            _ => dtype::INET_SERVICE,
        };
        let elements =
            if interval { merged(ranges, len, bytes) } else { ranges.iter().map(|r| (bytes(r.0), None)).collect() };
        self.lookup_anon(AnonSet { key_type, key_len: len, interval, elements }, REG_1, negate);
        Ok(())
    }

    /// `ct state a,b` and the flow log's `ct state new update @set { ... }`.
    fn ct(&mut self) -> Result<(), Unsupported> {
        if self.next()? != "state" {
            return Err(self.err("ct key"));
        }
        let states = self.next()?;
        let bits = ct_state_bits(&states).ok_or_else(|| self.err("ct state"))?;
        self.push(Expr::Ct { key: libc::NFT_CT_STATE as u32, dreg: REG_1 });
        self.push(Expr::Bitwise { reg: REG_1, len: 4, mask: bits.to_ne_bytes().to_vec(), xor: vec![0; 4] });
        self.push(Expr::Cmp { sreg: REG_1, op: libc::NFT_CMP_NEQ as u32, data: vec![0; 4] });
        if self.peek() == Some("update") {
            self.at += 1;
            let set = self.set_name()?;
            let key = self.next()?;
            self.flow_key(&key)?;
            self.push(Expr::Dynset { set, sreg: REG_1 });
        }
        Ok(())
    }

    /// `{ ip saddr . ip daddr . meta l4proto . th dport }` into consecutive registers.
    fn flow_key(&mut self, key: &str) -> Result<(), Unsupported> {
        // The first part goes to register 1 (nft's choice); the rest follow in 32-bit registers.
        let mut words = 0;
        for part in key.trim_start_matches('{').trim_end_matches('}').split(" . ") {
            let reg = if words == 0 { REG_1 } else { REG32_00 + words };
            let ws: Vec<&str> = part.split_whitespace().collect();
            match ws[..] {
                ["meta", "l4proto"] => {
                    self.push(Expr::Meta { key: libc::NFT_META_L4PROTO as u32, dreg: reg });
                    words += 1;
                }
                [proto, name] => words += words_of(self.payload(proto, name, reg)?),
                _ => return Err(self.err("flow key")),
            }
        }
        Ok(())
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

/// Parses one rule of Palisade's vocabulary.
pub fn parse(text: &str) -> Result<Rule, Unsupported> {
    let mut p =
        Parser { words: words(text), at: 0, rule: Rule::default(), nfproto: false, l4proto: false, text: text.into() };
    while let Some(w) = p.words.get(p.at).cloned() {
        p.at += 1;
        p.statement(&w)?;
    }
    Ok(p.rule)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_shape_parses() {
        for text in [
            "meta nfproto ipv4 ip daddr @a_1_4 meta l4proto tcp th dport { 53 } counter return comment \"x\"",
            "meta nfproto ipv6 ip6 saddr != @a_2_6 meta l4proto != 17 th dport { 80, 81-90 } counter accept comment \"y\"",
            "meta nfproto ipv4 meta l4proto tcp ip daddr . th dport @n_3_4 counter log prefix \"palisade audit deny: \" return comment \"z\"",
            "meta l4proto . th dport { tcp . 22, udp . 68 } counter accept comment \"failsafe\"",
            "meta l4proto icmp icmp type 8 icmp code != 0 counter drop comment \"icmp\"",
            "ct state established,related accept",
            "meta iif lo accept",
            "meta iif != lo fib saddr type local counter drop",
            "fib saddr type local ip saddr . ip daddr @own_node_4 counter accept",
            "fib saddr type local ip6 daddr @own_node_6 counter accept",
            "ip saddr vmap @egress_4",
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert, nd-redirect } accept",
            "meta l4proto { tcp, udp, sctp } ct state new update @flows_6 { ip6 saddr . ip6 daddr . meta l4proto . th dport }",
            "counter goto in_abc_t1 comment \"end of tier default\"",
        ] {
            parse(text).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn dependencies_are_added_once() {
        let r = parse("ip saddr vmap @egress_4").unwrap();
        assert_eq!(r.exprs.len(), 4, "{:?}", r.exprs);
        let r = parse("meta nfproto ipv4 ip saddr @s counter accept").unwrap();
        assert_eq!(r.exprs.iter().filter(|e| matches!(e, Expr::Meta { .. })).count(), 1);
    }

    #[test]
    fn unknown_words_are_refused() {
        assert!(parse("tcp flags syn accept").is_err());
        assert!(parse("ip saddr 10.0.0.1 accept").is_err());
    }

    #[test]
    fn port_lists_merge_into_intervals() {
        let r = parse("th dport { 80-90, 85, 91, 100 } accept").unwrap();
        let set = &r.anonymous[0];
        assert!(set.interval);
        let starts: Vec<u16> = set.elements.iter().map(|e| u16::from_be_bytes([e.0[0], e.0[1]])).collect();
        assert_eq!(starts, vec![80, 100]);
    }
}
