//! The IR as nft's language: what `nft -f` reads (`--dry-run`, the lab's scripts, the
//! netlink-vs-nft test) and what refusals quote. Set elements are listed in the order of their
//! text, as nft lists them.

use std::fmt::{self, Display, Formatter};

use crate::ir::{
    Addr, Command, CtState, Element, IcmpField, Interface, PortField, Rule, SetKind, Stmt, Verdict, FLOW_CAPACITY,
    TABLE,
};

/// nft's name for an IP protocol number.
pub fn l4(n: u8) -> String {
    match n {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        1 => "icmp".into(),
        58 => "ipv6-icmp".into(),
        136 => "udplite".into(),
        other => other.to_string(),
    }
}

fn addr(a: Addr) -> &'static str {
    match a {
        Addr::Saddr => "saddr",
        Addr::Daddr => "daddr",
    }
}

fn port(p: PortField) -> &'static str {
    match p {
        PortField::Sport => "sport",
        PortField::Dport => "dport",
    }
}

fn not(negate: bool) -> &'static str {
    if negate {
        "!= "
    } else {
        ""
    }
}

fn list<T: Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    format!("{{ {} }}", items.join(", "))
}

fn range(a: u16, b: u16) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

impl Display for Verdict {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Return => f.write_str("return"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
        }
    }
}

impl Display for Stmt {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        match self {
            Stmt::Nfproto(fam) => {
                write!(f, "meta nfproto {}", if *fam == crate::ir::Family::V4 { "ipv4" } else { "ipv6" })
            }
            Stmt::L4proto { negate, protocols } => match &protocols[..] {
                [one] => write!(f, "meta l4proto {}{}", not(*negate), l4(*one)),
                many => write!(f, "meta l4proto {}{}", not(*negate), list(many.iter().map(|p| l4(*p)))),
            },
            Stmt::Address { family, field, negate, set } => {
                write!(f, "{} {} {}@{set}", family.keyword(), addr(*field), not(*negate))
            }
            Stmt::AddressPort { family, addr: a, port: p, negate, set } => {
                write!(f, "{} {} . th {} {}@{set}", family.keyword(), addr(*a), port(*p), not(*negate))
            }
            Stmt::AddressPair { family, set } => {
                let kw = family.keyword();
                write!(f, "{kw} saddr . {kw} daddr @{set}")
            }
            Stmt::Ports { field, negate, ranges } => {
                write!(f, "th {} {}{}", port(*field), not(*negate), list(ranges.iter().map(|(a, b)| range(*a, *b))))
            }
            Stmt::Icmp { v6, field, negate, value } => {
                let kw = if *v6 { "icmpv6" } else { "icmp" };
                let field = if *field == IcmpField::Type { "type" } else { "code" };
                write!(f, "{kw} {field} {}{value}", not(*negate))
            }
            Stmt::NeighborDiscovery => f.write_str(
                "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert, nd-redirect }",
            ),
            Stmt::ProtocolPorts(items) => {
                write!(f, "meta l4proto . th dport {}", list(items.iter().map(|(p, n)| format!("{} . {n}", l4(*p)))))
            }
            Stmt::Loopback { interface, negate } => {
                let key = if *interface == Interface::In { "iif" } else { "oif" };
                write!(f, "meta {key} {}lo", not(*negate))
            }
            Stmt::LocalSource => f.write_str("fib saddr type local"),
            Stmt::Ct(states) => {
                let names: Vec<&str> = states
                    .iter()
                    .map(|s| match s {
                        CtState::Invalid => "invalid",
                        CtState::Established => "established",
                        CtState::Related => "related",
                        CtState::New => "new",
                    })
                    .collect();
                write!(f, "ct state {}", names.join(","))
            }
            Stmt::NoteFlow { family, set } => {
                let ip = family.keyword();
                write!(f, "update @{set} {{ {ip} saddr . {ip} daddr . meta l4proto . th dport }}")
            }
            Stmt::Vmap { family, field, map } => write!(f, "{} {} vmap @{map}", family.keyword(), addr(*field)),
            Stmt::Counter => f.write_str("counter"),
            Stmt::Log(prefix) => write!(f, "log prefix \"{prefix}\""),
            Stmt::Verdict(v) => v.fmt(f),
        }
    }
}

/// Statements separated by spaces.
pub fn stmts(stmts: &[Stmt]) -> String {
    stmts.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

impl Display for Rule {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        f.write_str(&stmts(&self.stmts))?;
        if let Some(c) = &self.comment {
            write!(f, " comment \"{c}\"")?;
        }
        Ok(())
    }
}

impl Display for Element {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        match self {
            Element::Net(n) if n.prefix_len() == n.max_prefix_len() => n.addr().fmt(f),
            Element::Net(n) => n.fmt(f),
            Element::AddressPort(ip, p) => write!(f, "{ip} . {p}"),
            Element::AddressPair(a, b) => write!(f, "{a} . {b}"),
            Element::Jump(ip, chain) => write!(f, "{ip} : jump {chain}"),
            Element::MapKey(ip) => ip.fmt(f),
        }
    }
}

fn declaration(kind: SetKind, name: &str) -> String {
    let t = format!("inet {TABLE}");
    match kind {
        SetKind::Addresses(f) => format!("set {t} {name} {{ type {}; flags interval; }}", f.addr_type()),
        SetKind::AddressPorts(f) => format!("set {t} {name} {{ type {} . inet_service; }}", f.addr_type()),
        SetKind::AddressPairs(f) => format!("set {t} {name} {{ type {a} . {a}; }}", a = f.addr_type()),
        SetKind::Map(f) => format!("map {t} {name} {{ type {} : verdict; }}", f.addr_type()),
        SetKind::Flows(f) => {
            let a = f.addr_type();
            format!(
                "set {t} {name} {{ type {a} . {a} . inet_proto . inet_service; flags dynamic, timeout; timeout 1h; size {FLOW_CAPACITY}; }}"
            )
        }
    }
}

impl Display for Command {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        let t = format!("inet {TABLE}");
        match self {
            Command::ReplaceTable => write!(f, "add table {t}\ndelete table {t}\nadd table {t}"),
            Command::AddSet { name, kind } => write!(f, "add {}", declaration(*kind, name)),
            Command::Elements { set, items, add, .. } => {
                let mut items: Vec<String> = items.iter().map(ToString::to_string).collect();
                items.sort_unstable();
                write!(f, "{} element {t} {set} {{ {} }}", if *add { "add" } else { "delete" }, items.join(", "))
            }
            Command::AddChain { name, hook: None } => write!(f, "add chain {t} {name}"),
            Command::AddChain { name, hook: Some(hook) } => {
                let hook = hook.name();
                write!(f, "add chain {t} {name} {{ type filter hook {hook} priority filter; policy accept; }}")
            }
            Command::AddRule { chain, rule } => write!(f, "add rule {t} {chain} {rule}"),
            Command::FlushChain(c) => write!(f, "flush chain {t} {c}"),
            Command::DeleteChain(c) => write!(f, "delete chain {t} {c}"),
            Command::DeleteSet(s) => write!(f, "delete set {t} {s}"),
        }
    }
}

/// The whole table as an `nft -f` script.
pub fn full(rs: &crate::Ruleset) -> String {
    script(&crate::script::full_commands(rs))
}

/// The delta from `old` to `new` as an `nft -f` script (empty when nothing changed).
pub fn update(old: &crate::Ruleset, new: &crate::Ruleset) -> String {
    script(&crate::script::update_commands(old, new))
}

/// The commands as one `nft -f` script (empty for none).
pub fn script(commands: &[Command]) -> String {
    if commands.is_empty() {
        return String::new();
    }
    commands.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Family;

    #[test]
    fn statements_print_in_nfts_words() {
        let rule = Rule::new(vec![
            Stmt::Nfproto(Family::V4),
            Stmt::L4proto { negate: false, protocols: vec![6] },
            Stmt::Address { family: Family::V4, field: Addr::Daddr, negate: true, set: "a_1_4".into() },
            Stmt::Ports { field: PortField::Dport, negate: false, ranges: vec![(53, 53), (80, 90)] },
            Stmt::Counter,
            Stmt::Verdict(Verdict::Return),
        ])
        .with_comment("x");
        assert_eq!(
            rule.to_string(),
            "meta nfproto ipv4 meta l4proto tcp ip daddr != @a_1_4 th dport { 53, 80-90 } counter return comment \"x\""
        );
        let flows = Rule::new(vec![
            Stmt::L4proto { negate: false, protocols: vec![6, 17, 132] },
            Stmt::Ct(vec![CtState::New]),
            Stmt::NoteFlow { family: Family::V6, set: "flows_6".into() },
        ]);
        assert_eq!(
            flows.to_string(),
            "meta l4proto { tcp, udp, sctp } ct state new update @flows_6 { ip6 saddr . ip6 daddr . meta l4proto . th dport }"
        );
        let e = Element::Net("10.0.0.1/32".parse().unwrap());
        assert_eq!(e.to_string(), "10.0.0.1");
        assert_eq!(Element::Jump("fd00::1".parse().unwrap(), "in_x".into()).to_string(), "fd00::1 : jump in_x");
    }
}
