//! Property: when two versions differ only in policies, `diff` from the touched pods' rows
//! and columns ([`diff_policies`]) says, byte for byte, what `diff` from two whole
//! connectivities says; and it declines when more than policies differ.

use std::sync::Arc;

use palisade_core::field::Nowhere;
use palisade_ingest::{build, BuildOptions, Input, Object};
use palisade_review::change::diff_policies;
use palisade_review::connectivity::{Connectivity, Cuts};
use palisade_review::diff::{diff, Version};
use palisade_review::workload::Workloads;
use proptest::prelude::*;

#[path = "../../palisade-ingest/tests/scenario/mod.rs"]
mod scenario;

/// The objects without the policies whose bit in `drop` is set (by their order).
fn without(objects: &[Object], drop: u64) -> Vec<Input> {
    let mut k = 0;
    let kept = objects.iter().filter(|o| {
        if !o.is_policy() {
            return true;
        }
        k += 1;
        drop & (1 << ((k - 1) % 64)) == 0
    });
    kept.cloned().map(|object| Input { object, locate: Arc::new(Nowhere) }).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn diff_from_touched_pods_is_the_whole_diff(objects in scenario::scenario(), a in any::<u64>(), b in any::<u64>()) {
        let old = build(&without(&objects, a), &BuildOptions::default()).expect("generated clusters build");
        let new = build(&without(&objects, b), &BuildOptions::default()).expect("generated clusters build");
        let cuts = Cuts::of(&[&old, &new]);
        let (old_w, new_w) = (Workloads::new(&old), Workloads::new(&new));
        let (old_c, new_c) = (Connectivity::compute(&old, cuts.clone(), || {}), Connectivity::compute(&new, cuts.clone(), || {}));
        let whole = diff(
            &Version { cluster: &old, conn: &old_c, workloads: &old_w },
            &Version { cluster: &new, conn: &new_c, workloads: &new_w },
        );
        let focused = diff_policies(&old, &new, &new_w, &cuts);
        prop_assert!(focused.is_some(), "only policies differ");
        prop_assert_eq!(serde_json::to_string(&focused).unwrap(), serde_json::to_string(&Some(whole)).unwrap());
    }
}

#[test]
fn more_than_policies_changed_declines() {
    let load = |text: &str| {
        let sources = [palisade_load::source::Source { name: "x.yaml".into(), text: text.into() }];
        let inputs = palisade_load::manifest::decode(&sources).inputs;
        build(&inputs, &BuildOptions::default()).expect("builds")
    };
    let pod = |ip: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: a, namespace: default, labels: {{app: a}}}}\nstatus: {{podIP: {ip}}}\n")
    };
    let (old, new) = (load(&pod("10.0.0.1")), load(&pod("10.0.0.2")));
    let cuts = Cuts::of(&[&old, &new]);
    assert!(diff_policies(&old, &new, &Workloads::new(&new), &cuts).is_none(), "a pod's address changed");
    assert!(diff_policies(&old, &old, &Workloads::new(&old), &cuts)
        .is_some_and(|d| d.gained.is_empty() && d.lost.is_empty()));
    // Calico host endpoints: a policy change reaches nodes and the outside world too.
    let file = |name: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/review").join(name);
        std::fs::read_to_string(path).expect("a review fixture")
    };
    let hosts = file("hosts.yaml");
    let old = load(&format!("{hosts}\n---\n{}", file("host-deny.yaml")));
    let new = load(&format!("{hosts}\n---\n{}", file("host-open.yaml")));
    assert!(!old.host_endpoints.is_empty());
    let cuts = Cuts::of(&[&old, &new]);
    assert!(diff_policies(&old, &new, &Workloads::new(&new), &cuts).is_none(), "host endpoints are compared whole");
    let (old_w, new_w) = (Workloads::new(&old), Workloads::new(&new));
    let (old_c, new_c) = (Connectivity::compute(&old, cuts.clone(), || {}), Connectivity::compute(&new, cuts, || {}));
    let whole = diff(
        &Version { cluster: &old, conn: &old_c, workloads: &old_w },
        &Version { cluster: &new, conn: &new_c, workloads: &new_w },
    );
    let gained: Vec<(&str, &str)> = whole.gained.iter().map(|g| (g.from.as_str(), g.to.as_str())).collect();
    assert!(gained.contains(&("node n1", "outside 0.0.0.0/0")), "{gained:?}");
}
