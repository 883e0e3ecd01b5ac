//! The store's contract: ids, keys, what `finish` reports, and the property that the
//! incremental path ends where a batch of the same objects ends.

use std::sync::Arc;

use palisade_core::cluster::Cluster;
use palisade_core::field::Nowhere;
use palisade_core::index::matrix;
use palisade_core::port::Protocol;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::batch::build;

fn input(object: Value) -> Input {
    let kind = object["kind"].as_str().expect("a kind").to_string();
    let object = match kind.as_str() {
        "Namespace" => Object::Namespace(serde_json::from_value(object).expect("a Namespace")),
        "Pod" => Object::Pod(serde_json::from_value(object).expect("a Pod")),
        "NetworkPolicy" => Object::NetworkPolicy(serde_json::from_value(object).expect("a NetworkPolicy")),
        other => panic!("no fixture for {other}"),
    };
    Input { object, locate: Arc::new(Nowhere) }
}

fn ns(name: &str, team: &str) -> Input {
    input(json!({"kind": "Namespace", "metadata": {"name": name, "labels": {"team": team}}}))
}

fn pod(ns: &str, name: &str, app: &str, ip: &str) -> Input {
    input(json!({"kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"podIP": ip}}))
}

fn netpol(ns: &str, name: &str, spec: Value) -> Input {
    input(json!({"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec}))
}

fn key(kind: &'static str, ns: Option<&str>, name: &str) -> ObjectKey {
    ObjectKey { kind, namespace: ns.map(str::to_string), name: name.to_string() }
}

/// Pods, policies, and who reaches whom on which port, all by name.
type Decisions = (Vec<String>, Vec<String>, Vec<(String, String, u16)>);

/// What a cluster decides, in names (ids differ between paths): pods with their addresses,
/// policies in evaluation order, and who reaches whom on two ports.
fn decisions(c: &Cluster) -> Decisions {
    let mut pods: Vec<String> = c.pod_ids().map(|p| format!("{} {:?}", c.pod_key(p), c.pods[p].ips)).collect();
    pods.sort();
    let policies = c.policy_ids().map(|p| c.policy_key(p)).collect();
    let mut allowed = Vec::new();
    for port in [80, 8080] {
        let m = matrix(c, port, Protocol::TCP);
        for a in c.pod_ids() {
            for b in c.pod_ids() {
                if m.allowed(a, b) {
                    allowed.push((c.pod_key(a), c.pod_key(b), port));
                }
            }
        }
    }
    allowed.sort();
    (pods, policies, allowed)
}

#[test]
fn a_batch_builds_what_the_build_builds() {
    let inputs = vec![
        ns("a", "red"),
        pod("a", "web", "web", "198.18.0.1"),
        pod("a", "db", "db", "198.18.0.2"),
        netpol(
            "a",
            "db",
            json!({"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}),
        ),
    ];
    let built = build(&inputs, &BuildOptions::default()).expect("valid");
    let (store, done) = Store::batch(inputs, BuildOptions::default());
    let touched = done.expect("valid");
    assert_eq!(decisions(store.cluster().expect("built")), decisions(&built));
    assert_eq!(touched.area(Area::Pods).count(), 2);
    assert_eq!(
        touched.area(Area::Policies).collect::<Vec<_>>(),
        [(&key("NetworkPolicy", Some("a"), "db"), Change::Came)]
    );
    assert_eq!(store.last_path(), Path::Build);
}

#[test]
fn objects_keep_their_ids_and_freed_ids_wait_for_finish() {
    let mut store = Store::new(BuildOptions::default());
    for (name, ip) in [("x", "198.18.0.1"), ("y", "198.18.0.2"), ("z", "198.18.0.3")] {
        store.apply(pod("a", name, name, ip));
    }
    store.finish().expect("valid");
    let id = |s: &Store, name| s.ids(&key("Pod", Some("a"), name)).to_vec();
    let (x, y, z) = (id(&store, "x"), id(&store, "y"), id(&store, "z"));
    store.delete(&key("Pod", Some("a"), "y"));
    store.apply(pod("a", "w", "w", "198.18.0.4"));
    assert_ne!(id(&store, "w"), y, "y's id is not given out before finish reported y gone");
    assert_eq!((id(&store, "x"), id(&store, "z")), (x.clone(), z.clone()));
    store.finish().expect("valid");
    store.apply(pod("a", "v", "v", "198.18.0.5"));
    assert_eq!(id(&store, "v"), y, "after finish the freed id is given out again");
    assert_eq!((id(&store, "x"), id(&store, "z")), (x, z));
}

#[test]
fn finish_reports_what_came_changed_and_went_once() {
    let mut store = Store::new(BuildOptions::default());
    // Declared: pods leaving an inferred namespace take the build (the namespace may go too).
    store.apply(ns("a", "red"));
    store.apply(pod("a", "x", "x", "198.18.0.1"));
    store.apply(pod("a", "y", "y", "198.18.0.2"));
    store.finish().expect("valid");
    assert_eq!(store.apply(pod("a", "x", "x", "198.18.0.1")), Touched::default(), "the same object again is no change");
    store.apply(pod("a", "x", "other", "198.18.0.1"));
    store.delete(&key("Pod", Some("a"), "y"));
    store.apply(pod("a", "t", "t", "198.18.0.3"));
    store.delete(&key("Pod", Some("a"), "t"));
    let touched = store.finish().expect("valid");
    let got: Vec<(String, Change)> = touched.area(Area::Pods).map(|(k, c)| (k.name.clone(), c)).collect();
    assert_eq!(got, [("x".to_string(), Change::Changed), ("y".to_string(), Change::Went)]);
    assert_eq!(store.last_path(), Path::Patch);
    assert_eq!(store.finish().expect("valid"), Touched::default());
    assert_eq!(store.last_path(), Path::Unchanged);
}

#[test]
fn an_error_leaves_no_cluster_until_it_is_mended() {
    let mut store = Store::new(BuildOptions::default());
    store.apply(pod("a", "x", "x", "198.18.0.1"));
    store.finish().expect("valid");
    store.apply(pod("a", "y", "y", "198.18.0.1"));
    let err = store.finish().expect_err("two pods with one address");
    assert!(err.0.iter().any(|p| p.message.contains("already used by pod a/x")), "{:?}", err.0);
    assert!(store.cluster().is_none(), "a set with an error has no cluster");
    store.apply(pod("a", "y", "y", "198.18.0.2"));
    let touched = store.finish().expect("mended");
    assert_eq!(touched.area(Area::Pods).count(), 1, "y came (the failed finish reported nothing)");
    assert_eq!(store.cluster().expect("built").pods.len(), 2);
}

#[test]
fn a_batch_that_names_an_object_twice_is_refused() {
    let (store, done) =
        Store::batch(vec![pod("a", "x", "x", "198.18.0.1"), pod("a", "x", "x", "198.18.0.2")], BuildOptions::default());
    let err = done.expect_err("a duplicate");
    assert!(err.0.iter().any(|p| p.message.contains("duplicate Pod")), "{:?}", err.0);
    assert_eq!(store.ids(&key("Pod", Some("a"), "x")).len(), 2);
}

/// One step of a random history: set object `n` of the pool to variant `v`, or delete it.
#[derive(Clone, Debug)]
enum Step {
    Set(usize, usize),
    Delete(usize),
    Finish,
}

const PODS: usize = 6;
const POLICIES: usize = 4;

/// Object `n` of the pool in variant `v`: pods (labels and address vary), policies (rules
/// vary), and a namespace whose labels vary (which the patches leave to the full build).
fn pool(n: usize, v: usize) -> Input {
    let space = ["a", "b"][n % 2];
    if n < PODS {
        let app = ["web", "db", "api"][v % 3];
        return pod(space, &format!("p{n}"), app, &format!("198.18.{n}.{}", 1 + v % 2));
    }
    if n < PODS + POLICIES {
        let spec = match v % 4 {
            0 => json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
            1 => json!({"podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 8080}]}]}),
            2 => json!({"podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "red"}}}], "ports": [{"port": "http"}]}]}),
            _ => json!({"podSelector": {}, "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": "198.18.0.0/16", "except": ["198.18.1.0/24"]}}]}]}),
        };
        return netpol(space, &format!("np{n}"), spec);
    }
    ns(space, ["red", "blue"][v % 2])
}

fn pool_key(n: usize) -> ObjectKey {
    let object = pool(n, 0).object;
    super::key(&object, &BuildOptions::default())
}

fn step() -> impl Strategy<Value = Step> {
    let n = 0..PODS + POLICIES + 2;
    prop_oneof![
        6 => (n.clone(), 0..6usize).prop_map(|(n, v)| Step::Set(n, v)),
        2 => n.prop_map(Step::Delete),
        3 => Just(Step::Finish),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Whatever the history, after each `finish` the store's cluster decides as a batch build
    /// of the objects it holds; and the histories take the patch path as well as the build.
    #[test]
    fn store_incremental_agrees_with_batch(steps in prop::collection::vec(step(), 1..40)) {
        let mut store = Store::new(BuildOptions::default());
        for n in 0..PODS + POLICIES + 2 {
            store.apply(pool(n, 0));
        }
        store.finish().expect("the pool's first variants are valid");
        for step in steps.into_iter().chain([Step::Finish]) {
            match step {
                Step::Set(n, v) => { store.apply(pool(n, v)); }
                Step::Delete(n) => { store.delete(&pool_key(n)); }
                Step::Finish => {
                    let inputs: Vec<Input> = store.inputs().cloned().collect();
                    let batch = build(&inputs, &BuildOptions::default());
                    match (store.finish(), batch) {
                        (Ok(_), Ok(built)) => {
                            let live = store.cluster().expect("finished");
                            prop_assert_eq!(decisions(live), decisions(&built), "path {:?}", store.last_path());
                        }
                        (Err(_), Err(_)) => prop_assert!(store.cluster().is_none()),
                        (live, batch) => prop_assert!(false, "store {:?}, batch {:?}", live.is_ok(), batch.is_ok()),
                    }
                }
            }
        }
    }
}

#[test]
fn random_histories_take_both_paths() {
    // The property above is only worth its name if the patch path runs: a fixed history
    // through the pool shows it does, and that the namespace change takes the build.
    let mut store = Store::new(BuildOptions::default());
    for n in 0..PODS + POLICIES + 2 {
        store.apply(pool(n, 0));
    }
    store.finish().expect("valid");
    store.apply(pool(1, 2));
    store.apply(pool(PODS, 1));
    store.finish().expect("valid");
    assert_eq!(store.last_path(), Path::Patch);
    store.apply(pool(PODS + POLICIES, 1));
    store.finish().expect("valid");
    assert_eq!(store.last_path(), Path::Build);
}
