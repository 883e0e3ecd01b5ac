//! The kernel does what the engine says for ClusterNetworkPolicy and AdminNetworkPolicy /
//! BaselineAdminNetworkPolicy: the network-policy-api conformance suite (`tests/cnp/conformance`)
//! runs in one lab built from its model (network-namespace pods, the host-network pods on the
//! node namespace), each step's policies enforced in turn by the nftables table (the Admin tier
//! before, the Baseline tier after NetworkPolicy in each group chain), and each of the step's
//! TCP and UDP probes must give what the engine decides and what upstream expects. SCTP probes
//! are skipped with a message (this kernel has none). Needs root, `ip` and `nft`; set
//! PALISADE_SKIP_LAB=1 to skip.

mod common;

use std::time::{Duration, Instant};

use common::lab::lab_slot;
use common::suite::{suite_files, suite_model, suite_steps, SuiteStep};
use palisade_core::port::Protocol;
use palisade_core::verdict::{decide, Connection, Side, Verdict};
use palisade_lab::standing::{Probe, Seen, StandingLab};

/// A probe answers within a millisecond in the lab; a dropped one costs two timeouts.
const TIMEOUT: Duration = Duration::from_millis(300);

/// Counts of one version's run.
#[derive(Default, Debug)]
struct Tally {
    steps: usize,
    probed: usize,
    skipped: usize,
    failures: Vec<String>,
}

fn run_step(lab: &StandingLab, step: &SuiteStep, tally: &mut Tally) {
    let cluster = step.cluster();
    lab.enforce(&cluster).unwrap_or_else(|e| panic!("{}: {e}", step.name()));
    let probes: Vec<Probe> = step
        .probes
        .iter()
        .map(|p| Probe { from: p.from.clone(), to: p.address, port: p.port, protocol: p.protocol })
        .collect();
    let seen = lab.probe(&probes, TIMEOUT).unwrap_or_else(|e| panic!("{}: {e}", step.name()));
    tally.steps += 1;
    for (p, seen) in step.probes.iter().zip(seen) {
        let what = format!("{}: {} -> {} {} {}/{}", step.name(), p.from, p.to, p.address, p.protocol, p.port);
        let kernel = match seen {
            Seen::Skipped(why) => {
                assert_eq!(p.protocol, Protocol::SCTP, "{what}: only SCTP is skipped ({why})");
                tally.skipped += 1;
                continue;
            }
            Seen::Reached => true,
            Seen::Dropped => false,
        };
        tally.probed += 1;
        let (ns, name) = p.from.split_once('/').unwrap();
        let src = Side::pod(&cluster, cluster.pod(ns, name).unwrap());
        let conn = Connection::new(src, Side::ip(&cluster, p.address), p.port, p.protocol);
        let engine = decide(&cluster, &conn).verdict == Verdict::Allow;
        if kernel != engine || kernel != p.allow {
            tally.failures.push(format!("{what}: kernel {kernel}, engine {engine}, upstream {}", p.allow));
        }
    }
}

/// One lab for a whole version: its model is the same in every test, only policies change.
fn run_version(version: &str) -> Tally {
    let model = suite_model();
    let steps: Vec<SuiteStep> = suite_files(version).iter().flat_map(|f| suite_steps(f, &model)).collect();
    let mut ports: Vec<(u16, Protocol)> = steps.iter().flat_map(|s| &s.probes).map(|p| (p.port, p.protocol)).collect();
    ports.sort();
    ports.dedup();
    let started = Instant::now();
    let lab = StandingLab::build(&steps[0].cluster(), &ports).expect("the conformance model builds as a lab");
    let mut tally = Tally::default();
    for step in &steps {
        run_step(&lab, step, &mut tally);
    }
    eprintln!(
        "{version}: {} steps, {} TCP/UDP probes in the kernel, {} SCTP probes skipped: this kernel has no SCTP ({:.1} s)",
        tally.steps,
        tally.probed,
        tally.skipped,
        started.elapsed().as_secs_f64()
    );
    tally
}

fn assert_version(version: &str, steps: usize, probed: usize, skipped: usize) {
    let Some(_one) = lab_slot() else { return };
    let t = run_version(version);
    assert!(t.failures.is_empty(), "{} of {} probes differ:\n{}", t.failures.len(), t.probed, t.failures.join("\n"));
    assert_eq!((t.steps, t.probed, t.skipped), (steps, probed, skipped), "every step and probe of {version}");
}

#[test]
fn conformance_suite_v1alpha2_holds_in_the_kernel() {
    assert_version("v1alpha2", 96, 211, 90);
}

#[test]
fn conformance_suite_v1alpha1_holds_in_the_kernel() {
    assert_version("v1alpha1", 92, 203, 86);
}

/// The model and `tests/cnp/cases/13`'s allowlist (an Accept to domainNames, then a Deny of
/// 198.19.0.0/16), built with a DNS fact for api.example.com.
fn domain_names_cluster() -> palisade_core::cluster::Cluster {
    let paths = [
        common::repo().join("tests/conformance/model.yaml"),
        common::repo().join("tests/cnp/cases/13-domain-names.yaml"),
    ];
    let dns = [("api.example.com".to_string(), vec!["198.19.200.10".parse().unwrap()])].into();
    let opts = palisade_ingest::BuildOptions { dns, ..Default::default() };
    palisade_load::load_paths(&paths, &opts).unwrap().cluster.expect("case 13 loads")
}

/// The enforcer has no DNS interception: a domainNames rule stays out of the table even when
/// the engine was given facts (a snapshot of them would go stale), and it says so per rule.
#[test]
fn domain_names_rules_stay_out_of_the_ruleset_with_a_warning() {
    let cluster = domain_names_cluster();
    let script = palisade_nft::render::text::full(&palisade_nft::compile(&cluster, &Default::default()));
    assert!(script.contains("x-allowlist egress[1] Deny"), "the Deny after it is enforced:\n{script}");
    assert!(!script.contains("x-allowlist egress[0]"), "the domainNames Accept is left out:\n{script}");
    assert!(!script.contains("198.19.200.10"), "no address of a DNS fact in the table:\n{script}");
    assert_eq!(
        palisade_nft::unenforced::warnings(&cluster),
        ["ClusterNetworkPolicy x-allowlist egress rule [0] \"accept-domains\": domainNames api.example.com, *.svc.example.org left out of the ruleset (no DNS interception): it accepts nothing in the kernel"]
    );
}

/// `palisade lab` and `palisade agent` say it; the lab decides without the facts, as enforced.
#[test]
fn lab_and_agent_warn_that_domain_names_are_not_enforced() {
    let paths = ["tests/conformance/model.yaml", "tests/cnp/cases/13-domain-names.yaml"];
    let dir = std::env::temp_dir().join(format!("palisade-cnp-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for p in paths {
        std::fs::copy(common::repo().join(p), dir.join(std::path::Path::new(p).file_name().unwrap())).unwrap();
    }
    let (code, _, err) = common::run(&["agent", "--source", dir.to_str().unwrap(), "--dry-run"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: ClusterNetworkPolicy x-allowlist egress rule [0] \"accept-domains\": domainNames api.example.com, *.svc.example.org left out of the ruleset (no DNS interception)"), "{err}");
    let Some(_one) = lab_slot() else { return };
    let (code, out, err) = common::run(&["lab", paths[0], paths[1], "--dns", "api.example.com=198.19.200.10"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("note: --dns facts are not used by the lab"), "{err}");
    assert!(err.contains("domainNames api.example.com, *.svc.example.org left out of the ruleset"), "{err}");
    assert!(out.contains("80/TCP: kernel == engine"), "{out}");
}
