//! Shared helpers for the integration tests: repository paths, conformance cases, grids.
#![allow(dead_code)]

pub mod lab;

use std::path::{Path, PathBuf};

use palisade_core::build::BuildOptions;
use palisade_core::cluster::{Cluster, PodId};
use palisade_core::port::Protocol;
use serde_json::Value;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn palisade() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
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

/// `*`, `ns/*`, `*/pod` or `ns/pod`.
pub fn pattern_matches(pattern: &str, key: &str) -> bool {
    let (pn, pp) = pattern.split_once('/').unwrap_or((pattern, "*"));
    let (kn, kp) = key.split_once('/').unwrap();
    (pn == "*" || pn == kn) && (pp == "*" || pp == kp)
}

/// The expected grid in `order`: everything allowed, the case's expectations applied in
/// order, then every pod to itself allowed (its packets never leave its namespace).
pub fn expected_grid(cluster: &Cluster, order: &[PodId], probe: &Probe) -> Vec<Vec<bool>> {
    let keys: Vec<String> = order.iter().map(|&p| cluster.pod_key(p)).collect();
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
        row[i] = true;
    }
    grid
}

/// The e2e suite's notation: `.` connected, `X` blocked; rows are sources.
pub fn grid_text(cluster: &Cluster, order: &[PodId], grid: &[Vec<bool>]) -> String {
    let keys: Vec<String> = order.iter().map(|&p| cluster.pod_key(p)).collect();
    let mut s = format!("{:5}", "-");
    for k in &keys {
        s.push_str(&format!("{k:>5}"));
    }
    s.push('\n');
    for (i, row) in grid.iter().enumerate() {
        s.push_str(&format!("{:5}", keys[i]));
        for &a in row {
            s.push_str(&format!("{:>5}", if a { "." } else { "X" }));
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
