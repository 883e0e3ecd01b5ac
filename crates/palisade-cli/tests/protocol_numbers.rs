//! Protocols by number: Calico rules name any IP protocol (`protocol: 47`, GRE), and every
//! command carries it: check (`--protocol 47`, names, `--port "protocol 47"` as diff prints
//! it), matrix, diff and reach (printed as `protocol 47`, never as a bare number that would
//! read as a port), and the nftables ruleset (`meta l4proto 47`).

mod common;

use common::{palisade, repo, run};

const CLUSTER: &str = "tests/review/families.yaml";
const GRE: &str = "tests/review/gre.yaml";
const CLOSED: &str = "tests/review/gre-closed.yaml";

/// (check arguments after --from/--to, the verdict line it must print).
const CHECKS: &[(&[&str], &str)] = &[
    (&["--protocol", "47"], "ALLOW  fam/v4 -> fam/dual-a protocol 47"),
    (&["--protocol", "protocol 47"], "ALLOW  fam/v4 -> fam/dual-a protocol 47"),
    (&["--port", "protocol 47"], "ALLOW  fam/v4 -> fam/dual-a protocol 47"),
    (&["--protocol", "50"], "DENY  fam/v4 -> fam/dual-a protocol 50"),
    (&["--protocol", "UDPLite"], "DENY  fam/v4 -> fam/dual-a UDPLite"),
    (&["--protocol", "udplite"], "DENY  fam/v4 -> fam/dual-a UDPLite"),
    (&["--protocol", "136"], "DENY  fam/v4 -> fam/dual-a UDPLite"),
    (&["--port", "80"], "DENY  fam/v4 -> fam/dual-a port 80/TCP"),
];

#[test]
fn check_decides_protocols_by_number_and_name() {
    for (extra, line) in CHECKS {
        let args = [&["check", "--from", "fam/v4", "--to", "fam/dual-a"][..], extra, &[CLUSTER, GRE]].concat();
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.starts_with(line), "{args:?}: want {line:?}:\n{out}");
    }
    let trace = run(&["check", "--from", "fam/v4", "--to", "fam/dual-a", "--protocol", "47", CLUSTER, GRE]).1;
    assert!(trace.contains("rule [0] Allow (tests/review/gre.yaml:8): matches: protocol 47  <- decides"), "{trace}");
    for bad in ["0", "256", "GRE"] {
        let (code, _, err) = run(&["check", "--from", "fam/v4", "--to", "fam/dual-a", "--protocol", bad, CLUSTER, GRE]);
        assert_eq!(code, 2, "--protocol {bad}");
        assert!(err.contains("a protocol number 1-255"), "{err}");
    }
    let (code, _, err) =
        run(&["check", "--from", "fam/v4", "--to", "fam/dual-a", "--protocol", "47", "--port", "80", CLUSTER, GRE]);
    assert_eq!(code, 2);
    assert!(err.contains("protocol 47 has no ports"), "{err}");
}

#[test]
fn matrix_diff_and_reach_carry_a_numbered_protocol() {
    let (code, out, err) = run(&["matrix", "--protocol", "47", "--output", "json", CLUSTER, GRE]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["protocol"], 47, "{out}");
    let (_, other, _) = run(&["matrix", "--protocol", "50", CLUSTER, GRE]);
    let (_, gre, _) = run(&["matrix", "--protocol", "47", CLUSTER, GRE]);
    assert!(gre.starts_with("protocol 47: 9 of 9 pod pairs allowed"), "{gre}");
    assert!(other.starts_with("protocol 50: 5 of 9 pod pairs allowed"), "v4 is open, each pod to itself: {other}");

    let (code, out, err) = run(&["diff", CLOSED, GRE, "--with", CLUSTER]);
    assert_eq!(code, 0, "{err}");
    let line = "+ fam/v4 -> fam/dual-a  protocol 47  (1 connection(s) between 1 endpoint pair(s); e.g. fam/v4 -> fam/dual-a on protocol 47)";
    assert!(out.contains(line), "{out}");
    assert!(out.contains("gained 8 connection(s) in 8 workload pair(s)"), "GRE only, nothing else: {out}");
    let (_, out, _) = run(&["reach", "--to", "fam/dual-a", CLUSTER, GRE]);
    assert!(out.contains("  outside ::/0: protocol 47\n"), "{out}");
}

#[test]
fn the_ruleset_matches_a_numbered_protocol() {
    let dir = std::env::temp_dir().join(format!("palisade-gre-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in [CLUSTER, GRE] {
        std::fs::copy(repo().join(f), dir.join(std::path::Path::new(f).file_name().unwrap())).unwrap();
    }
    let out = palisade().args(["agent", "--source", dir.to_str().unwrap(), "--dry-run"]).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rule = script.lines().find(|l| l.contains("fam/gre ingress[0] Allow")).unwrap_or_else(|| panic!("{script}"));
    assert!(rule.contains("meta l4proto 47 counter accept"), "{rule}");
}
