//! The agent against what its directory and its kernel do to it, as root in scratch network
//! namespaces (`pal-...-<pid>`), with probes where traffic matters: a ConfigMap volume read
//! once per version and followed across flips, files taken only once complete (a denied
//! connection probed all along: no probe gets through), the table restored after `nft flush
//! ruleset` and a deleted element, a second agent refused, 5,000 policy files in one change,
//! and 200+ policy and pod updates under continuous probing. Set PALISADE_SKIP_LAB=1 where
//! root, `ip` and `nft` are not available.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::lab::{lab_possible, nft, table, write_atomically, Agent, ModelLab, Netns, Prober, Scratch};
use common::{palisade, repo};

/// One test at a time: they share the machine's two cores, and probes time out under load.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn slot() -> Option<std::sync::MutexGuard<'static, ()>> {
    lab_possible().then(|| SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

const SECOND: Duration = Duration::from_secs(1);

fn model() -> String {
    std::fs::read_to_string(repo().join("tests/conformance/model.yaml")).unwrap()
}

/// The agent's directory in a scratch directory, holding the model.
fn source(scratch: &Scratch) -> std::path::PathBuf {
    let dir = scratch.path("source");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("model.yaml"), model()).unwrap();
    dir
}

/// Isolates namespace x for ingress (or only its pods matching `pods`) and admits namespace y
/// on 80; `extra` peers are added to the rule.
fn guard(pods: &str, extra: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: guard, namespace: x}}\nspec:\n  podSelector: {pods}\n  ingress:\n  - from:\n    - namespaceSelector: {{matchLabels: {{ns: \"y\"}}}}\n{extra}    ports: [{{port: 80, protocol: TCP}}]\n"
    )
}

/// Writes one version of a ConfigMap volume as the kubelet's AtomicWriter does: the files in a
/// hidden timestamped directory, `..data` switched to it with one rename, a symlink per key,
/// then the old version and the keys it alone had removed.
fn project(dir: &std::path::Path, version: usize, files: &[(&str, &str)]) {
    let name = format!("..2026_01_01_00_00_{version:02}.000000001");
    std::fs::create_dir(dir.join(&name)).unwrap();
    for (key, text) in files {
        std::fs::write(dir.join(&name).join(key), text).unwrap();
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::os::unix::fs::symlink(&name, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for (key, _) in files {
        let _ = std::os::unix::fs::symlink(format!("..data/{key}"), dir.join(key));
    }
    if let Some(old) = old {
        for e in std::fs::read_dir(dir.join(&old)).unwrap() {
            let key = e.unwrap().file_name();
            if !files.iter().any(|(k, _)| std::ffi::OsStr::new(k) == key) {
                std::fs::remove_file(dir.join(&key)).unwrap();
            }
        }
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[test]
fn a_configmap_volume_is_read_once_per_version_and_followed_across_flips() {
    let Some(_one) = slot() else { return };
    let ns = Netns::new("configmap");
    let scratch = Scratch::new("configmap");
    let dir = scratch.path("volume");
    std::fs::create_dir(&dir).unwrap();
    let (model, deny_x) = (model(), guard("{}", ""));
    project(&dir, 1, &[("model.yaml", &model), ("policy.yaml", &deny_x)]);
    // No polling to speak of: only file events can bring the flips in time.
    let agent = Agent::start(&dir, &ns.0, &["--interval-ms", "600000"], scratch.path("agent.log"));
    agent.wait_for("the first ruleset", 10 * SECOND, || table(&ns.0).matches("jump in_").count() == 3);
    let only_a = guard("{matchLabels: {pod: a}}", "");
    project(&dir, 2, &[("model.yaml", &model), ("policy.yaml", &only_a)]);
    agent.wait_for("the second version", 5 * SECOND, || table(&ns.0).matches("jump in_").count() == 1);
    // The policy's key leaves the ConfigMap: watching went on after the first flip.
    project(&dir, 3, &[("model.yaml", &model)]);
    agent.wait_for("the third version", 5 * SECOND, || !table(&ns.0).contains("jump in_"));
    let log = agent.log();
    assert!(!log.contains("duplicate") && !log.contains("refused") && !log.contains("held back"), "{log}");
    assert_eq!(log.matches("updated in").count(), 2, "one change per version:\n{log}");
}

#[test]
fn files_are_taken_only_when_complete_and_the_table_is_kept_as_the_agent_left_it() {
    let Some(_one) = slot() else { return };
    let lab = Arc::new(ModelLab::build());
    let scratch = Scratch::new("complete");
    let dir = source(&scratch);
    let policy = dir.join("policy.yaml");
    let text = guard("{}", "");
    std::fs::write(&policy, &text).unwrap();
    let node = lab.topo.node.clone();
    // The periodic comparison is off: restores must come from the table's notifications.
    let args = ["--interval-ms", "100", "--settle-ms", "200", "--reconcile-ms", "600000"];
    let agent = Agent::start(&dir, &node, &args, scratch.path("agent.log"));
    agent.wait_for("the ruleset", 10 * SECOND, || table(&node).matches("jump in_").count() == 3);
    assert!(lab.probe("y/a", "x/a", SECOND), "y may open x");
    // z/c may never open x/a; it is probed all along while the policy file is rewritten badly.
    let denied = Prober::start(lab.clone(), "z/c", "x/a", Duration::from_millis(200), Duration::ZERO, 200);
    // Truncated, half written, a pause longer than the settle time, then the rest. The half
    // is a valid policy that admits everyone (`- from:` with no peers yet).
    {
        use std::io::Write;
        let half = text.find("  - from:\n").unwrap() + "  - from:\n".len();
        let mut f = std::fs::File::create(&policy).unwrap();
        f.write_all(&text.as_bytes()[..half]).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(700));
        f.write_all(&text.as_bytes()[half..]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    // Emptied and closed, then written again a while later.
    std::fs::write(&policy, "").unwrap();
    std::thread::sleep(Duration::from_millis(700));
    std::fs::write(&policy, &text).unwrap();
    // Cut in the middle (a YAML error), closed; fixed later.
    std::fs::write(&policy, &text[..text.len() - 25]).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    std::fs::write(&policy, &text).unwrap();
    // Editors' and tools' files that would open everything if they were read.
    let open_all = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: guard, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{}]\n";
    for name in [".policy.yaml.swp", ".policy.yaml.tmp", "policy.yaml~", "#policy.yaml#", ".#policy.yaml"] {
        std::fs::write(dir.join(name), open_all).unwrap();
    }
    std::thread::sleep(Duration::from_millis(700));
    let (probes, through) = denied.finish();
    assert_eq!(through, 0, "{through} of {probes} denied probes got through:\n{}", agent.log());
    assert!(probes >= 10, "only {probes} probes");
    assert!(lab.probe("y/a", "x/a", SECOND), "the allowed connection still is");
    // A flushed table (a host's nftables service restarting) is back within a second.
    assert!(nft(&node, &["flush", "ruleset"]));
    let took = agent.wait_for("the table restored", SECOND, || table(&node).matches("jump in_").count() == 3);
    eprintln!("flushed table restored after {} ms", took.as_millis());
    assert!(!lab.probe("z/c", "x/a", Duration::from_millis(300)), "denied again");
    // A deleted map element: x/a's ingress entry.
    assert!(nft(&node, &["delete", "element", "inet", "palisade", "ingress_4", "{ 198.18.1.1 }"]));
    agent.wait_for("the element restored", SECOND, || table(&node).contains("198.18.1.1 : jump in_"));
    // A second agent for the same namespace is refused, naming the first.
    let second = palisade().args(["agent", "--source", dir.to_str().unwrap(), "--netns", &node]).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("another palisade agent (pid {}) enforces", agent.pid())), "{err}");
    let status = palisade().args(["agent", "--source", ".", "--netns", &node, "--status"]).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("table restores: 2") && status.contains("held back: 0"), "{status}");
    let log = agent.log();
    assert!(log.contains("the table was changed by nft[") && log.contains("table deleted"), "{log}");
    assert!(log.contains("(elements added back"), "{log}");
    assert!(log.contains("holds no manifest") && log.contains("not taken, its objects stay as last applied"), "{log}");
    assert!(!log.contains("policy.yaml~") && !log.contains("swp"), "{log}");
}

#[test]
fn an_invalid_object_is_held_back_and_everything_else_goes_ahead() {
    let Some(_one) = slot() else { return };
    let ns = Netns::new("held");
    let scratch = Scratch::new("held");
    let dir = source(&scratch);
    std::fs::write(dir.join("policy.yaml"), guard("{}", "")).unwrap();
    let agent = Agent::start(&dir, &ns.0, &["--interval-ms", "100", "--settle-ms", "50"], scratch.path("agent.log"));
    agent.wait_for("the ruleset", 10 * SECOND, || table(&ns.0).matches("jump in_").count() == 3);
    // The policy changes into something invalid: its last good version stays (x isolated).
    write_atomically(&dir.join("policy.yaml"), &guard("{}", "    - {}\n"));
    // A new invalid policy is left out; a pod removal and a new pod go ahead meanwhile.
    write_atomically(
        &dir.join("new.yaml"),
        &guard("{}", "").replace("guard", "new").replace("port: 80", "port: 70000"),
    );
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: d, namespace: x, labels: {pod: d}}\nstatus: {podIP: 198.18.99.1}\n";
    write_atomically(&dir.join("pod.yaml"), pod);
    agent.wait_for("the new pod", 5 * SECOND, || table(&ns.0).contains("198.18.99.1 : jump in_"));
    assert_eq!(table(&ns.0).matches("jump in_").count(), 4, "x stays isolated, the new pod with it");
    let status = palisade().args(["agent", "--source", ".", "--netns", &ns.0, "--status"]).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("held back: 2"), "{status}");
    assert!(
        status.contains("NetworkPolicy x/guard") && status.contains("its last good version stays in force"),
        "{status}"
    );
    assert!(status.contains("NetworkPolicy x/new") && status.contains("left out"), "{status}");
    // Fixed: taken with the next change of the file.
    write_atomically(&dir.join("policy.yaml"), &guard("{matchLabels: {pod: a}}", ""));
    agent.wait_for("the fix", 5 * SECOND, || table(&ns.0).matches("jump in_").count() == 1);
    let log = agent.log();
    assert!(
        log.contains("held back: NetworkPolicy x/guard") && log.contains("no longer held back: NetworkPolicy x/guard"),
        "{log}"
    );
}

/// A policy file, one of 5,000: in namespace x, y or z, for pods a, b or c, from another
/// namespace on its own port.
fn bulk_policy(i: usize) -> String {
    let (ns, pod, from) = (["x", "y", "z"][i % 3], ["a", "b", "c"][i / 3 % 3], ["x", "y", "z"][i / 9 % 3]);
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: bulk-{i}, namespace: \"{ns}\"}}\nspec:\n  podSelector: {{matchLabels: {{pod: {pod}}}}}\n  ingress:\n  - from: [{{namespaceSelector: {{matchLabels: {{ns: \"{from}\"}}}}}}]\n    ports: [{{port: {}, protocol: TCP}}]\n",
        1000 + i
    )
}

#[test]
fn five_thousand_policy_files_in_one_change() {
    let Some(_one) = slot() else { return };
    let ns = Netns::new("bulk");
    let scratch = Scratch::new("bulk");
    let dir = source(&scratch);
    let args = ["--interval-ms", "100", "--settle-ms", "50", "--verify-after-ms", "300"];
    let agent = Agent::start(&dir, &ns.0, &args, scratch.path("agent.log"));
    agent.wait_for("the first ruleset", 10 * SECOND, || table(&ns.0).contains("chain prerouting"));
    // Written elsewhere, then moved in whole: one change (as a GitOps sync or a volume does).
    let staged = scratch.path("staged");
    std::fs::create_dir(&staged).unwrap();
    for i in 0..5000 {
        std::fs::write(staged.join(format!("p-{i:04}.yaml")), bulk_policy(i)).unwrap();
    }
    // Older than the settle time when they arrive (no event tells when they were closed).
    std::thread::sleep(Duration::from_millis(200));
    std::fs::rename(&staged, dir.join("bulk")).unwrap();
    // (Either change may go out as a delta or as the whole table, whichever the kernel takes
    // with less work: the log line then goes on with ", sent as the whole table".)
    let taken = "(object path: 0 pod and 5000 policy objects";
    agent.wait_for("5,000 policies", 120 * SECOND, || agent.log().contains(taken));
    agent.wait_for("the check", 60 * SECOND, || agent.log().contains("checked against a full compile"));
    let t = table(&ns.0);
    assert!(t.contains("\"y/bulk-4999 ingress[0] "), "the last policy is in the table");
    // And out again in one change.
    std::fs::rename(dir.join("bulk"), scratch.path("gone")).unwrap();
    agent.wait_for("5,000 policies gone", 120 * SECOND, || agent.log().matches(taken).count() == 2);
    agent.wait_for("no policy chain", 10 * SECOND, || !table(&ns.0).contains("jump in_"));
    let log = agent.log();
    for line in log.lines().filter(|l| l.contains("5000 policy objects")) {
        eprintln!("{line}");
    }
    assert!(!log.contains("differences to the full compile") && !log.contains("held back"), "{log}");
}

/// Churn: 240 updates of policies and pods, written the safe way and the plain way, none of
/// which lets z/c open x/a or stops y/a from opening it; both are probed all along.
#[test]
fn churn_never_opens_the_denied_connection_nor_closes_the_allowed_one() {
    let Some(_one) = slot() else { return };
    let lab = Arc::new(ModelLab::build());
    let scratch = Scratch::new("churn");
    let dir = source(&scratch);
    std::fs::write(dir.join("guard.yaml"), guard("{matchLabels: {pod: a}}", "")).unwrap();
    let node = lab.topo.node.clone();
    let args = ["--interval-ms", "50", "--settle-ms", "50", "--verify-after-ms", "500"];
    let agent = Agent::start(&dir, &node, &args, scratch.path("agent.log"));
    agent.wait_for("the ruleset", 10 * SECOND, || table(&node).matches("jump in_").count() == 1);
    let denied = Prober::start(lab.clone(), "z/c", "x/a", Duration::from_millis(200), Duration::ZERO, 400);
    let allowed = Prober::start(lab.clone(), "y/a", "x/a", SECOND, Duration::from_millis(5), 4000);
    // Peers that never include z/c: z's pods labelled b, all of y, x's own pods.
    let peers = [
        "    - namespaceSelector: {matchLabels: {ns: z}}\n      podSelector: {matchLabels: {pod: b}}\n",
        "    - podSelector: {}\n",
        "",
    ];
    let write = |name: &str, text: &str, n: usize| {
        let path = dir.join(name);
        if n.is_multiple_of(2) {
            write_atomically(&path, text);
        } else {
            std::fs::write(&path, text).unwrap();
        }
    };
    for n in 0..240usize {
        match n % 4 {
            // The guard rewritten: x/a or all of x, wider or narrower, y always admitted.
            0 => {
                let pods = if n.is_multiple_of(8) { "{}" } else { "{matchLabels: {pod: a}}" };
                write("guard.yaml", &guard(pods, peers[n / 4 % 3]), n);
            }
            // Another policy on x comes or goes.
            1 => {
                let name = format!("extra-{}.yaml", n / 4 % 6);
                if dir.join(&name).exists() {
                    std::fs::remove_file(dir.join(&name)).unwrap();
                } else {
                    write(
                        &name,
                        &guard("{matchLabels: {pod: b}}", peers[n % 3]).replace("guard", &format!("extra-{n}")),
                        n,
                    );
                }
            }
            // Pods come and go (in z, labelled like z/c too: never z/c's address).
            2 => {
                let name = format!("pod-{}.yaml", n / 4 % 5);
                if dir.join(&name).exists() {
                    std::fs::remove_file(dir.join(&name)).unwrap();
                } else {
                    let pod = format!(
                        "apiVersion: v1\nkind: Pod\nmetadata: {{name: churn-{n}, namespace: z, labels: {{pod: c}}}}\nstatus: {{podIP: 198.18.77.{}}}\n",
                        n % 250
                    );
                    write(&name, &pod, n);
                }
            }
            // A pod of x is relabelled back and forth.
            _ => {
                let label = if n % 8 == 3 { "b" } else { "bb" };
                let pod = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: e, namespace: x, labels: {{pod: {label}}}}}\nstatus: {{podIP: 198.18.78.1}}\n");
                write("pod-e.yaml", &pod, n);
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    std::thread::sleep(Duration::from_millis(500));
    let ((denied_probes, through), (allowed_probes, reached)) = (denied.finish(), allowed.finish());
    let log = agent.log();
    assert_eq!(through, 0, "{through} of {denied_probes} denied probes got through:\n{log}");
    assert_eq!(
        reached,
        allowed_probes,
        "{} of {allowed_probes} allowed probes failed:\n{log}",
        allowed_probes - reached
    );
    assert!(denied_probes >= 20 && allowed_probes >= 100, "{denied_probes} denied and {allowed_probes} allowed probes");
    let updates = log.matches("updated in").count();
    eprintln!("churn: {updates} transactions; {denied_probes} denied probes (0 through), {allowed_probes} allowed (all through)");
    assert!(updates >= 50, "only {updates} transactions for 240 file changes:\n{log}");
    agent.wait_for("the check", 10 * SECOND, || agent.log().contains("checked against a full compile"));
    let log = agent.log();
    // Every object validates: none held back. (A file written in place can be caught empty
    // between its truncation and its write, under load; it is then kept as it was, "not
    // taken", which is the safety net working, not a fault.)
    for held in ["its last good version stays", "left out", "stays in force, removing it"] {
        assert!(!log.contains(held), "{held}:\n{log}");
    }
    assert!(!log.contains("differences to the full compile"), "{log}");
}
