//! The examples as sets of checks (each `checks.txt` line grouped by the objects it reads),
//! and what comparing their output across input forms needs: workloads as the pods a cluster
//! runs, and output without file positions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::repo;

/// `" (dir/file.yaml:12)"` references inside a text, removed.
fn without_references(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(" (") {
        let close = rest[i..].find(')').map(|j| i + j);
        let inner = close.map(|c| &rest[i + 2..c]).unwrap_or("");
        let is_ref = inner.rsplit_once(':').is_some_and(|(file, line)| {
            (file.ends_with(".yaml") || file.ends_with(".json")) && line.chars().all(|c| c.is_ascii_digit())
        });
        match (is_ref, close) {
            (true, Some(c)) => {
                out.push_str(&rest[..i]);
                rest = &rest[c + 1..];
            }
            _ => {
                out.push_str(&rest[..i + 2]);
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The example's files, with every workload scaled to one replica (copied under `home` when
/// any is scaled otherwise): a cluster runs a workload of N replicas as N pods with names of
/// their own, which no file side names; one pod named after the workload is what both share.
/// Replicas themselves are held by `real_dumps.rs`.
pub fn one_replica(dir: &Path, home: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    let scaled = |t: &str| t.lines().any(|l| l.trim_start().starts_with("replicas:") && l.trim() != "replicas: 1");
    if !files.iter().any(|f| std::fs::read_to_string(f).is_ok_and(|t| scaled(&t))) {
        return dir.to_path_buf();
    }
    let copy = home.join("example");
    std::fs::create_dir_all(&copy).unwrap();
    for f in files.iter().filter(|f| f.is_file()) {
        let text = std::fs::read_to_string(f).unwrap();
        let text: Vec<String> = text
            .lines()
            .map(|l| match l.split_once("replicas:") {
                Some((indent, _)) if indent.trim().is_empty() => format!("{indent}replicas: 1"),
                _ => l.to_string(),
            })
            .collect();
        std::fs::write(copy.join(f.file_name().unwrap()), text.join("\n") + "\n").unwrap();
    }
    copy
}

/// The pod the loader derives from a workload's template (named after the workload), owned
/// as the controllers own theirs: a Deployment's through a ReplicaSet `<name>-<pod-template-hash>`.
pub fn pod_of(workload: &Value) -> Value {
    let template = &workload["spec"]["template"];
    let name = workload["metadata"]["name"].as_str().unwrap();
    let mut labels = template["metadata"]["labels"].clone();
    let owner = if workload["kind"] == "Deployment" {
        labels["pod-template-hash"] = "5d8f9c7b6".into();
        serde_json::json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-5d8f9c7b6"), "uid": "u", "controller": true})
    } else {
        serde_json::json!({"apiVersion": "apps/v1", "kind": workload["kind"], "name": name, "uid": "u", "controller": true})
    };
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": workload["metadata"]["namespace"], "labels": labels, "ownerReferences": [owner]},
        "spec": template["spec"],
    })
}

/// Drops what only files have: positions (`location`, `file`, `line`, `column` fields, and
/// `(file.yaml:12)` references in texts).
pub fn positionless(v: &mut Value) {
    match v {
        Value::String(s) => *s = without_references(s),
        Value::Object(m) => {
            m.retain(|k, _| !matches!(k.as_str(), "location" | "file" | "line" | "column" | "frame"));
            m.values_mut().for_each(positionless);
        }
        Value::Array(a) => a.iter_mut().for_each(positionless),
        _ => {}
    }
}

#[derive(Clone)]
pub struct Set {
    pub dir: PathBuf,
    pub paths: Vec<String>,
    pub namespace: Option<String>,
    pub checks: Vec<Vec<String>>,
}

/// Every checks.txt line, grouped by the objects it reads.
pub fn sets() -> Vec<Set> {
    let mut by: BTreeMap<(PathBuf, String), Set> = BTreeMap::new();
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(repo().join("examples")).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    for dir in dirs.into_iter().filter(|d| d.join("checks.txt").exists()) {
        for line in std::fs::read_to_string(dir.join("checks.txt")).unwrap().lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let t: Vec<&str> = line.split_whitespace().collect();
            let (port, proto) = t[3].split_once('/').unwrap();
            let rest = &t[4..];
            let n = rest.iter().position(|a| *a == "-n");
            let namespace = n.map(|i| rest[i + 1].to_string());
            let paths: Vec<String> = rest[..n.unwrap_or(rest.len())].iter().map(|s| s.to_string()).collect();
            let set = by.entry((dir.clone(), rest.join(" "))).or_insert_with(|| Set {
                dir: dir.clone(),
                paths: paths.clone(),
                namespace: namespace.clone(),
                checks: Vec::new(),
            });
            let check = ["check", "--from", t[1], "--to", t[2], "--port", port, "--protocol", proto];
            set.checks.push(check.iter().map(|s| s.to_string()).collect());
        }
    }
    by.into_values().collect()
}
