//! Decoding one object of a document into its API type, strictly, with each problem placed at
//! its file, line and column: what every kind's decoding shares (Kubernetes, Calico, the
//! cluster network policies).

use std::collections::BTreeMap;

use palisade_core::field::{FieldPath, Problem, Severity};
use palisade_ingest::Input;
use serde::de::DeserializeOwned;

use crate::decode::State;
use crate::document::DocLocator;
use crate::tree::Node;

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

/// A problem at `path` of the object `node` (its tree still at hand while decoding).
pub(crate) fn problem(
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

const CALICO_STRICT: &[&str] = &["Tier", "NetworkSet", "GlobalNetworkSet", "HostEndpoint"];

/// One object to decode into its type.
#[derive(Clone, Copy)]
pub(crate) struct Typed<'a> {
    pub(crate) node: &'a Node,
    pub(crate) loc: &'a DocLocator,
    pub(crate) kind: &'a str,
    pub(crate) state: &'a State,
}

impl Typed<'_> {
    pub(crate) fn kind(&self) -> &str {
        self.kind
    }

    pub(crate) fn decode<T: DeserializeOwned>(self, out: &mut Loaded) -> Option<T> {
        self.decode_keeping(out, |_| false).map(|(obj, _)| obj)
    }

    /// Decodes as [`Typed::decode`], except that unknown fields at paths `keep` accepts are
    /// returned instead of reported (peers of a newer CRD, which fail closed later).
    pub(crate) fn decode_keeping<T: DeserializeOwned>(
        self,
        out: &mut Loaded,
        keep: impl Fn(&FieldPath) -> bool,
    ) -> Option<(T, Vec<FieldPath>)> {
        let Typed { node, loc, kind, state } = self;
        let label = object_label(node, kind);
        let kind = label.as_str();
        let (obj, unknown) = match crate::decode::decode::<T>(node, state) {
            Ok(v) => v,
            Err(e) => {
                let help = if State::is_alias_error(&e.message) {
                    crate::decode::ALIAS_HELP
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
        let (kept, unknown): (Vec<_>, Vec<_>) = unknown.into_iter().partition(|u| keep(&u.path));
        let kept: Vec<FieldPath> = kept.into_iter().map(|u| u.path).collect();
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
            let field = last_field(&path);
            let near = crate::suggestion::closest(&field, known.iter().copied());
            let near: Vec<String> = near.iter().map(|n| format!("{n:?}")).collect();
            let msg = format!("{path}: unknown field {field:?}{}", crate::suggestion::did_you_mean(&near));
            let mut p = problem(loc, node, kind, path.clone(), severity, msg, "check the spelling and indentation against the Kubernetes API reference (kubectl explain); unknown fields are rejected by kubectl's strict validation, also when their value is null");
            p.location = Some(loc.location(node.locate_key(&path)));
            out.problems.push(p);
        }
        Some((obj, kept))
    }
}

/// The last key (or index) of a path: the field a message names.
pub(crate) fn last_field(path: &FieldPath) -> String {
    path.0.last().map_or_else(String::new, |s| match s {
        palisade_core::field::Seg::Key(k) => k.clone(),
        palisade_core::field::Seg::Index(i) => i.to_string(),
    })
}

/// `Kind ns/name` from raw metadata, for messages about objects that did not decode.
pub(crate) fn object_label(node: &Node, kind: &str) -> String {
    let meta = node.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Node::as_str).unwrap_or("?");
    match meta.and_then(|m| m.get("namespace")).and_then(Node::as_str) {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}
