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

use crate::decide::matching::{entity_matches, ports_match};
use crate::decide::verdict::{decide, node_of, Verdict};
use crate::model::cluster::{Cluster, PodId};
use crate::model::endpoint::{Connection, Endpoint, Side};
use crate::model::expr::Expr;
use crate::model::label::Labels;
use crate::model::peer::{IpBlock, NamespaceScope, Peer};
use crate::model::policy::{Action, Direction, Match, Rule, Subject};
use crate::model::port::{ContainerPort, Protocol, RulePort};
use crate::model::rule::{CalicoPort, CalicoRule, Entity};
use crate::model::selector::{Op, Selector};

/// `rows[src]` holds the destination pods `src` may open the connection to.
pub struct Matrix {
    pub port: u16,
    pub protocol: Protocol,
    pub rows: Vec<FixedBitSet>,
}

impl Matrix {
    pub fn allowed(&self, src: PodId, dst: PodId) -> bool {
        self.rows[src].contains(dst)
    }
}

/// Label key → (objects having the key, value → objects).
struct LabelIndex {
    all: FixedBitSet,
    keys: HashMap<String, (FixedBitSet, HashMap<String, FixedBitSet>)>,
}

impl LabelIndex {
    fn new<'a>(n: usize, items: impl Iterator<Item = (usize, &'a Labels)>) -> Self {
        let mut all = FixedBitSet::with_capacity(n);
        let mut keys: HashMap<String, (FixedBitSet, HashMap<String, FixedBitSet>)> = HashMap::new();
        for (i, labels) in items {
            all.insert(i);
            for (k, v) in labels {
                let e = keys.entry(k.clone()).or_insert_with(|| (FixedBitSet::with_capacity(n), HashMap::new()));
                e.0.insert(i);
                e.1.entry(v.clone()).or_insert_with(|| FixedBitSet::with_capacity(n)).insert(i);
            }
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

    fn has(&self, key: &str) -> FixedBitSet {
        self.keys.get(key).map(|k| k.0.clone()).unwrap_or_else(|| FixedBitSet::with_capacity(self.all.len()))
    }

    fn eval(&self, sel: &Selector) -> FixedBitSet {
        let mut out = self.all.clone();
        for r in &sel.requirements {
            let matched = match r.op {
                Op::In => self.values(&r.key, &r.values),
                Op::Exists => self.has(&r.key),
                Op::NotIn => complement(&self.all, &self.values(&r.key, &r.values)),
                Op::DoesNotExist => complement(&self.all, &self.has(&r.key)),
            };
            out.intersect_with(&matched);
        }
        out
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
        let one = |v: &String| std::collections::BTreeSet::from([v.clone()]);
        match e {
            Expr::All | Expr::Global => self.all.clone(),
            Expr::Has(k) => self.has(k),
            Expr::Eq(k, v) => self.values(k, &one(v)),
            Expr::Ne(k, v) => complement(&self.all, &self.values(k, &one(v))),
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
    hosts: Vec<PodId>,
    pods: LabelIndex,
    namespaces: LabelIndex,
    /// Labels Calico selectors see: pods' with pseudo-labels, host endpoints'.
    calico: LabelIndex,
    ns_pods: Vec<FixedBitSet>,
    by_ip: Vec<(IpAddr, PodId)>,
    pod_cache: HashMap<Selector, FixedBitSet>,
    ns_cache: HashMap<Selector, FixedBitSet>,
    expr_cache: HashMap<Expr, FixedBitSet>,
}

/// Which policies apply to a pod, and how it fares on its own side of their rules.
#[derive(Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    policies: Vec<usize>,
    own: Vec<bool>,
    ports: Vec<ContainerPort>,
}

/// The packet a matrix is about, independent of who sends it.
struct Probe {
    port: u16,
    protocol: Protocol,
    template: Connection,
}

impl<'c> Index<'c> {
    pub fn new(cluster: &'c Cluster) -> Self {
        let n = cluster.pods.len();
        let sides: Vec<Side> = (0..n).map(|p| Side::pod(cluster, p)).collect();
        let mut subjects = FixedBitSet::with_capacity(n);
        let mut hosts = Vec::new();
        let mut ns_pods = vec![FixedBitSet::with_capacity(n); cluster.namespaces.len()];
        for p in 0..n {
            match sides[p].endpoint {
                Endpoint::Pod(_) if cluster.is_policy_subject(p) => {
                    subjects.insert(p);
                    ns_pods[cluster.pods[p].namespace].insert(p);
                }
                Endpoint::Host(_) => hosts.push(p),
                _ => {}
            }
        }
        let pods = LabelIndex::new(n, subjects.ones().map(|p| (p, &cluster.pods[p].labels)));
        let namespaces = LabelIndex::new(
            cluster.namespaces.len(),
            cluster.namespaces.iter().enumerate().map(|(i, ns)| (i, &ns.labels)),
        );
        let calico_items = (0..n).filter_map(|p| match sides[p].endpoint {
            Endpoint::Pod(_) if subjects.contains(p) => Some((p, &cluster.calico_labels[p])),
            Endpoint::Host(h) => Some((p, &cluster.host_endpoints[h].labels)),
            _ => None,
        });
        let calico = LabelIndex::new(n, calico_items);
        let mut by_ip: Vec<(IpAddr, PodId)> =
            sides.iter().enumerate().filter_map(|(p, s)| s.ip.map(|ip| (ip, p))).collect();
        by_ip.sort();
        Index {
            cluster,
            n,
            sides,
            subjects,
            hosts,
            pods,
            namespaces,
            calico,
            ns_pods,
            by_ip,
            pod_cache: HashMap::new(),
            ns_cache: HashMap::new(),
            expr_cache: HashMap::new(),
        }
    }

    fn pod_selector(&mut self, sel: &Selector) -> FixedBitSet {
        if let Some(s) = self.pod_cache.get(sel) {
            return s.clone();
        }
        let s = self.pods.eval(sel);
        self.pod_cache.insert(sel.clone(), s.clone());
        s
    }

    /// Pods in the namespaces a selector picks.
    fn namespace_selector(&mut self, sel: &Selector) -> FixedBitSet {
        if let Some(s) = self.ns_cache.get(sel) {
            return s.clone();
        }
        let mut s = FixedBitSet::with_capacity(self.n);
        for ns in self.namespaces.eval(sel).ones() {
            s.union_with(&self.ns_pods[ns]);
        }
        self.ns_cache.insert(sel.clone(), s.clone());
        s
    }

    /// Pods a Calico selector matches: by their own labels, or by an address inside a
    /// network set the selector matches (Felix matches selectors through IP sets).
    fn calico_selector(&mut self, e: &Expr) -> FixedBitSet {
        if let Some(s) = self.expr_cache.get(e) {
            return s.clone();
        }
        let mut s = self.calico.eval_expr(e);
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

    fn ip_nets(&self, nets: &[ipnet::IpNet]) -> FixedBitSet {
        let mut s = FixedBitSet::with_capacity(self.n);
        for net in nets {
            for p in self.ip_range(net) {
                s.insert(p);
            }
        }
        s
    }

    fn ip_block(&self, b: &IpBlock) -> FixedBitSet {
        let mut s = self.ip_nets(std::slice::from_ref(&b.cidr));
        s.difference_with(&self.ip_nets(&b.except));
        s
    }

    fn ip_range(&self, net: &ipnet::IpNet) -> impl Iterator<Item = PodId> + '_ {
        let (lo, hi) = (net.network(), net.broadcast());
        let start = self.by_ip.partition_point(|(ip, _)| *ip < lo);
        self.by_ip[start..].iter().take_while(move |(ip, _)| *ip <= hi).map(|(_, p)| *p)
    }

    fn peer(&mut self, peer: &Peer) -> FixedBitSet {
        match peer {
            Peer::IpBlock(b) => self.ip_block(b),
            Peer::Pods { namespaces, pods } => {
                let mut s = match namespaces {
                    NamespaceScope::Own(ns) => self.ns_pods[*ns].clone(),
                    NamespaceScope::Matching(sel) => self.namespace_selector(sel),
                };
                s.intersect_with(&self.pod_selector(pods));
                s
            }
        }
    }

    fn k8s_peers(&mut self, peers: &Option<Vec<Peer>>) -> FixedBitSet {
        match peers {
            None => full(self.n),
            Some(list) => {
                let mut s = FixedBitSet::with_capacity(self.n);
                for p in list {
                    s.union_with(&self.peer(p));
                }
                s
            }
        }
    }

    fn dst_ports(&self, d: PodId) -> Option<&[ContainerPort]> {
        matches!(self.sides[d].endpoint, Endpoint::Pod(_)).then(|| self.cluster.pods[d].ports.as_slice())
    }

    fn k8s_port_ok(&self, ports: &Option<Vec<RulePort>>, probe: &Probe, d: PodId) -> bool {
        ports.as_ref().is_none_or(|ps| ps.iter().any(|p| p.matches(probe.port, probe.protocol, self.dst_ports(d))))
    }

    /// Destination pods whose ports satisfy a Kubernetes rule's ports.
    fn k8s_port_set(&self, ports: &Option<Vec<RulePort>>, probe: &Probe) -> FixedBitSet {
        let numeric_hit = ports
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| !p.is_named() && p.matches(probe.port, probe.protocol, None)));
        if numeric_hit {
            return full(self.n);
        }
        let mut s = FixedBitSet::with_capacity(self.n);
        if ports.iter().flatten().any(RulePort::is_named) {
            for d in 0..self.n {
                if self.k8s_port_ok(ports, probe, d) {
                    s.insert(d);
                }
            }
        }
        s
    }

    /// Pods (as peers) meeting one side of a Calico rule.
    fn calico_entity(&mut self, rule: &CalicoRule, e: &Entity, port: u16, probe: &Probe) -> FixedBitSet {
        let mut s = full(self.n);
        if rule.ip_version.is_some() {
            for p in 0..self.n {
                s.set(p, rule.version_ok(self.sides[p].ip));
            }
        }
        if !e.nets.is_empty() {
            s.intersect_with(&self.ip_nets(&e.nets));
        }
        s.difference_with(&self.ip_nets(&e.not_nets));
        if let Some(sel) = &e.selector {
            s.intersect_with(&self.calico_selector(sel));
        }
        if let Some(sel) = &e.not_selector {
            s.difference_with(&self.calico_selector(sel));
        }
        if !e.ports.is_empty() || !e.not_ports.is_empty() {
            let cluster = self.cluster;
            let named = e.ports.iter().chain(&e.not_ports).any(|p| matches!(p, CalicoPort::Named(_)));
            if !named {
                // Numbers only: the same answer for every peer, so decide it once.
                let anyone = Side { endpoint: Endpoint::External, ip: None };
                if !ports_match(e, &anyone, cluster, port, probe.protocol) {
                    s.clear();
                }
            } else {
                for p in s.clone().ones() {
                    if !ports_match(e, &self.sides[p], cluster, port, probe.protocol) {
                        s.set(p, false);
                    }
                }
            }
        }
        s
    }

    /// The peers a rule matches for an endpoint in `dir` (its own side checked by the caller).
    fn rule_peers(&mut self, rule: &Rule, dir: Direction, probe: &Probe) -> FixedBitSet {
        match &rule.matches {
            Match::Kubernetes { peers, ports } => {
                let mut s = self.k8s_peers(peers);
                if dir == Direction::Egress {
                    s.intersect_with(&self.k8s_port_set(ports, probe));
                }
                s
            }
            Match::Calico(c) => {
                if c.packet_matches(&probe.template).is_err() {
                    return FixedBitSet::with_capacity(self.n);
                }
                match dir {
                    Direction::Ingress => self.calico_entity(c, &c.source, probe.template.src_port, probe),
                    Direction::Egress => self.calico_entity(c, &c.destination, probe.port, probe),
                }
            }
        }
    }

    /// Whether pod `x` meets its own side of a rule (destination for ingress, source for egress).
    fn own_side(&self, rule: &Rule, dir: Direction, probe: &Probe, x: PodId) -> bool {
        match &rule.matches {
            Match::Kubernetes { ports, .. } => dir == Direction::Egress || self.k8s_port_ok(ports, probe, x),
            Match::Calico(c) => {
                let side = &self.sides[x];
                let (e, port) = match dir {
                    Direction::Ingress => (&c.destination, probe.port),
                    Direction::Egress => (&c.source, probe.template.src_port),
                };
                c.version_ok(side.ip) && entity_matches(self.cluster, e, side, port, probe.protocol)
            }
        }
    }

    /// For each pod, the policies (in evaluation order) that apply to it in `dir`.
    pub fn applicable(&mut self, dir: Direction) -> Vec<Vec<usize>> {
        let mut by_pod: Vec<Vec<usize>> = vec![Vec::new(); self.n];
        for (i, s) in self.selected(dir) {
            for p in s.ones() {
                by_pod[p].push(i);
            }
        }
        by_pod
    }

    /// Pods a Kubernetes peer (pods or IP block) covers.
    pub fn peer_pods(&mut self, peer: &Peer) -> FixedBitSet {
        self.peer(peer)
    }

    /// Pods and host endpoints whose own labels a Calico expression matches (no network sets).
    pub fn calico_label_pods(&self, e: &Expr) -> FixedBitSet {
        self.calico.eval_expr(e)
    }

    /// The side (pod, host endpoint or node) each pod stands for.
    pub fn side(&self, p: PodId) -> Side {
        self.sides[p]
    }

    /// Pods each policy applies to in `dir`.
    fn selected(&mut self, dir: Direction) -> Vec<(usize, FixedBitSet)> {
        let cluster = self.cluster;
        let mut out = Vec::new();
        for (i, pol) in cluster.policies.iter().enumerate() {
            if pol.rules(dir).is_none() {
                continue;
            }
            let s = match &pol.subject {
                Subject::Pods(sel) => {
                    let mut s = self.ns_pods[pol.namespace.expect("Kubernetes policies are namespaced")].clone();
                    s.intersect_with(&self.pod_selector(sel));
                    s
                }
                Subject::Endpoints(e) => {
                    let mut s = self.calico.eval_expr(e);
                    s.intersect_with(&self.subjects);
                    s
                }
            };
            out.push((i, s));
        }
        out
    }

    /// Per pod: `None` when no policy applies in `dir`, else the peers it allows.
    fn allowed(&mut self, dir: Direction, probe: &Probe) -> Vec<Admitted> {
        let by_pod = self.applicable(dir);
        let mut groups: HashMap<GroupKey, std::rc::Rc<FixedBitSet>> = HashMap::new();
        let mut peers_cache: HashMap<(usize, usize), FixedBitSet> = HashMap::new();
        let mut out = Vec::with_capacity(self.n);
        for (x, pols) in by_pod.into_iter().enumerate() {
            if pols.is_empty() {
                out.push(None);
                continue;
            }
            let key = self.group_key(pols, dir, probe, x);
            if let Some(g) = groups.get(&key) {
                out.push(Some(g.clone()));
                continue;
            }
            let set = std::rc::Rc::new(self.evaluate(&key, dir, probe, &mut peers_cache));
            groups.insert(key, set.clone());
            out.push(Some(set));
        }
        out
    }

    fn group_key(&self, policies: Vec<usize>, dir: Direction, probe: &Probe, x: PodId) -> GroupKey {
        let mut own = Vec::new();
        let mut named = false;
        for &pi in &policies {
            for rule in self.cluster.policies[pi].rules(dir).into_iter().flatten() {
                named |= rule.uses_named_ports();
                if has_own_side(rule, dir) {
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
        dir: Direction,
        probe: &Probe,
        cache: &mut HashMap<(usize, usize), FixedBitSet>,
    ) -> FixedBitSet {
        let cluster = self.cluster;
        let mut allowed = FixedBitSet::with_capacity(self.n);
        let mut undecided = full(self.n);
        let mut own = key.own.iter();
        for (tier, run) in cluster.tier_runs(&key.policies) {
            let mut open = undecided.clone();
            let mut passed = FixedBitSet::with_capacity(self.n);
            for &pi in run {
                for (ri, rule) in cluster.policies[pi].rules(dir).into_iter().flatten().enumerate() {
                    let own_ok = !has_own_side(rule, dir) || *own.next().expect("one own-side bit per rule");
                    if !own_ok || rule.action == Action::Log || open.is_clear() {
                        continue;
                    }
                    let peers = cache.entry((pi, ri)).or_insert_with(|| self.rule_peers(rule, dir, probe));
                    let mut hit = peers.clone();
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
    pub fn sides(&mut self, port: u16, protocol: Protocol) -> (Vec<Admitted>, Vec<Admitted>) {
        // Only the packet's own fields (protocol, ports, ICMP) of this template are read.
        let nowhere = Side { endpoint: Endpoint::External, ip: None };
        let probe = Probe { port, protocol, template: Connection::new(nowhere, nowhere, port, protocol) };
        (self.allowed(Direction::Egress, &probe), self.allowed(Direction::Ingress, &probe))
    }

    /// Decides every pod pair for one port and protocol.
    pub fn matrix(&mut self, port: u16, protocol: Protocol) -> Matrix {
        let cluster = self.cluster;
        let (egress, ingress) = self.sides(port, protocol);
        let mut t = vec![FixedBitSet::with_capacity(self.n); self.n];
        let mut open = FixedBitSet::with_capacity(self.n);
        for (d, set) in ingress.iter().enumerate() {
            match set {
                None => open.insert(d),
                Some(sources) => {
                    for s in sources.ones() {
                        t[s].insert(d);
                    }
                }
            }
        }
        let mut rows = Vec::with_capacity(self.n);
        for (s, e) in egress.into_iter().enumerate() {
            let mut row = std::mem::take(&mut t[s]);
            row.union_with(&open);
            if let Some(e) = e {
                row.intersect_with(&e);
            }
            // A pod reaches itself on loopback; a workload's replicas are decided as pods.
            if !cluster.pods[s].is_replica_group() {
                row.insert(s);
            }
            rows.push(row);
        }
        self.own_nodes(&mut rows);
        for &h in &self.hosts {
            for x in 0..self.n {
                let pair = |a: PodId, b: PodId| {
                    a == b
                        || decide(cluster, &Connection::new(self.sides[a], self.sides[b], port, protocol)).verdict
                            == Verdict::Allow
                };
                rows[h].set(x, pair(h, x));
                rows[x].set(h, pair(x, h));
            }
        }
        Matrix { port, protocol, rows }
    }
}

impl Index<'_> {
    /// Nodes (host-network pods, which are their node's stack) reach the pods that run on
    /// them whatever the policies say; see [`crate::verdict::own_node`].
    fn own_nodes(&self, rows: &mut [FixedBitSet]) {
        let cluster = self.cluster;
        let mut on_node: HashMap<&str, FixedBitSet> = HashMap::new();
        for p in self.subjects.ones() {
            if let Some(node) = cluster.pods[p].node.as_deref() {
                on_node.entry(node).or_insert_with(|| FixedBitSet::with_capacity(self.n)).insert(p);
            }
        }
        for (s, row) in rows.iter_mut().enumerate() {
            if let Some(local) = node_of(cluster, &self.sides[s]).and_then(|node| on_node.get(node)) {
                row.union_with(local);
            }
        }
    }
}

/// Whether the matrix tracks the pod's own side of a rule: Calico rules constrain both ends;
/// a Kubernetes rule's ports belong to the destination, the pod itself on ingress.
fn has_own_side(rule: &Rule, dir: Direction) -> bool {
    matches!(rule.matches, Match::Calico(_)) || dir == Direction::Ingress
}

/// The peers one side admits (shared between pods that the same policies select).
pub type Admitted = Option<std::rc::Rc<FixedBitSet>>;

/// Convenience: index the cluster and compute one matrix.
pub fn matrix(cluster: &Cluster, port: u16, protocol: Protocol) -> Matrix {
    Index::new(cluster).matrix(port, protocol)
}
