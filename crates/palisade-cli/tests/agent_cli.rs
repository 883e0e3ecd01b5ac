//! `palisade agent` without root: the ruleset it would apply (`--dry-run`) and its refusals.

mod common;

use common::{palisade, repo};

fn dry_run(extra: &[&str]) -> (i32, String, String) {
    let out = palisade()
        .current_dir(repo())
        .args(["agent", "--source", "examples/calico-wordpress", "--dry-run"])
        .args(extra)
        .output()
        .unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

#[test]
fn dry_run_prints_one_transaction_that_replaces_only_palisades_table() {
    let (code, out, _) = dry_run(&[]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["add table inet palisade", "delete table inet palisade", "add table inet palisade"]);
    assert!(lines.iter().all(|l| l.contains(" inet palisade")), "every command names Palisade's table");
    assert!(out.contains("ct state established,related accept"));
    assert!(out.contains("comment \"wordpress/default-deny ingress[0] Deny\""), "{out}");
    assert!(out.contains("counter drop comment \"end of tier default\""));
}

#[test]
fn audit_mode_logs_instead_of_dropping() {
    let (code, out, _) = dry_run(&["--mode", "audit"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("log prefix \"palisade audit deny wordpress/default-deny ingress[0] Deny: \" accept"),
        "{out}"
    );
    let policy_drops = out
        .lines()
        .filter(|l| !l.contains("ct state invalid") && (l.ends_with("drop") || l.contains(" drop comment")))
        .count();
    assert_eq!(policy_drops, 0, "audit mode drops nothing but invalid packets:\n{out}");
}

#[test]
fn invalid_input_is_refused_before_anything_is_applied() {
    let out =
        palisade().current_dir(repo()).args(["agent", "--source", "tests/invalid", "--dry-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused:"));
    assert!(out.stdout.is_empty());
}

#[test]
fn flow_sets_are_in_the_table_only_with_a_flow_log() {
    let (_, plain, _) = dry_run(&[]);
    assert!(!plain.contains("flows_4"), "no per-packet cost unless a flow log is asked for");
    let (code, logged, _) = dry_run(&["--flow-log", "/dev/null"]);
    assert_eq!(code, 0);
    assert!(logged.contains("add set inet palisade flows_4 { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags dynamic, timeout;"), "{logged}");
    // Connections from pods are first seen on prerouting, the node's own on output.
    for (chain, noted) in [("prerouting", true), ("output", true), ("input", false), ("postrouting", false)] {
        let rule =
            format!("add rule inet palisade {chain} meta l4proto {{ tcp, udp, sctp }} ct state new update @flows_6");
        assert_eq!(logged.contains(&rule), noted, "{chain}: {logged}");
    }
}
