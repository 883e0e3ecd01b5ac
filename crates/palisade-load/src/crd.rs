//! Calico objects in their storage form, `crd.projectcalico.org/v1`: what `kubectl get
//! globalnetworkpolicies.crd.projectcalico.org -o yaml` prints on a cluster without the Calico
//! API server. They are read as the `projectcalico.org/v3` objects they store, as Calico's own
//! backend does (libcalico-go `backend/k8s/resources`, `ConvertK8sResourceToCalicoResource`):
//! - the `projectcalico.org/metadata` annotation (Calico 3.30+) holds the v3 metadata as JSON:
//!   its labels and annotations are merged over the object's own, and for policies its name is
//!   the policy's name; the annotation itself goes;
//! - without it, a policy stored in the default tier carries the backend's `default.` prefix,
//!   which is not part of its name (`determinePolicyName`); other tiers' policies were named
//!   `<tier>.<name>` in v3 as well, so their name stays;
//! - the spec is the v3 spec.
//!
//! The same object given in both forms is an error (see [`both_forms`]): one is the other's
//! storage, and deciding it twice would hide which one the user meant to change.

use palisade_core::field::{FieldPath, Location, Problem, Severity};
use palisade_ingest::{Input, Object};
use serde_json::{Map, Value};

use crate::decode::{decode, State, ALIAS_HELP};
use crate::tree::{Entry, Kind, Node, Span};

/// Calico's storage group and version.
pub const STORAGE_API: &str = "crd.projectcalico.org/v1";
/// Where Calico 3.30+ keeps an object's v3 metadata.
pub const METADATA_ANNOTATION: &str = "projectcalico.org/metadata";
/// Palisade's note on objects read from the storage form (for [`both_forms`]).
const READ_FROM: &str = "palisade.dev/read-from";

/// Kinds whose stored name carries the tier (`default.<name>`).
const TIERED: &[&str] = &["NetworkPolicy", "GlobalNetworkPolicy", "StagedNetworkPolicy", "StagedGlobalNetworkPolicy"];

/// Why a stored object cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CrdError {
    pub path: FieldPath,
    pub message: String,
    pub help: String,
}

/// Rewrites a `crd.projectcalico.org/v1` object of `kind` into its `projectcalico.org/v3` form.
pub fn to_v3(value: &mut Value, kind: &str) -> Result<(), CrdError> {
    let Some(object) = value.as_object_mut() else { return Ok(()) };
    object.insert("apiVersion".into(), "projectcalico.org/v3".into());
    let tier = object.get("spec").and_then(|s| s.get("tier")).and_then(Value::as_str).unwrap_or("").to_string();
    let meta = object.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else { return Ok(()) };
    let stored = take_stored_metadata(meta)?;
    for field in ["labels", "annotations"] {
        if let Some(Value::Object(extra)) = stored.get(field) {
            let own = meta.entry(field).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(own) = own {
                own.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    if TIERED.contains(&kind) {
        let name = match stored.get("name").and_then(Value::as_str) {
            Some(n) => Some(n.to_string()),
            None => meta.get("name").and_then(Value::as_str).map(|n| v3_name(n, &tier)),
        };
        if let Some(n) = name {
            meta.insert("name".into(), n.into());
        }
    }
    let notes = meta.entry("annotations").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(notes) = notes {
        notes.insert(READ_FROM.into(), STORAGE_API.into());
    }
    Ok(())
}

/// [`to_v3`] on a parsed document: the object as its v3 form, its spec (and every other field)
/// keeping the positions it was written at; the rewritten `apiVersion` and `metadata` point at
/// where those were written. Only `metadata` and `spec.tier` are read, through the decoder and
/// its alias bound (`state`, the document's): an alias bomb anywhere is refused as it is in
/// any other object, never expanded here.
pub fn tree_to_v3(node: &Node, kind: &str, state: &State) -> Result<Node, CrdError> {
    let Some(entries) = node.entries() else { return Ok(node.clone()) };
    let mut value = Map::new();
    if let Some(meta) = node.get("metadata") {
        let (meta, _) = decode::<Value>(meta, state).map_err(|e| {
            let alias = State::is_alias_error(&e.message);
            CrdError {
                path: FieldPath::root().key("metadata").join(&e.path),
                message: e.message,
                help: if alias {
                    ALIAS_HELP
                } else {
                    "metadata holds the object's name, namespace, labels and annotations"
                }
                .into(),
            }
        })?;
        value.insert("metadata".into(), meta);
    }
    if let Some(tier) = node.get("spec").and_then(|s| s.get("tier")).and_then(Node::as_str) {
        value.insert("spec".into(), serde_json::json!({ "tier": tier }));
    }
    let mut value = Value::Object(value);
    to_v3(&mut value, kind)?;
    let mut entries: Vec<Entry> = entries.to_vec();
    for field in ["apiVersion", "metadata"] {
        let new = &value[field];
        match entries.iter_mut().find(|e| &*e.key == field) {
            Some(e) => e.value = from_json(new, e.value.at),
            None => entries.push(Entry { key: field.into(), key_at: node.at, value: from_json(new, node.at) }),
        }
    }
    Ok(Node { kind: Kind::Map(entries.into_boxed_slice()), at: node.at })
}

/// A tree of a JSON value, every node placed at `at`.
fn from_json(v: &Value, at: Span) -> Node {
    let kind = match v {
        Value::Null => Kind::Null,
        Value::Bool(b) => Kind::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Kind::Int(i),
            (None, Some(u)) => Kind::Uint(u),
            _ => Kind::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Kind::Str(s.as_str().into()),
        Value::Array(a) => Kind::Seq(a.iter().map(|x| from_json(x, at)).collect()),
        Value::Object(m) => Kind::Map(
            m.iter().map(|(k, x)| Entry { key: k.as_str().into(), key_at: at, value: from_json(x, at) }).collect(),
        ),
    };
    Node { kind, at }
}

/// The v3 metadata the annotation holds (empty when there is none); removes the annotation.
fn take_stored_metadata(meta: &mut Map<String, Value>) -> Result<Map<String, Value>, CrdError> {
    let Some(Value::Object(annotations)) = meta.get_mut("annotations") else { return Ok(Map::new()) };
    let Some(text) = annotations.remove(METADATA_ANNOTATION) else { return Ok(Map::new()) };
    let path = FieldPath::root().key("metadata").key("annotations").key(METADATA_ANNOTATION);
    let bad = |why: String| CrdError {
        path: path.clone(),
        message: format!("{METADATA_ANNOTATION} is not the JSON object metadata Calico stores: {why}"),
        help: "Calico writes this annotation itself; take the object as kubectl prints it, or remove the annotation"
            .into(),
    };
    let text = text.as_str().ok_or_else(|| bad("not a string".into()))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad("not an object".into())),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// A policy's v3 name from its stored name when no annotation gives it: the default tier's
/// `default.` prefix is the backend's, not the policy's.
fn v3_name(stored: &str, tier: &str) -> String {
    match tier {
        "" | "default" => stored.strip_prefix("default.").unwrap_or(stored).to_string(),
        _ => stored.to_string(),
    }
}

/// Errors for objects given both as `projectcalico.org/v3` and in their storage form; the
/// stored copies are taken out of `inputs` so that nothing else reports them again.
pub fn both_forms(inputs: &mut Vec<Input>) -> Vec<Problem> {
    let key = |o: &Object| {
        let m = o.metadata();
        (o.kind(), m.namespace.clone(), m.name.clone())
    };
    let stored =
        |o: &Object| o.metadata().annotations.as_ref().and_then(|a| a.get(READ_FROM)).is_some_and(|v| v == STORAGE_API);
    let mut problems = Vec::new();
    let mut drop = Vec::new();
    for (i, input) in inputs.iter().enumerate().filter(|(_, i)| stored(&i.object)) {
        let twin = inputs.iter().find(|o| !stored(&o.object) && key(&o.object) == key(&input.object));
        let Some(twin) = twin else { continue };
        let (kind, ns, name) = key(&input.object);
        let label = match ns {
            Some(ns) => format!("{kind} {ns}/{}", name.unwrap_or_default()),
            None => format!("{kind} {}", name.unwrap_or_default()),
        };
        let at = |i: &Input| i.locate.locate(&FieldPath::root()).map(|l: Location| l.to_string());
        let path = FieldPath::root().key("apiVersion");
        problems.push(Problem {
            severity: Severity::Error,
            object: label.clone(),
            path: path.clone(),
            message: format!(
                "given twice: as projectcalico.org/v3 ({}) and in Calico's storage form {STORAGE_API} (here); one is the other's storage",
                at(twin).unwrap_or_else(|| "elsewhere".into())
            ),
            help: Some("pass one form only: the projectcalico.org/v3 object, or the kubectl dump of the CRD".into()),
            location: input.locate.locate(&path),
        });
        drop.push(i);
    }
    for i in drop.into_iter().rev() {
        inputs.remove(i);
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_names_lose_the_default_tier_prefix_unless_the_annotation_names_them() {
        let mut old = json!({"apiVersion": STORAGE_API, "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "default.deny", "labels": {"a": "1"}}, "spec": {}});
        to_v3(&mut old, "GlobalNetworkPolicy").unwrap();
        assert_eq!(old["metadata"]["name"], "deny");
        assert_eq!(old["apiVersion"], "projectcalico.org/v3");
        let mut tiered =
            json!({"kind": "NetworkPolicy", "metadata": {"name": "security.dns"}, "spec": {"tier": "security"}});
        to_v3(&mut tiered, "NetworkPolicy").unwrap();
        assert_eq!(tiered["metadata"]["name"], "security.dns");
        let stored = r#"{"name":"dns","labels":{"team":"net"},"annotations":{"note":"x"}}"#;
        let mut new = json!({"kind": "NetworkPolicy",
            "metadata": {"name": "security.dns", "annotations": {METADATA_ANNOTATION: stored}},
            "spec": {"tier": "security"}});
        to_v3(&mut new, "NetworkPolicy").unwrap();
        assert_eq!(new["metadata"]["name"], "dns");
        assert_eq!(new["metadata"]["labels"]["team"], "net");
        assert_eq!(new["metadata"]["annotations"]["note"], "x");
        assert!(new["metadata"]["annotations"].get(METADATA_ANNOTATION).is_none());
        // Other kinds keep their name; labels still come from the annotation.
        let mut set = json!({"kind": "GlobalNetworkSet",
            "metadata": {"name": "default.nets", "annotations": {METADATA_ANNOTATION: r#"{"labels":{"k":"v"}}"#}}});
        to_v3(&mut set, "GlobalNetworkSet").unwrap();
        assert_eq!(set["metadata"]["name"], "default.nets");
        assert_eq!(set["metadata"]["labels"]["k"], "v");
    }

    /// Ten levels of ten aliases: 10^10 values if anything expanded them.
    fn bomb(metadata: &str, spec: &str) -> String {
        let mut text =
            format!("apiVersion: {STORAGE_API}\nkind: GlobalNetworkPolicy\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = format!("*a{}", i - 1);
            text += &format!("a{i}: &a{i} [{}]\n", [p.as_str(); 10].join(", "));
        }
        text + &format!("metadata: {{name: default.p{metadata}}}\nspec: {{tier: default{spec}}}\n")
    }

    #[test]
    fn an_alias_bomb_is_refused_by_the_decoders_bound_never_expanded() {
        let doc = &crate::yaml::parse(&bomb("", ", bomb: *a9")).unwrap()[0];
        let v3 = tree_to_v3(doc, "GlobalNetworkPolicy", &State::default()).unwrap();
        assert_eq!(v3.get("metadata").and_then(|m| m.get("name")).and_then(Node::as_str), Some("p"));
        assert_eq!(v3.get("apiVersion").and_then(Node::as_str), Some("projectcalico.org/v3"));
        let doc = &crate::yaml::parse(&bomb(", bomb: *a9", "")).unwrap()[0];
        let e = tree_to_v3(doc, "GlobalNetworkPolicy", &State::default()).unwrap_err();
        assert!(State::is_alias_error(&e.message), "{e}");
        assert_eq!(e.path.to_string(), "metadata.bomb");
        assert_eq!(e.help, ALIAS_HELP);
    }

    #[test]
    fn a_broken_metadata_annotation_is_an_error() {
        let mut v =
            json!({"kind": "NetworkPolicy", "metadata": {"name": "x", "annotations": {METADATA_ANNOTATION: "{"}}});
        let e = to_v3(&mut v, "NetworkPolicy").unwrap_err();
        assert!(e.message.contains("not the JSON object metadata"), "{e}");
    }
}
