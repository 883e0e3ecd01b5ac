//! The network-policy-api conformance suite as data (`tests/cnp/conformance`): its files, each
//! step's objects over the model, and its probes, for every test that decides or enforces them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use palisade_core::cluster::Cluster;
use palisade_core::port::Protocol;
use palisade_ingest::BuildOptions;
use serde_json::Value;

use super::repo;

pub fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    palisade_load::yaml::parse(&text).unwrap().iter().map(|d| d.to_json()).collect()
}

/// The `.yaml` files of a directory, sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    out.sort();
    out
}

/// Builds a cluster from JSON objects (one List); panics with every error when it does not load.
pub fn build(objects: Vec<Value>, dns: BTreeMap<String, Vec<IpAddr>>, what: &str) -> Cluster {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let source = palisade_load::Source { name: what.into(), text: serde_json::to_string(&list).unwrap().into() };
    let load = palisade_load::load_sources(vec![source], &BuildOptions { dns, ..Default::default() });
    let errors: Vec<String> =
        load.problems.iter().map(|p| format!("{}: {} ({})", p.object, p.message, p.path)).collect();
    load.cluster.unwrap_or_else(|| panic!("{what} does not load: {errors:#?}"))
}

/// One upstream probe: `PokeServer(from, to's address, port, protocol, allow)`.
pub struct SuiteProbe {
    pub from: String,
    pub to: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub allow: bool,
}

/// One step of a subtest: where it is (`test / subtest / step k`), the objects in force over
/// the model (replaced Namespaces included), and its probes.
pub struct SuiteStep {
    pub test: String,
    pub subtest: String,
    pub step: usize,
    pub objects: Vec<Value>,
    pub probes: Vec<SuiteProbe>,
}

impl SuiteStep {
    pub fn name(&self) -> String {
        format!("{} / {} / step {}", self.test, self.subtest, self.step)
    }
    pub fn cluster(&self) -> Cluster {
        build(self.objects.clone(), BTreeMap::new(), &self.name())
    }
}

/// The model's objects.
pub fn suite_model() -> Vec<Value> {
    yaml_docs(&repo().join("tests/cnp/conformance/model.yaml"))
}

/// The files of one version (`v1alpha2`, `v1alpha1`).
pub fn suite_files(version: &str) -> Vec<PathBuf> {
    files(&repo().join("tests/cnp/conformance").join(version))
}

/// Every step of one conformance file, in order.
pub fn suite_steps(path: &Path, model: &[Value]) -> Vec<SuiteStep> {
    let test = yaml_docs(path).remove(0);
    let name = test["name"].as_str().unwrap().to_string();
    let mut out = Vec::new();
    for sub in test["subtests"].as_array().unwrap() {
        for (k, step) in sub["steps"].as_array().unwrap().iter().enumerate() {
            let replaced: Vec<&Value> = step["namespaces"].as_array().map(|l| l.iter().collect()).unwrap_or_default();
            let mut objects: Vec<Value> = model
                .iter()
                .filter(|o| {
                    !(o["kind"] == "Namespace"
                        && replaced.iter().any(|r| r["metadata"]["name"] == o["metadata"]["name"]))
                })
                .cloned()
                .collect();
            objects.extend(replaced.into_iter().cloned());
            objects.extend(step["objects"].as_array().cloned().unwrap_or_default());
            let probes = step["probes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| SuiteProbe {
                    from: p["from"].as_str().unwrap().into(),
                    to: p["to"].as_str().unwrap().into(),
                    address: p["address"].as_str().unwrap().parse().unwrap(),
                    port: p["port"].as_u64().unwrap() as u16,
                    protocol: p["protocol"].as_str().unwrap().parse().unwrap(),
                    allow: p["allow"].as_bool().unwrap(),
                })
                .collect();
            out.push(SuiteStep {
                test: name.clone(),
                subtest: sub["name"].as_str().unwrap().into(),
                step: k,
                objects,
                probes,
            });
        }
    }
    out
}
