//! The agent in Kubernetes mode as the DaemonSet runs it, in a lab (root; `pal-<pid>-...`
//! namespaces, 198.18.0.0/15 only, removed however the test ends): inside the node's network
//! namespace (as `hostNetwork` puts it), holding only CAP_NET_ADMIN (`setpriv` drops every
//! other capability from its bounding, inheritable and ambient sets), watching the fake API
//! server, with pods that send real packets. What it proves: the agent needs no capability
//! beyond CAP_NET_ADMIN for its whole job (the first ruleset, changes, deleting conntrack
//! entries, SIGTERM), and a pod given a gone pod's address does not inherit its established
//! flows where policy denies it. Set PALISADE_SKIP_LAB=1 where root, `ip`, `nft` and `setpriv`
//! are not available.

mod common;

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::lab::{lab_slot, table, Agent, Scratch};
use palisade_core::port::Protocol;
use palisade_lab::{traffic, Topology};
use serde_json::{json, Value};

const SECOND: Duration = Duration::from_secs(1);
const SERVER: &str = "198.18.40.2";
const CLIENT: &str = "198.18.40.3";
/// The UDP source port of the flow that must not outlive its pod.
const SPORT: u16 = 40123;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pod(name: &str, labels: Value, address: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "x", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "agnhost",
            "ports": [{"containerPort": 80, "protocol": "UDP"}, {"containerPort": 80, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}]}})
}

/// The server admits pods labelled role=client on 80 (UDP and TCP), and nothing else.
fn guard() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "guard", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "ingress": [{
            "from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
            "ports": [{"port": 80, "protocol": "UDP"}, {"port": 80, "protocol": "TCP"}]}]}})
}

/// The capability sets of a process, from /proc (`CapEff`, `CapPrm`, `CapBnd` as hex masks).
fn capabilities(pid: u32) -> Vec<(String, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.starts_with("Cap").then(|| (k.to_string(), u64::from_str_radix(v.trim(), 16).unwrap_or(u64::MAX)))
        })
        .collect()
}

/// CAP_NET_ADMIN's bit (linux/capability.h: 12).
const NET_ADMIN: u64 = 1 << 12;

/// `palisade agent` in `netns`, as uid 0 with no capability but CAP_NET_ADMIN.
fn agent_with_net_admin_only(netns: &str, kubeconfig: &std::path::Path, log: std::path::PathBuf) -> Agent {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "setpriv", "--bounding-set", "-all,+net_admin"])
        .args(["--inh-caps", "-all,+net_admin", "--ambient-caps", "-all,+net_admin", "--"])
        .arg(env!("CARGO_BIN_EXE_palisade"))
        .args(["agent", "--source", "kubernetes", "--kubeconfig", kubeconfig.to_str().unwrap()])
        .stdin(Stdio::null());
    Agent::spawn(cmd, log)
}

fn probe_udp(lab: &Topology, from: usize, to: &str) -> bool {
    traffic::probe_udp_from_port(&lab.pods[from].netns, None, SPORT, ip(to), 80, 400 * Duration::from_millis(1))
        .unwrap()
}

#[test]
fn with_only_net_admin_a_reused_address_does_not_inherit_an_established_flow() {
    let Some(_one) = lab_slot() else { return };
    let scratch = Scratch::new("kube-lab");
    let lab = Topology::build(&[(vec![ip(SERVER)], false), (vec![ip(CLIENT)], false)]).unwrap();
    traffic::serve(&lab.pods[0].netns, &[(80, Protocol::UDP), (80, Protocol::TCP)], false, None).unwrap();
    // The fake listens on the node namespace's loopback, where the agent runs.
    let role = std::fs::read_to_string(common::repo().join("deploy/agent-rbac.yaml")).unwrap();
    let api = traffic::in_netns(&lab.node, move || {
        let rbac = palisade_fakeapi::Rbac::from_manifest(&role, "palisade-agent").unwrap();
        palisade_fakeapi::FakeApi::start(palisade_fakeapi::Config { rbac: Some(rbac), ..Default::default() }).unwrap()
    })
    .unwrap();
    api.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "labels": {"ns": "x"}}}))
        .unwrap();
    api.apply(pod("server", json!({"app": "server"}), SERVER)).unwrap();
    api.apply(pod("old", json!({"role": "client"}), CLIENT)).unwrap();
    api.apply(guard()).unwrap();
    let kubeconfig = api.write_kubeconfig(&scratch.0).unwrap();
    let mut agent = agent_with_net_admin_only(&lab.node, &kubeconfig, scratch.path("agent.log"));
    agent.wait_for("the first ruleset", 15 * SECOND, || table(&lab.node).contains("jump in_"));

    // The agent holds CAP_NET_ADMIN and nothing else (its child process, past ip and setpriv).
    // `ip netns exec` and `setpriv` exec the agent in place: the child's pid becomes the agent's.
    let pid = agent.pid();
    agent.wait_for("the agent's process", 5 * SECOND, || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "palisade")
    });
    let caps = capabilities(pid);
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(caps.iter().find(|(k, _)| k == set).map(|(_, v)| *v), Some(NET_ADMIN), "{set}: {caps:?}");
    }

    // The client's flow is allowed and answered: conntrack holds it as established.
    agent.wait_for("the client's flow", 5 * SECOND, || probe_udp(&lab, 1, SERVER));
    // The client goes; a pod the policy does not admit gets its address, in one change.
    api.delete("v1", "Pod", Some("x"), "old").unwrap();
    api.apply(pod("new", json!({"role": "intruder"}), CLIENT)).unwrap();
    agent.wait_for("the old flow forgotten", 5 * SECOND, || agent.log().contains("deleted 1 conntrack entries"));
    // The same 5-tuple from the new pod is a new flow, and policy drops it.
    assert!(!probe_udp(&lab, 1, SERVER), "the new pod inherited the old pod's flow:\n{}", agent.log());
    assert!(!traffic::probe(&lab.pods[1].netns, None, ip(SERVER), 80, Protocol::TCP, SECOND / 2).unwrap());
    // Labelled as a client, it is admitted: the drop was policy, not a broken lab.
    api.apply(pod("new", json!({"role": "client"}), CLIENT)).unwrap();
    agent.wait_for("the new pod admitted", 5 * SECOND, || probe_udp(&lab, 1, SERVER));

    // `--uninstall` is refused while the agent holds the namespace (it would restore the table).
    let uninstall = || {
        common::palisade()
            .args(["agent", "--source", "kubernetes", "--uninstall", "--netns", &lab.node])
            .output()
            .unwrap()
    };
    let refused = uninstall();
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("stop it first"));
    assert!(table(&lab.node).contains("jump in_"));

    // SIGTERM: exit 0, the table left in force, all with CAP_NET_ADMIN alone.
    let term = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(term.success());
    let code = agent.wait_exit(5 * SECOND);
    assert_eq!(code, Some(0), "{}", agent.log());
    assert!(table(&lab.node).contains("jump in_"), "the table stays in force");
    let log = agent.log();
    assert!(!log.contains("Operation not permitted") && !log.contains("cannot"), "{log}");
    // With the agent gone, `--uninstall` removes the table.
    let removed = uninstall();
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    assert!(table(&lab.node).is_empty(), "the table is still there");
}

#[test]
fn without_net_admin_the_agent_applies_nothing() {
    let Some(_one) = lab_slot() else { return };
    let scratch = Scratch::new("kube-lab-nocap");
    let lab = Topology::build(&[(vec![ip(SERVER)], false)]).unwrap();
    let api =
        traffic::in_netns(&lab.node, || palisade_fakeapi::FakeApi::start(palisade_fakeapi::Config::default()).unwrap())
            .unwrap();
    api.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})).unwrap();
    api.apply(pod("server", json!({"app": "server"}), SERVER)).unwrap();
    api.apply(guard()).unwrap();
    let kubeconfig = api.write_kubeconfig(&scratch.0).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.node, "setpriv", "--bounding-set", "-all", "--inh-caps", "-all"])
        .args(["--ambient-caps", "-all", "--"])
        .arg(env!("CARGO_BIN_EXE_palisade"))
        .args(["agent", "--source", "kubernetes", "--kubeconfig", kubeconfig.to_str().unwrap()])
        .stdin(Stdio::null());
    let agent = Agent::spawn(cmd, scratch.path("agent.log"));
    agent.wait_for("a refusal", 15 * SECOND, || agent.log().contains("Operation not permitted"));
    assert!(table(&lab.node).is_empty());
}

/// splitmix64: a seeded, reproducible sequence of changes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

/// A peer: pods by label, namespaces by label, or both.
fn peer(rng: &mut Rng) -> Value {
    match rng.below(4) {
        0 => json!({"podSelector": {"matchLabels": {"pod": rng.pick(&PODS)}}}),
        1 => json!({"namespaceSelector": {"matchLabels": {"ns": rng.pick(&NAMESPACES)}}}),
        2 => {
            json!({"namespaceSelector": {"matchLabels": {"team": "blue"}}, "podSelector": {"matchLabels": {"role": "client"}}})
        }
        _ => json!({"podSelector": {"matchLabels": {"role": "client"}}}),
    }
}

/// A random rule: peers (none: everyone) and ports (none: every port), 80 and 81 on TCP and UDP.
fn rule(rng: &mut Rng, side: &str) -> Value {
    let mut r = json!({});
    if rng.below(4) > 0 {
        r[side] = Value::Array((0..1 + rng.below(2)).map(|_| peer(rng)).collect());
    }
    if rng.below(3) > 0 {
        let port = if rng.below(2) == 0 { 80 } else { 81 };
        r["ports"] = json!([{"port": port, "protocol": rng.pick(&["TCP", "UDP"])}]);
    }
    r
}

fn random_policy(rng: &mut Rng, name: &str, namespace: &str) -> Value {
    let selector = match rng.below(3) {
        0 => json!({}),
        1 => json!({"matchLabels": {"pod": rng.pick(&PODS)}}),
        _ => json!({"matchExpressions": [{"key": "role", "operator": "DoesNotExist"}]}),
    };
    const TYPES: [&[&str]; 3] = [&["Ingress"], &["Egress"], &["Ingress", "Egress"]];
    let types: &[&str] = TYPES[rng.below(TYPES.len())];
    let mut spec = json!({"podSelector": selector, "policyTypes": types});
    for t in types {
        let (field, side) = if *t == "Ingress" { ("ingress", "from") } else { ("egress", "to") };
        spec[field] = Value::Array((0..rng.below(3)).map(|_| rule(rng, side)).collect());
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

/// The cluster the fake holds now, loaded as files are (the engine's view, by another path than
/// the agent's watch).
fn engine_cluster(api: &palisade_fakeapi::FakeApi) -> palisade_core::cluster::Cluster {
    let mut items = Vec::new();
    for (v, k) in [("v1", "Namespace"), ("v1", "Pod"), ("networking.k8s.io/v1", "NetworkPolicy")] {
        items.extend(api.objects(v, k).unwrap());
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let load = palisade_load::load_str("fake.json", &list, &Default::default());
    load.cluster.unwrap_or_else(|| panic!("the fake's objects do not load: {:?}", load.problems))
}

/// Every ordered pod pair on 80/TCP and 80/UDP: (probe, the engine's verdict).
fn probes(cluster: &palisade_core::cluster::Cluster) -> Vec<(palisade_lab::standing::Probe, bool)> {
    use palisade_core::verdict::{decide, Connection, Side, Verdict};
    let pods = cluster.pods_sorted();
    let mut out = Vec::new();
    for &s in &pods {
        for &d in &pods {
            for protocol in [Protocol::TCP, Protocol::UDP] {
                let conn = Connection::new(Side::pod(cluster, s), Side::pod(cluster, d), 80, protocol);
                let allowed = decide(cluster, &conn).verdict == Verdict::Allow;
                let probe = palisade_lab::standing::Probe {
                    from: cluster.pod_key(s),
                    to: cluster.pods[d].ips[0],
                    port: 80,
                    protocol,
                };
                out.push((probe, allowed));
            }
        }
    }
    out
}

/// The pairs where the kernel and the engine differ (empty: equal).
fn differences(
    lab: &palisade_lab::standing::StandingLab,
    expected: &[(palisade_lab::standing::Probe, bool)],
) -> Vec<String> {
    use palisade_lab::standing::Seen;
    let probes: Vec<_> = expected.iter().map(|(p, _)| p.clone()).collect();
    let seen = lab.probe(&probes, Duration::from_millis(250)).unwrap();
    expected
        .iter()
        .zip(seen)
        .filter(|((_, allowed), seen)| *allowed != (*seen == Seen::Reached))
        .map(|((p, allowed), _)| format!("{} -> {} {}/{}: engine {allowed}", p.from, p.to, p.port, p.protocol))
        .collect()
}

/// Waits until the kernel's matrix equals the engine's (at most `limit`); the differences
/// left otherwise.
fn converge(
    lab: &palisade_lab::standing::StandingLab,
    api: &palisade_fakeapi::FakeApi,
    limit: Duration,
) -> (Duration, Vec<String>) {
    let expected = probes(&engine_cluster(api));
    let start = std::time::Instant::now();
    loop {
        let diff = differences(lab, &expected);
        if diff.is_empty() || start.elapsed() > limit {
            return (start.elapsed(), diff);
        }
    }
}

#[test]
fn two_hundred_changes_and_a_60_s_outage_leave_the_kernel_deciding_as_the_engine() {
    let Some(_one) = lab_slot() else { return };
    let scratch = Scratch::new("kube-lab-seq");
    let model = std::fs::read_to_string(common::repo().join("tests/conformance/model.yaml")).unwrap();
    let cluster = palisade_load::load_str("model.yaml", &model, &Default::default()).cluster.unwrap();
    let lab =
        palisade_lab::standing::StandingLab::build(&cluster, &[(80, Protocol::TCP), (80, Protocol::UDP)]).unwrap();
    let role = std::fs::read_to_string(common::repo().join("deploy/agent-rbac.yaml")).unwrap();
    let api = std::sync::Arc::new(
        traffic::in_netns(lab.node(), move || {
            let rbac = palisade_fakeapi::Rbac::from_manifest(&role, "palisade-agent").unwrap();
            palisade_fakeapi::FakeApi::start(palisade_fakeapi::Config { rbac: Some(rbac), ..Default::default() })
                .unwrap()
        })
        .unwrap(),
    );
    let objects = palisade_fakeapi::rbac::documents(&model).unwrap();
    for obj in &objects {
        api.apply(obj.clone()).unwrap();
    }
    let kubeconfig = api.write_kubeconfig(&scratch.0).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", lab.node()])
        .arg(env!("CARGO_BIN_EXE_palisade"))
        .args(["agent", "--source", "kubernetes", "--kubeconfig", kubeconfig.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null());
    let agent = Agent::spawn(cmd, scratch.path("agent.log"));
    agent.wait_for("the first ruleset", 15 * SECOND, || agent.log().contains("first ruleset"));
    let port = agent.log().split("on http://127.0.0.1:").nth(1).and_then(|r| r.lines().next()).unwrap().to_string();
    let node = lab.node().to_string();
    let get = move |path: &str| http_get(&node, &format!("127.0.0.1:{port}"), path);

    let seed = std::env::var("PALISADE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(17u64);
    let mut rng = Rng(seed);
    let pods: Vec<Value> = objects.iter().filter(|o| o["kind"] == "Pod").cloned().collect();
    let namespaces: Vec<Value> = objects.iter().filter(|o| o["kind"] == "Namespace").cloned().collect();
    let (mut changes, mut quiet_points, mut slowest) = (0, 0, Duration::ZERO);
    while changes < 200 {
        for _ in 0..1 + rng.below(8) {
            changes += 1;
            let name = format!("p{}", rng.below(6));
            let ns = *rng.pick(&NAMESPACES);
            match rng.below(10) {
                0..=4 => {
                    api.apply(random_policy(&mut rng, &name, ns)).unwrap();
                }
                5 | 6 => {
                    api.delete("networking.k8s.io/v1", "NetworkPolicy", Some(ns), &name).unwrap();
                }
                7 | 8 => {
                    let mut p = rng.pick(&pods).clone();
                    if rng.below(2) == 0 {
                        p["metadata"]["labels"]["role"] = "client".into();
                    }
                    api.apply(p).unwrap();
                }
                _ => {
                    let mut n = rng.pick(&namespaces).clone();
                    if rng.below(2) == 0 {
                        n["metadata"]["labels"]["team"] = "blue".into();
                    }
                    api.apply(n).unwrap();
                }
            }
        }
        quiet_points += 1;
        let (took, diff) = converge(&lab, &api, 5 * SECOND);
        assert!(
            diff.is_empty(),
            "seed {seed}, after {changes} changes: the kernel differs from the engine within 5 s:\n{}\n{}",
            diff.join("\n"),
            agent.log()
        );
        slowest = slowest.max(took);
    }
    eprintln!("{changes} changes, {quiet_points} quiet points, slowest convergence {slowest:?}");
    assert!(!agent.log().contains("refused"), "{}", agent.log());
    assert_eq!(get("/readyz").0, 200);

    // The API server down for 60 s: the table stays (the kernel still decides as before), the
    // agent is live but not ready. Meanwhile a policy changes and history is compacted.
    let before = probes(&engine_cluster(&api));
    api.down();
    let down = std::time::Instant::now();
    agent.wait_for("not ready", 10 * SECOND, || get("/readyz").0 == 503);
    api.apply(random_policy(&mut rng, "p0", "x")).unwrap();
    api.apply(random_policy(&mut rng, "p1", "y")).unwrap();
    api.compact();
    while down.elapsed() < 60 * SECOND {
        assert_eq!(get("/livez").0, 200);
        assert_eq!(get("/readyz").0, 503);
        let diff = differences(&lab, &before);
        assert!(diff.is_empty(), "the table changed while the API server was down:\n{}", diff.join("\n"));
        std::thread::sleep(5 * SECOND);
    }
    // Up again: ready, and the kernel decides as the engine on what changed meanwhile, within 5 s.
    // (Its port is bound again in the node's namespace, where the agent reaches it.)
    let again = api.clone();
    traffic::in_netns(lab.node(), move || again.up().unwrap()).unwrap();
    let up = std::time::Instant::now();
    let (_, diff) = converge(&lab, &api, 5 * SECOND);
    let converged = up.elapsed();
    assert!(diff.is_empty(), "not converged 5 s after the outage:\n{}\n{}", diff.join("\n"), agent.log());
    agent.wait_for("ready again", 5 * SECOND, || get("/readyz").0 == 200);
    eprintln!("after 60 s down: converged {converged:?} after the API server came back, ready {:?}", up.elapsed());
    assert!(up.elapsed() <= 5 * SECOND, "ready only {:?} after the API server came back", up.elapsed());
}

/// `GET path` over HTTP/1.1 from inside `netns` (where the agent's port is): (status, body).
fn http_get(netns: &str, addr: &str, path: &str) -> (u16, String) {
    let (addr, path) = (addr.to_string(), path.to_string());
    traffic::in_netns(netns, move || common::lab::http_get(&addr, &path)).unwrap()
}

/// A pod of the two-node lab: `ns/name`, the namespace it sends from, its address.
type LabPodAt = (String, String, IpAddr);

/// Every ordered pod pair on 80/TCP and 80/UDP, at once: the pairs where the kernel's answer
/// differs from the engine's on `cluster`.
fn two_node_differences(cluster: &palisade_core::cluster::Cluster, pods: &[LabPodAt], udp: &mut u16) -> Vec<String> {
    use palisade_core::verdict::{decide, Connection, Side, Verdict};
    let id = |key: &str| cluster.pods_sorted().into_iter().find(|&p| cluster.pod_key(p) == key).unwrap();
    let mut jobs = Vec::new();
    for (from, netns, _) in pods {
        for (to, _, addr) in pods {
            for protocol in [Protocol::TCP, Protocol::UDP] {
                let conn = Connection::new(Side::pod(cluster, id(from)), Side::pod(cluster, id(to)), 80, protocol);
                let allowed = decide(cluster, &conn).verdict == Verdict::Allow;
                *udp = if *udp >= 60000 { 30000 } else { *udp + 1 };
                jobs.push((format!("{from} -> {to} 80/{protocol}"), netns.clone(), *addr, protocol, *udp, allowed));
            }
        }
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(what, netns, addr, protocol, sport, allowed)| {
                scope.spawn(move || {
                    let timeout = Duration::from_millis(250);
                    let once = || match *protocol {
                        Protocol::UDP => traffic::probe_udp_from_port(netns, None, *sport, *addr, 80, timeout).unwrap(),
                        _ => traffic::probe(netns, None, *addr, 80, *protocol, timeout).unwrap(),
                    };
                    let reached = once() || once();
                    (reached != *allowed).then(|| format!("{what}: engine {allowed}"))
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn two_nodes_two_agents_cross_node_connections_decided_by_both_ends() {
    let Some(_one) = lab_slot() else { return };
    let scratch = Scratch::new("kube-lab-two");
    let model = std::fs::read_to_string(common::repo().join("tests/conformance/model.yaml")).unwrap();
    let mut objects = palisade_fakeapi::rbac::documents(&model).unwrap();
    // Pods a and b of x and y on n1, the rest on n2.
    let on = |o: &Value| {
        if ["a", "b"].contains(&o["metadata"]["name"].as_str().unwrap()) && o["metadata"]["namespace"] != "z" {
            "n1"
        } else {
            "n2"
        }
    };
    for o in objects.iter_mut().filter(|o| o["kind"] == "Pod") {
        o["spec"]["nodeName"] = on(o).into();
    }
    let (n1, n2) = (ip("198.18.100.1"), ip("198.18.100.2"));
    for (name, addr) in [("n1", n1), ("n2", n2)] {
        objects.push(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": addr.to_string()}]}}));
    }
    let pods_of = |node: &str| -> Vec<Value> {
        objects.iter().filter(|o| o["kind"] == "Pod" && on(o) == node).cloned().collect()
    };
    let address = |o: &Value| ip(o["status"]["podIP"].as_str().unwrap());
    let (p1, p2) = (pods_of("n1"), pods_of("n2"));
    let lab1 = Topology::build(&p1.iter().map(|o| (vec![address(o)], false)).collect::<Vec<_>>()).unwrap();
    let lab2 = Topology::build(&p2.iter().map(|o| (vec![address(o)], false)).collect::<Vec<_>>()).unwrap();
    palisade_lab::topology::join(&lab1, n1, &lab2, n2).unwrap();
    let mut pods: Vec<LabPodAt> = Vec::new();
    for (lab, objs) in [(&lab1, &p1), (&lab2, &p2)] {
        for (lab_pod, o) in lab.pods.iter().zip(objs.iter()) {
            traffic::serve(&lab_pod.netns, &[(80, Protocol::TCP), (80, Protocol::UDP)], false, None).unwrap();
            let key =
                format!("{}/{}", o["metadata"]["namespace"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap());
            pods.push((key, lab_pod.netns.clone(), address(o)));
        }
    }
    // One fake API server, on n1's address: both nodes' agents watch it.
    let role = std::fs::read_to_string(common::repo().join("deploy/agent-rbac.yaml")).unwrap();
    let api = traffic::in_netns(&lab1.node, move || {
        let rbac = palisade_fakeapi::Rbac::from_manifest(&role, "palisade-agent").unwrap();
        let config = palisade_fakeapi::Config {
            rbac: Some(rbac),
            address: "198.18.100.1".parse().unwrap(),
            ..Default::default()
        };
        palisade_fakeapi::FakeApi::start(config).unwrap()
    })
    .unwrap();
    for obj in &objects {
        api.apply(obj.clone()).unwrap();
    }
    let kubeconfig = api.write_kubeconfig(&scratch.0).unwrap();
    let agents: Vec<Agent> = [(&lab1, "n1"), (&lab2, "n2")]
        .into_iter()
        .map(|(lab, node)| {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &lab.node])
                .arg(env!("CARGO_BIN_EXE_palisade"))
                .args(["agent", "--source", "kubernetes", "--node", node, "--kubeconfig", kubeconfig.to_str().unwrap()])
                .stdin(Stdio::null());
            Agent::spawn(cmd, scratch.path(&format!("agent-{node}.log")))
        })
        .collect();
    for a in &agents {
        a.wait_for("the first ruleset", 15 * SECOND, || a.log().contains("first ruleset"));
    }

    let mut rng = Rng(std::env::var("PALISADE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(29u64));
    let mut udp = 30000u16;
    let mut denied_cross_node = 0;
    for round in 0..12 {
        for _ in 0..1 + rng.below(4) {
            let name = format!("p{}", rng.below(4));
            let ns = *rng.pick(&NAMESPACES);
            if rng.below(4) == 0 {
                api.delete("networking.k8s.io/v1", "NetworkPolicy", Some(ns), &name).unwrap();
            } else {
                api.apply(random_policy(&mut rng, &name, ns)).unwrap();
            }
        }
        let cluster = engine_cluster(&api);
        let start = std::time::Instant::now();
        let diff = loop {
            let diff = two_node_differences(&cluster, &pods, &mut udp);
            if diff.is_empty() || start.elapsed() > 5 * SECOND {
                break diff;
            }
        };
        let logs: Vec<String> = agents.iter().map(Agent::log).collect();
        assert!(
            diff.is_empty(),
            "round {round}: the kernels differ from the engine:\n{}\n{}",
            diff.join("\n"),
            logs.join("\n")
        );
        // Count the cross-node pairs policy denies: the test must exercise both ends.
        use palisade_core::verdict::{decide, Connection, Side, Verdict};
        for s in cluster.pods_sorted() {
            for d in cluster.pods_sorted() {
                let cross = cluster.pods[s].node != cluster.pods[d].node;
                let conn = Connection::new(Side::pod(&cluster, s), Side::pod(&cluster, d), 80, Protocol::TCP);
                denied_cross_node += usize::from(cross && decide(&cluster, &conn).verdict != Verdict::Allow);
            }
        }
    }
    assert!(denied_cross_node > 0, "no cross-node pair was denied: the rounds proved nothing about enforcement");
    eprintln!("two nodes: 12 rounds, {denied_cross_node} denied cross-node pairs over the rounds");
}
