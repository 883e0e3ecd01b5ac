//! Pod and policy changes compiled by what they touch: pods leave their groups and join
//! others, sets gain or lose their shares, and the journal gives the delta for the kernel. A
//! change these paths do not follow ([`NeedsFullCompile`]) is compiled in full instead.

use ipnet::IpNet;
use palisade_core::cluster::{Cluster, PodId, PolicyId};
use palisade_core::index::Index;
use palisade_core::policy::Direction;
use palisade_core::verdict::Side;

use crate::compiled::{Compiled, Def};
use crate::lower::{applicable_to, Compiler};
use crate::membership::{Member, Tally};

/// A change the object paths do not follow: a pod gave a named set in use its first (or took
/// its last) address of a family, which changes rules and not only elements; or a policy
/// changed while there are host endpoints. Compile in full instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NeedsFullCompile;

/// Past this many policies or pods in one change, a patch finds the pods that change through
/// an index of the whole cluster (built once: tens of milliseconds at 10,000 pods) instead of
/// testing every pod against every changed policy, or every changed pod against every set and
/// policy.
const INDEXED: usize = 32;

impl Compiled {
    /// Applies policy and pod changes (policies first) to the cluster (this ruleset's own copy,
    /// see [`Compiled::sync`]) and to this ruleset, and returns the delta for the kernel. On
    /// [`NeedsFullCompile`] the cluster holds part of the change and this ruleset must be
    /// rolled back ([`Compiled::rollback`]) and compiled again in full.
    pub(crate) fn patch(
        &mut self,
        cluster: &mut Cluster,
        policies: palisade_core::change::PolicyPatch,
        pods: palisade_core::change::PodPatch,
    ) -> Result<Vec<crate::ir::Command>, NeedsFullCompile> {
        self.begin();
        self.patch_policies(cluster, policies)?;
        self.patch_pods(cluster, pods)?;
        for def in std::mem::take(&mut self.dirty) {
            if self.users(&def).is_some() {
                self.write_sets(&def);
            }
        }
        self.collect_garbage();
        Ok(self.delta())
    }

    /// Pod churn: pods leave their groups and sets, and join others.
    pub(crate) fn patch_pods(
        &mut self,
        cluster: &mut Cluster,
        patch: palisade_core::change::PodPatch,
    ) -> Result<(), NeedsFullCompile> {
        let big = patch.remove.len() + patch.add.len() > INDEXED;
        let mut remove = patch.remove;
        // Highest first: the cluster fills each hole with its last pod, never a pending one.
        remove.sort_unstable_by(|a, b| b.cmp(a));
        for &id in &remove {
            for dir in [Direction::Egress, Direction::Ingress] {
                self.leave(cluster, id, dir);
            }
        }
        // Their shares of the sets go while the cluster still holds them.
        self.contribute(cluster, &remove, false, big)?;
        for &id in &remove {
            self.own_node_pod(cluster, id, false);
        }
        for id in remove {
            cluster.remove_pod(id);
            self.pod_removed(id);
        }
        let added: Vec<PodId> = patch.add.into_iter().map(|pod| cluster.add_pod(pod)).collect();
        self.pod_groups.resize(cluster.pods.len(), [None, None]);
        self.contribute(cluster, &added, true, big)?;
        for &p in &added {
            self.own_node_pod(cluster, p, true);
        }
        // With the pods that came, before those that went, the pairs stand for the addresses
        // the nodes had; a pod taking or leaving a node's address moves them.
        self.own_node_readdress(cluster);
        let mut index = big.then(|| Index::new(cluster));
        for dir in [Direction::Egress, Direction::Ingress] {
            let applicable = index.as_mut().map(|i| i.applicable(dir));
            for &p in &added {
                let pols = match &applicable {
                    Some(all) => all[p.index()].clone(),
                    None => applicable_to(cluster, &Side::pod(cluster, p), dir),
                };
                Compiler { cluster, st: self, index: index.as_mut(), touched: Vec::new() }.join(dir, &pols, p);
            }
        }
        Ok(())
    }

    /// A policy edit: only the pods the old or new versions select change groups, each once
    /// however many policies the change holds. Host endpoints take the full compile.
    pub(crate) fn patch_policies(
        &mut self,
        cluster: &mut Cluster,
        patch: palisade_core::change::PolicyPatch,
    ) -> Result<(), NeedsFullCompile> {
        if patch.remove.is_empty() && patch.add.is_empty() {
            return Ok(());
        }
        if !cluster.host_endpoints.is_empty() {
            return Err(NeedsFullCompile);
        }
        let gone = Gone::new(patch.remove.iter().map(|&i| self.policy_ids[i.index()]).collect());
        let big = patch.add.len() > INDEXED;
        cluster.remove_policies(&patch.remove);
        self.policy_ids.retain(|id| !gone.contains(id));
        let at = cluster.insert_policies(patch.add);
        // The others keep their ids in their (unchanged) order; the new ones get fresh ids.
        let mut kept = std::mem::take(&mut self.policy_ids).into_iter();
        let mut new = at.iter().copied().peekable();
        for i in cluster.policy_ids() {
            let id = if new.next_if_eq(&i).is_some() {
                self.next_policy_id += 1;
                self.next_policy_id - 1
            } else {
                kept.next().expect("every old policy keeps its id")
            };
            self.policy_ids.push(id);
        }
        let mut index = big.then(|| Index::new(cluster));
        let moved = match index.as_mut() {
            Some(index) => self.moved_indexed(index),
            None => self.moved_scanned(cluster, &gone, &at),
        };
        for (p, dir, _) in &moved {
            self.leave(cluster, *p, *dir);
        }
        for (p, dir, pols) in moved {
            Compiler { cluster, st: self, index: index.as_mut(), touched: Vec::new() }.join(dir, &pols, p);
        }
        Ok(())
    }

    /// Pods whose applicable policies change, with their new lists, found pod by pod: groups
    /// that held a policy that went, and pods one of the added policies (at indexes `added`)
    /// selects.
    pub(crate) fn moved_scanned(
        &self,
        cluster: &Cluster,
        gone: &Gone,
        added: &[PolicyId],
    ) -> Vec<(PodId, Direction, Vec<PolicyId>)> {
        // Built at the first pod that moves (a map of every policy: most pods do not move).
        let mut index = None;
        let mut moved = Vec::new();
        for p in cluster.pod_ids() {
            let side = Side::pod(cluster, p);
            for dir in [Direction::Egress, Direction::Ingress] {
                let current = self.group_policies(p, dir).unwrap_or_default();
                let lost = current.iter().any(|id| gone.contains(id));
                let selects = |&&k: &&PolicyId| {
                    let pol = &cluster.policies[k];
                    pol.rules(dir).is_some() && palisade_core::verdict::selects(cluster, pol, &side)
                };
                let gained: Vec<PolicyId> = added.iter().filter(selects).copied().collect();
                if !lost && gained.is_empty() {
                    continue;
                }
                let index = index.get_or_insert_with(|| self.policy_index());
                let mut pols: Vec<PolicyId> = current.iter().filter_map(|id| index.get(id).copied()).collect();
                pols.extend(gained);
                pols.sort_unstable();
                moved.push((p, dir, pols));
            }
        }
        moved
    }

    /// The same from the index: every pod whose applicable policies are not those its group
    /// was compiled with.
    pub(crate) fn moved_indexed(&self, index: &mut Index) -> Vec<(PodId, Direction, Vec<PolicyId>)> {
        let mut moved = Vec::new();
        for dir in [Direction::Egress, Direction::Ingress] {
            for (p, pols) in index.applicable(dir).into_iter().enumerate() {
                let p = PodId::new(p);
                let current = self.group_policies(p, dir).unwrap_or_default();
                if !pols.iter().map(|&i| self.policy_ids[i.index()]).eq(current.iter().copied()) {
                    moved.push((p, dir, pols));
                }
            }
        }
        moved
    }

    /// Adds (or takes out) these pods' addresses and named ports in every set; the sets are
    /// written at the end of the patch. `indexed`: find each address set's pods through an
    /// index once, instead of testing each pod against each set.
    pub(crate) fn contribute(
        &mut self,
        cluster: &Cluster,
        pods: &[PodId],
        add: bool,
        indexed: bool,
    ) -> Result<(), NeedsFullCompile> {
        if pods.is_empty() {
            return Ok(());
        }
        let mut index = indexed.then(|| Index::new(cluster));
        let mut changed = Vec::new();
        for (def, set) in &mut self.address_sets {
            let members: Vec<IpNet> = match index.as_mut() {
                Some(index) => {
                    let covered = set.source.pods(cluster, index);
                    let members = pods.iter().filter(|&&p| covered.contains(p.index()) && cluster.is_policy_subject(p));
                    let ips = members.flat_map(|&p| &cluster.pods[p].ips);
                    ips.map(|ip| IpNet::from(*ip)).collect()
                }
                None => pods.iter().flat_map(|&p| set.source.pod_nets(cluster, p)).collect(),
            };
            if tally(&mut set.addrs, members, add, set.users)? {
                changed.push(Def::Address(def.clone()));
            }
        }
        for (def, set) in &mut self.port_sets {
            let members = pods.iter().flat_map(|&p| set.wanted.pod_pairs(cluster, p)).collect();
            if tally(&mut set.pairs, members, add, set.users)? {
                changed.push(Def::Port(def.clone()));
            }
        }
        self.dirty.extend(changed);
        Ok(())
    }
}

/// The stable ids of the policies a change takes out, sorted: looked up for every policy of
/// every pod's group (a sorted list of one or a few ids is found without hashing, which cost
/// milliseconds at 10,000 pods).
pub(crate) struct Gone(Vec<u32>);

impl Gone {
    fn new(mut ids: Vec<u32>) -> Gone {
        ids.sort_unstable();
        ids.dedup();
        Gone(ids)
    }

    fn contains(&self, id: &u32) -> bool {
        !self.0.is_empty() && self.0.binary_search(id).is_ok()
    }
}

/// Counts one contributor's members in or out; whether anything changed. Rules only depend on
/// a set's families while a group uses it: a family appearing or vanishing then needs the full
/// compile.
fn tally<K: Member>(t: &mut Tally<K>, members: Vec<K>, add: bool, users: usize) -> Result<bool, NeedsFullCompile> {
    if members.is_empty() {
        return Ok(false);
    }
    let before = t.present();
    for m in members {
        if add {
            t.add(m);
        } else {
            t.remove(m);
        }
    }
    if t.present() != before && users > 0 {
        return Err(NeedsFullCompile);
    }
    Ok(true)
}
