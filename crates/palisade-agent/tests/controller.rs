//! The controller loop against the fake kernel (no root, no network namespace): what it
//! refuses, how it adopts a table in force, restores one someone else flushed, and sends
//! changes as deltas or, when the kernel refuses a delta, as the whole table.

use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_agent::kernel::Fake;
use palisade_agent::{Agent, Config, Mode};
use palisade_nft::script::Command;

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
const POLICY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: shop}\n\
spec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {app: web}}\n";

fn pod(name: &str, app: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop, labels: {{app: {app}}}}}\n\
spec: {{containers: [{{name: c}}]}}\nstatus: {{podIP: {ip}}}\n"
    )
}

/// A manifest directory of this test's own, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str, files: &[(&str, String)]) -> Dir {
        let dir = std::env::temp_dir().join(format!("pal-agent-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let d = Dir(dir);
        for (name, text) in files {
            d.write(name, text);
        }
        d
    }

    fn write(&self, name: &str, text: &str) {
        // Written whole elsewhere and renamed into place, as manifests should be.
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, self.0.join(name)).expect("rename");
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(source: &Path, once: bool) -> Config {
    Config {
        source: source.to_path_buf(),
        kubeconfig: None,
        context: None,
        listen: None,
        node: None,
        netns: None,
        mode: Mode::Enforce,
        once,
        interval: Duration::from_millis(10),
        settle: Duration::from_millis(10),
        reconcile: Duration::from_secs(3600),
        verify_after: Duration::from_secs(3600),
        namespace: None,
        flow_log: None,
    }
}

fn valid() -> Vec<(&'static str, String)> {
    vec![
        ("ns.yaml", NAMESPACE.to_string()),
        ("web.yaml", pod("web", "web", "198.18.0.1")),
        ("db.yaml", pod("db", "db", "198.18.0.2")),
        ("policy.yaml", POLICY.to_string()),
    ]
}

/// A second pod with the first one's address: the build refuses it.
fn with_clash() -> Vec<(&'static str, String)> {
    let mut files = valid();
    files.push(("clash.yaml", pod("clash", "web", "198.18.0.1")));
    files
}

fn whole(transaction: &[Command]) -> bool {
    matches!(transaction.first(), Some(Command::ReplaceTable))
}

/// Turns the loop until `done` holds (bounded: two seconds).
fn turn_until(agent: &mut Agent<Fake>, done: impl Fn(&Agent<Fake>) -> bool) {
    for _ in 0..200 {
        agent.turn();
        if done(agent) {
            return;
        }
    }
    panic!("the agent did not get there in 200 turns");
}

#[test]
fn invalid_input_is_refused_while_a_table_is_in_force() {
    let dir = Dir::new("refuse", &with_clash());
    let kernel = Fake::holding(vec![Command::ReplaceTable]);
    let refused = Agent::start(config(&dir.0, false), kernel, None).err().expect("refused");
    assert!(refused.0.contains("the table in force stays as it is"), "{refused}");
}

#[test]
fn a_fresh_node_enforces_what_validates_but_once_refuses() {
    let dir = Dir::new("fresh", &with_clash());
    assert!(Agent::start(config(&dir.0, true), Fake::new(), None).is_err(), "--once applies nothing invalid");
    let agent = Agent::start(config(&dir.0, false), Fake::new(), None).expect("started");
    let committed = agent.kernel().committed();
    assert_eq!(committed.len(), 1);
    assert!(whole(&committed[0]), "the first load replaces the table whole");
    let names: Vec<String> = agent.cluster().pod_ids().map(|p| agent.cluster().pod_key(p)).collect();
    // The build blames the second of the two pods with one address (files in name order).
    assert_eq!(names, ["shop/clash", "shop/db"], "the pod that clashes is held back alone");
}

#[test]
fn a_table_in_force_is_adopted_by_replacing_it_in_one_transaction() {
    let dir = Dir::new("adopt", &valid());
    let kernel = Fake::holding(vec![Command::ReplaceTable, Command::AddChain { name: "stale".into(), hook: None }]);
    let agent = Agent::start(config(&dir.0, false), kernel, None).expect("started");
    let committed = agent.kernel().committed();
    assert_eq!(committed.len(), 1);
    assert!(whole(&committed[0]));
}

#[test]
fn a_flushed_table_is_restored_whole() {
    let dir = Dir::new("flush", &valid());
    let mut c = config(&dir.0, false);
    c.reconcile = Duration::from_millis(1);
    let mut agent = Agent::start(c, Fake::new(), None).expect("started");
    // The periodic comparison finds the table as it should be: nothing sent, nothing restored.
    for _ in 0..5 {
        agent.turn();
    }
    assert_eq!((agent.kernel().committed().len(), agent.restores()), (1, 0));
    agent.kernel().flush();
    turn_until(&mut agent, |a| a.restores() == 1);
    let committed = agent.kernel().committed();
    assert!(agent.kernel().has_table());
    assert_eq!(committed.len(), 2);
    assert_eq!(committed[1], committed[0], "the whole table, as first loaded");
}

#[test]
fn a_change_goes_out_as_a_delta_and_a_refused_delta_as_the_whole_table() {
    let dir = Dir::new("delta", &valid());
    let mut agent = Agent::start(config(&dir.0, false), Fake::new(), None).expect("started");
    dir.write("api.yaml", &pod("api", "web", "198.18.0.3"));
    turn_until(&mut agent, |a| a.kernel().committed().len() == 2);
    let committed = agent.kernel().committed();
    assert!(!whole(&committed[1]), "one pod is a delta: {:?}", committed[1]);
    assert!(agent.cluster().pod("shop", "api").is_some());
    agent.kernel().refuse_next(1);
    dir.write("cache.yaml", &pod("cache", "web", "198.18.0.4"));
    turn_until(&mut agent, |a| a.kernel().committed().len() == 3);
    let committed = agent.kernel().committed();
    assert!(whole(&committed[2]), "after the refusal the table is replaced whole");
    assert!(agent.cluster().pod("shop", "cache").is_some());
}
