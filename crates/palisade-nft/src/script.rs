//! A ruleset as commands of one transaction (the whole table, or the delta from the table in
//! force), and running `nft` for what only nft does here (`nft -f` for the lab and the tests,
//! listing counters and flow sets). The kernel applies a transaction all or nothing, so no
//! packet ever sees a half-updated table. Commands hold IR values: `render::text` prints
//! them, `render::netlink` encodes them.

use std::io::Write;
use std::process::Stdio;

use palisade_core::port::Protocol;

use crate::ir::{Addr, CtState, Element, Family, Interface, NamedSet, Rule, Stmt, Verdict, TABLE};
pub use crate::ir::{Command, Hook, SetKind, FLOW_CAPACITY};
use crate::own_node::OwnNode;
use crate::table::Ruleset;

const MAPS: [(&str, Family); 8] = [
    ("egress_4", Family::V4),
    ("egress_6", Family::V6),
    ("ingress_4", Family::V4),
    ("ingress_6", Family::V6),
    ("host_egress_4", Family::V4),
    ("host_egress_6", Family::V6),
    ("host_ingress_4", Family::V4),
    ("host_ingress_6", Family::V6),
];

/// Sets the base chains fill with every new connection: (source, destination, protocol, port).
pub const FLOW_SETS: [&str; 2] = ["flows_4", "flows_6"];
/// Both families' verdict-map lookups of one base chain.
fn lookups(field: Addr, egress: &str) -> Vec<Rule> {
    [Family::V4, Family::V6]
        .map(|family| Rule::new(vec![Stmt::Vmap { family, field, map: format!("{egress}_{}", family.suffix()) }]))
        .to_vec()
}

/// The base chains: conntrack first, then the lookups. A pod's egress is decided in
/// `prerouting` and its ingress in `postrouting`, which every packet from or to a pod passes
/// (forwarded, to the node or from it): each verdict map is then referenced from one base chain,
/// and the kernel, which re-walks every element's chain from every base chain that reaches the
/// map whenever a transaction adds a jump, walks the pods once instead of twice. Host endpoints
/// are decided on `input` (ingress) and `output` (egress). Both run after NAT's `dstnat` and
/// before `srcnat`, so they see pod addresses and target ports, never a ClusterIP.
/// A node's packets to its own pods are accepted (see [`crate::own_node`]) before a host
/// endpoint's egress and before the ingress lookup; a packet from outside with a local source
/// address is dropped before anything else looks at it, so none can pass for the node's.
fn base_chains(out: &mut Vec<Command>, rs: &Ruleset) {
    let (record_flows, own_node) = (rs.record_flows, &rs.own_node);
    let accept = Stmt::Verdict(Verdict::Accept);
    let chains: [(Hook, Vec<Rule>); 4] = [
        (Hook::Prerouting, lookups(Addr::Saddr, "egress")),
        (Hook::Input, lookups(Addr::Daddr, "host_ingress")),
        (Hook::Output, lookups(Addr::Saddr, "host_egress")),
        (Hook::Postrouting, lookups(Addr::Daddr, "ingress")),
    ];
    for (hook, lookups) in chains {
        let chain = hook.name();
        out.push(Command::AddChain { name: chain.into(), hook: Some(hook) });
        let mut rules = vec![Rule::new(vec![Stmt::Ct(vec![CtState::Established, CtState::Related]), accept.clone()])];
        // The node talking to itself never leaves it (as a pod to its own IP).
        let loopback = |interface| Rule::new(vec![Stmt::Loopback { interface, negate: false }, accept.clone()]);
        match hook {
            Hook::Input => rules.push(loopback(Interface::In)),
            Hook::Output | Hook::Postrouting => rules.push(loopback(Interface::Out)),
            Hook::Prerouting => {}
        }
        rules.push(Rule::new(vec![Stmt::Ct(vec![CtState::Invalid]), Stmt::Counter, Stmt::Verdict(Verdict::Drop)]));
        // IPv6 needs neighbor discovery to work at all; it is not a connection policy decides.
        rules.push(Rule::new(vec![Stmt::NeighborDiscovery, accept.clone()]));
        // (In audit mode nothing is enforced, so there is no exception to borrow.)
        if hook == Hook::Prerouting && !rs.audit {
            rules.push(Rule::new(vec![
                Stmt::Loopback { interface: Interface::In, negate: true },
                Stmt::LocalSource,
                Stmt::Counter,
                Stmt::Verdict(Verdict::Drop),
            ]));
        }
        // Every new connection is noted before policy decides it (the agent's flow log): those
        // from pods on prerouting, the node's own on output.
        let first_seen = matches!(hook, Hook::Prerouting | Hook::Output);
        for (set, family) in FLOW_SETS.iter().zip([Family::V4, Family::V6]).filter(|_| record_flows && first_seen) {
            rules.push(Rule::new(vec![
                Stmt::L4proto { negate: false, protocols: vec![6, 17, 132] },
                Stmt::Ct(vec![CtState::New]),
                Stmt::NoteFlow { family, set: set.to_string() },
            ]));
        }
        if matches!(hook, Hook::Output | Hook::Postrouting) {
            rules.extend([Family::V4, Family::V6].map(|f| own_node.accept_rule(f)));
        }
        rules.extend(lookups);
        out.extend(rules.into_iter().map(|rule| Command::AddRule { chain: chain.into(), rule }));
    }
}

fn elements(set: &str, kind: SetKind, items: impl IntoIterator<Item = Element>, add: bool) -> Option<Command> {
    let items: Vec<Element> = items.into_iter().collect();
    (!items.is_empty()).then(|| Command::Elements { set: set.into(), kind, items, add })
}

/// Named sets, the most referenced first: the kernel resolves a rule's `@set` by walking the
/// table's sets in creation order, which dominates loading when thousands of rules use a few
/// popular sets (DNS, a namespace's pods).
fn sets_by_use(rs: &Ruleset) -> Vec<(&String, &NamedSet)> {
    let mut uses: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for rule in rs.chains.values().flatten() {
        for name in rule.sets() {
            *uses.entry(name).or_default() += 1;
        }
    }
    let mut sets: Vec<_> = rs.sets.iter().collect();
    sets.sort_by_key(|(name, _)| std::cmp::Reverse(uses.get(name.as_str()).copied().unwrap_or(0)));
    sets
}

/// A verdict map's elements: address → jump to the chain.
fn map_items<'a>(
    map: Option<&'a std::collections::BTreeMap<std::net::IpAddr, String>>,
) -> impl Iterator<Item = Element> + 'a {
    map.into_iter().flatten().map(|(ip, chain)| Element::Jump(*ip, chain.clone()))
}

/// Replaces the whole table in one transaction (first load, or adopting an unknown table).
pub fn full_commands(rs: &Ruleset) -> Vec<Command> {
    let mut out = vec![Command::ReplaceTable];
    for (name, set) in sets_by_use(rs) {
        let kind = set.kind();
        out.push(Command::AddSet { name: name.clone(), kind });
        out.extend(elements(name, kind, set.elements.iter().cloned(), true));
    }
    for (name, f) in MAPS {
        out.push(Command::AddSet { name: name.into(), kind: SetKind::Map(f) });
    }
    for f in [Family::V4, Family::V6] {
        let (name, kind) = (OwnNode::set_name(f), own_node_kind(&rs.own_node, f));
        out.push(Command::AddSet { name: name.clone(), kind });
        out.extend(elements(&name, kind, rs.own_node.elements.get(&f).into_iter().flatten().cloned(), true));
    }
    for (name, f) in FLOW_SETS.iter().zip([Family::V4, Family::V6]).filter(|_| rs.record_flows) {
        out.push(Command::AddSet { name: name.to_string(), kind: SetKind::Flows(f) });
    }
    for name in rs.chains.keys() {
        out.push(Command::AddChain { name: name.clone(), hook: None });
    }
    for (name, rules) in &rs.chains {
        out.extend(rules.iter().map(|r| Command::AddRule { chain: name.clone(), rule: r.clone() }));
    }
    for (name, f) in MAPS {
        out.extend(elements(name, SetKind::Map(f), map_items(rs.maps.get(name)), true));
    }
    base_chains(&mut out, rs);
    out
}

/// The `own_node_*` sets hold pod addresses, or node and pod address pairs.
fn own_node_kind(own: &OwnNode, f: Family) -> SetKind {
    if own.by_address {
        SetKind::AddressPairs(f)
    } else {
        SetKind::Addresses(f)
    }
}

/// Adds back every element of these named sets and verdict maps (elements still there stay
/// as they are): what mends a table that lost elements and nothing else.
pub fn element_commands(rs: &Ruleset, sets: &[String]) -> Vec<Command> {
    let mut out = Vec::new();
    for name in sets {
        if let Some(set) = rs.sets.get(name) {
            out.extend(elements(name, set.kind(), set.elements.iter().cloned(), true));
        } else if let Some((_, f)) = MAPS.iter().find(|(m, _)| m == name) {
            out.extend(elements(name, SetKind::Map(*f), map_items(rs.maps.get(name)), true));
        } else if let Some(f) = [Family::V4, Family::V6].into_iter().find(|f| OwnNode::set_name(*f) == *name) {
            let items = rs.own_node.elements.get(&f).into_iter().flatten().cloned();
            out.extend(elements(name, own_node_kind(&rs.own_node, f), items, true));
        }
    }
    out
}

/// The delta from `old` (the table in force) to `new`, as one transaction: only set and map
/// elements and the chains that changed. Chains are named by content, so a changed group is a
/// new chain; the old one is deleted once nothing jumps to it.
pub fn update_commands(old: &Ruleset, new: &Ruleset) -> Vec<Command> {
    let mut out = Vec::new();
    for (name, set) in &new.sets {
        let kind = set.kind();
        match old.sets.get(name) {
            None => {
                out.push(Command::AddSet { name: name.clone(), kind });
                out.extend(elements(name, kind, set.elements.iter().cloned(), true));
            }
            Some(prev) => {
                out.extend(elements(name, kind, prev.elements.difference(&set.elements).cloned(), false));
                out.extend(elements(name, kind, set.elements.difference(&prev.elements).cloned(), true));
            }
        }
    }
    let added: Vec<&String> = new.chains.keys().filter(|c| !old.chains.contains_key(*c)).collect();
    for name in &added {
        out.push(Command::AddChain { name: name.to_string(), hook: None });
    }
    for name in &added {
        out.extend(new.chains[*name].iter().map(|r| Command::AddRule { chain: name.to_string(), rule: r.clone() }));
    }
    for (name, f) in MAPS {
        let empty = Default::default();
        let (was, now) = (old.maps.get(name).unwrap_or(&empty), new.maps.get(name).unwrap_or(&empty));
        let gone = was.iter().filter(|(ip, c)| now.get(*ip) != Some(*c)).map(|(ip, _)| Element::MapKey(*ip));
        out.extend(elements(name, SetKind::Map(f), gone, false));
        let came = now.iter().filter(|(ip, c)| was.get(*ip) != Some(*c)).map(|(ip, c)| Element::Jump(*ip, c.clone()));
        out.extend(elements(name, SetKind::Map(f), came, true));
    }
    // The agent's `--node` never changes, nor the sets' shape with it.
    debug_assert_eq!(old.own_node.by_address, new.own_node.by_address);
    for f in [Family::V4, Family::V6] {
        let empty = Default::default();
        let (was, now) =
            (old.own_node.elements.get(&f).unwrap_or(&empty), new.own_node.elements.get(&f).unwrap_or(&empty));
        let (name, kind) = (OwnNode::set_name(f), own_node_kind(&new.own_node, f));
        out.extend(elements(&name, kind, was.difference(now).cloned(), false));
        out.extend(elements(&name, kind, now.difference(was).cloned(), true));
    }
    // Chains that left: empty them first (they may jump to each other), then delete.
    let removed: Vec<&String> = old.chains.keys().filter(|c| !new.chains.contains_key(*c)).collect();
    out.extend(removed.iter().map(|c| Command::FlushChain(c.to_string())));
    out.extend(removed.iter().map(|c| Command::DeleteChain(c.to_string())));
    for name in old.sets.keys().filter(|s| !new.sets.contains_key(*s)) {
        out.push(Command::DeleteSet(name.clone()));
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot run nft: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("nft refused the transaction (nothing was changed): {0}")]
    Refused(String),
}

/// `nft`, run inside network namespace `netns` when given; append its arguments.
pub fn nft(netns: Option<&str>) -> std::process::Command {
    match netns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns, "nft"]);
            c
        }
        None => std::process::Command::new("nft"),
    }
}

/// Runs a script with `nft -f -`, inside network namespace `netns` when given.
pub fn apply(script: &str, netns: Option<&str>) -> Result<(), ApplyError> {
    if script.is_empty() {
        return Ok(());
    }
    let mut cmd = nft(netns);
    cmd.args(["-f", "-"]);
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    child.stdin.take().expect("piped").write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ApplyError::Refused(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

/// Packets and bytes per policy rule (summed over the group chains that copy it), read from the
/// table in force: `(comment, packets, bytes)`, sorted by comment.
pub fn counters(netns: Option<&str>) -> Result<Vec<(String, u64, u64)>, ApplyError> {
    let out = nft(netns).args(["-j", "list", "table", "inet", TABLE]).output()?;
    if !out.status.success() {
        return Err(ApplyError::Refused(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| ApplyError::Refused(e.to_string()))?;
    let mut sums: std::collections::BTreeMap<String, (u64, u64)> = std::collections::BTreeMap::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let rule = &item["rule"];
        let Some(comment) = rule["comment"].as_str() else { continue };
        for e in rule["expr"].as_array().into_iter().flatten() {
            if let Some(c) = e.get("counter") {
                let s = sums.entry(comment.to_string()).or_default();
                s.0 += c["packets"].as_u64().unwrap_or(0);
                s.1 += c["bytes"].as_u64().unwrap_or(0);
            }
        }
    }
    Ok(sums.into_iter().map(|(k, (p, b))| (k, p, b)).collect())
}

/// One connection the table saw start.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeenFlow {
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    pub port: u16,
}

/// The new connections noted in the flow sets of the table in force.
pub fn flows(netns: Option<&str>) -> Result<Vec<SeenFlow>, ApplyError> {
    let mut out = Vec::new();
    for set in FLOW_SETS {
        let res = nft(netns).args(["-j", "list", "set", "inet", TABLE, set]).output()?;
        if !res.status.success() {
            return Err(ApplyError::Refused(String::from_utf8_lossy(&res.stderr).trim().to_string()));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&res.stdout).map_err(|e| ApplyError::Refused(e.to_string()))?;
        out.extend(parse_flow_set(&v));
    }
    out.sort();
    Ok(out)
}

/// Elements of a listed flow set: `{"elem": {"val": {"concat": [src, dst, proto, port]}}}`,
/// or the bare concat when the element has no timeout.
fn parse_flow_set(v: &serde_json::Value) -> Vec<SeenFlow> {
    let items = v["nftables"].as_array().into_iter().flatten();
    let elems = items.filter_map(|i| i["set"]["elem"].as_array()).flatten();
    elems
        .filter_map(|e| {
            let concat = e["elem"]["val"]["concat"].as_array().or_else(|| e["concat"].as_array())?;
            let [src, dst, proto, port] = concat.as_slice() else { return None };
            let protocol = match proto {
                serde_json::Value::Number(n) => u8::try_from(n.as_u64()?).ok()?,
                serde_json::Value::String(s) => match Protocol::from_api(&s.to_ascii_uppercase()) {
                    Some(p) => p.number(),
                    None => s.parse().ok()?,
                },
                _ => return None,
            };
            Some(SeenFlow {
                src: src.as_str()?.parse().ok()?,
                dst: dst.as_str()?.parse().ok()?,
                protocol,
                port: u16::try_from(port.as_u64()?).ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod flow_tests {
    use super::*;

    #[test]
    fn listed_flow_sets_parse() {
        let v = serde_json::json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"set": {"family": "inet", "name": "flows_4", "table": "palisade", "elem": [
                {"elem": {"val": {"concat": ["198.18.0.2", "198.18.0.3", "tcp", 80]}, "timeout": 3600, "expires": 3599}},
                {"concat": ["198.18.0.3", "198.18.0.2", 17, 53]}
            ]}}
        ]});
        let got = parse_flow_set(&v);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            SeenFlow { src: "198.18.0.2".parse().unwrap(), dst: "198.18.0.3".parse().unwrap(), protocol: 6, port: 80 }
        );
        assert_eq!(got[1].protocol, 17);
        assert_eq!(got[1].port, 53);
    }
}
