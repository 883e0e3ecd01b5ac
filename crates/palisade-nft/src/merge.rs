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
//! This is the group-chain form of what identity-based data planes do with one verdict lookup
//! keyed by peer: per new connection the cost is the number of distinct rule shapes (protocol,
//! ports, own-side conditions), not the number of policies.

use std::collections::HashMap;

use palisade_core::policy::Action;

use crate::ir::Addr;
use crate::lower::Alt;
use crate::membership::Source;

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

/// Merges each run of adjacent Allow rules (see the module comment); other rules stay as and
/// where they are.
pub(crate) fn allow_runs(rules: Vec<TierEntry>) -> Vec<TierEntry> {
    let mut out = Vec::with_capacity(rules.len());
    let mut run = Vec::new();
    for rule in rules {
        if rule.1 == Action::Allow {
            run.push(rule);
        } else {
            out.extend(merge_run(std::mem::take(&mut run)));
            out.push(rule);
        }
    }
    out.extend(merge_run(run));
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

fn merge_run(run: Vec<TierEntry>) -> Vec<TierEntry> {
    let mut slots: Vec<Merged> = Vec::new();
    let mut by_shape: HashMap<String, usize> = HashMap::new();
    for (mut alt, action, comment) in run {
        let Some(peer) = alt.peer.take() else {
            slots.push(Merged { entry: (alt, action, comment), peers: Vec::new(), rules: 1 });
            continue;
        };
        let shape = shape(&alt, &peer);
        match by_shape.get(&shape) {
            Some(&i) => {
                slots[i].rules += 1;
                let peers = &mut slots[i].peers;
                if !peers.iter().any(|p| p.definition == peer.definition) {
                    peers.push(peer);
                }
            }
            None => {
                by_shape.insert(shape, slots.len());
                slots.push(Merged { entry: (alt, action, comment), peers: vec![peer], rules: 1 });
            }
        }
    }
    slots.into_iter().map(Merged::finish).collect()
}

/// Everything about a rule but its peer set: rules of the same shape merge.
fn shape(alt: &Alt, peer: &Peer) -> String {
    format!("{:?} {:?} {} {}", alt.family, peer.field, peer.at, crate::render::text::stmts(&alt.exprs))
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
    use crate::ir::{PortField, Stmt};

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
        let merged = allow_runs(rules);
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
    }
}
