//! Golden outputs for what people read: `check` traces, the `matrix` table, lint, diff, reach, graph.
//! Regenerate after an intended change with `PALISADE_BLESS=1 cargo test --test golden`, then review the diff.

mod common;

use common::{palisade, repo};

const CASES: &[(&str, &[&str])] = &[
    (
        "check-kubernetes-service-denied.txt",
        &[
            "check",
            "--from",
            "netpol-test/alpine",
            "--to",
            "default/svc/kubernetes",
            "--port",
            "443",
            "examples/node-network-egress/cluster.yaml",
            "examples/node-network-egress/default-block.yaml",
        ],
    ),
    (
        "check-kubernetes-service-allowed.txt",
        &[
            "check",
            "--from",
            "netpol-test/alpine",
            "--to",
            "10.96.0.1",
            "--port",
            "443",
            "examples/node-network-egress",
        ],
    ),
    (
        "check-self.txt",
        &[
            "check",
            "--from",
            "x/a",
            "--to",
            "x/a",
            "--port",
            "80",
            "tests/conformance/model.yaml",
            "tests/conformance/cases/02-default-deny-all.yaml",
        ],
    ),
    (
        "check-own-node.txt",
        &["check", "--from", "198.18.50.1", "--to", "shop/web-1", "--port", "80", "tests/dumps/cluster.yaml", "-q"],
    ),
    (
        "check-other-node.txt",
        &["check", "--from", "198.18.50.2", "--to", "shop/web-1", "--port", "80", "tests/dumps/cluster.yaml", "-q"],
    ),
    (
        "check-replicas.txt",
        &["check", "--from", "shop/api", "--to", "shop/api", "--port", "http", "tests/dumps/cluster.yaml", "-q"],
    ),
    (
        "check-external-name.txt",
        &[
            "check",
            "--from",
            "shop/web-1",
            "--to",
            "shop/svc/payments",
            "--port",
            "443",
            "tests/dumps/cluster.yaml",
            "-q",
        ],
    ),
    (
        "matrix-table-and-selectors.txt",
        &["matrix", "tests/conformance/model.yaml", "tests/conformance/cases/10-pod-and-namespace-selector.yaml", "-q"],
    ),
    ("matrix-table-workloads.txt", &["matrix", "--port", "8080", "examples/lateral-movement", "-q"]),
    ("matrix-all-ports-lateral-movement.txt", &["matrix", "--all-ports", "examples/lateral-movement", "-q"]),
    ("matrix-all-ports-calico-wordpress.txt", &["matrix", "--all-ports", "examples/calico-wordpress", "-q"]),
    (
        "check-calico-tiers-default-deny.txt",
        &[
            "check",
            "--from",
            "monitoring/prometheus-0",
            "--to",
            "wordpress/wordpress-0",
            "--port",
            "80",
            "examples/calico-wordpress",
            "-q",
        ],
    ),
    (
        "check-calico-pass.txt",
        &[
            "check",
            "--from",
            "y/b",
            "--to",
            "x/a",
            "--port",
            "80",
            "tests/conformance/model.yaml",
            "tests/conformance/cases/calico-03-tiers-and-pass.yaml",
            "-q",
        ],
    ),
    (
        "convert-calico-wordpress-to-kubernetes.yaml",
        &["convert", "--to", "kubernetes", "examples/calico-wordpress", "-q"],
    ),
    (
        "convert-kubernetes-to-calico.yaml",
        &[
            "convert",
            "--to",
            "calico",
            "tests/conformance/model.yaml",
            "tests/conformance/cases/10-pod-and-namespace-selector.yaml",
            "tests/conformance/cases/19-named-port-egress.yaml",
            "tests/conformance/cases/27-egress-cidr-except.yaml",
            "-q",
        ],
    ),
    ("lint-one-sided.txt", &["lint", "tests/lint/cluster.yaml", "tests/lint/one-sided.yaml"]),
    ("lint-calico-wordpress.txt", &["lint", "examples/calico-wordpress"]),
    ("lint-calico-egress-deny.txt", &["lint", "tests/lint/cluster.yaml", "tests/lint/calico-egress-deny.yaml"]),
    ("lint-dns-server.txt", &["lint", "tests/lint/cluster.yaml", "tests/lint/dns-server.yaml"]),
    ("lint-dns-wrong-port.txt", &["lint", "tests/lint/cluster.yaml", "tests/lint/dns-wrong-port.yaml"]),
    ("lint-no-pods.txt", &["lint", "tests/lint/no-pods.yaml"]),
    ("lint-node-network-egress.sarif", &["lint", "--output", "sarif", "examples/node-network-egress"]),
    ("reach-lateral-movement.txt", &["reach", "--from", "shop/frontend", "--hops", "3", "examples/lateral-movement"]),
    ("graph-calico-wordpress.dot", &["graph", "examples/calico-wordpress", "-q"]),
    (
        "diff-opened-to-the-world.txt",
        &["diff", "tests/review/deny.yaml", "tests/review/open.yaml", "--with", "tests/review/cluster.yaml"],
    ),
    (
        "diff-except-changed.txt",
        &["diff", "tests/review/except-7.yaml", "tests/review/except-8.yaml", "--with", "tests/review/cluster.yaml"],
    ),
    (
        "reach-from-the-world.txt",
        &["reach", "--from", "outside 0.0.0.0/0", "--hops", "2", "tests/review/cluster.yaml", "tests/review/open.yaml"],
    ),
    ("reach-no-policy.txt", &["reach", "--from", "app/db", "tests/review/cluster.yaml"]),
    (
        "generate-lateral-movement.yaml",
        &["generate", "--flows", "tests/generate/shop-flows.csv", "examples/lateral-movement/cluster.yaml", "-q"],
    ),
    (
        "generate-complement-egress.yaml",
        &["generate", "--complement-egress", "tests/lint/cluster.yaml", "tests/lint/one-sided.yaml", "-q"],
    ),
];

#[test]
fn outputs_match_golden_files() {
    let bless = std::env::var_os("PALISADE_BLESS").is_some();
    let mut diffs = Vec::new();
    for (name, args) in CASES {
        let out = palisade().current_dir(repo()).args(*args).output().unwrap();
        let got = String::from_utf8_lossy(&out.stdout).to_string();
        let path = repo().join("tests/golden").join(name);
        if bless {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            diffs.push(format!("{name}:\n--- want\n{want}--- got\n{got}"));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
