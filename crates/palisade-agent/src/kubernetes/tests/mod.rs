//! The Kubernetes agent's loop without root or an API server: a [`KubeAgent`] over the fake
//! kernel, driven turn by turn with the messages the feed would send (objects decoded by
//! palisade-kube's own code). `forbidden`: a 403 keeps the table and fails readiness naming
//! the watch; `streams`: random event streams over every watched kind keep the compiled
//! ruleset equal to a full compile of what the store holds.

mod choice;
mod forbidden;
mod objects;
mod refusals;
mod streams;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kube::api::DynamicObject;
use palisade_kube::kinds::{Kind, KINDS};
use palisade_kube::{Change, Decoded, ObjectKey};
use palisade_nft::ir::{Command, Element, Hook, Rule, SetKind};
use palisade_nft::script;
use serde_json::Value;

use super::feed::Feed;
use super::{KubeAgent, Next};
use crate::health::Health;
use crate::kernel::Fake;
use crate::table::Table;
use crate::{Config, Mode};

/// The agent's arguments in Kubernetes mode, enforcing every pod.
fn config() -> Config {
    Config {
        source: super::SOURCE.into(),
        kubeconfig: None,
        context: None,
        listen: None,
        node: None,
        netns: None,
        mode: Mode::Enforce,
        once: false,
        interval: Duration::from_secs(1),
        settle: Duration::from_millis(100),
        // The periodic comparison of the kernel's table is not what these tests are about.
        reconcile: Duration::from_secs(3600),
        verify_after: Duration::from_secs(1),
        namespace: None,
        flow_log: None,
    }
}

/// A Kubernetes agent over a fake kernel that holds no table yet.
fn agent() -> KubeAgent<Fake> {
    let args = config();
    let health = Health::new(args.interval);
    let table = Table::new(Fake::new(), args.reconcile);
    // The Events' receiver is dropped: refusals are read from the view, not from Events.
    let (events, _) = tokio::sync::mpsc::unbounded_channel();
    KubeAgent::new(args, health, None, table, events)
}

/// The watched kind named `api_version kind`.
fn kind(name: &str) -> &'static Kind {
    KINDS.iter().find(|k| k.to_string() == name).unwrap_or_else(|| panic!("no kind {name}"))
}

/// The kind of a manifest (its `apiVersion` and `kind`).
fn kind_of(obj: &Value) -> &'static Kind {
    kind(&format!("{} {}", obj["apiVersion"].as_str().unwrap(), obj["kind"].as_str().unwrap()))
}

/// `obj` as its watch gives it: decoded and validated by palisade-kube.
fn decoded(obj: &Value) -> Result<Decoded, palisade_kube::Refused> {
    let dynamic: DynamicObject = serde_json::from_value(obj.clone()).expect("an API object");
    palisade_kube::decode::decode(kind_of(obj), dynamic)
}

/// The change a watch sends for `obj` (added or modified).
fn apply(obj: &Value) -> Change {
    match decoded(obj) {
        Ok(d) => Change::Apply(Box::new(d)),
        Err(r) => Change::Refused(r),
    }
}

/// A first list of `kind` holding `objects` (all of them valid), then its barrier.
fn listed(kind: &'static Kind, objects: &[Value]) -> Vec<Change> {
    let applied = objects.iter().map(|o| decoded(o).expect("a valid object")).collect();
    vec![Change::Relisted { kind, applied, deleted: Vec::new() }, Change::Synced(kind)]
}

/// The key of `obj`.
fn key(obj: &Value) -> ObjectKey {
    let kind = kind_of(obj);
    let meta = &obj["metadata"];
    ObjectKey {
        kind,
        namespace: kind.namespaced.then(|| meta["namespace"].as_str().unwrap().to_string()),
        name: meta["name"].as_str().unwrap().to_string(),
    }
}

impl KubeAgent<Fake> {
    /// One turn on these changes, as if they arrived at once.
    fn feed(&mut self, changes: Vec<Change>) {
        let now = Instant::now();
        let woken = changes.into_iter().map(|c| Feed::Change(now, c)).collect();
        assert_eq!(self.turn(woken), Next::Wait);
    }

    /// What `/readyz` answers: (status code, body).
    fn readyz(&self) -> (u16, String) {
        let (code, body) = self.health.answer("/readyz");
        (code.as_u16(), body)
    }

    /// The transactions the kernel committed so far.
    fn transactions(&self) -> usize {
        self.table.kernel.committed().len()
    }

    /// Where the table that every committed transaction, replayed in order, leaves differs from
    /// a full load of the ruleset the agent compiled (empty: the kernel is in step).
    fn kernel_differences(&self) -> Vec<String> {
        let mut replayed = Replay::default();
        self.table.kernel.committed().iter().for_each(|t| replayed.run(t));
        let mut whole = Replay::default();
        if let Some(c) = &self.compiled {
            whole.run(&script::full_commands(c.ruleset()));
        }
        replayed.differences(&whole)
    }
}

/// A table as nf_tables holds it after a sequence of transactions: what the fake kernel's
/// listing (a full load's) cannot tell after deltas that delete.
#[derive(Default, PartialEq, Debug)]
struct Replay {
    sets: BTreeMap<String, (SetKind, BTreeSet<Element>)>,
    chains: BTreeMap<String, (Option<Hook>, Vec<Rule>)>,
}

impl Replay {
    /// Sets and chains that differ from `want`, named.
    fn differences(&self, want: &Replay) -> Vec<String> {
        let mut out = Vec::new();
        for name in self.sets.keys().chain(want.sets.keys()).collect::<BTreeSet<_>>() {
            if self.sets.get(name) != want.sets.get(name) {
                out.push(format!("set {name}: kernel {:?}, compiled {:?}", self.sets.get(name), want.sets.get(name)));
            }
        }
        for name in self.chains.keys().chain(want.chains.keys()).collect::<BTreeSet<_>>() {
            if self.chains.get(name) != want.chains.get(name) {
                out.push(format!(
                    "chain {name}: kernel {:?}, compiled {:?}",
                    self.chains.get(name),
                    want.chains.get(name)
                ));
            }
        }
        out
    }

    fn run(&mut self, transaction: &[Command]) {
        for c in transaction {
            match c {
                Command::ReplaceTable => *self = Replay::default(),
                Command::AddSet { name, kind } => {
                    self.sets.entry(name.clone()).or_insert_with(|| (*kind, BTreeSet::new()));
                }
                Command::Elements { set, items, add, .. } => {
                    let held = &mut self.sets.get_mut(set).unwrap_or_else(|| panic!("elements of no set {set}")).1;
                    for item in items {
                        match (add, item) {
                            (true, _) => {
                                held.insert(item.clone());
                            }
                            // A verdict map's element is deleted by its key alone.
                            (false, Element::MapKey(ip)) => {
                                held.retain(|e| !matches!(e, Element::Jump(at, _) if at == ip))
                            }
                            (false, _) => {
                                held.remove(item);
                            }
                        }
                    }
                }
                Command::AddChain { name, hook } => {
                    self.chains.entry(name.clone()).or_insert_with(|| (*hook, Vec::new()));
                }
                Command::AddRule { chain, rule } => self
                    .chains
                    .get_mut(chain)
                    .unwrap_or_else(|| panic!("a rule in no chain {chain}"))
                    .1
                    .push(rule.clone()),
                Command::FlushChain(chain) => {
                    self.chains.get_mut(chain).unwrap_or_else(|| panic!("flush of no chain {chain}")).1.clear()
                }
                Command::DeleteChain(chain) => {
                    assert!(self.chains.remove(chain).is_some(), "delete of no chain {chain}");
                }
                Command::DeleteSet(set) => {
                    assert!(self.sets.remove(set).is_some(), "delete of no set {set}");
                }
            }
        }
    }
}
