//! The read-only commands on a live cluster: every example's objects served by the fake API
//! server (HTTPS, token, RBAC from deploy/'s read-only ClusterRole, Calico's API group served),
//! and the real `palisade` binary, pointed at it with a kubeconfig, must print what it prints
//! for the same objects read from the files (file positions aside, which a cluster does not
//! have): check (every line of every checks.txt), matrix, lint, reach, graph, select, and diff
//! with `cluster:` on either side.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::examples::{one_replica, pod_of, positionless, sets, Set};
use common::{palisade, repo};
use palisade_fakeapi::{Config, FakeApi, Groups, Rbac};
use serde_json::Value;

/// Kinds without a namespace (every other served kind gets `-n`'s, as kubectl apply -n does).
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "GlobalNetworkPolicy",
    "GlobalNetworkSet",
    "Tier",
    "HostEndpoint",
    "StagedGlobalNetworkPolicy",
];

/// A fake serving the objects of `paths` (relative to `dir`), readable with deploy/'s CLI role.
fn serve(dir: &Path, paths: &[String], namespace: Option<&str>) -> FakeApi {
    let role = std::fs::read_to_string(repo().join("deploy/reader-rbac.yaml")).unwrap();
    let config = Config {
        groups: Groups::kubernetes().with("projectcalico.org/v3"),
        rbac: Some(Rbac::from_manifest(&role, "palisade-reader").unwrap()),
        ..Config::default()
    };
    let api = FakeApi::start(config).unwrap();
    let full: Vec<PathBuf> = paths.iter().map(|p| dir.join(p)).collect();
    for source in palisade_load::source::read_paths(&full).unwrap() {
        for doc in palisade_load::yaml::parse(&source.text).unwrap() {
            let doc = doc.to_json();
            let items = match doc["items"].as_array() {
                Some(items) => items.clone(),
                None => vec![doc],
            };
            for mut obj in items {
                let kind = obj["kind"].as_str().unwrap_or_default().to_string();
                if let (Some(ns), false, true) =
                    (namespace, CLUSTER_SCOPED.contains(&kind.as_str()), obj["metadata"]["namespace"].is_null())
                {
                    obj["metadata"]["namespace"] = ns.into();
                }
                // Workload controllers are not read from a cluster; their pods are. The loader
                // stands a workload without pods for one pod named after it: the cluster runs it.
                if ["Deployment", "StatefulSet"].contains(&kind.as_str()) {
                    obj = pod_of(&obj);
                }
                api.apply(obj).unwrap();
            }
        }
    }
    api
}

fn run(dir: &Path, args: &[String]) -> (Value, String) {
    let out = palisade().current_dir(dir).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let mut json: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{args:?}: no JSON\n{stdout}\n{stderr}"));
    positionless(&mut json);
    (json, stderr)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Runs every command of one set on its files and on the fake; the number of comparisons.
fn compare_set(i: usize, set: &Set, widest: &BTreeMap<PathBuf, usize>, scratch: &Path) -> usize {
    let mut compared = 0;
    let home = scratch.join(i.to_string());
    std::fs::create_dir_all(&home).unwrap();
    let dir = one_replica(&set.dir, &home);
    let set = &Set { dir, ..set.clone() };
    let api = serve(&set.dir, &set.paths, set.namespace.as_deref());
    let kubeconfig = api.write_kubeconfig(&home).unwrap().display().to_string();
    let mut files = set.paths.clone();
    if let Some(ns) = &set.namespace {
        files.extend(["-n".to_string(), ns.clone()]);
    }
    let pods: Vec<String> = set.checks.iter().map(|c| c[2].clone()).collect();
    let mut commands: Vec<Vec<String>> =
        set.checks.iter().map(|c| [c.clone(), strings(&["--output", "json"])].concat()).collect();
    commands.push(strings(&["matrix", "--output", "json"]));
    // The review commands once per example, on its largest set (they take longer).
    if widest.get(&set.dir) == Some(&i) {
        commands.push(strings(&["matrix", "--port", "53", "--protocol", "UDP", "--output", "json"]));
        commands.push(strings(&["lint", "--output", "json", "--fail-on", "never"]));
        commands.push(strings(&["reach", "--from", &pods[0], "--output", "json"]));
        commands.push(strings(&["graph", "--output", "json"]));
        commands.push(strings(&["select", "all()", "--output", "json"]));
    }
    for command in commands {
        let on_files = [command.clone(), files.clone()].concat();
        let on_cluster = [command.clone(), strings(&["--kubeconfig", &kubeconfig])].concat();
        let (mut want, _) = run(&set.dir, &on_files);
        let (mut got, stderr) = run(&set.dir, &on_cluster);
        if command[0] == "lint" {
            // Files order findings by position; a cluster has none. Compare them as sets.
            for v in [&mut want, &mut got] {
                v.as_array_mut().unwrap().sort_by_key(|f| f.to_string());
            }
        }
        assert_eq!(got, want, "{}: {command:?} on the cluster vs {files:?}\n{stderr}", set.dir.display());
        compared += 1;
    }
    // The same objects on both sides of a diff (the files' shared part under both with
    // --with, applied over the cluster on the old side): nothing gained or lost.
    let mut diff = strings(&["diff", "cluster:", &set.paths[0], "--output", "json", "--kubeconfig", &kubeconfig]);
    for p in &set.paths[1..] {
        diff.extend(strings(&["--with", p]));
    }
    if let Some(ns) = &set.namespace {
        diff.extend(strings(&["-n", ns]));
    }
    let (same, stderr) = run(&set.dir, &diff);
    let counts = (same["gained"].as_array().map(Vec::len), same["lost"].as_array().map(Vec::len));
    assert_eq!(counts, (Some(0), Some(0)), "{diff:?}: {same}\n{stderr}");
    compared += 1;
    compared
}

#[test]
fn every_example_decides_the_same_from_the_cluster_as_from_its_files() {
    let scratch = std::env::temp_dir().join(format!("palisade-cluster-commands-{}", std::process::id()));
    let mut compared = 0;
    let sets = sets();
    let mut widest: BTreeMap<PathBuf, usize> = BTreeMap::new();
    for (i, set) in sets.iter().enumerate() {
        let w = widest.entry(set.dir.clone()).or_insert(i);
        if set.paths.len() > sets[*w].paths.len() {
            *w = i;
        }
    }
    // Sets run side by side: most of the time is process start-up and TLS handshakes.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let total = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(set) = sets.get(i) else { return };
                total.fetch_add(compare_set(i, set, &widest, &scratch), std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    compared += total.into_inner();
    assert!(compared > 50, "{compared} comparisons");
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn no_paths_and_no_kubeconfig_is_an_error_that_says_so() {
    let home = std::env::temp_dir().join(format!("palisade-no-kubeconfig-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let out = palisade()
        .args(["check", "--from", "x/a", "--to", "x/b", "--port", "80"])
        .env("HOME", &home)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("no paths given and no kubeconfig found"), "{stderr}");

    // A context the kubeconfig does not have is named in the error.
    let api = FakeApi::start(Config::default()).unwrap();
    let kubeconfig = api.write_kubeconfig(&home).unwrap();
    let out = palisade()
        .args(["matrix", "--kubeconfig", kubeconfig.to_str().unwrap(), "--context", "elsewhere"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("context elsewhere"), "{stderr}");
    let _ = std::fs::remove_dir_all(&home);
}
