//! The fake's API semantics through kube-rs' own client: bearer token, paged lists at a
//! consistent snapshot, exact and too-large resourceVersions, expired continue tokens, label
//! and field selectors on lists and watches (objects moving out of a selection), timeoutSeconds,
//! injected failures, stalls, and the server going down and up.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, ListParams, VersionMatch, WatchEvent, WatchParams};
use kube::discovery::ApiResource;
use palisade_fakeapi::{Config, FakeApi};
use serde_json::{json, Value};

fn pods_resource() -> ApiResource {
    ApiResource {
        group: "".into(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Pod".into(),
        plural: "pods".into(),
    }
}

fn pod(name: &str, node: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "x", "name": name, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": []}})
}

async fn client(api: &FakeApi, token: Option<&str>) -> kube::Client {
    let dir = std::env::temp_dir().join(format!(
        "palisade-fakeapi-test-{}-{}",
        std::process::id(),
        api.url().rsplit(':').next().unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = api.write_kubeconfig(&dir).unwrap();
    let mut text = std::fs::read_to_string(&path).unwrap();
    if let Some(t) = token {
        text = text.replace(palisade_fakeapi::TOKEN, t);
    }
    let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    // kube retries 429, 503 and 504 up to 15 times (minutes): these tests want the status.
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other}"),
    }
}

fn names(list: &kube::api::ObjectList<DynamicObject>) -> Vec<String> {
    list.items.iter().map(|o| o.metadata.name.clone().unwrap()).collect()
}

#[tokio::test]
async fn lists_page_at_one_snapshot_and_honour_resource_versions() {
    let api = FakeApi::start(Config::default()).unwrap();
    for i in 0..5 {
        api.apply(pod(&format!("p{i}"), "n1", "web")).unwrap();
    }
    let pods: Api<DynamicObject> = Api::all_with(client(&api, None).await, &pods_resource());
    let first = pods.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(&first), ["p0", "p1"]);
    let at = first.metadata.resource_version.clone().unwrap();
    // A change after the first page is not in the later pages: they read the same snapshot.
    api.delete("v1", "Pod", Some("x"), "p3").unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    let second = pods.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap();
    assert_eq!(names(&second), ["p2", "p3"]);
    assert_eq!(second.metadata.resource_version.as_deref(), Some(at.as_str()));

    let exact = ListParams {
        resource_version: Some(at.clone()),
        version_match: Some(VersionMatch::Exact),
        ..Default::default()
    };
    assert_eq!(pods.list(&exact).await.unwrap().items.len(), 5);
    assert_eq!(pods.list(&ListParams::default()).await.unwrap().items.len(), 4);
    let future = ListParams { resource_version: Some("999".into()), ..Default::default() };
    assert_eq!(code(pods.list(&future).await.unwrap_err()), 504);
    api.compact();
    assert_eq!(code(pods.list(&exact).await.unwrap_err()), 410);
    assert_eq!(code(pods.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap_err()), 410);
    // Items of a built-in list carry no kind, as the API server serves them.
    let raw = pods.list(&ListParams::default()).await.unwrap();
    assert!(raw.items[0].types.is_none());
}

#[tokio::test]
async fn selectors_filter_lists_and_watches() {
    let api = FakeApi::start(Config::default()).unwrap();
    api.apply(pod("a", "n1", "web")).unwrap();
    api.apply(pod("b", "n2", "web")).unwrap();
    api.apply(pod("c", "n1", "db")).unwrap();
    let pods: Api<DynamicObject> = Api::all_with(client(&api, None).await, &pods_resource());
    let on_n1 = ListParams::default().fields("spec.nodeName=n1").labels("app in (web)");
    assert_eq!(names(&pods.list(&on_n1).await.unwrap()), ["a"]);
    assert_eq!(code(pods.list(&ListParams::default().fields("spec.hostNetwork=true")).await.unwrap_err()), 400);

    let rv = api.resource_version().to_string();
    let params = WatchParams::default().fields("spec.nodeName=n1").timeout(2);
    let mut events = pods.watch(&params, &rv).await.unwrap().boxed();
    api.apply(pod("a", "n2", "web")).unwrap(); // leaves the selection
    api.apply(pod("b", "n1", "web")).unwrap(); // enters it
    api.apply(pod("c", "n1", "api")).unwrap(); // changes within it
    let mut seen = Vec::new();
    while let Some(e) = events.try_next().await.unwrap() {
        seen.push(match e {
            WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.unwrap()),
            WatchEvent::Modified(o) => format!("MODIFIED {}", o.metadata.name.unwrap()),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.unwrap()),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(seen, ["DELETED a", "ADDED b", "MODIFIED c"], "and the watch ended after timeoutSeconds");
}

#[tokio::test]
async fn a_compacted_resource_version_is_an_error_event_410() {
    let api = FakeApi::start(Config { window: 2, ..Config::default() }).unwrap();
    let rv = api.resource_version().to_string();
    for i in 0..3 {
        api.apply(pod(&format!("p{i}"), "n1", "web")).unwrap();
    }
    let pods: Api<DynamicObject> = Api::all_with(client(&api, None).await, &pods_resource());
    let mut events = pods.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    match events.next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
    assert!(events.next().await.is_none(), "the stream ends after the error");
}

#[tokio::test]
async fn tokens_faults_stalls_and_outages() {
    let api = FakeApi::start(Config::default()).unwrap();
    let bad: Api<DynamicObject> = Api::all_with(client(&api, Some("wrong")).await, &pods_resource());
    assert_eq!(code(bad.list(&ListParams::default()).await.unwrap_err()), 401);

    let pods: Api<DynamicObject> = Api::all_with(client(&api, None).await, &pods_resource());
    api.fail_for(500, Duration::from_millis(300));
    assert_eq!(code(pods.list(&ListParams::default()).await.unwrap_err()), 500);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(pods.list(&ListParams::default()).await.is_ok(), "failures end on time");

    api.stall("pods");
    let stalled = tokio::time::timeout(Duration::from_millis(300), pods.list(&ListParams::default())).await;
    assert!(stalled.is_err(), "a stalled list does not answer");
    api.release("pods");
    assert!(pods.list(&ListParams::default()).await.is_ok());

    api.down();
    assert!(pods.list(&ListParams::default()).await.is_err(), "down: connection refused");
    api.up().unwrap();
    assert!(pods.list(&ListParams::default()).await.is_ok(), "up again on the same address");
}
