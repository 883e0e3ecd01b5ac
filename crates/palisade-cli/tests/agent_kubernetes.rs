//! The agent's HTTP port and its Kubernetes source, as root with the real binary in scratch
//! network namespaces (`pal-test-...-<pid>`): /livez, /readyz and /metrics read over HTTP; the
//! agent watching the fake API server (palisade-fakeapi: TLS, token, RBAC from deploy/) keeps
//! the namespace's table in step with what is written through the fake's API, applies nothing
//! before every kind synced, writes an Event on each object it refuses, converges after a 410
//! and dropped watches, and leaves its table
//! in force on SIGTERM; a 410 mid-stream on every watch and 30 s of 500s leave the table as it
//! was, readiness down then up, and a change made meanwhile in the kernel after; a 403 (the role
//! edited while the agent runs) keeps the table and fails readiness naming the watch. Set PALISADE_SKIP_LAB=1 where root, `ip` and `nft` are not available.

mod common;

use std::time::Duration;

use common::lab::{lab_possible, table, Agent, Netns, Scratch};
use common::repo;

/// One test at a time: they share the machine's two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn slot() -> Option<std::sync::MutexGuard<'static, ()>> {
    lab_possible().then(|| SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

const SECOND: Duration = Duration::from_secs(1);

fn model() -> String {
    std::fs::read_to_string(repo().join("tests/conformance/model.yaml")).unwrap()
}

/// Isolates namespace x for ingress and admits namespace y on 80.
const GUARD: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: guard, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: \"y\"}}\n    ports: [{port: 80, protocol: TCP}]\n";

/// `GET path` over HTTP/1.1: (status, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    common::lab::http_get(addr, path)
}

/// The address the agent says it serves on (it was given port 0).
fn served(agent: &Agent) -> String {
    let mut addr = String::new();
    agent.wait_for("the agent's port", 10 * SECOND, || {
        let log = agent.log();
        let Some(at) = log.find("on http://") else { return false };
        addr = log[at + "on http://".len()..].lines().next().unwrap_or_default().to_string();
        true
    });
    addr
}

/// The value of an unlabelled metric line (`name value`).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_port_serves_liveness_readiness_and_metrics() {
    let Some(_one) = slot() else { return };
    let ns = Netns::new("health");
    let scratch = Scratch::new("health");
    let dir = scratch.path("source");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("model.yaml"), model()).unwrap();
    std::fs::write(dir.join("policy.yaml"), GUARD).unwrap();
    let args = ["--listen", "127.0.0.1:0", "--interval-ms", "100", "--settle-ms", "50"];
    let agent = Agent::start(&dir, &ns.0, &args, scratch.path("agent.log"));
    let addr = served(&agent);
    agent.wait_for("the ruleset", 10 * SECOND, || table(&ns.0).matches("jump in_").count() == 3);
    assert_eq!(get(&addr, "/livez"), (200, "ok\n".into()));
    agent.wait_for("ready", 5 * SECOND, || get(&addr, "/readyz").0 == 200);
    let (code, text) = get(&addr, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(metric(&text, "palisade_enforced_pods"), Some(3.0), "{text}");
    assert_eq!(metric(&text, "palisade_apply_duration_seconds_count"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "palisade_apply_failures_total"), Some(0.0), "{text}");
    assert!(metric(&text, "palisade_rules").unwrap() >= 1.0, "{text}");
    assert_eq!(get(&addr, "/nothing").0, 404);
    // A policy change: one more transaction, one more event-to-kernel observation.
    std::fs::remove_file(dir.join("policy.yaml")).unwrap();
    agent.wait_for("the policy gone", 5 * SECOND, || !table(&ns.0).contains("jump in_"));
    let text = get(&addr, "/metrics").1;
    assert_eq!(metric(&text, "palisade_enforced_pods"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "palisade_event_to_kernel_seconds_count"), Some(2.0), "{text}");
    // The directory goes away: not ready (naming why), still live; back: ready again.
    std::fs::rename(&dir, scratch.path("away")).unwrap();
    agent.wait_for("not ready", 5 * SECOND, || get(&addr, "/readyz").0 == 503);
    let (_, why) = get(&addr, "/readyz");
    assert!(why.contains("the directory cannot be read"), "{why}");
    assert_eq!(get(&addr, "/livez").0, 200);
    std::fs::rename(scratch.path("away"), &dir).unwrap();
    agent.wait_for("ready again", 5 * SECOND, || get(&addr, "/readyz").0 == 200);
}

fn fake() -> palisade_fakeapi::FakeApi {
    let role = std::fs::read_to_string(repo().join("deploy/agent-rbac.yaml")).unwrap();
    let rbac = palisade_fakeapi::Rbac::from_manifest(&role, "palisade-agent").unwrap();
    let config = palisade_fakeapi::Config { rbac: Some(rbac), ..Default::default() };
    palisade_fakeapi::FakeApi::start(config).unwrap()
}

fn guard_object(port: u32) -> serde_json::Value {
    serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "guard", "namespace": "x"},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
            "ports": [{"port": port, "protocol": "TCP"}]}]}})
}

fn status(ns: &str) -> String {
    let out = common::palisade().args(["agent", "--source", ".", "--netns", ns, "--status"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_agent_keeps_the_table_in_step_with_the_api_server() {
    let Some(_one) = slot() else { return };
    let ns = Netns::new("kube");
    let scratch = Scratch::new("kube");
    let api = fake();
    for obj in palisade_fakeapi::rbac::documents(&model()).unwrap() {
        api.apply(obj).unwrap();
    }
    api.apply(guard_object(80)).unwrap();
    let kubeconfig = api.write_kubeconfig(&scratch.0).unwrap();
    // The startup barrier: while the pod list stalls, nothing is applied.
    api.stall("pods");
    let args = ["--kubeconfig", kubeconfig.to_str().unwrap(), "--listen", "127.0.0.1:0"];
    let agent = Agent::start(std::path::Path::new("kubernetes"), &ns.0, &args, scratch.path("agent.log"));
    let addr = served(&agent);
    agent.wait_for("discovery", 10 * SECOND, || agent.log().contains("watching 7 kinds"));
    std::thread::sleep(2 * SECOND);
    assert!(table(&ns.0).is_empty(), "a table before every kind synced:\n{}", agent.log());
    let (code, why) = get(&addr, "/readyz");
    assert_eq!(code, 503);
    assert!(why.contains("not synced yet (nothing applied): v1 Pod"), "{why}");
    assert_eq!(get(&addr, "/livez").0, 200);
    api.release("pods");
    agent.wait_for("the first ruleset", 10 * SECOND, || table(&ns.0).matches("jump in_").count() == 3);
    agent.wait_for("ready", 5 * SECOND, || get(&addr, "/readyz").0 == 200);
    let text = get(&addr, "/metrics").1;
    assert!(text.contains("palisade_objects{kind=\"v1 Pod\"} 9"), "{text}");
    assert_eq!(metric(&text, "palisade_enforced_pods"), Some(3.0), "{text}");

    // A policy change through the API reaches the kernel.
    let mut only_a = guard_object(80);
    only_a["spec"]["podSelector"] = serde_json::json!({"matchLabels": {"pod": "a"}});
    api.apply(only_a).unwrap();
    agent.wait_for("the changed policy", 5 * SECOND, || table(&ns.0).matches("jump in_").count() == 1);

    // An invalid change keeps the last good version; an invalid new policy is left out.
    api.apply(guard_object(70000)).unwrap();
    let mut new = guard_object(70000);
    new["metadata"]["name"] = "new".into();
    api.apply(new).unwrap();
    agent.wait_for("both refused", 5 * SECOND, || status(&ns.0).contains("refused: 2"));
    let s = status(&ns.0);
    assert!(s.contains("NetworkPolicy x/guard: its last good version stays in force"), "{s}");
    assert!(s.contains("NetworkPolicy x/new: left out"), "{s}");
    assert_eq!(table(&ns.0).matches("jump in_").count(), 1, "the last good version stays");
    let text = get(&addr, "/metrics").1;
    assert!(text.contains("palisade_refused_objects{kind=\"networking.k8s.io/v1 NetworkPolicy\"} 2"), "{text}");
    // Each refusal is an Event on its object (by uid), once, whatever later turns see.
    agent.wait_for("two Events", 5 * SECOND, || api.objects("events.k8s.io/v1", "Event").unwrap().len() == 2);
    let policies = api.objects("networking.k8s.io/v1", "NetworkPolicy").unwrap();
    for (name, what) in [("guard", "its last good version stays in force"), ("new", "left out")] {
        let events = api.objects("events.k8s.io/v1", "Event").unwrap();
        let e = events.iter().find(|e| e["regarding"]["name"] == name).expect(name);
        let uid = &policies.iter().find(|p| p["metadata"]["name"] == name).unwrap()["metadata"]["uid"];
        assert_eq!(&e["regarding"]["uid"], uid, "{e}");
        assert_eq!(
            (&e["type"], &e["reason"], &e["metadata"]["namespace"]),
            (&"Warning".into(), &"Refused".into(), &"x".into())
        );
        let note = e["note"].as_str().unwrap();
        assert!(note.contains(what) && note.contains("70000"), "{note}");
    }
    std::thread::sleep(SECOND);
    assert_eq!(api.objects("events.k8s.io/v1", "Event").unwrap().len(), 2);
    assert_eq!(metric(&get(&addr, "/metrics").1, "palisade_refusal_events_total"), Some(2.0));
    api.delete("networking.k8s.io/v1", "NetworkPolicy", Some("x"), "new").unwrap();
    api.apply(guard_object(80)).unwrap();
    agent.wait_for("the fix", 5 * SECOND, || table(&ns.0).matches("jump in_").count() == 3);
    assert!(status(&ns.0).contains("refused: 0"), "{}", status(&ns.0));

    // History compacted and every watch dropped: 410, relist, and a change made meanwhile is
    // taken as the relist's difference.
    api.compact();
    api.drop_watches();
    api.delete("networking.k8s.io/v1", "NetworkPolicy", Some("x"), "guard").unwrap();
    agent.wait_for("the policy gone", 10 * SECOND, || !table(&ns.0).contains("jump in_"));
    api.apply(guard_object(80)).unwrap();
    agent.wait_for("the policy back", 10 * SECOND, || table(&ns.0).matches("jump in_").count() == 3);

    // The API server fails for 3 s while the watches reconnect: not ready (naming the kinds),
    // live, the table stays; then ready again and changes flow.
    api.fail_for(500, 3 * SECOND);
    api.drop_watches();
    agent.wait_for("not ready", 5 * SECOND, || get(&addr, "/readyz").0 == 503);
    assert!(get(&addr, "/readyz").1.contains("failing"), "{}", get(&addr, "/readyz").1);
    assert_eq!(get(&addr, "/livez").0, 200);
    assert_eq!(table(&ns.0).matches("jump in_").count(), 3, "the table stays");
    agent.wait_for("ready again", 20 * SECOND, || get(&addr, "/readyz").0 == 200);
    api.delete("networking.k8s.io/v1", "NetworkPolicy", Some("x"), "guard").unwrap();
    agent.wait_for("a change after the outage", 35 * SECOND, || !table(&ns.0).contains("jump in_"));
    let text = get(&addr, "/metrics").1;
    assert!(text.contains("palisade_watch_restarts_total{kind=\"v1 Pod\"}"), "{text}");
    assert!(text.contains("palisade_relists_total{kind=\"v1 Pod\"}"), "{text}");

    // SIGTERM: exit 0, the table left in force.
    api.apply(guard_object(80)).unwrap();
    agent.wait_for("the last policy", 10 * SECOND, || table(&ns.0).matches("jump in_").count() == 3);
    let mut agent = agent;
    let term = std::process::Command::new("kill").args(["-TERM", &agent.pid().to_string()]).status().unwrap();
    assert!(term.success());
    let start = std::time::Instant::now();
    let code = loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            break s.code();
        }
        assert!(start.elapsed() < 5 * SECOND, "still running after SIGTERM:\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0), "{}", agent.log());
    assert_eq!(table(&ns.0).matches("jump in_").count(), 3, "the table stays in force");
    assert!(agent.log().contains("SIGTERM: stopped; the table stays in force"), "{}", agent.log());
}

/// The sum of a labelled counter over its labels (`name{...} value` lines).
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An agent of the fake API server's model with the guard policy, in a namespace of its own:
/// fields drop in this order, the agent first.
struct Guarded {
    agent: Agent,
    addr: String,
    api: palisade_fakeapi::FakeApi,
    _scratch: Scratch,
    ns: Netns,
}

/// Starts an agent (scratch and namespace named `name`) on the fake's model with the guard
/// policy and waits until its first ruleset is in the kernel and it is ready.
fn guarded(name: &str) -> Guarded {
    let ns = Netns::new(name);
    let scratch = Scratch::new(name);
    let api = fake();
    for obj in palisade_fakeapi::rbac::documents(&model()).unwrap() {
        api.apply(obj).unwrap();
    }
    api.apply(guard_object(80)).unwrap();
    let kubeconfig = api.write_kubeconfig(&scratch.0).unwrap();
    let args = ["--kubeconfig", kubeconfig.to_str().unwrap(), "--listen", "127.0.0.1:0"];
    let agent = Agent::start(std::path::Path::new("kubernetes"), &ns.0, &args, scratch.path("agent.log"));
    let addr = served(&agent);
    agent.wait_for("the first ruleset", 15 * SECOND, || table(&ns.0).matches("jump in_").count() == 3);
    agent.wait_for("ready", 5 * SECOND, || get(&addr, "/readyz").0 == 200);
    Guarded { agent, addr, api, _scratch: scratch, ns }
}

/// Resilience with the real binary (about 45 s): every watch gets a 410 ERROR mid-stream (a
/// relist, and a change made meanwhile arrives as its difference); then 30 s of 500s: the table
/// stays as it was, the agent is live but not ready (naming the failing watches); after them it
/// is ready again and a change made during them reaches the kernel. How long that took is
/// printed, not asserted (the bound is generous, so a loaded machine does not fail the test).
#[test]
fn a_410_mid_stream_and_30_s_of_500s_leave_the_table_then_converge() {
    let Some(_one) = slot() else { return };
    let Guarded { agent, addr, api, ns, .. } = &guarded("kube500");

    // 410 mid-stream on every open watch: each kind relists; a change made meanwhile arrives.
    let relists = total(&get(addr, "/metrics").1, "palisade_relists_total");
    api.expire_watches();
    api.delete("networking.k8s.io/v1", "NetworkPolicy", Some("x"), "guard").unwrap();
    agent.wait_for("the policy gone after the relist", 15 * SECOND, || !table(&ns.0).contains("jump in_"));
    agent.wait_for("every kind relisted", 15 * SECOND, || {
        total(&get(addr, "/metrics").1, "palisade_relists_total") >= relists + 7.0
    });
    agent.wait_for("ready after the relists", 15 * SECOND, || get(addr, "/readyz").0 == 200);
    api.apply(guard_object(80)).unwrap();
    agent.wait_for("the policy back", 10 * SECOND, || table(&ns.0).matches("jump in_").count() == 3);

    // 30 s of 500s, every watch cut at their start: the table stays, live, not ready.
    let before = table(&ns.0);
    let outage = 30 * SECOND;
    api.fail_for(500, outage);
    let start = std::time::Instant::now();
    api.drop_watches();
    agent.wait_for("not ready", 10 * SECOND, || get(addr, "/readyz").0 == 503);
    let why = get(addr, "/readyz").1;
    assert!(why.contains("failing"), "{why}");
    let mut only_a = guard_object(80);
    only_a["spec"]["podSelector"] = serde_json::json!({"matchLabels": {"pod": "a"}});
    api.apply(only_a).unwrap();
    while start.elapsed() + 2 * SECOND < outage {
        assert_eq!(table(&ns.0), before, "the table changed during the 500s:\n{}", agent.log());
        assert_eq!(get(addr, "/livez").0, 200, "not live during the 500s");
        assert_eq!(get(addr, "/readyz").0, 503, "ready while every request fails");
        std::thread::sleep(2 * SECOND);
    }
    std::thread::sleep(outage.saturating_sub(start.elapsed()));
    let up = std::time::Instant::now();
    agent.wait_for("the change made during the 500s", 30 * SECOND, || table(&ns.0).matches("jump in_").count() == 1);
    let converged = up.elapsed();
    agent.wait_for("ready again", 30 * SECOND, || get(addr, "/readyz").0 == 200);
    eprintln!(
        "after 30 s of 500s: the kernel converged {converged:?} and the agent was ready {:?} after they ended",
        up.elapsed()
    );
}

/// The agent's ClusterRole from deploy/, as the fake enforces it.
fn agent_role() -> palisade_fakeapi::Rbac {
    let role = std::fs::read_to_string(repo().join("deploy/agent-rbac.yaml")).unwrap();
    palisade_fakeapi::Rbac::from_manifest(&role, "palisade-agent").unwrap()
}

/// The role edited while the agent runs so that it no longer grants NetworkPolicies (403 on
/// their list and watch): the table stays as it was, the agent is live but not ready, naming
/// that watch; the role fixed, ready again, and a deletion made meanwhile reaches the kernel.
#[test]
fn a_403_keeps_the_table_and_fails_readiness_naming_the_watch() {
    let Some(_one) = slot() else { return };
    let Guarded { agent, addr, api, ns, .. } = &guarded("kube403");

    let mut without = agent_role();
    for rule in &mut without.rules {
        if let Some(resources) = &mut rule.resources {
            resources.retain(|r| r != "networkpolicies");
        }
    }
    api.set_rbac(Some(without));
    api.drop_watches();
    agent.wait_for("not ready", 10 * SECOND, || get(addr, "/readyz").0 == 503);
    let why = get(addr, "/readyz").1;
    assert!(why.contains("watch of networking.k8s.io/v1 NetworkPolicy failing"), "{why}");
    assert!(why.contains("forbidden"), "{why}");
    assert!(!why.contains("v1 Pod"), "only the forbidden watch is named: {why}");
    let before = table(&ns.0);
    api.delete("networking.k8s.io/v1", "NetworkPolicy", Some("x"), "guard").unwrap();
    std::thread::sleep(3 * SECOND);
    assert_eq!(table(&ns.0), before, "the table changed while its policies could not be read");
    assert_eq!(get(addr, "/livez").0, 200);
    assert_eq!(get(addr, "/readyz").0, 503);

    api.set_rbac(Some(agent_role()));
    agent.wait_for("ready again", 15 * SECOND, || get(addr, "/readyz").0 == 200);
    agent.wait_for("the deletion made meanwhile", 15 * SECOND, || !table(&ns.0).contains("jump in_"));
}
