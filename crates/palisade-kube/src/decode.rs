//! API objects to the engine's inputs: stripped ([`crate::strip`]), then decoded and validated
//! by the file loader's own code ([`palisade_load::manifest::decode_json`]).

use kube::api::DynamicObject;
use palisade_core::field::Problem;
use palisade_ingest::Input;
use palisade_load::manifest::{decode_json, Loaded};
use serde_json::Value;

use crate::kinds::Kind;
use crate::strip::strip;

/// Which object: kind, namespace (for namespaced kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: &'static Kind,
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind.kind, self.name),
            None => write!(f, "{} {}", self.kind.kind, self.name),
        }
    }
}

/// An object that decoded and validated as a file's would.
#[derive(Clone)]
pub struct Decoded {
    pub key: ObjectKey,
    /// The engine's input; `None` for a kind the engine does not use yet (the loader counts it
    /// as ignored, as it does for files).
    pub input: Option<Input>,
    /// Warnings (unknown fields of non-policy kinds, say).
    pub warnings: Vec<Problem>,
    /// `metadata.uid`, for Events about the object.
    pub uid: Option<String>,
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded").field("key", &self.key).field("used", &self.input.is_some()).finish()
    }
}

/// An object that does not decode or validate: its errors (naming `Kind ns/name` and the field
/// path) and warnings.
#[derive(Clone, Debug)]
pub struct Refused {
    pub key: ObjectKey,
    pub problems: Vec<Problem>,
    /// `metadata.uid`, for an Event on the object.
    pub uid: Option<String>,
}

/// The key of an API object of `kind`.
pub fn key_of(kind: &'static Kind, obj: &DynamicObject) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: if kind.namespaced { obj.metadata.namespace.clone() } else { None },
        name: obj.metadata.name.clone().unwrap_or_default(),
    }
}

/// The object as JSON with its `kind` and `apiVersion` (list items leave them out) and
/// stripped of what the engine does not read.
pub fn to_json(kind: &Kind, obj: DynamicObject) -> Value {
    let mut value = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut value {
        m.insert("apiVersion".into(), kind.api_version().into());
        m.insert("kind".into(), kind.kind.into());
    }
    strip(&mut value);
    value
}

/// Decodes one API object as the loader decodes a file's, into its loader batch.
pub fn decode_loaded(kind: &'static Kind, obj: DynamicObject) -> Loaded {
    decode_json(&to_json(kind, obj))
}

/// Decodes one API object; `Err` when it has errors.
pub fn decode(kind: &'static Kind, obj: DynamicObject) -> Result<Decoded, Refused> {
    let key = key_of(kind, &obj);
    let uid = obj.metadata.uid.clone();
    let loaded = decode_loaded(kind, obj);
    if loaded.has_errors() {
        return Err(Refused { key, problems: loaded.problems, uid });
    }
    Ok(Decoded { key, input: loaded.inputs.into_iter().next(), warnings: loaded.problems, uid })
}
