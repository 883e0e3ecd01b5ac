//! `palisade generate` as users run it: from CSV, Hubble and the agent's flow log, in both
//! formats, with aggregation, checked against the engine; and --complement-egress.

mod common;

use std::path::PathBuf;

use common::run;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-generate-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

const CLUSTER: &str = "examples/lateral-movement/cluster.yaml";

fn verdict(from: &str, to: &str, port: &str, paths: &[&str]) -> String {
    let mut args = vec!["check", "--from", from, "--to", to, "--port", port, "-q", "--output", "json"];
    args.extend_from_slice(paths);
    let (_, out, err) = run(&args);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{err}"));
    v["verdict"].as_str().unwrap().to_string()
}

#[test]
fn generated_directory_allows_the_flows_and_nothing_else() {
    let out = scratch("dir");
    let (code, _, err) =
        run(&["generate", "--flows", "tests/generate/shop-flows.csv", CLUSTER, "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("verified: the generated policies allow all 4 observed connection(s)"), "{err}");
    assert!(err.contains("nothing beyond what was observed"), "{err}");
    let mut files: Vec<String> =
        std::fs::read_dir(out.join("shop")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    files.sort();
    assert_eq!(
        files,
        ["default-deny.yaml", "deployment-backend.yaml", "deployment-frontend.yaml", "statefulset-db.yaml"]
    );
    let dir = out.to_str().unwrap();
    assert_eq!(verdict("shop/frontend", "shop/backend", "9090", &[CLUSTER, dir]), "allow");
    assert_eq!(verdict("shop/backend", "shop/db", "5432", &[CLUSTER, dir]), "allow");
    assert_eq!(verdict("shop/backend", "203.0.113.5", "443", &[CLUSTER, dir]), "allow");
    assert_eq!(verdict("shop/frontend", "shop/db", "5432", &[CLUSTER, dir]), "deny", "not observed");
    assert_eq!(verdict("shop/backend", "203.0.113.6", "443", &[CLUSTER, dir]), "deny", "another address");
    assert_eq!(verdict("shop/backend", "shop/db", "5433", &[CLUSTER, dir]), "deny", "another port");
    // What the generator wrote passes its own lint without errors.
    let (code, lint, _) = run(&["lint", CLUSTER, dir]);
    assert_eq!(code, 0, "{lint}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn hubble_csv_and_the_agent_log_give_the_same_policies() {
    let (code, from_hubble, err) = run(&["generate", "--flows", "tests/generate/shop-hubble.json", CLUSTER]);
    assert_eq!(code, 0, "{err}");
    let dir = scratch("formats");
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("three.csv");
    std::fs::write(
        &csv,
        "shop/frontend,shop/backend,9090,TCP\nshop/backend,shop/db,5432,TCP\nshop/backend,203.0.113.5,443,TCP\n",
    )
    .unwrap();
    let (_, from_csv, _) = run(&["generate", "--flows", csv.to_str().unwrap(), CLUSTER]);
    assert_eq!(from_hubble, from_csv, "Hubble's replies and non-SYN segments are not flows");
    // The agent's log names addresses; the lateral-movement pods have none, so use the lint cluster.
    let log = dir.join("flows.jsonl");
    let record = |src: &str, dst: &str, port: u16| {
        format!(
            r#"{{"time":1,"src":"x","dst":"y","src_ip":"{src}","dst_ip":"{dst}","port":{port},"protocol":"TCP","verdict":"allow","mode":"audit","decided_by":[]}}"#
        )
    };
    std::fs::write(
        &log,
        [record("10.244.1.10", "10.244.1.11", 8080), record("10.244.1.11", "10.244.2.10", 5432)].join("\n"),
    )
    .unwrap();
    let (code, text, err) = run(&["generate", "--flows", log.to_str().unwrap(), "tests/lint/cluster.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("name: web-egress") && text.contains("name: db-0-ingress"), "{text}");
    assert!(text.contains("kubernetes.io/metadata.name: app"), "cross-namespace peers name the namespace: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn aggregation_calico_output_and_bad_input() {
    let (code, text, err) =
        run(&["generate", "--flows", "tests/generate/shop-flows.csv", CLUSTER, "--aggregate", "/24"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(text.matches("cidr: 203.0.113.0/24").count(), 1, "two addresses of one /24 become one peer: {text}");
    let out = scratch("calico");
    let (code, _, err) = run(&[
        "generate",
        "--flows",
        "tests/generate/shop-flows.csv",
        CLUSTER,
        "--format",
        "calico",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("verified"), "{err}");
    let calico = std::fs::read_to_string(out.join("shop/deployment-backend.yaml")).unwrap();
    assert!(calico.contains("apiVersion: projectcalico.org/v3"), "{calico}");
    assert_eq!(verdict("shop/frontend", "shop/db", "5432", &[CLUSTER, out.to_str().unwrap()]), "deny");
    let _ = std::fs::remove_dir_all(&out);
    let bad = scratch("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let csv = bad.join("flows.csv");
    std::fs::write(&csv, "shop/frontend,shop/backend,9090,TCP\nshop/frontend,shop/backend,http,TCP\n").unwrap();
    let (code, _, err) = run(&["generate", "--flows", csv.to_str().unwrap(), CLUSTER]);
    assert_eq!(code, 2);
    assert!(err.contains("flows.csv:2: port \"http\""), "{err}");
    std::fs::write(&csv, "shop/frontend,shop/backend,9090,TCP\nshop/ghost,shop/backend,9090,TCP\n").unwrap();
    // A flow it cannot resolve is traffic the policies leave out: not verified, exit 1.
    let (code, _, err) = run(&["generate", "--flows", csv.to_str().unwrap(), CLUSTER]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("flow not used: shop/ghost -> shop/backend 9090/TCP: no pod shop/ghost"), "{err}");
    assert!(err.contains("1 observed flow(s) could not be resolved"), "{err}");
    assert!(!err.contains("verified:"), "{err}");
    let (code, _, err) = run(&["generate", "--flows", "tests/generate/shop-flows.csv", CLUSTER, "--aggregate", "/40"]);
    assert_eq!(code, 2, "{err}");
    let _ = std::fs::remove_dir_all(&bad);
}

#[test]
fn complementary_egress_repairs_what_egress_isolation_broke() {
    // The egress article: web -> api is admitted by api's ingress, but web's egress is isolated.
    let base = [
        "-n",
        "app",
        "examples/egress-guide/cluster.yaml",
        "examples/egress-guide/dns-kube-dns",
        "examples/egress-guide/api-ingress.yaml",
    ];
    assert_eq!(verdict("app/web", "app/api", "8080", &base), "deny");
    let out = scratch("complement");
    let mut args = vec!["generate", "--complement-egress", "--out", out.to_str().unwrap()];
    args.extend_from_slice(&base);
    let (code, _, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 before, 0 with these policies"), "{err}");
    let mut with = base.to_vec();
    with.push(out.to_str().unwrap());
    assert_eq!(verdict("app/web", "app/api", "8080", &with), "allow");
    assert_eq!(verdict("app/web", "app/api", "9090", &with), "deny", "only the ingress rule's ports");
    let _ = std::fs::remove_dir_all(&out);
}
