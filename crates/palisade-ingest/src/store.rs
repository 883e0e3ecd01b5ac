//! The live Store: the one way API objects become the model, one object at a time or as a
//! batch. `apply` and `delete` record what came, changed and went; `finish` turns the objects
//! into a [`Cluster`] and says what it touched. A batch load is "apply all, then finish".
//!
//! `finish` takes the shortest path that gives what a full build gives: when only Pods and
//! enforced policies changed and the full build would take each as it is, the cluster is
//! patched ([`crate::patch`]); anything else is built in full ([`crate::batch::build`]). The
//! property test `store_incremental_agrees_with_batch` holds the two paths to one answer.
//! Like the API server, the store names an object by kind, namespace and name; unlike it, a
//! batch may name one twice (two files), which `finish` reports as the build always has.
//! Pods keep their [`palisade_core::cluster::PodId`] only until a pod leaves (the cluster
//! fills the hole with its last pod); objects keep their [`ObjectId`].

use std::collections::{HashMap, HashSet};

use palisade_core::change::{PodPatch, PolicyPatch};
use palisade_core::cluster::{Cluster, PodId};
use palisade_core::field::{Problem, Severity};

use crate::batch::build_from;
use crate::object::{followed_by_patch, BuildOptions, Input, Object};
use crate::patch::{pod_patch, policy_patch};

/// An object's id in the store: it keeps it while it exists. The id of a deleted object is
/// given out again only after the `finish` that reported it gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(u32);

impl ObjectId {
    /// The id as an index (for slices kept beside the store).
    pub fn index(self) -> usize {
        self.0 as usize
    }

    fn of(index: usize) -> ObjectId {
        ObjectId(u32::try_from(index).expect("fewer than 2^32 objects"))
    }
}

pub use palisade_core::change::{Area, Change, ObjectKey, Touched};

/// The key of an object as the store files it: kind, namespace (the default namespace for
/// namespaced objects that name none; `None` for cluster-scoped kinds) and name.
pub fn key(object: &Object, opts: &BuildOptions) -> ObjectKey {
    let m = object.metadata();
    let namespace = match object.is_namespaced() {
        true => m.namespace.clone().or_else(|| opts.default_namespace.clone()),
        false => None,
    };
    ObjectKey { kind: object.kind(), namespace, name: m.name.clone().unwrap_or_default() }
}

/// The area of the model an object kind feeds.
pub fn area(object: &Object) -> Area {
    match object {
        Object::Pod(_)
        | Object::ServiceAccount(_)
        | Object::Deployment(_)
        | Object::ReplicaSet(_)
        | Object::StatefulSet(_)
        | Object::DaemonSet(_)
        | Object::Job(_)
        | Object::CronJob(_) => Area::Pods,
        Object::Namespace(_) => Area::Namespaces,
        Object::Node(_) => Area::Nodes,
        Object::Service(_) | Object::EndpointSlice(_) => Area::Services,
        Object::CalicoTier(_) => Area::Tiers,
        Object::CalicoNetworkSet(_) | Object::CalicoGlobalNetworkSet(_) => Area::Sets,
        Object::CalicoHostEndpoint(_) => Area::HostEndpoints,
        Object::NetworkPolicy(_)
        | Object::CalicoNetworkPolicy(_)
        | Object::CalicoGlobalNetworkPolicy(_)
        | Object::CalicoStagedNetworkPolicy(_)
        | Object::CalicoStagedGlobalNetworkPolicy(_)
        | Object::CalicoStagedKubernetesNetworkPolicy(_)
        | Object::ClusterNetworkPolicy(_)
        | Object::AdminNetworkPolicy(_)
        | Object::BaselineAdminNetworkPolicy(_) => Area::Policies,
    }
}

/// The objects and the cluster built from them.
pub struct Store {
    opts: BuildOptions,
    /// The objects by id (`None`: a free id). A batch's `Vec<Input>` becomes this in place:
    /// objects are big values, and copying every one (twice, in and out) cost a batch load
    /// 40 % of its time in page faults and `memcpy`.
    slots: Vec<Option<Input>>,
    /// Whether the last successful `finish` took in the object of each id.
    settled: Vec<bool>,
    /// Ids free to give out, and ids freed since the last `finish`.
    free: Vec<ObjectId>,
    released: Vec<ObjectId>,
    by_key: HashMap<ObjectKey, Vec<ObjectId>>,
    /// Versions the last successful `finish` took in that went or were replaced since.
    gone: Vec<Input>,
    touched: Touched,
    cluster: Option<Cluster>,
    last: Path,
}

/// How the last successful `finish` brought the cluster up to date.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Path {
    /// Nothing had changed.
    #[default]
    Unchanged,
    /// Pods and policies patched in ([`crate::patch`]).
    Patch,
    /// Built in full.
    Build,
}

/// Why `finish` has no cluster: every problem found (errors and warnings), as the build
/// reports them.
#[derive(Debug, thiserror::Error)]
#[error("{} error(s) in the objects", .0.iter().filter(|p| p.severity == Severity::Error).count())]
pub struct Problems(pub Vec<Problem>);

impl Store {
    pub fn new(opts: BuildOptions) -> Store {
        Store {
            opts,
            slots: Vec::new(),
            settled: Vec::new(),
            free: Vec::new(),
            released: Vec::new(),
            by_key: HashMap::new(),
            gone: Vec::new(),
            touched: Touched::default(),
            cluster: None,
            last: Path::Unchanged,
        }
    }

    /// A batch (files): every object filed, then `finish`. Unlike [`Store::apply`], an
    /// object named twice stays twice, for `finish` to report.
    pub fn batch(inputs: Vec<Input>, opts: BuildOptions) -> (Store, Result<Touched, Problems>) {
        let mut store = Store::new(opts);
        store.by_key.reserve(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let key = key(&input.object, &store.opts);
            // A key named twice came once: its later copies change nothing in `touched`.
            store.touched.objects.entry(key.clone()).or_insert((area(&input.object), Change::Came));
            store.by_key.entry(key).or_default().push(ObjectId::of(i));
        }
        store.settled = vec![false; inputs.len()];
        store.slots = inputs.into_iter().map(Some).collect();
        let done = store.finish();
        (store, done)
    }

    /// A store holding objects already built into `cluster` elsewhere (a build that held some
    /// objects back, as the agent's directory does): as if they had been applied and finished.
    /// `inputs` must be the objects `cluster` was built from.
    pub fn adopt(inputs: Vec<Input>, cluster: Cluster, opts: BuildOptions) -> Store {
        let mut store = Store::new(opts);
        store.by_key.reserve(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            store.by_key.entry(key(&input.object, &store.opts)).or_default().push(ObjectId::of(i));
        }
        store.settled = vec![true; inputs.len()];
        store.slots = inputs.into_iter().map(Some).collect();
        store.cluster = Some(cluster);
        store.last = Path::Build;
        store
    }

    /// The cluster of the last successful `finish` (`None` before one, or after a failed one).
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// How the last successful `finish` brought the cluster up to date.
    pub fn last_path(&self) -> Path {
        self.last
    }

    /// Takes the cluster out (the store then builds in full on the next `finish`).
    pub fn take_cluster(&mut self) -> Option<Cluster> {
        self.cluster.take()
    }

    /// The objects (in id order: a batch's own order) and the cluster, taking the store apart.
    pub fn into_parts(self) -> (Vec<Input>, Option<Cluster>) {
        // `filter_map` (not `flatten`) collects in place, without a copy of every object.
        #[allow(clippy::filter_map_identity)]
        let inputs = self.slots.into_iter().filter_map(|s| s).collect();
        (inputs, self.cluster)
    }

    /// The objects held now, in id order.
    pub fn inputs(&self) -> impl Iterator<Item = &Input> {
        self.slots.iter().flatten()
    }

    /// The id of each object filed under `key` (two or more: a batch named it twice).
    pub fn ids(&self, key: &ObjectKey) -> &[ObjectId] {
        self.by_key.get(key).map_or(&[], Vec::as_slice)
    }

    /// Adds an object, or replaces the one filed under its key (an update, as the API server
    /// takes it).
    pub fn apply(&mut self, input: Input) -> Touched {
        let key = key(&input.object, &self.opts);
        let area = area(&input.object);
        let touched = match self.by_key.get(&key).and_then(|ids| ids.first().copied()) {
            Some(id) if self.slot(id).object == input.object => return Touched::default(),
            Some(id) => {
                let old = std::mem::replace(self.slot_mut(id), input);
                // Only a version the cluster holds has to leave it.
                if std::mem::take(&mut self.settled[id.index()]) {
                    self.gone.push(old);
                }
                Touched::one(key, area, Change::Changed)
            }
            None => {
                self.insert(key.clone(), input);
                Touched::one(key, area, Change::Came)
            }
        };
        self.touched.merge(touched.clone());
        touched
    }

    /// Files an object as its own, even when another has its key (files may name one object
    /// twice; `finish` reports it as the build always has).
    fn insert(&mut self, key: ObjectKey, input: Input) {
        let id = self.fresh_id();
        self.slots[id.index()] = Some(input);
        self.settled[id.index()] = false;
        self.by_key.entry(key).or_default().push(id);
    }

    /// Takes out every object filed under `key`.
    pub fn delete(&mut self, key: &ObjectKey) -> Touched {
        let Some(ids) = self.by_key.remove(key) else { return Touched::default() };
        let mut fed = Area::Policies;
        for id in ids {
            let input = self.slots[id.index()].take().expect("a filed id holds an object");
            fed = area(&input.object);
            if std::mem::take(&mut self.settled[id.index()]) {
                self.gone.push(input);
            }
            self.released.push(id);
        }
        let touched = Touched::one(key.clone(), fed, Change::Went);
        self.touched.merge(touched.clone());
        touched
    }

    /// Builds what the objects say: a patch of the last cluster when only Pods and enforced
    /// policies changed and the build would take them as they are, a full build otherwise.
    /// Returns what changed since the last successful `finish`; on errors, no cluster (until
    /// a `finish` succeeds) and every problem.
    pub fn finish(&mut self) -> Result<Touched, Problems> {
        if self.cluster.is_some() && self.touched.is_empty() && self.gone.is_empty() {
            self.last = Path::Unchanged;
            return Ok(Touched::default());
        }
        self.last = Path::Patch;
        if !self.patched() {
            self.last = Path::Build;
            // Built from the slots as they are: copying every object would double the memory.
            match build_from(self.slots.iter().flatten(), &self.opts) {
                Ok(cluster) => self.cluster = Some(cluster),
                Err(problems) => {
                    self.cluster = None;
                    return Err(Problems(problems));
                }
            }
        }
        for (settled, slot) in self.settled.iter_mut().zip(&self.slots) {
            *settled = slot.is_some();
        }
        self.free.append(&mut self.released);
        self.gone.clear();
        Ok(std::mem::take(&mut self.touched))
    }

    /// The incremental path: whether it applied (the cluster is then up to date).
    fn patched(&mut self) -> bool {
        let Some(cluster) = self.cluster.as_ref() else { return false };
        let came: Vec<&Input> = self
            .slots
            .iter()
            .zip(&self.settled)
            .filter(|(_, settled)| !**settled)
            .filter_map(|(s, _)| s.as_ref())
            .collect();
        let only_ours = |i: &&Input| followed_by_patch(&i.object);
        let duplicated = self.touched.objects.keys().any(|k| self.ids(k).len() > 1);
        if duplicated || !came.iter().all(only_ours) || !self.gone.iter().all(|i| only_ours(&i)) {
            return false;
        }
        let is_pod = |i: &&Input| matches!(i.object, Object::Pod(_));
        let (pods_came, policies_came): (Vec<&Input>, Vec<&Input>) = came.into_iter().partition(is_pod);
        let (pods_gone, policies_gone): (Vec<&Input>, Vec<&Input>) = self.gone.iter().partition(is_pod);
        let gone: Vec<(String, String)> = pods_gone
            .iter()
            .map(|i| {
                let k = key(&i.object, &self.opts);
                (k.namespace.unwrap_or_default(), k.name)
            })
            .collect();
        let Some(pods) = pod_patch(cluster, &gone, &pods_came, &self.opts) else { return false };
        let Some(policies) = policy_patch(cluster, &policies_gone, &policies_came, &self.opts) else { return false };
        let cluster = self.cluster.as_mut().expect("checked");
        apply_patches(cluster, policies, pods);
        true
    }

    fn fresh_id(&mut self) -> ObjectId {
        if let Some(id) = self.free.pop() {
            return id;
        }
        self.slots.push(None);
        self.settled.push(false);
        ObjectId::of(self.slots.len() - 1)
    }

    fn slot(&self, id: ObjectId) -> &Input {
        self.slots[id.index()].as_ref().expect("a filed id holds an object")
    }

    fn slot_mut(&mut self, id: ObjectId) -> &mut Input {
        self.slots[id.index()].as_mut().expect("a filed id holds an object")
    }
}

/// Applies the patches the way the enforcer does: pods out highest id first (the cluster
/// fills each hole with its last pod), then in; policies out, then in, in evaluation order.
fn apply_patches(cluster: &mut Cluster, policies: PolicyPatch, pods: PodPatch) {
    let mut remove: Vec<PodId> = pods.remove;
    remove.sort_unstable_by(|a, b| b.cmp(a));
    let unique: HashSet<PodId> = remove.iter().copied().collect();
    debug_assert_eq!(unique.len(), remove.len(), "each pod leaves once");
    for id in remove {
        cluster.remove_pod(id);
    }
    for pod in pods.add {
        cluster.add_pod(pod);
    }
    cluster.remove_policies(&policies.remove);
    cluster.insert_policies(policies.add);
}

#[cfg(test)]
mod tests;
