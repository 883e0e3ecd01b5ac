//! Which transaction takes the kernel to a new ruleset more cheaply: the delta from the table
//! in force, or the whole table replacing it. Decided by an estimate of the kernel's work
//! (the objects a transaction creates, and a share for those it deletes), never by a timer,
//! so the choice is the same on a busy and a quiet machine. Either way the kernel ends up
//! holding the same table; only the cost differs.

use std::collections::HashMap;

use crate::ir::Command;
use crate::table::Ruleset;

/// What creating one object (a rule, a chain, a set, an element) costs the kernel against
/// deleting a rule, chain or set, in [`Work::cost`]'s units: creating parses expressions and
/// resolves set names, while deleting only unlinks. An element deleted by itself costs as much
/// as one created (a lookup and a transaction record each); a set deleted whole frees its
/// elements without either.
const CREATE: usize = 4;
const DELETE: usize = 1;

/// Objects a transaction creates and deletes in the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// Rules, chains, sets and elements created.
    pub created: usize,
    /// Set and map elements deleted one by one.
    pub elements_deleted: usize,
    /// Rules, chains and sets deleted (a set with its elements).
    pub deleted: usize,
}

impl Work {
    /// The estimate the choice compares.
    pub fn cost(&self) -> usize {
        (self.created + self.elements_deleted) * CREATE + self.deleted * DELETE
    }

    /// The work of a delta (`in_force`: the table it applies to, whose chains a flush empties).
    pub fn of_delta(delta: &[Command], in_force: &Footprint) -> Work {
        let mut w = Work::default();
        for c in delta {
            match c {
                Command::ReplaceTable => w.deleted += in_force.objects - in_force.element_count,
                Command::AddSet { .. } | Command::AddChain { .. } | Command::AddRule { .. } => w.created += 1,
                Command::Elements { items, add: true, .. } => w.created += items.len(),
                Command::Elements { items, add: false, .. } => w.elements_deleted += items.len(),
                Command::FlushChain(name) => w.deleted += in_force.rules.get(name).copied().unwrap_or(0),
                Command::DeleteChain(_) | Command::DeleteSet(_) => w.deleted += 1,
            }
        }
        w
    }

    /// The work of replacing the table `in_force` with the whole of `target`.
    pub fn of_whole(in_force: &Footprint, target: &Ruleset) -> Work {
        Work { created: objects(target), elements_deleted: 0, deleted: in_force.objects - in_force.element_count }
    }
}

/// How a transaction is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transaction {
    /// The delta from the table in force.
    Delta,
    /// The whole table, replacing the one in force (`script::full_commands`).
    Whole,
}

/// The cheaper way from `in_force` to `target` by the estimate, given the delta between them:
/// the whole table only when it is estimated strictly cheaper (a delta that already replaces
/// the table is sent as it is).
pub fn cheaper(delta: &[Command], in_force: &Footprint, target: &Ruleset) -> Transaction {
    if matches!(delta.first(), Some(Command::ReplaceTable)) {
        return Transaction::Delta;
    }
    match Work::of_whole(in_force, target).cost() < Work::of_delta(delta, in_force).cost() {
        true => Transaction::Whole,
        false => Transaction::Delta,
    }
}

/// The kernel objects a ruleset makes: sets and their elements, chains and their rules, the
/// verdict maps' and the own-node sets' elements (the fixed base chains and maps aside).
pub fn objects(rs: &Ruleset) -> usize {
    let sets: usize = rs.sets.values().map(|s| 1 + s.elements.len()).sum();
    let chains: usize = rs.chains.values().map(|c| 1 + c.len()).sum();
    sets + chains + fixed_map_elements(rs)
}

/// The elements of the verdict maps and the own-node sets (the fixed maps and sets every
/// table declares, whose headers [`objects`] leaves out).
fn fixed_map_elements(rs: &Ruleset) -> usize {
    let maps: usize = rs.maps.values().map(|m| m.len()).sum();
    let own: usize = rs.own_node.elements.values().map(|e| e.len()).sum();
    maps + own
}

/// What a table holds, as far as the estimate needs it: kept for the table in force, so that
/// the choice needs neither the ruleset it replaces nor the whole table's commands.
#[derive(Clone, Debug, Default)]
pub struct Footprint {
    /// The kernel objects ([`objects`]).
    pub objects: usize,
    /// Rules per group chain (what a flush deletes).
    rules: HashMap<String, usize>,
    /// Elements per named set.
    elements: HashMap<String, usize>,
    /// Set and map elements in all.
    pub element_count: usize,
}

impl Footprint {
    pub fn of(rs: &Ruleset) -> Footprint {
        let rules: HashMap<String, usize> = rs.chains.iter().map(|(n, c)| (n.clone(), c.len())).collect();
        let elements: HashMap<String, usize> = rs.sets.iter().map(|(n, s)| (n.clone(), s.elements.len())).collect();
        let element_count = elements.values().sum::<usize>() + fixed_map_elements(rs);
        Footprint { objects: objects(rs), rules, elements, element_count }
    }

    /// Follows a transaction the kernel committed (the footprint of the table it made, in
    /// time linear in the transaction, not in the table).
    pub fn apply(&mut self, commands: &[Command]) {
        for c in commands {
            match c {
                Command::ReplaceTable => *self = Footprint::default(),
                Command::AddSet { name, .. } => {
                    // (The maps' and own-node sets' headers count here and not in `of`: an
                    // estimate can be off by those ten.)
                    self.elements.entry(name.clone()).or_insert_with(|| {
                        self.objects += 1;
                        0
                    });
                }
                Command::Elements { set, items, add, .. } => {
                    let n = items.len();
                    let count = self.elements.get_mut(set);
                    if *add {
                        self.objects += n;
                        self.element_count += n;
                        if let Some(c) = count {
                            *c += n;
                        }
                    } else {
                        self.objects = self.objects.saturating_sub(n);
                        self.element_count = self.element_count.saturating_sub(n);
                        if let Some(c) = count {
                            *c = c.saturating_sub(n);
                        }
                    }
                }
                Command::AddChain { name, hook: None } => {
                    self.rules.entry(name.clone()).or_insert_with(|| {
                        self.objects += 1;
                        0
                    });
                }
                Command::AddChain { hook: Some(_), .. } => {}
                Command::AddRule { chain, .. } => {
                    if let Some(n) = self.rules.get_mut(chain) {
                        *n += 1;
                        self.objects += 1;
                    }
                }
                Command::FlushChain(name) => {
                    let n = self.rules.get_mut(name).map_or(0, std::mem::take);
                    self.objects = self.objects.saturating_sub(n);
                }
                Command::DeleteChain(name) => {
                    let n = self.rules.remove(name).map_or(0, |n| n + 1);
                    self.objects = self.objects.saturating_sub(n);
                }
                Command::DeleteSet(name) => {
                    let n = self.elements.remove(name).unwrap_or(0);
                    self.element_count = self.element_count.saturating_sub(n);
                    self.objects = self.objects.saturating_sub(n + 1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Element, Family, NamedSet, Rule, Stmt, Verdict};

    /// Chains are named by content in a real ruleset: `prefix` keeps two tables' apart.
    fn ruleset(prefix: &str, chains: usize, rules: usize, elements: usize) -> Ruleset {
        let mut rs = Ruleset::default();
        for c in 0..chains {
            let rule = Rule::new(vec![Stmt::Verdict(Verdict::Accept)]);
            rs.chains.insert(format!("{prefix}{c}"), vec![rule; rules]);
        }
        let items = (0..elements).map(|i| Element::Net(format!("198.18.{}.{}/32", i / 256, i % 256).parse().unwrap()));
        rs.sets.insert("s_4".into(), NamedSet { family: Family::V4, with_port: false, elements: items.collect() });
        // Pods' addresses jumping to the chains, as the verdict maps hold them.
        let jumps = (0..chains * 10).map(|i| {
            let ip: std::net::IpAddr = format!("198.19.{}.{}", i / 256, i % 256).parse().unwrap();
            (ip, format!("{prefix}{}", i % chains.max(1)))
        });
        rs.maps.insert("egress_4".into(), jumps.collect());
        rs
    }

    #[test]
    fn a_small_change_goes_as_a_delta_and_a_new_table_whole() {
        let old = ruleset("g", 100, 10, 100);
        let mut small = old.clone();
        small.chains.insert("g_new".into(), vec![Rule::new(vec![Stmt::Verdict(Verdict::Drop)])]);
        let delta = crate::script::update_commands(&old, &small);
        assert_eq!(cheaper(&delta, &Footprint::of(&old), &small), Transaction::Delta);
        // Every chain renamed (every group changed): the delta deletes every map element and
        // adds it again, where the whole table only adds it.
        let renamed = ruleset("h", 100, 10, 100);
        let delta = crate::script::update_commands(&old, &renamed);
        assert_eq!(cheaper(&delta, &Footprint::of(&old), &renamed), Transaction::Whole);
    }

    #[test]
    fn the_footprint_follows_transactions() {
        let (a, b) = (ruleset("a", 50, 3, 300), ruleset("b", 20, 7, 40));
        let mut f = Footprint::of(&a);
        f.apply(&crate::script::update_commands(&a, &b));
        let want = Footprint::of(&b);
        assert_eq!(
            (f.objects, f.element_count, &f.rules, &f.elements),
            (want.objects, want.element_count, &want.rules, &want.elements)
        );
    }
}
