//! All pod pairs at once, with bitsets.
//!
//! Selectors are evaluated once against label indexes (cached by selector), peers become pod
//! bitsets, IP blocks become ranges over pods sorted by IP, and pods that the same policies
//! select (and that meet the same rule conditions themselves) share one evaluation. Tiers and
//! ordered actions are bitset operations on the still-undecided peers. Pods that stand for a
//! Calico host endpoint are decided one pair at a time by [`crate::verdict::decide`]; the
//! result agrees with it for every pair. A node's (or host-network pod's) connections to the
//! pods that run on it are always allowed, and a workload's template pod standing for several
//! replicas is decided against itself like any two pods.

use std::collections::HashMap;
use std::net::IpAddr;

use fixedbitset::FixedBitSet;

use crate::decide::matching::{self, entity_matches, ports_match};
use crate::decide::verdict::{decide, node_of, placement, Placement, Verdict};
use crate::model::cluster::{Cluster, PodId, PolicyId};
use crate::model::endpoint::{Connection, Endpoint, Side};
use crate::model::expr::Expr;
use crate::model::label::EndpointLabels;
use crate::model::policy::{Action, Direction, Rule};
use crate::model::port::{ContainerPort, Protocol};
use crate::model::rule::Entity;

/// `rows[src]` holds the destination pods `src` may open the connection to.
pub struct Matrix {
    pub port: u16,
    pub protocol: Protocol,
    pub rows: Vec<FixedBitSet>,
}

impl Matrix {
    pub fn allowed(&self, src: PodId, dst: PodId) -> bool {
        self.rows[src.index()].contains(dst.index())
    }
}

/// Label key → (objects having the key, value → objects).
struct LabelIndex {
    all: FixedBitSet,
    keys: HashMap<String, (FixedBitSet, HashMap<String, FixedBitSet>)>,
}

impl LabelIndex {
    fn new<'a>(n: usize, items: impl Iterator<Item = (usize, EndpointLabels<'a>)>) -> Self {
        let mut all = FixedBitSet::with_capacity(n);
        let mut keys: HashMap<String, (FixedBitSet, HashMap<String, FixedBitSet>)> = HashMap::new();
        for (i, labels) in items {
            all.insert(i);
            labels.for_each(|k, v| {
                if !keys.contains_key(k) {
                    keys.insert(k.to_string(), (FixedBitSet::with_capacity(n), HashMap::new()));
                }
                let e = keys.get_mut(k).expect("inserted");
                e.0.insert(i);
                if !e.1.contains_key(v) {
                    e.1.insert(v.to_string(), FixedBitSet::with_capacity(n));
                }
                e.1.get_mut(v).expect("inserted").insert(i);
            });
        }
        LabelIndex { all, keys }
    }

    fn values(&self, key: &str, values: &std::collections::BTreeSet<String>) -> FixedBitSet {
        let mut s = FixedBitSet::with_capacity(self.all.len());
        if let Some((_, by_value)) = self.keys.get(key) {
            for v in values {
                if let Some(b) = by_value.get(v) {
                    s.union_with(b);
                }
            }
        }
        s
    }

    fn value(&self, key: &str, value: &str) -> FixedBitSet {
        match self.keys.get(key).and_then(|(_, by_value)| by_value.get(value)) {
            Some(b) => b.clone(),
            None => FixedBitSet::with_capacity(self.all.len()),
        }
    }

    fn has(&self, key: &str) -> FixedBitSet {
        self.keys.get(key).map(|k| k.0.clone()).unwrap_or_else(|| FixedBitSet::with_capacity(self.all.len()))
    }
}

impl LabelIndex {
    fn matching_values(&self, key: &str, pred: impl Fn(&str) -> bool) -> FixedBitSet {
        let mut s = FixedBitSet::with_capacity(self.all.len());
        if let Some((_, by_value)) = self.keys.get(key) {
            for (v, b) in by_value {
                if pred(v) {
                    s.union_with(b);
                }
            }
        }
        s
    }

    fn eval_expr(&self, e: &Expr) -> FixedBitSet {
        match e {
            Expr::All | Expr::Global => self.all.clone(),
            Expr::Has(k) => self.has(k),
            Expr::Eq(k, v) => self.value(k, v),
            Expr::Ne(k, v) => complement(&self.all, &self.value(k, v)),
            Expr::In(k, vs) => self.values(k, vs),
            Expr::NotIn(k, vs) => complement(&self.all, &self.values(k, vs)),
            Expr::Contains(k, s) => self.matching_values(k, |v| v.contains(s.as_str())),
            Expr::StartsWith(k, s) => self.matching_values(k, |v| v.starts_with(s.as_str())),
            Expr::EndsWith(k, s) => self.matching_values(k, |v| v.ends_with(s.as_str())),
            Expr::Not(e) => complement(&self.all, &self.eval_expr(e)),
            Expr::And(es) => {
                let mut out = self.all.clone();
                for e in es {
                    out.intersect_with(&self.eval_expr(e));
                }
                out
            }
            Expr::Or(es) => {
                let mut out = FixedBitSet::with_capacity(self.all.len());
                for e in es {
                    out.union_with(&self.eval_expr(e));
                }
                out
            }
        }
    }
}

fn complement(all: &FixedBitSet, s: &FixedBitSet) -> FixedBitSet {
    let mut c = all.clone();
    c.difference_with(s);
    c
}

fn full(n: usize) -> FixedBitSet {
    let mut s = FixedBitSet::with_capacity(n);
    s.insert_range(..);
    s
}

/// Everything the matrix needs about pods, computed once per cluster.
pub struct Index<'c> {
    cluster: &'c Cluster,
    n: usize,
    sides: Vec<Side>,
    /// Pods that policy applies to as pods (not host network).
    subjects: FixedBitSet,
    /// Pods that stand for a Calico host endpoint: decided pair by pair.
    hosts: Vec<usize>,
    /// Labels selectors see: pods' with pseudo-labels, host endpoints'.
    labels: LabelIndex,
    by_ip: Vec<(IpAddr, usize)>,
    /// Pods and host endpoints an expression matches by their labels.
    label_cache: HashMap<Expr, FixedBitSet>,
    /// The same, plus the pods inside the network sets it matches (rule selectors).
    expr_cache: HashMap<Expr, FixedBitSet>,
    /// Pods inside a rule's list of networks: the same lists recur in many rules and every
    /// probe, and a wide network holds many pods.
    net_cache: HashMap<Vec<ipnet::IpNet>, FixedBitSet>,
    /// Per direction (egress, ingress), each pod's applicable policies: the same for every
    /// probe, so worked out once (every matrix and every side asks for them).
    applicable_cache: [Option<std::rc::Rc<Vec<Vec<PolicyId>>>>; 2],
    /// While [`Index::keep_sides`] is on, every [`Index::sides`] worked out (matrices
    /// included), in order: callers that read them again after the matrix need not redo them.
    kept: Option<Vec<Sides>>,
}

/// One port and protocol's sides, egress then ingress ([`Index::sides`]).
pub type Sides = (Vec<Admitted>, Vec<Admitted>);

/// Which policies apply to a pod, and how it fares on its own side of their rules.
#[derive(Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    policies: Vec<PolicyId>,
    own: Vec<bool>,
    ports: Vec<ContainerPort>,
}

/// The packet a matrix is about, independent of who sends it.
struct Probe {
    port: u16,
    protocol: Protocol,
    template: Connection,
}

/// How a rule's own side (destination for ingress, source for egress) comes out for the
/// endpoints its policy applies to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OwnSide {
    /// It depends on the endpoint (nets, selectors, named ports, IP version): one bit per pod.
    Varies,
    /// The packet alone decides it (no conditions, or numeric ports): the same for every pod.
    Always,
    Never,
}

impl<'c> Index<'c> {
    pub fn new(cluster: &'c Cluster) -> Self {
        let n = cluster.pods.len();
        let sides: Vec<Side> = cluster.pod_ids().map(|p| Side::pod(cluster, p)).collect();
        let mut subjects = FixedBitSet::with_capacity(n);
        let mut hosts = Vec::new();
        for (p, side) in sides.iter().enumerate() {
            match side.endpoint {
                Endpoint::Pod(_) if cluster.is_policy_subject(PodId::new(p)) => subjects.insert(p),
                Endpoint::Host(_) => hosts.push(p),
                _ => {}
            }
        }
        let items = (0..n).filter_map(|p| match sides[p].endpoint {
            Endpoint::Pod(_) if subjects.contains(p) => Some((p, cluster.calico_labels(PodId::new(p)))),
            Endpoint::Host(h) => Some((p, EndpointLabels::plain(&cluster.host_endpoints[h].labels))),
            _ => None,
        });
        let labels = LabelIndex::new(n, items);
        let mut by_ip: Vec<(IpAddr, usize)> =
            sides.iter().enumerate().filter_map(|(p, s)| s.ip.map(|ip| (ip, p))).collect();
        by_ip.sort();
        Index {
            cluster,
            n,
            sides,
            subjects,
            hosts,
            labels,
            by_ip,
            label_cache: HashMap::new(),
            expr_cache: HashMap::new(),
            net_cache: HashMap::new(),
            applicable_cache: [None, None],
            kept: None,
        }
    }

    /// From now on, keeps a copy of every [`Index::sides`] worked out, the matrices' own
    /// included (the sets are shared, not copied), until [`Index::kept_sides`] takes them.
    pub fn keep_sides(&mut self) {
        self.kept.get_or_insert_with(Vec::new);
    }

    /// The sides kept since [`Index::keep_sides`], in the order they were worked out; keeping stops.
    pub fn kept_sides(&mut self) -> Vec<Sides> {
        self.kept.take().unwrap_or_default()
    }

    /// Pods and host endpoints whose own labels an expression matches (no network sets).
    fn labelled(&mut self, e: &Expr) -> FixedBitSet {
        if let Some(s) = self.label_cache.get(e) {
            return s.clone();
        }
        let s = self.labels.eval_expr(e);
        self.label_cache.insert(e.clone(), s.clone());
        s
    }

    /// Pods a rule's selector matches: by their own labels, or by an address inside a
    /// network set the selector matches (Felix matches selectors through IP sets).
    fn selector(&mut self, e: &Expr) -> FixedBitSet {
        if let Some(s) = self.expr_cache.get(e) {
            return s.clone();
        }
        let mut s = self.labelled(e);
        for set in self.cluster.network_sets.iter().filter(|set| e.matches(&set.labels)) {
            for net in &set.nets {
                for p in self.ip_range(net) {
                    s.insert(p);
                }
            }
        }
        self.expr_cache.insert(e.clone(), s.clone());
        s
    }

    /// Pods whose address is inside one of `nets` (cached by the list).
    fn ip_nets(&mut self, nets: &[ipnet::IpNet]) -> &FixedBitSet {
        if !self.net_cache.contains_key(nets) {
            let mut s = FixedBitSet::with_capacity(self.n);
            for net in nets {
                self.ip_range(net).for_each(|p| s.insert(p));
            }
            self.net_cache.insert(nets.to_vec(), s);
        }
        &self.net_cache[nets]
    }

    fn ip_range(&self, net: &ipnet::IpNet) -> impl Iterator<Item = usize> + '_ {
        let (lo, hi) = (net.network(), net.broadcast());
        let start = self.by_ip.partition_point(|(ip, _)| *ip < lo);
        self.by_ip[start..].iter().take_while(move |(ip, _)| *ip <= hi).map(|(_, p)| *p)
    }

    /// Pods (as peers) meeting one end of a rule.
    fn entity_peers(&mut self, rule: &Rule, e: &Entity, port: u16, probe: &Probe) -> FixedBitSet {
        let mut s = full(self.n);
        if rule.ip_version.is_some() {
            for p in 0..self.n {
                s.set(p, matching::version_ok(rule, self.sides[p].ip));
            }
        }
        if !e.nets.is_empty() {
            s.intersect_with(self.ip_nets(&e.nets));
        }
        if !e.not_nets.is_empty() {
            s.difference_with(self.ip_nets(&e.not_nets));
        }
        if let Some(sel) = &e.selector {
            s.intersect_with(&self.selector(sel));
        }
        if let Some(sel) = &e.not_selector {
            s.difference_with(&self.selector(sel));
        }
        if !e.ports.is_empty() || !e.not_ports.is_empty() {
            let cluster = self.cluster;
            if matching::ports_are_numeric(e) {
                // Numbers only: the same answer for every peer, so decide it once.
                let anyone = Side { endpoint: Endpoint::External, ip: None };
                if !ports_match(cluster, e, &anyone, port, probe.protocol) {
                    s.clear();
                }
            } else {
                for p in s.clone().ones() {
                    if !ports_match(cluster, e, &self.sides[p], port, probe.protocol) {
                        s.set(p, false);
                    }
                }
            }
        }
        s
    }

    /// The peers a rule matches for an endpoint in `dir` (its own side checked by the caller).
    fn rule_peers(&mut self, rule: &Rule, dir: Direction, probe: &Probe) -> FixedBitSet {
        if matching::packet(rule, &probe.template).is_err() {
            return FixedBitSet::with_capacity(self.n);
        }
        match dir {
            Direction::Ingress => self.entity_peers(rule, &rule.source, probe.template.src_port, probe),
            Direction::Egress => self.entity_peers(rule, &rule.destination, probe.port, probe),
        }
    }

    /// How a rule's own side comes out: per pod, or once for all.
    fn own_kind(&self, rule: &Rule, dir: Direction, probe: &Probe) -> OwnSide {
        let (e, port) = own_entity(rule, dir, probe);
        if rule.ip_version.is_some() || e.has_address() || !matching::ports_are_numeric(e) {
            return OwnSide::Varies;
        }
        let anyone = Side { endpoint: Endpoint::External, ip: None };
        match ports_match(self.cluster, e, &anyone, port, probe.protocol) {
            true => OwnSide::Always,
            false => OwnSide::Never,
        }
    }

    /// Whether pod `x` meets its own side of a rule (destination for ingress, source for egress).
    fn own_side(&self, rule: &Rule, dir: Direction, probe: &Probe, x: usize) -> bool {
        let side = &self.sides[x];
        let (e, port) = own_entity(rule, dir, probe);
        matching::version_ok(rule, side.ip) && entity_matches(self.cluster, e, side, port, probe.protocol)
    }

    /// For each pod, the policies (in evaluation order) that apply to it in `dir`.
    pub fn applicable(&mut self, dir: Direction) -> Vec<Vec<PolicyId>> {
        (*self.applicable_shared(dir)).clone()
    }

    /// [`Index::applicable`], computed on the first call per direction and shared after.
    fn applicable_shared(&mut self, dir: Direction) -> std::rc::Rc<Vec<Vec<PolicyId>>> {
        let slot = match dir {
            Direction::Egress => 0,
            Direction::Ingress => 1,
        };
        if let Some(by_pod) = &self.applicable_cache[slot] {
            return by_pod.clone();
        }
        let mut by_pod: Vec<Vec<PolicyId>> = vec![Vec::new(); self.n];
        for (i, s) in self.selected(dir) {
            for p in s.ones() {
                by_pod[p].push(i);
            }
        }
        let by_pod = std::rc::Rc::new(by_pod);
        self.applicable_cache[slot] = Some(by_pod.clone());
        by_pod
    }

    /// Pods and host endpoints whose own labels an expression matches (no network sets).
    pub fn label_pods(&mut self, e: &Expr) -> FixedBitSet {
        self.labelled(e)
    }

    /// The side (pod, host endpoint or node) each pod stands for.
    pub fn side(&self, p: PodId) -> Side {
        self.sides[p.index()]
    }

    /// Pods each policy applies to in `dir`.
    fn selected(&mut self, dir: Direction) -> Vec<(PolicyId, FixedBitSet)> {
        let cluster = self.cluster;
        let mut out = Vec::new();
        for (i, pol) in cluster.policy_ids().zip(&cluster.policies) {
            if pol.rules(dir).is_none() {
                continue;
            }
            let mut s = self.labelled(&pol.subject);
            s.intersect_with(&self.subjects);
            out.push((i, s));
        }
        out
    }

    /// Per pod: `None` when no policy applies in `dir`, else the peers it allows.
    fn allowed(&mut self, dir: Direction, probe: &Probe) -> Vec<Admitted> {
        self.allowed_for(dir, probe, |_| true)
    }

    /// [`Index::allowed`] for the pods `wanted` keeps; the others come out `None` whatever
    /// their policies (callers read only the wanted ones).
    fn allowed_for(&mut self, dir: Direction, probe: &Probe, wanted: impl Fn(usize) -> bool) -> Vec<Admitted> {
        let by_pod = self.applicable_shared(dir);
        let own_kinds: Vec<Vec<OwnSide>> = (self.cluster.policies.iter())
            .map(|pol| pol.rules(dir).into_iter().flatten().map(|r| self.own_kind(r, dir, probe)).collect())
            .collect();
        let keys: Vec<Option<GroupKey>> = (by_pod.iter().enumerate())
            .map(|(x, pols)| match pols.is_empty() || !wanted(x) {
                true => None,
                false => Some(self.group_key(pols.clone(), dir, probe, x, &own_kinds)),
            })
            .collect();
        let shared = groups_per_policy(self.cluster.policies.len(), &keys);
        let mut groups: HashMap<GroupKey, std::rc::Rc<FixedBitSet>> = HashMap::new();
        let mut peers_cache: HashMap<(usize, usize), FixedBitSet> = HashMap::new();
        let mut out = Vec::with_capacity(self.n);
        for key in keys {
            let Some(key) = key else {
                out.push(None);
                continue;
            };
            if let Some(g) = groups.get(&key) {
                out.push(Some(g.clone()));
                continue;
            }
            let rules = Rules { dir, probe, own_kinds: &own_kinds, shared: &shared };
            let set = std::rc::Rc::new(self.evaluate(&key, &rules, &mut peers_cache));
            groups.insert(key, set.clone());
            out.push(Some(set));
        }
        out
    }

    fn group_key(
        &self,
        policies: Vec<PolicyId>,
        dir: Direction,
        probe: &Probe,
        x: usize,
        own_kinds: &[Vec<OwnSide>],
    ) -> GroupKey {
        let mut own = Vec::new();
        let mut named = false;
        for &pi in &policies {
            for (ri, rule) in self.cluster.policies[pi].rules(dir).into_iter().flatten().enumerate() {
                named |= rule.uses_named_ports();
                if own_kinds[pi.index()][ri] == OwnSide::Varies {
                    own.push(self.own_side(rule, dir, probe, x));
                }
            }
        }
        let ports = if named { self.cluster.pods[x].ports.clone() } else { Vec::new() };
        GroupKey { policies, own, ports }
    }

    /// Tier by tier, policy by policy, rule by rule: what a group of pods allows.
    fn evaluate(
        &mut self,
        key: &GroupKey,
        rules: &Rules<'_>,
        cache: &mut HashMap<(usize, usize), FixedBitSet>,
    ) -> FixedBitSet {
        let (dir, probe, own_kinds) = (rules.dir, rules.probe, rules.own_kinds);
        let cluster = self.cluster;
        let mut allowed = FixedBitSet::with_capacity(self.n);
        let mut undecided = full(self.n);
        let mut own = key.own.iter();
        for (tier, run) in cluster.tier_runs(&key.policies) {
            let mut open = undecided.clone();
            let mut passed = FixedBitSet::with_capacity(self.n);
            for &pi in run {
                for (ri, rule) in cluster.policies[pi].rules(dir).into_iter().flatten().enumerate() {
                    let own_ok = match own_kinds[pi.index()][ri] {
                        OwnSide::Varies => *own.next().expect("one own-side bit per rule that varies"),
                        OwnSide::Always => true,
                        OwnSide::Never => false,
                    };
                    if !own_ok || rule.action == Action::Log || open.is_clear() {
                        continue;
                    }
                    // Only a policy that several groups evaluate has its rules' peers kept: at
                    // 100,000 pods each is 12.5 KB of fresh pages.
                    let mut hit = match rules.shared[pi.index()] > 1 {
                        true => {
                            cache.entry((pi.index(), ri)).or_insert_with(|| self.rule_peers(rule, dir, probe)).clone()
                        }
                        false => self.rule_peers(rule, dir, probe),
                    };
                    hit.intersect_with(&open);
                    match rule.action {
                        Action::Allow => allowed.union_with(&hit),
                        Action::Pass => passed.union_with(&hit),
                        Action::Deny | Action::Log => {}
                    }
                    open.difference_with(&hit);
                }
            }
            if cluster.tiers[tier].pass_at_end {
                passed.union_with(&open);
            }
            undecided = passed;
        }
        // Passed by every tier: the endpoint's profile allows.
        allowed.union_with(&undecided);
        allowed
    }

    /// Each direction on its own for one port and protocol: per pod, the peers its egress
    /// (first) or ingress (second) policy admits, `None` where that side is not isolated.
    /// Host endpoints are not covered here (see [`Index::matrix`]).
    pub fn sides(&mut self, port: u16, protocol: Protocol) -> Sides {
        let probe = probe_for(port, protocol);
        let sides = (self.allowed(Direction::Egress, &probe), self.allowed(Direction::Ingress, &probe));
        if let Some(kept) = &mut self.kept {
            kept.push(sides.clone());
        }
        sides
    }

    /// One side's admitted sets for one port and protocol ([`Index::sides`]'s egress or
    /// ingress), evaluated only for the pods in `wanted`: the others come out `None` whatever
    /// their policies, so callers read only the wanted ones.
    pub fn admitted(&mut self, dir: Direction, port: u16, protocol: Protocol, wanted: &FixedBitSet) -> Vec<Admitted> {
        self.allowed_for(dir, &probe_for(port, protocol), |x| wanted.contains(x))
    }

    /// Whether any pod stands for a Calico host endpoint (decided pair by pair, outside
    /// [`Index::admitted`]'s sets).
    pub fn has_hosts(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// The pods each of `srcs` reaches as their node whatever the policies say (empty
    /// unless it is a node's stack), then for each of `dsts` the node stacks that reach it so:
    /// the part of [`Index::lines`] that no policy decides.
    pub fn node_lines(&self, srcs: &[PodId], dsts: &[PodId]) -> (Vec<FixedBitSet>, Vec<FixedBitSet>) {
        let locals = self.locals();
        let rows = srcs
            .iter()
            .map(|s| {
                let mut row = FixedBitSet::with_capacity(self.n);
                self.local_to(&locals, s.index()).for_each(|local| row.union_with(local));
                row
            })
            .collect();
        let columns = dsts
            .iter()
            .map(|d| {
                let mut column = FixedBitSet::with_capacity(self.n);
                for &s in &locals.stacks {
                    if self.local_to(&locals, s).any(|local| local.contains(d.index())) {
                        column.insert(s);
                    }
                }
                column
            })
            .collect();
        (rows, columns)
    }

    /// One row of [`Index::matrix`] without the others: the pods `src` may open on one port
    /// and protocol. Only `src`'s egress is evaluated (and every pod's ingress, once per
    /// group of pods the same policies select), so it costs a fraction of a matrix.
    pub fn row(&mut self, src: PodId, port: u16, protocol: Protocol) -> FixedBitSet {
        self.lines(port, protocol, &[src], &[]).0.remove(0)
    }

    /// One column of [`Index::matrix`] without the others: the pods that may open `dst` on
    /// one port and protocol. Only `dst`'s ingress is evaluated (and every pod's egress).
    pub fn column(&mut self, dst: PodId, port: u16, protocol: Protocol) -> FixedBitSet {
        self.lines(port, protocol, &[], &[dst]).1.remove(0)
    }

    /// Some rows and columns of [`Index::matrix`] (`srcs`' rows, then `dsts`' columns, in
    /// their order), each side evaluated once for all of them: what a change to a few pods'
    /// policies can alter, without the rest of the matrix.
    pub fn lines(
        &mut self,
        port: u16,
        protocol: Protocol,
        srcs: &[PodId],
        dsts: &[PodId],
    ) -> (Vec<FixedBitSet>, Vec<FixedBitSet>) {
        let probe = probe_for(port, protocol);
        let among = |pods: &[PodId]| {
            let mut set = FixedBitSet::with_capacity(self.n);
            pods.iter().for_each(|p| set.insert(p.index()));
            set
        };
        // Rows need their sources' egress and everyone's ingress; columns the other way round.
        let (from, to) = (among(srcs), among(dsts));
        let egress = match dsts.is_empty() {
            true => self.allowed_for(Direction::Egress, &probe, |x| from.contains(x)),
            false => self.allowed(Direction::Egress, &probe),
        };
        let ingress = match srcs.is_empty() {
            true => self.allowed_for(Direction::Ingress, &probe, |x| to.contains(x)),
            false => self.allowed(Direction::Ingress, &probe),
        };
        let locals = self.locals();
        let rows = srcs.iter().map(|&s| self.row_of(&egress, &ingress, &locals, s.index(), &probe)).collect();
        let columns = dsts.iter().map(|&d| self.column_of(&egress, &ingress, &locals, d.index(), &probe)).collect();
        (rows, columns)
    }

    /// Row `s` from both sides' admitted sets, as [`Index::matrix`] fills it.
    fn row_of(
        &self,
        egress: &[Admitted],
        ingress: &[Admitted],
        locals: &Locals<'c>,
        s: usize,
        probe: &Probe,
    ) -> FixedBitSet {
        let mut row = match &egress[s] {
            Some(e) => (**e).clone(),
            None => full(self.n),
        };
        for (d, i) in ingress.iter().enumerate() {
            if i.as_ref().is_some_and(|i| !i.contains(s)) {
                row.set(d, false);
            }
        }
        // A pod reaches itself on loopback; a workload's replicas are decided as pods.
        if !self.cluster.pods[s].is_replica_group() {
            row.insert(s);
        }
        self.local_to(locals, s).for_each(|local| row.union_with(local));
        let (port, protocol) = (probe.port, probe.protocol);
        if self.hosts.contains(&s) {
            (0..self.n).for_each(|x| row.set(x, self.host_pair(s, x, port, protocol)));
        } else {
            self.hosts.iter().for_each(|&h| row.set(h, self.host_pair(s, h, port, protocol)));
        }
        row
    }

    /// Column `d` from both sides' admitted sets, as [`Index::matrix`] fills it.
    fn column_of(
        &self,
        egress: &[Admitted],
        ingress: &[Admitted],
        locals: &Locals<'c>,
        d: usize,
        probe: &Probe,
    ) -> FixedBitSet {
        let mut column = match &ingress[d] {
            Some(i) => (**i).clone(),
            None => full(self.n),
        };
        for (s, e) in egress.iter().enumerate() {
            if e.as_ref().is_some_and(|e| !e.contains(d)) {
                column.set(s, false);
            }
        }
        // A pod reaches itself on loopback (its own row says so too).
        if !self.cluster.pods[d].is_replica_group() {
            column.insert(d);
        }
        for &s in &locals.stacks {
            if self.local_to(locals, s).any(|local| local.contains(d)) {
                column.insert(s);
            }
        }
        let (port, protocol) = (probe.port, probe.protocol);
        if self.hosts.contains(&d) {
            (0..self.n).for_each(|x| column.set(x, self.host_pair(x, d, port, protocol)));
        } else {
            self.hosts.iter().for_each(|&h| column.set(h, self.host_pair(h, d, port, protocol)));
        }
        column
    }

    /// A pair with a Calico host endpoint at one end, through the per-connection path.
    fn host_pair(&self, a: usize, b: usize, port: u16, protocol: Protocol) -> bool {
        a == b
            || decide(self.cluster, &Connection::new(self.sides[a], self.sides[b], port, protocol)).verdict
                == Verdict::Allow
    }

    /// Decides every pod pair for one port and protocol.
    pub fn matrix(&mut self, port: u16, protocol: Protocol) -> Matrix {
        self.matrix_reusing(port, protocol, Vec::new())
    }

    /// [`Index::matrix`] written into `spare` rows (those of a matrix of this index the caller
    /// is done with): at 100,000 pods a matrix is 1.25 GB, and fresh pages cost the kernel
    /// more to hand out and zero than the rows cost to fill.
    pub fn matrix_reusing(&mut self, port: u16, protocol: Protocol, spare: Vec<FixedBitSet>) -> Matrix {
        let cluster = self.cluster;
        let n = self.n;
        let mut spare = spare.into_iter().filter(|r| r.len() == n);
        let (egress, ingress) = self.sides(port, protocol);
        // A source whose egress admits few peers is decided peer by peer (does each one's
        // ingress admit it?); the others are decided by class (see `SourceClasses`).
        let few = |e: &Admitted| e.as_ref().is_some_and(|e| e.count_ones(..) * 16 <= self.n);
        let mut wanted = FixedBitSet::with_capacity(self.n);
        egress.iter().enumerate().filter(|(_, e)| !few(e)).for_each(|(s, _)| wanted.insert(s));
        let mut classes = SourceClasses::new(&ingress, &wanted);
        let mut rows = Vec::with_capacity(self.n);
        for (s, e) in egress.iter().enumerate() {
            let mut row = spare.next().unwrap_or_else(|| FixedBitSet::with_capacity(n));
            match e {
                Some(e) if !wanted.contains(s) => {
                    row.clear();
                    let admits = |d: &usize| ingress[*d].as_ref().is_none_or(|i| i.contains(s));
                    e.ones().filter(admits).for_each(|d| row.insert(d));
                }
                _ => classes.row(s, e, &rows, &mut row),
            }
            // A pod reaches itself on loopback; a workload's replicas are decided as pods.
            if !cluster.pods[s].is_replica_group() {
                row.insert(s);
            }
            rows.push(row);
        }
        drop(classes);
        self.own_nodes(&mut rows);
        for &h in &self.hosts {
            for x in 0..self.n {
                rows[h].set(x, self.host_pair(h, x, port, protocol));
                rows[x].set(h, self.host_pair(x, h, port, protocol));
            }
        }
        Matrix { port, protocol, rows }
    }
}

impl<'c> Index<'c> {
    /// Nodes (host-network pods, which are their node's stack) reach the pods that run on
    /// them whatever the policies say; see [`crate::verdict::own_node`].
    fn own_nodes(&self, rows: &mut [FixedBitSet]) {
        let locals = self.locals();
        for (s, row) in rows.iter_mut().enumerate() {
            self.local_to(&locals, s).for_each(|local| row.union_with(local));
        }
    }

    /// The pods on the pod network that run on each node, and those on every node.
    fn locals(&self) -> Locals<'c> {
        let cluster = self.cluster;
        let mut on_node: HashMap<&str, FixedBitSet> = HashMap::new();
        // A DaemonSet's template pods run on every node.
        let mut everywhere = FixedBitSet::with_capacity(self.n);
        for p in self.subjects.ones() {
            match placement(cluster, PodId::new(p)) {
                Some(Placement::Node(node)) => {
                    on_node.entry(node).or_insert_with(|| FixedBitSet::with_capacity(self.n)).insert(p)
                }
                Some(Placement::EveryNode) => everywhere.insert(p),
                None => {}
            }
        }
        let stacks = (0..self.n).filter(|&s| node_of(cluster, &self.sides[s]).is_some()).collect();
        Locals { on_node, everywhere, stacks }
    }

    /// The sets of pods that `s` reaches as their node (empty unless `s` is a node's stack).
    fn local_to<'a>(&self, locals: &'a Locals<'c>, s: usize) -> impl Iterator<Item = &'a FixedBitSet> + 'a {
        let sets: Vec<&'a FixedBitSet> = match node_of(self.cluster, &self.sides[s]) {
            Some(Placement::Node(node)) => locals.on_node.get(node).into_iter().chain([&locals.everywhere]).collect(),
            // A host-network DaemonSet pod is on every node: every placed pod is local.
            Some(Placement::EveryNode) => locals.on_node.values().chain([&locals.everywhere]).collect(),
            None => Vec::new(),
        };
        sets.into_iter()
    }
}

/// The sources of one matrix by the row they get before loopback, nodes and host endpoints:
/// a source's egress set (everyone when its egress is not isolated) cut to the destinations
/// whose ingress is open or admits it. Sources with the same egress set that the same ingress
/// groups admit (a workload's replicas, as a rule) get the same row, so it is worked out once
/// per class and copied: the cost is about `sum over classes of admitting groups * min(group
/// size, n / 64)` plus one copy per row, rather than one bit per allowed pair.
struct SourceClasses {
    n: usize,
    /// Destinations whose ingress is not isolated: they admit every source.
    open: FixedBitSet,
    /// The members of each ingress group (pods that share one admitted set).
    members: Vec<Members>,
    /// Per wanted source, the ingress groups that admit it, in group order.
    admitted_by: Vec<Vec<u32>>,
    /// Per wanted source, its `admitted_by` interned: equal lists, equal numbers.
    signature: Vec<u32>,
    /// (egress set, signature) -> the first source of the class and whether its row, before
    /// loopback, holds itself (the row it got is reused with that bit put back).
    known: HashMap<(*const FixedBitSet, u32), (usize, bool)>,
}

/// An ingress group's members: as a bitset when a word-wise union is cheaper than the bits.
enum Members {
    Bits(FixedBitSet),
    List(Vec<usize>),
}

impl SourceClasses {
    /// Groups the isolated destinations by their shared admitted set and lists, for each
    /// source in `wanted`, the groups that admit it.
    fn new(ingress: &[Admitted], wanted: &FixedBitSet) -> Self {
        let n = ingress.len();
        let mut open = full(n);
        // Groups by their shared set, in order of first appearance (deterministic).
        let mut slot: HashMap<*const FixedBitSet, usize> = HashMap::new();
        let mut groups: Vec<(&FixedBitSet, Vec<usize>)> = Vec::new();
        for (y, set) in ingress.iter().enumerate() {
            let Some(set) = set else { continue };
            open.set(y, false);
            let g = *slot.entry(std::rc::Rc::as_ptr(set)).or_insert_with(|| {
                groups.push((set, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(y);
        }
        let mut admitted_by: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (g, (admitted, _)) in groups.iter().enumerate() {
            let g = u32::try_from(g).expect("fewer groups than 2^32");
            admitted.intersection(wanted).for_each(|x| admitted_by[x].push(g));
        }
        let signature = intern(&admitted_by);
        // A word-wise union costs about n / 64 word operations, a bit insert a few: past a
        // quarter of the words, the union is cheaper.
        let words = n.div_ceil(64);
        let members = (groups.into_iter())
            .map(|(_, pods)| match pods.len() * 4 >= words {
                true => {
                    let mut bits = FixedBitSet::with_capacity(n);
                    pods.iter().for_each(|&y| bits.insert(y));
                    Members::Bits(bits)
                }
                false => Members::List(pods),
            })
            .collect();
        let known = HashMap::new();
        SourceClasses { n, open, members, admitted_by, signature, known }
    }

    /// Writes source `s`'s row before loopback, nodes and host endpoints into `row` (of the
    /// matrix's length), given its egress set; `done` holds the rows of the sources before it.
    fn row(&mut self, s: usize, egress: &Admitted, done: &[FixedBitSet], row: &mut FixedBitSet) {
        let set = egress.as_ref().map_or(std::ptr::null(), std::rc::Rc::as_ptr);
        if let Some(&(first, itself)) = self.known.get(&(set, self.signature[s])) {
            row.clone_from(&done[first]);
            row.set(first, itself);
            return;
        }
        row.clone_from(&self.open);
        for &g in &self.admitted_by[s] {
            match &self.members[g as usize] {
                Members::Bits(bits) => row.union_with(bits),
                Members::List(pods) => pods.iter().for_each(|&y| row.insert(y)),
            }
        }
        if let Some(e) = egress {
            row.intersect_with(e);
        }
        debug_assert_eq!(row.len(), self.n);
        self.known.insert((set, self.signature[s]), (s, row.contains(s)));
    }
}

/// Numbers the distinct lists: equal lists get equal numbers.
fn intern(lists: &[Vec<u32>]) -> Vec<u32> {
    let mut ids: HashMap<&[u32], u32> = HashMap::new();
    let fresh = |ids: &HashMap<&[u32], u32>| u32::try_from(ids.len()).expect("fewer lists than 2^32");
    lists
        .iter()
        .map(|l| {
            let next = fresh(&ids);
            *ids.entry(l.as_slice()).or_insert(next)
        })
        .collect()
}

/// Pods by the node they run on (see [`Index::locals`]).
struct Locals<'c> {
    on_node: HashMap<&'c str, FixedBitSet>,
    /// A DaemonSet's template pods: they run on every node.
    everywhere: FixedBitSet,
    /// The pods that are a node's network stack (host network, host endpoints).
    stacks: Vec<usize>,
}

/// What [`Index::evaluate`] reads besides the group: the side, the packet, each rule's own-side
/// kind and, per policy, how many groups evaluate it.
struct Rules<'r> {
    dir: Direction,
    probe: &'r Probe,
    own_kinds: &'r [Vec<OwnSide>],
    shared: &'r [u32],
}

/// Per policy, the number of distinct groups (of `keys`, one per pod) it applies to.
fn groups_per_policy(policies: usize, keys: &[Option<GroupKey>]) -> Vec<u32> {
    let distinct: std::collections::HashSet<&GroupKey> = keys.iter().flatten().collect();
    let mut shared = vec![0u32; policies];
    distinct.iter().flat_map(|k| &k.policies).for_each(|p| shared[p.index()] += 1);
    shared
}

/// The packet of a matrix: only its own fields (protocol, ports, ICMP) are read.
fn probe_for(port: u16, protocol: Protocol) -> Probe {
    let nowhere = Side { endpoint: Endpoint::External, ip: None };
    Probe { port, protocol, template: Connection::new(nowhere, nowhere, port, protocol) }
}

/// A rule's own end for an endpoint in `dir` (destination for ingress, source for egress) and
/// the port of the packet on that end.
fn own_entity<'r>(rule: &'r Rule, dir: Direction, probe: &Probe) -> (&'r Entity, u16) {
    match dir {
        Direction::Ingress => (&rule.destination, probe.port),
        Direction::Egress => (&rule.source, probe.template.src_port),
    }
}

/// The peers one side admits (shared between pods that the same policies select).
pub type Admitted = Option<std::rc::Rc<FixedBitSet>>;

/// One side's admitted sets turned around: `by[x]` holds the pods whose side admits `x`.
pub struct Transposed {
    pub by: Vec<FixedBitSet>,
    /// The pods whose side is isolated (`Some`): the only ones that can appear in `by`.
    pub isolated: FixedBitSet,
}

/// Transposes one side's admitted sets (as [`Index::sides`] gives them, one entry per pod).
/// Pods that share one admitted set (`Rc`) are a group: a large group is added to each pod it
/// admits word by word, a small one bit by bit, so the cost is about
/// `sum over groups of |admitted| * min(|group|, n / 64)` rather than one bit per allowed pair.
pub fn transpose(side: &[Admitted]) -> Transposed {
    let mut every = FixedBitSet::with_capacity(side.len());
    every.insert_range(..);
    transpose_for(side, &every)
}

/// [`transpose`], filling `by[x]` only for the pods `x` in `wanted` (the others stay empty).
pub fn transpose_for(side: &[Admitted], wanted: &FixedBitSet) -> Transposed {
    let n = side.len();
    let mut isolated = FixedBitSet::with_capacity(n);
    // Groups by their shared set, in order of first appearance (deterministic).
    let mut slot: HashMap<*const FixedBitSet, usize> = HashMap::new();
    let mut groups: Vec<(&FixedBitSet, Vec<usize>)> = Vec::new();
    for (y, set) in side.iter().enumerate() {
        let Some(set) = set else { continue };
        isolated.insert(y);
        let g = *slot.entry(std::rc::Rc::as_ptr(set)).or_insert_with(|| {
            groups.push((set, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(y);
    }
    let mut by: Vec<FixedBitSet> = (0..n).map(|_| FixedBitSet::with_capacity(n)).collect();
    // A word-wise union costs about n / 64 word operations; a bit insert a few: past a quarter
    // of the words, the union is cheaper.
    let words = n.div_ceil(64);
    for (admitted, members) in groups {
        if members.len() * 4 >= words {
            let mut group = FixedBitSet::with_capacity(n);
            members.iter().for_each(|&y| group.insert(y));
            admitted.intersection(wanted).for_each(|x| by[x].union_with(&group));
        } else {
            for x in admitted.intersection(wanted) {
                members.iter().for_each(|&y| by[x].insert(y));
            }
        }
    }
    Transposed { by, isolated }
}

/// Convenience: index the cluster and compute one matrix.
pub fn matrix(cluster: &Cluster, port: u16, protocol: Protocol) -> Matrix {
    Index::new(cluster).matrix(port, protocol)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::{ports, rule, selecting, ClusterBuilder};

    /// Every ordered pod pair, as the matrix and as `decide` see it.
    fn agree(cluster: &Cluster, port: u16, protocol: Protocol) {
        let m = matrix(cluster, port, protocol);
        for s in cluster.pod_ids() {
            for d in cluster.pod_ids() {
                let c = Connection::new(Side::pod(cluster, s), Side::pod(cluster, d), port, protocol);
                let want = decide(cluster, &c).verdict == Verdict::Allow;
                assert_eq!(
                    m.allowed(s, d),
                    want,
                    "{} -> {} on {port}/{protocol}",
                    cluster.pod_key(s),
                    cluster.pod_key(d)
                );
            }
        }
    }

    #[test]
    fn transpose_turns_every_admitted_set_around_for_small_and_large_groups() {
        // 300 pods (5 words): groups of one pod go bit by bit, larger ones word by word.
        let n = 300;
        let set = |step: usize, from: usize| {
            let mut s = FixedBitSet::with_capacity(n);
            (from..n).step_by(step).for_each(|x| s.insert(x));
            std::rc::Rc::new(s)
        };
        let shared = [set(3, 0), set(7, 2), set(1, 250)];
        let side: Vec<Admitted> = (0..n)
            .map(|y| match y % 5 {
                0 => None,
                1 => Some(set(11, y % 13)), // a group of its own
                k => Some(shared[k % 3].clone()),
            })
            .collect();
        let t = transpose(&side);
        for (y, admitted) in side.iter().enumerate() {
            assert_eq!(t.isolated.contains(y), admitted.is_some(), "isolated {y}");
            for x in 0..n {
                let admits = admitted.as_ref().is_some_and(|s| s.contains(x));
                assert_eq!(t.by[x].contains(y), admits, "{y}'s side admits {x}");
            }
        }
    }

    #[test]
    fn sources_with_few_egress_peers_agree_with_the_per_connection_path() {
        // 40 pods: web's egress admits the 2 db pods (few: decided peer by peer against db's
        // ingress, which admits web-0 only); the rest are not isolated for egress.
        let mut b = ClusterBuilder::new().ns("shop", &[]);
        let names: Vec<(String, &str)> = (0..40)
            .map(|i| {
                (
                    format!("shop/p{i}"),
                    if i < 2 {
                        "db"
                    } else if i < 6 {
                        "web"
                    } else {
                        "other"
                    },
                )
            })
            .collect();
        for (i, (key, app)) in names.iter().enumerate() {
            b = b.pod(key, &[("app", app), ("n", &i.to_string())], &format!("10.0.0.{}", i + 1));
        }
        let to_db = rule(Action::Allow, None, Entity::default(), selecting("app == 'db'"));
        let from_web0 = rule(Action::Allow, None, selecting("app == 'web' && n == '2'"), Entity::default());
        let cluster = b
            .policy("shop/web-out", 10.0, "app == 'web'", None, Some(vec![to_db]))
            .policy("shop/db-in", 20.0, "app == 'db'", Some(vec![from_web0]), None)
            .build();
        agree(&cluster, 5432, Protocol::TCP);
        let m = matrix(&cluster, 5432, Protocol::TCP);
        let id = |k: &str| cluster.pod("shop", k).expect("fixture pod");
        assert!(m.allowed(id("p2"), id("p0")), "web-0 opens db");
        assert!(!m.allowed(id("p3"), id("p0")), "db admits only web-0");
        assert!(!m.allowed(id("p2"), id("p9")), "web's egress admits db only");
    }

    #[test]
    fn sources_of_one_class_share_a_row_but_not_their_own_loopback_bit() {
        // web-0 and web-1 are one class (same egress, admitted by the same ingress groups);
        // web's ingress admits nobody, so web-0's row must not lend web-0 to web-1.
        let from_web = rule(Action::Allow, None, selecting("app == 'web'"), Entity::default());
        let cluster = ClusterBuilder::new()
            .ns("shop", &[])
            .pod("shop/web-0", &[("app", "web")], "10.0.0.1")
            .pod("shop/web-1", &[("app", "web")], "10.0.0.2")
            .pod("shop/db", &[("app", "db")], "10.0.0.3")
            .policy("shop/db", 10.0, "app == 'db'", Some(vec![from_web]), None)
            .policy("shop/web", 20.0, "app == 'web'", Some(vec![]), None)
            .build();
        agree(&cluster, 5432, Protocol::TCP);
        let m = matrix(&cluster, 5432, Protocol::TCP);
        let id = |k: &str| cluster.pod("shop", k).expect("fixture pod");
        assert!(m.allowed(id("web-0"), id("db")) && m.allowed(id("web-1"), id("db")));
        assert!(m.allowed(id("web-1"), id("web-1")), "loopback");
        assert!(!m.allowed(id("web-1"), id("web-0")), "web's ingress admits nobody");
    }

    #[test]
    fn a_matrix_written_into_another_ports_rows_is_the_same_matrix() {
        let from_web = rule(Action::Allow, Some(Protocol::TCP), selecting("app == 'web'"), ports(&[5432]));
        let cluster = ClusterBuilder::new()
            .ns("shop", &[])
            .pod("shop/web", &[("app", "web")], "10.0.0.1")
            .pod("shop/db", &[("app", "db")], "10.0.0.2")
            .policy("shop/db", 10.0, "app == 'db'", Some(vec![from_web]), None)
            .build();
        let mut index = Index::new(&cluster);
        let spare = index.matrix(80, Protocol::TCP).rows;
        let reused = index.matrix_reusing(5432, Protocol::TCP, spare);
        assert_eq!(reused.rows, matrix(&cluster, 5432, Protocol::TCP).rows);
    }

    #[test]
    fn own_side_ports_decided_once_agree_with_the_per_connection_path() {
        // db's rule sets its own destination port (the packet alone decides it), web's its
        // own source selector (decided per pod).
        let admit = rule(Action::Allow, Some(Protocol::TCP), selecting("app == 'web'"), ports(&[5432]));
        let own_source = rule(Action::Allow, None, selecting("app == 'web'"), Entity::default());
        let cluster = ClusterBuilder::new()
            .ns("shop", &[])
            .pod("shop/web", &[("app", "web")], "10.0.0.1")
            .pod("shop/db", &[("app", "db")], "10.0.0.2")
            .pod("shop/batch", &[("app", "batch")], "10.0.0.3")
            .policy("shop/db", 10.0, "app == 'db'", Some(vec![admit]), None)
            .policy("shop/out", 20.0, "all()", None, Some(vec![own_source]))
            .build();
        for port in [5432, 80] {
            agree(&cluster, port, Protocol::TCP);
        }
        let m = matrix(&cluster, 5432, Protocol::TCP);
        let id = |k: &str| cluster.pod("shop", k).expect("fixture pod");
        assert!(m.allowed(id("web"), id("db")));
        assert!(!m.allowed(id("batch"), id("db")), "batch may not send (egress) nor is it admitted");
        assert!(!matrix(&cluster, 80, Protocol::TCP).allowed(id("web"), id("db")));
    }
}
