//! Random event streams over every kind the agent watches (apply, modify, delete, a relist
//! that drops objects, objects that do not validate or do not build): after every turn the
//! kernel holds what the agent compiled, that ruleset equals a full compile of what its store
//! holds, and, whenever the API's objects build together, a full compile of exactly those.

use std::collections::BTreeMap;

use palisade_ingest::store::Store;
use palisade_kube::kinds::{Kind, KINDS};
use palisade_kube::{Change, ObjectKey};
use palisade_nft::{Compiled, Ruleset};
use proptest::prelude::*;
use serde_json::Value;

use super::objects::{object, SLOTS, VARIANTS};
use super::{agent, apply, decoded, key, kind_of};
use crate::enforcement::{build_options, compile_options};

/// One thing the API server does, as its watch reports it.
#[derive(Clone, Debug)]
enum Op {
    /// An object added or changed (`KINDS[kind]`, its slot, its version).
    Apply { kind: usize, slot: u8, variant: u8 },
    /// The `nth` object (modulo how many) of a kind the API holds goes away.
    Delete { kind: usize, nth: usize },
    /// A relist of a kind (after a 410): the objects whose bit is set in `drop` went while the
    /// watch was away, and `add` came.
    Relist { kind: usize, drop: u8, add: Option<(u8, u8)> },
    /// The kernel refuses the next `n` transactions (a delta, then the whole table sent
    /// instead: two refuse both, and the agent must try again by itself).
    Refuse { n: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let kind = 0..KINDS.len();
    prop_oneof![
        5 => (kind.clone(), 0..SLOTS, 0..VARIANTS).prop_map(|(kind, slot, variant)| Op::Apply { kind, slot, variant }),
        2 => (kind.clone(), 0..8usize).prop_map(|(kind, nth)| Op::Delete { kind, nth }),
        1 => (kind, any::<u8>(), proptest::option::of((0..SLOTS, 0..VARIANTS)))
            .prop_map(|(kind, drop, add)| Op::Relist { kind, drop, add }),
        1 => (1..=3usize).prop_map(|n| Op::Refuse { n }),
    ]
}

/// What the API server holds: every object that validates, by key (an invalid version is
/// refused by the watch, so the last good one is what counts).
#[derive(Default)]
struct Api(BTreeMap<ObjectKey, Value>);

impl Api {
    fn of(&self, kind: &'static Kind) -> Vec<ObjectKey> {
        self.0.keys().filter(|k| k.kind == kind).cloned().collect()
    }

    /// The watch's changes for one operation, and the API's state after it.
    fn changes(&mut self, op: &Op) -> Vec<Change> {
        match *op {
            Op::Apply { kind, slot, variant } => {
                let obj = object(kind, slot, variant);
                if decoded(&obj).is_ok() {
                    self.0.insert(key(&obj), obj.clone());
                }
                vec![apply(&obj)]
            }
            Op::Delete { kind, nth } => {
                let keys = self.of(&KINDS[kind]);
                let Some(k) = keys.get(nth % keys.len().max(1)) else { return Vec::new() };
                self.0.remove(k);
                vec![Change::Delete(k.clone())]
            }
            Op::Relist { kind, drop, add } => {
                let kind = &KINDS[kind];
                let added =
                    add.map(|(slot, variant)| object(KINDS.iter().position(|k| k == kind).unwrap(), slot, variant));
                // Listed, so not gone (valid or not): a relist reports a key as came or went, never both.
                let deleted: Vec<ObjectKey> = self
                    .of(kind)
                    .into_iter()
                    .enumerate()
                    .filter(|(i, k)| drop & (1 << (i % 8)) != 0 && added.as_ref().is_none_or(|o| key(o) != *k))
                    .map(|(_, k)| k)
                    .collect();
                deleted.iter().for_each(|k| {
                    self.0.remove(k);
                });
                let mut out = Vec::new();
                let mut applied = Vec::new();
                if let Some(obj) = added {
                    match decoded(&obj) {
                        Ok(d) => {
                            self.0.insert(key(&obj), obj);
                            applied.push(d);
                        }
                        Err(r) => out.push(Change::Refused(r)),
                    }
                }
                out.push(Change::Relisted { kind, applied, deleted });
                out
            }
            Op::Refuse { .. } => Vec::new(),
        }
    }

    /// A full compile of what the API holds, when it builds.
    fn compiled(&self) -> Option<Ruleset> {
        let args = super::config();
        let inputs = self.0.values().filter_map(|o| decoded(o).ok()?.input).collect();
        let (store, built) = Store::batch(inputs, build_options(&args));
        built.ok()?;
        Some(Compiled::new(store.cluster()?, &compile_options(&args)).ruleset().clone())
    }
}

/// The first list of every kind: one object of each (in slot 0, variant 0), and the Tier
/// Calico's slot-1 policies live in.
fn initial() -> Api {
    let mut api = Api::default();
    for kind in 0..KINDS.len() {
        let obj = object(kind, 0, 0);
        api.0.insert(key(&obj), obj);
    }
    api
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_compiled_ruleset_is_always_a_full_compile_of_what_the_store_holds(
        steps in proptest::collection::vec(proptest::collection::vec(op(), 1..4), 1..16)
    ) {
        let mut api = initial();
        let mut agent = agent();
        agent.turn(vec![super::Feed::Kinds(KINDS.iter().collect())]);
        let mut first = Vec::new();
        for kind in KINDS {
            let objects: Vec<Value> = api.0.values().filter(|o| kind_of(o) == kind).cloned().collect();
            first.extend(super::listed(kind, &objects));
        }
        agent.feed(first);
        prop_assert_eq!(agent.transactions(), 1, "the first ruleset, once every kind synced");
        for (n, step) in steps.iter().enumerate() {
            for op in step {
                if let Op::Refuse { n } = op {
                    agent.table.kernel.refuse_next(*n);
                }
            }
            let changes: Vec<Change> = step.iter().flat_map(|op| api.changes(op)).collect();
            agent.feed(changes);
            // A refused transaction leaves the last good table; turns without changes try
            // again until the kernel takes it (the fake refuses at most 3 in a row).
            for _ in 0..4 {
                if !agent.resend {
                    break;
                }
                agent.feed(Vec::new());
            }
            prop_assert!(!agent.resend, "step {}: the kernel still refuses: {:?}", n, agent.failed);
            let differences = agent.kernel_differences();
            prop_assert!(differences.is_empty(), "step {}: the kernel's table is not what the agent compiled:\n{}", n, differences.join("\n"));
            let compiled = agent.compiled.as_ref().expect("a ruleset").ruleset().clone();
            let args = super::config();
            let (store, built) = Store::batch(agent.view.inputs().cloned().collect(), build_options(&args));
            prop_assert!(built.is_ok(), "step {}: what the store holds does not build: {:?}", n, built.err().map(|p| p.to_string()));
            let full = Compiled::new(store.cluster().expect("a cluster"), &compile_options(&args));
            prop_assert!(&compiled == full.ruleset(), "step {}: the ruleset is not a full compile of the store", n);
            if let Some(whole) = api.compiled() {
                prop_assert!(compiled == whole, "step {}: the API's objects build, but the agent enforces something else", n);
            }
        }
    }
}
