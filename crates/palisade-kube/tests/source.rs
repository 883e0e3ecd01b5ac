//! palisade-kube against the fake API server (real HTTPS, token, RBAC from deploy/): discovery
//! of optional groups, paged lists decoded like files, and the watch stream's shapes: per-object
//! changes, a Synced barrier per kind, relist after 410 as the exact diff, bookmarks moving the
//! resume version, a 403 on one kind not stopping the others, a refused object not stopping its
//! watch, Events on refused objects (created, then their series patched).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use palisade_fakeapi::{Config, FakeApi, Groups, Rbac};
use palisade_kube::kinds::{Kind, KINDS};
use palisade_kube::watch::{watch, Settings};
use palisade_kube::{Change, SourceError, Target};
use serde_json::{json, Value};

fn agent_role() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/agent-rbac.yaml")).unwrap()
}

fn scratch() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir =
        std::env::temp_dir().join(format!("palisade-kube-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fake(groups: Groups, role: &str) -> FakeApi {
    let rbac = Rbac::from_manifest(role, "palisade-agent").unwrap();
    let config = Config { groups, rbac: Some(rbac), bookmark_every: Duration::from_millis(100), ..Config::default() };
    FakeApi::start(config).unwrap()
}

async fn client(api: &FakeApi) -> kube::Client {
    let kubeconfig = api.write_kubeconfig(&scratch()).unwrap();
    Target { kubeconfig: Some(kubeconfig), context: None }.client().await.unwrap()
}

fn kind(name: &str) -> &'static Kind {
    KINDS.iter().find(|k| k.kind == name && k.group.is_empty()).unwrap()
}

fn ns(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn pod(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "x", "name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]}})
}

type Changes = tokio::sync::mpsc::UnboundedReceiver<Change>;

/// Polls the stream on its own task, as a consumer would (the watcher only makes requests
/// while it is polled).
fn drive(mut stream: BoxStream<'static, Change>) -> Changes {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(c) = stream.next().await {
            if tx.send(c).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next change, within 10 s.
async fn next(s: &mut Changes) -> Change {
    tokio::time::timeout(Duration::from_secs(10), s.recv()).await.expect("a change within 10 s").expect("endless")
}

/// Waits until `path` has seen `n` watch requests.
async fn watches(api: &FakeApi, path: &str, n: usize) {
    for _ in 0..1000 {
        if watch_requests(api, path).len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no watch request {n} on {path}");
}

/// Changes until one satisfies `stop` (which is returned last).
async fn until(s: &mut Changes, stop: impl Fn(&Change) -> bool) -> Vec<Change> {
    let mut seen = Vec::new();
    loop {
        let c = next(s).await;
        let done = stop(&c);
        seen.push(c);
        if done {
            return seen;
        }
    }
}

/// The watch requests on a collection so far.
fn watch_requests(api: &FakeApi, path: &str) -> Vec<palisade_fakeapi::Logged> {
    api.requests().into_iter().filter(|r| r.path == path && r.query.contains_key("watch")).collect()
}

fn names(c: &Change) -> (Vec<String>, Vec<String>) {
    match c {
        Change::Relisted { applied, deleted, .. } => {
            (applied.iter().map(|d| d.key.name.clone()).collect(), deleted.iter().map(|k| k.name.clone()).collect())
        }
        other => panic!("not a relist: {other:?}"),
    }
}

#[tokio::test]
async fn discovery_reads_only_the_served_optional_groups() {
    let plain = fake(Groups::kubernetes(), &agent_role());
    let served = palisade_kube::discover::served(&client(&plain).await).await.unwrap();
    assert!(served.iter().all(|k| k.always));
    assert_eq!(served.len(), KINDS.iter().filter(|k| k.always).count());

    let calico = fake(
        Groups::kubernetes().with("projectcalico.org/v3").with("policy.networking.k8s.io/v1alpha2"),
        &agent_role(),
    );
    let served = palisade_kube::discover::served(&client(&calico).await).await.unwrap();
    let optional: Vec<String> = served.iter().filter(|k| !k.always).map(|k| k.to_string()).collect();
    assert_eq!(optional.len(), 10, "{optional:?}");
    assert!(optional.contains(&"policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy".to_string()));
    assert!(!optional.iter().any(|k| k.contains("v1alpha1")), "AdminNetworkPolicy is not served here");

    let crd_only = fake(Groups::kubernetes().with("crd.projectcalico.org/v1"), &agent_role());
    let err = palisade_kube::discover::served(&client(&crd_only).await).await.unwrap_err();
    assert!(matches!(err, SourceError::CalicoApiServerMissing));
    assert!(err.to_string().contains("install the Calico API server"), "{err}");
}

#[tokio::test]
async fn a_read_lists_every_kind_in_pages_and_decodes_like_files() {
    let api = fake(Groups::kubernetes(), &agent_role());
    api.apply(ns("x")).unwrap();
    for i in 0..1100 {
        api.apply(pod(&format!("p{i:04}"), "web")).unwrap();
    }
    api.apply(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"namespace": "x", "name": "deny"},
        "spec": {"podSelector": {}}})).unwrap();
    let loaded = palisade_kube::read::read(&client(&api).await).await.unwrap();
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems.iter().map(|p| &p.message).collect::<Vec<_>>());
    let count = |k: &str| loaded.inputs.iter().filter(|i| i.object.kind() == k).count();
    assert_eq!((count("Namespace"), count("Pod"), count("NetworkPolicy")), (1, 1100, 1));

    let pod_lists: Vec<_> = api.requests().into_iter().filter(|r| r.path == "/api/v1/pods").collect();
    assert_eq!(pod_lists.len(), 3, "500 + 500 + 100");
    assert!(pod_lists.iter().all(|r| r.query.get("limit").map(String::as_str) == Some("500")));
    assert!(!pod_lists[0].query.contains_key("continue") && pod_lists[1].query.contains_key("continue"));
    // A stripped pod keeps its ports and loses the rest of the container (the stored form,
    // `StoredContainer`, has no field for an image).
    let palisade_ingest::Object::Pod(p) = &loaded.inputs.iter().find(|i| i.object.kind() == "Pod").unwrap().object
    else {
        unreachable!()
    };
    let c = &p.spec.as_ref().unwrap().containers[0];
    assert_eq!(c.ports.as_ref().map(Vec::len), Some(1));
}

#[tokio::test]
async fn watches_give_one_change_per_object_and_a_synced_barrier_per_kind() {
    let api = fake(Groups::kubernetes(), &agent_role());
    api.apply(ns("x")).unwrap();
    api.apply(pod("a", "web")).unwrap();
    let mut changes = drive(watch(client(&api).await, &[kind("Namespace"), kind("Pod")], &Settings::default()));
    let mut first = until(&mut changes, |c| matches!(c, Change::Synced(_))).await;
    first.extend(until(&mut changes, |c| matches!(c, Change::Synced(_))).await);
    let relists: Vec<_> = first.iter().filter(|c| matches!(c, Change::Relisted { .. })).collect();
    assert_eq!(relists.len(), 2);
    assert!(first
        .iter()
        .any(|c| matches!(c, Change::Relisted { kind, .. } if kind.kind == "Pod") && names(c).0 == ["a"]));
    let list_rv = api.resource_version();

    api.apply(pod("b", "db")).unwrap();
    match until(&mut changes, |c| matches!(c, Change::Apply(_))).await.pop().unwrap() {
        Change::Apply(d) => assert_eq!((d.key.to_string(), d.input.is_some()), ("Pod x/b".into(), true)),
        _ => unreachable!(),
    }
    api.delete("v1", "Pod", Some("x"), "a").unwrap();
    match until(&mut changes, |c| matches!(c, Change::Delete(_))).await.pop().unwrap() {
        Change::Delete(k) => assert_eq!(k.to_string(), "Pod x/a"),
        _ => unreachable!(),
    }
    let q = &watch_requests(&api, "/api/v1/pods")[0].query;
    assert_eq!(q.get("allowWatchBookmarks").map(String::as_str), Some("true"));
    assert_eq!(q.get("timeoutSeconds").map(String::as_str), Some("290"));
    assert_eq!(q.get("resourceVersion"), Some(&list_rv.to_string()), "the watch starts where the list ended");
}

#[tokio::test]
async fn a_relist_after_410_is_the_exact_diff() {
    let api = fake(Groups::kubernetes(), &agent_role());
    for p in ["p1", "p2", "p4"] {
        api.apply(pod(p, "web")).unwrap();
    }
    let mut changes = drive(watch(client(&api).await, &[kind("Pod")], &Settings::default()));
    until(&mut changes, |c| matches!(c, Change::Synced(_))).await;

    api.down();
    api.apply(pod("p2", "db")).unwrap();
    api.apply(pod("p3", "web")).unwrap();
    api.delete("v1", "Pod", Some("x"), "p1").unwrap();
    api.compact();
    api.up().unwrap();
    let seen = until(&mut changes, |c| matches!(c, Change::Relisted { .. })).await;
    assert!(
        seen.iter().any(|c| matches!(c, Change::Error(e) if e.code == Some(410))),
        "the resumed watch met 410 Gone: {seen:?}"
    );
    let (mut applied, deleted) = names(seen.last().unwrap());
    applied.sort();
    assert_eq!(
        (applied, deleted),
        (vec!["p2".to_string(), "p3".to_string()], vec!["p1".to_string()]),
        "p4 did not change"
    );
    assert!(!seen.iter().any(|c| matches!(c, Change::Synced(_))), "synced once only");
}

#[tokio::test]
async fn bookmarks_move_the_resume_version_without_a_relist() {
    let api = fake(Groups::kubernetes(), &agent_role());
    api.apply(pod("a", "web")).unwrap();
    let mut changes = drive(watch(client(&api).await, &[kind("Pod")], &Settings::default()));
    until(&mut changes, |c| matches!(c, Change::Synced(_))).await;
    watches(&api, "/api/v1/pods", 1).await;
    // Other kinds move the resourceVersion; bookmarks carry it to the pod watch.
    for n in ["n1", "n2", "n3"] {
        api.apply(ns(n)).unwrap();
    }
    let moved = api.resource_version();
    tokio::time::sleep(Duration::from_millis(400)).await;
    api.drop_watches();
    watches(&api, "/api/v1/pods", 2).await;
    api.apply(pod("b", "web")).unwrap();
    match until(&mut changes, |c| matches!(c, Change::Apply(_))).await.pop().unwrap() {
        Change::Apply(d) => assert_eq!(d.key.name, "b"),
        other => panic!("expected the new pod, got {other:?}"),
    }
    let lists =
        api.requests().into_iter().filter(|r| r.path == "/api/v1/pods" && !r.query.contains_key("watch")).count();
    assert_eq!(lists, 1, "resumed, not relisted");
    let pods = watch_requests(&api, "/api/v1/pods");
    let resumed = &pods[1].query;
    assert_eq!(resumed.get("resourceVersion"), Some(&moved.to_string()), "resumed from the bookmark");
}

#[tokio::test]
async fn a_forbidden_kind_is_an_error_that_does_not_stop_the_others() {
    let role = agent_role().replacen("serviceaccounts, services]", "serviceaccounts]", 1);
    let api = fake(Groups::kubernetes(), &role);
    let kinds: Vec<&'static Kind> = KINDS.iter().filter(|k| k.always).collect();
    let mut changes = drive(watch(client(&api).await, &kinds, &Settings::default()));
    let mut synced = Vec::new();
    let mut forbidden = None;
    while synced.len() < kinds.len() - 1 || forbidden.is_none() {
        match next(&mut changes).await {
            Change::Synced(k) => synced.push(k.kind),
            Change::Error(e) => forbidden = Some(e),
            _ => {}
        }
    }
    let e = forbidden.unwrap();
    assert_eq!((e.kind.kind, e.code), ("Service", Some(403)));
    assert!(e.message.contains("cannot list resource \"services\""), "{}", e.message);
    assert!(!synced.contains(&"Service"));
    api.apply(ns("late")).unwrap();
    until(&mut changes, |c| matches!(c, Change::Apply(d) if d.key.name == "late")).await;
}

#[tokio::test]
async fn a_malformed_object_is_refused_and_its_watch_goes_on() {
    let api = fake(Groups::kubernetes(), &agent_role());
    let np = KINDS.iter().find(|k| k.kind == "NetworkPolicy" && k.group == "networking.k8s.io").unwrap();
    let mut changes = drive(watch(client(&api).await, &[np], &Settings::default()));
    until(&mut changes, |c| matches!(c, Change::Synced(_))).await;
    // A misspelt field (strict for policies, as kubectl's validation is) or a wrong type does
    // not decode; validation across objects (ports, selectors) is the builder's.
    let policy = |name: &str, ports: &str| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"namespace": "x", "name": name},
            "spec": {"podSelector": {}, "ingress": [{ports: [{"port": 80}]}]}})
    };
    api.apply(policy("bad", "prots")).unwrap();
    match next(&mut changes).await {
        Change::Refused(r) => {
            assert_eq!(r.key.to_string(), "NetworkPolicy x/bad");
            let p = &r.problems[0];
            assert_eq!(p.path.to_string(), "spec.ingress[0].prots");
            assert!(p.message.contains("unknown field"), "{}", p.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    api.apply(policy("good", "ports")).unwrap();
    assert!(matches!(next(&mut changes).await, Change::Apply(d) if d.key.name == "good"));
    api.delete("networking.k8s.io/v1", "NetworkPolicy", Some("x"), "bad").unwrap();
    assert!(matches!(next(&mut changes).await, Change::Delete(k) if k.name == "bad"));
}

#[tokio::test]
async fn events_may_be_created_only_where_the_role_allows() {
    use k8s_openapi::api::events::v1::Event;
    let api = fake(Groups::kubernetes(), &agent_role());
    let client = client(&api).await;
    let event: Event = serde_json::from_value(json!({
        "metadata": {"generateName": "bad.", "namespace": "x"}, "reason": "Refused", "action": "Validate",
        "type": "Warning", "note": "port 70000", "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "palisade", "reportingInstance": "node-1",
        "regarding": {"kind": "NetworkPolicy", "namespace": "x", "name": "bad"},
    }))
    .unwrap();
    let events: kube::Api<Event> = kube::Api::namespaced(client.clone(), "x");
    events.create(&Default::default(), &event).await.unwrap();
    assert_eq!(api.objects("events.k8s.io/v1", "Event").unwrap().len(), 1);
    let core: kube::Api<k8s_openapi::api::core::v1::Event> = kube::Api::namespaced(client, "x");
    let err = core.create(&Default::default(), &Default::default()).await.unwrap_err();
    assert_eq!(palisade_kube::message(&err).0, Some(403));
}

#[tokio::test]
async fn a_refused_object_gets_a_warning_event_and_a_repeat_patches_its_series() {
    use palisade_kube::events::{Events, Refusal};
    use palisade_kube::ObjectKey;
    let api = fake(Groups::kubernetes(), &agent_role());
    let client = client(&api).await;
    let events = Events::new(client, "node-1");
    let np = KINDS.iter().find(|k| k.kind == "NetworkPolicy" && k.group == "networking.k8s.io").unwrap();
    let refusal = Refusal {
        key: ObjectKey { kind: np, namespace: Some("x".into()), name: "bad".into() },
        uid: Some("1234".into()),
        why: "spec.ingress[0].ports[0].port: 70000 is not a port".into(),
        kept: true,
    };
    events.refused(&refusal).await.unwrap();
    let stored = api.objects("events.k8s.io/v1", "Event").unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let e = &stored[0];
    assert_eq!(e["metadata"]["namespace"], "x");
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["reason"], "Refused");
    assert_eq!(e["reportingController"], "palisade.dev/agent");
    assert_eq!(e["reportingInstance"], "node-1");
    assert_eq!(
        e["regarding"],
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "namespace": "x", "name": "bad", "uid": "1234"})
    );
    assert_eq!(
        e["note"],
        "not enforced as written (its last good version stays in force): spec.ingress[0].ports[0].port: 70000 is not a port"
    );
    // The same refusal again: the Event's series counts it (a patch, which the role grants).
    events.refused(&refusal).await.unwrap();
    let stored = api.objects("events.k8s.io/v1", "Event").unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["series"]["count"], 2, "{stored:?}");
    // A cluster-scoped object's Event goes to `default`; a long reason is cut to the API's 1 kB.
    let node = KINDS.iter().find(|k| k.kind == "Node").unwrap();
    let long = Refusal {
        key: ObjectKey { kind: node, namespace: None, name: "n1".into() },
        uid: None,
        why: "x".repeat(5000),
        kept: false,
    };
    events.refused(&long).await.unwrap();
    let stored = api.objects("events.k8s.io/v1", "Event").unwrap();
    let e = stored.iter().find(|e| e["regarding"]["name"] == "n1").unwrap();
    assert_eq!(e["metadata"]["namespace"], "default");
    assert_eq!(e["note"].as_str().unwrap().len(), 1024);
}

#[tokio::test]
async fn the_fake_refuses_an_event_the_api_server_would() {
    use k8s_openapi::api::events::v1::Event;
    let api = fake(Groups::kubernetes(), &agent_role());
    let client = client(&api).await;
    let event: Event = serde_json::from_value(json!({
        "metadata": {"generateName": "bad.", "namespace": "x"}, "reason": "Refused",
        "type": "Warning", "note": "port 70000", "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "palisade", "reportingInstance": "node-1",
        "regarding": {"kind": "NetworkPolicy", "namespace": "x", "name": "bad"},
    }))
    .unwrap();
    let events: kube::Api<Event> = kube::Api::namespaced(client, "x");
    let err = events.create(&Default::default(), &event).await.unwrap_err();
    let (code, message) = palisade_kube::message(&err);
    assert_eq!(code, Some(422));
    assert!(message.contains("action: Required value"), "{message}");
    assert!(api.objects("events.k8s.io/v1", "Event").unwrap().is_empty());
}
