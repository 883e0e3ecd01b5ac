//! Turning documents into typed Kubernetes objects (k8s-openapi), with positioned problems.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use palisade_core::field::{FieldPath, Locate, Location, Nowhere, Problem, Severity};
use palisade_ingest::{Input, Object};
use serde::de::DeserializeOwned;

use crate::decode::State;
use crate::source::Source;
use crate::tree::{Node, ParseError, Span};
use crate::{json, text, yaml};

/// A source's documents, parsed again only when a position inside one is asked for (a problem
/// found after decoding): the trees are dropped once their objects are decoded.
pub struct Positions {
    text: Arc<str>,
    docs: OnceLock<Vec<Node>>,
}

impl Positions {
    fn doc(&self, i: usize) -> Option<&Node> {
        self.docs.get_or_init(|| parse_source(&self.text).unwrap_or_default()).get(i)
    }
}

/// Locates field paths inside one object of one document.
pub struct DocLocator {
    pub file: Arc<str>,
    positions: Arc<Positions>,
    /// Which (non-empty) document of the source.
    doc: usize,
    /// Path of the object inside its document (`items[3]` for a List item).
    pub base: FieldPath,
    /// Where the object starts: asked for every object, so kept.
    root: Span,
}

impl DocLocator {
    fn location(&self, at: Span) -> Location {
        Location {
            file: self.file.clone(),
            line: at.line as usize,
            column: at.column as usize,
            offset: at.offset as usize,
            len: at.len as usize,
        }
    }

    fn item(&self, i: usize, item: &Node) -> DocLocator {
        DocLocator {
            file: self.file.clone(),
            positions: self.positions.clone(),
            doc: self.doc,
            base: self.base.key("items").index(i),
            root: item.at,
        }
    }
}

impl Locate for DocLocator {
    fn locate(&self, path: &FieldPath) -> Option<Location> {
        if path.0.is_empty() {
            return Some(self.location(self.root));
        }
        let at = self.positions.doc(self.doc).map_or(self.root, |d| d.locate(&self.base.join(path)));
        Some(self.location(at))
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
        match parse_source(&src.text) {
            Ok(docs) => {
                let positions = Arc::new(Positions { text: src.text.clone(), docs: OnceLock::new() });
                for (i, doc) in docs.into_iter().enumerate() {
                    let loc = DocLocator {
                        file: src.name.clone(),
                        positions: positions.clone(),
                        doc: i,
                        base: FieldPath::root(),
                        root: doc.at,
                    };
                    let state = State::default();
                    decode_object(&doc, Arc::new(loc), None, &state, &mut loaded);
                }
            }
            Err((e, object, help)) => loaded.problems.push(Problem {
                severity: Severity::Error,
                object: object.into(),
                path: FieldPath::root(),
                message: format!("cannot parse: {}", e.message),
                help: Some(help.into()),
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

/// Why a source could not be parsed: the error, what was being read and what helps.
type Unparsed = (ParseError, &'static str, &'static str);

/// Checks the characters, then parses as kubectl would: a JSON stream when the text starts
/// with `{`, else YAML.
fn parse_source(src: &str) -> Result<Vec<Node>, Unparsed> {
    if let Err(f) = text::check(src) {
        let (line, column) = text::line_column(src, f.offset);
        let pos = crate::tree::Pos { line, column, offset: f.offset };
        let help = "manifests are UTF-8 text without control characters (kubectl refuses them too): remove it, or write it as an escape inside a double-quoted string if it is meant";
        return Err((ParseError { pos, message: f.message }, "text", help));
    }
    if json::is_json(src) {
        let help = "a file that starts with { is read as JSON, as kubectl reads it: strict JSON, without comments, trailing commas, single quotes or NaN";
        json::parse(src).map_err(|e| (e, "JSON", help))
    } else {
        yaml::parse(src).map_err(|e| (e, "YAML", "fix the YAML syntax; documents are separated by lines of ---"))
    }
}

/// A problem at `path` of the object `node` (its tree still at hand while decoding).
fn problem(
    loc: &DocLocator,
    node: &Node,
    object: &str,
    path: FieldPath,
    sev: Severity,
    message: String,
    help: &str,
) -> Problem {
    Problem {
        severity: sev,
        object: object.to_string(),
        location: Some(loc.location(node.locate(&path))),
        path: loc.base.join(&path),
        message,
        help: Some(help.to_string()),
    }
}

/// `implied`: the (kind, apiVersion) of the items of a typed list, for items that omit them.
fn decode_object(node: &Node, loc: Arc<DocLocator>, implied: Option<(&str, &str)>, state: &State, out: &mut Loaded) {
    if node.entries().is_none() {
        out.problems.push(problem(
            &loc,
            node,
            "document",
            FieldPath::root(),
            Severity::Error,
            "a manifest must be a mapping with apiVersion and kind".into(),
            "each YAML document is one Kubernetes object",
        ));
        return;
    }
    let field = |name: &str, implied: Option<&str>| match node.get(name) {
        Some(v) => v.as_str().unwrap_or_default().to_string(),
        None => implied.unwrap_or_default().to_string(),
    };
    let kind = field("kind", implied.map(|i| i.0));
    let api = field("apiVersion", implied.map(|i| i.1));
    if kind.is_empty() || api.is_empty() {
        let missing = if kind.is_empty() { "kind" } else { "apiVersion" };
        out.problems.push(problem(
            &loc,
            node,
            "document",
            FieldPath::root(),
            Severity::Error,
            format!("object has no {missing} (or it is not a string)"),
            "every object needs apiVersion and kind, e.g. apiVersion: networking.k8s.io/v1, kind: NetworkPolicy",
        ));
        return;
    }
    if kind == "List" || kind.ends_with("List") && node.get("items").is_some() {
        // A typed list (`PodList`, as the API serves it) leaves kind out of its items.
        let implied = kind.strip_suffix("List").filter(|k| !k.is_empty()).map(|k| (k, api.as_str()));
        decode_list(node, &loc, implied, state, out);
        return;
    }
    if api.starts_with("projectcalico.org/") || api.starts_with("crd.projectcalico.org/") {
        decode_calico(node, &api, &kind, loc, state, out);
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
            node,
            &object_label(node, &kind),
            FieldPath::root().key("apiVersion"),
            Severity::Error,
            msg,
            "change apiVersion; older versions were removed from Kubernetes",
        ));
        return;
    }
    let cx = Typed { node, loc: &loc, kind: &kind, state };
    let object = match kind.as_str() {
        "Namespace" => cx.decode(out).map(Object::Namespace),
        "Pod" => cx.decode(out).map(Object::Pod),
        "Deployment" => cx.decode(out).map(Object::Deployment),
        "ReplicaSet" => cx.decode(out).map(Object::ReplicaSet),
        "StatefulSet" => cx.decode(out).map(Object::StatefulSet),
        "DaemonSet" => cx.decode(out).map(Object::DaemonSet),
        "Job" => cx.decode(out).map(Object::Job),
        "CronJob" => cx.decode(out).map(Object::CronJob),
        "Service" => cx.decode(out).map(Object::Service),
        "EndpointSlice" => cx.decode(out).map(Object::EndpointSlice),
        "Node" => cx.decode(out).map(Object::Node),
        "NetworkPolicy" => cx.decode(out).map(Object::NetworkPolicy),
        "ServiceAccount" => cx.decode(out).map(Object::ServiceAccount),
        _ => None,
    };
    if let Some(object) = object {
        out.inputs.push(Input { object, locate: loc });
    }
}

fn decode_list(list: &Node, loc: &Arc<DocLocator>, implied: Option<(&str, &str)>, state: &State, out: &mut Loaded) {
    let Some(items) = list.get("items").and_then(Node::items) else { return };
    for (i, item) in items.iter().enumerate() {
        decode_object(item, Arc::new(loc.item(i, item)), implied, state, out);
    }
}

/// Calico's kinds, all served at projectcalico.org/v3.
fn decode_calico(node: &Node, api: &str, kind: &str, loc: Arc<DocLocator>, state: &State, out: &mut Loaded) {
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
    let stored;
    let node = if api == crate::crd::STORAGE_API {
        match crate::crd::tree_to_v3(node, kind) {
            Ok(v3) => {
                stored = v3;
                &stored
            }
            Err(e) => {
                let label = object_label(node, kind);
                out.problems.push(problem(&loc, node, &label, e.path, Severity::Error, e.message, &e.help));
                return;
            }
        }
    } else {
        node
    };
    if api != crate::crd::STORAGE_API && api != "projectcalico.org/v3" {
        let msg = format!("Calico {kind} is written as apiVersion projectcalico.org/v3, not {api}");
        out.problems.push(problem(
            &loc,
            node,
            &object_label(node, kind),
            FieldPath::root().key("apiVersion"),
            Severity::Error,
            msg,
            "Calico objects are projectcalico.org/v3 (or crd.projectcalico.org/v1, Calico's storage form, as kubectl prints it)",
        ));
        return;
    }
    let label = format!("Calico {kind}");
    let cx = Typed { node, loc: &loc, kind, state };
    let object = match kind {
        "NetworkPolicy" => Typed { kind: &label, ..cx }.decode(out).map(Object::CalicoNetworkPolicy),
        "GlobalNetworkPolicy" => cx.decode(out).map(Object::CalicoGlobalNetworkPolicy),
        "StagedNetworkPolicy" => cx.decode(out).map(Object::CalicoStagedNetworkPolicy),
        "StagedGlobalNetworkPolicy" => cx.decode(out).map(Object::CalicoStagedGlobalNetworkPolicy),
        "StagedKubernetesNetworkPolicy" => cx.decode(out).map(Object::CalicoStagedKubernetesNetworkPolicy),
        "Tier" => cx.decode(out).map(Object::CalicoTier),
        "NetworkSet" => cx.decode(out).map(Object::CalicoNetworkSet),
        "GlobalNetworkSet" => cx.decode(out).map(Object::CalicoGlobalNetworkSet),
        _ => cx.decode(out).map(Object::CalicoHostEndpoint),
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

/// One object to decode into its type.
#[derive(Clone, Copy)]
struct Typed<'a> {
    node: &'a Node,
    loc: &'a DocLocator,
    kind: &'a str,
    state: &'a State,
}

impl Typed<'_> {
    fn decode<T: DeserializeOwned>(self, out: &mut Loaded) -> Option<T> {
        let Typed { node, loc, kind, state } = self;
        let label = object_label(node, kind);
        let kind = label.as_str();
        let (obj, unknown) = match crate::decode::decode::<T>(node, state) {
            Ok(v) => v,
            Err(e) => {
                let help = if State::is_alias_error(&e.message) {
                    "YAML aliases (*name) may repeat a value, not multiply the document: write the values out"
                } else {
                    "the value does not have the type the Kubernetes API defines for this field (numbers unquoted; strings quoted when they look like numbers or booleans, e.g. \"1\", \"yes\"; a list or map never stands for a string)"
                };
                let msg = format!("{}: {}", e.path, e.message);
                out.problems.push(problem(loc, node, kind, e.path, Severity::Error, msg, help));
                return None;
            }
        };
        // For policies and Calico objects a dropped field could change verdicts: reject.
        let strict =
            kind.contains("Policy") || kind.starts_with("Calico") || CALICO_STRICT.iter().any(|k| kind.starts_with(k));
        let severity = if strict { Severity::Error } else { Severity::Warning };
        for crate::decode::Unknown { path, known } in unknown {
            // `kubectl get -o yaml` from 1.24-1.27 clusters writes the alpha NetworkPolicy status
            // back: read-only, it cannot change a verdict.
            if path.0 == [palisade_core::field::Seg::Key("status".into())] {
                let msg =
                    "status is read-only and ignored (an alpha NetworkPolicy field of Kubernetes 1.24-1.27)".into();
                out.problems.push(problem(
                    loc,
                    node,
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
            let field = field.unwrap_or_default();
            let near = crate::suggestion::closest(&field, known.iter().copied());
            let near: Vec<String> = near.iter().map(|n| format!("{n:?}")).collect();
            let msg = format!("{path}: unknown field {field:?}{}", crate::suggestion::did_you_mean(&near));
            let mut p = problem(loc, node, kind, path.clone(), severity, msg, "check the spelling and indentation against the Kubernetes API reference (kubectl explain); unknown fields are rejected by kubectl's strict validation, also when their value is null");
            p.location = Some(loc.location(node.locate_key(&path)));
            out.problems.push(p);
        }
        Some(obj)
    }
}

/// `Kind ns/name` from raw metadata, for messages about objects that did not decode.
fn object_label(node: &Node, kind: &str) -> String {
    let meta = node.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Node::as_str).unwrap_or("?");
    match meta.and_then(|m| m.get("namespace")).and_then(Node::as_str) {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Drops the positions a JSON tree cannot have: objects get the [`Nowhere`] locator, problems
/// no location (they still name the object and field path).
fn unplace(loaded: &mut Loaded) {
    for input in &mut loaded.inputs {
        input.locate = Arc::new(Nowhere);
    }
    for p in &mut loaded.problems {
        p.location = None;
    }
}

/// Decodes one object given as JSON (an API server's list item or watch event, with `kind` and
/// `apiVersion`) with exactly the checks a file's object gets: it is written out as JSON text
/// and read like a `.json` file. Its problems name the object (`Kind ns/name`) and the field
/// path; there is no file position. A `List` is decoded item by item; kinds the engine does not
/// use are counted in `ignored`.
pub fn decode_json(value: &serde_json::Value) -> Loaded {
    let text: Arc<str> = serde_json::to_string(value).expect("a JSON value serializes").into();
    let mut out = decode(&[Source { name: "".into(), text }]);
    unplace(&mut out);
    out
}
