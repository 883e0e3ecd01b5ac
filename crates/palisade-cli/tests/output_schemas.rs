//! Every `--output json` shape holds to its published JSON Schema (`schemas/*.schema.json`,
//! draft 2020-12): real output of each command on the examples and on the edge cases (no pods,
//! the outside world, ICMP, ExternalName, staged policies, replicas), validated with the
//! `jsonschema` crate. The schemas are strict (no unknown fields), so a changed shape fails here.

mod common;

use common::{repo, run};
use serde_json::Value;

const SCHEMAS: [&str; 9] = ["check", "matrix", "select", "lint", "diff", "reach", "graph", "overview", "lab"];

fn schema(name: &str) -> Value {
    let path = repo().join("schemas").join(format!("{name}.schema.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Runs palisade and validates its stdout against `name`'s schema; returns the JSON.
fn valid(name: &str, args: &[&str]) -> Value {
    let (code, out, err) = run(args);
    assert!(code == 0 || code == 1, "{args:?} exited {code}: {err}");
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
    let validator = jsonschema::draft202012::new(&schema(name)).unwrap();
    let errors: Vec<String> = validator.iter_errors(&json).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{args:?} does not match schemas/{name}.schema.json:\n{}", errors.join("\n"));
    json
}

#[test]
fn schemas_are_versioned_draft_2020_12() {
    let mut files: Vec<String> = std::fs::read_dir(repo().join("schemas"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|f| f.ends_with(".schema.json"))
        .collect();
    files.sort();
    let mut want: Vec<String> = SCHEMAS.iter().map(|s| format!("{s}.schema.json")).collect();
    want.sort();
    assert_eq!(files, want, "one schema per --output json shape");
    for name in SCHEMAS {
        let s = schema(name);
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema", "{name}");
        assert_eq!(s["$id"], format!("urn:palisade:schema:{name}:v1"), "{name}: the version is in $id");
        jsonschema::meta::validate(&s).unwrap_or_else(|e| panic!("{name} is not a valid schema: {e}"));
    }
}

/// The `step` of every trace step, backends' own steps included.
fn steps(v: &Value, seen: &mut std::collections::BTreeSet<String>) {
    for step in v["trace"].as_array().into_iter().flatten() {
        seen.insert(step["step"].as_str().unwrap().to_string());
        steps(step, seen);
    }
}

/// Each case's output matches; together they show every kind of step the schema knows, so
/// each branch of it is held to real output.
#[test]
fn check_json_matches_its_schema() {
    let mut seen = std::collections::BTreeSet::new();
    let mut valid = |args: &[&str]| {
        let v = valid("check", args);
        steps(&v, &mut seen);
        steps(&v["enforced"], &mut seen);
        v
    };
    let egress = "examples/node-network-egress";
    // DNAT to a node backend, denied; and allowed with the other policy.
    let v = valid(&[
        "check",
        "--from",
        "netpol-test/alpine",
        "--to",
        "default/svc/kubernetes",
        "--port",
        "443",
        egress,
        "--output",
        "json",
    ]);
    assert_eq!(v["trace"][0]["step"], "dnat");
    // Calico tiers and orders, a Deny that decides.
    let wp = "examples/calico-wordpress";
    let calico =
        ["check", "--from", "monitoring/prometheus-0", "--to", "wordpress/wordpress-0", "--port", "80", wp, "-q"];
    valid(&[&calico[..], &["--output", "json"]].concat());
    // Staged policies: the other shape.
    let v = valid(&[&calico[..], &["--output", "json", "--staged"]].concat());
    assert!(v["enforced"]["verdict"].is_string());
    // ICMP (port 0), the outside world as a source and as a destination, no pods at all.
    valid(&[
        "check",
        "--from",
        "traefik/traefik-0",
        "--to",
        "wordpress/wordpress-0",
        "--protocol",
        "ICMP",
        wp,
        "-q",
        "--output",
        "json",
    ]);
    let outside = ["--from", "outside 0.0.0.0/0", "--to", "app/web", "--port", "80", "tests/review/cluster.yaml"];
    valid(&[&["check"][..], &outside, &["--output", "json"]].concat());
    let v = valid(&[
        "check",
        "--from",
        "app/db",
        "--to",
        "203.0.113.9",
        "--port",
        "443",
        "tests/review/cluster.yaml",
        "--output",
        "json",
    ]);
    assert!(v["trace"].as_array().unwrap().iter().any(|s| s["step"] == "not_enforced"));
    let v = valid(&[
        "check",
        "--from",
        "10.0.0.1",
        "--to",
        "10.0.0.2",
        "--port",
        "80",
        "tests/review/open.yaml",
        "--output",
        "json",
    ]);
    assert_eq!(v["verdict"], "allow", "two outside addresses: nothing enforces");
    // A pod to itself, a node to its own pod, replicas, an ExternalName Service.
    valid(&[
        "check",
        "--from",
        "app/web",
        "--to",
        "app/web",
        "--port",
        "80",
        "tests/review/cluster.yaml",
        "--output",
        "json",
    ]);
    let dump = ["tests/dumps/cluster.yaml", "-q", "--output", "json"];
    valid(&[&["check", "--from", "node node-1", "--to", "shop/web-1", "--port", "80"][..], &dump].concat());
    let v =
        valid(&[&["check", "--from", "shop/web-1", "--to", "shop/svc/payments", "--port", "443"][..], &dump].concat());
    assert_eq!(v["verdict"], "undecided");
    valid(&[&["check", "--from", "shop/api", "--to", "shop/api", "--port", "8080"][..], &dump].concat());
    // A Service without that port.
    valid(&[
        "check",
        "--from",
        "netpol-test/alpine",
        "--to",
        "default/svc/kubernetes",
        "--port",
        "80",
        egress,
        "--output",
        "json",
    ]);
    let schema = schema("check");
    for kind in schema["$defs"]["step"]["oneOf"].as_array().unwrap() {
        let kind = kind["properties"]["step"]["const"].as_str().unwrap();
        assert!(seen.contains(kind), "no case showed a {kind} step: {seen:?}");
    }
}

#[test]
fn matrix_select_and_lint_json_match_their_schemas() {
    let wp = "examples/calico-wordpress";
    valid("matrix", &["matrix", "--port", "80", wp, "-q", "--output", "json"]);
    valid("matrix", &["matrix", "--port", "http", wp, "-q", "--output", "json"]);
    let v = valid("matrix", &["matrix", "--protocol", "ICMP", wp, "-q", "--output", "json"]);
    assert_eq!(v["port"], 0);
    valid("select", &["select", "app == 'wordpress'", wp, "-q", "--output", "json"]);
    let v = valid("select", &["select", "app == 'nothing-has-this'", wp, "-q", "--output", "json"]);
    assert_eq!(v, serde_json::json!([]));
    valid("lint", &["lint", wp, "--output", "json", "--fail-on", "never"]);
    // Policies without pods: one finding about no location.
    let v = valid("lint", &["lint", "tests/review/open.yaml", "--output", "json", "--fail-on", "never"]);
    assert!(v.as_array().unwrap().iter().any(|f| f["code"] == "PAL020"), "{v}");
    let v = valid("lint", &["lint", "tests/lint/cluster.yaml", "tests/lint/clean.yaml", "--output", "json"]);
    assert_eq!(v, serde_json::json!([]));
}

#[test]
fn diff_reach_and_graph_json_match_their_schemas() {
    let with = ["--with", "tests/review/cluster.yaml", "--output", "json"];
    let v = valid("diff", &[&["diff", "tests/review/deny.yaml", "tests/review/open.yaml"][..], &with].concat());
    assert!(v["gained"].as_array().unwrap().iter().any(|g| g["from"] == "outside 0.0.0.0/0"));
    let v = valid("diff", &[&["diff", "tests/review/open.yaml", "tests/review/open.yaml"][..], &with].concat());
    assert_eq!(v, serde_json::json!({"gained": [], "lost": []}));
    let lm = "examples/lateral-movement";
    valid("reach", &["reach", "--from", "shop/frontend", "--hops", "2", lm, "--output", "json"]);
    valid("reach", &["reach", "--to", "shop/db", lm, "--output", "json"]);
    valid("reach", &["reach", "--from", "outside 0.0.0.0/0", "--hops", "1", lm, "--output", "json"]);
    valid("reach", &["reach", "--to", "node n1", "tests/review/cluster.yaml", "--output", "json"]);
    for input in
        [&["examples/calico-wordpress", "-q"][..], &["tests/review/nodes.yaml"], &["tests/review/replicas.yaml"]]
    {
        valid("graph", &[&["graph", "--output", "json", "--detail", "workloads"][..], input].concat());
        let v = valid("overview", &[&["graph", "--output", "json"][..], input].concat());
        assert_eq!(v["views"].as_array().unwrap().len(), v["groups"].as_array().unwrap().len(), "one view per group");
    }
    // No pods: only the policies' view of the world.
    let v = valid("graph", &["graph", "--output", "json", "--detail", "workloads", "tests/review/open.yaml", "-q"]);
    assert!(v["nodes"].as_array().unwrap().iter().all(|n| n["kind"] != "workload"));
    let v = valid("overview", &["graph", "--output", "json", "tests/review/open.yaml", "-q"]);
    assert!(v["groups"].as_array().unwrap().iter().all(|g| g["kind"] != "namespace"), "{v}");
}

#[test]
fn lab_json_matches_its_schema() {
    if std::env::var_os("PALISADE_SKIP_LAB").is_some() {
        eprintln!("PALISADE_SKIP_LAB is set: skipped");
        return;
    }
    let case = "tests/conformance/cases/calico-03-tiers-and-pass.yaml";
    let v = valid(
        "lab",
        &["lab", "tests/conformance/model.yaml", case, "--port", "80", "--protocol", "TCP", "-q", "--output", "json"],
    );
    assert!(v["results"][0]["differences"].as_array().unwrap().is_empty(), "{v}");
}
