//! What the named sets hold, kept as counted contributions so that one pod can be added to or
//! taken out of every set without looking at the other pods.
//!
//! A set's addresses come from a [`Source`]: fixed networks, or a rule's selector (pods, host
//! endpoints and network sets); `address . port` sets from the named
//! ports [`Wanted`]. Members are kept in a [`Tally`]. The full compile fills the counts from
//! the index; a pod change evaluates the same predicates for that one pod.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use fixedbitset::FixedBitSet;
use ipnet::IpNet;
use palisade_core::cluster::{Cluster, PodId};
use palisade_core::expr::Expr;
use palisade_core::index::Index;
use palisade_core::port::{ContainerPort, Protocol};

use crate::ir::{Element, Family};

/// Where a named address set's addresses come from: fixed networks and rules' selectors
/// (pods and host endpoints by labels, network sets by labels), all of them together. One
/// rule's peer is networks or one selector; a merged run of Allow rules (see `crate::merge`)
/// is the union of its rules' peers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Source {
    pub nets: Vec<IpNet>,
    pub selectors: Vec<Expr>,
}

/// Something a set holds, of one address family.
pub(crate) trait Member: Ord + Copy {
    fn family(&self) -> Family;
}

impl Member for IpNet {
    fn family(&self) -> Family {
        Family::of(&self.addr())
    }
}

impl Member for (IpAddr, u16) {
    fn family(&self) -> Family {
        Family::of(&self.0)
    }
}

/// A set's members, each counted once per contributor (a pod IP can also sit inside a
/// network set), so that taking one contributor out removes exactly its share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tally<K>(BTreeMap<K, u32>);

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Tally(BTreeMap::new())
    }
}

impl<K: Member> Tally<K> {
    pub fn add(&mut self, k: K) {
        *self.0.entry(k).or_default() += 1;
    }
    pub fn remove(&mut self, k: K) {
        if let Some(c) = self.0.get_mut(&k) {
            *c -= 1;
            if *c == 0 {
                self.0.remove(&k);
            }
        }
    }
    /// IPv4 members sort before IPv6 ones (`IpNet` and `IpAddr` order V4 first), so the ends
    /// of the map tell.
    pub fn present(&self) -> Present {
        let first = self.0.keys().next().map(Member::family);
        let last = self.0.keys().next_back().map(Member::family);
        Present { v4: first == Some(Family::V4), v6: last == Some(Family::V6) }
    }
    fn of(&self, f: Family) -> impl Iterator<Item = &K> {
        self.0.keys().filter(move |k| k.family() == f)
    }
}

/// Addresses and networks.
pub(crate) type Addrs = Tally<IpNet>;
/// `address . port` pairs (named ports).
pub(crate) type Pairs = Tally<(IpAddr, u16)>;

impl Addrs {
    pub fn add_net(&mut self, n: &IpNet) {
        self.add(n.trunc());
    }
    pub fn add_ip(&mut self, ip: &IpAddr) {
        self.add(IpNet::from(*ip));
    }
    /// Non-overlapping elements (nft rejects overlapping intervals), so that updates can
    /// delete exactly the elements they added.
    pub fn elements(&self, f: Family) -> BTreeSet<Element> {
        let nets: Vec<IpNet> = self.of(f).copied().collect();
        IpNet::aggregate(&nets).into_iter().map(Element::Net).collect()
    }
}

impl Pairs {
    pub fn elements(&self, f: Family) -> BTreeSet<Element> {
        self.of(f).map(|(ip, port)| Element::AddressPort(*ip, *port)).collect()
    }
}

/// Which families a named set holds elements of (a rule only refers to those).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Present {
    pub v4: bool,
    pub v6: bool,
}

impl Present {
    pub fn has(self, f: Family) -> bool {
        match f {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }
}

impl Source {
    /// Fixed networks.
    pub fn nets(nets: Vec<IpNet>) -> Source {
        Source { nets, selectors: Vec::new() }
    }

    /// One rule's selector.
    pub fn selector(sel: Expr) -> Source {
        Source { nets: Vec::new(), selectors: vec![sel] }
    }

    /// Both sources' peers in one set.
    pub fn union(mut self, other: Source) -> Source {
        self.nets.extend(other.nets);
        self.selectors.extend(other.selectors);
        self
    }

    /// Every address, from the index (the full compile). A pod counts once however many of
    /// the selectors match it, as in [`Source::pod_nets`], so that a pod change takes out
    /// exactly what it put in.
    pub fn collect(&self, cluster: &Cluster, index: &mut Index) -> Addrs {
        let mut a = Addrs::default();
        self.nets.iter().for_each(|n| a.add_net(n));
        for p in self.pods(cluster, index).ones() {
            if let Some(ip) = index.side(PodId::new(p)).ip {
                a.add_ip(&ip);
            }
            cluster.pods[p].ips.iter().skip(1).for_each(|ip| a.add_ip(ip));
        }
        self.add_fixed(cluster, &mut a);
        a
    }

    /// Every address, pod by pod (a set first needed after the full compile).
    pub fn scan(&self, cluster: &Cluster) -> Addrs {
        let mut a = Addrs::default();
        self.nets.iter().for_each(|n| a.add_net(n));
        if self.selectors.is_empty() {
            return a;
        }
        for p in cluster.pod_ids() {
            self.pod_ips(cluster, p).iter().for_each(|ip| a.add_ip(ip));
        }
        self.add_fixed(cluster, &mut a);
        a
    }

    /// Host endpoints and network sets the selectors match (each once per selector: these
    /// never change with a pod, so their counts only have to agree between compiles).
    fn add_fixed(&self, cluster: &Cluster, a: &mut Addrs) {
        for sel in &self.selectors {
            for h in cluster.host_endpoints.iter().filter(|h| sel.matches(&h.labels)) {
                h.ips.iter().for_each(|ip| a.add_ip(ip));
            }
            for set in cluster.network_sets.iter().filter(|s| sel.matches(&s.labels)) {
                set.nets.iter().for_each(|n| a.add_net(n));
            }
        }
    }

    /// The pods whose labels any of the selectors matches, from the index; of those, the ones
    /// not on the host network contribute their addresses, as in [`Source::pod_nets`].
    pub fn pods(&self, cluster: &Cluster, index: &mut Index) -> FixedBitSet {
        let mut out = FixedBitSet::with_capacity(cluster.pods.len());
        for sel in &self.selectors {
            out.union_with(&index.label_pods(sel));
        }
        out
    }

    /// The addresses one pod (not host-network) contributes: what the index would find for it.
    pub fn pod_nets(&self, cluster: &Cluster, p: PodId) -> Vec<IpNet> {
        self.pod_ips(cluster, p).iter().map(|ip| IpNet::from(*ip)).collect()
    }

    fn pod_ips<'c>(&self, cluster: &'c Cluster, p: PodId) -> &'c [IpAddr] {
        let pod = &cluster.pods[p];
        let member =
            cluster.is_policy_subject(p) && self.selectors.iter().any(|sel| sel.matches(&cluster.calico_labels(p)));
        if member {
            &pod.ips
        } else {
            &[]
        }
    }
}

/// Whether a container port has this name and protocol.
pub(crate) fn named(c: &ContainerPort, name: &str, protocol: Protocol) -> bool {
    c.protocol == protocol && c.name.as_deref() == Some(name)
}

/// The named ports an `address . port` set is about.
#[derive(Clone, Debug)]
pub(crate) struct Wanted(pub Vec<(String, Protocol)>);

impl Wanted {
    fn matches(&self, c: &ContainerPort) -> bool {
        self.0.iter().any(|(name, protocol)| named(c, name, *protocol))
    }
    /// One pod's pairs (every pod with such a port, host network included, as Felix does).
    pub fn pod_pairs(&self, cluster: &Cluster, p: PodId) -> Vec<(IpAddr, u16)> {
        let pod = &cluster.pods[p];
        let mut out = Vec::new();
        for c in pod.ports.iter().filter(|c| self.matches(c)) {
            out.extend(pod.ips.iter().map(|ip| (*ip, c.port)));
        }
        out
    }
    pub fn scan(&self, cluster: &Cluster) -> Pairs {
        let mut pairs = Pairs::default();
        for p in cluster.pod_ids() {
            self.pod_pairs(cluster, p).into_iter().for_each(|pair| pairs.add(pair));
        }
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_contributors_and_knows_its_families() {
        let mut a = Addrs::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        a.add_ip(&ip);
        a.add_net(&"10.0.0.0/31".parse().unwrap());
        a.add_ip(&ip);
        assert_eq!(a.present(), Present { v4: true, v6: false });
        a.add_ip(&"fd00::1".parse().unwrap());
        assert_eq!(a.present(), Present { v4: true, v6: true });
        let text = |e: BTreeSet<Element>| e.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(text(a.elements(Family::V4)), ["10.0.0.0/31"]);
        // Two contributors of 10.0.0.1: one leaving keeps it.
        a.remove(IpNet::from(ip));
        a.remove(IpNet::from("fd00::1".parse::<IpAddr>().unwrap()));
        a.remove("10.0.0.0/31".parse().unwrap());
        assert_eq!(text(a.elements(Family::V4)), ["10.0.0.1"]);
        assert_eq!(a.present(), Present { v4: true, v6: false });
        a.remove(IpNet::from(ip));
        assert_eq!(a.present(), Present { v4: false, v6: false });
        let mut p = Pairs::default();
        p.add(("fd00::2".parse().unwrap(), 80));
        assert_eq!(p.present(), Present { v4: false, v6: true });
        assert_eq!(text(p.elements(Family::V6)), ["fd00::2 . 80"]);
    }
}
