//! `--commands [BIN...]`: every review command as a whole process on the generator's cluster
//! (by default 10,000 pods / 5,000 policies), from one JSON List and from one block-style YAML
//! file: wall and CPU seconds and peak memory (GNU time), medians of interleaved rounds. Given
//! several `palisade` binaries (a build before a change and after it), each command runs on each
//! binary in turn within a round, so their ratios come from one run on one (busy) machine.
//! `check` is nearly all loading: the other lines minus it are the command's own work.
//! Prints figures; asserts nothing.

use std::path::{Path, PathBuf};

use palisade_bench::{generate, to_list, Shape};
use serde_json::{json, Value};

use crate::process::{median, palisade_binary, timed_exit, Run};

/// The inputs written once: the cluster in each format, the two policy versions for `diff`,
/// flows for `generate`.
struct Inputs {
    json: PathBuf,
    yaml: PathBuf,
    /// The cluster without its policies, the policies before and after (JSON, then YAML).
    shared: [PathBuf; 2],
    old: [PathBuf; 2],
    new: [PathBuf; 2],
    flows: PathBuf,
    /// A pod to ask `check` and `reach` about, and another.
    pods: (String, String),
}

pub fn run(shape: &Shape, binaries: &[PathBuf], rounds: usize, only: Option<&str>) {
    let binaries = if binaries.is_empty() { vec![palisade_binary()] } else { binaries.to_vec() };
    let scratch = std::env::temp_dir().join(format!("palisade-commands-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("create the scratch directory");
    let inputs = write(shape, &scratch);
    println!(
        "{} pods, {} policies, {} namespaces; {} round(s), medians; binaries: {}",
        shape.pods,
        shape.policies,
        shape.namespaces,
        rounds,
        binaries.iter().map(|b| b.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    println!("{:<44} {:>3} {:>9} {:>9} {:>9}", "command (input)", "bin", "wall s", "CPU s", "peak MiB");
    for (name, format, args) in commands(&inputs) {
        let label = format!("{name} ({format})");
        if only.is_some_and(|o| !label.contains(o)) {
            continue;
        }
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); binaries.len()];
        // A binary whose `graph --output json` explains every workload pair on every port
        // (before the overview) takes minutes past a few thousand workloads.
        let skipped = |bin: &Path| name == "graph --output json" && shape.pods > GRAPH_MAX_PODS && per_edge_graph(bin);
        for _ in 0..rounds {
            for (b, bin) in binaries.iter().enumerate().filter(|(_, bin)| !skipped(bin)) {
                // lint and generate exit 1 on findings or unverified flows: still measured.
                runs[b].push(timed_exit(bin, &args, &scratch, &[0, 1]).0);
            }
        }
        for (b, r) in runs.iter().enumerate() {
            if r.is_empty() {
                println!("{label:<44} {b:>3} skipped: per-edge graph JSON above {GRAPH_MAX_PODS} pods");
                continue;
            }
            let m = median(r);
            println!("{label:<44} {b:>3} {:>9.2} {:>9.2} {:>9.0}", m.wall, m.cpu, m.peak_mib);
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// A per-edge `graph --output json` (binaries without `--detail`) runs only on clusters up to
/// this many pods.
const GRAPH_MAX_PODS: usize = 2_000;

/// Whether this binary's `graph --output json` is the per-edge list (it has no `--detail`).
fn per_edge_graph(bin: &Path) -> bool {
    let help = std::process::Command::new(bin).args(["graph", "--help"]).output();
    help.map(|o| !String::from_utf8_lossy(&o.stdout).contains("--detail")).unwrap_or(true)
}

/// (name, input format, arguments) of each measured command.
fn commands(i: &Inputs) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let mut out = Vec::new();
    for (format, path) in [("JSON", &i.json), ("YAML", &i.yaml)] {
        let p = path.display().to_string();
        let (a, b) = (&i.pods.0, &i.pods.1);
        let each: [(&'static str, Vec<&str>); 8] = [
            ("check", vec!["check", "--from", a, "--to", b, "--port", "8080"]),
            ("matrix --port 8080 (table)", vec!["matrix", "--port", "8080"]),
            ("matrix --port 8080 --output json", vec!["matrix", "--port", "8080", "--output", "json"]),
            ("reach --from", vec!["reach", "--from", a]),
            ("lint", vec!["lint"]),
            ("generate --flows", vec!["generate", "--flows", i.flows.to_str().unwrap_or_default()]),
            ("graph --output html", vec!["graph", "--output", "html"]),
            ("graph --output json", vec!["graph", "--output", "json"]),
        ];
        for (name, args) in each {
            let args = args.into_iter().map(String::from).chain(["-q".into(), p.clone()]).collect();
            out.push((name, format, args));
        }
    }
    let shown = |p: &Path| p.display().to_string();
    for (k, format) in ["JSON", "YAML"].into_iter().enumerate() {
        let (old, new, shared) = (shown(&i.old[k]), shown(&i.new[k]), shown(&i.shared[k]));
        let diff = vec!["diff".into(), old, new, "--with".into(), shared, "-q".into()];
        out.push(("diff (one policy changed)", format, diff));
    }
    out
}

fn write(shape: &Shape, dir: &Path) -> Inputs {
    let list = to_list(&generate(shape));
    let items = list["items"].as_array().expect("a List has items");
    let file = |name: &str, items: Vec<Value>| {
        let path = dir.join(name);
        std::fs::write(&path, json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string())
            .expect("write an input");
        path
    };
    // One input in both formats: `name.json` and a block-style `name.yaml`.
    let both = |name: &str, items: Vec<Value>| {
        let yaml = dir.join(format!("{name}.yaml"));
        std::fs::write(&yaml, palisade_load::yaml::emit(&items)).expect("write a YAML input");
        [file(&format!("{name}.json"), items), yaml]
    };
    let json = file("cluster.json", items.clone());
    let yaml = dir.join("cluster.yaml");
    std::fs::write(&yaml, palisade_load::yaml::emit(items)).expect("write the YAML cluster");
    let (policies, shared): (Vec<Value>, Vec<Value>) =
        items.iter().cloned().partition(|i| i["kind"] == "NetworkPolicy");
    let mut changed = policies.clone();
    // One policy changed: the first with ingress on 8080 admits 9090 instead.
    if let Some(p) = changed.iter_mut().find(|p| p["spec"]["ingress"].is_array() && p.to_string().contains("8080")) {
        *p = serde_json::from_str(&p.to_string().replace("8080", "9090")).expect("still JSON");
    }
    let pods: Vec<String> = items
        .iter()
        .filter(|i| i["kind"] == "Pod")
        .map(|p| {
            format!(
                "{}/{}",
                p["metadata"]["namespace"].as_str().unwrap_or(""),
                p["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    // Flows for generate: every other pod opens the pod 100 places on (the same namespace) on 8080.
    let flows: String = (0..pods.len())
        .step_by(2)
        .map(|k| format!("{},{},8080,TCP\n", pods[k], pods[(k + 100) % pods.len()]))
        .collect();
    let flows_path = dir.join("flows.csv");
    std::fs::write(&flows_path, flows).expect("write the flows");
    Inputs {
        json,
        yaml,
        shared: both("shared", shared),
        old: both("old", policies),
        new: both("new", changed),
        flows: flows_path,
        pods: (pods[0].clone(), pods[1 % pods.len()].clone()),
    }
}
