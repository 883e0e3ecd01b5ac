//! The kernel does what the engine says: every truth table, and the seed examples that use lab
//! addresses, built as network-namespace pods, enforced with nftables, probed pair by pair.
//! Needs root, `ip` and `nft` (CI installs them). Set PALISADE_SKIP_LAB=1 to skip on machines
//! where that is impossible; CI never sets it.

mod common;

use common::lab::lab_slot;
use common::{palisade, repo};

fn lab(args: &[&str]) -> (i32, String, String) {
    let out = palisade().current_dir(repo()).arg("lab").args(args).arg("-q").output().unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

#[test]
fn every_truth_table_holds_in_the_kernel() {
    let Some(_one) = lab_slot() else { return };
    let dir = repo().join("tests/conformance/cases");
    let mut cases: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    let mut failures = Vec::new();
    let mut node_rows = 0;
    for case in &cases {
        let case = case.to_str().unwrap();
        let probes = ["--port", "80", "--port", "81", "--protocol", "TCP", "--protocol", "UDP", "--protocol", "SCTP"];
        let mut args = vec!["tests/conformance/model.yaml", case];
        args.extend(probes);
        let (code, out, err) = lab(&args);
        if code != 0 {
            failures.push(format!("{case}: exit {code}\n{out}{err}"));
        }
        // Nodes probe every pod from their own address (and are probed).
        node_rows += out.lines().filter(|l| l.trim_start().starts_with("node:")).count();
    }
    assert!(cases.len() >= 61, "only {} cases", cases.len());
    assert!(node_rows >= 12, "the cases with nodes probe from them: {node_rows} node rows");
    assert!(
        failures.is_empty(),
        "{} of {} cases differ in the kernel:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn calico_seed_example_holds_in_the_kernel() {
    let Some(_one) = lab_slot() else { return };
    let (code, out, err) = lab(&[
        "examples/calico-wordpress",
        "--port",
        "80",
        "--port",
        "11011",
        "--port",
        "3306",
        "--port",
        "53",
        "--protocol",
        "TCP",
        "--protocol",
        "UDP",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches("kernel == engine").count(), 8, "{out}");
}

#[test]
fn ipv6_pods_hold_in_the_kernel() {
    let Some(_one) = lab_slot() else { return };
    let args = ["tests/lab/ipv6.yaml", "--port", "8080", "--port", "80", "--protocol", "TCP", "--protocol", "UDP"];
    let (code, out, err) = lab(&args);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches("kernel == engine").count(), 4, "{out}");
    assert!(out.contains("lab: 3 pods, 1 node;"), "{out}");
    // Node six reaches c though c admits only a; c's egress keeps c from its node.
    assert!(out.contains("8080/TCP: kernel == engine  (13 of 16 pairs allowed"), "{out}");
    assert!(out.contains("  node:six  ++++\n"), "{out}");
}

/// A host-network pod on a host endpoint: it lives in the node namespace; GlobalNetworkPolicy
/// guards it in the input and output hooks, with Felix's failsafe ports (22) always open.
#[test]
fn host_endpoints_and_failsafe_ports_hold_in_the_kernel() {
    let Some(_one) = lab_slot() else { return };
    let args = [
        "tests/conformance/model.yaml",
        "tests/conformance/cases/calico-16-host-endpoint.yaml",
        "--port",
        "80",
        "--port",
        "22",
        "--protocol",
        "TCP",
        "--protocol",
        "UDP",
    ];
    let (code, out, err) = lab(&args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("lab: 10 pods"), "the host-network pod is in the lab:\n{out}");
    assert!(out.contains("22/TCP: kernel == engine  (91 of 100 pairs allowed"), "{out}");
}

#[test]
fn lab_json_has_the_matrix_shape_with_the_engine_beside_it() {
    let Some(_one) = lab_slot() else { return };
    let args =
        ["tests/conformance/model.yaml", "tests/conformance/cases/01-default-deny-ingress.yaml", "--output", "json"];
    let (code, out, err) = lab(&args);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &v["results"][0];
    assert_eq!((r["port"].as_u64(), r["protocol"].as_str()), (Some(80), Some("TCP")));
    assert_eq!(r["allowed"], r["engine"]);
    assert_eq!(r["allowed"]["y/a"], serde_json::json!(["y/a", "y/b", "y/c", "z/a", "z/b", "z/c"]));
    assert_eq!(r["differences"], serde_json::json!([]));
}

/// The lab sends TCP and UDP (SCTP where the kernel has it): a protocol by number (GRE) is
/// skipped with a message, and the rest is still probed.
#[test]
fn a_protocol_the_lab_cannot_send_is_skipped_with_a_message() {
    let Some(_one) = lab_slot() else { return };
    let args = [
        "tests/conformance/model.yaml",
        "tests/conformance/cases/01-default-deny-ingress.yaml",
        "--protocol",
        "TCP",
        "--protocol",
        "47",
        "--output",
        "json",
    ];
    let (code, out, err) = lab(&args);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let skipped: Vec<&str> = v["skipped_probes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(
        skipped,
        ["protocol 47: skipped, the lab probes TCP, UDP and SCTP only (the engine and nft decide every protocol)"]
    );
    let probed: Vec<&str> = v["results"].as_array().unwrap().iter().map(|r| r["protocol"].as_str().unwrap()).collect();
    assert_eq!(probed, ["TCP"]);
}

#[test]
fn lab_refuses_addresses_outside_its_ranges() {
    let Some(_one) = lab_slot() else { return };
    let child = palisade()
        .current_dir(repo())
        .args(["lab", "examples/node-network-egress/cluster.yaml", "-q"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The lab names its namespaces `pal-<its pid>-...`: only those are this test's to check.
    let own = format!("pal-{}-", child.id());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("lab pods may only use 198.18.0.0/15 or fd00::/8"), "{err}");
    let names = std::process::Command::new("ip").args(["netns", "list"]).output().unwrap();
    let names = String::from_utf8_lossy(&names.stdout);
    assert!(!names.lines().any(|l| l.starts_with(&own)), "no namespace of this lab run is left behind: {names}");
}

/// A node's own address opens its pods whatever the policies say; a pod that puts that address
/// on its packets must not: IPv6 forwards such packets (IPv4 drops them as martians), so the
/// table drops what arrives from outside with a local source. One-way UDP shows it (a spoofed
/// TCP handshake fails anyway: the answer goes to the node).
#[test]
fn a_pod_cannot_borrow_its_nodes_exception() {
    use palisade_lab::{traffic, Topology};
    use std::net::{IpAddr, SocketAddr, UdpSocket};
    let Some(_one) = lab_slot() else { return };
    let load = palisade_load::load_paths(&[repo().join("tests/lab/ipv6.yaml")], &Default::default()).unwrap();
    let cluster = load.cluster.expect("loads");
    let pods = cluster.pods_sorted();
    let layout: Vec<_> = pods.iter().map(|&p| (cluster.pods[p].ips.clone(), false)).collect();
    let node: IpAddr = "fd00::100".parse().unwrap();
    let topo = Topology::build_with_node_addresses(&layout, &[node]).unwrap();
    let rs = palisade_nft::compile(&cluster, &palisade_nft::Options::default());
    palisade_nft::kernel::Kernel::open(Some(&topo.node))
        .unwrap()
        .apply(&palisade_nft::script::full_commands(&rs))
        .unwrap();
    let at = |key: &str| pods.iter().position(|&p| cluster.pod_key(p) == key).unwrap();
    let (b, c) = (at("six/b"), at("six/c"));
    let to = SocketAddr::new(cluster.pods[pods[c]].ips[0], 9999);
    let inbox = traffic::in_netns(&topo.pods[c].netns, move || UdpSocket::bind("[::]:9999")).unwrap().unwrap();
    inbox.set_read_timeout(Some(std::time::Duration::from_millis(500))).unwrap();
    // Whether a datagram sent from `netns`, from the node's address, reaches c (three tries).
    let arrives = |netns: &str| {
        (0..3).any(|_| {
            let sent = traffic::in_netns(netns, move || UdpSocket::bind(SocketAddr::new(node, 0))?.send_to(b"x", to));
            sent.unwrap().unwrap();
            inbox.recv_from(&mut [0u8; 16]).is_ok()
        })
    };
    assert!(arrives(&topo.node), "node six opens its pod c (by policy, only six/a may)");
    let spoof = std::process::Command::new("ip")
        .args(["-n", &topo.pods[b].netns, "addr", "add", "fd00::100/128", "dev", "eth0", "nodad"])
        .status()
        .unwrap();
    assert!(spoof.success());
    assert!(!arrives(&topo.pods[b].netns), "six/b sending from node six's address is still six/b");
}

/// The agent under test, killed whatever happens to the test.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch network namespace that is removed when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("pal-test-{tag}-{}", std::process::id());
        let ok = std::process::Command::new("ip").args(["netns", "add", &name]).status().unwrap().success();
        assert!(ok, "ip netns add {name}");
        Netns(name)
    }
    fn table(&self) -> String {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.0, "nft", "list", "table", "inet", "palisade"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn agent_applies_updates_holds_back_invalid_input_and_leaves_the_table_when_killed() {
    let Some(_one) = lab_slot() else { return };
    let ns = Netns::new("agent");
    let dir = std::env::temp_dir().join(format!("palisade-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(repo().join("tests/conformance/model.yaml"), dir.join("model.yaml")).unwrap();
    let policy = dir.join("policy.yaml");
    std::fs::copy(repo().join("tests/conformance/cases/01-default-deny-ingress.yaml"), &policy).unwrap();
    let mut agent = Agent(
        palisade()
            .args(["agent", "--source", dir.to_str().unwrap(), "--netns", &ns.0, "--interval-ms", "50"])
            .args(["--verify-after-ms", "100"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Default deny for x: its three pods jump to one ingress chain.
    wait_for("the first ruleset", || ns.table().matches("jump in_").count() == 3);
    // A change: only x/a isolated now.
    let text =
        std::fs::read_to_string(&policy).unwrap().replace("podSelector: {}", "podSelector: {matchLabels: {pod: a}}");
    std::fs::write(&policy, text).unwrap();
    wait_for("the update", || ns.table().matches("jump in_").count() == 1);
    // A pod comes that the policy selects, and goes (the object path).
    let pod = dir.join("pod.yaml");
    let pod_text = "apiVersion: v1\nkind: Pod\nmetadata: {name: d, namespace: x, labels: {pod: a}}\nspec: {containers: [{name: s, image: agnhost}]}\nstatus: {podIP: 198.18.99.1}\n";
    std::fs::write(&pod, pod_text).unwrap();
    wait_for("the new pod", || ns.table().contains("198.18.99.1 : jump in_"));
    std::fs::remove_file(&pod).unwrap();
    wait_for("the pod gone", || !ns.table().contains("198.18.99.1"));
    // Quiet now: the agent checks the patched table against a full compile.
    std::thread::sleep(std::time::Duration::from_millis(600));
    // A new policy that does not validate is left out (the table stays as it was), and a pod
    // change goes ahead while that file is there.
    let before = ns.table();
    std::fs::write(dir.join("broken.yaml"), "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{from: [{}]}]\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(ns.table(), before, "an invalid new policy must not touch the table");
    std::fs::write(&pod, pod_text).unwrap();
    wait_for("the pod, while another file does not validate", || ns.table().contains("198.18.99.1 : jump in_"));
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut agent.0.stderr.take().unwrap(), &mut log).unwrap();
    assert!(
        log.contains("held back: NetworkPolicy x/b") && log.contains("left out (new, and it does not validate)"),
        "{log}"
    );
    assert!(log.contains("updated in"), "{log}");
    // The policy edit and the pod churn took their paths, and the full compile after them
    // (when the directory went quiet) found nothing to mend.
    assert!(log.contains("(object path: 0 pod and 2 policy objects)"), "{log}");
    assert!(log.contains("(object path: 1 pod and 0 policy objects)"), "{log}");
    assert!(log.contains("checked against a full compile: no difference"), "{log}");
    assert!(!log.contains("differences to the full compile"), "{log}");
    assert!(ns.table().contains("jump in_"), "killing the agent leaves enforcement in place");
    let counters =
        palisade().args(["agent", "--source", dir.to_str().unwrap(), "--netns", &ns.0, "--counters"]).output().unwrap();
    let counters = String::from_utf8_lossy(&counters.stdout);
    assert!(counters.lines().any(|l| l.ends_with("end of tier default")), "{counters}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 6's proof: play an application's traffic in a lab with no policy while the agent
/// records it (audit mode, flow log), generate policies from the log, enforce them, and probe
/// every pair: the recorded connections (and DNS) pass, everything else is denied.
#[test]
fn generated_policies_allow_exactly_the_recorded_traffic() {
    use palisade_core::port::Protocol;
    use palisade_lab::{traffic, Topology};
    let Some(_one) = lab_slot() else { return };
    let example = repo().join("tests/lab/generate");
    let load = palisade_load::load_paths(&[example.join("cluster.yaml")], &Default::default()).unwrap();
    let cluster = load.cluster.expect("the lab cluster loads");
    let pods = cluster.pods_sorted();
    let layout: Vec<_> = pods.iter().map(|&p| (cluster.pods[p].ips.clone(), false)).collect();
    let topo = Topology::build(&layout).unwrap();
    for (k, &p) in pods.iter().enumerate() {
        let ports: Vec<(u16, Protocol)> = cluster.pods[p].ports.iter().map(|c| (c.port, c.protocol)).collect();
        traffic::serve(&topo.pods[k].netns, &ports, false, None).unwrap();
    }
    let at = |key: &str| pods.iter().position(|&p| cluster.pod_key(p) == key).unwrap_or_else(|| panic!("no pod {key}"));
    let dir = std::env::temp_dir().join(format!("palisade-generate-lab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("source")).unwrap();
    std::fs::copy(example.join("cluster.yaml"), dir.join("source/cluster.yaml")).unwrap();
    let log = dir.join("flows.jsonl");
    let source = dir.join("source");
    let agent = |extra: &[&str]| {
        let mut c = palisade();
        c.args(["agent", "--source", source.to_str().unwrap(), "--netns", &topo.node, "--interval-ms", "50"])
            .args(extra);
        c
    };
    // Record: nothing is isolated yet, and the agent notes each new connection.
    let recorder = Agent(
        agent(&["--mode", "audit", "--flow-log", log.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let flows_set = || {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &topo.node, "nft", "list", "set", "inet", "palisade", "flows_4"])
            .output()
            .unwrap();
        out.status.success()
    };
    wait_for("the recording table", flows_set);
    let traffic_csv = std::fs::read_to_string(example.join("traffic.csv")).unwrap();
    let pattern: Vec<(usize, usize, u16, Protocol)> = traffic_csv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("src,"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (at(f[0]), at(f[1]), f[2].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect();
    let timeout = std::time::Duration::from_millis(500);
    let reach = |s: usize, d: usize, port: u16, proto: Protocol| {
        let dst = cluster.pods[pods[d]].ips[0];
        let first = traffic::probe(&topo.pods[s].netns, None, dst, port, proto, timeout).unwrap();
        first || traffic::probe(&topo.pods[s].netns, None, dst, port, proto, timeout).unwrap()
    };
    for &(s, d, port, proto) in &pattern {
        assert!(reach(s, d, port, proto), "before any policy, {s} -> {d} {port}/{proto} must pass");
    }
    let lines = || std::fs::read_to_string(&log).unwrap_or_default().lines().count();
    wait_for("the flow log", || lines() >= pattern.len());
    drop(recorder);
    assert_eq!(lines(), pattern.len(), "one record per connection:\n{}", std::fs::read_to_string(&log).unwrap());
    // Generate, and let the engine check the result.
    let generated = dir.join("source/generated");
    let out = palisade()
        .args(["generate", "--flows", log.to_str().unwrap(), "--out", generated.to_str().unwrap()])
        .arg(example.join("cluster.yaml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("nothing beyond what was observed"), "{err}");
    let written: String = std::fs::read_dir(generated.join("shop"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(!written.contains("pod-template-hash") && !written.contains("controller-revision-hash"), "{written}");
    // Enforce the generated set, then probe every pair on every port of the pattern.
    let applied = agent(&["--once"]).output().unwrap();
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let dns = at("kube-system/coredns-1");
    let mut ports: Vec<(u16, Protocol)> = pattern.iter().map(|&(_, _, p, pr)| (p, pr)).collect();
    ports.sort();
    ports.dedup();
    let cases: Vec<(usize, usize, u16, Protocol)> = ports
        .iter()
        .flat_map(|&(port, proto)| {
            let n = pods.len();
            (0..n).flat_map(move |s| (0..n).filter(move |&d| d != s).map(move |d| (s, d, port, proto)))
        })
        .collect();
    // Denied probes wait for their timeout: run them all at once.
    let wrong: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .map(|&(s, d, port, proto)| {
                let reach = &reach;
                scope.spawn(move || (s, d, port, proto, reach(s, d, port, proto)))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| {
                let (s, d, port, proto, got) = h.join().unwrap();
                let recorded = pattern.contains(&(s, d, port, proto));
                let shop = cluster.pod_key(pods[s]).starts_with("shop/");
                let expected = recorded || (d == dns && port == 53 && shop);
                (got != expected).then(|| {
                    format!(
                        "{} -> {} {port}/{proto}: expected {expected}",
                        cluster.pod_key(pods[s]),
                        cluster.pod_key(pods[d])
                    )
                })
            })
            .collect()
    });
    drop(topo);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(wrong.is_empty(), "the kernel with the generated policies:\n{}", wrong.join("\n"));
}
