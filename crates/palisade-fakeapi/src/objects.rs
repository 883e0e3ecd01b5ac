//! Reading and writing objects: list (with `limit`/`continue`, `resourceVersion` and
//! `resourceVersionMatch`, label and field selectors), get, create, update, merge patch and
//! delete. Semantics from the API concepts page ("Resource versions", "Retrieving large
//! results sets in chunks").

use std::collections::BTreeMap;

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::request::Target;
use crate::resource::Resource;
use crate::select::{FieldSelector, LabelSelector};
use crate::status::{error, json as respond, Body, Refusal};
use crate::store::{key_of, Key, Store};
use crate::Shared;

type Reply = hyper::Response<Body>;

/// Whether list items carry `kind`/`apiVersion` (the API server leaves them out of built-in
/// lists; custom and aggregated resources keep them).
fn builtin(res: &Resource) -> bool {
    res.group.is_empty() || res.group.ends_with(".k8s.io") && !res.group.starts_with("policy.networking")
}

/// The object as served: with `kind` and `apiVersion`.
pub fn typed(res: &Resource, mut obj: Value) -> Value {
    if let Value::Object(m) = &mut obj {
        m.insert("kind".into(), res.kind.into());
        m.insert("apiVersion".into(), res.api_version().into());
    }
    obj
}

/// An object as a list serves it: built-in kinds without `kind` and `apiVersion`.
fn list_item(res: &Resource, obj: Value) -> Value {
    let mut obj = typed(res, obj);
    if let (true, Value::Object(m)) = (builtin(res), &mut obj) {
        m.remove("kind");
        m.remove("apiVersion");
    }
    obj
}

/// The selectors of a list or watch request; `Err` is the 400 response.
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn from_query(res: &Resource, target: &Target, q: &BTreeMap<String, String>) -> Result<Self, Refusal> {
        let bad = |m: crate::select::SelectorError| Refusal::new(400, "BadRequest", m.to_string());
        let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str)).map_err(bad)?;
        let fields = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str), res.kind).map_err(bad)?;
        Ok(Filter { namespace: target.namespace.clone(), labels, fields })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let ns_ok = self.namespace.as_deref().is_none_or(|ns| obj["metadata"]["namespace"] == ns);
        ns_ok && self.labels.matches(obj) && self.fields.matches(obj)
    }
}

fn parse_rv(s: &str) -> Result<u64, Refusal> {
    s.parse().map_err(|_| Refusal::new(400, "BadRequest", format!("invalid resourceVersion {s:?}")))
}

/// A list's resourceVersion, its objects, and the key a continued list resumes after.
type Snapshot<'a> = (u64, Objects<'a>, Option<Key>);

/// The objects a list reads: the store's own (a list at the current resourceVersion, most
/// lists and their continued pages: nothing is copied but the page), or rebuilt for a past one.
enum Objects<'a> {
    Now(&'a BTreeMap<Key, Value>),
    Past(BTreeMap<Key, Value>),
}

impl Objects<'_> {
    fn map(&self) -> &BTreeMap<Key, Value> {
        match self {
            Objects::Now(m) => m,
            Objects::Past(m) => m,
        }
    }
}

/// The objects a list reads and their resourceVersion, per `resourceVersion` and
/// `resourceVersionMatch`; `continue` resumes the snapshot it was issued for.
fn snapshot<'a>(store: &'a Store, idx: usize, q: &BTreeMap<String, String>) -> Result<Snapshot<'a>, Refusal> {
    if let Some(token) = q.get("continue").filter(|c| !c.is_empty()) {
        let mut parts = token.splitn(3, '/');
        let (Some(rv), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Refusal::new(400, "BadRequest", "invalid continue token"));
        };
        let rv = parse_rv(rv)?;
        let after = Some((ns.to_string(), name.to_string()));
        if rv == store.rv {
            return Ok((rv, Objects::Now(&store.objects[idx]), after));
        }
        let objects = store.at(idx, rv).ok_or_else(|| {
            Refusal::new(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
        })?;
        return Ok((rv, Objects::Past(objects), after));
    }
    let rv = q.get("resourceVersion").map(String::as_str).filter(|v| !v.is_empty());
    let exact = q.get("resourceVersionMatch").is_some_and(|m| m == "Exact");
    match rv {
        None | Some("0") => Ok((store.rv, Objects::Now(&store.objects[idx]), None)),
        Some(v) => {
            let v = parse_rv(v)?;
            if v > store.rv {
                return Err(Refusal::new(
                    504,
                    "Timeout",
                    format!("Too large resource version: {v}, current: {}", store.rv),
                ));
            }
            if !exact || v == store.rv {
                return Ok((store.rv, Objects::Now(&store.objects[idx]), None));
            }
            let objects = store
                .at(idx, v)
                .ok_or_else(|| Refusal::new(410, "Expired", format!("too old resource version: {v} ({})", store.rv)))?;
            Ok((v, Objects::Past(objects), None))
        }
    }
}

/// `GET` on a collection.
pub fn list(shared: &Shared, idx: usize, target: &Target, q: &BTreeMap<String, String>) -> Reply {
    let res = &shared.catalog[idx];
    let filter = match Filter::from_query(res, target, q) {
        Ok(f) => f,
        Err(refusal) => return refusal.reply(),
    };
    // resourceVersion=0 is served from the watch cache, which ignores limit.
    let from_cache = q.get("resourceVersion").is_some_and(|v| v == "0") && !q.contains_key("continue");
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|&l| l > 0 && !from_cache);
    // Under the store's lock, only the page's objects are copied.
    let (rv, items, rest) = {
        let store = shared.store.lock().expect("store lock");
        let (rv, objects, after) = match snapshot(&store, idx, q) {
            Ok(s) => s,
            Err(refusal) => return refusal.reply(),
        };
        let matching: Vec<(&Key, &Value)> =
            objects.map().iter().filter(|(k, o)| after.as_ref().is_none_or(|a| *k > a) && filter.matches(o)).collect();
        let take = limit.unwrap_or(matching.len()).min(matching.len());
        let items: Vec<Value> = matching[..take].iter().map(|(_, o)| list_item(res, (*o).clone())).collect();
        let rest = (take < matching.len()).then(|| (matching[take - 1].0.clone(), matching.len() - take));
        (rv, items, rest)
    };
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(((ns, name), remaining)) = rest {
        meta["continue"] = format!("{rv}/{ns}/{name}").into();
        meta["remainingItemCount"] = remaining.into();
    }
    let list =
        json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": meta, "items": items});
    respond(StatusCode::OK, &list)
}

fn key(res: &Resource, target: &Target, name: &str) -> Key {
    (if res.namespaced { target.namespace.clone().unwrap_or_default() } else { String::new() }, name.to_string())
}

fn not_found(res: &Resource, name: &str) -> Reply {
    error(404, "NotFound", &format!("{}.{} {name:?} not found", res.plural, res.group))
}

/// `GET` on one object.
pub fn get(shared: &Shared, idx: usize, target: &Target, name: &str) -> Reply {
    let res = &shared.catalog[idx];
    let store = shared.store.lock().expect("store lock");
    match store.objects[idx].get(&key(res, target, name)) {
        Some(o) => respond(StatusCode::OK, &typed(res, o.clone())),
        None => not_found(res, name),
    }
}

/// RFC 7386 JSON merge patch (also used for strategic merge patches: the fake's kinds have no
/// list merge keys that matter to its clients).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// `POST`, `PUT`, `PATCH` and `DELETE` on one object or a collection.
pub fn write(shared: &Shared, idx: usize, target: &Target, method: &str, body: &[u8]) -> Reply {
    let res = &shared.catalog[idx];
    let parsed: Result<Value, _> = if method == "DELETE" { Ok(Value::Null) } else { serde_json::from_slice(body) };
    let Ok(mut obj) = parsed else {
        return error(400, "BadRequest", "the request body is not JSON");
    };
    let mut store = shared.store.lock().expect("store lock");
    match method {
        "POST" => {
            if res.namespaced {
                obj["metadata"]["namespace"] = target.namespace.clone().unwrap_or_default().into();
            }
            if obj["metadata"]["name"].as_str().is_none_or(str::is_empty) {
                let prefix = obj["metadata"]["generateName"].as_str().unwrap_or_default().to_string();
                obj["metadata"]["name"] = format!("{prefix}{:05}", store.rv + 1).into();
            }
            let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
            if let Some(why) = (res.group == "events.k8s.io").then(|| crate::event::invalid(&obj, &ns)).flatten() {
                return error(422, "Invalid", &format!("Event.events.k8s.io is invalid: {why}"));
            }
            if store.objects[idx].contains_key(&key_of(&obj)) {
                let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
                return error(409, "AlreadyExists", &format!("{}.{} {name:?} already exists", res.plural, res.group));
            }
            let stored = store.put(idx, typed(res, obj));
            respond(StatusCode::CREATED, &stored)
        }
        _ => {
            let Some(name) = target.name.as_deref() else {
                return error(405, "MethodNotAllowed", "the fake writes only named objects");
            };
            let k = key(res, target, name);
            let Some(current) = store.objects[idx].get(&k).cloned() else {
                return not_found(res, name);
            };
            match method {
                "DELETE" => {
                    let gone = store.delete(idx, &k).expect("present");
                    respond(StatusCode::OK, &typed(res, gone))
                }
                "PATCH" => {
                    let mut merged = current;
                    merge(&mut merged, &obj);
                    respond(StatusCode::OK, &store.put(idx, typed(res, merged)))
                }
                _ => respond(StatusCode::OK, &store.put(idx, typed(res, obj))),
            }
        }
    }
}
