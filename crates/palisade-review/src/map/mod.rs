//! The connectivity map: every endpoint pair with the ports and protocols it may use, in one
//! run. Ports are cut into the stretches that pods, Services and rules name ([`crate::probe`]),
//! so one decision per stretch decides every port in it; pod pairs come from the bitset index
//! (one matrix per stretch), pods against the outside world and nodes from [`Connectivity`].
//! TCP, UDP and SCTP are always mapped (a rule without ports admits SCTP too, as a conformant
//! plugin does); ICMP and other protocols without ports appear as one stretch each where some
//! rule can tell them apart, and are otherwise left to `matrix --protocol ICMP`.

pub mod text;

use std::collections::HashMap;
use std::fmt::Write as _;

use palisade_core::cluster::{Cluster, PodId};
use palisade_core::port::Protocol;
use serde::Serialize;

use crate::connectivity::{Address, Connectivity, Cuts};
use crate::probe::{merge, Probe};

/// Adds SCTP's one stretch (1-65535) when no rule names an SCTP port: the analyses probe SCTP
/// only where a rule names it, but the map answers for every protocol with ports, and a pod no
/// policy isolates (or a rule without ports) admits SCTP as well (Kubernetes NetworkPolicy API
/// reference, `NetworkPolicyPort.protocol`; SCTP is GA since 1.20).
fn with_sctp(probes: &mut Vec<Probe>) {
    if !probes.iter().any(|p| p.protocol == Protocol::SCTP) {
        probes.push(Probe { port: 1, protocol: Protocol::SCTP, end: 65535 });
    }
}

/// One end of a pair: a pod, or an address endpoint of [`Map::addresses`] (by position).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum End {
    Pod(PodId),
    Address(usize),
}

/// One pair that may connect on some port: `set` indexes [`Map::sets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    pub src: End,
    pub dst: End,
    pub set: usize,
}

/// Every endpoint pair with the stretches it may use. Pairs that may use nothing are absent;
/// a pod's connection to itself is absent too (loopback, always allowed), except for a
/// workload's template pod standing for several replicas, where it means replica to replica.
pub struct Map {
    /// The stretches: protocols without ports where a rule tells them apart, then TCP, UDP and
    /// SCTP, each in port order.
    pub probes: Vec<Probe>,
    /// The outside pieces, then the nodes and host endpoints ([`Connectivity`]'s addresses).
    pub addresses: Vec<Address>,
    /// The distinct sets of stretches pairs may use, as indices into `probes`, ascending.
    pub sets: Vec<Vec<usize>>,
    /// Pod sources in `namespace/name` order (destinations alike, then addresses), then the
    /// address sources.
    pub pairs: Vec<Pair>,
}

impl Map {
    /// Computes the map of one cluster: one pod matrix per stretch through the bitset index.
    pub fn compute(cluster: &Cluster) -> Map {
        let mut cuts = Cuts::of(&[cluster]);
        with_sctp(&mut cuts.probes);
        let conn = Connectivity::compute(cluster, cuts, || {});
        Map::from_connectivity(cluster, conn)
    }

    /// The map of an already computed [`Connectivity`] (with the probes it was given: SCTP is
    /// in the map only if it was among them).
    pub fn from_connectivity(cluster: &Cluster, conn: Connectivity) -> Map {
        let mut builder = Builder::new(conn.probes.len());
        let order = cluster.pods_sorted();
        let (n, a) = (cluster.pods.len(), conn.addresses.len());
        for &s in &order {
            let diagonal = !cluster.pods[s].is_replica_group();
            // One bit per stretch, for every destination pod, then every address.
            let mut bits = vec![0u64; (n + a) * builder.words];
            for (p, m) in conn.matrices.iter().enumerate() {
                for d in m.rows[s.index()].ones() {
                    builder.set(&mut bits, d, p);
                }
                for (x, pods) in conn.to_address[p].iter().enumerate() {
                    if pods.contains(s.index()) {
                        builder.set(&mut bits, n + x, p);
                    }
                }
            }
            let ends = order.iter().map(|&d| (d.index(), End::Pod(d))).filter(|&(d, _)| !(diagonal && d == s.index()));
            let ends = ends.chain((0..a).map(|x| (n + x, End::Address(x))));
            for (slot, dst) in ends {
                builder.pair(End::Pod(s), dst, &bits[slot * builder.words..(slot + 1) * builder.words]);
            }
        }
        for x in 0..a {
            let mut bits = vec![0u64; n * builder.words];
            for p in 0..conn.probes.len() {
                for d in conn.from_address[p][x].ones() {
                    builder.set(&mut bits, d, p);
                }
            }
            for &d in &order {
                let slot = d.index();
                builder.pair(End::Address(x), End::Pod(d), &bits[slot * builder.words..(slot + 1) * builder.words]);
            }
        }
        Map { probes: conn.probes, addresses: conn.addresses, sets: builder.sets, pairs: builder.pairs }
    }

    /// The stretches of one set, adjacent ones merged: what a pair may use, as port ranges.
    pub fn ranges(&self, set: usize) -> Vec<Probe> {
        let chosen: Vec<Probe> = self.sets[set].iter().map(|&p| self.probes[p]).collect();
        merge(&chosen)
    }

    /// The name every output gives an end: `namespace/pod`, `outside 10.0.0.0/8`, `node n1`.
    pub fn name(&self, cluster: &Cluster, end: End) -> String {
        match end {
            End::Pod(p) => cluster.pod_key(p),
            End::Address(x) => self.addresses[x].name.clone(),
        }
    }

    /// The JSON shape: `{"stretches": [...], "connections": [{"from", "to", "ports": [...]}]}`.
    pub fn to_json(&self, cluster: &Cluster) -> JsonMap {
        let ranges: Vec<Vec<JsonRange>> =
            (0..self.sets.len()).map(|s| self.ranges(s).iter().map(JsonRange::from).collect()).collect();
        let connections = (self.pairs.iter())
            .map(|p| JsonPair {
                from: self.name(cluster, p.src),
                to: self.name(cluster, p.dst),
                ports: ranges[p.set].clone(),
            })
            .collect();
        JsonMap { stretches: self.probes.iter().map(JsonRange::from).collect(), connections }
    }

    /// CSV: `from,to,protocol,first_port,last_port`, one row per port range of each pair.
    pub fn to_csv(&self, cluster: &Cluster) -> String {
        let mut out = String::from("from,to,protocol,first_port,last_port\n");
        let ranges: Vec<Vec<Probe>> = (0..self.sets.len()).map(|s| self.ranges(s)).collect();
        for p in &self.pairs {
            let (from, to) = (csv_field(&self.name(cluster, p.src)), csv_field(&self.name(cluster, p.dst)));
            for r in &ranges[p.set] {
                let _ = writeln!(out, "{from},{to},{},{},{}", r.protocol, r.port, r.end);
            }
        }
        out
    }
}

/// A name quoted for CSV when it holds a comma (outside pieces list their holes).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Interns the sets of stretches while the pairs are collected.
struct Builder {
    words: usize,
    ids: HashMap<Vec<u64>, usize>,
    sets: Vec<Vec<usize>>,
    pairs: Vec<Pair>,
}

impl Builder {
    fn new(probes: usize) -> Builder {
        Builder { words: probes.div_ceil(64).max(1), ids: HashMap::new(), sets: Vec::new(), pairs: Vec::new() }
    }

    fn set(&self, bits: &mut [u64], slot: usize, probe: usize) {
        bits[slot * self.words + probe / 64] |= 1 << (probe % 64);
    }

    fn pair(&mut self, src: End, dst: End, bits: &[u64]) {
        if bits.iter().all(|w| *w == 0) {
            return;
        }
        let set = match self.ids.get(bits) {
            Some(&id) => id,
            None => {
                let id = self.sets.len();
                let ones = (0..bits.len() * 64).filter(|&p| bits[p / 64] & (1 << (p % 64)) != 0);
                self.sets.push(ones.collect());
                self.ids.insert(bits.to_vec(), id);
                id
            }
        };
        self.pairs.push(Pair { src, dst, set });
    }
}

/// A port range of one protocol, both ends included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct JsonRange {
    pub protocol: Protocol,
    pub first: u16,
    pub last: u16,
}

impl From<&Probe> for JsonRange {
    fn from(p: &Probe) -> JsonRange {
        JsonRange { protocol: p.protocol, first: p.port, last: p.end }
    }
}

/// One pair that may connect, with the ranges it may use.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct JsonPair {
    pub from: String,
    pub to: String,
    pub ports: Vec<JsonRange>,
}

/// `matrix --all-ports --output json`.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct JsonMap {
    /// The stretches every port range is made of.
    pub stretches: Vec<JsonRange>,
    pub connections: Vec<JsonPair>,
}
