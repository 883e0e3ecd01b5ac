//! `palisade lab`: build the cluster from network namespaces, enforce, probe, compare.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use palisade_core::cluster::Cluster;
use palisade_core::port::Protocol;
use palisade_lab::{LabOptions, LabReport};

use crate::input::{load, InputArgs, Output};

#[derive(clap::Args)]
pub struct Args {
    /// Destination ports to probe (repeatable).
    #[arg(long = "port", default_values_t = [80u16])]
    ports: Vec<u16>,
    /// Protocols to probe on each port (repeatable): TCP, UDP, SCTP.
    #[arg(long = "protocol", default_values_t = [Protocol::TCP])]
    protocols: Vec<Protocol>,
    /// Milliseconds a probe waits before it counts as dropped (it is tried twice).
    #[arg(long, default_value_t = 400)]
    timeout_ms: u64,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(flatten)]
    input: InputArgs,
}

/// Exit codes: 0 observed = expected; 1 some difference; 2 invalid input or the lab failed.
pub fn run(mut args: Args) -> u8 {
    // The table has no DNS interception: the engine must decide domainNames as the kernel does.
    if !args.input.dns.is_empty() {
        eprintln!("note: --dns facts are not used by the lab: the enforcer has no DNS interception, so domainNames peers match nothing in the kernel and are decided without facts");
        args.input.dns.clear();
    }
    let cluster = match load(&args.input) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !args.input.quiet {
        for w in palisade_nft::unenforced::warnings(&cluster) {
            eprintln!("warning: {w}");
        }
    }
    // Probing no pod would pass as "0 of 0 pairs": a lab with nothing in it proves nothing.
    let addressed = cluster.pods.iter().filter(|p| !p.ips.is_empty()).count();
    if addressed == 0 {
        let templates = cluster.pods.len();
        eprintln!(
            "error: lab: no pod with an address in the input ({templates} pod(s) without one, built from workload templates): there is nothing to build and probe; give the Pods (kubectl get pods -A -o yaml)"
        );
        return crate::EXIT_INVALID;
    }
    palisade_lab::install_interrupt_cleanup();
    let probes = args.ports.iter().flat_map(|&p| args.protocols.iter().map(move |&pr| (p, pr))).collect();
    let opts = LabOptions { probes, timeout: std::time::Duration::from_millis(args.timeout_ms), ..Default::default() };
    let bar = crate::progress::bar(0, "probing every pair");
    let report = palisade_lab::run(&cluster, &opts, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: lab: {e}");
            return crate::EXIT_INVALID;
        }
    };
    for (end, why) in &report.skipped {
        eprintln!("note: {} is not in the lab: {why}", end.key(&cluster));
    }
    for s in &report.skipped_probes {
        eprintln!("note: {s}");
    }
    if !report.ends.iter().any(|e| matches!(e, palisade_lab::LabEnd::Pod(_))) {
        eprintln!("error: lab: no pod could be built, so nothing was probed");
        return crate::EXIT_INVALID;
    }
    let diffs: usize = report.results.iter().map(|r| r.differences().len()).sum();
    match args.output {
        Output::Json => crate::emit(&(serde_json::to_string_pretty(&json(&cluster, &report)).expect("json") + "\n")),
        Output::Text => crate::emit(&text(&cluster, &report)),
    }
    u8::from(diffs > 0)
}

fn allowed_map(cluster: &Cluster, report: &LabReport, grid: &[Vec<bool>]) -> BTreeMap<String, Vec<String>> {
    let keys: Vec<String> = report.ends.iter().map(|e| e.key(cluster)).collect();
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let mut to: Vec<String> =
                keys.iter().enumerate().filter(|(j, _)| grid[i][*j]).map(|(_, d)| d.clone()).collect();
            to.sort();
            (k.clone(), to)
        })
        .collect()
}

/// The same shape as `matrix --output json`, per probe, with the engine's answer beside it.
fn json(cluster: &Cluster, report: &LabReport) -> serde_json::Value {
    let results: Vec<serde_json::Value> = report
        .results
        .iter()
        .map(|r| {
            let keys: Vec<String> = report.ends.iter().map(|e| e.key(cluster)).collect();
            let diffs: Vec<serde_json::Value> = r
                .differences()
                .into_iter()
                .map(|(i, j)| serde_json::json!({"from": keys[i], "to": keys[j], "engine": r.expected[i][j], "kernel": r.observed[i][j]}))
                .collect();
            serde_json::json!({
                "port": r.port,
                "protocol": r.protocol,
                "allowed": allowed_map(cluster, report, &r.observed),
                "engine": allowed_map(cluster, report, &r.expected),
                "differences": diffs,
            })
        })
        .collect();
    serde_json::json!({ "results": results, "skipped_probes": report.skipped_probes })
}

fn text(cluster: &Cluster, report: &LabReport) -> String {
    let keys: Vec<String> = report.ends.iter().map(|e| e.key(cluster)).collect();
    let width = keys.iter().map(String::len).max().unwrap_or(1);
    let s = &report.ruleset_stats;
    let nodes = report.ends.iter().filter(|e| matches!(e, palisade_lab::LabEnd::Node(_))).count();
    let node_text = match nodes {
        0 => String::new(),
        1 => ", 1 node".into(),
        n => format!(", {n} nodes"),
    };
    let mut out = format!(
        "lab: {} pods{node_text}; ruleset {} chains, {} rules, {} sets ({} elements)\n",
        keys.len() - nodes,
        s.chains,
        s.rules,
        s.sets,
        s.set_elements
    );
    for r in &report.results {
        let diffs = r.differences();
        let _ = writeln!(
            out,
            "\n{}/{}: kernel {} engine  ({} of {} pairs allowed; rows: source; + allowed, . dropped, ! differs)",
            r.port,
            r.protocol,
            if diffs.is_empty() { "==" } else { "!=" },
            r.observed.iter().flatten().filter(|&&b| b).count(),
            keys.len() * keys.len()
        );
        for (i, k) in keys.iter().enumerate() {
            let cells: String = (0..keys.len())
                .map(|j| match (r.observed[i][j], r.expected[i][j]) {
                    (a, b) if a != b => '!',
                    (true, _) => '+',
                    (false, _) => '.',
                })
                .collect();
            let _ = writeln!(out, "  {k:width$}  {cells}");
        }
        for (i, j) in diffs {
            let _ = writeln!(
                out,
                "  differs: {} -> {}: engine {}, kernel {}",
                keys[i],
                keys[j],
                if r.expected[i][j] { "allows" } else { "denies" },
                if r.observed[i][j] { "let it through" } else { "dropped it" }
            );
        }
    }
    out
}
