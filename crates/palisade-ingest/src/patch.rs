//! The agent's shortcuts: Pod and policy changes applied to a built cluster without building
//! it again, when the change is one the full build would take without a word.

use std::collections::HashMap;

pub use palisade_core::change::{PodPatch, PolicyPatch};
use palisade_core::cluster::{Cluster, NsId, PodId, PolicyId, TierId};
use palisade_core::policy::PolicyKind;

use crate::batch::Builder;
use crate::kubernetes::pod::{finished_phase, pod_from};
use crate::object::{enforced_policy_kind, BuildOptions, Input, Object};

/// Works out a [`PodPatch`] when the change is one a full build would take without a word:
/// only Pods, each valid and warning-free, in namespaces that exist (and are declared, for the
/// pods that go), none on the host network, no name or address clash. `None` when anything else is the case: the full build then
/// decides (and reports what is wrong, with its code frames).
pub fn pod_patch(
    cluster: &Cluster,
    gone: &[(String, String)],
    came: &[&Input],
    opts: &BuildOptions,
) -> Option<PodPatch> {
    let mut remove = Vec::new();
    for (ns, name) in gone {
        let id = cluster.pod(ns, name)?;
        let pod = &cluster.pods[id];
        // A namespace only inferred from its members may go with this pod, renumbering the rest.
        if pod.host_network || pod.derived || !cluster.namespaces[pod.namespace].declared {
            return None;
        }
        remove.push(id);
    }
    let mut b = Builder { cluster: Cluster::default(), problems: Vec::new() };
    let items = b.check_metadata(came.iter().copied(), opts);
    if items.len() != came.len() || !b.problems.is_empty() {
        return None;
    }
    let mut add = Vec::new();
    let mut taken_ips = std::collections::HashSet::new();
    let leaving: std::collections::HashSet<PodId> = remove.iter().copied().collect();
    for item in &items {
        let Object::Pod(obj) = &item.input.object else { return None };
        if finished_phase(obj).is_some() {
            return None;
        }
        let ns = cluster.namespace(item.namespace.as_deref()?)?;
        let pod = b.with_problems(item, |p| pod_from(obj, item, ns, p));
        if !b.problems.is_empty() || pod.host_network {
            return None;
        }
        let clash = |id: PodId| !leaving.contains(&id);
        if cluster.pod_in(ns, &pod.name).is_some_and(clash) {
            return None;
        }
        for ip in &pod.ips {
            if cluster.pod_by_ip(*ip).is_some_and(clash) || !taken_ips.insert(*ip) {
                return None;
            }
        }
        add.push(pod);
    }
    Some(PodPatch { remove, add })
}

/// Works out a [`PolicyPatch`] when the change is one a full build would take without a word:
/// only enforced policies (Kubernetes, Calico, global), valid and warning-free, in namespaces
/// and tiers that exist, no name clash. `None` otherwise: the full build decides.
pub fn policy_patch(cluster: &Cluster, gone: &[&Input], came: &[&Input], opts: &BuildOptions) -> Option<PolicyPatch> {
    let namespace = |i: &Input| {
        let ns = i.object.metadata().namespace.clone().or_else(|| opts.default_namespace.clone());
        i.object.is_namespaced().then_some(ns)
    };
    // Policies by identity: one lookup per policy, whatever the size of the change.
    let by_key: HashMap<(PolicyKind, Option<NsId>, &str), PolicyId> = cluster
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| ((p.kind, p.namespace, p.name.as_str()), PolicyId::new(i)))
        .collect();
    let mut remove = Vec::new();
    for i in gone {
        let kind = enforced_policy_kind(&i.object)?;
        let ns = namespace(i).map(|ns| ns.and_then(|n| cluster.namespace(&n)));
        let ns = match ns {
            Some(None) => return None,
            Some(id) => id,
            None => None,
        };
        // As for pods: a namespace only inferred from its members may go with this policy.
        if ns.is_some_and(|n| !cluster.namespaces[n].declared) {
            return None;
        }
        let name = i.object.metadata().name.as_deref()?;
        remove.push(*by_key.get(&(kind, ns, name))?);
    }
    let leaving: std::collections::HashSet<PolicyId> = remove.iter().copied().collect();
    let context = cluster.namespaces_and_tiers();
    let mut b = Builder { cluster: context, problems: Vec::new() };
    let items = b.check_metadata(came.iter().copied(), opts);
    if items.len() != came.len() || !b.problems.is_empty() {
        return None;
    }
    let tiers: HashMap<String, TierId> =
        cluster.tiers.iter().enumerate().map(|(i, t)| (t.name.clone(), TierId::new(i))).collect();
    let tier_id = |name: &str| tiers.get(name).copied();
    let mut add = Vec::new();
    for item in &items {
        enforced_policy_kind(&item.input.object)?;
        if item.namespace.as_ref().is_some_and(|ns| cluster.namespace(ns).is_none()) {
            return None;
        }
        let (pol, _) = b.policy_of(item, &tier_id)?;
        if !b.problems.is_empty() {
            return None;
        }
        let clash = by_key.get(&(pol.kind, pol.namespace, pol.name.as_str())).is_some_and(|i| !leaving.contains(i));
        if clash {
            return None;
        }
        add.push(pol);
    }
    Some(PolicyPatch { remove, add })
}
