//! Runs of Allow rules merged into one rule per shape, so that a pod selected by many policies
//! costs one set lookup per new connection instead of one rule per policy.
//!
//! A group chain evaluates its tier's rules in order and stops at the first that matches. In a
//! run of adjacent Allow rules every rule ends the same way (accept, or return for egress) and
//! does nothing else (counters aside), so which of them matches first does not change the
//! verdict: rules of the run that differ only in their peer's address set can become one rule,
//! at the place of the first, over the union of their peers. A Deny, Pass or Log rule ends a
//! run, since moving an Allow across it would change what it decides or logs (the conformance
//! case `calico-20-allow-runs.yaml` pins this down). What is lost is per-policy counting: the
//! merged rule counts for all of them, and its comment names the first and how many more.
//!
//! A shape merges when its rules in the run are copies of one rule (dropping copies costs
//! nothing) or have at least [`MERGE_FROM`] distinct peers: a union set repeats its members'
//! addresses, so merging every pair would trade a few rule evaluations for a much bigger table.
//!
//! This is the group-chain form of what identity-based data planes do with one verdict lookup
//! keyed by peer: per new connection the cost is the number of distinct rule shapes (protocol,
//! ports, own-side conditions), not the number of policies.

use std::collections::{HashMap, HashSet};

use palisade_core::policy::Action;

use crate::ir::{Addr, Family, Stmt};
use crate::membership::Source;

/// One way a rule can match: expressions that must all hold, for one family or both.
#[derive(Clone, Debug, Default)]
pub(crate) struct Alt {
    pub(crate) family: Option<Family>,
    pub(crate) exprs: Vec<Stmt>,
    /// A peer set not registered yet (a single positive one, which runs of Allow rules merge):
    /// lowering it splits the alternative by family as `lower`'s `split_families` does.
    pub(crate) peer: Option<Peer>,
}

impl Alt {
    pub(crate) fn with(mut self, e: Stmt) -> Alt {
        self.exprs.push(e);
        self
    }
}

/// Rules of one shape in a run merge only from this many on: fewer cost the packet little
/// (a set lookup each), while every merged set holds its members' addresses once more, and
/// groups with different policies cannot share it (at 10,000 pods and 5,000 policies, merging
/// every pair would multiply the table's elements by 13 and its load time by 4).
pub(crate) const MERGE_FROM: usize = 8;

/// A rule's peer addresses, not yet a named set: the set is registered once the run it is in
/// has been merged, so that merged members do not leave unused sets behind.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    /// What the set is named by (see `Compiled::address_sets`).
    pub definition: String,
    pub source: Source,
    /// Which address of the packet is the peer's.
    pub field: Addr,
    /// Where among the alternative's expressions the set lookup goes.
    pub at: usize,
}

/// A rule of a tier before lowering: how it matches, its action, its comment.
pub(crate) type TierEntry = (Alt, Action, String);

/// Merges each run of adjacent Allow rules (see the module comment) where a shape has one
/// distinct peer or at least `from`; other rules stay as and where they are.
pub(crate) fn allow_runs(rules: Vec<TierEntry>, from: usize) -> Vec<TierEntry> {
    let mut out = Vec::with_capacity(rules.len());
    let mut run = Vec::new();
    for rule in rules {
        if rule.1 == Action::Allow {
            run.push(rule);
        } else {
            out.extend(merge_run(std::mem::take(&mut run), from));
            out.push(rule);
        }
    }
    out.extend(merge_run(run, from));
    out
}

/// One merged rule being gathered: the first member's alternative and comment, and the peers
/// of all members (by definition, each once).
struct Merged {
    entry: TierEntry,
    peers: Vec<Peer>,
    /// Rules gathered (a peer that comes twice counts twice).
    rules: usize,
}

fn merge_run(run: Vec<TierEntry>, from: usize) -> Vec<TierEntry> {
    let (shapes, counts) = shapes(&run);
    // Per shape: the slot its merged rule gathers in, once its first member was seen.
    let mut slot_of: Vec<Option<usize>> = vec![None; counts.len()];
    let mut slots: Vec<Merged> = Vec::new();
    for ((mut alt, action, comment), shape) in run.into_iter().zip(shapes) {
        // Distinct peers per shape: one (the same rule again: dropping the copies costs
        // nothing) or at least `from` merge.
        let Some(shape) = shape.filter(|&s| counts[s] == 1 || counts[s] >= from) else {
            let peers: Vec<Peer> = alt.peer.take().into_iter().collect();
            slots.push(Merged { entry: (alt, action, comment), peers, rules: 1 });
            continue;
        };
        let peer = alt.peer.take().expect("a shape has a peer");
        match slot_of[shape] {
            Some(i) => {
                slots[i].rules += 1;
                let peers = &mut slots[i].peers;
                if !peers.iter().any(|p| p.definition == peer.definition) {
                    peers.push(peer);
                }
            }
            None => {
                slot_of[shape] = Some(slots.len());
                slots.push(Merged { entry: (alt, action, comment), peers: vec![peer], rules: 1 });
            }
        }
    }
    slots.into_iter().map(Merged::finish).collect()
}

/// Everything about a rule but its peer set, compared as typed values (rules of the same
/// shape merge): the family, which address the peer is, where its lookup goes, the other
/// expressions.
type Shape<'a> = (Option<Family>, Addr, usize, &'a [Stmt]);

/// Each rule's shape as a small number (`None`: a rule without a pending peer, which never
/// merges), and per shape how many distinct peers its rules have.
fn shapes(run: &[TierEntry]) -> (Vec<Option<usize>>, Vec<usize>) {
    let mut ids: HashMap<Shape<'_>, usize> = HashMap::new();
    let mut peers: Vec<HashSet<&str>> = Vec::new();
    let of_rule = run.iter().map(|(alt, _, _)| {
        let peer = alt.peer.as_ref()?;
        let next = ids.len();
        let id = *ids.entry((alt.family, peer.field, peer.at, alt.exprs.as_slice())).or_insert(next);
        if id == peers.len() {
            peers.push(HashSet::new());
        }
        peers[id].insert(peer.definition.as_str());
        Some(id)
    });
    let of_rule = of_rule.collect();
    (of_rule, peers.iter().map(HashSet::len).collect())
}

impl Merged {
    fn finish(self) -> TierEntry {
        let (mut alt, action, mut comment) = self.entry;
        if self.rules > 1 {
            comment = format!("{comment} and {} more", self.rules - 1);
        }
        let mut peers = self.peers.into_iter();
        let Some(first) = peers.next() else { return (alt, action, comment) };
        let rest: Vec<Peer> = peers.collect();
        if rest.is_empty() {
            alt.peer = Some(first);
            return (alt, action, comment);
        }
        let mut definition = format!("union [{}", first.definition);
        let mut source = first.source;
        for p in rest {
            definition.push_str(", ");
            definition.push_str(&p.definition);
            source = source.union(p.source);
        }
        definition.push(']');
        alt.peer = Some(Peer { definition, source, ..first });
        (alt, action, comment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::PortField;

    fn allow(peer: &str, port: u16) -> TierEntry {
        let ports = Stmt::Ports { field: PortField::Dport, negate: false, ranges: vec![(port, port)] };
        let alt = Alt {
            family: None,
            exprs: vec![ports],
            peer: Some(Peer {
                definition: format!("nets {peer}"),
                source: Source::nets(vec![peer.parse().unwrap()]),
                field: Addr::Saddr,
                at: 0,
            }),
        };
        (alt, Action::Allow, format!("allow from {peer}"))
    }

    fn summary(rules: &[TierEntry]) -> Vec<String> {
        rules
            .iter()
            .map(|(alt, action, comment)| {
                let peer = alt.peer.as_ref().map_or("-".into(), |p| p.definition.clone());
                format!("{action} {peer} {} | {comment}", crate::render::text::stmts(&alt.exprs))
            })
            .collect()
    }

    #[test]
    fn a_run_of_allow_rules_merges_by_shape_and_stops_at_other_actions() {
        let deny = {
            let (alt, _, _) = allow("10.9.0.0/16", 80);
            (alt, Action::Deny, "deny".to_string())
        };
        let rules = vec![
            allow("10.0.0.1/32", 80),
            allow("10.0.0.2/32", 443),
            allow("10.0.0.3/32", 80),
            allow("10.0.0.1/32", 80),
            deny,
            allow("10.0.0.4/32", 80),
            allow("10.0.0.5/32", 80),
        ];
        let merged = allow_runs(rules.clone(), 2);
        assert_eq!(
            summary(&merged),
            [
                "Allow union [nets 10.0.0.1/32, nets 10.0.0.3/32] th dport { 80 } | allow from 10.0.0.1/32 and 2 more",
                "Allow nets 10.0.0.2/32 th dport { 443 } | allow from 10.0.0.2/32",
                "Deny nets 10.9.0.0/16 th dport { 80 } | deny",
                "Allow union [nets 10.0.0.4/32, nets 10.0.0.5/32] th dport { 80 } | allow from 10.0.0.4/32 and 1 more",
            ]
        );
        let union = merged[0].0.peer.as_ref().unwrap();
        assert_eq!(union.source.nets.len(), 2);
        // From 3 distinct peers on: two stay apart, while copies of one rule still become one.
        assert_eq!(
            summary(&allow_runs(rules, 3)),
            [
                "Allow nets 10.0.0.1/32 th dport { 80 } | allow from 10.0.0.1/32",
                "Allow nets 10.0.0.2/32 th dport { 443 } | allow from 10.0.0.2/32",
                "Allow nets 10.0.0.3/32 th dport { 80 } | allow from 10.0.0.3/32",
                "Allow nets 10.0.0.1/32 th dport { 80 } | allow from 10.0.0.1/32",
                "Deny nets 10.9.0.0/16 th dport { 80 } | deny",
                "Allow nets 10.0.0.4/32 th dport { 80 } | allow from 10.0.0.4/32",
                "Allow nets 10.0.0.5/32 th dport { 80 } | allow from 10.0.0.5/32",
            ]
        );
        let copies = vec![allow("10.0.0.1/32", 80), allow("10.0.0.1/32", 80)];
        assert_eq!(
            summary(&allow_runs(copies, MERGE_FROM)),
            ["Allow nets 10.0.0.1/32 th dport { 80 } | allow from 10.0.0.1/32 and 1 more"]
        );
    }
}
