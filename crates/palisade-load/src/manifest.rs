//! Turning documents into typed Kubernetes objects (k8s-openapi), with positioned problems.

use std::collections::BTreeMap;
use std::sync::Arc;

use palisade_core::field::{FieldPath, Locate, Location, Problem, Severity};
use palisade_ingest::{Input, Object};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::source::Source;
use crate::yaml::{self, Node};

/// Locates field paths inside one object of one document.
pub struct DocLocator {
    pub file: Arc<str>,
    pub root: Arc<Node>,
    /// Path of the object inside its document (`items[3]` for a List item).
    pub base: FieldPath,
}

impl Locate for DocLocator {
    fn locate(&self, path: &FieldPath) -> Option<Location> {
        let node = self.root.locate(&self.base.join(path));
        Some(Location {
            file: self.file.clone(),
            line: node.pos.line,
            column: node.pos.column,
            offset: node.pos.offset,
            len: node.len,
        })
    }
}

/// Everything read from the sources.
#[derive(Default)]
pub struct Loaded {
    pub inputs: Vec<Input>,
    pub problems: Vec<Problem>,
    /// Objects of kinds the engine does not use, counted by `apiVersion kind`.
    pub ignored: BTreeMap<String, usize>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

/// Decodes every document of every source.
pub fn decode(sources: &[Source]) -> Loaded {
    let mut loaded = Loaded::default();
    for src in sources {
        match yaml::parse(&src.text) {
            Ok(docs) => {
                for doc in docs {
                    let root = Arc::new(doc);
                    let loc =
                        Arc::new(DocLocator { file: src.name.clone(), root: root.clone(), base: FieldPath::root() });
                    decode_object(root.to_json(), loc, &mut loaded);
                }
            }
            Err(e) => loaded.problems.push(Problem {
                severity: Severity::Error,
                object: "YAML".into(),
                path: FieldPath::root(),
                message: format!("cannot parse: {}", e.message),
                help: Some("fix the YAML/JSON syntax; documents are separated by lines of ---".into()),
                location: Some(Location {
                    file: src.name.clone(),
                    line: e.pos.line,
                    column: e.pos.column,
                    offset: e.pos.offset,
                    len: 1,
                }),
            }),
        }
    }
    loaded
}

fn problem(loc: &DocLocator, object: &str, path: FieldPath, sev: Severity, message: String, help: &str) -> Problem {
    let location = loc.locate(&path);
    Problem {
        severity: sev,
        object: object.to_string(),
        path: loc.base.join(&path),
        message,
        help: Some(help.to_string()),
        location,
    }
}

fn decode_object(value: Value, loc: Arc<DocLocator>, out: &mut Loaded) {
    let Value::Object(map) = &value else {
        out.problems.push(problem(
            &loc,
            "document",
            FieldPath::root(),
            Severity::Error,
            "a manifest must be a mapping with apiVersion and kind".into(),
            "each YAML document is one Kubernetes object",
        ));
        return;
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    let api = map.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    if kind.is_empty() || api.is_empty() {
        let missing = if kind.is_empty() { "kind" } else { "apiVersion" };
        out.problems.push(problem(
            &loc,
            "document",
            FieldPath::root(),
            Severity::Error,
            format!("object has no {missing}"),
            "every object needs apiVersion and kind, e.g. apiVersion: networking.k8s.io/v1, kind: NetworkPolicy",
        ));
        return;
    }
    if kind == "List" || kind.ends_with("List") && map.contains_key("items") {
        // A typed list (`PodList`, as the API serves it) leaves kind out of its items.
        let implied = kind.strip_suffix("List").filter(|k| !k.is_empty()).map(|k| (k.to_string(), api.clone()));
        decode_list(map.get("items"), &loc, implied.as_ref(), out);
        return;
    }
    if api.starts_with("projectcalico.org/") || api.starts_with("crd.projectcalico.org/") {
        decode_calico(value, &api, &kind, loc, out);
        return;
    }
    let Some(expected) = api_version_of(&kind) else {
        *out.ignored.entry(format!("{api} {kind}")).or_insert(0) += 1;
        return;
    };
    if api != expected {
        let msg = format!("{kind} is served as apiVersion {expected}, not {api}");
        out.problems.push(problem(
            &loc,
            &object_label(&value, &kind),
            FieldPath::root().key("apiVersion"),
            Severity::Error,
            msg,
            "change apiVersion; older versions were removed from Kubernetes",
        ));
        return;
    }
    let object = match kind.as_str() {
        "Namespace" => typed(value, &loc, &kind, out).map(Object::Namespace),
        "Pod" => typed(value, &loc, &kind, out).map(Object::Pod),
        "Deployment" => typed(value, &loc, &kind, out).map(Object::Deployment),
        "ReplicaSet" => typed(value, &loc, &kind, out).map(Object::ReplicaSet),
        "StatefulSet" => typed(value, &loc, &kind, out).map(Object::StatefulSet),
        "DaemonSet" => typed(value, &loc, &kind, out).map(Object::DaemonSet),
        "Job" => typed(value, &loc, &kind, out).map(Object::Job),
        "CronJob" => typed(value, &loc, &kind, out).map(Object::CronJob),
        "Service" => typed(value, &loc, &kind, out).map(Object::Service),
        "EndpointSlice" => typed(value, &loc, &kind, out).map(Object::EndpointSlice),
        "Node" => typed(value, &loc, &kind, out).map(Object::Node),
        "NetworkPolicy" => typed(value, &loc, &kind, out).map(Object::NetworkPolicy),
        "ServiceAccount" => typed(value, &loc, &kind, out).map(Object::ServiceAccount),
        _ => None,
    };
    if let Some(object) = object {
        out.inputs.push(Input { object, locate: loc });
    }
}

/// `implied`: the (kind, apiVersion) of the items of a typed list, for items that omit them.
fn decode_list(items: Option<&Value>, loc: &Arc<DocLocator>, implied: Option<&(String, String)>, out: &mut Loaded) {
    let Some(Value::Array(items)) = items else { return };
    for (i, item) in items.iter().enumerate() {
        let base = loc.base.key("items").index(i);
        let item_loc = Arc::new(DocLocator { file: loc.file.clone(), root: loc.root.clone(), base });
        let mut item = item.clone();
        if let (Some((kind, api)), Value::Object(m)) = (implied, &mut item) {
            m.entry("kind").or_insert_with(|| kind.clone().into());
            m.entry("apiVersion").or_insert_with(|| api.clone().into());
        }
        decode_object(item, item_loc, out);
    }
}

/// Calico's kinds, all served at projectcalico.org/v3.
fn decode_calico(value: Value, api: &str, kind: &str, loc: Arc<DocLocator>, out: &mut Loaded) {
    const CALICO_KINDS: &[&str] = &[
        "NetworkPolicy",
        "GlobalNetworkPolicy",
        "StagedNetworkPolicy",
        "StagedGlobalNetworkPolicy",
        "StagedKubernetesNetworkPolicy",
        "Tier",
        "NetworkSet",
        "GlobalNetworkSet",
        "HostEndpoint",
    ];
    if !CALICO_KINDS.contains(&kind) {
        *out.ignored.entry(format!("{api} {kind}")).or_insert(0) += 1;
        return;
    }
    let mut value = value;
    if api == crate::crd::STORAGE_API {
        if let Err(e) = crate::crd::to_v3(&mut value, kind) {
            out.problems.push(problem(&loc, &object_label(&value, kind), e.path, Severity::Error, e.message, &e.help));
            return;
        }
    } else if api != "projectcalico.org/v3" {
        let msg = format!("Calico {kind} is written as apiVersion projectcalico.org/v3, not {api}");
        out.problems.push(problem(
            &loc,
            &object_label(&value, kind),
            FieldPath::root().key("apiVersion"),
            Severity::Error,
            msg,
            "Calico objects are projectcalico.org/v3 (or crd.projectcalico.org/v1, Calico's storage form, as kubectl prints it)",
        ));
        return;
    }
    let label = format!("Calico {kind}");
    let object = match kind {
        "NetworkPolicy" => typed(value, &loc, &label, out).map(Object::CalicoNetworkPolicy),
        "GlobalNetworkPolicy" => typed(value, &loc, kind, out).map(Object::CalicoGlobalNetworkPolicy),
        "StagedNetworkPolicy" => typed(value, &loc, kind, out).map(Object::CalicoStagedNetworkPolicy),
        "StagedGlobalNetworkPolicy" => typed(value, &loc, kind, out).map(Object::CalicoStagedGlobalNetworkPolicy),
        "StagedKubernetesNetworkPolicy" => {
            typed(value, &loc, kind, out).map(Object::CalicoStagedKubernetesNetworkPolicy)
        }
        "Tier" => typed(value, &loc, kind, out).map(Object::CalicoTier),
        "NetworkSet" => typed(value, &loc, kind, out).map(Object::CalicoNetworkSet),
        "GlobalNetworkSet" => typed(value, &loc, kind, out).map(Object::CalicoGlobalNetworkSet),
        _ => typed(value, &loc, kind, out).map(Object::CalicoHostEndpoint),
    };
    if let Some(object) = object {
        out.inputs.push(Input { object, locate: loc });
    }
}

/// The apiVersion each used kind is served at.
pub fn api_version_of(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Namespace" | "Pod" | "Service" | "Node" | "ServiceAccount" => "v1",
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        "EndpointSlice" => "discovery.k8s.io/v1",
        "NetworkPolicy" => "networking.k8s.io/v1",
        _ => return None,
    })
}

const CALICO_STRICT: &[&str] = &["Tier", "NetworkSet", "GlobalNetworkSet", "HostEndpoint"];

fn typed<T: DeserializeOwned + Serialize>(value: Value, loc: &DocLocator, kind: &str, out: &mut Loaded) -> Option<T> {
    let label = object_label(&value, kind);
    let kind = label.as_str();
    let mut value = value;
    let obj: T = match decode_type_directed(&mut value, loc) {
        Ok(v) => v,
        Err(e) => {
            let path = field_path(e.path());
            let msg = format!("{path}: {}", e.inner());
            out.problems.push(problem(loc, kind, path, Severity::Error, msg, "the value does not have the type the Kubernetes API defines for this field (numbers unquoted, strings quoted when they look like numbers or booleans)"));
            return None;
        }
    };
    // kubectl validates strictly: a misspelt field would otherwise vanish silently.
    let echoed = serde_json::to_value(&obj).unwrap_or(Value::Null);
    let mut unknown = Vec::new();
    unknown_fields(&value, &echoed, &FieldPath::root(), &mut unknown);
    // For policies and Calico objects a dropped field could change verdicts: reject.
    let strict =
        kind.contains("Policy") || kind.starts_with("Calico") || CALICO_STRICT.iter().any(|k| kind.starts_with(k));
    let severity = if strict { Severity::Error } else { Severity::Warning };
    for path in unknown {
        // `kubectl get -o yaml` from 1.24-1.27 clusters writes the alpha NetworkPolicy status
        // back: read-only, it cannot change a verdict.
        if path.0 == [palisade_core::field::Seg::Key("status".into())] {
            let msg = "status is read-only and ignored (an alpha NetworkPolicy field of Kubernetes 1.24-1.27)".into();
            out.problems.push(problem(
                loc,
                kind,
                path,
                Severity::Warning,
                msg,
                "remove it, or keep it: it changes nothing",
            ));
            continue;
        }
        let field = path.0.last().map(|s| match s {
            palisade_core::field::Seg::Key(k) => k.clone(),
            palisade_core::field::Seg::Index(i) => i.to_string(),
        });
        let msg = format!("{path}: unknown field {:?}", field.unwrap_or_default());
        out.problems.push(problem(loc, kind, path, severity, msg, "check the spelling and indentation against the Kubernetes API reference (kubectl explain); unknown fields are rejected by kubectl's strict validation"));
    }
    Some(obj)
}

/// Keys present (non-null) in the input but absent after a decode/encode round trip.
fn unknown_fields(input: &Value, echoed: &Value, path: &FieldPath, out: &mut Vec<FieldPath>) {
    match (input, echoed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                match b.get(k) {
                    None => out.push(path.key(k)),
                    Some(e) => unknown_fields(v, e, &path.key(k), out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                unknown_fields(x, y, &path.index(i), out);
            }
        }
        _ => {}
    }
}

/// `Kind ns/name` from raw metadata, for messages about objects that did not decode.
fn object_label(value: &Value, kind: &str) -> String {
    let meta = &value["metadata"];
    let name = meta["name"].as_str().unwrap_or("?");
    match meta["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Decodes like sigs.k8s.io/yaml: a plain scalar (`y`, `80`, `1.0`) read into a string field
/// keeps its text. On each "expected a string" error at a plain scalar we substitute the text
/// and retry; every retry fixes one scalar, so the loop is bounded by the document's size.
fn decode_type_directed<T: DeserializeOwned>(
    value: &mut Value,
    loc: &DocLocator,
) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
    loop {
        let err = match serde_path_to_error::deserialize::<_, T>(&*value) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !err.inner().to_string().contains("expected a string") {
            return Err(err);
        }
        let path = field_path(err.path());
        let node = loc.root.locate(&loc.base.join(&path));
        let text = match &node.kind {
            yaml::Kind::Scalar { text, plain: true, .. } => text.clone(),
            _ => return Err(err),
        };
        match pointer_mut(value, &path) {
            Some(slot) if !slot.is_string() && !slot.is_null() => *slot = Value::String(text),
            _ => return Err(err),
        }
    }
}

fn pointer_mut<'v>(value: &'v mut Value, path: &FieldPath) -> Option<&'v mut Value> {
    let mut v = value;
    for seg in &path.0 {
        v = match seg {
            palisade_core::field::Seg::Key(k) => v.get_mut(k.as_str())?,
            palisade_core::field::Seg::Index(i) => v.get_mut(*i)?,
        };
    }
    Some(v)
}

fn field_path(p: &serde_path_to_error::Path) -> FieldPath {
    use serde_path_to_error::Segment;
    let mut out = FieldPath::root();
    for seg in p.iter() {
        out = match seg {
            Segment::Seq { index } => out.index(*index),
            Segment::Map { key } => out.key(key),
            Segment::Enum { variant } => out.key(variant),
            Segment::Unknown => out,
        };
    }
    out
}

/// Decodes one object given as JSON (an API server's list item or watch event, with `kind` and
/// `apiVersion`) with exactly the checks a file's object gets. Its problems name the object
/// (`Kind ns/name`) and the field path; there is no file position. A `List` is decoded item by
/// item; kinds the engine does not use are counted in `ignored`.
pub fn decode_json(value: Value) -> Loaded {
    let root = Arc::new(crate::object::tree(&value));
    let loc = Arc::new(DocLocator { file: "".into(), root, base: FieldPath::root() });
    let mut out = Loaded::default();
    decode_object(value, loc, &mut out);
    crate::object::unplace(&mut out);
    out
}
