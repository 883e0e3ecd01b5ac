//! `palisade-bench`: figures for the README. Prints times and peak memory; asserts nothing.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
mod dataplane;
mod enforcer;
mod kubernetes;

/// The loader and the engine allocate many small values; mimalloc frees them far faster than
/// glibc's allocator (the same allocator as the `palisade` binary).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
mod commands;
mod loader;
mod nca;
mod process;

use palisade_bench::{calicoize, generate, to_list_json, Shape};
use palisade_core::field::Nowhere;
use palisade_core::index::Index;
use palisade_core::port::Protocol;
use palisade_ingest::{build, BuildOptions, Input};

#[derive(Parser)]
#[command(about = "Benchmark Palisade on a synthetic cluster")]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    #[arg(long, default_value_t = 5_000)]
    policies: usize,
    #[arg(long, default_value_t = 100)]
    namespaces: usize,
    #[arg(long, default_value_t = 10)]
    pods_per_app: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the cluster as one JSON List to this file (to time `palisade matrix` on it).
    #[arg(long)]
    write: Option<std::path::PathBuf>,
    /// Also time loading the cluster from YAML/JSON text through the file adapter.
    #[arg(long)]
    through_loader: bool,
    /// Convert every policy to a Calico NetworkPolicy and add a security tier in front.
    #[arg(long)]
    calico: bool,
    /// Measure the enforcer instead (needs root): nft compile and load, one-pod and one-policy
    /// deltas, and iperf3 throughput between two lab pods with and without the table.
    #[arg(long)]
    enforcer: bool,
    /// Interleaved bare/ruled iperf3 rounds per figure (medians are reported); 0 skips throughput.
    /// With --commands: runs of each command per binary.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Size of the extra address set for the second throughput figure.
    #[arg(long, default_value_t = 100_000)]
    big_set: usize,
    /// Files in the agent's one-change figures (policy files added, changed, removed; pod
    /// files added, removed); 0 skips them.
    #[arg(long, default_value_t = 5_000)]
    bulk: usize,
    /// Only the one-change figures (`--bulk`), on the cluster without the big set.
    #[arg(long)]
    bulk_only: bool,
    /// Also time the review tools: connectivity over every probe port, lint, graph, diff.
    #[arg(long)]
    review: bool,
    /// Measure only the loader instead: a curve of JSON and block-style YAML inputs from 1 KB
    /// up to this many megabytes (CPU seconds, MB/s, peak memory over the input's size).
    #[arg(long, value_name = "MAX_MB", num_args = 0..=1, default_missing_value = "50")]
    loader_curve: Option<f64>,
    /// Compare `palisade matrix --all-ports` with network-config-analyzer (the `nca` program at
    /// this path) on the 200-pod/50-policy and 400/100 clusters: times side by side (medians
    /// of 3 interleaved runs) and whether the answers are identical. Needs the release
    /// `palisade` binary next to this one, and GNU time at /usr/bin/time.
    #[arg(long, value_name = "NCA")]
    versus_nca: Option<std::path::PathBuf>,
    /// Measure the agent in Kubernetes mode instead (needs root and the release `palisade`
    /// binary next to this one): the cluster served by palisade-fakeapi, sync + first apply,
    /// event -> kernel latency for this many pod and policy changes, the agent's memory.
    #[arg(long, value_name = "SAMPLES", num_args = 0..=1, default_missing_value = "50")]
    kubernetes: Option<usize>,
    /// Time every review command as a whole `palisade` process (check, matrix, reach, lint,
    /// generate, graph, diff) on the cluster of --pods/--policies, from JSON and from YAML:
    /// medians of --rounds interleaved runs. With several binaries (before and after a
    /// change), each runs in turn within a round. Default: the `palisade` next to this one.
    #[arg(long, value_name = "BIN", num_args = 0.., conflicts_with_all = ["loader_curve", "versus_nca", "enforcer"])]
    commands: Option<Vec<std::path::PathBuf>>,
    /// With --commands: only the commands whose line contains this text (`lint`, `(YAML)`).
    #[arg(long, value_name = "TEXT", requires = "commands")]
    only: Option<String>,
    /// Measure the data plane's per-connection cost instead (needs root): new TCP connections
    /// per second to a lab pod selected by 1 and to one selected by 1,000 policies, measured
    /// side by side, with 1,000 and with --big-set peers in their sets, Allow runs merged and
    /// unmerged;
    /// first the synthetic cluster's whole table compiled and loaded both ways (--pods 0 skips).
    #[arg(long)]
    dataplane: bool,
    /// With --dataplane: connections per batch (--rounds batches per server and table).
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// (Internal: one measurement of the loader curve, in its own process.)
    #[arg(long, hide = true)]
    loader_one: Option<std::path::PathBuf>,
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) this process has used so far, from /proc/self/stat (in
/// USER_HZ ticks, 100 per second on Linux): the phases' CPU is what load on a shared machine
/// leaves alone, where wall time swings.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start past its ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

fn main() {
    let a = Args::parse();
    if let Some(path) = &a.loader_one {
        loader::one(path);
        return;
    }
    if let Some(nca) = &a.versus_nca {
        nca::versus(nca, a.seed);
        return;
    }
    if let Some(max_mb) = a.loader_curve {
        loader::curve(max_mb);
        return;
    }
    let shape = Shape {
        pods: a.pods,
        policies: a.policies,
        namespaces: a.namespaces,
        pods_per_app: a.pods_per_app,
        seed: a.seed,
    };
    if let Some(binaries) = &a.commands {
        commands::run(&shape, binaries, a.rounds.max(1), a.only.as_deref());
        return;
    }
    if a.dataplane {
        palisade_lab::install_interrupt_cleanup();
        let plan = dataplane::Plan {
            rounds: a.rounds.max(1),
            connections: a.connections,
            peers: a.big_set,
            synthetic: (a.pods > 0).then(|| generate(&shape)),
        };
        dataplane::run(&plan);
        return;
    }
    let t = Instant::now();
    let objects = if a.calico { calicoize(generate(&shape)) } else { generate(&shape) };
    println!(
        "generate      {:>9.3} s  ({} pods, {} policies, {} namespaces)",
        t.elapsed().as_secs_f64(),
        a.pods,
        a.policies,
        a.namespaces
    );
    if a.enforcer {
        enforce(objects, &a);
        return;
    }
    if let Some(samples) = a.kubernetes {
        kubernetes::bench(&objects, samples.max(1));
        return;
    }
    let cluster = if a.through_loader || a.write.is_some() {
        let text = to_list_json(&objects);
        if let Some(p) = &a.write {
            std::fs::write(p, &text).expect("write cluster");
        }
        drop(objects);
        let t = Instant::now();
        let load = palisade_load::load_str("synthetic.json", &text, &BuildOptions::default());
        println!("load+validate {:>9.3} s  ({} MiB of JSON)", t.elapsed().as_secs_f64(), text.len() / (1 << 20));
        load.cluster.unwrap_or_else(|| invalid(load.problems.len()))
    } else {
        let inputs: Vec<Input> =
            objects.into_iter().map(|object| Input { object, locate: Arc::new(Nowhere) }).collect();
        let t = Instant::now();
        let c = build(&inputs, &BuildOptions::default()).unwrap_or_else(|p| invalid(p.len()));
        println!("build         {:>9.3} s", t.elapsed().as_secs_f64());
        c
    };
    let (t, c) = (Instant::now(), cpu_secs());
    let mut index = Index::new(&cluster);
    let (indexed, indexed_cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - c);
    let (mut total, mut total_cpu) = (0.0, 0.0);
    // Each port's matrix is dropped before the next: its rows are handed back for reuse.
    let mut spare = Vec::new();
    for (port, proto) in [(8080, Protocol::TCP), (9090, Protocol::TCP), (53, Protocol::UDP)] {
        let (t, c) = (Instant::now(), cpu_secs());
        let m = index.matrix_reusing(port, proto, std::mem::take(&mut spare));
        let (secs, cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - c);
        total += secs;
        total_cpu += cpu;
        let allowed: usize = m.rows.iter().map(|r| r.count_ones(..)).sum();
        println!(
            "matrix {proto}/{port:<5}{secs:>9.3} s  {cpu:>7.2} s CPU  ({allowed} of {} pairs allowed)",
            a.pods * a.pods
        );
        spare = m.rows;
    }
    println!("index         {indexed:>9.3} s  {indexed_cpu:>7.2} s CPU");
    println!("matrix total  {:>9.3} s  {:>7.2} s CPU  (index + 3 matrices)", indexed + total, indexed_cpu + total_cpu);
    if a.review {
        review(&cluster);
    }
    println!("peak memory   {:>9.1} MiB", peak_rss_mib());
}

/// The review tools on the same cluster (no source files: lint checks that read fields as
/// written are skipped, the semantic ones all run).
fn review(cluster: &palisade_core::cluster::Cluster) {
    use palisade_review::connectivity::{Connectivity, Cuts};
    use palisade_review::{diff, graph::Graph, lint, workload::Workloads};
    let t = Instant::now();
    let workloads = Workloads::new(cluster);
    let cuts = Cuts::of(&[cluster]);
    let n = cuts.probes.len();
    let conn = Connectivity::compute(cluster, cuts, || {});
    println!(
        "connectivity  {:>9.3} s  ({n} probe ports, {} address endpoints)",
        t.elapsed().as_secs_f64(),
        conn.addresses.len()
    );
    let t = Instant::now();
    // Each group of checks timed apart: (phase, seconds).
    let mut phases: Vec<(&str, f64)> = Vec::new();
    let mut last = (None, Instant::now());
    let findings = lint::lint_with_progress(cluster, &[], &lint::Scope::of(&conn), &workloads, &mut |phase| {
        if let Some(done) = last.0.replace(phase) {
            phases.push((done, last.1.elapsed().as_secs_f64()));
        }
        last.1 = Instant::now();
    });
    if let Some(done) = last.0 {
        phases.push((done, last.1.elapsed().as_secs_f64()));
    }
    println!("lint          {:>9.3} s  ({} findings)", t.elapsed().as_secs_f64(), findings.len());
    for (phase, secs) in phases {
        println!("  {phase:<40}{secs:>9.3} s");
    }
    // A graph explains every edge on every port; past a few thousand workloads that is more
    // than anyone draws (and gigabytes), so it is measured on smaller clusters only.
    if workloads.list.len() <= 2_000 {
        let t = Instant::now();
        let g = Graph::new(cluster, &conn, &workloads);
        println!(
            "graph         {:>9.3} s  ({} nodes, {} edges)",
            t.elapsed().as_secs_f64(),
            g.nodes.len(),
            g.edges.len()
        );
    } else {
        println!("graph         skipped ({} workloads)", workloads.list.len());
    }
    let t = Instant::now();
    let v = diff::Version { cluster, conn: &conn, workloads: &workloads };
    let d = diff::diff(&v, &v);
    println!("diff (self)   {:>9.3} s  ({} changes)", t.elapsed().as_secs_f64(), d.gained.len() + d.lost.len());
}

fn enforce(mut objects: Vec<palisade_ingest::Object>, a: &Args) {
    palisade_lab::install_interrupt_cleanup();
    enforcer::bench_pods(&mut objects);
    // Removed however the benchmark ends: normally, on a panic, or on Ctrl-C.
    let scratch = palisade_lab::topology::ScratchNetns::new(format!("pal-bench-{}", std::process::id()))
        .expect("cannot create a network namespace: the enforcer benchmark needs root");
    let netns = scratch.0.as_str();
    if a.bulk_only {
        enforcer::bulk_figure(&objects, netns, a.bulk);
        return;
    }
    // `--rounds 0`: load and update figures only.
    enforcer::load_figures(&objects, netns);
    if a.bulk > 0 {
        enforcer::bulk_figure(&objects, netns, a.bulk);
    }
    if a.rounds > 0 {
        enforcer::throughput(&objects, a.rounds);
    }
    println!("-- with a {}-element address set in the bench pods' rule path --", a.big_set);
    enforcer::add_big_set(&mut objects, a.big_set);
    enforcer::load_figures(&objects, netns);
    if a.rounds > 0 {
        enforcer::throughput(&objects, a.rounds);
    }
}

fn invalid(problems: usize) -> ! {
    eprintln!("the synthetic cluster has {problems} problem(s): the generator is wrong");
    std::process::exit(2)
}
