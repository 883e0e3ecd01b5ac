//! Turning documents into typed Kubernetes objects (k8s-openapi), with positioned problems.

use std::sync::{Arc, OnceLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use palisade_core::field::{FieldPath, Location, Nowhere, Problem, Severity};
use palisade_ingest::{Input, Object};

use crate::decode::State;
use crate::document::{parse_source, DocLocator, Positions};
use crate::source::Source;
use crate::tree::{Kind, Node, Span};
pub use crate::typed::Loaded;
use crate::typed::{last_field, object_label, problem, Typed};

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
                        rules: crate::document::RuleSpans::of(&doc),
                    };
                    let state = State::default();
                    decode_object(doc, Arc::new(loc), None, &state, &mut loaded);
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

/// `implied`: the (kind, apiVersion) of the items of a typed list, for items that omit them.
/// The object is taken by value: a list's items are dropped as they are decoded, so the tree's
/// memory goes to the objects instead of adding to them.
fn decode_object(owned: Node, loc: Arc<DocLocator>, implied: Option<(&str, &str)>, state: &State, out: &mut Loaded) {
    let node = &owned;
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
    if kind != "List" && crate::kinds::is_served(crate::kinds::group(&api), &kind) == Some(false) {
        out.problems.push(unserved_kind(&loc, node, &kind, &api));
        return;
    }
    if is_list(&kind, &api, node) {
        // A typed list (`PodList`, as the API serves it) leaves kind out of its items.
        let implied = kind.strip_suffix("List").filter(|k| !k.is_empty()).map(|k| (k, api.as_str()));
        decode_list(owned, &kind, &loc, implied, state, out);
        return;
    }
    if api.starts_with("projectcalico.org/") || api.starts_with("crd.projectcalico.org/") {
        decode_calico(node, &api, &kind, loc, state, out);
        return;
    }
    if let Some(expected) = crate::clusterpolicy::api_version_of(&kind) {
        if api.starts_with(crate::clusterpolicy::GROUP) {
            if api != expected {
                let msg = format!("{kind} is served as apiVersion {expected}, not {api}");
                let help =
                    "ClusterNetworkPolicy is v1alpha2; AdminNetworkPolicy and BaselineAdminNetworkPolicy are v1alpha1";
                let label = object_label(node, &kind);
                let path = FieldPath::root().key("apiVersion");
                out.problems.push(problem(&loc, node, &label, path, Severity::Error, msg, help));
                return;
            }
            let cx = Typed { node, loc: &loc, kind: &kind, state };
            if let Some(object) = crate::clusterpolicy::decode(cx, out) {
                out.inputs.push(Input { object, locate: loc });
            }
            return;
        }
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
        // Decoded and checked as the full API type, then stripped to what the engine reads.
        "Pod" => cx.decode::<k8s_openapi::api::core::v1::Pod>(out).map(|p| Object::Pod(p.into())),
        "Deployment" => cx.decode(out).map(|o| Object::Deployment(Box::new(o))),
        "ReplicaSet" => cx.decode(out).map(|o| Object::ReplicaSet(Box::new(o))),
        "StatefulSet" => cx.decode(out).map(|o| Object::StatefulSet(Box::new(o))),
        "DaemonSet" => cx.decode(out).map(|o| Object::DaemonSet(Box::new(o))),
        "Job" => cx.decode(out).map(|o| Object::Job(Box::new(o))),
        "CronJob" => cx.decode(out).map(|o| Object::CronJob(Box::new(o))),
        "Service" => cx.decode(out).map(|o| Object::Service(Box::new(o))),
        "EndpointSlice" => cx.decode(out).map(Object::EndpointSlice),
        "Node" => cx.decode(out).map(|o| Object::Node(Box::new(o))),
        "NetworkPolicy" => cx.decode(out).map(Object::NetworkPolicy),
        "ServiceAccount" => cx.decode(out).map(Object::ServiceAccount),
        _ => None,
    };
    if let Some(object) = object {
        out.inputs.push(Input { object, locate: loc });
    }
}

/// A kind that the group Palisade reads does not serve: kubectl fails on it ("no matches for
/// kind"), and ignoring it would drop what is most likely a misspelt policy.
fn unserved_kind(loc: &DocLocator, node: &Node, kind: &str, api: &str) -> Problem {
    let group = crate::kinds::group(api);
    let hint = match crate::kinds::closest(group, kind) {
        Some(k) => format!(": did you mean {k}?"),
        None => String::new(),
    };
    let listed = format!("kinds are case-sensitive; `kubectl api-resources --api-group={group}` lists those it serves");
    let group = if group.is_empty() { "the core group (v1)" } else { group };
    problem(
        loc,
        node,
        &object_label(node, kind),
        FieldPath::root().key("kind"),
        Severity::Error,
        format!("no kind {kind:?} is served in {group} (kubectl: no matches for kind){hint}"),
        &listed,
    )
}

/// `List`, or a typed list: `XxxList` of a kind its group serves, or of any group when it
/// holds `items` (kubectl reads any object with `items` as a list).
fn is_list(kind: &str, api: &str, node: &Node) -> bool {
    kind == "List"
        || kind.ends_with("List")
            && (node.get("items").is_some() || crate::kinds::is_served(crate::kinds::group(api), kind) == Some(true))
}

/// The fields of a list (`metav1.List`, and every `XxxList` the API serves).
const LIST_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "items"];

/// A list's objects, as kubectl's resource builder reads them: `items` must be a sequence
/// (kubectl: "cannot unmarshal object into Go struct field decodeList.items"); null holds no
/// object, as kubectl reads it; without `items` kubectl takes the list for one object of a
/// kind no API server serves. Fields a list does not have are errors, as a misspelt `items`
/// would otherwise drop every object.
fn decode_list(
    owned: Node,
    kind: &str,
    loc: &Arc<DocLocator>,
    implied: Option<(&str, &str)>,
    state: &State,
    out: &mut Loaded,
) {
    let list = &owned;
    let fail =
        |path: FieldPath, message: String, help: &str| problem(loc, list, kind, path, Severity::Error, message, help);
    for e in list.entries().unwrap_or_default().iter().filter(|e| !LIST_FIELDS.contains(&&*e.key)) {
        let mut p = fail(
            FieldPath::root().key(&e.key),
            format!("unknown field {:?} of a {kind}", e.key),
            "a list holds apiVersion, kind, metadata and items (the objects); check the spelling",
        );
        p.location = Some(loc.location(e.key_at));
        out.problems.push(p);
    }
    if let Some(meta) = list.get("metadata") {
        let at = FieldPath::root().key("metadata");
        match crate::decode::decode::<ListMeta>(meta, state) {
            Ok((_, unknown)) => {
                for unknown in unknown {
                    let path = at.join(&unknown.path);
                    let mut p = fail(
                        path.clone(),
                        format!("{path}: unknown field {:?}", last_field(&path)),
                        "a list's metadata holds resourceVersion, continue, remainingItemCount and selfLink",
                    );
                    p.location = Some(loc.location(list.locate_key(&path)));
                    out.problems.push(p);
                }
            }
            Err(e) => {
                let path = at.join(&e.path);
                out.problems.push(fail(
                    path.clone(),
                    format!("{path}: {}", e.message),
                    "a list's metadata is ListMeta",
                ));
            }
        }
    }
    let items = match list.get("items") {
        None => {
            let message = format!("a {kind} without items: kubectl takes it for one object of kind {kind}, which no API server serves (no matches for kind)");
            out.problems.push(fail(
                FieldPath::root(),
                message,
                "write the objects under items: as a sequence (an empty list is items: [])",
            ));
            return;
        }
        Some(items) if items.is_null() => return,
        Some(items) => items,
    };
    let Some(items) = items.items() else {
        let what = match items.target().kind {
            Kind::Map(_) => "a mapping",
            Kind::Str(_) => "a string",
            _ => "a scalar",
        };
        let message = format!("items must be a sequence of objects, not {what} (kubectl: cannot unmarshal into decodeList.items of type []json.RawMessage)");
        out.problems.push(fail(
            FieldPath::root().key("items"),
            message,
            "write each object as an entry of items: - apiVersion: ...",
        ));
        return;
    };
    // Objects are big values: growing the vector by doubling would copy each several times.
    out.inputs.reserve(items.len());
    for (i, item) in into_items(owned).into_iter().enumerate() {
        let item_loc = Arc::new(loc.item(i, &item));
        decode_object(item, item_loc, implied, state, out);
    }
}

/// The items of a list, owned (those of an anchored or aliased sequence are copied).
fn into_items(list: Node) -> Vec<Node> {
    let items = match list.kind {
        Kind::Map(entries) => entries.into_vec().into_iter().find(|e| &*e.key == "items").map(|e| e.value),
        _ => list.get("items").cloned(),
    };
    match items.map(|n| n.kind) {
        Some(Kind::Seq(items)) => items.into_vec(),
        Some(kind) => Node { kind, at: Span::default() }.items().map(<[Node]>::to_vec).unwrap_or_default(),
        None => Vec::new(),
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
        match crate::crd::tree_to_v3(node, kind, state) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Loaded {
        decode(&[Source { name: "t.yaml".into(), text: text.into() }])
    }

    const POD: &str = "- {apiVersion: v1, kind: Pod, metadata: {name: a, namespace: x}}\n";

    #[test]
    fn rules_are_placed_as_the_tree_places_them() {
        let policy = "apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: p, namespace: x}\n  spec:\n    podSelector: {}\n    ingress:\n    - {}\n    - from: []\n      ports: []\n    egress: [{}, {to: []}]\n";
        let yaml = format!("apiVersion: v1\nkind: List\nitems:\n- {policy}- {policy}");
        let json = serde_json::to_string_pretty(&crate::yaml::parse(&yaml).unwrap()[0].to_json()).unwrap();
        for text in [yaml, json] {
            let out = load(&text);
            let tree = &parse_source(&text).unwrap()[0];
            assert_eq!(out.inputs.len(), 2, "{text}");
            for (i, input) in out.inputs.iter().enumerate() {
                for path in
                    ["spec.ingress[0]", "spec.ingress[1]", "spec.egress[1]", "spec.egress[2]", "spec.podSelector"]
                {
                    let at = input.locate.locate(&FieldPath::parse(path)).unwrap();
                    let want = tree.locate(&FieldPath::parse(&format!("items[{i}].{path}")));
                    assert_eq!(
                        (at.line, at.column, at.offset),
                        (want.line as usize, want.column as usize, want.offset as usize),
                        "{path} in {text}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_list_holds_its_objects_under_items_or_is_an_error() {
        // (list text, objects read, the error expected: its line and words)
        type Case = (String, usize, Option<(usize, &'static str)>);
        let cases: &[Case] = &[
            (format!("apiVersion: v1\nkind: List\nitems:\n{POD}"), 1, None),
            ("apiVersion: v1\nkind: List\nitems: []\n".into(), 0, None),
            ("apiVersion: v1\nkind: List\nitems:\n".into(), 0, None),
            ("apiVersion: v1\nkind: List\nmetadata: {resourceVersion: \"\"}\nitems: null\n".into(), 0, None),
            ("apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: a, namespace: x}\n".into(), 1, None),
            (
                "apiVersion: v1\nkind: List\nitems:\n  a: {apiVersion: v1, kind: Pod}\n".into(),
                0,
                Some((3, "not a mapping")),
            ),
            ("apiVersion: v1\nkind: List\nitems: pods\n".into(), 0, Some((3, "not a string"))),
            ("apiVersion: v1\nkind: PodList\nitems: 5\n".into(), 0, Some((3, "not a scalar"))),
            ("apiVersion: example.com/v1\nkind: FooList\nitems: {a: 1}\n".into(), 0, Some((3, "not a mapping"))),
            (format!("apiVersion: v1\nkind: List\nitmes:\n{POD}"), 0, Some((3, "unknown field \"itmes\""))),
            (format!("apiVersion: v1\nkind: List\nitmes:\n{POD}"), 0, Some((1, "without items"))),
            ("apiVersion: v1\nkind: PodList\n".into(), 0, Some((1, "without items"))),
            (
                format!("apiVersion: v1\nkind: List\nmetadata: {{resourceVersoin: \"1\"}}\nitems:\n{POD}"),
                1,
                Some((3, "unknown field \"resourceVersoin\"")),
            ),
            (
                format!("apiVersion: v1\nkind: List\nextra: null\nitems:\n{POD}"),
                1,
                Some((3, "unknown field \"extra\"")),
            ),
        ];
        for (text, objects, error) in cases {
            let out = load(text);
            assert_eq!(out.inputs.len(), *objects, "{text}");
            let errors: Vec<_> = out.problems.iter().filter(|p| p.severity == Severity::Error).collect();
            match error {
                None => assert!(errors.is_empty(), "{text}: {:?}", errors),
                Some((line, what)) => assert!(
                    errors.iter().any(|p| p.message.contains(what) && p.location.as_ref().unwrap().line == *line),
                    "{text}: {:?}",
                    errors
                ),
            }
        }
    }
}
