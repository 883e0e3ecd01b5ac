//! The kernel does what the engine says: every truth table, and the seed examples that use lab
//! addresses, built as network-namespace pods, enforced with nftables, probed pair by pair.
//! Needs root, `ip` and `nft` (CI installs them). Set PALISADE_SKIP_LAB=1 to skip on machines
//! where that is impossible; CI never sets it.

mod common;

use common::{palisade, repo};

fn lab_possible() -> bool {
    if std::env::var_os("PALISADE_SKIP_LAB").is_some() {
        eprintln!("PALISADE_SKIP_LAB is set: lab tests skipped");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc_geteuid() } == 0;
    assert!(root, "the lab tests need root (network namespaces, nftables); run as root or set PALISADE_SKIP_LAB=1");
    true
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// One lab at a time: they share the machine's namespace list and its two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lab(args: &[&str]) -> (i32, String, String) {
    let out = palisade().current_dir(repo()).arg("lab").args(args).arg("-q").output().unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

#[test]
fn every_truth_table_holds_in_the_kernel() {
    if !lab_possible() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = repo().join("tests/conformance/cases");
    let mut cases: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    let mut failures = Vec::new();
    for case in &cases {
        let case = case.to_str().unwrap();
        let probes = ["--port", "80", "--port", "81", "--protocol", "TCP", "--protocol", "UDP", "--protocol", "SCTP"];
        let mut args = vec!["tests/conformance/model.yaml", case];
        args.extend(probes);
        let (code, out, err) = lab(&args);
        if code != 0 {
            failures.push(format!("{case}: exit {code}\n{out}{err}"));
        }
    }
    assert!(cases.len() >= 59, "only {} cases", cases.len());
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
    if !lab_possible() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
fn lab_refuses_addresses_outside_its_ranges() {
    if !lab_possible() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (code, _, err) = lab(&["examples/node-network-egress/cluster.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("lab pods may only use 198.18.0.0/15 or fd00::/8"), "{err}");
    let names = std::process::Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&names.stdout).contains("pal-"), "no lab namespace is left behind");
}
