//! One pod's connectivity on every probe: its row and column of each pod matrix and its
//! connections with each address endpoint, without the rest of the cluster's matrices (what
//! `reach --from POD` and `--to POD` need).

use fixedbitset::FixedBitSet;
use palisade_core::cluster::{Cluster, PodId};
use palisade_core::family::Families;
use palisade_core::index::Index;
use palisade_core::policy::Direction;

use crate::connectivity::{
    addresses, decided_sides, kubernetes_sides, Address, AddressKind, Cuts, PodFamilies, PodFree,
};
use crate::probe::Probe;

/// What [`Connectivity`](crate::connectivity::Connectivity) says about one pod, computed
/// for that pod alone; every field agrees with the whole computation's.
pub struct PodConnectivity {
    pub pod: PodId,
    pub probes: Vec<Probe>,
    pub addresses: Vec<Address>,
    /// `[probe]`: the pods it may open (its row of the matrix).
    pub row: Vec<FixedBitSet>,
    /// `[probe]`: the pods that may open it (its column).
    pub column: Vec<FixedBitSet>,
    /// `[probe]`: the address endpoints it may open.
    pub to_address: Vec<FixedBitSet>,
    /// `[probe]`: the address endpoints that may open it.
    pub from_address: Vec<FixedBitSet>,
}

impl PodConnectivity {
    /// One pod's connections: its row (`outbound`) or column (not `outbound`) on each probe
    /// (the other stays empty), and the address endpoints both ways.
    pub fn compute(cluster: &Cluster, cuts: Cuts, pod: PodId, outbound: bool) -> PodConnectivity {
        let mut index = Index::new(cluster);
        let addresses = addresses(cluster, &cuts.pieces);
        let families = PodFamilies::new(cluster);
        let applicable = [index.applicable(Direction::Egress), index.applicable(Direction::Ingress)];
        let kubernetes = !cluster.uses_calico() && cluster.host_endpoints.is_empty();
        let itself = [vec![pod]];
        let n = cluster.pods.len();
        let mut out = PodConnectivity {
            pod,
            probes: cuts.probes.clone(),
            addresses: addresses.clone(),
            row: Vec::new(),
            column: Vec::new(),
            to_address: Vec::new(),
            from_address: Vec::new(),
        };
        let pod_free = PodFree::new(cluster);
        for probe in &cuts.probes {
            let protocol = probe.protocol.families();
            let mut line = match outbound {
                true => index.row(pod, probe.port, probe.protocol),
                false => index.column(pod, probe.port, probe.protocol),
            };
            families.keep_line(&mut line, pod, protocol);
            let empty = FixedBitSet::with_capacity(n);
            let (row, column) = if outbound { (line, empty) } else { (empty, line) };
            out.row.push(row);
            out.column.push(column);
            let (mut to, mut from) =
                (FixedBitSet::with_capacity(addresses.len()), FixedBitSet::with_capacity(addresses.len()));
            for (e, a) in addresses.iter().enumerate() {
                let (t, f) = match (kubernetes, a.kind) {
                    (true, AddressKind::Outside) => {
                        kubernetes_sides(cluster, &itself, &applicable, &pod_free, a.address, probe)
                    }
                    _ => decided_sides(cluster, &itself, a.address, probe),
                };
                let able = families.pods(protocol.intersect(Families::of(a.address)));
                to.set(e, t.contains(pod.index()) && able.contains(pod.index()));
                from.set(e, f.contains(pod.index()) && able.contains(pod.index()));
            }
            out.to_address.push(to);
            out.from_address.push(from);
        }
        out
    }

    /// The address endpoint of this name.
    pub fn address(&self, name: &str) -> Option<usize> {
        self.addresses.iter().position(|a| a.name == name)
    }
}
