//! `select`, `convert` and `check --staged` as a user runs them.

mod common;

use common::{palisade, repo};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = palisade().current_dir(repo()).args(args).output().unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

#[test]
fn select_lists_pods_with_pseudo_labels_as_sorted_json() {
    let (code, out, _) = run(&[
        "select",
        r#"pcns.role in {"ingress", "metrics"} || app == "mariadb" && projectcalico.org/namespace == "wordpress""#,
        "examples/calico-wordpress",
        "--output",
        "json",
        "-q",
    ]);
    assert_eq!(code, 0);
    let got: Vec<String> = serde_json::from_str(&out).unwrap();
    assert_eq!(got, ["monitoring/prometheus-0", "traefik/traefik-0", "wordpress/mariadb-0"]);
}

#[test]
fn select_reports_the_column_of_a_syntax_error() {
    let (code, _, err) = run(&["select", "app == 'web' && tier", "examples/calico-wordpress", "-q"]);
    assert_eq!(code, 2);
    assert!(err.contains("at column 21"), "{err}");
}

#[test]
fn convert_to_kubernetes_names_every_rule_it_cannot_express() {
    let (code, out, err) = run(&["convert", "--to", "kubernetes", "examples/calico-wordpress", "-q"]);
    assert_eq!(code, 1, "some policies are not expressible: exit 1");
    for needle in [
        "GlobalNetworkPolicy global-default-deny: cluster-wide policies have no Kubernetes NetworkPolicy equivalent",
        "Calico NetworkPolicy wordpress/default-deny:",
        "spec.ingress[0]: action Deny: Kubernetes rules can only allow",
        "spec.egress[0]: action Deny: Kubernetes rules can only allow",
        "converted 6 policies; 2 not converted",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert_eq!(out.matches("kind: NetworkPolicy").count(), 6);
    assert!(!out.contains("default-deny"), "a policy with an inexpressible rule is not emitted at all");
}

/// Kubernetes → Calico → the same matrix, through the binary and files on disk.
#[test]
fn converted_policies_decide_like_the_originals() {
    let cases = [
        "tests/conformance/cases/10-pod-and-namespace-selector.yaml",
        "tests/conformance/cases/27-egress-cidr-except.yaml",
        "tests/conformance/cases/19-named-port-egress.yaml",
    ];
    let dir = std::env::temp_dir().join(format!("palisade-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, case) in cases.iter().enumerate() {
        let (code, calico, err) = run(&["convert", "--to", "calico", "tests/conformance/model.yaml", case, "-q"]);
        assert_eq!(code, 0, "{err}");
        let file = dir.join(format!("calico-{i}.yaml"));
        std::fs::write(&file, &calico).unwrap();
        for (port, proto) in [("80", "TCP"), ("81", "UDP"), ("80", "SCTP")] {
            let matrix = |files: &[&str]| {
                let mut args = vec![
                    "matrix",
                    "--output",
                    "json",
                    "--port",
                    port,
                    "--protocol",
                    proto,
                    "-q",
                    "tests/conformance/model.yaml",
                ];
                args.extend_from_slice(files);
                let (code, out, err) = run(&args);
                assert_eq!(code, 0, "{err}");
                out
            };
            let file = file.to_str().unwrap();
            assert_eq!(matrix(&[case]), matrix(&[file]), "{case} {port}/{proto}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_staged_says_what_would_change() {
    let args = [
        "check",
        "--from",
        "y/a",
        "--to",
        "x/a",
        "--port",
        "80",
        "--staged",
        "tests/conformance/model.yaml",
        "tests/conformance/cases/calico-14-staged-not-enforced.yaml",
        "-q",
    ];
    let (code, out, _) = run(&args);
    assert_eq!(code, 0);
    assert!(out.starts_with("staged policies (1): allow -> deny (would change)"), "{out}");
    let mut json = args.to_vec();
    json.extend(["--output", "json"]);
    let (_, out, _) = run(&json);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["enforced"]["verdict"], "allow");
    assert_eq!(v["staged"]["verdict"], "deny");
    assert_eq!(v["changes"], true);
}

/// Cluster network policies convert to Calico 3.32's GlobalNetworkPolicies in its kube tiers
/// (Accept → Allow, Pass kept, order = priority); v1alpha1 gets a note (Calico 3.32 does not
/// read it); a `nodes` peer, which Calico 3.32 cannot express, is refused with its path.
#[test]
fn convert_maps_cluster_network_policies_to_calicos_kube_tiers() {
    let (code, out, err) = run(&[
        "convert",
        "--to",
        "calico",
        "tests/conformance/model.yaml",
        "tests/cnp/cases/06-pass-skips-the-admin-tier.yaml",
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("kind: GlobalNetworkPolicy") && out.contains("tier: kube-admin"), "{out}");
    assert!(out.contains("action: Pass") && !out.contains("Accept"), "{out}");
    let (code, _, err) = run(&[
        "convert",
        "--to",
        "calico",
        "tests/conformance/model.yaml",
        "tests/cnp/cases/14-v1alpha1-admin-and-baseline-admin-network-policy.yaml",
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Calico 3.32 does not read v1alpha1 objects"), "{err}");
    let (code, _, err) = run(&[
        "convert",
        "--to",
        "calico",
        "tests/conformance/model.yaml",
        "tests/cnp/cases/03-nodes-and-host-network-pods.yaml",
        "-q",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(".nodes: Calico 3.32 has no form for nodes peers"), "{err}");
}
