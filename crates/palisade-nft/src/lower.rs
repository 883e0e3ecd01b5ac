//! The engine's model lowered to the IR of one nftables table (`inet`, IPv4 and IPv6).
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
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use palisade_core::cluster::{Cluster, PodId, PolicyId, TierId};
use palisade_core::index::Index;
use palisade_core::matching::{self, address_matches};
use palisade_core::policy::{Action, Direction};
use palisade_core::port::{ContainerPort, Protocol};
use palisade_core::rule::{Entity, Port, Rule};
use palisade_core::verdict::{Endpoint, Side};

use crate::compiled::{dir_name, map_name, slot, AddressSet, Compiled, Def, Entry, Group, GroupKey, PortSet};
use crate::ir::{Addr, Family, PortField, Rule as NftRule, Stmt, Verdict};
use crate::membership::{named, Present, Source, Wanted};
use crate::merge::{Alt, Peer};
use crate::own_node;
use crate::table::{Options, Ruleset};

fn short_hash<T: Hash + ?Sized>(v: &T) -> String {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}

/// Which side of the packet a rule's peer (or own) endpoint is.
struct Sides {
    pub(crate) peer_addr: Addr,
    pub(crate) peer_port: PortField,
    pub(crate) own_port: PortField,
}

fn sides(dir: Direction) -> Sides {
    match dir {
        Direction::Egress => Sides { peer_addr: Addr::Daddr, peer_port: PortField::Dport, own_port: PortField::Sport },
        Direction::Ingress => Sides { peer_addr: Addr::Saddr, peer_port: PortField::Sport, own_port: PortField::Dport },
    }
}

/// One pass of compiling over the persistent state: the cluster as it is now and, in the full
/// compile, its index (a pod change evaluates pod by pod instead).
pub(crate) struct Compiler<'a, 'c> {
    pub(crate) cluster: &'c Cluster,
    pub(crate) st: &'a mut Compiled,
    pub(crate) index: Option<&'a mut Index<'c>>,
    /// Named sets (by definition) the group being compiled uses.
    pub(crate) touched: Vec<Def>,
}

/// The endpoint a group chain protects: who it is, and its named ports.
struct Own {
    pub(crate) side: Side,
    pub(crate) ports: Vec<ContainerPort>,
    /// A host endpoint: failsafe ports first, and its default when no policy decides.
    pub(crate) host: Option<palisade_core::cluster::HostId>,
}

/// Compiles the cluster's policies for one node (or all pods).
pub fn compile(cluster: &Cluster, opts: &Options) -> Ruleset {
    Compiled::new(cluster, opts).rs
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
            model: None,
            synced: Default::default(),
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
}

/// The policies (in evaluation order) that apply to an endpoint in `dir`, found one endpoint
/// at a time (a pod the full compile has the index for; host endpoints always).
pub(crate) fn applicable_to(cluster: &Cluster, side: &Side, dir: Direction) -> Vec<PolicyId> {
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
    pub(crate) fn join(&mut self, dir: Direction, pols: &[PolicyId], p: PodId) {
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
        // the chains' text, with `{PASS}` where a Pass rule goes on to the next tier). Tiers by
        // name and end, not by index: an index depends on the order objects came in, and the
        // same cluster built in another order must get the same names.
        let key = format!(
            "{dir:?}{bodies:?}{tiers:?}{after}{failsafe:?}",
            bodies = bodies.iter().map(|b| b.iter().map(TierRule::key_text).collect::<Vec<_>>()).collect::<Vec<_>>(),
            tiers = tiers
                .iter()
                .map(|t| (&self.cluster.tiers[t.0].name, self.cluster.tiers[t.0].pass_at_end))
                .collect::<Vec<_>>(),
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

    /// Registers an alternative's pending peer set and splits it by the families the set has
    /// addresses of (none: the alternative cannot match).
    fn resolve_peer(&mut self, mut alt: Alt) -> Vec<Alt> {
        let Some(peer) = alt.peer.take() else { return vec![alt] };
        let (name, present) = self.address_set(peer.definition, || peer.source);
        split_families(alt, &[(name, present, true)], peer.field, peer.at)
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

    /// A tier's rules lowered: runs of Allow rules merged (unless [`Options::unmerged`]), peer
    /// sets registered, then each alternative as a rule.
    fn render_tier(&mut self, rules: Vec<(Alt, Action, String)>, dir: Direction) -> Vec<TierRule> {
        let rules =
            if self.st.opts.unmerged { rules } else { crate::merge::allow_runs(rules, crate::merge::MERGE_FROM) };
        let mut out = Vec::new();
        for (alt, action, comment) in rules {
            let then = match action {
                Action::Allow => Some(self.allow(dir)),
                Action::Deny => Some(self.deny(dir, &comment)),
                Action::Pass => None,
                Action::Log => Some(vec![Stmt::Log(format!("palisade {}: ", comment.replace('"', "'")))]),
            };
            for alt in self.resolve_peer(alt) {
                let mut matches: Vec<Stmt> = alt.family.map(Stmt::Nfproto).into_iter().collect();
                matches.extend(alt.exprs);
                matches.push(Stmt::Counter);
                out.push(TierRule { matches, then: then.clone(), comment: comment.replace('"', "'") });
            }
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
        let mut wanted: Vec<(String, Source, bool)> = Vec::new();
        for (nets, positive) in [(&e.nets, true), (&e.not_nets, false)] {
            if !nets.is_empty() {
                wanted.push((format!("nets {nets:?}"), Source::nets(nets.clone()), positive));
            }
        }
        for (sel, positive) in [(&e.selector, true), (&e.not_selector, false)] {
            if let Some(sel) = sel {
                wanted.push((format!("selector {sel}"), Source::selector(sel.clone()), positive));
            }
        }
        let has_named = e.ports.iter().chain(&e.not_ports).any(|p| matches!(p, Port::Named(_)));
        let mut out = Vec::new();
        match wanted.as_slice() {
            // One positive set: left for the tier to merge (see `crate::merge`).
            [(definition, source, true)] if !has_named => {
                for mut alt in alts {
                    let (definition, source) = (definition.clone(), source.clone());
                    alt.peer = Some(Peer { definition, source, field: s.peer_addr, at: alt.exprs.len() });
                    out.push(alt);
                }
            }
            _ => {
                let mut sets: Vec<(String, Present, bool)> = Vec::new();
                for (definition, source, positive) in wanted {
                    let (name, present) = self.address_set(definition, || source);
                    sets.push((name, present, positive));
                }
                for alt in alts {
                    let at = alt.exprs.len();
                    out.extend(split_families(alt, &sets, s.peer_addr, at));
                }
            }
        }
        // Peer ports: numeric in the rule, named per peer address.
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
                let mut a = Alt { family: Some(f), exprs: alt.exprs.clone(), peer: None };
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

/// Adds address-set conditions to an alternative (at expression `at`), once per family that
/// can still match.
fn split_families(alt: Alt, sets: &[(String, Present, bool)], field: Addr, at: usize) -> Vec<Alt> {
    if sets.is_empty() {
        return vec![alt];
    }
    let mut out = Vec::new();
    for f in [Family::V4, Family::V6] {
        if alt.family.is_some_and(|af| af != f) {
            continue;
        }
        let mut a = Alt { family: Some(f), exprs: alt.exprs[..at].to_vec(), peer: None };
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
        a.exprs.extend_from_slice(&alt.exprs[at..]);
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
    pub(crate) matches: Vec<Stmt>,
    pub(crate) then: Option<Vec<Stmt>>,
    pub(crate) comment: String,
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
