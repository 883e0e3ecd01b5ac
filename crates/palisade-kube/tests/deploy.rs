//! `deploy/` loads strictly and says what issue 17 asks: the agent's ClusterRole grants list and
//! watch of exactly the kinds palisade-kube reads (and Events), the CLI's role only list; the
//! DaemonSet runs on the host network with CAP_NET_ADMIN only, a read-only root, NODE_NAME from
//! the downward API, every taint tolerated, probes on its port; the Dockerfile is two stages
//! with nftables in the runtime image.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use palisade_ingest::{BuildOptions, Object};
use palisade_kube::kinds::{EVENTS, KINDS};
use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Every document of deploy/'s YAML files, as JSON (through palisade's own YAML reader).
fn documents() -> Vec<Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(deploy()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.extend(palisade_load::yaml::parse(&text).unwrap().iter().map(|d| d.to_json()));
        }
    }
    out
}

/// Keys of `input` that a decode/encode round trip through `T` loses (misspelt fields).
fn unknown(input: &Value, echoed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, echoed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    None => out.push(format!("{path}.{k}")),
                    Some(e) => unknown(v, e, &format!("{path}.{k}"), out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Decodes with k8s-openapi's type and rejects unknown fields, as kubectl's strict validation does.
fn strict<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> T {
    let typed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{}: {e}", doc["metadata"]["name"]));
    let mut missing = Vec::new();
    unknown(doc, &serde_json::to_value(&typed).unwrap(), "", &mut missing);
    assert!(missing.is_empty(), "{} {}: unknown fields {missing:?}", doc["kind"], doc["metadata"]["name"]);
    typed
}

fn role(name: &str) -> ClusterRole {
    let docs = documents();
    let doc = docs.iter().find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == name).expect(name);
    strict(doc)
}

/// `(group, resource, verb)` for every grant of a role.
fn grants(role: &ClusterRole) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in role.rules.iter().flatten() {
        assert!(r.resource_names.is_none() && r.non_resource_urls.is_none());
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    assert!(g != "*" && res != "*" && v != "*", "no wildcards in {:?}", role.metadata.name);
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

fn expected(verbs: &[&str]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for k in KINDS {
        for v in verbs {
            out.insert((k.group.to_string(), k.plural.to_string(), v.to_string()));
        }
    }
    out
}

#[test]
fn the_loader_reads_deploy_without_a_problem() {
    let load = palisade_load::load_paths(&[deploy()], &BuildOptions::default()).unwrap();
    let problems: Vec<String> = load.problems.iter().map(|p| format!("{}: {}", p.object, p.message)).collect();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(load.cluster.is_some());
    let ignored: Vec<&str> = load.ignored.keys().map(String::as_str).collect();
    assert_eq!(
        ignored,
        ["rbac.authorization.k8s.io/v1 ClusterRole", "rbac.authorization.k8s.io/v1 ClusterRoleBinding"],
        "every other kind is one the loader reads strictly"
    );
    let kinds: BTreeSet<&str> = load.inputs.iter().map(|i| i.object.kind()).collect();
    assert_eq!(kinds, BTreeSet::from(["DaemonSet", "Namespace", "ServiceAccount"]));
}

#[test]
fn the_agent_role_grants_exactly_what_the_code_reads_and_events() {
    let mut want = expected(&["list", "watch"]);
    for v in ["create", "patch"] {
        want.insert((EVENTS.group.into(), EVENTS.plural.into(), v.into()));
    }
    assert_eq!(grants(&role("palisade-agent")), want);
    assert_eq!(grants(&role("palisade-reader")), expected(&["list"]), "the CLI's role only lists");

    let docs = documents();
    let binding: ClusterRoleBinding = strict(docs.iter().find(|d| d["kind"] == "ClusterRoleBinding").unwrap());
    assert_eq!((binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()), ("ClusterRole", "palisade-agent"));
    let subject = &binding.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.namespace.as_deref(), subject.name.as_str()),
        ("ServiceAccount", Some("palisade"), "palisade")
    );
}

#[test]
fn the_daemonset_runs_with_net_admin_only_on_every_node() {
    let load = palisade_load::load_paths(&[deploy()], &BuildOptions::default()).unwrap();
    let ds: &DaemonSet = load
        .inputs
        .iter()
        .find_map(|i| match &i.object {
            Object::DaemonSet(d) => Some(d),
            _ => None,
        })
        .unwrap();
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some("palisade"));
    let tolerations = pod.tolerations.as_ref().unwrap();
    assert!(
        tolerations.iter().any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none() && t.effect.is_none()),
        "one toleration that matches every taint"
    );
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_ne!(sc.privileged, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.add.as_deref(), Some(&["NET_ADMIN".to_string()][..]));
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));

    let env = |name: &str| {
        let e = c.env.iter().flatten().find(|e| e.name == name).unwrap_or_else(|| panic!("env {name}"));
        e.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path.clone()
    };
    assert_eq!(env("NODE_NAME"), "spec.nodeName");
    assert_eq!(env("NODE_IP"), "status.hostIP");
    let args = c.args.as_ref().unwrap().join(" ");
    assert!(
        args.starts_with("agent ") && args.contains("--source kubernetes") && args.contains("--node $(NODE_NAME)"),
        "{args}"
    );

    // Probes on the agent's port, which the agent binds to the node's address.
    let port = c.ports.as_ref().unwrap().iter().find(|p| p.name.as_deref() == Some("health")).unwrap();
    assert!(args.contains(&format!("--listen $(NODE_IP):{}", port.container_port)), "{args}");
    for (probe, path) in [(&c.liveness_probe, "/livez"), (&c.readiness_probe, "/readyz")] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("health".into()));
    }
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_with_nftables() {
    let text = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage");
    assert!(text.contains("cargo build --release --locked -p palisade-cli"));
    let runtime = text.split(froms[1]).nth(1).unwrap();
    assert!(runtime.contains("nftables") && runtime.contains("COPY --from=build"));
}
