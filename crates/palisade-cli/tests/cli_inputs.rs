//! Inputs the commands must take, or refuse out loud: ICMP without a port, port names for the
//! matrix, the names review commands print (workloads, nodes, pieces of the outside world),
//! and inputs without pods, which must never pass as an empty success.

mod common;

use common::run;
use serde_json::Value;

const LINT: [&str; 2] = ["tests/lint/cluster.yaml", "tests/lint/one-sided.yaml"];

#[test]
fn icmp_needs_no_port_and_takes_none() {
    let with = |extra: &[&str]| {
        let mut args = vec!["check", "--from", "app/worker", "--to", "app/web"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&LINT);
        run(&args)
    };
    let (code, out, err) = with(&["--protocol", "ICMP"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ALLOW  app/worker -> app/web ICMP type 8 (echo request) code 0"), "{out}");
    let (code, _, err) = with(&["--protocol", "ICMP", "--port", "80"]);
    assert_eq!((code, err.contains("ICMP has no ports")), (2, true), "{err}");
    let (code, _, err) = with(&[]);
    assert_eq!((code, err.contains("--port is required for TCP")), (2, true), "{err}");
}

fn matrix(args: &[&str]) -> Value {
    let mut all = vec!["matrix", "--output", "json", "-q"];
    all.extend_from_slice(args);
    all.extend_from_slice(&LINT);
    let (code, out, err) = run(&all);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

/// A port name is resolved per destination pod: web and api serve `http` on 8080, so the
/// matrix by name is the 8080 matrix's columns for them, and no other pod is opened on it.
#[test]
fn matrix_takes_a_port_name_per_destination() {
    let by_name = matrix(&["--port", "http"]);
    let by_number = matrix(&["--port", "8080"]);
    assert_eq!(by_name["port"], "http");
    let serving = ["app/api", "app/web"];
    for (src, dsts) in by_number["allowed"].as_object().unwrap() {
        let want: Vec<&Value> =
            dsts.as_array().unwrap().iter().filter(|d| serving.contains(&d.as_str().unwrap())).collect();
        let got: Vec<&Value> = by_name["allowed"][src].as_array().unwrap().iter().collect();
        assert_eq!(got, want, "{src}");
    }
    let (code, _, err) = run(&["matrix", "--port", "nope", LINT[0], LINT[1]]);
    assert_eq!(code, 2);
    assert!(err.contains("no pod declares a TCP container port named \"nope\""), "{err}");
    assert_eq!(matrix(&["--protocol", "ICMP"])["port"], 0);
    let (code, _, err) = run(&["matrix", "--protocol", "ICMP", "--port", "80", LINT[0]]);
    assert_eq!((code, err.contains("ICMP has no ports")), (2, true), "{err}");
}

#[test]
fn no_pods_is_said_not_passed() {
    let policies = "tests/lint/no-pods.yaml";
    let (code, out, err) = run(&["matrix", policies]);
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert!(err.contains("the input holds no pods"), "{err}");
    let (code, _, err) = run(&["lab", policies]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no pod with an address in the input"), "{err}");
    let (code, _, err) = run(&["reach", "--from", "app/web", policies]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the input holds no pods"), "{err}");
    // A Deployment alone stands for a pod without an address: no lab can build it.
    let (code, _, err) = run(&["lab", "examples/lateral-movement/cluster.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("(3 pod(s) without one, built from workload templates)"), "{err}");
}

/// `ns/kind/name`, as reach and diff print workloads, stands for one of its pods, and says so.
#[test]
fn workload_names_stand_for_a_pod() {
    let (code, out, err) = run(&[
        "check",
        "--from",
        "app/client",
        "--to",
        "app/statefulset/db",
        "--port",
        "pg",
        "tests/review/replicas.yaml",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ALLOW  app/client -> app/statefulset/db port 5432/TCP"), "{out}");
    assert!(out.contains("ingress at app/db-0: allowed"), "{out}");
    assert!(err.contains("note: --to app/statefulset/db stands for its pod app/db-0 (1 of 2;"), "{err}");
    let (code, out, err) = run(&["reach", "--to", "app/statefulset/db", "tests/review/replicas.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("app/db-0 can be opened by 1 workload(s):\n  app/client: 5432/TCP"), "{out}");
    let (code, _, err) = run(&[
        "check",
        "--from",
        "app/deployment/nope",
        "--to",
        "app/client",
        "--port",
        "80",
        "tests/review/replicas.yaml",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--from app/deployment/nope: no pod or workload of that name (in namespace app: app/client, app/db-0, app/db-1, app/statefulset/db)"),
        "{err}"
    );
}
