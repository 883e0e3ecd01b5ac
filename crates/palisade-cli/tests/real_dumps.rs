//! Real `kubectl get -A -o yaml` dumps load as they are (tests/dumps): finished pods are left
//! out (their reused IPs are no duplicates), a Deployment without Pod objects stands for its
//! replicas, an ExternalName Service has no backends to decide, and a Helm chart among the
//! inputs is named with what to do (render it, or `--exclude` it).

mod common;

use common::{palisade, repo};
use serde_json::Value;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = palisade().current_dir(repo()).args(args).output().unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

#[test]
fn finished_pods_are_left_out_in_one_warning() {
    let (code, out, err) = run(&["matrix", "--output", "json", "tests/dumps/cluster.yaml"]);
    assert_eq!(code, 0, "a finished Job pod's reused IP is no duplicate: {err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:") && l.contains("finished pod")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("left out 2 finished pod(s)"), "{err}");
    let m: Value = serde_json::from_str(&out).unwrap();
    let pods: Vec<&str> = m["allowed"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(pods, ["shop/api", "shop/web-1"]);
}

#[test]
fn replicas_of_a_workload_are_decided_between_them() {
    let allowed = |port: &str| {
        let (code, out, err) = run(&["matrix", "--port", port, "--output", "json", "tests/dumps/cluster.yaml", "-q"]);
        assert_eq!(code, 0, "{err}");
        let m: Value = serde_json::from_str(&out).unwrap();
        m["allowed"]["shop/api"].as_array().unwrap().iter().any(|d| d == "shop/api")
    };
    assert!(allowed("8080"), "api-peers admits one replica to another on http");
    assert!(!allowed("80"), "default-deny: replicas are distinct pods, not a self connection");
}

#[test]
fn an_external_name_service_is_undecided_not_denied() {
    let args = ["check", "--from", "shop/web-1", "--to", "shop/svc/payments", "--port", "443"];
    let (code, out, _) =
        run(&[&args[..], &["--output", "json", "--exit-code", "tests/dumps/cluster.yaml", "-q"]].concat());
    assert_eq!(code, 0, "only a denied connection exits 1");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "undecided");
    assert_eq!(v["trace"][0]["step"], "external_name");
    assert_eq!(v["trace"][0]["external_name"], "payments.example.com");
}

#[test]
fn a_helm_chart_among_the_inputs_is_named_and_can_be_excluded() {
    let (code, out, err) = run(&["matrix", "tests/dumps"]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("3 input(s) are not Kubernetes manifests"), "{err}");
    assert!(
        err.contains("render the chart first: helm template helm tests/dumps/helm > helm.yaml"),
        "the hint says what to run: {err}"
    );
    for exclude in ["tests/dumps/helm/**", "**/helm"] {
        let (code, _, err) = run(&["matrix", "tests/dumps", "--exclude", exclude, "-q"]);
        assert_eq!(code, 0, "--exclude {exclude}: {err}");
    }
    let (code, _, err) = run(&["matrix", "tests/dumps", "--exclude", "[", "-q"]);
    assert_eq!(code, 2);
    assert!(err.contains("--exclude ["), "{err}");
}
