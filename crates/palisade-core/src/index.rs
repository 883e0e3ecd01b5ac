//! All pod pairs at once, with bitsets.
//!
//! Selectors are evaluated once against label indexes (cached by selector), peers become pod
//! bitsets, IP blocks become ranges over pods sorted by IP, and pods that the same policies
//! select share one allowed-set. The result agrees with [`crate::verdict::decide`] for every pair.

use std::collections::HashMap;
use std::net::IpAddr;

use fixedbitset::FixedBitSet;

use crate::cluster::{Cluster, PodId};
use crate::label::Labels;
use crate::peer::{IpBlock, NamespaceScope, Peer};
use crate::policy::{Direction, Rule};
use crate::port::{ContainerPort, Protocol};
use crate::selector::{Op, Selector};
use crate::verdict::{Endpoint, Side};

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
    pods: LabelIndex,
    namespaces: LabelIndex,
    ns_pods: Vec<FixedBitSet>,
    by_ip: Vec<(IpAddr, PodId)>,
    pod_cache: HashMap<Selector, FixedBitSet>,
    ns_cache: HashMap<Selector, FixedBitSet>,
}

impl<'c> Index<'c> {
    pub fn new(cluster: &'c Cluster) -> Self {
        let n = cluster.pods.len();
        let sides: Vec<Side> = (0..n).map(|p| Side::pod(cluster, p)).collect();
        let mut subjects = FixedBitSet::with_capacity(n);
        let mut ns_pods = vec![FixedBitSet::with_capacity(n); cluster.namespaces.len()];
        for p in 0..n {
            if matches!(sides[p].endpoint, Endpoint::Pod(_)) && cluster.is_policy_subject(p) {
                subjects.insert(p);
                ns_pods[cluster.pods[p].namespace].insert(p);
            }
        }
        let pods = LabelIndex::new(n, subjects.ones().map(|p| (p, &cluster.pods[p].labels)));
        let namespaces = LabelIndex::new(
            cluster.namespaces.len(),
            cluster.namespaces.iter().enumerate().map(|(i, ns)| (i, &ns.labels)),
        );
        let mut by_ip: Vec<(IpAddr, PodId)> =
            sides.iter().enumerate().filter_map(|(p, s)| s.ip.map(|ip| (ip, p))).collect();
        by_ip.sort();
        Index {
            cluster,
            n,
            sides,
            pods,
            namespaces,
            ns_pods,
            by_ip,
            pod_cache: HashMap::new(),
            ns_cache: HashMap::new(),
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

    fn ip_block(&self, b: &IpBlock) -> FixedBitSet {
        let mut s = FixedBitSet::with_capacity(self.n);
        for p in self.ip_range(&b.cidr) {
            s.insert(p);
        }
        for e in &b.except {
            for p in self.ip_range(e) {
                s.set(p, false);
            }
        }
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

    fn peers(&mut self, rule: &Rule) -> FixedBitSet {
        match &rule.peers {
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

    fn port_ok(&self, rule: &Rule, port: u16, proto: Protocol, d: PodId) -> bool {
        rule.ports.as_ref().is_none_or(|ps| ps.iter().any(|p| p.matches(port, proto, self.dst_ports(d))))
    }

    /// Destination pods whose ports satisfy the rule for this connection.
    fn port_ok_set(&self, rule: &Rule, port: u16, proto: Protocol) -> FixedBitSet {
        let numeric_hit =
            rule.ports.as_ref().is_none_or(|ps| ps.iter().any(|p| !p.is_named() && p.matches(port, proto, None)));
        if numeric_hit {
            return full(self.n);
        }
        let mut s = FixedBitSet::with_capacity(self.n);
        if rule.uses_named_ports() {
            for d in 0..self.n {
                if self.port_ok(rule, port, proto, d) {
                    s.insert(d);
                }
            }
        }
        s
    }

    /// Pods each policy selects for `dir` (only policy subjects), per policy index.
    fn selected(&mut self, dir: Direction) -> Vec<(usize, FixedBitSet)> {
        let cluster = self.cluster;
        let mut out = Vec::new();
        for (i, pol) in cluster.policies.iter().enumerate() {
            if pol.rules(dir).is_none() {
                continue;
            }
            let mut s = self.ns_pods[pol.namespace].clone();
            s.intersect_with(&self.pod_selector(&pol.selector));
            out.push((i, s));
        }
        out
    }

    /// For every pod, the ids of the `dir` policies selecting it (empty: not isolated).
    fn selecting(&mut self, dir: Direction) -> Vec<Vec<usize>> {
        let mut by_pod: Vec<Vec<usize>> = vec![Vec::new(); self.n];
        for (i, s) in self.selected(dir) {
            for p in s.ones() {
                by_pod[p].push(i);
            }
        }
        by_pod
    }

    /// Egress: per source, the destinations its policies allow (`None`: not isolated).
    fn egress(&mut self, port: u16, proto: Protocol) -> Vec<Option<std::rc::Rc<FixedBitSet>>> {
        let cluster = self.cluster;
        let by_pod = self.selecting(Direction::Egress);
        let mut per_policy: HashMap<usize, FixedBitSet> = HashMap::new();
        let mut groups: HashMap<Vec<usize>, std::rc::Rc<FixedBitSet>> = HashMap::new();
        let mut out = Vec::with_capacity(self.n);
        for pols in &by_pod {
            if pols.is_empty() {
                out.push(None);
                continue;
            }
            if let Some(g) = groups.get(pols) {
                out.push(Some(g.clone()));
                continue;
            }
            let mut set = FixedBitSet::with_capacity(self.n);
            for &pi in pols {
                if let std::collections::hash_map::Entry::Vacant(slot) = per_policy.entry(pi) {
                    let mut allowed = FixedBitSet::with_capacity(self.n);
                    for rule in cluster.policies[pi].egress.iter().flatten() {
                        let mut r = self.peers(rule);
                        r.intersect_with(&self.port_ok_set(rule, port, proto));
                        allowed.union_with(&r);
                    }
                    slot.insert(allowed);
                }
                set.union_with(&per_policy[&pi]);
            }
            let g = std::rc::Rc::new(set);
            groups.insert(pols.clone(), g.clone());
            out.push(Some(g));
        }
        out
    }

    /// Ingress: transposed, so `t[src]` holds the isolated destinations that admit `src`.
    /// Returns (t, destinations not isolated for ingress).
    fn ingress_transposed(&mut self, port: u16, proto: Protocol) -> (Vec<FixedBitSet>, FixedBitSet) {
        let cluster = self.cluster;
        let by_pod = self.selecting(Direction::Ingress);
        let mut open = FixedBitSet::with_capacity(self.n);
        // Group destinations by (selecting policies, ports when a rule names ports).
        let mut groups: HashMap<(Vec<usize>, Vec<ContainerPort>), Vec<PodId>> = HashMap::new();
        for (d, pols) in by_pod.into_iter().enumerate() {
            if pols.is_empty() {
                open.insert(d);
                continue;
            }
            let named = pols.iter().any(|&p| cluster.policies[p].ingress.iter().flatten().any(Rule::uses_named_ports));
            let ports = if named { cluster.pods[d].ports.clone() } else { Vec::new() };
            groups.entry((pols, ports)).or_default().push(d);
        }
        let mut t = vec![FixedBitSet::with_capacity(self.n); self.n];
        let mut rule_peers: HashMap<(usize, usize), FixedBitSet> = HashMap::new();
        for ((pols, _), members) in groups {
            let rep = members[0];
            let mut sources = FixedBitSet::with_capacity(self.n);
            for &pi in &pols {
                for (ri, rule) in cluster.policies[pi].ingress.iter().flatten().enumerate() {
                    if !self.port_ok(rule, port, proto, rep) {
                        continue;
                    }
                    if let std::collections::hash_map::Entry::Vacant(slot) = rule_peers.entry((pi, ri)) {
                        slot.insert(self.peers(rule));
                    }
                    sources.union_with(&rule_peers[&(pi, ri)]);
                }
            }
            for s in sources.ones() {
                for &d in &members {
                    t[s].insert(d);
                }
            }
        }
        (t, open)
    }

    /// Decides every pod pair for one port and protocol.
    pub fn matrix(&mut self, port: u16, protocol: Protocol) -> Matrix {
        let egress = self.egress(port, protocol);
        let (mut t, open) = self.ingress_transposed(port, protocol);
        let mut rows = Vec::with_capacity(self.n);
        for (s, e) in egress.into_iter().enumerate() {
            let mut row = std::mem::take(&mut t[s]);
            row.union_with(&open);
            if let Some(e) = e {
                row.intersect_with(&e);
            }
            row.insert(s);
            rows.push(row);
        }
        Matrix { port, protocol, rows }
    }
}

/// Convenience: index the cluster and compute one matrix.
pub fn matrix(cluster: &Cluster, port: u16, protocol: Protocol) -> Matrix {
    Index::new(cluster).matrix(port, protocol)
}
