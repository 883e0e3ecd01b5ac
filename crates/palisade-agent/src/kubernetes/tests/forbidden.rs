//! A watch the API server forbids (403: the ClusterRole does not grant the kind): nothing is
//! sent to the kernel on its account, the table in force stays, and `/readyz` fails naming the
//! watch until it is back.

use palisade_kube::kinds::{Kind, KINDS};
use palisade_kube::watch::WatchError;
use palisade_kube::Change;
use serde_json::Value;

use super::objects::object;
use super::{agent, apply, kind, kind_of, listed, Feed, KubeAgent};
use crate::kernel::{Fake, Kernel};

/// The kinds every cluster serves (what discovery finds on a plain one).
fn always() -> Vec<&'static Kind> {
    KINDS.iter().filter(|k| k.always).collect()
}

/// What the API server answers a list or watch the role does not grant.
fn forbidden(kind: &'static Kind) -> Change {
    let message = format!(
        "{} is forbidden: User \"system:serviceaccount:kube-system:palisade-agent\" cannot watch resource \"{}\" in API group \"{}\" at the cluster scope",
        kind.plural, kind.plural, kind.group
    );
    Change::Error(WatchError { kind, code: Some(403), message })
}

/// One object of each of `kinds`, listed, every kind synced.
fn first_lists(kinds: &[&'static Kind]) -> Vec<Change> {
    let objects: Vec<Value> = (0..KINDS.len()).map(|k| object(k, 0, 0)).collect();
    kinds
        .iter()
        .flat_map(|kind| {
            let of: Vec<Value> = objects.iter().filter(|o| kind_of(o) == *kind).cloned().collect();
            listed(kind, &of)
        })
        .collect()
}

/// An agent that has applied its first ruleset on a plain cluster's kinds.
fn synced() -> KubeAgent<Fake> {
    let mut agent = agent();
    agent.turn(vec![Feed::Kinds(always())]);
    agent.feed(first_lists(&always()));
    assert_eq!(agent.transactions(), 1);
    assert_eq!(agent.readyz().0, 200, "{}", agent.readyz().1);
    agent
}

#[test]
fn a_kind_forbidden_from_the_start_means_no_transaction_and_not_ready_naming_its_watch() {
    let pods = kind("v1 Pod");
    // A restart: the kernel holds the table the last agent left.
    let before = crate::kernel::Fake::holding(vec![palisade_nft::script::Command::ReplaceTable]);
    let listing = before.listing().unwrap();
    let mut agent = agent();
    agent.table.kernel = before;
    agent.turn(vec![Feed::Kinds(always())]);
    let others: Vec<&'static Kind> = always().into_iter().filter(|k| *k != pods).collect();
    let mut changes = first_lists(&others);
    changes.push(forbidden(pods));
    agent.feed(changes);
    // Later changes of the kinds that do sync do not get a partial view applied either.
    agent.feed(vec![apply(&object(0, 1, 1))]);
    assert_eq!(agent.transactions(), 0, "a transaction from a partial view");
    assert_eq!(agent.table.kernel.listing().unwrap(), listing, "the table in force changed");
    let (code, why) = agent.readyz();
    assert_eq!(code, 503);
    assert!(why.contains("watch of v1 Pod failing: pods is forbidden"), "{why}");
    assert!(why.contains("not synced yet (nothing applied): v1 Pod"), "{why}");
    assert_eq!(agent.health.answer("/livez").0.as_u16(), 200, "losing a watch is no reason to restart");
}

#[test]
fn a_403_after_sync_keeps_the_table_and_fails_readiness_until_the_watch_is_back() {
    let mut agent = synced();
    let policies = kind("networking.k8s.io/v1 NetworkPolicy");
    let in_force = agent.table.kernel.listing().unwrap();
    agent.feed(vec![forbidden(policies)]);
    assert_eq!(agent.transactions(), 1, "a 403 sent a transaction");
    assert_eq!(agent.table.kernel.listing().unwrap(), in_force, "a 403 changed the table");
    assert_eq!(agent.kernel_differences(), Vec::<String>::new());
    let (code, why) = agent.readyz();
    assert_eq!(code, 503);
    assert!(why.contains("watch of networking.k8s.io/v1 NetworkPolicy failing: networkpolicies is forbidden"), "{why}");
    assert!(!why.contains("v1 Pod"), "only the forbidden watch is named: {why}");
    // Retried (the feed's backoff), still forbidden: still no transaction.
    agent.feed(vec![forbidden(policies)]);
    assert_eq!(agent.transactions(), 1);
    // The role is fixed: the kind lists again, ready again; its next change is applied.
    assert_eq!(agent.turn(vec![Feed::Recovered(policies)]), super::Next::Wait);
    assert_eq!(agent.readyz().0, 200, "{}", agent.readyz().1);
    let np = KINDS.iter().position(|k| k == policies).unwrap();
    agent.feed(vec![apply(&object(np, 0, 1))]);
    assert_eq!(agent.transactions(), 2, "the change after the watch came back");
    assert_eq!(agent.kernel_differences(), Vec::<String>::new());
}
