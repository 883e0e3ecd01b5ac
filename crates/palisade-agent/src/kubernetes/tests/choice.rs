//! The table's choice between a delta and the whole table (`palisade_nft::cost`) never changes
//! what the kernel holds afterwards: a small change goes as a delta, one that replaces every
//! chain goes whole, and replayed, both leave exactly a full load of the target.

use std::time::{Duration, Instant};

use palisade_nft::ir::{Command, Element, Family, NamedSet, Rule, Stmt, Verdict};
use palisade_nft::{script, Ruleset};

use super::Replay;
use crate::kernel::Fake;
use crate::table::Table;

/// `chains` chains named `{prefix}N` of `rules` rules each, one set of `elements` addresses,
/// and ten addresses per chain in a verdict map.
fn ruleset(prefix: &str, chains: usize, rules: usize, elements: usize) -> Ruleset {
    let mut rs = Ruleset::default();
    for c in 0..chains {
        rs.chains.insert(format!("{prefix}{c}"), vec![Rule::new(vec![Stmt::Verdict(Verdict::Accept)]); rules]);
    }
    let items = (0..elements).map(|i| Element::Net(format!("198.18.{}.{}/32", i / 256, i % 256).parse().unwrap()));
    rs.sets.insert("s_4".into(), NamedSet { family: Family::V4, with_port: false, elements: items.collect() });
    // Pods' addresses jumping to the chains, as the verdict maps hold them.
    let jumps = (0..chains * 10).map(|i| {
        let ip: std::net::IpAddr = format!("198.19.{}.{}", i / 256, i % 256).parse().unwrap();
        (ip, format!("{prefix}{}", i % chains))
    });
    rs.maps.insert("egress_4".into(), jumps.collect());
    rs
}

/// Applies `old` whole, then the delta to `target` through the table: whether the table sent
/// the second transaction whole, and where the kernel then differs from a full load of `target`.
fn apply_change(old: &Ruleset, target: &Ruleset) -> (bool, Vec<String>) {
    let mut table = Table::new(Fake::new(), Duration::from_secs(3600));
    assert!(table.apply(&script::full_commands(old), old, Instant::now(), "first"));
    assert!(table.apply(&script::update_commands(old, target), target, Instant::now(), "change"));
    let committed = table.kernel.committed();
    let whole = matches!(committed.last().and_then(|t| t.first()), Some(Command::ReplaceTable));
    let mut replayed = Replay::default();
    committed.iter().for_each(|t| replayed.run(t));
    let mut want = Replay::default();
    want.run(&script::full_commands(target));
    (whole, replayed.differences(&want))
}

#[test]
fn delta_or_whole_the_kernel_ends_up_holding_the_target() {
    let old = ruleset("a", 200, 10, 50);
    let mut small = old.clone();
    small.chains.insert("b0".into(), vec![Rule::new(vec![Stmt::Verdict(Verdict::Drop)])]);
    let renamed = ruleset("c", 200, 10, 50);
    for (target, sent_whole) in [(&small, false), (&renamed, true)] {
        let (whole, differences) = apply_change(&old, target);
        assert_eq!(whole, sent_whole, "the estimate's choice");
        assert!(differences.is_empty(), "the kernel differs from the target:\n{}", differences.join("\n"));
    }
}
