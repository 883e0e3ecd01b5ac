//! The way in and out against the full compile: starting from every truth table and example,
//! random pods come, go and change labels and addresses, and policies (drawn from every truth
//! table) come, go and change, one or two changes at a time (and, in a second test, up to 250
//! at a time, past the size where a patch finds the pods that change through an index of the
//! whole cluster instead of pod by pod). Each change goes into a live `Store` (`apply`,
//! `delete`, `finish`) and the ruleset follows it with `Compiled::sync(&cluster, &touched)`;
//! after each step that ruleset must equal the full compile of the cluster built again from
//! all objects, and the delta it sends must equal the one `update_commands` finds between the
//! two full compiles (whether `sync` followed the change or compiled in full).

mod common;

use std::sync::Arc;

use common::{conformance_cases, load_case, repo};
use k8s_openapi::api::core::v1::PodIP;
use palisade_core::cluster::Cluster;
use palisade_core::field::Nowhere;
use palisade_ingest::patch::{pod_patch, policy_patch};
use palisade_ingest::store::Store;
use palisade_ingest::{build, BuildOptions, Input, Object, StoredPod as Pod};
use palisade_nft::{compile, Compiled, Options, Synced};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// One step of pod churn; indexes are taken modulo what exists.
#[derive(Clone, Debug)]
enum Step {
    Remove(usize),
    /// A new pod: template pod, namespace, labels from the cluster's own, address number, IPv6 too.
    Add {
        template: usize,
        ns: usize,
        labels: Vec<usize>,
        ip: u8,
        dual: bool,
    },
    Relabel {
        pod: usize,
        labels: Vec<usize>,
    },
    /// Same pod, new address.
    Readdress {
        pod: usize,
        ip: u8,
    },
    DropPolicy(usize),
    /// A policy from the pool, under a new name.
    AddPolicy(usize),
    /// A policy takes the content of one from the pool (same kind), keeping its name.
    ReplacePolicy {
        policy: usize,
        with: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let labels = proptest::collection::vec(0usize..64, 0..4);
    prop_oneof![
        any::<usize>().prop_map(Step::Remove),
        (any::<usize>(), any::<usize>(), labels.clone(), any::<u8>(), any::<bool>())
            .prop_map(|(template, ns, labels, ip, dual)| Step::Add { template, ns, labels, ip, dual }),
        (any::<usize>(), labels).prop_map(|(pod, labels)| Step::Relabel { pod, labels }),
        (any::<usize>(), any::<u8>()).prop_map(|(pod, ip)| Step::Readdress { pod, ip }),
        any::<usize>().prop_map(Step::DropPolicy),
        any::<usize>().prop_map(Step::AddPolicy),
        (any::<usize>(), any::<usize>()).prop_map(|(policy, with)| Step::ReplacePolicy { policy, with }),
    ]
}

#[derive(Clone)]
struct World {
    name: String,
    inputs: Vec<Input>,
    opts: BuildOptions,
    /// (key, value) pairs seen on pods, to draw labels from.
    vocabulary: Vec<(String, String)>,
    namespaces: Vec<String>,
    /// Enforced policy objects of every truth table and example.
    pool: Arc<Vec<Input>>,
}

fn is_policy(i: &Input) -> bool {
    matches!(i.object, Object::NetworkPolicy(_) | Object::CalicoNetworkPolicy(_) | Object::CalicoGlobalNetworkPolicy(_))
}

fn policies(inputs: &[Input]) -> Vec<usize> {
    (0..inputs.len()).filter(|&i| is_policy(&inputs[i])).collect()
}

/// The object with another name (and namespace, for namespaced ones).
fn renamed(i: &Input, name: &str, ns: Option<String>) -> Input {
    let mut o = i.object.clone();
    let meta = match &mut o {
        Object::NetworkPolicy(p) => &mut p.metadata,
        Object::CalicoNetworkPolicy(p) => &mut p.metadata,
        Object::CalicoGlobalNetworkPolicy(p) => &mut p.metadata,
        _ => unreachable!("a policy"),
    };
    meta.name = Some(name.into());
    if ns.is_some() {
        meta.namespace = ns;
    }
    Input { object: o, locate: Arc::new(Nowhere) }
}

fn pods(inputs: &[Input]) -> Vec<usize> {
    (0..inputs.len()).filter(|&i| matches!(&inputs[i].object, Object::Pod(p) if !host_network(p))).collect()
}

fn host_network(p: &Pod) -> bool {
    p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

fn pod_of(i: &Input) -> &Pod {
    match &i.object {
        Object::Pod(p) => p,
        _ => unreachable!("a pod"),
    }
}

fn set_ips(pod: &mut Pod, ips: Vec<String>) {
    let status = pod.status.get_or_insert_with(Default::default);
    status.pod_ip = ips.first().cloned();
    status.pod_ips = Some(ips.into_iter().map(|ip| PodIP { ip }).collect());
}

fn labels(w: &World, picks: &[usize]) -> std::collections::BTreeMap<String, String> {
    picks.iter().filter(|_| !w.vocabulary.is_empty()).map(|&i| w.vocabulary[i % w.vocabulary.len()].clone()).collect()
}

/// The objects that go and come for a step: `None` when the step does not apply here.
fn change(w: &World, s: &Step, serial: usize) -> Option<(Vec<Input>, Vec<Input>)> {
    let ps = pods(&w.inputs);
    let input = |pod: Pod| Input { object: Object::Pod(pod), locate: Arc::new(Nowhere) };
    match s {
        Step::Remove(i) => {
            let i = *ps.get(i % ps.len().max(1))?;
            Some((vec![w.inputs[i].clone()], vec![]))
        }
        Step::Add { template, ns, labels: l, ip, dual } => {
            let t = *ps.get(template % ps.len().max(1))?;
            let mut pod = pod_of(&w.inputs[t]).clone();
            pod.metadata.name = Some(format!("churn-{serial}"));
            pod.metadata.namespace = Some(w.namespaces[ns % w.namespaces.len()].clone());
            pod.metadata.labels = Some(labels(w, l));
            // Steps of one batch get addresses of their own (`serial` counts steps in a batch).
            let k = serial % 1000 % 100;
            let mut ips = vec![format!("198.18.{}.{ip}", 100 + k)];
            if *dual {
                ips.push(format!("fd00::{}:{ip}", 100 + k));
            }
            set_ips(&mut pod, ips);
            Some((vec![], vec![input(pod)]))
        }
        Step::Relabel { pod, labels: l } => {
            let i = *ps.get(pod % ps.len().max(1))?;
            let mut p = pod_of(&w.inputs[i]).clone();
            p.metadata.labels = Some(labels(w, l));
            Some((vec![w.inputs[i].clone()], vec![input(p)]))
        }
        Step::DropPolicy(i) => {
            let ps = policies(&w.inputs);
            let i = *ps.get(i % ps.len().max(1))?;
            Some((vec![w.inputs[i].clone()], vec![]))
        }
        Step::AddPolicy(j) => {
            let new = &w.pool[j % w.pool.len()];
            Some((vec![], vec![renamed(new, &format!("churn-{serial}"), None)]))
        }
        Step::ReplacePolicy { policy, with } => {
            let ps = policies(&w.inputs);
            let old = &w.inputs[*ps.get(policy % ps.len().max(1))?];
            let new = &w.pool[with % w.pool.len()];
            if std::mem::discriminant(&old.object) != std::mem::discriminant(&new.object) {
                return None;
            }
            let m = old.object.metadata();
            let new = renamed(new, m.name.as_deref().unwrap(), m.namespace.clone());
            Some((vec![old.clone()], vec![new]))
        }
        Step::Readdress { pod, ip } => {
            let i = *ps.get(pod % ps.len().max(1))?;
            let mut p = pod_of(&w.inputs[i]).clone();
            set_ips(&mut p, vec![format!("198.19.{}.{ip}", 100 + serial % 1000 % 100)]);
            Some((vec![w.inputs[i].clone()], vec![input(p)]))
        }
    }
}

fn key(i: &Input) -> (&'static str, Option<String>, Option<String>) {
    (i.object.kind(), i.object.metadata().namespace.clone(), i.object.metadata().name.clone())
}

/// Whether the store would patch these changes into `cluster` on their own (only Pods and
/// enforced policies the full build takes as they are), rather than build in full.
fn patchable(cluster: &Cluster, gone: &[Input], came: &[Input], opts: &BuildOptions) -> bool {
    let is_pod = |i: &&Input| matches!(i.object, Object::Pod(_));
    let (pods_gone, policies_gone): (Vec<&Input>, Vec<&Input>) = gone.iter().partition(is_pod);
    let (pods_came, policies_came): (Vec<&Input>, Vec<&Input>) = came.iter().partition(is_pod);
    let names: Option<Vec<(String, String)>> = pods_gone
        .iter()
        .map(|i| {
            let m = i.object.metadata();
            Some((m.namespace.clone().or_else(|| opts.default_namespace.clone())?, m.name.clone()?))
        })
        .collect();
    names.is_some_and(|names| pod_patch(cluster, &names, &pods_came, opts).is_some())
        && policy_patch(cluster, &policies_gone, &policies_came, opts).is_some()
}

/// Runs the steps, a batch at a time (as files written together), through a store and
/// `sync`; returns how many changes touching pods, how many touching policies, and how many
/// of more than 32 pods or policies `sync` followed (rather than compiled in full).
fn run(w: &mut World, steps: &[Vec<Step>], options: &Options) -> Result<[usize; 3], TestCaseError> {
    let (mut store, done) = Store::batch(w.inputs.clone(), w.opts.clone());
    done.expect("the fixture builds");
    let mut compiled = Compiled::following(store.cluster().expect("built"), options);
    let mut taken = [0, 0, 0];
    for (n, batch) in steps.iter().enumerate() {
        let (mut gone, mut came) = (Vec::new(), Vec::new());
        // One object changed twice in one batch is not a change a directory can show: a step
        // touching an object an earlier step of the batch touched is left out.
        let mut touched = std::collections::HashSet::new();
        let cluster = store.cluster().expect("finished");
        for (k, s) in batch.iter().enumerate() {
            let Some((g, c)) = change(w, s, 1000 * n + k) else { continue };
            let keys: std::collections::HashSet<_> = g.iter().chain(&c).map(key).collect();
            if keys.iter().any(|k| touched.contains(k)) {
                continue;
            }
            // In a big batch, a step the store would not patch on its own (a policy from a
            // namespace or tier this world lacks) would send the whole batch to the full build.
            if batch.len() > 2 && !patchable(cluster, &g, &c, &w.opts) {
                continue;
            }
            touched.extend(keys);
            gone.extend(g);
            came.extend(c);
        }
        if gone.is_empty() && came.is_empty() {
            continue;
        }
        // The world moves on; changes the full build refuses (a clash) are left out.
        let mut next = w.inputs.clone();
        next.retain(|i| !gone.iter().any(|g| key(g) == key(i)));
        next.extend(came.iter().cloned());
        let Ok(rebuilt) = build(&next, &w.opts) else { continue };
        w.inputs = next;
        let expected = compile(&rebuilt, options);
        let before = compiled.ruleset().clone();
        for g in &gone {
            store.delete(&palisade_ingest::store::key(&g.object, &w.opts));
        }
        for c in &came {
            store.apply(c.clone());
        }
        let finished = store.finish();
        prop_assert!(finished.is_ok(), "{}: step {}: the store refuses what the build takes", w.name, n);
        let delta = compiled.sync(store.cluster().expect("finished"), &finished.expect("checked"));
        let is_pod = |i: &&Input| matches!(i.object, Object::Pod(_));
        let pods = gone.iter().chain(&came).filter(is_pod).count();
        let policies_came = came.iter().filter(|i| !is_pod(i)).count();
        if compiled.synced() == Synced::Followed {
            taken[0] += usize::from(pods > 0);
            taken[1] += usize::from(gone.len() + came.len() > pods);
            taken[2] += usize::from(pods > 32 || policies_came > 32);
        }
        prop_assert!(
            compiled.ruleset() == &expected,
            "{}: step {} {:?} ({:?}): synced ruleset differs from the full compile",
            w.name,
            n,
            batch,
            compiled.synced()
        );
        prop_assert_eq!(
            palisade_nft::render::text::script(&delta),
            palisade_nft::render::text::update(&before, &expected),
            "{}: step {} {:?}: delta",
            &w.name,
            n,
            batch
        );
    }
    Ok(taken)
}

fn worlds() -> Vec<World> {
    let mut out = Vec::new();
    let pool = Arc::new(Vec::new());
    for case in conformance_cases() {
        out.push(case_world(&case, &pool));
    }
    for dir in ["calico-wordpress", "lateral-movement", "enforcing-network-policies", "node-network-egress"] {
        let paths = common::manifest_paths(&repo().join("examples").join(dir));
        let sources = palisade_load::source::read_paths(&paths).unwrap();
        let opts = BuildOptions { default_namespace: Some("default".into()), ..Default::default() };
        let load = palisade_load::load_sources(sources, &opts);
        let cluster = load.cluster.clone().expect("example loads");
        out.push(world(dir.into(), load.inputs, &cluster, opts, &pool));
    }
    // Namespaces no Namespace object declares: the full build infers them from their members
    // (and drops one whose members are gone, renumbering the rest).
    let sources = vec![palisade_load::Source { name: "inferred.yaml".into(), text: INFERRED.into() }];
    let load = palisade_load::load_sources(sources, &BuildOptions::default());
    let cluster = load.cluster.clone().expect("inferred namespaces load");
    out.push(world("inferred namespaces".into(), load.inputs, &cluster, BuildOptions::default(), &pool));
    let pool: Arc<Vec<Input>> =
        Arc::new(out.iter().flat_map(|w| w.inputs.iter().filter(|i| is_policy(i)).cloned()).collect());
    out.into_iter().map(|w| World { pool: pool.clone(), ..w }).collect()
}

/// A truth table's world: the e2e model and the case's objects.
fn case_world(case: &common::Case, pool: &Arc<Vec<Input>>) -> World {
    let cluster = load_case(case);
    let sources = vec![
        palisade_load::Source { name: "model.yaml".into(), text: common::model_text().into() },
        palisade_load::Source { name: case.file.clone().into(), text: case.text.clone().into() },
    ];
    let load = palisade_load::load_sources(sources, &BuildOptions::default());
    world(case.file.clone(), load.inputs, &cluster, BuildOptions::default(), pool)
}

const INFERRED: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: first, labels: {app: a}}
status: {podIP: 198.18.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: p2, namespace: second, labels: {app: b}}
status: {podIP: 198.18.1.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-own, namespace: second}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {}}]}]
";

fn world(name: String, inputs: Vec<Input>, cluster: &Cluster, opts: BuildOptions, pool: &Arc<Vec<Input>>) -> World {
    let mut vocabulary: Vec<(String, String)> =
        cluster.pods.iter().flat_map(|p| p.labels.iter().map(|(k, v)| (k.clone(), v.clone()))).collect();
    vocabulary.sort();
    vocabulary.dedup();
    let namespaces = cluster.namespaces.iter().map(|n| n.name.clone()).collect();
    World { name, inputs, opts, vocabulary, namespaces, pool: pool.clone() }
}

/// Cases per world: `PROPTEST_CASES` when set (to search longer), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn pod_churn_compiled_pod_by_pod_equals_the_full_compile() {
    let taken = std::cell::Cell::new([0, 0]);
    let audit = Options { audit: true, record_flows: true, ..Default::default() };
    for base in worlds() {
        for options in [Options::default(), audit.clone()] {
            TestRunner::new(Config { cases: cases(8), failure_persistence: None, ..Config::default() })
                .run(&proptest::collection::vec(proptest::collection::vec(step(), 1..3), 1..12), |steps| {
                    let mut w = base.clone();
                    let [pods, policies, _] = run(&mut w, &steps, &options)?;
                    let [a, b] = taken.get();
                    taken.set([a + pods, b + policies]);
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    // Most changes must be followed, or this test proves little.
    let [pods, policies] = taken.get();
    eprintln!("followed: {pods} changes touching pods, {policies} touching policies");
    assert!(
        pods > 1000 && policies > 1000,
        "only {pods} changes touching pods and {policies} touching policies were followed"
    );
}

/// Mostly policy steps, so that batches hold more policies than the patch's index threshold.
fn bulk_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<usize>().prop_map(Step::AddPolicy),
        3 => (any::<usize>(), any::<usize>()).prop_map(|(policy, with)| Step::ReplacePolicy { policy, with }),
        1 => any::<usize>().prop_map(Step::DropPolicy),
        3 => step(),
    ]
}

#[test]
fn many_changes_at_once_compiled_by_what_they_touch_equal_the_full_compile() {
    let taken = std::cell::Cell::new([0, 0, 0]);
    // Every fourth world (truth tables and examples alike), for time.
    for base in worlds().into_iter().step_by(4) {
        TestRunner::new(Config { cases: cases(3), failure_persistence: None, ..Config::default() })
            .run(&proptest::collection::vec(proptest::collection::vec(bulk_step(), 150..250), 1..4), |steps| {
                let mut w = base.clone();
                let [pods, policies, big] = run(&mut w, &steps, &Options::default())?;
                let [a, b, c] = taken.get();
                taken.set([a + pods, b + policies, c + big]);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let [pods, policies, big] = taken.get();
    eprintln!("followed: {pods} changes touching pods, {policies} touching policies, {big} of more than 32 objects");
    assert!(big > 20, "only {big} changes of more than 32 objects were followed");
}

/// Issue 13: "pods enforced" counts pods. One dual-stack pod isolated both ways has four map
/// elements (two addresses, two directions) and is one pod.
#[test]
fn enforced_pods_are_counted_as_pods_not_map_elements() {
    let text = "\
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: a, labels: {app: p}}
status: {podIP: 198.18.5.1, podIPs: [{ip: 198.18.5.1}, {ip: 'fd00::5:1'}]}
---
apiVersion: v1
kind: Pod
metadata: {name: q, namespace: a, labels: {app: q}}
status: {podIP: 198.18.5.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p-only, namespace: a}
spec: {podSelector: {matchLabels: {app: p}}, policyTypes: [Ingress, Egress]}
";
    let cluster = palisade_load::load_str("pods.yaml", text, &BuildOptions::default()).cluster.expect("loads");
    let compiled = Compiled::new(&cluster, &Options::default());
    let elements: usize = compiled.ruleset().maps.values().map(|m| m.len()).sum();
    assert_eq!((compiled.enforced_pods(), elements), (1, 4));
}

/// A pod on the pod network at a node's address (here node-2's 198.18.100.2) is what that
/// address is (`Side::ip`): the node no longer sends from it, so the `own_node` pairs of the
/// node's pods lose it, and get it back when the pod goes. The pinned input of a failure of
/// the property test above (template and namespace indexes as drawn).
#[test]
fn a_pod_at_a_node_address_takes_it_from_the_node_and_gives_it_back() {
    let case = conformance_cases().into_iter().find(|c| c.file == "43-node-to-its-own-pods.yaml").expect("the case");
    let base = case_world(&case, &Arc::new(Vec::new()));
    let add =
        |dual| Step::Add { template: 179943127527, ns: 12877283283809995803, labels: vec![19, 2, 61], ip: 2, dual };
    for options in [Options::default(), Options { audit: true, record_flows: true, ..Default::default() }] {
        for dual in [false, true] {
            let mut w = base.clone();
            let last = pods(&w.inputs).len();
            // Batch 0 adds churn-0 at 198.18.100.2; batch 1 removes it (the last pod).
            let steps = vec![vec![add(dual)], vec![Step::Remove(last)]];
            let [pods, _, _] = run(&mut w, &steps, &options).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(pods, 2, "both changes were followed");
        }
    }
}
