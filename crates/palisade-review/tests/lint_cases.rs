//! Every lint case in `tests/lint/` runs against `tests/lint/cluster.yaml` (unless it says
//! `# without: cluster.yaml`); its `# expect:` lines (`CODE | object | path`) must be exactly
//! the findings, no more and no fewer.

use std::path::{Path, PathBuf};

use palisade_ingest::BuildOptions;
use palisade_review::connectivity::{Connectivity, Cuts};
use palisade_review::lint::{lint, CHECKS};
use palisade_review::workload::Workloads;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/lint")
}

fn findings(case: &Path) -> Vec<String> {
    // `# without: cluster.yaml` lints the case on its own (what lint says without the pods).
    let alone = std::fs::read_to_string(case).expect("readable").lines().any(|l| l == "# without: cluster.yaml");
    let mut paths = vec![case.to_path_buf()];
    if !alone {
        paths.insert(0, dir().join("cluster.yaml"));
    }
    let load = palisade_load::load_paths(&paths, &BuildOptions::default()).expect("readable");
    let cluster =
        load.cluster.as_ref().unwrap_or_else(|| panic!("{}: does not load: {:?}", case.display(), load.problems));
    let workloads = Workloads::new(cluster);
    let conn = Connectivity::compute(cluster, Cuts::of(&[cluster]), || {});
    let mut out: Vec<String> = load
        .problems
        .iter()
        .map(|p| format!("PAL000 | {} | {}", p.object, p.path))
        .chain(
            lint(cluster, &load.inputs, &conn, &workloads)
                .iter()
                .map(|f| format!("{} | {} | {}", f.code, f.object, f.path)),
        )
        .collect();
    out.sort();
    out
}

fn expected(case: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(case).expect("readable");
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .filter(|l| *l != "nothing")
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>().join(" | "))
        .collect();
    out.sort();
    out
}

#[test]
fn every_case_finds_exactly_what_it_expects() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/lint exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n != "cluster.yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "lint cases are missing");
    let mut failures = Vec::new();
    for case in &cases {
        let (got, want) = (findings(case), expected(case));
        if got != want {
            failures.push(format!("{}:\n  expected {want:#?}\n  found {got:#?}", case.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_check_has_a_case() {
    let all: String = std::fs::read_dir(dir())
        .expect("tests/lint exists")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("readable"))
        .collect();
    for c in CHECKS.iter().filter(|c| c.code != "PAL000") {
        assert!(all.contains(&format!("# expect: {} ", c.code)), "no lint case expects {} ({})", c.code, c.name);
    }
}
