//! What a ruleset was built from, kept so that a change is compiled by what it touches:
//! groups of pods (pods with the same applicable policies and own-side conditions share a
//! chain), the named sets with their members as counted contributions, which chains and sets
//! each group uses, and a journal of what a change touched, from which its delta comes. The
//! primitives here keep the ruleset and that bookkeeping in step; [`crate::lower`] and
//! [`crate::incremental`] use them.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::net::IpAddr;

use palisade_core::cluster::{Cluster, PodId, PolicyId};
use palisade_core::policy::Direction;
use palisade_core::port::ContainerPort;

use crate::ir::{Element, Family, NamedSet, Rule as NftRule};
use crate::membership::{Addrs, Pairs, Source, Wanted};
use crate::own_node;
use crate::table::{Options, Ruleset};

/// `egress` or `ingress`, as chain and map names spell it.
pub(crate) fn dir_name(dir: Direction) -> &'static str {
    match dir {
        Direction::Egress => "egress",
        Direction::Ingress => "ingress",
    }
}

/// What makes two pods' chains identical: the policies that apply, how each Calico rule's
/// own-side conditions come out for the pod, and its named ports when rules use them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct GroupKey {
    pub(crate) dir: Direction,
    /// Stable policy ids (see `Compiled::policy_ids`), in evaluation order.
    pub(crate) policies: Vec<u32>,
    pub(crate) own: Vec<bool>,
    pub(crate) ports: Vec<ContainerPort>,
}

/// A named set, by the definition it was built from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Def {
    Address(String),
    Port(String),
}

pub(crate) struct AddressSet {
    pub(crate) base: String,
    pub(crate) source: Source,
    pub(crate) addrs: Addrs,
    /// Groups (and host endpoints) whose chains were compiled with this set.
    pub(crate) users: usize,
}

pub(crate) struct PortSet {
    pub(crate) base: String,
    pub(crate) wanted: Wanted,
    pub(crate) pairs: Pairs,
    pub(crate) users: usize,
}

/// A group chain's entry: the chains it consists of and how many groups use it.
pub(crate) struct Entry {
    pub(crate) chains: Vec<String>,
    /// Its content key (in `Compiled::cache`).
    pub(crate) key: String,
    pub(crate) refs: usize,
}

pub(crate) struct Group {
    pub(crate) key: GroupKey,
    pub(crate) entry: String,
    pub(crate) defs: Vec<Def>,
    /// Pods in the group (with addresses, enforced here).
    pub(crate) pods: usize,
}

/// What a delta has to send: the old value of everything touched since [`Compiled::begin`].
#[derive(Default)]
pub(crate) struct Journal {
    pub(crate) sets: HashMap<String, Option<NamedSet>>,
    pub(crate) chains: HashMap<String, Option<Vec<NftRule>>>,
    pub(crate) maps: HashMap<(String, IpAddr), Option<String>>,
    /// `own_node_*` elements touched, and whether each was there.
    pub(crate) own_node: HashMap<(Family, Element), bool>,
}

/// The compiled ruleset and what it was built from, so that a pod or policy change updates
/// only what it touches: groups' chains and map elements, and shares of named sets.
pub struct Compiled {
    pub(crate) opts: Options,
    pub(crate) rs: Ruleset,
    /// Chain content → entry chain name, for entries in use.
    pub(crate) cache: HashMap<String, String>,
    pub(crate) entries: HashMap<String, Entry>,
    pub(crate) address_sets: HashMap<String, AddressSet>,
    pub(crate) port_sets: HashMap<String, PortSet>,
    pub(crate) groups: HashMap<GroupKey, usize>,
    /// Groups by id (`None`: a free slot).
    pub(crate) slab: Vec<Option<Group>>,
    /// Each pod's egress and ingress group, when it has one.
    pub(crate) pod_groups: Vec<[Option<usize>; 2]>,
    /// A stable id for each policy of the cluster (by index): a policy coming or going shifts
    /// the indexes of the others but not their ids, so groups keep their keys.
    pub(crate) policy_ids: Vec<u32>,
    pub(crate) next_policy_id: u32,
    /// Sets and entries whose last user left during a patch: dropped at its end unless a new
    /// group took them up again (saves compiling them again when a group is only re-formed).
    pub(crate) garbage: (Vec<Def>, Vec<String>),
    /// Sets whose members changed during a patch: written once at its end (writing a set
    /// renders all its elements, so once per pod would be quadratic in a big change).
    pub(crate) dirty: BTreeSet<Def>,
    /// Free slots of `slab`.
    pub(crate) free: Vec<usize>,
    pub(crate) journal: Option<Journal>,
    /// Each node's addresses, for the `own_node_*` pairs (a full compile works them out; a pod
    /// change can change them: [`Compiled::own_node_readdress`]).
    pub(crate) node_addresses: HashMap<String, BTreeSet<IpAddr>>,
    /// The cluster this ruleset was compiled from, as this ruleset's own copy (`None`: not
    /// kept; the next [`Compiled::sync`] compiles in full). Only the incremental paths change
    /// it, in step with the ruleset: a pod or policy that goes is taken out as it was.
    pub(crate) model: Option<Cluster>,
    pub(crate) synced: Synced,
}

/// A direction's index in a pod's pair of groups.
pub(crate) fn slot(dir: Direction) -> usize {
    match dir {
        Direction::Egress => 0,
        Direction::Ingress => 1,
    }
}

impl Compiled {
    pub fn ruleset(&self) -> &Ruleset {
        &self.rs
    }

    /// Pods whose traffic a group chain decides (in either direction): pods, not map elements
    /// (a pod has one per address and direction).
    pub fn enforced_pods(&self) -> usize {
        self.pod_groups.iter().filter(|g| g.iter().any(Option::is_some)).count()
    }

    /// Starts recording what changes, for [`Compiled::delta`].
    pub(crate) fn begin(&mut self) {
        self.journal = Some(Journal::default());
    }

    /// The commands that take the kernel from the ruleset at [`Compiled::begin`] to this one
    /// (what `script::update_commands` would find, looking only at what was touched).
    pub(crate) fn delta(&mut self) -> Vec<crate::ir::Command> {
        let j = self.journal.take().unwrap_or_default();
        let (mut old, mut new) = (Ruleset::default(), Ruleset::default());
        for (name, was) in j.sets {
            old.sets.extend(was.map(|s| (name.clone(), s)));
            new.sets.extend(self.rs.sets.get(&name).map(|s| (name, s.clone())));
        }
        for (name, was) in j.chains {
            old.chains.extend(was.map(|c| (name.clone(), c)));
            new.chains.extend(self.rs.chains.get(&name).map(|c| (name, c.clone())));
        }
        for ((map, ip), was) in j.maps {
            if let Some(c) = was {
                old.maps.entry(map.clone()).or_default().insert(ip, c);
            }
            if let Some(c) = self.rs.maps.get(&map).and_then(|m| m.get(&ip)) {
                new.maps.entry(map).or_default().insert(ip, c.clone());
            }
        }
        (old.own_node.by_address, new.own_node.by_address) = (self.rs.own_node.by_address, self.rs.own_node.by_address);
        for ((family, element), was) in j.own_node {
            let now = self.rs.own_node.elements.get(&family).is_some_and(|e| e.contains(&element));
            for (side, present) in [(&mut old, was), (&mut new, now)] {
                if present {
                    side.own_node.elements.entry(family).or_default().insert(element.clone());
                }
            }
        }
        crate::script::update_commands(&old, &new)
    }

    /// Undoes everything since [`Compiled::begin`] in the ruleset (after [`NeedsFullCompile`]).
    /// Only [`Compiled::ruleset`] means anything afterwards: the ruleset in force, to diff a
    /// full compile against.
    pub(crate) fn rollback(&mut self) {
        self.garbage = Default::default();
        self.dirty.clear();
        // With the journal taken, the puts below record nothing.
        let j = self.journal.take().unwrap_or_default();
        for (name, was) in j.sets {
            self.set_put(name, was);
        }
        for (name, was) in j.chains {
            self.chain_put(name, was);
        }
        for ((map, ip), was) in j.maps {
            self.map_put(map, ip, was);
        }
        for ((family, element), was) in j.own_node {
            self.own_node_put(family, element, was);
        }
    }

    /// The policies a pod's group in `dir` was compiled with (ids), if it has a group.
    pub(crate) fn group_policies(&self, p: PodId, dir: Direction) -> Option<&[u32]> {
        let id = self.pod_groups.get(p.index()).and_then(|g| g[slot(dir)])?;
        self.slab[id].as_ref().map(|g| g.key.policies.as_slice())
    }

    /// Policy id → its index in the cluster now.
    pub(crate) fn policy_index(&self) -> HashMap<u32, PolicyId> {
        self.policy_ids.iter().enumerate().map(|(i, &id)| (id, PolicyId::new(i))).collect()
    }

    /// The cluster dropped pod `removed`, moving its last pod into that place.
    pub(crate) fn pod_removed(&mut self, removed: PodId) {
        self.pod_groups.swap_remove(removed.index());
    }

    /// Writes a definition's sets (one per family with elements) into the ruleset.
    pub(crate) fn write_sets(&mut self, def: &Def) {
        let (base, per_family, with_port): (String, Vec<(Family, BTreeSet<Element>)>, bool) = match def {
            Def::Address(d) => {
                let set = &self.address_sets[d];
                (set.base.clone(), [Family::V4, Family::V6].map(|f| (f, set.addrs.elements(f))).to_vec(), false)
            }
            Def::Port(d) => {
                let set = &self.port_sets[d];
                (set.base.clone(), [Family::V4, Family::V6].map(|f| (f, set.pairs.elements(f))).to_vec(), true)
            }
        };
        for (family, elements) in per_family {
            let name = format!("{base}_{}", family.suffix());
            let set = (!elements.is_empty()).then_some(NamedSet { family, with_port, elements });
            self.set_put(name, set);
        }
    }

    pub(crate) fn drop_sets(&mut self, def: &Def) {
        let base = match def {
            Def::Address(d) => self.address_sets.remove(d).map(|s| s.base),
            Def::Port(d) => self.port_sets.remove(d).map(|s| s.base),
        };
        for f in [Family::V4, Family::V6] {
            if let Some(base) = &base {
                self.set_put(format!("{base}_{}", f.suffix()), None);
            }
        }
    }

    pub(crate) fn set_put(&mut self, name: String, set: Option<NamedSet>) {
        if let Some(j) = &mut self.journal {
            j.sets.entry(name.clone()).or_insert_with(|| self.rs.sets.get(&name).cloned());
        }
        match set {
            Some(s) => self.rs.sets.insert(name, s),
            None => self.rs.sets.remove(&name),
        };
    }

    /// Pod `p`'s `own_node_*` elements in (or out).
    pub(crate) fn own_node_pod(&mut self, cluster: &Cluster, p: PodId, add: bool) {
        for (family, element) in own_node::pod_elements(cluster, p, self.opts.node.as_deref(), &self.node_addresses) {
            self.own_node_put(family, element, add);
        }
    }

    /// Works out the nodes' addresses again after pods came or went, and moves the `own_node`
    /// pairs of the pods on each node whose addresses changed: a pod on the pod network at a
    /// node's address is what that address is (`Side::ip`), so the node no longer sends from
    /// it; a host-network pod adds its address to its node's.
    pub(crate) fn own_node_readdress(&mut self, cluster: &Cluster) {
        if self.opts.node.is_some() {
            // The sets hold pod addresses only: node addresses do not enter them.
            return;
        }
        let now = own_node::node_addresses(cluster);
        if now == self.node_addresses {
            return;
        }
        let nodes: Vec<&String> = now.keys().chain(self.node_addresses.keys()).collect();
        let changed: BTreeSet<String> =
            nodes.into_iter().filter(|n| now.get(*n) != self.node_addresses.get(*n)).cloned().collect();
        let moved: Vec<PodId> =
            cluster.pod_ids().filter(|&p| cluster.pods[p].node.as_ref().is_some_and(|n| changed.contains(n))).collect();
        for &p in &moved {
            self.own_node_pod(cluster, p, false);
        }
        self.node_addresses = now;
        for &p in &moved {
            self.own_node_pod(cluster, p, true);
        }
    }

    pub(crate) fn own_node_put(&mut self, family: Family, element: Element, present: bool) {
        let set = self.rs.own_node.elements.entry(family).or_default();
        if let Some(j) = &mut self.journal {
            j.own_node.entry((family, element.clone())).or_insert_with(|| set.contains(&element));
        }
        if present {
            set.insert(element);
        } else {
            set.remove(&element);
        }
        // As a full compile: no family without elements.
        if set.is_empty() {
            self.rs.own_node.elements.remove(&family);
        }
    }

    pub(crate) fn chain_put(&mut self, name: String, rules: Option<Vec<NftRule>>) {
        if let Some(j) = &mut self.journal {
            j.chains.entry(name.clone()).or_insert_with(|| self.rs.chains.get(&name).cloned());
        }
        match rules {
            Some(r) => self.rs.chains.insert(name, r),
            None => self.rs.chains.remove(&name),
        };
    }

    pub(crate) fn map_put(&mut self, map: String, ip: IpAddr, chain: Option<String>) {
        if let Some(j) = &mut self.journal {
            let was = self.rs.maps.get(&map).and_then(|m| m.get(&ip)).cloned();
            j.maps.entry((map.clone(), ip)).or_insert(was);
        }
        match chain {
            Some(c) => {
                self.rs.maps.entry(map).or_default().insert(ip, c);
            }
            None => {
                let m = self.rs.maps.get_mut(&map);
                m.map(|m| m.remove(&ip));
                // As a full compile: no map entry without elements.
                if self.rs.maps.get(&map).is_some_and(|m| m.is_empty()) {
                    self.rs.maps.remove(&map);
                }
            }
        }
    }

    /// Pod `p` leaves its group in `dir`; a group nobody is in any more takes its chains and
    /// the sets only it used along.
    pub(crate) fn leave(&mut self, cluster: &Cluster, p: PodId, dir: Direction) {
        let Some(id) = self.pod_groups.get_mut(p.index()).and_then(|g| g[slot(dir)].take()) else { return };
        for ip in &cluster.pods[p].ips {
            self.map_put(map_name(dir, ip), *ip, None);
        }
        let group = self.slab[id].as_mut().expect("a pod's group exists");
        group.pods -= 1;
        if group.pods > 0 {
            return;
        }
        let group = self.slab[id].take().expect("present");
        self.free.push(id);
        self.groups.remove(&group.key);
        self.release(&group.entry, &group.defs);
    }

    /// How many groups use a set (`None`: no such set).
    pub(crate) fn users(&mut self, def: &Def) -> Option<&mut usize> {
        match def {
            Def::Address(d) => self.address_sets.get_mut(d).map(|s| &mut s.users),
            Def::Port(d) => self.port_sets.get_mut(d).map(|s| &mut s.users),
        }
    }

    /// One user fewer for an entry and its sets; those left without users go at the end of
    /// the patch ([`Compiled::collect_garbage`]).
    pub(crate) fn release(&mut self, entry: &str, defs: &[Def]) {
        for def in defs {
            if let Some(u) = self.users(def) {
                *u -= 1;
                if *u == 0 {
                    self.garbage.0.push(def.clone());
                }
            }
        }
        let e = self.entries.get_mut(entry).expect("a group's entry exists");
        e.refs -= 1;
        if e.refs == 0 {
            self.garbage.1.push(entry.to_string());
        }
    }

    pub(crate) fn collect_garbage(&mut self) {
        let (defs, entries) = std::mem::take(&mut self.garbage);
        for def in defs {
            if self.users(&def).is_some_and(|u| *u == 0) {
                self.drop_sets(&def);
            }
        }
        for entry in entries {
            if self.entries.get(&entry).is_some_and(|e| e.refs == 0) {
                let e = self.entries.remove(&entry).expect("present");
                self.cache.remove(&e.key);
                for c in e.chains {
                    self.chain_put(c, None);
                }
            }
        }
    }
}

/// `egress_4` and the like: the verdict map an address of a pod is looked up in.
pub(crate) fn map_name(dir: Direction, ip: &IpAddr) -> String {
    format!("{}_{}", dir_name(dir), Family::of(ip).suffix())
}

/// How the last [`Compiled::sync`] brought the ruleset up to date.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synced {
    /// Nothing was touched.
    #[default]
    Unchanged,
    /// Followed by what the change touched.
    Followed,
    /// Compiled in full.
    Compiled,
}
