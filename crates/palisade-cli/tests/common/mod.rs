//! Shared helpers for the integration tests: repository paths, conformance cases, grids.
#![allow(dead_code)]

pub mod examples;
pub mod lab;
pub mod suite;

use std::path::{Path, PathBuf};

use palisade_core::cluster::{Cluster, NodeId, PodId};
use palisade_core::port::Protocol;
use palisade_core::verdict::Side;
use palisade_ingest::BuildOptions;
use serde_json::Value;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn palisade() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
}

/// Runs the binary in the repository: (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = palisade().current_dir(repo()).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

pub struct Probe {
    pub port: u16,
    pub protocol: Protocol,
    /// (from pattern, to pattern, allow), applied in order over "everything allowed".
    pub expect: Vec<(String, String, bool)>,
}

pub struct Case {
    pub file: String,
    pub name: String,
    pub text: String,
    pub probes: Vec<Probe>,
}

pub fn model_text() -> String {
    std::fs::read_to_string(repo().join("tests/conformance/model.yaml")).unwrap()
}

pub fn conformance_cases() -> Vec<Case> {
    let dir = repo().join("tests/conformance/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|f| parse_case(f)).collect()
}

fn parse_case(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).unwrap();
    let docs = palisade_load::yaml::parse(&text).unwrap();
    let head = docs[0].to_json();
    assert_eq!(head["kind"], "ConformanceCase", "{}: first document must be the ConformanceCase", path.display());
    let probes = head["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Probe {
            port: p["port"].as_u64().unwrap() as u16,
            protocol: p["protocol"].as_str().unwrap().parse().unwrap(),
            expect: p["expect"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (str_of(&e["from"]), str_of(&e["to"]), e["allow"].as_bool().unwrap()))
                .collect(),
        })
        .collect();
    Case { file: path.file_name().unwrap().to_string_lossy().into(), name: str_of(&head["name"]), text, probes }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The model plus the case's policies, which must load without errors.
pub fn load_case(case: &Case) -> Cluster {
    let sources = vec![
        palisade_load::Source { name: "model.yaml".into(), text: model_text().into() },
        palisade_load::Source { name: case.file.clone().into(), text: case.text.clone().into() },
    ];
    let load = palisade_load::load_sources(sources, &BuildOptions::default());
    let errors: Vec<String> = load.problems.iter().map(|p| format!("{:?}: {}", p.location, p.message)).collect();
    load.cluster.unwrap_or_else(|| panic!("{} does not load: {errors:#?}", case.file))
}

/// One row and column of a truth table: a pod (`ns/name`) or a node (`node:name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Pod(PodId),
    Node(NodeId),
}

impl End {
    pub fn key(self, cluster: &Cluster) -> String {
        match self {
            End::Pod(p) => cluster.pod_key(p),
            End::Node(n) => format!("node:{}", cluster.nodes[n].name),
        }
    }
    pub fn side(self, cluster: &Cluster) -> Side {
        match self {
            End::Pod(p) => Side::pod(cluster, p),
            End::Node(n) => Side::node(cluster, n),
        }
    }
}

/// Pods in output order, then nodes by name.
pub fn ends(cluster: &Cluster) -> Vec<End> {
    let mut nodes: Vec<NodeId> = cluster.node_ids().collect();
    nodes.sort_by_key(|&n| cluster.nodes[n].name.clone());
    cluster.pods_sorted().into_iter().map(End::Pod).chain(nodes.into_iter().map(End::Node)).collect()
}

/// `*` (everything), `ns/*`, `*/pod`, `ns/pod` (pods), `node:*` or `node:name` (nodes).
pub fn pattern_matches(pattern: &str, key: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(node) = key.strip_prefix("node:") {
        return pattern == "node:*" || pattern.strip_prefix("node:") == Some(node);
    }
    let Some((pn, pp)) = pattern.split_once('/') else { return false };
    let (kn, kp) = key.split_once('/').unwrap();
    (pn == "*" || pn == kn) && (pp == "*" || pp == kp)
}

/// The expected grid in `order`: everything allowed, the case's expectations applied in
/// order, then every pod to itself allowed (its packets never leave its namespace), except a
/// template pod standing for a workload's pods (two replicas are two pods: the case says).
pub fn expected_grid(cluster: &Cluster, order: &[End], probe: &Probe) -> Vec<Vec<bool>> {
    let keys: Vec<String> = order.iter().map(|e| e.key(cluster)).collect();
    let mut grid = vec![vec![true; order.len()]; order.len()];
    for (from, to, allow) in &probe.expect {
        for (i, s) in keys.iter().enumerate() {
            for (j, d) in keys.iter().enumerate() {
                if pattern_matches(from, s) && pattern_matches(to, d) {
                    grid[i][j] = *allow;
                }
            }
        }
    }
    for (i, row) in grid.iter_mut().enumerate() {
        let replicas = matches!(order[i], End::Pod(p) if cluster.pods[p].is_replica_group());
        row[i] |= !replicas;
    }
    grid
}

/// The e2e suite's notation: `.` connected, `X` blocked; rows are sources.
pub fn grid_text(cluster: &Cluster, order: &[End], grid: &[Vec<bool>]) -> String {
    let keys: Vec<String> = order.iter().map(|e| e.key(cluster)).collect();
    let w = keys.iter().map(String::len).max().unwrap_or(1) + 1;
    let mut s = format!("{:w$}", "-");
    for k in &keys {
        s.push_str(&format!("{k:>w$}"));
    }
    s.push('\n');
    for (i, row) in grid.iter().enumerate() {
        s.push_str(&format!("{:w$}", keys[i]));
        for &a in row {
            s.push_str(&format!("{:>w$}", if a { "." } else { "X" }));
        }
        s.push('\n');
    }
    s
}

/// Manifest files (`.yaml`, `.yml`, `.json`) under a directory, sorted.
pub fn manifest_paths(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(manifest_paths(&p));
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
            out.push(p);
        }
    }
    out.sort();
    out
}
