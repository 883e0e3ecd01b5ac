//! The watch protocol against kube's own mock pattern (tower-test's `mock::pair` under a
//! `kube::Client`): the test is the API server, request by request, so the exact requests the
//! agent's watch makes are asserted: a paged list (`limit`, `continue`), a watch from the
//! list's `resourceVersion` with `allowWatchBookmarks` and `timeoutSeconds`, a resumed watch
//! from the last bookmark's version (no relist), a relist after 410 Gone reported as the exact
//! difference, a 403 retried without stopping, and a malformed or invalid object that is
//! reported while its watch goes on.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use palisade_kube::kinds::{Kind, KINDS};
use palisade_kube::watch::{watch, Settings};
use palisade_kube::Change;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

type Answer = Response<BoxBody<Bytes, Infallible>>;
type Handle = tower_test::mock::Handle<Request<Body>, Answer>;

const SETTINGS: Settings = Settings { timeout_seconds: 7, page_size: 2 };

fn kind(name: &str) -> &'static Kind {
    KINDS.iter().find(|k| k.to_string() == name).unwrap()
}

/// The watch of `kinds` over a mock API server, polled on its own task as a consumer would
/// poll it; the handle answers its requests.
fn watching(kinds: &[&'static Kind]) -> (UnboundedReceiver<Change>, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Answer>();
    let client = kube::Client::new(service, "default");
    let mut changes = watch(client, kinds, &SETTINGS);
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        while let Some(c) = changes.next().await {
            if tx.send(c).is_err() {
                return;
            }
        }
    });
    (rx, handle)
}

/// One request: its path and its query as a map.
struct Asked {
    path: String,
    query: BTreeMap<String, String>,
    answer: tower_test::mock::SendResponse<Answer>,
}

/// The next request the watch makes (within 10 s: the watcher's first backoff is under 1 s).
async fn asked(handle: &mut Handle) -> Asked {
    let (request, answer) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("a request within 10 s")
        .expect("the client is alive");
    assert_eq!(request.method(), http::Method::GET);
    let query = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    Asked { path: request.uri().path().to_string(), query, answer }
}

fn query(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn body(value: &Value) -> BoxBody<Bytes, Infallible> {
    Full::new(Bytes::from(value.to_string())).boxed()
}

/// Answers with one page of a list.
fn page(asked: Asked, items: &[Value], resource_version: &str, next: Option<&str>) {
    let mut metadata = json!({"resourceVersion": resource_version});
    if let Some(token) = next {
        metadata["continue"] = token.into();
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "metadata": metadata, "items": items});
    asked.answer.send_response(Response::builder().status(200).body(body(&list)).unwrap());
}

/// Answers with an API error (a `Status`).
fn status(asked: Asked, code: u16, reason: &str, message: &str) {
    let s = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason,
        "message": message});
    asked.answer.send_response(Response::builder().status(code).body(body(&s)).unwrap());
}

/// Answers a watch with a stream that stays open; its events are written one line each
/// through the sender, and the stream ends when the sender is dropped.
fn stream(asked: Asked) -> UnboundedSender<String> {
    let (tx, rx) = unbounded_channel::<String>();
    let frames = tokio_stream_of(rx).map(|line| Ok::<_, Infallible>(Frame::data(Bytes::from(line + "\n"))));
    let body = BodyExt::boxed(StreamBody::new(frames));
    asked.answer.send_response(Response::builder().status(200).body(body).unwrap());
    tx
}

fn tokio_stream_of(mut rx: UnboundedReceiver<String>) -> impl futures::Stream<Item = String> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn event(kind: &str, object: &Value) -> String {
    json!({"type": kind, "object": object}).to_string()
}

fn namespace(name: &str, rv: u32) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "resourceVersion": rv.to_string(), "uid": format!("uid-{name}")}})
}

fn bookmark(rv: u32) -> String {
    event(
        "BOOKMARK",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"resourceVersion": rv.to_string()}}),
    )
}

/// The next change, within 10 s.
async fn next(changes: &mut UnboundedReceiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(10), changes.recv()).await.expect("a change within 10 s").expect("endless")
}

fn names(c: &Change) -> (Vec<String>, Vec<String>) {
    match c {
        Change::Relisted { applied, deleted, .. } => {
            (applied.iter().map(|d| d.key.name.clone()).collect(), deleted.iter().map(|k| k.name.clone()).collect())
        }
        other => panic!("not a relist: {other:?}"),
    }
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

/// The list and watch a fresh watch makes: a first page and its continuation, then a watch
/// from the list's version.
#[tokio::test]
async fn a_watch_lists_in_pages_then_watches_from_the_lists_version_with_bookmarks() {
    let (mut changes, mut handle) = watching(&[kind("v1 Namespace")]);
    let first = asked(&mut handle).await;
    assert_eq!(first.path, "/api/v1/namespaces");
    assert_eq!(first.query, query(&[("limit", "2")]), "a list of the most recent state, 2 a page");
    page(first, &[namespace("a", 3), namespace("b", 4)], "9", Some("token-1"));
    let second = asked(&mut handle).await;
    assert_eq!(second.query, query(&[("limit", "2"), ("continue", "token-1")]));
    page(second, &[namespace("c", 5)], "10", None);
    assert_eq!(names(&next(&mut changes).await), (strings(&["a", "b", "c"]), vec![]));
    assert!(matches!(next(&mut changes).await, Change::Synced(k) if k.kind == "Namespace"));

    let watch = asked(&mut handle).await;
    assert_eq!(watch.path, "/api/v1/namespaces");
    assert_eq!(
        watch.query,
        query(&[
            ("watch", "true"),
            ("resourceVersion", "10"),
            ("timeoutSeconds", "7"),
            ("allowWatchBookmarks", "true")
        ])
    );
    let events = stream(watch);
    events.send(event("ADDED", &namespace("d", 11))).unwrap();
    assert!(matches!(next(&mut changes).await, Change::Apply(d) if d.key.name == "d"));
    events.send(event("MODIFIED", &namespace("a", 12))).unwrap();
    assert!(matches!(next(&mut changes).await, Change::Apply(d) if d.key.name == "a"));
    events.send(event("DELETED", &namespace("b", 13))).unwrap();
    assert!(matches!(next(&mut changes).await, Change::Delete(k) if k.name == "b"));
    // A bookmark is no change for the consumer, but the next watch resumes from it.
    events.send(bookmark(40)).unwrap();
    drop(events);
    let again = asked(&mut handle).await;
    assert_eq!(again.query.get("watch").map(String::as_str), Some("true"), "resumed, not relisted");
    assert_eq!(again.query.get("resourceVersion").map(String::as_str), Some("40"), "from the bookmark");
    let events = stream(again);
    events.send(event("ADDED", &namespace("e", 41))).unwrap();
    assert!(matches!(next(&mut changes).await, Change::Apply(d) if d.key.name == "e"), "no relist in between");
}

/// 410 Gone mid-stream (the version was compacted): a relist, reported as exactly what came,
/// changed and went since, without a second barrier; then a watch from the relist's version.
#[tokio::test]
async fn after_410_gone_a_relist_is_the_exact_difference() {
    let (mut changes, mut handle) = watching(&[kind("v1 Namespace")]);
    page(asked(&mut handle).await, &[namespace("a", 3), namespace("b", 4), namespace("c", 5)], "10", None);
    assert_eq!(names(&next(&mut changes).await).0.len(), 3);
    assert!(matches!(next(&mut changes).await, Change::Synced(_)));
    let events = stream(asked(&mut handle).await);
    events.send(event("MODIFIED", &namespace("a", 11))).unwrap();
    assert!(matches!(next(&mut changes).await, Change::Apply(_)));
    let gone = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 410, "reason": "Expired",
        "message": "too old resource version: 11 (30)"});
    events.send(event("ERROR", &gone)).unwrap();
    match next(&mut changes).await {
        Change::Error(e) => assert_eq!((e.code, e.kind.kind), (Some(410), "Namespace"), "{e}"),
        other => panic!("not the 410: {other:?}"),
    }
    // The relist: a unchanged (same version), b changed, c gone, d new.
    let relist = asked(&mut handle).await;
    assert_eq!(relist.query, query(&[("limit", "2")]), "a fresh list, not a watch");
    page(relist, &[namespace("a", 11), namespace("b", 20)], "30", Some("t"));
    page(asked(&mut handle).await, &[namespace("d", 25)], "30", None);
    assert_eq!(names(&next(&mut changes).await), (strings(&["b", "d"]), strings(&["c"])));
    let watch = asked(&mut handle).await;
    assert_eq!(watch.query.get("resourceVersion").map(String::as_str), Some("30"));
    let events = stream(watch);
    events.send(event("ADDED", &namespace("f", 31))).unwrap();
    assert!(matches!(next(&mut changes).await, Change::Apply(d) if d.key.name == "f"), "no second Synced barrier");
}

/// A 403 (the role does not grant the kind) is reported, and the list is tried again; the
/// other kinds' watches go on meanwhile.
#[tokio::test]
async fn a_403_is_reported_and_retried_while_other_kinds_go_on() {
    let (pods, namespaces) = (kind("v1 Pod"), kind("v1 Namespace"));
    let (mut changes, mut handle) = watching(&[namespaces, pods]);
    let mut forbidden_lists = 0;
    let mut synced = Vec::new();
    while forbidden_lists < 2 || synced.is_empty() {
        let asked = asked(&mut handle).await;
        match (asked.path.as_str(), asked.query.contains_key("watch")) {
            ("/api/v1/pods", false) => {
                forbidden_lists += 1;
                status(
                    asked,
                    403,
                    "Forbidden",
                    "pods is forbidden: User \"system:serviceaccount:x:y\" cannot list resource \"pods\"",
                );
                match next(&mut changes).await {
                    Change::Error(e) => {
                        assert_eq!((e.kind, e.code), (pods, Some(403)));
                        assert!(e.message.contains("pods is forbidden"), "{e}");
                    }
                    other => panic!("not the 403: {other:?}"),
                }
            }
            ("/api/v1/namespaces", false) => {
                page(asked, &[namespace("a", 1)], "2", None);
                let _relisted = next(&mut changes).await;
                synced.push(next(&mut changes).await);
            }
            (_, true) => drop(stream(asked)),
            other => panic!("an unexpected request: {other:?}"),
        }
    }
    assert!(matches!(synced[..], [Change::Synced(k)] if k == namespaces));
}

/// A malformed event (its object is not an object) and an object that does not validate are
/// each reported, and the next event on the same watch still arrives: no relist, no new watch.
#[tokio::test]
async fn a_malformed_or_invalid_object_does_not_stop_its_watch() {
    let policies = kind("networking.k8s.io/v1 NetworkPolicy");
    let (mut changes, mut handle) = watching(&[policies]);
    let list = asked(&mut handle).await;
    assert_eq!(list.path, "/apis/networking.k8s.io/v1/networkpolicies");
    page(list, &[], "5", None);
    assert_eq!(names(&next(&mut changes).await), (vec![], vec![]));
    assert!(matches!(next(&mut changes).await, Change::Synced(_)));
    let events = stream(asked(&mut handle).await);
    // `ingres`: a misspelt field, which the loader refuses in a policy (as kubectl's strict
    // validation would).
    let policy = |name: &str, field: &str, rv: u32| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "x", "resourceVersion": rv.to_string()},
            "spec": {"podSelector": {}, field: [{"ports": [{"port": 80}]}]}})
    };
    events
        .send(event(
            "ADDED",
            &json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": "not an object"}),
        ))
        .unwrap();
    match next(&mut changes).await {
        Change::Error(e) => {
            assert_eq!((e.kind, e.code), (policies, None), "{e}");
            assert!(e.message.contains("does not decode"), "{e}");
        }
        other => panic!("the malformed event is not reported: {other:?}"),
    }
    events.send(event("ADDED", &policy("bad", "ingres", 6))).unwrap();
    match next(&mut changes).await {
        Change::Refused(r) => {
            assert_eq!(r.key.to_string(), "NetworkPolicy x/bad");
            let text: Vec<String> = r.problems.iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
            assert!(text.iter().any(|t| t.contains("spec.ingres: unknown field")), "{text:?}");
        }
        other => panic!("the invalid object is not refused: {other:?}"),
    }
    events.send(event("ADDED", &policy("good", "ingress", 7))).unwrap();
    assert!(matches!(next(&mut changes).await, Change::Apply(d) if d.key.name == "good"));
    // The same watch delivered it: the next request, once it ends, resumes from version 7.
    drop(events);
    let again = asked(&mut handle).await;
    assert_eq!(
        (again.query.get("watch").map(String::as_str), again.query.get("resourceVersion").map(String::as_str)),
        (Some("true"), Some("7"))
    );
}
