//! Palisade's netlink encoder against nft's own: every truth table's and example's ruleset,
//! loaded once with `nft -f` and once over netlink into two scratch namespaces, must list the
//! same (`nft list table`, nft's reading of what the kernel holds). The delta path must too:
//! a table moved from one case to the next over netlink lists like the next case loaded whole.
//! Needs root and `nft`; PALISADE_SKIP_LAB=1 skips it.

mod common;

use common::{conformance_cases, load_case, repo};
use palisade_core::cluster::Cluster;
use palisade_ingest::BuildOptions;
use palisade_lab::topology::ScratchNetns;
use palisade_nft::ir::{Rule, Stmt, Verdict};
use palisade_nft::kernel::Kernel;
use palisade_nft::{compile, script, Options, Ruleset};

fn possible() -> bool {
    if std::env::var_os("PALISADE_SKIP_LAB").is_some() {
        eprintln!("PALISADE_SKIP_LAB is set: netlink tests skipped");
        return false;
    }
    true
}

fn listing(netns: &str) -> String {
    let out = script::nft(Some(netns)).args(["list", "table", "inet", "palisade"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A listing's sets, maps and chains, sorted.
fn blocks(listing: &str) -> Vec<String> {
    let body = listing.trim().trim_start_matches("table inet palisade {").trim_end_matches('}');
    let mut out: Vec<String> = body.split("\n\n").map(|b| b.trim().to_string()).collect();
    out.sort();
    out
}

fn example(dir: &str) -> Cluster {
    let paths = common::manifest_paths(&repo().join("examples").join(dir));
    let sources = palisade_load::source::read_paths(&paths).unwrap();
    // One seed article leaves its namespace to `kubectl apply -n`.
    let opts = BuildOptions { default_namespace: Some("default".into()), ..BuildOptions::default() };
    let load = palisade_load::load_sources(sources, &opts);
    let problems: Vec<String> = load.problems.iter().map(|p| p.message.clone()).collect();
    load.cluster.unwrap_or_else(|| panic!("example {dir} does not load: {problems:?}"))
}

fn rulesets() -> Vec<(String, Ruleset)> {
    let mut out = Vec::new();
    for case in conformance_cases() {
        let cluster = load_case(&case);
        out.push((case.file.clone(), compile(&cluster, &Options::default())));
        // A node's own table: its pods' addresses in the own-node sets, not address pairs.
        if cluster.nodes.iter().any(|n| n.name == "node-1") {
            let opts = Options { node: Some("node-1".into()), ..Default::default() };
            out.push((format!("{} (--node node-1)", case.file), compile(&cluster, &opts)));
        }
    }
    let six = palisade_load::load_paths(&[repo().join("tests/lab/ipv6.yaml")], &BuildOptions::default()).unwrap();
    out.push(("tests/lab/ipv6.yaml".into(), compile(six.cluster.as_ref().expect("loads"), &Options::default())));
    for dir in ["calico-wordpress", "lateral-movement", "node-network-egress", "enforcing-network-policies"] {
        let cluster = example(dir);
        out.push((dir.to_string(), compile(&cluster, &Options::default())));
        let audit = Options { audit: true, record_flows: true, ..Default::default() };
        out.push((format!("{dir} (audit, flow log)"), compile(&cluster, &audit)));
    }
    out
}

#[test]
fn netlink_loads_and_updates_tables_that_list_like_nft_loaded_ones() {
    if !possible() {
        return;
    }
    let pid = std::process::id();
    let by_nft = ScratchNetns::new(format!("pal-nlt-a-{pid}")).unwrap();
    let by_netlink = ScratchNetns::new(format!("pal-nlt-b-{pid}")).unwrap();
    let kernel = Kernel::open(Some(&by_netlink.0)).unwrap();
    let mut previous: Option<Ruleset> = None;
    for (name, rs) in rulesets() {
        script::apply(&palisade_nft::render::text::full(&rs), Some(&by_nft.0))
            .unwrap_or_else(|e| panic!("{name}: nft: {e}"));
        let expected = listing(&by_nft.0);
        // Whole, then (from the previous case's table) as a delta.
        kernel.apply(&script::full_commands(&rs)).unwrap_or_else(|e| panic!("{name}: netlink: {e}"));
        assert_eq!(listing(&by_netlink.0), expected, "{name}: loaded whole over netlink");
        // Deltas never change the base chains: only between tables with the same flow log,
        // mode and own-node shape (the agent's options are fixed).
        let same_base = |p: &Ruleset| {
            (p.record_flows, p.audit, p.own_node.by_address) == (rs.record_flows, rs.audit, rs.own_node.by_address)
        };
        if let Some(prev) = previous.take().filter(same_base) {
            kernel.apply(&script::full_commands(&prev)).unwrap();
            let delta = script::update_commands(&prev, &rs);
            kernel.apply(&delta).unwrap_or_else(|e| panic!("{name}: netlink delta: {e}"));
            // A delta appends new chains and sets: compare them in any order.
            let (got, want) = (blocks(&listing(&by_netlink.0)), blocks(&expected));
            let differ: Vec<_> = got.iter().zip(&want).filter(|(a, b)| a != b).collect();
            assert_eq!(got, want, "{name}: reached by a delta over netlink; first difference: {:#?}", differ.first());
        }
        previous = Some(rs);
    }
}

#[test]
fn a_refused_transaction_names_the_command_and_changes_nothing() {
    if !possible() {
        return;
    }
    let ns = ScratchNetns::new(format!("pal-nlt-c-{}", std::process::id())).unwrap();
    let kernel = Kernel::open(Some(&ns.0)).unwrap();
    let case = &conformance_cases()[0];
    let rs = compile(&load_case(case), &Options::default());
    kernel.apply(&script::full_commands(&rs)).unwrap();
    let before = listing(&ns.0);
    let goto = |chain: &str| Rule::new(vec![Stmt::Counter, Stmt::Verdict(Verdict::Goto(chain.into()))]);
    let bad = vec![
        script::Command::AddChain { name: "fine".into(), hook: None },
        script::Command::AddRule { chain: "fine".into(), rule: goto("no_such_chain") },
        script::Command::AddRule { chain: "fine".into(), rule: goto("nor_this_one") },
    ];
    let err = kernel.apply(&bad).unwrap_err().to_string();
    assert!(err.contains("no_such_chain") && err.contains("nothing was changed"), "{err}");
    assert_eq!(listing(&ns.0), before);
    // The same socket goes on working: leftovers of the refusal are not taken for its answer.
    kernel.apply(&script::full_commands(&rs)).unwrap();
    assert_eq!(listing(&ns.0), before);
}
