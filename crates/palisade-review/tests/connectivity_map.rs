//! Property: for random clusters, the connectivity map (`matrix --all-ports`) says what
//! `matrix --port P` says at both ends of every stretch, and what `check` says at a port
//! inside each stretch, for every pod pair and every pod against every outside piece and node,
//! where a connection exists: in a family both ends have an address of and the protocol uses.

use std::collections::HashMap;
use std::sync::Arc;

use palisade_core::cluster::Cluster;
use palisade_core::family::Families;
use palisade_core::field::Nowhere;
use palisade_core::index::Index;
use palisade_core::verdict::{decide, Connection, Side, Verdict};
use palisade_ingest::{build, BuildOptions, Input};
use palisade_review::connectivity::side_families;
use palisade_review::map::{End, Map};
use palisade_review::probe::Probe;
use proptest::prelude::*;

#[path = "../../palisade-ingest/tests/scenario/mod.rs"]
mod scenario;

/// Whether the map lets `src` open `dst` on stretch `probe`.
fn on_map(pairs: &HashMap<(End, End), usize>, map: &Map, src: End, dst: End, probe: usize) -> bool {
    pairs.get(&(src, dst)).is_some_and(|&set| map.sets[set].contains(&probe))
}

/// A port inside the stretch other than its ends where there is one, from `salt`.
fn inside(p: &Probe, salt: usize) -> u16 {
    let len = usize::from(p.end - p.port) + 1;
    p.port + (salt % len) as u16
}

fn side(cluster: &Cluster, map: &Map, e: End) -> Side {
    match e {
        End::Pod(p) => Side::pod(cluster, p),
        End::Address(x) => Side::ip(cluster, map.addresses[x].address),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]
    #[test]
    fn the_map_agrees_with_matrix_at_every_stretch_boundary_and_with_check_inside(objects in scenario::scenario(), salt in any::<usize>()) {
        let inputs: Vec<Input> = objects.into_iter().map(|object| Input { object, locate: Arc::new(Nowhere) }).collect();
        let cluster = build(&inputs, &BuildOptions::default()).expect("generated clusters build");
        let map = Map::compute(&cluster);
        let pairs: HashMap<(End, End), usize> = map.pairs.iter().map(|p| ((p.src, p.dst), p.set)).collect();
        prop_assert_eq!(pairs.len(), map.pairs.len(), "each pair once");
        let mut index = Index::new(&cluster);
        for (i, probe) in map.probes.iter().enumerate() {
            for port in [probe.port, probe.end] {
                let m = index.matrix(port, probe.protocol);
                for s in cluster.pod_ids() {
                    for d in cluster.pod_ids() {
                        if s == d && !cluster.pods[s].is_replica_group() {
                            prop_assert!(!pairs.contains_key(&(End::Pod(s), End::Pod(d))), "a pod's own pair is not listed");
                            continue;
                        }
                        let meet = Families::meet([
                            side_families(&cluster, &Side::pod(&cluster, s)),
                            side_families(&cluster, &Side::pod(&cluster, d)),
                            probe.protocol.families(),
                        ]);
                        prop_assert_eq!(on_map(&pairs, &map, End::Pod(s), End::Pod(d), i), m.allowed(s, d) && meet,
                            "{} -> {} on {}/{} (stretch {})", cluster.pod_key(s), cluster.pod_key(d), port, probe.protocol, probe);
                    }
                }
            }
            // check, at a port inside the stretch, for every pair with a pod on one end.
            let port = inside(probe, salt.wrapping_add(i));
            let pods = cluster.pod_ids().map(End::Pod);
            let addresses = (0..map.addresses.len()).map(End::Address);
            let ends: Vec<End> = pods.chain(addresses).collect();
            for &s in &ends {
                for &d in &ends {
                    let self_pair = s == d && !matches!(s, End::Pod(p) if cluster.pods[p].is_replica_group());
                    if self_pair || !(matches!(s, End::Pod(_)) || matches!(d, End::Pod(_))) {
                        continue;
                    }
                    let (a, b) = (side(&cluster, &map, s), side(&cluster, &map, d));
                    let conn = Connection::new(a, b, port, probe.protocol);
                    let meet = Families::meet([side_families(&cluster, &a), side_families(&cluster, &b), probe.protocol.families()]);
                    let checked = meet && decide(&cluster, &conn).verdict == Verdict::Allow;
                    prop_assert_eq!(on_map(&pairs, &map, s, d, i), checked,
                        "check {} -> {} on {}/{}", map.name(&cluster, s), map.name(&cluster, d), port, probe.protocol);
                }
            }
        }
        // Nothing listed that no endpoint pair above covers (address to address is not decided).
        prop_assert!(map.pairs.iter().all(|p| matches!(p.src, End::Pod(_)) || matches!(p.dst, End::Pod(_))));
    }
}
