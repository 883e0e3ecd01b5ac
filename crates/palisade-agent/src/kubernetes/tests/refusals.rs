//! What one object's breakage holds back: only that object. A removal that breaks another
//! object (a Tier deleted while a policy is in it) keeps the removed object's last version;
//! changes that came in the same batch and build are applied with the next transaction.

use palisade_kube::kinds::KINDS;
use palisade_kube::Change;
use serde_json::Value;

use super::objects::object;
use super::{agent, apply, key, kind_of, listed, Feed};
use crate::enforcement::build_options;

/// The index in KINDS of the kind named `name`.
fn at(name: &str) -> usize {
    KINDS.iter().position(|k| k.to_string() == name).unwrap()
}

#[test]
fn a_removal_that_breaks_another_object_holds_back_only_itself() {
    let (tier, calico, namespace) = (at("projectcalico.org/v3 Tier"), at("projectcalico.org/v3 NetworkPolicy"), 0);
    // Tier t0 and a policy in it (slot 1 of Calico's NetworkPolicy lives in t0), namespace a.
    let objects: Vec<Value> = vec![object(namespace, 0, 0), object(tier, 0, 0), object(calico, 1, 0)];
    let mut agent = agent();
    agent.turn(vec![Feed::Kinds(KINDS.iter().collect())]);
    let mut first = Vec::new();
    for kind in KINDS {
        let of: Vec<Value> = objects.iter().filter(|o| kind_of(o) == kind).cloned().collect();
        first.extend(listed(kind, &of));
    }
    agent.feed(first);
    assert_eq!(agent.transactions(), 1);

    // One batch: the Tier goes (its policy still in it), and an unrelated namespace comes.
    let b = object(namespace, 1, 0);
    agent.feed(vec![Change::Delete(key(&object(tier, 0, 0))), apply(&b)]);
    let opts = build_options(&super::config());
    let held: Vec<String> = agent.view.inputs().map(|i| i.label(&opts)).collect();
    assert!(held.contains(&"Namespace b".to_string()), "the unrelated namespace is held back: {held:?}");
    assert!(held.contains(&"Tier t0".to_string()), "the Tier its policy needs went: {held:?}");
    let refused: Vec<String> = agent.view.refused.keys().map(ToString::to_string).collect();
    assert_eq!(refused, ["Tier t0"], "only the breaking removal is refused");
    assert!(agent.view.refused.values().all(|r| r.kept), "the Tier's last version stays in force");
    assert_eq!(agent.kernel_differences(), Vec::<String>::new());
}
