//! The way out of the live index: `sync(&cluster, &touched)` brings the compiled ruleset to
//! the cluster a store's `finish` produced and returns the delta for the kernel. It reads the
//! model and never writes it. Pod and policy changes are followed by what they touch
//! ([`crate::incremental`]); anything else (a namespace, a tier, a node, a set, a change the
//! incremental paths do not follow) is compiled in full, and the delta is the difference
//! between the two rulesets. Either way the result is what a full compile gives.
//!
//! To take a pod or policy out, the incremental paths need it as it was (its labels and
//! addresses decide which sets it was in), in the cluster it was in: so a following
//! `Compiled` keeps its own copy of the cluster it was compiled from (`Compiled::model`),
//! which only it changes, and the store's cluster is read for what came. Objects are matched
//! by name, not by id: the store's ids of pods and policies are not this copy's.

use std::collections::HashMap;

use palisade_core::change::{Area, ObjectKey, PodPatch, PolicyPatch, Touched};
use palisade_core::cluster::{Cluster, NsId, PodId, PolicyId};

use crate::compiled::{Compiled, Synced};
use crate::ir::Command;
use crate::table::Options;

/// What to send to the kernel to take its table from one ruleset to the next, as one
/// transaction (empty: nothing changed).
pub type Delta = Vec<Command>;

impl Compiled {
    /// Compiles the whole cluster and keeps a copy of it, so that later changes can be
    /// followed by what they touch ([`Compiled::sync`]).
    pub fn following(cluster: &Cluster, opts: &Options) -> Compiled {
        let mut compiled = Compiled::new(cluster, opts);
        compiled.model = Some(cluster.clone());
        compiled
    }

    /// Brings this ruleset to `cluster`, which differs from the one it was compiled from by
    /// the objects in `touched` (what the store's `finish` reported), and returns the delta
    /// for the kernel. Reads the cluster only. Whether the change is followed or compiled in
    /// full, the ruleset afterwards equals `compile(cluster)`.
    pub fn sync(&mut self, cluster: &Cluster, touched: &Touched) -> Delta {
        if touched.is_empty() && self.model.is_some() {
            self.synced = Synced::Unchanged;
            return Delta::new();
        }
        match self.follow(cluster, touched) {
            Some(delta) => {
                self.synced = Synced::Followed;
                delta
            }
            None => self.recompile(cluster),
        }
    }

    /// How the last [`Compiled::sync`] went.
    pub fn synced(&self) -> Synced {
        self.synced
    }

    /// The cluster this ruleset enforces, as this ruleset keeps it (`None` when built with
    /// [`Compiled::new`], which keeps none). Its pod and policy ids are its own.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.model.as_ref()
    }

    /// Compiles `cluster` in full (a whole new model: the agent's full build, a self-check)
    /// and returns the difference from this ruleset; keeps a copy to follow later changes.
    pub fn recompile(&mut self, cluster: &Cluster) -> Delta {
        let mut next = Compiled::following(cluster, &self.opts);
        let delta = crate::script::update_commands(&self.rs, &next.rs);
        next.synced = Synced::Compiled;
        *self = next;
        delta
    }

    /// The incremental path: `None` when the change is not one it follows (the ruleset is
    /// then as it was, for the full compile to diff against).
    fn follow(&mut self, cluster: &Cluster, touched: &Touched) -> Option<Delta> {
        let mut model = self.model.take()?;
        // Only pods and enforced policy kinds (`ObjectKey::followed`) are followed.
        let followed = |k: &ObjectKey, area: Area| matches!(area, Area::Pods | Area::Policies) && k.followed();
        if !touched.objects.iter().all(|(k, (area, _))| followed(k, *area)) || !same_frame(&model, cluster) {
            return None;
        }
        let pods = pod_patch(&model, cluster, touched)?;
        let policies = policy_patch(&model, cluster, touched)?;
        match self.patch(&mut model, policies, pods) {
            Ok(delta) if model.pods.len() == cluster.pods.len() && model.policies.len() == cluster.policies.len() => {
                self.model = Some(model);
                Some(delta)
            }
            _ => {
                self.rollback();
                None
            }
        }
    }
}

/// Whether the two clusters have the same namespaces (ids, names, labels), tiers and nodes:
/// pods and policies of one are then pods and policies of the other as they are (their ids
/// of namespaces and tiers mean the same). A pod-only change can still change them: a full
/// build infers a namespace from its members.
fn same_frame(a: &Cluster, b: &Cluster) -> bool {
    let namespaces = a.namespaces.len() == b.namespaces.len()
        && a.namespaces
            .iter()
            .zip(&b.namespaces)
            .all(|(x, y)| x.name == y.name && x.declared == y.declared && x.labels == y.labels);
    let tiers = a.tiers.len() == b.tiers.len()
        && a.tiers
            .iter()
            .zip(&b.tiers)
            .all(|(x, y)| x.name == y.name && x.order == y.order && x.pass_at_end == y.pass_at_end);
    let nodes = a.nodes.len() == b.nodes.len()
        && a.nodes
            .iter()
            .zip(&b.nodes)
            .all(|(x, y)| x.name == y.name && x.addresses == y.addresses && x.labels == y.labels);
    namespaces && tiers && nodes && a.host_endpoints.is_empty() && b.host_endpoints.is_empty()
}

/// A pod the incremental paths take as it is: on the pod network, from a Pod object.
fn plain(cluster: &Cluster, id: PodId) -> bool {
    let pod = &cluster.pods[id];
    !pod.host_network && !pod.derived
}

/// The touched Pods: out of `model` as they were, in from `cluster` as they are.
fn pod_patch(model: &Cluster, cluster: &Cluster, touched: &Touched) -> Option<PodPatch> {
    let mut patch = PodPatch::default();
    for (key, _) in touched.area(Area::Pods) {
        // A Pod the store filed without a namespace is one the build decides about.
        let ns = key.namespace.as_deref()?;
        if let Some(id) = model.pod(ns, &key.name) {
            plain(model, id).then_some(())?;
            patch.remove.push(id);
        }
        if let Some(id) = cluster.pod(ns, &key.name) {
            plain(cluster, id).then_some(())?;
            patch.add.push(cluster.pods[id].clone());
        }
    }
    Some(patch)
}

/// Policies by namespace and name (several kinds may share both).
fn policies_by_name(cluster: &Cluster) -> HashMap<(Option<NsId>, &str), Vec<PolicyId>> {
    let mut out: HashMap<(Option<NsId>, &str), Vec<PolicyId>> = HashMap::with_capacity(cluster.policies.len());
    for (i, p) in cluster.policies.iter().enumerate() {
        out.entry((p.namespace, p.name.as_str())).or_default().push(PolicyId::new(i));
    }
    out
}

/// Past this many touched policies, `policy_patch` finds them through maps of both clusters'
/// policies by name; below, by scanning (building two maps of 5,000 policies costs more than
/// scanning them for one changed policy: the agent's most common change).
const BY_NAME: usize = 16;

/// Where policies of one namespace and name are, in one cluster.
enum Finder<'c> {
    Scan(&'c Cluster),
    Map(HashMap<(Option<NsId>, &'c str), Vec<PolicyId>>),
}

impl<'c> Finder<'c> {
    fn new(cluster: &'c Cluster, keys: usize) -> Finder<'c> {
        if keys > BY_NAME {
            Finder::Map(policies_by_name(cluster))
        } else {
            Finder::Scan(cluster)
        }
    }

    fn find(&self, name: (Option<NsId>, &str)) -> Vec<PolicyId> {
        match self {
            Finder::Map(m) => m.get(&name).cloned().unwrap_or_default(),
            Finder::Scan(c) => {
                c.policy_ids().filter(|&i| (c.policies[i].namespace, c.policies[i].name.as_str()) == name).collect()
            }
        }
    }
}

/// The touched policies: every policy of their namespace and name out of `model`, and in from
/// `cluster` as they are (a Kubernetes and a Calico policy of one name are both replaced when
/// one changed: the same result, a little more work).
fn policy_patch(model: &Cluster, cluster: &Cluster, touched: &Touched) -> Option<PolicyPatch> {
    let keys: Vec<&ObjectKey> = touched.area(Area::Policies).map(|(k, _)| k).collect();
    if keys.is_empty() {
        return Some(PolicyPatch::default());
    }
    let (old, new) = (Finder::new(model, keys.len()), Finder::new(cluster, keys.len()));
    let mut names = std::collections::HashSet::new();
    let mut patch = PolicyPatch::default();
    for key in keys {
        // Namespaces are the same in both (`same_frame`); a policy in one that does not exist
        // is in neither, and the build decides about it.
        let ns = match (key.kind == "GlobalNetworkPolicy", &key.namespace) {
            (true, None) => None,
            (false, Some(n)) => Some(cluster.namespace(n)?),
            _ => return None,
        };
        if !names.insert((ns, key.name.as_str())) {
            continue;
        }
        let name = (ns, key.name.as_str());
        patch.remove.extend(old.find(name));
        patch.add.extend(new.find(name).into_iter().map(|i| cluster.policies[i].clone()));
    }
    Some(patch)
}
