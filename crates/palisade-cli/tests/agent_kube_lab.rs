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

    // SIGTERM: exit 0, the table left in force, all with CAP_NET_ADMIN alone.
    let term = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(term.success());
    let code = agent.wait_exit(5 * SECOND);
    assert_eq!(code, Some(0), "{}", agent.log());
    assert!(table(&lab.node).contains("jump in_"), "the table stays in force");
    let log = agent.log();
    assert!(!log.contains("Operation not permitted") && !log.contains("cannot"), "{log}");
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
