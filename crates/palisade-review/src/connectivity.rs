//! Who can open what: every pod pair on every probe (through the bitset index), and every pod
//! against the address blocks the policies name (through the engine, one address per block).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fixedbitset::FixedBitSet;
use ipnet::IpNet;
use palisade_core::cluster::{Cluster, PodId};
use palisade_core::index::{Index, Matrix};
use palisade_core::peer::{IpBlock, Peer};
use palisade_core::policy::{Direction, Match};
use palisade_core::port::ContainerPort;
use palisade_core::verdict::{decide, Connection, Side, Verdict};

use crate::probe::Probe;

/// An address block some policy names, drawn as a node of its own.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct External {
    pub block: String,
    /// One address inside the block (and outside its exceptions) that stands for it.
    pub address: IpAddr,
}

impl fmt::Display for External {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.block)
    }
}

pub struct Connectivity {
    pub probes: Vec<Probe>,
    /// One pod matrix per probe.
    pub matrices: Vec<Matrix>,
    pub externals: Vec<External>,
    /// `[probe][external]`: the pods that may open a connection to it.
    pub to_external: Vec<Vec<FixedBitSet>>,
    /// `[probe][external]`: the pods it may open a connection to.
    pub from_external: Vec<Vec<FixedBitSet>>,
}

impl Connectivity {
    /// Computes everything; `tick` is called once per unit of work out of [`Connectivity::work`].
    pub fn compute(cluster: &Cluster, probes: Vec<Probe>, tick: impl FnMut()) -> Connectivity {
        Connectivity::compute_with(cluster, probes, tick, true)
    }

    /// [`Connectivity::compute`] deciding every pod against every address block through the
    /// engine's per-connection path, never the shortcut (for tests that hold the two alike).
    pub fn compute_by_decide(cluster: &Cluster, probes: Vec<Probe>) -> Connectivity {
        Connectivity::compute_with(cluster, probes, || {}, false)
    }

    fn compute_with(cluster: &Cluster, probes: Vec<Probe>, mut tick: impl FnMut(), shortcut: bool) -> Connectivity {
        let mut index = Index::new(cluster);
        let externals = externals(cluster);
        let classes = classes(cluster, &mut index);
        let kubernetes = (shortcut && !cluster.uses_calico() && cluster.host_endpoints.is_empty())
            .then(|| [index.applicable(Direction::Egress), index.applicable(Direction::Ingress)]);
        let mut matrices = Vec::with_capacity(probes.len());
        let (mut to_external, mut from_external) = (Vec::new(), Vec::new());
        for probe in &probes {
            matrices.push(index.matrix(probe.port, probe.protocol));
            tick();
            let (to, from): (Vec<_>, Vec<_>) = externals
                .iter()
                .map(|e| {
                    tick();
                    match &kubernetes {
                        Some(applicable) => kubernetes_sides(cluster, &classes, applicable, e.address, probe),
                        None => external_sides(cluster, &classes, e.address, probe),
                    }
                })
                .unzip();
            to_external.push(to);
            from_external.push(from);
        }
        Connectivity { probes, matrices, externals, to_external, from_external }
    }

    /// Units of work `compute` reports, for a progress bar.
    pub fn work(cluster: &Cluster, probes: &[Probe]) -> u64 {
        (probes.len() * (1 + externals(cluster).len())) as u64
    }

    /// The probes on which `src` may open a connection to `dst` (two different pods).
    pub fn pair(&self, src: PodId, dst: PodId) -> Vec<Probe> {
        let on = self.matrices.iter().zip(&self.probes).filter(|(m, _)| m.allowed(src, dst));
        on.map(|(_, p)| *p).collect()
    }
}

/// Pods that any outside address sees alike: the same policies apply to them in each
/// direction and they have the same container ports (named ports). Calico rules can also
/// name the pod's own labels and address, so there every pod is its own class.
fn classes(cluster: &Cluster, index: &mut Index) -> Vec<Vec<PodId>> {
    let n = cluster.pods.len();
    if cluster.uses_calico() || !cluster.host_endpoints.is_empty() {
        return (0..n).map(|p| vec![p]).collect();
    }
    let (egress, ingress) = (index.applicable(Direction::Egress), index.applicable(Direction::Ingress));
    // (egress policies, ingress policies, container ports, host network)
    type Key<'a> = (&'a [usize], &'a [usize], &'a [ContainerPort], bool);
    let mut by_key: HashMap<Key, Vec<PodId>> = HashMap::new();
    for p in 0..n {
        let pod = &cluster.pods[p];
        by_key.entry((&egress[p], &ingress[p], &pod.ports, pod.host_network)).or_default().push(p);
    }
    by_key.into_values().collect()
}

fn external_sides(
    cluster: &Cluster,
    classes: &[Vec<PodId>],
    address: IpAddr,
    probe: &Probe,
) -> (FixedBitSet, FixedBitSet) {
    let n = cluster.pods.len();
    let (mut to, mut from) = (FixedBitSet::with_capacity(n), FixedBitSet::with_capacity(n));
    let outside = Side::ip(cluster, address);
    for class in classes {
        let pod = Side::pod(cluster, class[0]);
        let allowed = |src, dst| decide(cluster, &Connection::new(src, dst, probe.port, probe.protocol)).verdict;
        let (t, f) = (allowed(pod, outside) == Verdict::Allow, allowed(outside, pod) == Verdict::Allow);
        for &p in class {
            to.set(p, t);
            from.set(p, f);
        }
    }
    (to, from)
}

/// Kubernetes policy only: a pod may open (or be opened by) an outside address when that side
/// is not isolated, or one of its policies has a rule whose peers include the address (or are
/// absent) and whose ports admit the probe. No trace, no scan over unrelated policies.
fn kubernetes_sides(
    cluster: &Cluster,
    classes: &[Vec<PodId>],
    applicable: &[Vec<Vec<usize>>; 2],
    address: IpAddr,
    probe: &Probe,
) -> (FixedBitSet, FixedBitSet) {
    let n = cluster.pods.len();
    let mut sides = [FixedBitSet::with_capacity(n), FixedBitSet::with_capacity(n)];
    for (k, dir) in [Direction::Egress, Direction::Ingress].into_iter().enumerate() {
        // Pods of one class have the same policies and ports: one answer serves them all.
        for class in classes {
            let p = class[0];
            let list = &applicable[k][p];
            let pod = &cluster.pods[p];
            // Named ports resolve against the destination: the pod on ingress, none on egress.
            let dst_ports = (dir == Direction::Ingress).then_some(pod.ports.as_slice());
            let admits = |pol: &usize| {
                cluster.policies[*pol].rules(dir).into_iter().flatten().any(|r| match &r.matches {
                    Match::Kubernetes { peers, ports } => {
                        let peer_ok = peers
                            .as_ref()
                            .is_none_or(|ps| ps.iter().any(|x| matches!(x, Peer::IpBlock(b) if b.contains(address))));
                        let port_ok = ports
                            .as_ref()
                            .is_none_or(|ps| ps.iter().any(|rp| rp.matches(probe.port, probe.protocol, dst_ports)));
                        peer_ok && port_ok
                    }
                    Match::Calico(_) => unreachable!("only for Kubernetes-only clusters"),
                })
            };
            let allowed = !cluster.is_policy_subject(p) || list.is_empty() || list.iter().any(admits);
            class.iter().for_each(|&q| sides[k].set(q, allowed));
        }
    }
    let [to, from] = sides;
    (to, from)
}

/// The distinct blocks written in ipBlocks, Calico nets and network sets, each with an
/// address that is in it and belongs to nothing in the cluster.
pub fn externals(cluster: &Cluster) -> Vec<External> {
    let mut blocks: BTreeSet<(String, IpNet, Vec<IpNet>)> = BTreeSet::new();
    let mut add = |b: &IpBlock| {
        blocks.insert((b.to_string(), b.cidr, b.except.clone()));
    };
    for pol in &cluster.policies {
        for rule in pol.ingress.iter().chain(pol.egress.iter()).flatten() {
            match &rule.matches {
                Match::Kubernetes { peers, .. } => {
                    for peer in peers.iter().flatten() {
                        if let Peer::IpBlock(b) = peer {
                            add(b);
                        }
                    }
                }
                Match::Calico(c) => {
                    for e in [&c.source, &c.destination] {
                        for net in &e.nets {
                            add(&IpBlock { cidr: *net, except: e.not_nets.clone() });
                        }
                    }
                }
            }
        }
    }
    for set in &cluster.network_sets {
        for net in &set.nets {
            add(&IpBlock { cidr: *net, except: Vec::new() });
        }
    }
    let mut out: Vec<External> = blocks
        .into_iter()
        .filter_map(|(block, cidr, except)| {
            let address = representative(cluster, &IpBlock { cidr, except })?;
            Some(External { block, address })
        })
        .collect();
    out.dedup_by(|a, b| a.block == b.block);
    out
}

/// An address of the block that is not excepted and is no pod, node or Service address:
/// documentation addresses first, so that `0.0.0.0/0` stands for "the Internet".
fn representative(cluster: &Cluster, block: &IpBlock) -> Option<IpAddr> {
    let documentation: [IpAddr; 4] = [
        Ipv4Addr::new(203, 0, 113, 10).into(),
        Ipv4Addr::new(192, 0, 2, 10).into(),
        Ipv4Addr::new(198, 51, 100, 10).into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10).into(),
    ];
    let net = block.cidr;
    let inside = [net.network(), net.broadcast()].into_iter().flat_map(|edge| near(edge, net));
    let taken = |ip: IpAddr| {
        cluster.pod_by_ip(ip).is_some() || cluster.node_by_ip(ip).is_some() || cluster.service_by_ip(ip).is_some()
    };
    documentation.into_iter().chain(inside).find(|&ip| block.contains(ip) && !taken(ip))
}

/// A few addresses next to `edge` that lie inside `net` (host addresses before the edge itself).
fn near(edge: IpAddr, net: IpNet) -> Vec<IpAddr> {
    let shift = |d: i32| -> Option<IpAddr> {
        match edge {
            IpAddr::V4(a) => u32::from(a).checked_add_signed(d).map(|v| Ipv4Addr::from(v).into()),
            IpAddr::V6(a) => u128::from(a).checked_add_signed(d.into()).map(|v| Ipv6Addr::from(v).into()),
        }
    };
    [1, -1, 2, -2, 0, 3, -3].into_iter().filter_map(shift).filter(|ip| net.contains(ip)).collect()
}
