//! The engine's model compiled to one nftables table (`inet`, IPv4 and IPv6).
//!
//! Shape, per node:
//! - base chains accept established/related traffic first, drop invalid, then look a pod's
//!   source up in an egress verdict map (on `prerouting`) and its destination in an ingress
//!   verdict map (on `postrouting`): one hash lookup each, whatever the number of pods or
//!   policies; host endpoints have their own maps on `input` and `output`;
//! - each map element jumps to the chain of the pod's *group*: pods with the same applicable
//!   policies and the same own-side rule conditions share one chain, named by a hash of its
//!   content so that recompiling gives the same names;
//! - a group chain holds, per tier, the rules of the policies selecting the group in order;
//!   peers are matched through named sets of addresses (named by what they select, so a pod
//!   change only changes set elements), ports through anonymous sets.
//!
//! [`Compiled`] keeps what the ruleset was built from (groups, set contents as counted
//! contributions, which chains and sets each group uses), so that a pod or policy change is
//! compiled by what it touches and yields its delta directly.
//!
//! Egress "allow" returns to the base chain (ingress still has to agree); ingress "allow"
//! accepts; deny drops (or, in audit mode, logs and lets the packet pass).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use ipnet::IpNet;
use palisade_core::cluster::{Cluster, PodId, PolicyId, TierId};
use palisade_core::index::Index;
use palisade_core::matching::{self, address_matches};
use palisade_core::rule::{Entity, Port, Rule};

use crate::ir::{Addr, Element, Family, NamedSet, PortField, Rule as NftRule, Stmt, Verdict};
use crate::membership::{named, Addrs, Member, Pairs, Present, Source, Tally, Wanted};
use crate::own_node::{self, OwnNode};
use palisade_core::policy::{Action, Direction};
use palisade_core::port::{ContainerPort, Protocol};
use palisade_core::verdict::{Endpoint, Side};

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only pods scheduled to this node are enforced (all pods when `None`).
    pub node: Option<String>,
    /// Log what would be denied and drop nothing.
    pub audit: bool,
    /// Note every new connection in the flow sets (for the agent's flow log). Off by default:
    /// traffic that stays "new" to conntrack (one-way UDP) pays for it on every packet.
    pub record_flows: bool,
}

/// The whole table, in parts that can be compared for incremental updates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub sets: BTreeMap<String, NamedSet>,
    /// Group chains (name → rules); the base chains are the same for every ruleset
    /// (`script::full_commands` adds them).
    pub chains: BTreeMap<String, Vec<NftRule>>,
    /// Verdict maps: `egress_4` etc. → (address → chain).
    pub maps: BTreeMap<String, BTreeMap<IpAddr, String>>,
    /// A node's traffic to its own pods, accepted whatever the policies say.
    pub own_node: OwnNode,
    pub audit: bool,
    pub record_flows: bool,
}

/// Figures about a compiled ruleset.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub chains: usize,
    pub rules: usize,
    pub sets: usize,
    pub set_elements: usize,
}

impl Ruleset {
    pub fn stats(&self) -> Stats {
        Stats {
            chains: self.chains.len(),
            rules: self.chains.values().map(Vec::len).sum(),
            sets: self.sets.len(),
            set_elements: self.sets.values().map(|s| s.elements.len()).sum(),
        }
    }
}

/// Compiles the cluster's policies for one node (or all pods).
pub fn compile(cluster: &Cluster, opts: &Options) -> Ruleset {
    Compiled::new(cluster, opts).rs
}

fn dir_name(dir: Direction) -> &'static str {
    match dir {
        Direction::Egress => "egress",
        Direction::Ingress => "ingress",
    }
}

fn short_hash<T: Hash + ?Sized>(v: &T) -> String {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}

/// Which side of the packet a rule's peer (or own) endpoint is.
struct Sides {
    peer_addr: Addr,
    peer_port: PortField,
    own_port: PortField,
}

fn sides(dir: Direction) -> Sides {
    match dir {
        Direction::Egress => Sides { peer_addr: Addr::Daddr, peer_port: PortField::Dport, own_port: PortField::Sport },
        Direction::Ingress => Sides { peer_addr: Addr::Saddr, peer_port: PortField::Sport, own_port: PortField::Dport },
    }
}

/// One way a rule can match: expressions that must all hold, for one family or both.
#[derive(Clone, Debug, Default)]
struct Alt {
    family: Option<Family>,
    exprs: Vec<Stmt>,
}

impl Alt {
    fn with(mut self, e: Stmt) -> Alt {
        self.exprs.push(e);
        self
    }
}

/// One pass of compiling over the persistent state: the cluster as it is now and, in the full
/// compile, its index (a pod change evaluates pod by pod instead).
struct Compiler<'a, 'c> {
    cluster: &'c Cluster,
    st: &'a mut Compiled,
    index: Option<&'a mut Index<'c>>,
    /// Named sets (by definition) the group being compiled uses.
    touched: Vec<Def>,
}

/// The endpoint a group chain protects: who it is, and its named ports.
struct Own {
    side: Side,
    ports: Vec<ContainerPort>,
    /// A host endpoint: failsafe ports first, and its default when no policy decides.
    host: Option<palisade_core::cluster::HostId>,
}

/// What makes two pods' chains identical: the policies that apply, how each Calico rule's
/// own-side conditions come out for the pod, and its named ports when rules use them.
#[derive(Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    dir: Direction,
    /// Stable policy ids (see `Compiled::policy_ids`), in evaluation order.
    policies: Vec<u32>,
    own: Vec<bool>,
    ports: Vec<ContainerPort>,
}

/// A named set, by the definition it was built from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Def {
    Address(String),
    Port(String),
}

struct AddressSet {
    base: String,
    source: Source,
    addrs: Addrs,
    /// Groups (and host endpoints) whose chains were compiled with this set.
    users: usize,
}

struct PortSet {
    base: String,
    wanted: Wanted,
    pairs: Pairs,
    users: usize,
}

/// A group chain's entry: the chains it consists of and how many groups use it.
struct Entry {
    chains: Vec<String>,
    /// Its content key (in `Compiled::cache`).
    key: String,
    refs: usize,
}

struct Group {
    key: GroupKey,
    entry: String,
    defs: Vec<Def>,
    /// Pods in the group (with addresses, enforced here).
    pods: usize,
}

/// What a delta has to send: the old value of everything touched since [`Compiled::begin`].
#[derive(Default)]
struct Journal {
    sets: HashMap<String, Option<NamedSet>>,
    chains: HashMap<String, Option<Vec<NftRule>>>,
    maps: HashMap<(String, IpAddr), Option<String>>,
    /// `own_node_*` elements touched, and whether each was there.
    own_node: HashMap<(Family, Element), bool>,
}

/// A change the object paths do not follow: a pod gave a named set in use its first (or took
/// its last) address of a family, which changes rules and not only elements; or a policy
/// changed while there are host endpoints. Compile in full instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedsFullCompile;

/// The compiled ruleset and what it was built from, so that a pod or policy change updates
/// only what it touches: groups' chains and map elements, and shares of named sets.
pub struct Compiled {
    opts: Options,
    rs: Ruleset,
    /// Chain content → entry chain name, for entries in use.
    cache: HashMap<String, String>,
    entries: HashMap<String, Entry>,
    address_sets: HashMap<String, AddressSet>,
    port_sets: HashMap<String, PortSet>,
    groups: HashMap<GroupKey, usize>,
    /// Groups by id (`None`: a free slot).
    slab: Vec<Option<Group>>,
    /// Each pod's egress and ingress group, when it has one.
    pod_groups: Vec<[Option<usize>; 2]>,
    /// A stable id for each policy of the cluster (by index): a policy coming or going shifts
    /// the indexes of the others but not their ids, so groups keep their keys.
    policy_ids: Vec<u32>,
    next_policy_id: u32,
    /// Sets and entries whose last user left during a patch: dropped at its end unless a new
    /// group took them up again (saves compiling them again when a group is only re-formed).
    garbage: (Vec<Def>, Vec<String>),
    /// Sets whose members changed during a patch: written once at its end (writing a set
    /// renders all its elements, so once per pod would be quadratic in a big change).
    dirty: BTreeSet<Def>,
    /// Free slots of `slab`.
    free: Vec<usize>,
    journal: Option<Journal>,
    /// Each node's addresses, for the `own_node_*` pairs (a full compile works them out; pod
    /// changes on the object path never change them).
    node_addresses: HashMap<String, BTreeSet<IpAddr>>,
}

/// Past this many policies or pods in one change, a patch finds the pods that change through
/// an index of the whole cluster (built once: tens of milliseconds at 10,000 pods) instead of
/// testing every pod against every changed policy, or every changed pod against every set and
/// policy.
const INDEXED: usize = 32;

fn slot(dir: Direction) -> usize {
    match dir {
        Direction::Egress => 0,
        Direction::Ingress => 1,
    }
}

impl Compiled {
    /// Compiles the whole cluster.
    pub fn new(cluster: &Cluster, opts: &Options) -> Compiled {
        let mut st = Compiled {
            opts: opts.clone(),
            rs: Ruleset { audit: opts.audit, record_flows: opts.record_flows, ..Default::default() },
            cache: HashMap::new(),
            entries: HashMap::new(),
            address_sets: HashMap::new(),
            port_sets: HashMap::new(),
            groups: HashMap::new(),
            slab: Vec::new(),
            garbage: Default::default(),
            dirty: BTreeSet::new(),
            free: Vec::new(),
            pod_groups: vec![[None, None]; cluster.pods.len()],
            policy_ids: (0..cluster.policies.len() as u32).collect(),
            next_policy_id: cluster.policies.len() as u32,
            journal: None,
            node_addresses: own_node::node_addresses(cluster),
        };
        st.rs.own_node.by_address = opts.node.is_none();
        for p in cluster.pod_ids() {
            st.own_node_pod(cluster, p, true);
        }
        let mut index = Index::new(cluster);
        for dir in [Direction::Egress, Direction::Ingress] {
            let applicable = index.applicable(dir);
            let mut c = Compiler { cluster, st: &mut st, index: Some(&mut index), touched: Vec::new() };
            for (p, pols) in cluster.pod_ids().zip(&applicable) {
                c.join(dir, pols, p);
            }
            c.host_endpoints(dir);
        }
        st
    }

    pub fn ruleset(&self) -> &Ruleset {
        &self.rs
    }

    /// Pods whose traffic a group chain decides (in either direction): pods, not map elements
    /// (a pod has one per address and direction).
    pub fn enforced_pods(&self) -> usize {
        self.pod_groups.iter().filter(|g| g.iter().any(Option::is_some)).count()
    }

    /// Starts recording what changes, for [`Compiled::delta`].
    fn begin(&mut self) {
        self.journal = Some(Journal::default());
    }

    /// The commands that take the kernel from the ruleset at [`Compiled::begin`] to this one
    /// (what `script::update_commands` would find, looking only at what was touched).
    fn delta(&mut self) -> Vec<crate::script::Command> {
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
    pub fn rollback(&mut self) {
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

    /// Applies policy and pod changes (policies first) to the cluster and to this ruleset, and
    /// returns the delta for the kernel. On [`NeedsFullCompile`] the cluster holds part of the
    /// change and this ruleset must be rolled back ([`Compiled::rollback`]) and compiled again
    /// in full.
    pub fn patch(
        &mut self,
        cluster: &mut Cluster,
        policies: palisade_core::change::PolicyPatch,
        pods: palisade_core::change::PodPatch,
    ) -> Result<Vec<crate::script::Command>, NeedsFullCompile> {
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
    fn patch_pods(
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
    fn patch_policies(
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
        let gone: HashSet<u32> = patch.remove.iter().map(|&i| self.policy_ids[i.index()]).collect();
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

    /// The policies a pod's group in `dir` was compiled with (ids), if it has a group.
    fn group_policies(&self, p: PodId, dir: Direction) -> Option<&[u32]> {
        let id = self.pod_groups.get(p.index()).and_then(|g| g[slot(dir)])?;
        self.slab[id].as_ref().map(|g| g.key.policies.as_slice())
    }

    /// Pods whose applicable policies change, with their new lists, found pod by pod: groups
    /// that held a policy that went, and pods one of the added policies (at indexes `added`)
    /// selects.
    fn moved_scanned(
        &self,
        cluster: &Cluster,
        gone: &HashSet<u32>,
        added: &[PolicyId],
    ) -> Vec<(PodId, Direction, Vec<PolicyId>)> {
        let index = self.policy_index();
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
    fn moved_indexed(&self, index: &mut Index) -> Vec<(PodId, Direction, Vec<PolicyId>)> {
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

    /// Policy id → its index in the cluster now.
    fn policy_index(&self) -> HashMap<u32, PolicyId> {
        self.policy_ids.iter().enumerate().map(|(i, &id)| (id, PolicyId::new(i))).collect()
    }

    /// The cluster dropped pod `removed`, moving its last pod into that place.
    fn pod_removed(&mut self, removed: PodId) {
        self.pod_groups.swap_remove(removed.index());
    }

    /// Adds (or takes out) these pods' addresses and named ports in every set; the sets are
    /// written at the end of the patch. `indexed`: find each address set's pods through an
    /// index once, instead of testing each pod against each set.
    fn contribute(
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

    /// Writes a definition's sets (one per family with elements) into the ruleset.
    fn write_sets(&mut self, def: &Def) {
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

    fn drop_sets(&mut self, def: &Def) {
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

    fn set_put(&mut self, name: String, set: Option<NamedSet>) {
        if let Some(j) = &mut self.journal {
            j.sets.entry(name.clone()).or_insert_with(|| self.rs.sets.get(&name).cloned());
        }
        match set {
            Some(s) => self.rs.sets.insert(name, s),
            None => self.rs.sets.remove(&name),
        };
    }

    /// Pod `p`'s `own_node_*` elements in (or out).
    fn own_node_pod(&mut self, cluster: &Cluster, p: PodId, add: bool) {
        for (family, element) in own_node::pod_elements(cluster, p, self.opts.node.as_deref(), &self.node_addresses) {
            self.own_node_put(family, element, add);
        }
    }

    fn own_node_put(&mut self, family: Family, element: Element, present: bool) {
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

    fn chain_put(&mut self, name: String, rules: Option<Vec<NftRule>>) {
        if let Some(j) = &mut self.journal {
            j.chains.entry(name.clone()).or_insert_with(|| self.rs.chains.get(&name).cloned());
        }
        match rules {
            Some(r) => self.rs.chains.insert(name, r),
            None => self.rs.chains.remove(&name),
        };
    }

    fn map_put(&mut self, map: String, ip: IpAddr, chain: Option<String>) {
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
    fn leave(&mut self, cluster: &Cluster, p: PodId, dir: Direction) {
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
    fn users(&mut self, def: &Def) -> Option<&mut usize> {
        match def {
            Def::Address(d) => self.address_sets.get_mut(d).map(|s| &mut s.users),
            Def::Port(d) => self.port_sets.get_mut(d).map(|s| &mut s.users),
        }
    }

    /// One user fewer for an entry and its sets; those left without users go at the end of
    /// the patch ([`Compiled::collect_garbage`]).
    fn release(&mut self, entry: &str, defs: &[Def]) {
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

    fn collect_garbage(&mut self) {
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

/// `egress_4` and the like: the verdict map an address of a pod is looked up in.
fn map_name(dir: Direction, ip: &IpAddr) -> String {
    format!("{}_{}", dir_name(dir), Family::of(ip).suffix())
}

/// The policies (in evaluation order) that apply to an endpoint in `dir`, found one endpoint
/// at a time (a pod the full compile has the index for; host endpoints always).
fn applicable_to(cluster: &Cluster, side: &Side, dir: Direction) -> Vec<PolicyId> {
    cluster
        .policy_ids()
        .filter(|&i| {
            let pol = &cluster.policies[i];
            pol.rules(dir).is_some() && palisade_core::verdict::selects(cluster, pol, side)
        })
        .collect()
}

impl Compiler<'_, '_> {
    /// Pod `p` joins the group of pods with its policies in `dir` (compiled on first use).
    fn join(&mut self, dir: Direction, pols: &[PolicyId], p: PodId) {
        let cluster = self.cluster;
        if pols.is_empty() || cluster.pods[p].ips.is_empty() || !self.enforced_here(p) {
            return;
        }
        let key = self.group_key(dir, pols, p);
        let id = match self.st.groups.get(&key) {
            Some(&id) => id,
            None => {
                let own = Own { side: Side::pod(cluster, p), ports: cluster.pods[p].ports.clone(), host: None };
                self.touched.clear();
                let entry = self.group_chain(dir, pols, &own);
                let defs = self.claim(&entry);
                let group = Some(Group { key: key.clone(), entry, defs, pods: 0 });
                let id = match self.st.free.pop() {
                    Some(free) => {
                        self.st.slab[free] = group;
                        free
                    }
                    None => {
                        self.st.slab.push(group);
                        self.st.slab.len() - 1
                    }
                };
                self.st.groups.insert(key, id);
                id
            }
        };
        let group = self.st.slab[id].as_mut().expect("live");
        group.pods += 1;
        let entry = group.entry.clone();
        for ip in &cluster.pods[p].ips {
            self.st.map_put(map_name(dir, ip), *ip, Some(entry.clone()));
        }
        self.st.pod_groups[p.index()][slot(dir)] = Some(id);
    }

    /// The entry and sets the group just compiled uses, each counted once more.
    fn claim(&mut self, entry: &str) -> Vec<Def> {
        self.st.entries.get_mut(entry).expect("compiled").refs += 1;
        let mut defs = std::mem::take(&mut self.touched);
        defs.sort();
        defs.dedup();
        for def in &defs {
            *self.st.users(def).expect("registered") += 1;
        }
        defs
    }

    /// Host endpoints (all of them: Palisade's node is the lab's one node, or `--node`'s
    /// endpoints) get chains in the `host_*` maps, hooked on input (ingress) and output (egress).
    /// Pod changes never touch them: their chains and sets stay claimed.
    fn host_endpoints(&mut self, dir: Direction) {
        let cluster = self.cluster;
        for (h, hep) in cluster.host_ids().zip(&cluster.host_endpoints) {
            if self.st.opts.node.as_ref().is_some_and(|n| *n != hep.node) {
                continue;
            }
            let side = Side { endpoint: Endpoint::Host(h), ip: hep.ips.first().copied() };
            let pols = applicable_to(cluster, &side, dir);
            let own = Own { side, ports: hep.ports.clone(), host: Some(h) };
            self.touched.clear();
            let chain = self.group_chain(dir, &pols, &own);
            self.claim(&chain);
            for ip in &hep.ips {
                let map = format!("host_{}_{}", dir_name(dir), Family::of(ip).suffix());
                self.st.map_put(map, *ip, Some(chain.clone()));
            }
        }
    }

    fn group_key(&self, dir: Direction, pols: &[PolicyId], x: PodId) -> GroupKey {
        let own = Side::pod(self.cluster, x);
        let mut bits = Vec::new();
        let mut named = false;
        for &pi in pols {
            for rule in self.cluster.policies[pi].rules(dir).into_iter().flatten() {
                named |= rule.uses_named_ports();
                let e = if dir == Direction::Egress { &rule.source } else { &rule.destination };
                if e.has_address() || rule.ip_version.is_some() {
                    bits.push(matching::version_ok(rule, own.ip) && address_matches(self.cluster, e, &own));
                }
            }
        }
        let ports = if named { self.cluster.pods[x].ports.clone() } else { Vec::new() };
        let policies = pols.iter().map(|&i| self.st.policy_ids[i.index()]).collect();
        GroupKey { dir, policies, own: bits, ports }
    }

    fn enforced_here(&self, p: PodId) -> bool {
        matches!(Side::pod(self.cluster, p).endpoint, Endpoint::Pod(_))
            && self.st.opts.node.as_ref().is_none_or(|n| self.cluster.pods[p].node.as_deref() == Some(n.as_str()))
    }

    /// Registers a named address set, computing its addresses only the first time a definition
    /// is seen (groups share peers); returns its base name (family suffix added on use) and
    /// whether it holds IPv4 and IPv6 addresses.
    ///
    /// Only families with addresses get a set: the kernel finds a rule's set by walking the
    /// table's list of sets, so every empty set would slow down every load.
    fn address_set(&mut self, definition: String, source: impl FnOnce() -> Source) -> (String, Present) {
        self.touched.push(Def::Address(definition.clone()));
        if let Some(known) = self.st.address_sets.get(&definition) {
            return (known.base.clone(), known.addrs.present());
        }
        let base = format!("a_{}", short_hash(&definition));
        let source = source();
        let addrs = match self.index.as_deref_mut() {
            Some(index) => source.collect(self.cluster, index),
            None => source.scan(self.cluster),
        };
        let present = addrs.present();
        self.st.address_sets.insert(definition.clone(), AddressSet { base: base.clone(), source, addrs, users: 0 });
        self.st.write_sets(&Def::Address(definition));
        (base, present)
    }

    /// Registers a named address . port set for named ports; returns its base name and the
    /// families it has pairs in.
    fn named_port_set(&mut self, definition: String, wanted: Wanted) -> (String, Present) {
        self.touched.push(Def::Port(definition.clone()));
        if let Some(known) = self.st.port_sets.get(&definition) {
            return (known.base.clone(), known.pairs.present());
        }
        let base = format!("n_{}", short_hash(&definition));
        let pairs = wanted.scan(self.cluster);
        let present = pairs.present();
        self.st.port_sets.insert(definition.clone(), PortSet { base: base.clone(), wanted, pairs, users: 0 });
        self.st.write_sets(&Def::Port(definition));
        (base, present)
    }

    /// The chain for one group of pods: built once per distinct content.
    fn group_chain(&mut self, dir: Direction, pols: &[PolicyId], own: &Own) -> String {
        let tiers: Vec<(TierId, &[PolicyId])> = self.cluster.tier_runs(pols).collect();
        let mut bodies: Vec<Vec<TierRule>> = Vec::new();
        for &(_, members) in &tiers {
            let mut rules = Vec::new();
            for &pi in members {
                for rule in self.cluster.policies[pi].rules(dir).into_iter().flatten() {
                    if crate::unenforced::left_out(rule) {
                        continue;
                    }
                    let ri = rule.origin.rule;
                    let comment = format!("{} {}[{ri}] {}", self.cluster.policy_key(pi), dir_name(dir), rule.action);
                    for alt in self.rule_alts(dir, rule, own) {
                        rules.push((alt, rule.action, comment.clone()));
                    }
                }
            }
            bodies.push(self.render_tier(rules, dir));
        }
        // After every tier passed: the profile allows a pod; a host endpoint denies unless it
        // has the default-allow profile.
        let after = match own.host {
            Some(h) if !self.cluster.host_endpoints[h].default_allow => {
                self.deny(dir, &format!("host endpoint {} default", self.cluster.host_endpoints[h].name))
            }
            _ => self.allow(dir),
        };
        let failsafe = own.host.map(|_| failsafe_rule(dir, self.allow(dir)));
        // Content-addressed names: the same content always gets the same chain (the key is
        // the chains' text, with `{PASS}` where a Pass rule goes on to the next tier).
        let key = format!(
            "{dir:?}{bodies:?}{tiers:?}{after}{failsafe:?}",
            bodies = bodies.iter().map(|b| b.iter().map(TierRule::key_text).collect::<Vec<_>>()).collect::<Vec<_>>(),
            tiers = tiers.iter().map(|t| t.0).collect::<Vec<_>>(),
            after = crate::render::text::stmts(&after),
            failsafe = failsafe.as_ref().map(ToString::to_string),
        );
        if let Some(name) = self.st.cache.get(&key) {
            return name.clone();
        }
        let name = format!("{}_{}", &dir_name(dir)[..2], short_hash(&key));
        let names: Vec<String> = (0..bodies.len()).map(|i| format!("{name}_t{i}")).collect();
        for (i, body) in bodies.into_iter().enumerate() {
            let tier = &self.cluster.tiers[tiers[i].0];
            let next = match names.get(i + 1) {
                Some(n) => vec![Stmt::Verdict(Verdict::Goto(n.clone()))],
                None => after.clone(),
            };
            let end =
                if tier.pass_at_end { next.clone() } else { self.deny(dir, &format!("end of tier {}", tier.name)) };
            let mut lines: Vec<NftRule> = body.into_iter().map(|r| r.into_rule(&next)).collect();
            lines.push(counted(end).with_comment(format!("end of tier {}", tier.name)));
            self.st.chain_put(names[i].clone(), Some(lines));
        }
        // Without failsafe ports the group's entry is its first tier chain: a chain holding
        // only `goto` would cost a rule and a chain per group in every load.
        let entry = match (failsafe, names.first()) {
            (None, Some(first)) => first.clone(),
            (failsafe, first) => {
                let mut top: Vec<NftRule> = failsafe.into_iter().collect();
                top.push(match first {
                    Some(first) => NftRule::new(vec![Stmt::Verdict(Verdict::Goto(first.clone()))]),
                    None => counted(after).with_comment("no policy selects this host endpoint"),
                });
                self.st.chain_put(name.clone(), Some(top));
                name.clone()
            }
        };
        let mut chains = names;
        if entry == name {
            chains.push(name);
        }
        self.st.cache.insert(key.clone(), entry.clone());
        self.st.entries.insert(entry.clone(), Entry { chains, key, refs: 0 });
        entry
    }

    fn allow(&self, dir: Direction) -> Vec<Stmt> {
        vec![Stmt::Verdict(match dir {
            Direction::Egress => Verdict::Return,
            Direction::Ingress => Verdict::Accept,
        })]
    }

    /// Drop, or in audit mode log and let the packet go on as allowed.
    fn deny(&self, dir: Direction, why: &str) -> Vec<Stmt> {
        if self.st.rs.audit {
            let mut out = vec![Stmt::Log(format!("palisade audit deny {}: ", why.replace('"', "'")))];
            out.extend(self.allow(dir));
            out
        } else {
            vec![Stmt::Verdict(Verdict::Drop)]
        }
    }

    fn render_tier(&self, rules: Vec<(Alt, Action, String)>, dir: Direction) -> Vec<TierRule> {
        let mut out = Vec::new();
        for (alt, action, comment) in rules {
            let then = match action {
                Action::Allow => Some(self.allow(dir)),
                Action::Deny => Some(self.deny(dir, &comment)),
                Action::Pass => None,
                Action::Log => Some(vec![Stmt::Log(format!("palisade {}: ", comment.replace('"', "'")))]),
            };
            let mut matches: Vec<Stmt> = alt.family.map(Stmt::Nfproto).into_iter().collect();
            matches.extend(alt.exprs);
            matches.push(Stmt::Counter);
            out.push(TierRule { matches, then, comment: comment.replace('"', "'") });
        }
        out
    }

    /// Every way `rule` can match for the endpoint `own` (already known to be selected).
    fn rule_alts(&mut self, dir: Direction, rule: &Rule, own: &Own) -> Vec<Alt> {
        if rule.protocol.is_none() && rule.uses_named_ports() {
            // A named port without a protocol (ClusterNetworkPolicy's destinationNamedPort)
            // takes the container port's own: one alternative per protocol a port can have.
            let per_protocol = [Protocol::TCP, Protocol::UDP, Protocol::SCTP]
                .map(|p| Rule { protocol: Some(p.number()), ..rule.clone() });
            return per_protocol.iter().flat_map(|r| self.rule_alts(dir, r, own)).collect();
        }
        let (own_ports, own) = (&own.ports, &own.side);
        let (own_e, peer_e) = match dir {
            Direction::Egress => (&rule.source, &rule.destination),
            Direction::Ingress => (&rule.destination, &rule.source),
        };
        if !address_matches(self.cluster, own_e, own) || !matching::version_ok(rule, own.ip) {
            return Vec::new();
        }
        let (own_e, peer_e) = (every_port_open(own_e), every_port_open(peer_e));
        let s = sides(dir);
        let mut base = Alt::default();
        if let Some(v) = rule.ip_version {
            base.family = Some(if v == 4 { Family::V4 } else { Family::V6 });
        }
        if let Some(n) = rule.protocol {
            base = base.with(Stmt::L4proto { negate: false, protocols: vec![n] });
        }
        if let Some(n) = rule.not_protocol {
            base = base.with(Stmt::L4proto { negate: true, protocols: vec![n] });
        }
        let proto = rule.protocol;
        // Own ports are packet fields: named ones resolve against this pod's ports.
        for (list, negate) in [(&own_e.ports, false), (&own_e.not_ports, true)] {
            match port_expr(list, s.own_port, proto, own_ports, negate) {
                Err(()) => return Vec::new(),
                Ok(Some(e)) => base = base.with(e),
                Ok(None) => {}
            }
        }
        let alts = icmp_alts(rule, base);
        self.peer_entity(&peer_e, dir, proto, alts)
    }

    /// Conditions on the peer: nets, selectors (as address sets), ports (named per peer).
    fn peer_entity(&mut self, e: &Entity, dir: Direction, proto: Option<u8>, alts: Vec<Alt>) -> Vec<Alt> {
        let s = sides(dir);
        let mut sets: Vec<(String, Present, bool)> = Vec::new();
        for (nets, positive) in [(&e.nets, true), (&e.not_nets, false)] {
            if !nets.is_empty() {
                let (name, present) = self.address_set(format!("nets {nets:?}"), || Source::Nets(nets.clone()));
                sets.push((name, present, positive));
            }
        }
        for (sel, positive) in [(&e.selector, true), (&e.not_selector, false)] {
            if let Some(sel) = sel {
                let (name, present) = self.address_set(format!("selector {sel}"), || Source::Selector(sel.clone()));
                sets.push((name, present, positive));
            }
        }
        let mut out = Vec::new();
        for alt in alts {
            out.extend(split_families(alt, &sets, s.peer_addr));
        }
        // Peer ports: numeric in the rule, named per peer address.
        let has_named = e.ports.iter().chain(&e.not_ports).any(|p| matches!(p, Port::Named(_)));
        if !has_named {
            let (Ok(pos), Ok(neg)) = (
                port_expr(&e.ports, s.peer_port, proto, &[], false),
                port_expr(&e.not_ports, s.peer_port, proto, &[], true),
            ) else {
                return Vec::new();
            };
            return out
                .into_iter()
                .map(|mut a| {
                    a.exprs.extend(pos.clone());
                    a.exprs.extend(neg.clone());
                    a
                })
                .collect();
        }
        self.named_peer_ports(e, s, proto, out)
    }

    fn named_peer_ports(&mut self, e: &Entity, s: Sides, proto: Option<u8>, alts: Vec<Alt>) -> Vec<Alt> {
        let protocol = proto.and_then(Protocol::from_number);
        let wanted = |ports: &[Port]| {
            let named = ports.iter().filter_map(|p| match (p, protocol) {
                (Port::Named(n), Some(pr)) => Some((n.clone(), pr)),
                _ => None,
            });
            Wanted(named.collect())
        };
        let numeric =
            |ports: &[Port]| ports.iter().filter(|p| matches!(p, Port::Range(..))).cloned().collect::<Vec<_>>();
        let (pos_set, pos) = self.named_port_set(format!("calico named {:?} {proto:?}", e.ports), wanted(&e.ports));
        let (neg_set, neg) =
            self.named_port_set(format!("calico named {:?} {proto:?}", e.not_ports), wanted(&e.not_ports));
        let mut out = Vec::new();
        for alt in alts {
            for f in [Family::V4, Family::V6] {
                if alt.family.is_some_and(|af| af != f) {
                    continue;
                }
                let mut a = Alt { family: Some(f), exprs: alt.exprs.clone() };
                a.exprs.extend(port_expr(&numeric(&e.not_ports), s.peer_port, proto, &[], true).ok().flatten());
                let pairs = |negate: bool, set: &str| Stmt::AddressPort {
                    family: f,
                    addr: s.peer_addr,
                    port: s.peer_port,
                    negate,
                    set: format!("{set}_{}", f.suffix()),
                };
                if neg.has(f) {
                    a.exprs.push(pairs(true, &neg_set));
                }
                if e.ports.is_empty() {
                    out.push(a);
                    continue;
                }
                // Positive ports: a numeric match, or a named one (two alternatives).
                let nums = numeric(&e.ports);
                if let Ok(Some(e)) = port_expr(&nums, s.peer_port, proto, &[], false) {
                    out.push(a.clone().with(e));
                }
                if pos.has(f) {
                    out.push(a.with(pairs(false, &pos_set)));
                }
            }
        }
        out
    }
}

/// A port condition on `field` (`sport`/`dport`); named ports resolved against `named_ports`.
/// `Err(())`: a positive list that resolves to no port, which can never match.
fn port_expr(
    ports: &[Port],
    field: PortField,
    proto: Option<u8>,
    named_ports: &[ContainerPort],
    negate: bool,
) -> Result<Option<Stmt>, ()> {
    if ports.is_empty() {
        return Ok(None);
    }
    let protocol = proto.and_then(Protocol::from_number);
    let mut ranges = Vec::new();
    for p in ports {
        match p {
            Port::Range(a, b) => ranges.push((*a, *b)),
            Port::Named(n) => {
                if let Some(pr) = protocol {
                    ranges.extend(named_ports.iter().filter(|c| named(c, n, pr)).map(|c| (c.port, c.port)));
                }
            }
        }
    }
    match (ranges.is_empty(), negate) {
        (true, false) => Err(()),
        (true, true) => Ok(None),
        (false, negate) => Ok(Some(Stmt::Ports { field, negate, ranges })),
    }
}

/// An entity whose positive ports admit every port sets no port condition (a Kubernetes port
/// without a number lowers to every port of its protocol).
fn every_port_open(e: &Entity) -> std::borrow::Cow<'_, Entity> {
    if e.ports.contains(&Port::ALL) {
        std::borrow::Cow::Owned(Entity { ports: Vec::new(), ..e.clone() })
    } else {
        std::borrow::Cow::Borrowed(e)
    }
}

fn icmp_alts(c: &Rule, base: Alt) -> Vec<Alt> {
    let v6 = c.protocol == Some(58);
    let icmp = |field, negate, value| Stmt::Icmp { v6, field, negate, value };
    let (ty, code) = (crate::ir::IcmpField::Type, crate::ir::IcmpField::Code);
    let mut alt = base;
    if let Some(i) = &c.icmp {
        if let Some(t) = i.type_ {
            alt = alt.with(icmp(ty, false, t));
        }
        if let Some(c) = i.code {
            alt = alt.with(icmp(code, false, c));
        }
    }
    let Some(n) = &c.not_icmp else { return vec![alt] };
    match (n.type_, n.code) {
        (Some(t), None) => vec![alt.with(icmp(ty, true, t))],
        // not (type t and code c): another type, or the same type with another code.
        (Some(t), Some(c)) => {
            vec![alt.clone().with(icmp(ty, true, t)), alt.with(icmp(ty, false, t)).with(icmp(code, true, c))]
        }
        _ => vec![alt],
    }
}

/// Adds address-set conditions to an alternative, once per family that can still match.
fn split_families(alt: Alt, sets: &[(String, Present, bool)], field: Addr) -> Vec<Alt> {
    if sets.is_empty() {
        return vec![alt];
    }
    let mut out = Vec::new();
    for f in [Family::V4, Family::V6] {
        if alt.family.is_some_and(|af| af != f) {
            continue;
        }
        let mut a = Alt { family: Some(f), exprs: alt.exprs.clone() };
        let mut possible = true;
        for (name, present, positive) in sets {
            let empty = !present.has(f);
            match (positive, empty) {
                (true, true) => possible = false,
                (false, true) => {}
                (positive, false) => {
                    let set = format!("{name}_{}", f.suffix());
                    a.exprs.push(Stmt::Address { family: f, field, negate: !positive, set });
                }
            }
        }
        if possible {
            out.push(a);
        }
    }
    out
}

/// Felix's failsafe ports, accepted before any host endpoint policy.
fn failsafe_rule(dir: Direction, allow: Vec<Stmt>) -> NftRule {
    let ports = palisade_core::verdict::failsafe_ports(dir).into_iter().map(|(proto, port)| (proto.number(), port));
    let mut stmts = vec![Stmt::ProtocolPorts(ports.collect()), Stmt::Counter];
    stmts.extend(allow);
    NftRule::new(stmts).with_comment("failsafe")
}

/// `counter` and then `then`.
fn counted(then: Vec<Stmt>) -> NftRule {
    let mut stmts = vec![Stmt::Counter];
    stmts.extend(then);
    NftRule::new(stmts)
}

/// A policy rule of a tier chain before the chain after the tier is known: `then` is `None`
/// for Pass, which goes on to the next tier's chain.
struct TierRule {
    matches: Vec<Stmt>,
    then: Option<Vec<Stmt>>,
    comment: String,
}

impl TierRule {
    /// The rule's text, `{PASS}` standing for where Pass goes (what names the chain).
    fn key_text(&self) -> String {
        let then = match &self.then {
            Some(t) => crate::render::text::stmts(t),
            None => "{PASS}".into(),
        };
        format!("{} {then} comment \"{}\"", crate::render::text::stmts(&self.matches), self.comment)
    }

    fn into_rule(self, next: &[Stmt]) -> NftRule {
        let mut stmts = self.matches;
        stmts.extend(self.then.unwrap_or_else(|| next.to_vec()));
        NftRule { stmts, comment: Some(self.comment) }
    }
}
