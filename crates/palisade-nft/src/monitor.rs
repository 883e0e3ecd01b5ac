//! The kernel's copy of the table, watched: nf_tables change notifications (the
//! `NFNLGRP_NFTABLES` multicast group, as `nft monitor` reads them) tell at once when anyone
//! else changes the `inet palisade` table (`nft flush ruleset`, a deleted element), and a
//! listing of the table compared with the ruleset is the backstop (notifications can be lost
//! when the socket's buffer overflows).
//!
//! The listing compares what can be compared exactly: chains by name, each rule's expressions
//! by name (with the verdicts of `immediate` expressions) and its comment, named sets and maps
//! with every element (the flow sets, which packets fill, by name only). A rule changed in place
//! with the same expressions and comment is seen through the notifications only.

use nix::libc;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::ir::Command;
use crate::ir::{Rule as NftRule, TABLE};
use crate::kernel::{encode, Kernel, KernelError};
use crate::netlink::{attr, attr as a, attr_str, attr_u32, attrs, messages, Message, NetlinkError, Socket};

/// A change to the table that the watch saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableEvent {
    /// Someone else changed the table: who (`nft[1234]`) and what, summed up.
    Changed { by: String, what: String },
    /// Notifications were lost (a full socket buffer): only a listing can tell.
    Lost,
}

/// The watch on a table's notifications.
pub struct Watch(Arc<Socket>);

/// Watches the table in network namespace `netns` from a thread of its own, calling `tell`
/// with each event until it returns `false`; changes made through the socket with port id
/// `own` (the agent's) are not reported.
pub fn watch(
    netns: Option<&str>,
    own: u32,
    tell: impl FnMut(TableEvent) -> bool + Send + 'static,
) -> Result<Watch, NetlinkError> {
    let socket = Arc::new(Socket::open(netns)?);
    socket.subscribe();
    let reader = socket.clone();
    std::thread::spawn(move || watch_loop(&reader, own, tell));
    Ok(Watch(socket))
}

impl Watch {
    /// Runs a big transaction of the agent's own without being told about each of its rules
    /// and elements (the kernel would build, and the watch read, a notification for every
    /// one: tens of thousands for a whole table). Whether anyone else changed any table
    /// meanwhile (the ruleset generation moved by more than this transaction): then the
    /// caller compares the table. `generation` reads the namespace's ruleset generation
    /// ([`Kernel::generation`]).
    pub fn unheard<T, E>(
        &self,
        generation: impl Fn() -> Result<u32, E>,
        f: impl FnOnce() -> Result<T, E>,
    ) -> (Result<T, E>, bool) {
        let before = generation();
        self.0.listen(false);
        let outcome = f();
        self.0.listen(true);
        let after = generation();
        let ours = u32::from(outcome.is_ok());
        let others = match (before, after) {
            (Ok(b), Ok(a)) => a.wrapping_sub(b) != ours,
            _ => true,
        };
        (outcome, others)
    }
}

fn watch_loop(socket: &Socket, own: u32, mut tell: impl FnMut(TableEvent) -> bool) {
    let mut buf = vec![0u8; 1 << 20];
    // Changes seen per socket, reported when its transaction ends (NEWGEN names the process).
    let mut pending: HashMap<u32, BTreeMap<String, BTreeMap<String, usize>>> = HashMap::new();
    loop {
        let n = match socket.receive(&mut buf) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                pending.clear();
                if !tell(TableEvent::Lost) {
                    return;
                }
                continue;
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => continue,
            Err(_) => {
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        for m in messages(&buf[..n]) {
            let Some(kind) = m.nft() else { continue };
            if kind == libc::NFT_MSG_NEWGEN {
                let Some(what) = pending.remove(&m.portid) else { continue };
                let name = attr_str(m.attrs, a::GEN_PROC_NAME).unwrap_or_else(|| "?".into());
                let by = match attr_u32(m.attrs, a::GEN_PROC_PID) {
                    Some(pid) => format!("{name}[{pid}]"),
                    None => name,
                };
                if !tell(TableEvent::Changed { by, what: summary(&what) }) {
                    return;
                }
            } else if m.portid != own && m.family == libc::NFPROTO_INET as u8 && is_ours(&m) {
                let (what, object) = describe(kind, m.attrs);
                *pending.entry(m.portid).or_default().entry(what).or_default().entry(object).or_default() += 1;
            }
        }
    }
}

/// Every nf_tables object message names its table first (attribute 1).
fn is_ours(m: &Message) -> bool {
    attr_str(m.attrs, a::TABLE_NAME).as_deref() == Some(TABLE)
}

/// What a message did, and to which object: (`chain deleted`, `in_abc`).
fn describe(kind: i32, attrs: &[u8]) -> (String, String) {
    let name = |k| attr_str(attrs, k).unwrap_or_default();
    let (what, object) = match kind {
        libc::NFT_MSG_NEWTABLE => ("table added or changed", TABLE.to_string()),
        libc::NFT_MSG_DELTABLE => ("table deleted", TABLE.to_string()),
        libc::NFT_MSG_NEWCHAIN => ("chain added", name(a::CHAIN_NAME)),
        libc::NFT_MSG_DELCHAIN => ("chain deleted", name(a::CHAIN_NAME)),
        libc::NFT_MSG_NEWRULE => ("rule added", name(a::RULE_CHAIN)),
        libc::NFT_MSG_DELRULE => ("rule deleted", name(a::RULE_CHAIN)),
        libc::NFT_MSG_NEWSET => ("set added", name(a::SET_NAME)),
        libc::NFT_MSG_DELSET => ("set deleted", name(a::SET_NAME)),
        libc::NFT_MSG_NEWSETELEM => ("elements added", name(a::SET_ELEM_LIST_SET)),
        libc::NFT_MSG_DELSETELEM => ("elements deleted", name(a::SET_ELEM_LIST_SET)),
        other => return (format!("change of kind {other}"), String::new()),
    };
    (what.to_string(), object)
}

/// `table deleted; 5 x chain deleted (in_a, in_b, ...); rule added (prerouting)`, the table
/// first.
fn summary(what: &BTreeMap<String, BTreeMap<String, usize>>) -> String {
    let mut items: Vec<(&String, &BTreeMap<String, usize>)> = what.iter().collect();
    items.sort_by_key(|(w, _)| !w.starts_with("table"));
    let parts: Vec<String> = items
        .into_iter()
        .map(|(w, objects)| {
            let n: usize = objects.values().sum();
            let count = if n == 1 { String::new() } else { format!("{n} x ") };
            if w.starts_with("table") {
                return format!("{count}{w}");
            }
            let mut names: Vec<&str> = objects.keys().map(String::as_str).take(3).collect();
            if objects.len() > 3 {
                names.push("...");
            }
            format!("{count}{w} ({})", names.join(", "))
        })
        .collect();
    parts.join("; ")
}

/// One set or map element: key bytes, whether it ends an interval, and a map's jump target.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Element {
    key: Vec<u8>,
    end: bool,
    jump: Option<String>,
}

/// One rule: its expressions' names (an `immediate` with its verdict) and its comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    exprs: Vec<String>,
    comment: Option<Vec<u8>>,
}

/// What a table holds, as far as it is compared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub chains: BTreeMap<String, Vec<Rule>>,
    /// Named sets and verdict maps with their elements.
    pub sets: BTreeMap<String, BTreeSet<Element>>,
    /// Sets packets fill (the flow log's): compared by name.
    pub dynamic: BTreeSet<String>,
}

/// How the kernel's table differs from the ruleset.
#[derive(Debug, Default)]
pub struct Drift {
    /// What differs, in words; empty when nothing does.
    pub notes: Vec<String>,
    /// Sets and maps that lack elements, when nothing else differs (adding them back mends it).
    pub missing_elements: Vec<String>,
}

fn element_list(buf: &[u8]) -> Vec<Element> {
    attrs(buf)
        .into_iter()
        .map(|(_, e)| Element {
            key: attr(e, a::SET_ELEM_KEY).and_then(|k| attr(k, a::DATA_VALUE)).unwrap_or_default().to_vec(),
            end: attr_u32(e, a::SET_ELEM_FLAGS).is_some_and(|f| f & libc::NFT_SET_ELEM_INTERVAL_END as u32 != 0),
            jump: attr(e, a::SET_ELEM_DATA)
                .and_then(|d| attr(d, a::DATA_VERDICT))
                .and_then(|v| attr_str(v, a::VERDICT_CHAIN)),
        })
        .collect()
}

fn expressions(buf: &[u8]) -> Vec<String> {
    attrs(buf)
        .into_iter()
        .map(|(_, e)| {
            let name = attr_str(e, a::EXPR_NAME).unwrap_or_default();
            let verdict = (name == "immediate")
                .then(|| {
                    attr(e, a::EXPR_DATA)
                        .and_then(|d| attr(d, a::IMMEDIATE_DATA))
                        .and_then(|d| attr(d, a::DATA_VERDICT))
                })
                .flatten();
            match verdict {
                Some(v) => {
                    let code = attr_u32(v, a::VERDICT_CODE).map_or(0, |c| c as i32);
                    format!("{name} {code} {}", attr_str(v, a::VERDICT_CHAIN).unwrap_or_default())
                }
                None => name,
            }
        })
        .collect()
}

fn anonymous(set: &str) -> bool {
    set.starts_with("__set")
}

/// Builds the listings rulesets should have, remembering each rule's signature by its IR value:
/// a ruleset mostly keeps its rules from one change to the next, and encoding them is what
/// costs (a second at 26,000 rules).
#[derive(Default)]
pub struct Expectation {
    rules: HashMap<NftRule, Rule>,
}

impl Expectation {
    /// What the kernel holds after a full load of `commands`, from their netlink encoding (the
    /// same bytes the kernel is given).
    pub fn listing(&mut self, commands: &[Command]) -> Result<Listing, KernelError> {
        let fresh: Vec<Command> = commands
            .iter()
            .filter(|c| matches!(c, Command::AddRule { rule, .. } if !self.rules.contains_key(rule)))
            .cloned()
            .collect();
        let rules = messages_of(&fresh)?.filter(|m| m.0 == libc::NFT_MSG_NEWRULE).map(|m| m.1);
        for (c, m) in fresh.iter().zip(rules) {
            let Command::AddRule { rule, .. } = c else { continue };
            let mut one = Listing::default();
            messages(&m).iter().for_each(|m| one.take(m));
            if let Some(r) = one.chains.into_values().flatten().next() {
                self.rules.insert(rule.clone(), r);
            }
        }
        let mut l = Listing::default();
        let others: Vec<Command> = commands.iter().filter(|c| !matches!(c, Command::AddRule { .. })).cloned().collect();
        for (_, m) in messages_of(&others)? {
            messages(&m).iter().for_each(|m| l.take(m));
        }
        let mut used = std::collections::HashSet::new();
        for c in commands {
            if let Command::AddRule { chain, rule } = c {
                l.chains.entry(chain.clone()).or_default().push(self.rules[rule].clone());
                used.insert(rule);
            }
        }
        // Rules no longer in the ruleset are forgotten: the cache stays its size.
        self.rules.retain(|r, _| used.contains(r));
        Ok(l)
    }
}

/// The nf_tables messages `commands` encode to: (`NFT_MSG_*`, the message).
fn messages_of(commands: &[Command]) -> Result<impl Iterator<Item = (i32, Vec<u8>)>, KernelError> {
    let batch = encode(commands);
    let out: Vec<(i32, Vec<u8>)> =
        messages(batch.bytes()).into_iter().filter_map(|m| Some((m.nft()?, m.raw.to_vec()))).collect();
    Ok(out.into_iter())
}

impl Listing {
    /// Takes in one object message (what a dump answers, or what a load sends).
    fn take(&mut self, m: &Message) {
        let Some(kind) = m.nft() else { return };
        match kind {
            libc::NFT_MSG_NEWCHAIN if is_ours(m) => {
                self.chains.entry(attr_str(m.attrs, a::CHAIN_NAME).unwrap_or_default()).or_default();
            }
            libc::NFT_MSG_NEWRULE => {
                let chain = attr_str(m.attrs, a::RULE_CHAIN).unwrap_or_default();
                let exprs = attr(m.attrs, a::RULE_EXPRESSIONS).map(expressions).unwrap_or_default();
                let comment = attr(m.attrs, a::RULE_USERDATA).map(<[u8]>::to_vec);
                self.chains.entry(chain).or_default().push(Rule { exprs, comment });
            }
            libc::NFT_MSG_NEWSET => {
                let name = attr_str(m.attrs, a::SET_NAME).unwrap_or_default();
                let flags = attr_u32(m.attrs, a::SET_FLAGS).unwrap_or(0);
                if anonymous(&name) {
                } else if flags & (libc::NFT_SET_EVAL | libc::NFT_SET_TIMEOUT) as u32 != 0 {
                    self.dynamic.insert(name);
                } else {
                    self.sets.entry(name).or_default();
                }
            }
            libc::NFT_MSG_NEWSETELEM => {
                let set = attr_str(m.attrs, a::SET_ELEM_LIST_SET).unwrap_or_default();
                if anonymous(&set) || self.dynamic.contains(&set) {
                    return;
                }
                let elements = attr(m.attrs, a::SET_ELEM_LIST_ELEMENTS).map(element_list).unwrap_or_default();
                self.sets.entry(set).or_default().extend(elements);
            }
            _ => {}
        }
    }

    /// How this listing (the kernel's) differs from the `expected` one.
    pub fn drift(&self, expected: &Listing) -> Drift {
        let mut d = Drift::default();
        let mut other = false;
        for (name, rules) in &expected.chains {
            match self.chains.get(name) {
                None => d.notes.push(format!("chain {name} missing")),
                Some(have) if have.len() != rules.len() => {
                    d.notes.push(format!("chain {name}: {} rules, {} expected", have.len(), rules.len()))
                }
                Some(have) => {
                    if let Some(i) = (0..rules.len()).find(|&i| have[i] != rules[i]) {
                        d.notes.push(format!("chain {name}: rule {} differs", i + 1));
                    }
                }
            }
        }
        for name in self.chains.keys().filter(|c| !expected.chains.contains_key(*c)) {
            d.notes.push(format!("chain {name} is not Palisade's"));
        }
        other |= !d.notes.is_empty();
        for (name, elements) in &expected.sets {
            let Some(have) = self.sets.get(name) else {
                d.notes.push(format!("set {name} missing"));
                other = true;
                continue;
            };
            let missing = elements.difference(have).count();
            let extra = have.difference(elements).count();
            if missing > 0 {
                d.notes.push(format!("set {name}: {missing} element(s) missing"));
                d.missing_elements.push(name.clone());
            }
            if extra > 0 {
                d.notes.push(format!("set {name}: {extra} element(s) not Palisade's"));
                other = true;
            }
        }
        let sets = self.sets.keys().chain(&self.dynamic);
        for name in sets.filter(|s| !expected.sets.contains_key(*s) && !expected.dynamic.contains(*s)) {
            d.notes.push(format!("set {name} is not Palisade's"));
            other = true;
        }
        for name in expected.dynamic.iter().filter(|s| !self.dynamic.contains(*s)) {
            d.notes.push(format!("set {name} missing"));
            other = true;
        }
        if other {
            d.missing_elements.clear();
        }
        d
    }
}

impl Kernel {
    /// The table as the kernel holds it; `None` when there is no such table.
    pub fn listing(&self) -> Result<Option<Listing>, KernelError> {
        let inet = libc::NFPROTO_INET as u8;
        let table = |k: u16| {
            move |at: &mut crate::netlink::Attrs| {
                at.str(k, TABLE);
            }
        };
        match self.socket().get(libc::NFT_MSG_GETTABLE, inet, false, table(a::TABLE_NAME)) {
            Err(NetlinkError::Refused { errno, .. }) if errno == libc::ENOENT => return Ok(None),
            other => {
                other?;
            }
        }
        let mut l = Listing::default();
        let mut take = |replies: Vec<Vec<u8>>| {
            for r in &replies {
                messages(r).iter().for_each(|m| l.take(m));
            }
        };
        take(self.socket().get(libc::NFT_MSG_GETCHAIN, inet, true, table(a::CHAIN_TABLE))?);
        take(self.socket().get(libc::NFT_MSG_GETRULE, inet, true, table(a::RULE_TABLE))?);
        take(self.socket().get(libc::NFT_MSG_GETSET, inet, true, table(a::SET_TABLE))?);
        for set in l.sets.keys().cloned().collect::<Vec<_>>() {
            let replies = self.socket().get(libc::NFT_MSG_GETSETELEM, inet, true, |at| {
                at.str(a::SET_ELEM_LIST_TABLE, TABLE).str(a::SET_ELEM_LIST_SET, &set);
            })?;
            for r in &replies {
                messages(r).iter().for_each(|m| l.take(m));
            }
        }
        Ok(Some(l))
    }

    /// The ruleset generation of the network namespace: every transaction, on any table,
    /// moves it on.
    pub fn generation(&self) -> Result<u32, KernelError> {
        let replies = self.socket().get(libc::NFT_MSG_GETGEN, libc::AF_UNSPEC as u8, false, |_| {})?;
        let gen = replies
            .iter()
            .flat_map(|r| messages(r).into_iter().filter_map(|m| attr_u32(m.attrs, a::GEN_ID)).collect::<Vec<_>>());
        Ok(gen.into_iter().next().unwrap_or(0))
    }
}
