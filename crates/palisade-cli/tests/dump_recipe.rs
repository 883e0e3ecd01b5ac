//! The README's dump recipe gives Palisade everything it reads: the `kubectl get` and
//! `calicoctl get` commands name exactly the kinds `palisade-kube` reads from a live cluster,
//! and every example, turned into what those commands print (one `kind: List` of YAML, with the
//! fields the API server adds: managedFields, status, resourceVersion, uid, creationTimestamp,
//! generation, the last-applied annotation, defaulted pod and Service fields; calicoctl's typed
//! lists, one per kind), gives the same answers as its plain files: every `checks.txt` line,
//! the matrix and lint.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::examples::{one_replica, pod_of, positionless, sets, Set};
use common::{palisade, repo};
use palisade_kube::kinds::KINDS;
use serde_json::{json, Value};
use yaml_rust2::{Yaml, YamlEmitter};

/// The recipe as the README prints it.
const KUBECTL_CORE: &str = "kubectl get namespaces,pods,nodes,serviceaccounts,services,endpointslices.discovery.k8s.io,networkpolicies.networking.k8s.io -A -o yaml > cluster.yaml";
const KUBECTL_CALICO: &str = "kubectl get tiers.projectcalico.org,networkpolicies.projectcalico.org,globalnetworkpolicies.projectcalico.org,stagednetworkpolicies.projectcalico.org,stagedglobalnetworkpolicies.projectcalico.org,stagedkubernetesnetworkpolicies.projectcalico.org,networksets.projectcalico.org,globalnetworksets.projectcalico.org,hostendpoints.projectcalico.org -A -o yaml > calico.yaml";
const CALICOCTL_GLOBAL: &str = "for kind in tiers globalnetworkpolicies stagedglobalnetworkpolicies globalnetworksets hostendpoints; do echo ---; calicoctl get $kind -o yaml; done > calico.yaml";
const CALICOCTL_NAMESPACED: &str = "for kind in networkpolicies stagednetworkpolicies stagedkubernetesnetworkpolicies networksets; do echo ---; calicoctl get $kind -A -o yaml; done >> calico.yaml";
const KUBECTL_POLICY_API: &str = "kubectl get clusternetworkpolicies.policy.networking.k8s.io,adminnetworkpolicies.policy.networking.k8s.io,baselineadminnetworkpolicies.policy.networking.k8s.io -o yaml > cluster-policies.yaml";

/// `(group, plural)` of each resource a `kubectl get A,B.group ...` command names.
fn kubectl_resources(command: &str) -> BTreeSet<(String, String)> {
    let list = command.split_whitespace().nth(2).unwrap();
    list.split(',')
        .map(|r| match r.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), r.to_string()),
        })
        .collect()
}

/// The plurals a `for kind in A B C; do ...` loop names.
fn loop_kinds(command: &str) -> Vec<String> {
    let list = command.split_once(" in ").unwrap().1.split_once(';').unwrap().0;
    list.split_whitespace().map(String::from).collect()
}

#[test]
fn the_recipe_names_exactly_the_kinds_palisade_reads_and_the_readme_prints_it() {
    let read: BTreeSet<(String, String)> = KINDS.iter().map(|k| (k.group.to_string(), k.plural.to_string())).collect();
    let mut named = BTreeSet::new();
    for command in [KUBECTL_CORE, KUBECTL_CALICO, KUBECTL_POLICY_API] {
        named.extend(kubectl_resources(command));
    }
    assert_eq!(named, read, "the kubectl commands name every kind read, and nothing else");
    // The always-served kinds in one command (an unserved kind would fail all of it).
    let always: BTreeSet<(String, String)> =
        KINDS.iter().filter(|k| k.always).map(|k| (k.group.to_string(), k.plural.to_string())).collect();
    assert_eq!(kubectl_resources(KUBECTL_CORE), always);
    // calicoctl: every Calico kind once, namespaced ones across namespaces.
    let calico: BTreeSet<String> =
        KINDS.iter().filter(|k| k.group == "projectcalico.org").map(|k| k.plural.to_string()).collect();
    let global = loop_kinds(CALICOCTL_GLOBAL);
    let namespaced = loop_kinds(CALICOCTL_NAMESPACED);
    assert_eq!(global.iter().chain(&namespaced).cloned().collect::<BTreeSet<_>>(), calico);
    for plural in &namespaced {
        assert!(
            KINDS.iter().any(|k| k.plural == plural.as_str() && k.namespaced && k.group == "projectcalico.org"),
            "{plural}"
        );
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for command in [KUBECTL_CORE, KUBECTL_CALICO, CALICOCTL_GLOBAL, CALICOCTL_NAMESPACED, KUBECTL_POLICY_API] {
        assert!(readme.contains(command), "the README prints the recipe: {command}");
    }
}

/// JSON as YAML (block style, keys sorted, as kubectl prints it).
fn yaml(v: &Value) -> Yaml {
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => n.as_i64().map_or_else(|| Yaml::Real(n.to_string()), Yaml::Integer),
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(a) => Yaml::Array(a.iter().map(yaml).collect()),
        Value::Object(m) => {
            let sorted: std::collections::BTreeMap<&String, &Value> = m.iter().collect();
            Yaml::Hash(sorted.into_iter().map(|(k, v)| (Yaml::String(k.clone()), yaml(v))).collect())
        }
    }
}

fn emit(v: &Value) -> String {
    let mut out = String::new();
    YamlEmitter::new(&mut out).dump(&yaml(v)).unwrap();
    // kubectl starts with the first key; the emitter with a document marker.
    out.trim_start_matches("---\n").to_string() + "\n"
}

/// The object as the API server returns it, with the fields it adds.
fn as_served(mut obj: Value, n: usize) -> Value {
    let applied = obj.to_string();
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let api_version = obj["apiVersion"].clone();
    let meta = obj["metadata"].as_object_mut().unwrap();
    meta.insert("uid".into(), format!("6f1c2a4e-0000-4000-8000-{n:012}").into());
    meta.insert("resourceVersion".into(), (1000 + n).to_string().into());
    meta.insert("creationTimestamp".into(), "2026-11-30T12:00:00Z".into());
    meta.insert("generation".into(), 1.into());
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    annotations["kubectl.kubernetes.io/last-applied-configuration"] = (applied + "\n").into();
    meta.insert(
        "managedFields".into(),
        json!([{"apiVersion": api_version, "fieldsType": "FieldsV1", "manager": "kubectl-client-side-apply",
                "operation": "Update", "time": "2026-11-30T12:00:00Z",
                "fieldsV1": {"f:metadata": {"f:annotations": {".": {}}}, "f:spec": {}}}]),
    );
    match kind.as_str() {
        "Namespace" => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        "Pod" => {
            let spec = &mut obj["spec"];
            for (k, v) in [
                ("dnsPolicy", json!("ClusterFirst")),
                ("restartPolicy", json!("Always")),
                ("schedulerName", json!("default-scheduler")),
                ("securityContext", json!({})),
                ("terminationGracePeriodSeconds", json!(30)),
                ("enableServiceLinks", json!(true)),
            ] {
                spec.as_object_mut().unwrap().entry(k).or_insert(v);
            }
            for c in spec["containers"].as_array_mut().into_iter().flatten() {
                c["imagePullPolicy"] = "IfNotPresent".into();
                c["resources"] = json!({});
                c["terminationMessagePath"] = "/dev/termination-log".into();
                for p in c["ports"].as_array_mut().into_iter().flatten() {
                    p.as_object_mut().unwrap().entry("protocol").or_insert("TCP".into());
                }
            }
            let status = obj.as_object_mut().unwrap().entry("status").or_insert_with(|| json!({}));
            let status = status.as_object_mut().unwrap();
            status.entry("phase").or_insert("Running".into());
            status.insert("qosClass".into(), "BestEffort".into());
            status.insert("startTime".into(), "2026-11-30T12:00:01Z".into());
            status.insert(
                "conditions".into(),
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-30T12:00:05Z"}]),
            );
        }
        "Service" => {
            let spec = obj["spec"].as_object_mut().unwrap();
            spec.entry("sessionAffinity").or_insert("None".into());
            spec.entry("internalTrafficPolicy").or_insert("Cluster".into());
            if spec.get("type").is_none_or(|t| t != "ExternalName") {
                spec.entry("type").or_insert("ClusterIP".into());
                if let Some(ip) = spec.get("clusterIP").cloned() {
                    spec.entry("clusterIPs").or_insert(json!([ip]));
                }
            }
            for p in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                p.as_object_mut().unwrap().entry("protocol").or_insert("TCP".into());
            }
            obj["status"] = json!({"loadBalancer": {}});
        }
        "Node" => {
            obj["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
            obj["status"]["nodeInfo"] =
                json!({"kubeletVersion": "v1.33.1", "containerRuntimeVersion": "containerd://2.1.1"});
        }
        _ => {}
    }
    obj
}

/// kubectl's list: `{apiVersion: v1, items, kind: List, metadata: {resourceVersion: ""}}`.
fn kubectl_list(items: Vec<Value>) -> String {
    emit(&json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}))
}

/// calicoctl's output: one typed list per kind (`NetworkPolicyList`), documents after `---`.
fn calicoctl_lists(items: &[Value]) -> String {
    let kinds: BTreeSet<String> = items.iter().map(|o| o["kind"].as_str().unwrap().to_string()).collect();
    let mut out = String::new();
    for kind in kinds {
        let of: Vec<Value> = items.iter().filter(|o| o["kind"] == kind.as_str()).cloned().collect();
        let list = json!({"apiVersion": "projectcalico.org/v3", "items": of, "kind": format!("{kind}List"),
                          "metadata": {"resourceVersion": "2000"}});
        out += &format!("---\n{}", emit(&list));
    }
    out
}

/// Writes the set's objects as the recipe dumps them: `cluster.yaml`, and `calico.yaml` in
/// kubectl's form (`calicoctl` false) or calicoctl's.
fn dump(set: &Set, into: &Path, calicoctl: bool) {
    let cluster_scoped: BTreeSet<&str> = KINDS.iter().filter(|k| !k.namespaced).map(|k| k.kind).collect();
    let paths: Vec<_> = set.paths.iter().map(|p| set.dir.join(p)).collect();
    let (mut core, mut calico) = (Vec::new(), Vec::new());
    let mut n = 0;
    for source in palisade_load::source::read_paths(&paths).unwrap() {
        for doc in palisade_load::yaml::parse(&source.text).unwrap() {
            let doc = doc.to_json();
            let items = doc["items"].as_array().cloned().unwrap_or_else(|| vec![doc]);
            for mut obj in items {
                let kind = obj["kind"].as_str().unwrap_or_default().to_string();
                if let (Some(ns), true) = (&set.namespace, obj["metadata"]["namespace"].is_null()) {
                    if !cluster_scoped.contains(kind.as_str()) {
                        obj["metadata"]["namespace"] = ns.as_str().into();
                    }
                }
                // A cluster runs a workload's pods; the recipe lists pods, not controllers.
                if ["Deployment", "StatefulSet"].contains(&kind.as_str()) {
                    obj = pod_of(&obj);
                }
                n += 1;
                let served = as_served(obj, n);
                let is_calico = served["apiVersion"].as_str().is_some_and(|a| a.starts_with("projectcalico.org/"));
                if is_calico {
                    calico.push(served)
                } else {
                    core.push(served)
                }
            }
        }
    }
    std::fs::write(into.join("cluster.yaml"), kubectl_list(core)).unwrap();
    let calico_text = if calicoctl { calicoctl_lists(&calico) } else { kubectl_list(calico) };
    std::fs::write(into.join("calico.yaml"), calico_text).unwrap();
}

fn json_of(dir: &Path, args: &[String]) -> Value {
    let out = palisade().current_dir(dir).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut v: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!("{args:?} in {}: {stdout}\n{}", dir.display(), String::from_utf8_lossy(&out.stderr))
    });
    positionless(&mut v);
    v
}

#[test]
fn every_example_dumped_as_kubectl_and_calicoctl_print_it_decides_the_same() {
    let scratch = std::env::temp_dir().join(format!("palisade-dump-recipe-{}", std::process::id()));
    let mut compared = 0;
    for (i, set) in sets().iter().enumerate() {
        let home = scratch.join(i.to_string());
        std::fs::create_dir_all(&home).unwrap();
        let set = &Set { dir: one_replica(&set.dir, &home), ..set.clone() };
        let mut files = set.paths.clone();
        if let Some(ns) = &set.namespace {
            files.extend(["-n".to_string(), ns.clone()]);
        }
        let mut commands: Vec<Vec<String>> = set.checks.clone();
        commands.push(vec!["matrix".into()]);
        commands.push(vec!["lint".into(), "--fail-on".into(), "never".into()]);
        for calicoctl in [false, true] {
            let dumped = home.join(if calicoctl { "calicoctl" } else { "kubectl" });
            std::fs::create_dir_all(&dumped).unwrap();
            dump(set, &dumped, calicoctl);
            let dumps = [dumped.join("cluster.yaml"), dumped.join("calico.yaml")].map(|p| p.display().to_string());
            for command in &commands {
                let json = ["--output".to_string(), "json".to_string()];
                let want = json_of(&set.dir, &[command.clone(), json.to_vec(), files.clone()].concat());
                let got = json_of(&set.dir, &[command.clone(), json.to_vec(), dumps.to_vec()].concat());
                let sorted = |v: Value| match v {
                    // Files order findings by position; the dump's positions are others.
                    Value::Array(mut a) if command[0] == "lint" => {
                        a.sort_by_key(|f| f.to_string());
                        Value::Array(a)
                    }
                    v => v,
                };
                assert_eq!(
                    sorted(got),
                    sorted(want),
                    "{}: {command:?} on the dump ({dumps:?}) vs {files:?}",
                    set.dir.display()
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 80, "{compared} comparisons");
    let _ = std::fs::remove_dir_all(&scratch);
}
