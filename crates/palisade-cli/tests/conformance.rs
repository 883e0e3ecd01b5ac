//! The Kubernetes e2e network policy truth tables (tests/conformance/cases), decided by both
//! engine paths: the bitset matrix and the per-connection verdict with trace. Nodes
//! (`node:NAME`) are rows and columns too.

mod common;

use common::{conformance_cases, ends, expected_grid, grid_text, load_case, End, Probe};
use palisade_core::cluster::Cluster;
use palisade_core::index::Index;
use palisade_core::verdict::{decide, Connection, Verdict};

#[test]
fn truth_tables_hold_for_matrix_and_check() {
    let cases = conformance_cases();
    assert!(cases.len() >= 40, "expected the full case list, found {}", cases.len());
    let mut failures = Vec::new();
    let mut probes = 0;
    for case in &cases {
        let cluster = load_case(case);
        let order = ends(&cluster);
        let mut index = Index::new(&cluster);
        for probe in &case.probes {
            probes += 1;
            let expected = expected_grid(&cluster, &order, probe);
            let m = index.matrix(probe.port, probe.protocol);
            // The matrix holds pods; a node's row and column are the engine's per connection.
            let from_matrix: Vec<Vec<bool>> = order
                .iter()
                .map(|&s| {
                    order
                        .iter()
                        .map(|&d| match (s, d) {
                            (End::Pod(s), End::Pod(d)) => m.allowed(s, d),
                            _ => decided(&cluster, s, d, probe),
                        })
                        .collect()
                })
                .collect();
            let from_check: Vec<Vec<bool>> =
                order.iter().map(|&s| order.iter().map(|&d| decided(&cluster, s, d, probe)).collect()).collect();
            for (path, got) in [("matrix", &from_matrix), ("check", &from_check)] {
                if *got != expected {
                    failures.push(format!(
                        "{} ({}) {}/{} via {path}\nexpected:\n{}got:\n{}",
                        case.file,
                        case.name,
                        probe.protocol,
                        probe.port,
                        grid_text(&cluster, &order, &expected),
                        grid_text(&cluster, &order, got)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {probes} probes differ:\n{}", failures.len(), failures.join("\n"));
}

fn decided(cluster: &Cluster, s: End, d: End, probe: &Probe) -> bool {
    let conn = Connection::new(s.side(cluster), d.side(cluster), probe.port, probe.protocol);
    decide(cluster, &conn).verdict == Verdict::Allow
}
