//! Property: for random clusters, deciding a connection with the policies that apply to each
//! pod known beforehand (`decide_known`, as the overview explains its links) gives the same
//! decision and trace as `decide`, which matches every policy's selector against each end.

use std::sync::Arc;

use palisade_core::field::Nowhere;
use palisade_core::policy::Direction;
use palisade_core::verdict::{decide, decide_known, Connection, Side};
use palisade_ingest::{build, BuildOptions, Input};
use palisade_review::connectivity::{addresses, Cuts};
use proptest::prelude::*;

#[path = "../../palisade-ingest/tests/scenario/mod.rs"]
mod scenario;

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]
    #[test]
    fn decisions_with_known_policies_are_the_engine_s(objects in scenario::scenario()) {
        let inputs: Vec<Input> = objects.into_iter().map(|object| Input { object, locate: Arc::new(Nowhere) }).collect();
        let cluster = build(&inputs, &BuildOptions::default()).expect("generated clusters build");
        let mut index = palisade_core::index::Index::new(&cluster);
        let applicable = [index.applicable(Direction::Egress), index.applicable(Direction::Ingress)];
        let cuts = Cuts::of(&[&cluster]);
        let mut ends: Vec<Side> = cluster.pod_ids().map(|p| Side::pod(&cluster, p)).collect();
        ends.extend(addresses(&cluster, &cuts.pieces).iter().map(|a| Side::ip(&cluster, a.address)));
        for probe in &cuts.probes {
            for src in &ends {
                for dst in &ends {
                    let conn = Connection::new(*src, *dst, probe.port, probe.protocol);
                    let (want, got) = (decide(&cluster, &conn), decide_known(&cluster, &conn, &applicable));
                    prop_assert_eq!(format!("{want:?}"), format!("{got:?}"), "{:?} -> {:?} on {}", src, dst, probe);
                }
            }
        }
    }
}
