//! The engine's model compiled to one nftables table (`inet`, IPv4 and IPv6).
//!
//! Shape, per node:
//! - `forward`, `input` and `output` base chains accept established/related traffic first,
//!   drop invalid, then look the source up in an egress verdict map and the destination in an
//!   ingress verdict map (one hash lookup each, whatever the number of pods or policies);
//! - each map element jumps to the chain of the pod's *group*: pods with the same applicable
//!   policies and the same own-side rule conditions share one chain, named by a hash of its
//!   content so that recompiling gives the same names;
//! - a group chain holds, per tier, the rules of the policies selecting the group in order;
//!   peers are matched through named sets of addresses (named by what they select, so a pod
//!   change only changes set elements), ports through anonymous sets.
//!
//! Egress "allow" returns to the base chain (ingress still has to agree); ingress "allow"
//! accepts; deny drops (or, in audit mode, logs and lets the packet pass).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use ipnet::IpNet;
use palisade_core::calico::rule::{address_matches, CalicoPort, CalicoRule, Entity};
use palisade_core::cluster::{Cluster, PodId};
use palisade_core::index::Index;
use palisade_core::peer::Peer;
use palisade_core::policy::{Action, Direction, Match, Rule};
use palisade_core::port::{ContainerPort, PortSpec, Protocol, RulePort};
use palisade_core::verdict::{Endpoint, Side};

pub const TABLE: &str = "palisade";

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
    fn keyword(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
    pub fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }
    fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }
}

/// A named set: addresses (interval) or address . port pairs (named ports).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedSet {
    pub family: Family,
    pub with_port: bool,
    pub elements: BTreeSet<String>,
}

/// The whole table, in parts that can be compared for incremental updates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub sets: BTreeMap<String, NamedSet>,
    /// Group chains (name → rules); base chains are fixed text.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Verdict maps: `egress_4` etc. → (address → chain).
    pub maps: BTreeMap<String, BTreeMap<String, String>>,
    pub audit: bool,
    pub record_flows: bool,
}

/// Figures about a compiled ruleset.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub enforced_pods: usize,
    pub chains: usize,
    pub rules: usize,
    pub sets: usize,
    pub set_elements: usize,
}

impl Ruleset {
    pub fn stats(&self) -> Stats {
        Stats {
            enforced_pods: self.maps.values().map(|m| m.len()).sum::<usize>(),
            chains: self.chains.len(),
            rules: self.chains.values().map(Vec::len).sum(),
            sets: self.sets.len(),
            set_elements: self.sets.values().map(|s| s.elements.len()).sum(),
        }
    }
}

/// Compiles the cluster's policies for one node (or all pods).
pub fn compile(cluster: &Cluster, opts: &Options) -> Ruleset {
    let mut index = Index::new(cluster);
    let mut c = Compiler {
        cluster,
        opts,
        rs: Ruleset { audit: opts.audit, record_flows: opts.record_flows, ..Default::default() },
        cache: HashMap::new(),
        address_sets: HashMap::new(),
    };
    let mut groups: HashMap<GroupKey, String> = HashMap::new();
    for dir in [Direction::Egress, Direction::Ingress] {
        let applicable = index.applicable(dir);
        for (p, pols) in applicable.iter().enumerate() {
            if pols.is_empty() || !c.enforced_here(&index, p) {
                continue;
            }
            let key = c.group_key(&index, dir, pols, p);
            let chain = match groups.get(&key) {
                Some(chain) => chain.clone(),
                None => {
                    let own = Own { side: index.side(p), ports: cluster.pods[p].ports.clone(), host: None };
                    let chain = c.group_chain(&mut index, dir, pols, &own);
                    groups.insert(key, chain.clone());
                    chain
                }
            };
            for ip in &cluster.pods[p].ips {
                let map = format!("{}_{}", dir_name(dir), Family::of(ip).suffix());
                c.rs.maps.entry(map).or_default().insert(ip.to_string(), chain.clone());
            }
        }
        c.host_endpoints(&mut index, dir);
    }
    c.rs
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
    peer_addr: &'static str,
    peer_port: &'static str,
    own_port: &'static str,
}

fn sides(dir: Direction) -> Sides {
    match dir {
        Direction::Egress => Sides { peer_addr: "daddr", peer_port: "dport", own_port: "sport" },
        Direction::Ingress => Sides { peer_addr: "saddr", peer_port: "sport", own_port: "dport" },
    }
}

/// One way a rule can match: expressions that must all hold, for one family or both.
#[derive(Clone, Debug, Default)]
struct Alt {
    family: Option<Family>,
    exprs: Vec<String>,
}

impl Alt {
    fn with(mut self, e: impl Into<String>) -> Alt {
        self.exprs.push(e.into());
        self
    }
}

/// Addresses split by family.
#[derive(Clone, Debug, Default, Hash)]
struct Addrs {
    v4: BTreeSet<IpNet>,
    v6: BTreeSet<IpNet>,
}

impl Addrs {
    fn add_net(&mut self, n: &IpNet) {
        match n {
            IpNet::V4(_) => self.v4.insert(n.trunc()),
            IpNet::V6(_) => self.v6.insert(n.trunc()),
        };
    }
    fn add_ip(&mut self, ip: &IpAddr) {
        self.add_net(&IpNet::from(*ip));
    }
    fn get(&self, f: Family) -> &BTreeSet<IpNet> {
        match f {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
    /// Non-overlapping elements (nft rejects overlapping intervals), so that updates can
    /// delete exactly the elements they added.
    fn elements(&self, f: Family) -> BTreeSet<String> {
        let nets: Vec<IpNet> = self.get(f).iter().copied().collect();
        IpNet::aggregate(&nets)
            .into_iter()
            .map(|n| if n.prefix_len() == n.max_prefix_len() { n.addr().to_string() } else { n.to_string() })
            .collect()
    }
}

/// Which families a named address set holds addresses of.
#[derive(Clone, Copy, Debug)]
struct Present {
    v4: bool,
    v6: bool,
}

impl Present {
    fn has(self, f: Family) -> bool {
        match f {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }
}

struct Compiler<'c> {
    cluster: &'c Cluster,
    opts: &'c Options,
    rs: Ruleset,
    cache: HashMap<String, String>,
    /// Address set definition → (base name, families present).
    address_sets: HashMap<String, (String, Present)>,
}

/// The endpoint a group chain protects: who it is, and its named ports.
struct Own {
    side: Side,
    ports: Vec<ContainerPort>,
    /// A host endpoint: failsafe ports first, and its default when no policy decides.
    host: Option<usize>,
}

/// What makes two pods' chains identical: the policies that apply, how each Calico rule's
/// own-side conditions come out for the pod, and its named ports when rules use them.
#[derive(Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    dir: Direction,
    policies: Vec<usize>,
    own: Vec<bool>,
    ports: Vec<ContainerPort>,
}

impl Compiler<'_> {
    /// Host endpoints (all of them: Palisade's node is the lab's one node, or `--node`'s
    /// endpoints) get chains in the `host_*` maps, hooked on input (ingress) and output (egress).
    fn host_endpoints(&mut self, index: &mut Index, dir: Direction) {
        let cluster = self.cluster;
        for (h, hep) in cluster.host_endpoints.iter().enumerate() {
            if self.opts.node.as_ref().is_some_and(|n| *n != hep.node) {
                continue;
            }
            let side = Side { endpoint: Endpoint::Host(h), ip: hep.ips.first().copied() };
            let pols: Vec<usize> = (0..cluster.policies.len())
                .filter(|&i| {
                    cluster.policies[i].rules(dir).is_some()
                        && palisade_core::verdict::selects(cluster, &cluster.policies[i], &side)
                })
                .collect();
            let own = Own { side, ports: hep.ports.clone(), host: Some(h) };
            let chain = self.group_chain(index, dir, &pols, &own);
            for ip in &hep.ips {
                let map = format!("host_{}_{}", dir_name(dir), Family::of(ip).suffix());
                self.rs.maps.entry(map).or_default().insert(ip.to_string(), chain.clone());
            }
        }
    }

    fn group_key(&self, index: &Index, dir: Direction, pols: &[usize], x: PodId) -> GroupKey {
        let own = index.side(x);
        let mut bits = Vec::new();
        let mut named = false;
        for &pi in pols {
            for rule in self.cluster.policies[pi].rules(dir).into_iter().flatten() {
                named |= rule.uses_named_ports();
                if let Match::Calico(c) = &rule.matches {
                    let e = if dir == Direction::Egress { &c.source } else { &c.destination };
                    bits.push(c.version_ok(own.ip) && address_matches(self.cluster, e, &own));
                }
            }
        }
        let ports = if named { self.cluster.pods[x].ports.clone() } else { Vec::new() };
        GroupKey { dir, policies: pols.to_vec(), own: bits, ports }
    }

    fn enforced_here(&self, index: &Index, p: PodId) -> bool {
        matches!(index.side(p).endpoint, Endpoint::Pod(_))
            && self.opts.node.as_ref().is_none_or(|n| self.cluster.pods[p].node.as_deref() == Some(n.as_str()))
    }

    /// Registers a named address set, computing its addresses only the first time a definition
    /// is seen (groups share peers); returns its base name (family suffix added on use) and
    /// whether it holds IPv4 and IPv6 addresses.
    ///
    /// Only families with addresses get a set: the kernel finds a rule's set by walking the
    /// table's list of sets, so every empty set would slow down every load.
    fn address_set(&mut self, definition: &str, build: impl FnOnce() -> Addrs) -> (String, Present) {
        if let Some(known) = self.address_sets.get(definition) {
            return known.clone();
        }
        let base = format!("a_{}", short_hash(definition));
        let addrs = build();
        for f in [Family::V4, Family::V6] {
            let elements = addrs.elements(f);
            if !elements.is_empty() {
                let set = NamedSet { family: f, with_port: false, elements };
                self.rs.sets.insert(format!("{base}_{}", f.suffix()), set);
            }
        }
        let present = Present { v4: !addrs.v4.is_empty(), v6: !addrs.v6.is_empty() };
        self.address_sets.insert(definition.to_string(), (base.clone(), present));
        (base, present)
    }

    /// Registers a named address . port set for a named port.
    fn named_port_set(&mut self, definition: &str, pairs: &[(IpAddr, u16)]) -> String {
        let base = format!("n_{}", short_hash(definition));
        for f in [Family::V4, Family::V6] {
            let elements: BTreeSet<String> =
                pairs.iter().filter(|(ip, _)| Family::of(ip) == f).map(|(ip, port)| format!("{ip} . {port}")).collect();
            if !elements.is_empty() {
                self.rs
                    .sets
                    .insert(format!("{base}_{}", f.suffix()), NamedSet { family: f, with_port: true, elements });
            }
        }
        base
    }

    /// The chain for one group of pods: built once per distinct content.
    fn group_chain(&mut self, index: &mut Index, dir: Direction, pols: &[usize], own: &Own) -> String {
        let tiers: Vec<(usize, &[usize])> = self.cluster.tier_runs(pols).collect();
        let mut bodies: Vec<Vec<String>> = Vec::new();
        for &(_, members) in &tiers {
            let mut rules = Vec::new();
            for &pi in members {
                for (ri, rule) in self.cluster.policies[pi].rules(dir).into_iter().flatten().enumerate() {
                    let comment = format!("{} {}[{ri}] {}", self.cluster.policy_key(pi), dir_name(dir), rule.action);
                    for alt in self.rule_alts(index, dir, rule, own) {
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
        let failsafe = own.host.map(|_| failsafe_rule(dir, &self.allow(dir)));
        // Content-addressed names: the same content always gets the same chain.
        let key = format!(
            "{dir:?}{bodies:?}{tiers:?}{after}{failsafe:?}",
            tiers = tiers.iter().map(|t| t.0).collect::<Vec<_>>()
        );
        if let Some(name) = self.cache.get(&key) {
            return name.clone();
        }
        let name = format!("{}_{}", &dir_name(dir)[..2], short_hash(&key));
        let names: Vec<String> = (0..bodies.len()).map(|i| format!("{name}_t{i}")).collect();
        for (i, body) in bodies.into_iter().enumerate() {
            let tier = &self.cluster.tiers[tiers[i].0];
            let next = names.get(i + 1).map(|n| format!("goto {n}")).unwrap_or_else(|| after.clone());
            let end =
                if tier.pass_at_end { next.clone() } else { self.deny(dir, &format!("end of tier {}", tier.name)) };
            let mut lines: Vec<String> = body.into_iter().map(|l| l.replace("{PASS}", &next)).collect();
            lines.push(format!("counter {end} comment \"end of tier {}\"", tier.name));
            self.rs.chains.insert(names[i].clone(), lines);
        }
        // Without failsafe ports the group's entry is its first tier chain: a chain holding
        // only `goto` would cost a rule and a chain per group in every load.
        let entry = match (failsafe, names.first()) {
            (None, Some(first)) => first.clone(),
            (failsafe, first) => {
                let mut top: Vec<String> = failsafe.into_iter().collect();
                top.push(match first {
                    Some(first) => format!("goto {first}"),
                    None => format!("counter {after} comment \"no policy selects this host endpoint\""),
                });
                self.rs.chains.insert(name.clone(), top);
                name
            }
        };
        self.cache.insert(key, entry.clone());
        entry
    }

    fn allow(&self, dir: Direction) -> String {
        match dir {
            Direction::Egress => "return".into(),
            Direction::Ingress => "accept".into(),
        }
    }

    fn deny(&self, dir: Direction, why: &str) -> String {
        if self.rs.audit {
            format!("log prefix \"palisade audit deny {}: \" {}", why.replace('"', "'"), self.allow(dir))
        } else {
            "drop".into()
        }
    }

    fn render_tier(&self, rules: Vec<(Alt, Action, String)>, dir: Direction) -> Vec<String> {
        let mut out = Vec::new();
        for (alt, action, comment) in rules {
            let verdict = match action {
                Action::Allow => self.allow(dir),
                Action::Deny => self.deny(dir, &comment),
                Action::Pass => "{PASS}".into(),
                Action::Log => format!("log prefix \"palisade {}: \"", comment.replace('"', "'")),
            };
            let mut line = String::new();
            if let Some(f) = alt.family {
                let _ = write!(line, "meta nfproto {} ", if f == Family::V4 { "ipv4" } else { "ipv6" });
            }
            for e in &alt.exprs {
                line.push_str(e);
                line.push(' ');
            }
            let _ = write!(line, "counter {verdict} comment \"{}\"", comment.replace('"', "'"));
            out.push(line);
        }
        out
    }

    /// Every way `rule` can match for pod `x` (already known to be selected).
    fn rule_alts(&mut self, index: &mut Index, dir: Direction, rule: &Rule, own: &Own) -> Vec<Alt> {
        match &rule.matches {
            Match::Kubernetes { peers, ports } => self.k8s_alts(index, dir, peers, ports, &own.ports),
            Match::Calico(c) => self.calico_alts(index, dir, c, own),
        }
    }

    fn k8s_alts(
        &mut self,
        index: &mut Index,
        dir: Direction,
        peers: &Option<Vec<Peer>>,
        ports: &Option<Vec<RulePort>>,
        own_ports: &[ContainerPort],
    ) -> Vec<Alt> {
        let s = sides(dir);
        let peer_alts: Vec<Alt> = match peers {
            None => vec![Alt::default()],
            Some(list) => list.iter().flat_map(|p| self.k8s_peer(index, p, s.peer_addr)).collect(),
        };
        let port_alts = match ports {
            None => vec![Alt::default()],
            Some(list) => self.k8s_ports(dir, list, own_ports, s.peer_addr),
        };
        let mut out = Vec::new();
        for p in &peer_alts {
            for q in &port_alts {
                if let Some(a) = merge(p, q) {
                    out.push(a);
                }
            }
        }
        out
    }

    fn k8s_peer(&mut self, index: &mut Index, peer: &Peer, addr: &str) -> Vec<Alt> {
        match peer {
            Peer::IpBlock(b) => {
                let (a, _) =
                    self.address_set(&format!("cidr {}", b.cidr), || nets_addrs(std::slice::from_ref(&b.cidr)));
                let e = (!b.except.is_empty())
                    .then(|| self.address_set(&format!("except {b}"), || nets_addrs(&b.except)).0);
                let f = if b.cidr.addr().is_ipv4() { Family::V4 } else { Family::V6 };
                let kw = f.keyword();
                let mut alt = Alt { family: Some(f), exprs: vec![format!("{kw} {addr} @{a}_{}", f.suffix())] };
                if let Some(e) = e {
                    alt = alt.with(format!("{kw} {addr} != @{e}_{}", f.suffix()));
                }
                vec![alt]
            }
            Peer::Pods { .. } => {
                let cluster = self.cluster;
                let (set, present) = self
                    .address_set(&format!("k8s peer {peer:?}"), || pod_addrs(cluster, index.peer_pods(peer).ones()));
                family_alts(&set, addr, present)
            }
        }
    }

    /// Kubernetes ports are destination ports: for egress they belong to the peer (named ports
    /// resolved per peer pod), for ingress to the pod itself (resolved now).
    fn k8s_ports(
        &mut self,
        dir: Direction,
        list: &[RulePort],
        own_ports: &[ContainerPort],
        peer_addr: &str,
    ) -> Vec<Alt> {
        let mut numeric: BTreeMap<Protocol, Vec<String>> = BTreeMap::new();
        let mut any: BTreeSet<Protocol> = BTreeSet::new();
        let mut out = Vec::new();
        for rp in list {
            match &rp.port {
                PortSpec::Any => {
                    any.insert(rp.protocol);
                }
                PortSpec::Range(a, b) => numeric.entry(rp.protocol).or_default().push(range(*a, *b)),
                PortSpec::Named(name) if dir == Direction::Ingress => {
                    for c in own_ports.iter().filter(|c| named(c, name, rp.protocol)) {
                        numeric.entry(rp.protocol).or_default().push(c.port.to_string());
                    }
                }
                PortSpec::Named(name) => {
                    let pairs = self.named_pairs(name, rp.protocol);
                    let set = self.named_port_set(&format!("named {name} {}", rp.protocol), &pairs);
                    let proto = l4(rp.protocol.number());
                    for f in [Family::V4, Family::V6] {
                        if pairs.iter().any(|(ip, _)| Family::of(ip) == f) {
                            let e = format!(
                                "meta l4proto {proto} {} {peer_addr} . th dport @{set}_{}",
                                f.keyword(),
                                f.suffix()
                            );
                            out.push(Alt { family: Some(f), exprs: vec![e] });
                        }
                    }
                }
            }
        }
        for p in &any {
            out.push(Alt::default().with(format!("meta l4proto {}", l4(p.number()))));
        }
        for (p, ports) in numeric {
            if !any.contains(&p) {
                out.push(Alt::default().with(format!("meta l4proto {} th dport {}", l4(p.number()), anon(&ports))));
            }
        }
        out
    }

    /// (pod address, port) for every pod with a container port of that name and protocol.
    fn named_pairs(&self, name: &str, protocol: Protocol) -> Vec<(IpAddr, u16)> {
        let mut out = Vec::new();
        for pod in &self.cluster.pods {
            for c in pod.ports.iter().filter(|c| named(c, name, protocol)) {
                out.extend(pod.ips.iter().map(|ip| (*ip, c.port)));
            }
        }
        out
    }

    fn calico_alts(&mut self, index: &mut Index, dir: Direction, c: &CalicoRule, own: &Own) -> Vec<Alt> {
        let (own_ports, own) = (&own.ports, &own.side);
        let (own_e, peer_e) = match dir {
            Direction::Egress => (&c.source, &c.destination),
            Direction::Ingress => (&c.destination, &c.source),
        };
        if !address_matches(self.cluster, own_e, own) || !c.version_ok(own.ip) {
            return Vec::new();
        }
        let s = sides(dir);
        let mut base = Alt::default();
        if let Some(v) = c.ip_version {
            base.family = Some(if v == 4 { Family::V4 } else { Family::V6 });
        }
        if let Some((n, _)) = &c.protocol {
            base = base.with(format!("meta l4proto {}", l4(*n)));
        }
        if let Some((n, _)) = &c.not_protocol {
            base = base.with(format!("meta l4proto != {}", l4(*n)));
        }
        let proto = c.protocol.as_ref().map(|p| p.0);
        // Own ports are packet fields: named ones resolve against this pod's ports.
        for (list, negate) in [(&own_e.ports, false), (&own_e.not_ports, true)] {
            match port_expr(list, s.own_port, proto, own_ports, negate) {
                Err(()) => return Vec::new(),
                Ok(Some(e)) => base = base.with(e),
                Ok(None) => {}
            }
        }
        let mut alts = icmp_alts(c, base);
        alts = self.peer_entity(index, peer_e, dir, proto, alts);
        alts
    }

    /// Conditions on the peer: nets, selectors (as address sets), ports (named per peer).
    fn peer_entity(
        &mut self,
        index: &mut Index,
        e: &Entity,
        dir: Direction,
        proto: Option<u8>,
        alts: Vec<Alt>,
    ) -> Vec<Alt> {
        let s = sides(dir);
        let mut sets: Vec<(String, Present, bool)> = Vec::new();
        for (nets, positive) in [(&e.nets, true), (&e.not_nets, false)] {
            if !nets.is_empty() {
                let (name, present) = self.address_set(&format!("nets {nets:?}"), || nets_addrs(nets));
                sets.push((name, present, positive));
            }
        }
        let cluster = self.cluster;
        for (sel, positive) in [(&e.selector, true), (&e.not_selector, false)] {
            if let Some(sel) = sel {
                let (name, present) =
                    self.address_set(&format!("selector {sel}"), || selector_addrs(cluster, index, sel));
                sets.push((name, present, positive));
            }
        }
        let mut out = Vec::new();
        for alt in alts {
            out.extend(split_families(alt, &sets, s.peer_addr));
        }
        // Peer ports: numeric in the rule, named per peer address.
        let has_named = e.ports.iter().chain(&e.not_ports).any(|p| matches!(p, CalicoPort::Named(_)));
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
        let pairs_for = |c: &Compiler, ports: &[CalicoPort]| -> Vec<(IpAddr, u16)> {
            let mut pairs = Vec::new();
            for p in ports {
                if let (CalicoPort::Named(n), Some(pr)) = (p, protocol) {
                    pairs.extend(c.named_pairs(n, pr));
                }
            }
            pairs
        };
        let numeric = |ports: &[CalicoPort]| {
            ports.iter().filter(|p| matches!(p, CalicoPort::Range(..))).cloned().collect::<Vec<_>>()
        };
        let pos_pairs = pairs_for(self, &e.ports);
        let neg_pairs = pairs_for(self, &e.not_ports);
        let pos_set = self.named_port_set(&format!("calico named {:?} {proto:?}", e.ports), &pos_pairs);
        let neg_set = self.named_port_set(&format!("calico named {:?} {proto:?}", e.not_ports), &neg_pairs);
        let mut out = Vec::new();
        for alt in alts {
            for f in [Family::V4, Family::V6] {
                if alt.family.is_some_and(|af| af != f) {
                    continue;
                }
                let kw = f.keyword();
                let mut a = Alt { family: Some(f), exprs: alt.exprs.clone() };
                a.exprs.extend(port_expr(&numeric(&e.not_ports), s.peer_port, proto, &[], true).ok().flatten());
                if neg_pairs.iter().any(|(ip, _)| Family::of(ip) == f) {
                    a.exprs.push(format!("{kw} {} . th {} != @{neg_set}_{}", s.peer_addr, s.peer_port, f.suffix()));
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
                if pos_pairs.iter().any(|(ip, _)| Family::of(ip) == f) {
                    out.push(a.with(format!("{kw} {} . th {} @{pos_set}_{}", s.peer_addr, s.peer_port, f.suffix())));
                }
            }
        }
        out
    }
}

/// Addresses of some pods.
fn pod_addrs(cluster: &Cluster, pods: impl Iterator<Item = PodId>) -> Addrs {
    let mut a = Addrs::default();
    for p in pods {
        cluster.pods[p].ips.iter().for_each(|ip| a.add_ip(ip));
    }
    a
}

fn nets_addrs(nets: &[IpNet]) -> Addrs {
    let mut a = Addrs::default();
    nets.iter().for_each(|n| a.add_net(n));
    a
}

/// Addresses a Calico selector matches: pods and host endpoints by labels, network sets by labels.
fn selector_addrs(cluster: &Cluster, index: &Index, sel: &palisade_core::expr::Expr) -> Addrs {
    let mut a = Addrs::default();
    for p in index.calico_label_pods(sel).ones() {
        if let Some(ip) = index.side(p).ip {
            a.add_ip(&ip);
        }
        for ip in cluster.pods[p].ips.iter().skip(1) {
            a.add_ip(ip);
        }
    }
    for h in &cluster.host_endpoints {
        if sel.matches(&h.labels) {
            h.ips.iter().for_each(|ip| a.add_ip(ip));
        }
    }
    for set in cluster.network_sets.iter().filter(|s| sel.matches(&s.labels)) {
        set.nets.iter().for_each(|n| a.add_net(n));
    }
    a
}

fn named(c: &ContainerPort, name: &str, protocol: Protocol) -> bool {
    c.protocol == protocol && c.name.as_deref() == Some(name)
}

/// nft's name for an IP protocol number.
fn l4(n: u8) -> String {
    match n {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        1 => "icmp".into(),
        58 => "ipv6-icmp".into(),
        136 => "udplite".into(),
        other => other.to_string(),
    }
}

fn range(a: u16, b: u16) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

fn anon(items: &[String]) -> String {
    format!("{{ {} }}", items.join(", "))
}

/// A port condition on `field` (`sport`/`dport`); named ports resolved against `named_ports`.
/// `Err(())`: a positive list that resolves to no port, which can never match.
fn port_expr(
    ports: &[CalicoPort],
    field: &str,
    proto: Option<u8>,
    named_ports: &[ContainerPort],
    negate: bool,
) -> Result<Option<String>, ()> {
    if ports.is_empty() {
        return Ok(None);
    }
    let protocol = proto.and_then(Protocol::from_number);
    let mut items = Vec::new();
    for p in ports {
        match p {
            CalicoPort::Range(a, b) => items.push(range(*a, *b)),
            CalicoPort::Named(n) => {
                if let Some(pr) = protocol {
                    items.extend(named_ports.iter().filter(|c| named(c, n, pr)).map(|c| c.port.to_string()));
                }
            }
        }
    }
    match (items.is_empty(), negate) {
        (true, false) => Err(()),
        (true, true) => Ok(None),
        (false, false) => Ok(Some(format!("th {field} {}", anon(&items)))),
        (false, true) => Ok(Some(format!("th {field} != {}", anon(&items)))),
    }
}

fn icmp_alts(c: &CalicoRule, base: Alt) -> Vec<Alt> {
    let proto = c.protocol.as_ref().map(|p| p.0);
    let kw = if proto == Some(58) { "icmpv6" } else { "icmp" };
    let mut alt = base;
    if let Some(i) = &c.icmp {
        if let Some(t) = i.type_ {
            alt = alt.with(format!("{kw} type {t}"));
        }
        if let Some(code) = i.code {
            alt = alt.with(format!("{kw} code {code}"));
        }
    }
    let Some(n) = &c.not_icmp else { return vec![alt] };
    match (n.type_, n.code) {
        (Some(t), None) => vec![alt.with(format!("{kw} type != {t}"))],
        // not (type t and code c): another type, or the same type with another code.
        (Some(t), Some(code)) => {
            vec![alt.clone().with(format!("{kw} type != {t}")), alt.with(format!("{kw} type {t} {kw} code != {code}"))]
        }
        _ => vec![alt],
    }
}

/// Alternatives matching `addr` against a set, per family with addresses in it.
fn family_alts(set: &str, addr: &str, present: Present) -> Vec<Alt> {
    [Family::V4, Family::V6]
        .into_iter()
        .filter(|f| present.has(*f))
        .map(|f| Alt { family: Some(f), exprs: vec![format!("{} {addr} @{set}_{}", f.keyword(), f.suffix())] })
        .collect()
}

/// Adds address-set conditions to an alternative, once per family that can still match.
fn split_families(alt: Alt, sets: &[(String, Present, bool)], addr: &str) -> Vec<Alt> {
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
                (true, false) => a.exprs.push(format!("{} {addr} @{name}_{}", f.keyword(), f.suffix())),
                (false, true) => {}
                (false, false) => a.exprs.push(format!("{} {addr} != @{name}_{}", f.keyword(), f.suffix())),
            }
        }
        if possible {
            out.push(a);
        }
    }
    out
}

/// Both alternatives at once; `None` when their families conflict.
fn merge(a: &Alt, b: &Alt) -> Option<Alt> {
    let family = match (a.family, b.family) {
        (Some(x), Some(y)) if x != y => return None,
        (x, y) => x.or(y),
    };
    let mut exprs = a.exprs.clone();
    exprs.extend(b.exprs.iter().cloned());
    Some(Alt { family, exprs })
}

/// Felix's failsafe ports, accepted before any host endpoint policy.
fn failsafe_rule(dir: Direction, allow: &str) -> String {
    let ports: Vec<String> = palisade_core::verdict::failsafe_ports(dir)
        .into_iter()
        .map(|(proto, port)| format!("{} . {port}", l4(proto.number())))
        .collect();
    format!("meta l4proto . th dport {} counter {allow} comment \"failsafe\"", anon(&ports))
}
