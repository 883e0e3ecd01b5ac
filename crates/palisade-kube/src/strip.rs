//! What the engine does not need is dropped before an object is decoded and kept: managed
//! fields, annotations (the engine reads none), and of a Pod everything but what policy sees
//! (node, host network, service account, each container's name and ports, addresses).

use serde_json::{Map, Value};

/// Annotations the engine reads (kept); none today.
pub const ANNOTATIONS_READ: &[&str] = &[];

/// The Pod spec fields the engine reads.
const POD_SPEC: &[&str] = &["nodeName", "hostNetwork", "serviceAccountName", "serviceAccount"];
/// The Pod status fields the engine reads.
const POD_STATUS: &[&str] = &["podIP", "podIPs", "phase"];

fn keep(map: &mut Map<String, Value>, fields: &[&str]) {
    map.retain(|k, _| fields.contains(&k.as_str()));
}

/// Strips one object in place (any kind; Pods the most).
pub fn strip(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(Value::Object(a)) = meta.get_mut("annotations") {
            a.retain(|k, _| ANNOTATIONS_READ.contains(&k.as_str()));
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    if obj["kind"] == "Pod" && obj["apiVersion"] == "v1" {
        strip_pod(obj);
    }
}

fn strip_pod(pod: &mut Value) {
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        let containers = |spec: &Map<String, Value>, key: &str| -> Option<Value> {
            let list = spec.get(key)?.as_array()?;
            let slim = list.iter().map(|c| {
                let mut m = Map::new();
                for f in ["name", "ports", "restartPolicy"] {
                    if let Some(v) = c.get(f) {
                        m.insert(f.into(), v.clone());
                    }
                }
                Value::Object(m)
            });
            Some(Value::Array(slim.collect()))
        };
        let (main, init) = (containers(spec, "containers"), containers(spec, "initContainers"));
        keep(spec, POD_SPEC);
        spec.insert("containers".into(), main.unwrap_or(Value::Array(Vec::new())));
        if let Some(init) = init {
            spec.insert("initContainers".into(), init);
        }
    }
    let terminal = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    if let Some(status) = pod.get_mut("status").and_then(Value::as_object_mut) {
        keep(status, POD_STATUS);
        // A finished pod has no network namespace: its address may already be another pod's.
        if terminal {
            status.remove("podIP");
            status.remove("podIPs");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_keep_what_policy_sees() {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "labels": {"app": "web"}, "annotations": {"x": "y"}, "managedFields": [{}]},
            "spec": {"nodeName": "n1", "volumes": [{}], "containers": [{"name": "c", "image": "i", "env": [], "ports": [{"containerPort": 80, "name": "http"}]}]},
            "status": {"podIP": "10.0.0.1", "conditions": [{}], "containerStatuses": [{}], "phase": "Running"},
        });
        strip(&mut pod);
        assert_eq!(
            pod,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "a", "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http"}]}]},
                "status": {"podIP": "10.0.0.1", "phase": "Running"},
            })
        );
    }

    #[test]
    fn finished_pods_lose_their_addresses() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "j"}, "spec": {"containers": []},
            "status": {"phase": "Succeeded", "podIP": "10.0.0.2", "podIPs": [{"ip": "10.0.0.2"}]}});
        strip(&mut pod);
        assert_eq!(pod["status"], json!({"phase": "Succeeded"}));
    }
}
