//! What the agent holds of the cluster: watch changes go into the live
//! [`palisade_ingest::store::Store`] one object at a time (a relist as its exact difference),
//! and nothing one bad object does reaches the kernel. An object that does not decode or
//! validate is refused by the watch: a changed one keeps its last good version, a new one is
//! left out. An object that validates alone but breaks the build (a pod in a namespace not
//! seen yet, a policy in a missing tier) is put back to its last good version (or left out)
//! by `finish`, and tried again with every later change.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use palisade_core::field::{Problem, Severity};
use palisade_ingest::object::{BuildOptions, Input};
use palisade_ingest::store::{ObjectKey as StoreKey, Problems, Store, Touched};
use palisade_kube::kinds::Kind;
use palisade_kube::{Change, Decoded, ObjectKey};

use crate::log;

/// A refused object: why, and whether a last good version of it stays in force.
pub struct Refusal {
    pub why: String,
    pub kept: bool,
    /// It validates alone but broke the build (else its watch refused it).
    built: bool,
}

/// What the store holds, by the API's keys.
pub struct View {
    opts: BuildOptions,
    store: Store,
    held: HashMap<ObjectKey, (StoreKey, Input)>,
    pub refused: BTreeMap<ObjectKey, Refusal>,
    /// Refusals not yet reported as Events (a refusal is reported again only when its reason
    /// or its outcome changes).
    pub reports: Vec<palisade_kube::events::Refusal>,
    /// Each object's `metadata.uid`, for its Events.
    uids: HashMap<ObjectKey, String>,
    /// New versions (or deletions, `None`) that broke the build, tried again with every change.
    retry: BTreeMap<ObjectKey, Option<Input>>,
    /// What each object changed since the last `finish` was before it (`None`: absent).
    prior: BTreeMap<ObjectKey, Option<(StoreKey, Input)>>,
    /// Something changed since the last `finish`.
    pub dirty: bool,
    pub synced: BTreeSet<&'static Kind>,
}

/// A problem in one line: where in the object, and what is wrong.
fn reason(p: &Problem) -> String {
    format!("{}: {}", p.path, p.message)
}

/// At most this many rounds of putting back objects that break the build.
const ROUNDS: usize = 8;

impl View {
    pub fn new(opts: BuildOptions) -> View {
        View {
            store: Store::new(opts.clone()),
            opts,
            held: HashMap::new(),
            refused: BTreeMap::new(),
            reports: Vec::new(),
            uids: HashMap::new(),
            retry: BTreeMap::new(),
            prior: BTreeMap::new(),
            dirty: false,
            synced: BTreeSet::new(),
        }
    }

    /// The cluster of the last successful `finish`.
    pub fn cluster(&self) -> Option<&palisade_core::cluster::Cluster> {
        self.store.cluster()
    }

    /// Every object the store holds: what a full build of the same state starts from.
    #[cfg(test)]
    pub fn inputs(&self) -> impl Iterator<Item = &Input> {
        self.store.inputs()
    }

    /// Objects held per kind (`apiVersion Kind`).
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for key in self.held.keys() {
            *out.entry(key.kind.to_string()).or_default() += 1;
        }
        out
    }

    /// Takes one change from the watch (errors are the loop's business).
    pub fn take(&mut self, change: Change) {
        match change {
            Change::Apply(d) => self.apply(*d),
            Change::Delete(key) => self.remove(&key),
            Change::Relisted { applied, deleted, .. } => {
                applied.into_iter().for_each(|d| self.apply(d));
                deleted.iter().for_each(|k| self.remove(k));
            }
            Change::Synced(kind) => {
                self.synced.insert(kind);
            }
            Change::Refused(r) => {
                let kept = self.held.contains_key(&r.key);
                let why = r
                    .problems
                    .iter()
                    .filter(|p| p.severity == Severity::Error)
                    .map(reason)
                    .collect::<Vec<_>>()
                    .join("; ");
                self.retry.remove(&r.key);
                if let Some(uid) = r.uid {
                    self.uids.insert(r.key.clone(), uid);
                }
                self.refuse(r.key, Refusal { why, kept, built: false });
            }
            Change::Error(_) => {}
        }
    }

    fn refuse(&mut self, key: ObjectKey, refusal: Refusal) {
        let what = if refusal.kept {
            "its last good version stays in force"
        } else {
            "left out (new, and it does not validate)"
        };
        let same = self.refused.get(&key).is_some_and(|r| r.why == refusal.why && r.kept == refusal.kept);
        if !same {
            log(&format!("refused: {key}: {what}: {}", refusal.why));
            let uid = self.uids.get(&key).cloned();
            self.reports.push(palisade_kube::events::Refusal {
                key: key.clone(),
                uid,
                why: refusal.why.clone(),
                kept: refusal.kept,
            });
        }
        self.refused.insert(key, refusal);
    }

    fn unrefuse(&mut self, key: &ObjectKey) {
        self.retry.remove(key);
        if self.refused.remove(key).is_some() {
            log(&format!("no longer refused: {key}"));
        }
    }

    fn apply(&mut self, d: Decoded) {
        self.unrefuse(&d.key);
        if let Some(uid) = d.uid {
            self.uids.insert(d.key.clone(), uid);
        }
        // A kind the engine does not use yet (the loader ignores it too).
        let Some(input) = d.input else { return };
        self.put(d.key, input);
    }

    fn put(&mut self, key: ObjectKey, input: Input) {
        let before = self.held.get(&key).cloned();
        self.prior.entry(key.clone()).or_insert(before);
        let store_key = palisade_ingest::store::key(&input.object, &self.opts);
        self.dirty |= !self.store.apply(input.clone()).is_empty();
        self.held.insert(key, (store_key, input));
    }

    fn remove(&mut self, key: &ObjectKey) {
        self.unrefuse(key);
        self.uids.remove(key);
        self.drop_held(key);
    }

    fn drop_held(&mut self, key: &ObjectKey) {
        let Some((store_key, input)) = self.held.remove(key) else { return };
        self.prior.entry(key.clone()).or_insert(Some((store_key.clone(), input)));
        self.dirty |= !self.store.delete(&store_key).is_empty();
    }

    /// Puts an object back to what it was before this round.
    fn revert(&mut self, key: &ObjectKey) {
        match self.prior.remove(key).flatten() {
            Some((store_key, input)) => {
                self.store.apply(input.clone());
                self.held.insert(key.clone(), (store_key, input));
            }
            None => {
                if let Some((store_key, _)) = self.held.remove(key) {
                    self.store.delete(&store_key);
                }
            }
        }
    }

    /// Builds what is held; objects that break the build are put back (and reported) until it
    /// builds. `Err`: even what was in force before this round does not build.
    pub fn finish(&mut self) -> Result<Touched, Problems> {
        for (key, version) in std::mem::take(&mut self.retry) {
            match version {
                Some(input) => self.put(key, input),
                None => self.drop_held(&key),
            }
        }
        self.dirty = false;
        let mut touched = Touched::default();
        for _ in 0..ROUNDS {
            let problems = match self.store.finish() {
                Ok(t) => {
                    touched.merge(t);
                    let built: Vec<ObjectKey> = std::mem::take(&mut self.prior).into_keys().collect();
                    let fixed: Vec<ObjectKey> =
                        built.into_iter().filter(|k| self.refused.get(k).is_some_and(|r| r.built)).collect();
                    for key in &fixed {
                        self.unrefuse(key);
                    }
                    return Ok(touched);
                }
                Err(p) => p,
            };
            let errors: Vec<&Problem> = problems.0.iter().filter(|p| p.severity == Severity::Error).collect();
            let opts = self.opts.clone();
            let label = |i: &Input| i.label(&opts);
            let changed: Vec<ObjectKey> = self.prior.keys().cloned().collect();
            let named: Vec<ObjectKey> = changed
                .iter()
                .filter(|k| {
                    let now = self.held.get(*k).map(|(_, i)| label(i));
                    let before = self.prior.get(*k).cloned().flatten().map(|(_, i)| label(&i));
                    errors.iter().any(|p| Some(&p.object) == now.as_ref() || Some(&p.object) == before.as_ref())
                })
                .cloned()
                .collect();
            // The errors name no changed object: a removal broke another (a Tier deleted while a
            // policy is in it). Put back the removals; only if there are none, every change.
            let removed: Vec<ObjectKey> = changed.iter().filter(|k| !self.held.contains_key(*k)).cloned().collect();
            let blamed = match (named.is_empty(), removed.is_empty()) {
                (false, _) => named,
                (true, false) => removed,
                (true, true) => changed,
            };
            if blamed.is_empty() {
                return Err(problems);
            }
            let first = errors.first().map(|p| reason(p)).unwrap_or_default();
            for key in blamed {
                let new = self.held.get(&key).map(|(_, i)| i.clone());
                let why = errors
                    .iter()
                    .filter(|p| new.as_ref().is_some_and(|i| label(i) == p.object))
                    .map(|p| reason(p))
                    .collect::<Vec<_>>();
                let why =
                    if why.is_empty() { format!("does not build with the rest: {first}") } else { why.join("; ") };
                self.revert(&key);
                let kept = self.held.contains_key(&key);
                self.retry.insert(key.clone(), new);
                self.refuse(key, Refusal { why, kept, built: true });
            }
        }
        self.store.finish()
    }
}
