//! Property: one pod's rows and columns, computed without the rest of the matrix
//! ([`Index::lines`], [`Index::row`], [`Index::column`]), are the matrix's; and `reach` from
//! one pod's own connectivity ([`PodConnectivity`]) says what `reach` from the whole
//! cluster's says, both ways, for random clusters (nodes, host-network pods, replicas).

use std::sync::Arc;

use palisade_core::cluster::PodId;
use palisade_core::field::Nowhere;
use palisade_core::index::Index;
use palisade_core::port::Protocol;
use palisade_ingest::{build, BuildOptions, Input};
use palisade_review::connectivity::{Connectivity, Cuts};
use palisade_review::one_pod::PodConnectivity;
use palisade_review::reach::{reach, reach_pod, Subject};
use palisade_review::workload::Workloads;
use proptest::prelude::*;

#[path = "../../palisade-ingest/tests/scenario/mod.rs"]
mod scenario;

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn rows_and_columns_are_the_matrix_s(objects in scenario::scenario(), salt in any::<usize>()) {
        let inputs: Vec<Input> = objects.into_iter().map(|object| Input { object, locate: Arc::new(Nowhere) }).collect();
        let cluster = build(&inputs, &BuildOptions::default()).expect("generated clusters build");
        prop_assume!(!cluster.pods.is_empty());
        let all: Vec<PodId> = cluster.pod_ids().collect();
        let one = all[salt % all.len()];
        let mut index = Index::new(&cluster);
        for &port in &scenario::PORTS {
            for protocol in Protocol::ALL {
                let m = index.matrix(port, protocol);
                let (rows, columns) = index.lines(port, protocol, &all, &all);
                for &s in &all {
                    prop_assert_eq!(&rows[s.index()], &m.rows[s.index()], "row of {} on {}/{}", cluster.pod_key(s), port, protocol);
                    for &d in &all {
                        prop_assert_eq!(columns[d.index()].contains(s.index()), m.allowed(s, d),
                            "column of {}: {} on {}/{}", cluster.pod_key(d), cluster.pod_key(s), port, protocol);
                    }
                }
                // Alone, only its own side evaluated.
                prop_assert_eq!(&index.row(one, port, protocol), &m.rows[one.index()]);
                let column = index.column(one, port, protocol);
                for &s in &all {
                    prop_assert_eq!(column.contains(s.index()), m.allowed(s, one), "{} -> {}", cluster.pod_key(s), cluster.pod_key(one));
                }
            }
        }
    }

    #[test]
    fn reach_from_one_pod_s_connectivity_is_reach_from_the_cluster_s(objects in scenario::scenario(), salt in any::<usize>()) {
        let inputs: Vec<Input> = objects.into_iter().map(|object| Input { object, locate: Arc::new(Nowhere) }).collect();
        let cluster = build(&inputs, &BuildOptions::default()).expect("generated clusters build");
        prop_assume!(!cluster.pods.is_empty());
        let pod = PodId::new(salt % cluster.pods.len());
        let workloads = Workloads::new(&cluster);
        let cuts = Cuts::of(&[&cluster]);
        let conn = Connectivity::compute(&cluster, cuts.clone(), || {});
        for outbound in [true, false] {
            let one = PodConnectivity::compute(&cluster, cuts.clone(), pod, outbound);
            let whole = serde_json::to_string(&reach(&cluster, &conn, &workloads, Subject::Pod(pod), outbound)).unwrap();
            let alone = serde_json::to_string(&reach_pod(&cluster, &one, &workloads, outbound)).unwrap();
            prop_assert_eq!(whole, alone, "{} outbound {}", cluster.pod_key(pod), outbound);
        }
    }
}
