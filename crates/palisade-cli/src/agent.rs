//! `palisade agent`: keep the kernel's Palisade table in step with a directory of manifests.
//!
//! Every change is one nft transaction. The first load replaces any table already there in
//! the same transaction (so a restart adopts it without a gap); later changes send only the
//! delta. Input that does not validate is refused and the last good ruleset stays in force.
//! Stopping the agent leaves the table, and enforcement, in place.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use palisade_core::cluster::Cluster;
use palisade_core::port::Protocol;
use palisade_core::verdict::{decide, describe, Connection, Side};
use palisade_generate::flow::FlowRecord;
use palisade_ingest::BuildOptions;
use palisade_load::watch::{Changes, Watched};
use palisade_nft::kernel::Kernel;
use palisade_nft::script::Command;
use palisade_nft::{script, Compiled, NeedsFullCompile, Options, Ruleset};
use std::sync::mpsc::Receiver;

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Directory of manifests (cluster and policies), watched for changes.
    #[arg(long)]
    source: PathBuf,
    /// Enforce only for pods scheduled to this node (spec.nodeName); all pods when absent.
    #[arg(long)]
    node: Option<String>,
    /// Apply inside this network namespace (`ip netns` name) instead of the current one.
    #[arg(long)]
    netns: Option<String>,
    /// enforce: drop what policy denies; audit: log it (prefix "palisade audit deny") and drop nothing.
    #[arg(long, value_enum, default_value_t = Mode::Enforce)]
    mode: Mode,
    /// Print the ruleset as an nft script and exit without touching the kernel.
    #[arg(long)]
    dry_run: bool,
    /// Apply once and exit (the table stays).
    #[arg(long)]
    once: bool,
    /// Print packets and bytes per policy rule from the table in force, and exit.
    #[arg(long)]
    counters: bool,
    /// How often to look again without a file event (inotify wakes the agent at once), and to
    /// read the flow sets, in milliseconds.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// After changes took the object path, build and compile everything again (on
    /// another thread, once the directory has been quiet this long) and mend any difference.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    verify_after_ms: u64,
    /// Namespace for manifests that name none.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Append every new connection the node sees (source, destination, port, protocol, what
    /// policy says and which rule) to this file as JSON lines; `-` for stdout. Input for
    /// `palisade generate --flows`.
    #[arg(long, value_name = "FILE")]
    flow_log: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Enforce,
    Audit,
}

fn log(msg: &str) {
    eprintln!("palisade agent: {msg}");
}

fn build_options(args: &Args) -> BuildOptions {
    BuildOptions { default_namespace: args.namespace.clone(), ..Default::default() }
}

fn compile_options(args: &Args) -> Options {
    Options { node: args.node.clone(), audit: args.mode == Mode::Audit, record_flows: args.flow_log.is_some() }
}

/// The cluster and its compiled ruleset: what the kernel holds.
struct Enforced {
    cluster: Cluster,
    compiled: Compiled,
    /// The cluster and the compiled state no longer match the files (a patch fell back
    /// half-way, or the directory does not validate): only the ruleset is right, and the next
    /// change takes the full path.
    stale: bool,
}

/// Builds every file's objects and compiles them; `Err` carries the problems, printed.
fn full(args: &Args, watched: &Watched) -> Result<Enforced, String> {
    let load = watched.load(&build_options(args));
    if crate::input::report(&load, true).is_err() {
        return Err(format!("{} error(s) in {}", load.errors(), args.source.display()));
    }
    let cluster = load.cluster.expect("report returned Ok");
    for w in palisade_nft::unenforced::warnings(&cluster) {
        log(&format!("warning: {w}"));
    }
    let compiled = Compiled::new(&cluster, &compile_options(args));
    Ok(Enforced { cluster, compiled, stale: false })
}

/// A full build and compile running on another thread, of the files as they were after change
/// number `generation`.
struct Check {
    generation: u64,
    result: Receiver<Option<Enforced>>,
}

impl Check {
    fn start(args: &Args, watched: &Watched, generation: u64) -> Check {
        let (tx, result) = std::sync::mpsc::channel();
        let (snapshot, args) = (watched.snapshot(), args.clone());
        std::thread::spawn(move || {
            let load = snapshot.load(&build_options(&args));
            let built = load.cluster.map(|cluster| {
                let compiled = Compiled::new(&cluster, &compile_options(&args));
                Enforced { cluster, compiled, stale: false }
            });
            let _ = tx.send(built);
        });
        Check { generation, result }
    }
}

/// The object path: when only Pods and enforced policies came, went or changed, and the full
/// build would take them as they are, patch the cluster and the ruleset instead of building and
/// compiling everything (a change then costs what it touches, not what the cluster holds).
/// `None`: take the full path.
fn object_change(args: &Args, state: &mut Enforced, changes: &Changes) -> Option<(Vec<Command>, String)> {
    if state.stale {
        return None;
    }
    let (policies, pods) = changes.patches(&state.cluster, &build_options(args))?;
    let (pod_objects, policy_objects) = changes.counts();
    let how = format!("object path: {pod_objects} pod and {policy_objects} policy objects");
    match state.compiled.patch(&mut state.cluster, policies, pods) {
        Ok(delta) => Some((delta, how)),
        Err(NeedsFullCompile) => {
            state.compiled.rollback();
            state.stale = true;
            None
        }
    }
}

fn print_counters(netns: Option<&str>) -> u8 {
    match script::counters(netns) {
        Ok(rows) => {
            let mut out = format!("{:>12} {:>14}  rule\n", "packets", "bytes");
            for (rule, packets, bytes) in rows {
                out.push_str(&format!("{packets:>12} {bytes:>14}  {rule}\n"));
            }
            crate::emit(&out);
            0
        }
        Err(e) => {
            log(&format!("cannot read the table: {e}"));
            crate::EXIT_INVALID
        }
    }
}

pub fn run(args: Args) -> u8 {
    if args.counters {
        return print_counters(args.netns.as_deref());
    }
    let mut watched = Watched::new(&args.source);
    let first = watched.poll().map_err(|e| e.to_string()).and_then(|_| full(&args, &watched));
    let mut state = match first {
        Ok(state) => state,
        Err(e) => {
            log(&format!("refused: {e}; nothing applied"));
            return crate::EXIT_INVALID;
        }
    };
    if args.dry_run {
        crate::emit(&script::full(state.compiled.ruleset()));
        return 0;
    }
    let t = Instant::now();
    let kernel = match Kernel::open(args.netns.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            log(&format!("cannot reach nf_tables: {e}"));
            return crate::EXIT_INVALID;
        }
    };
    if let Err(e) = kernel.apply(&script::full_commands(state.compiled.ruleset())) {
        log(&format!("cannot apply: {e}"));
        return crate::EXIT_INVALID;
    }
    let s = state.compiled.ruleset().stats();
    log(&format!(
        "applied: {} pods enforced, {} chains, {} rules, {} set elements ({} ms, mode {:?})",
        s.enforced_pods,
        s.chains,
        s.rules,
        s.set_elements,
        t.elapsed().as_millis(),
        args.mode
    ));
    if args.once {
        return 0;
    }
    let mut flows = args.flow_log.as_deref().map(FlowLog::open).transpose().unwrap_or_else(|e| {
        log(&format!("cannot open the flow log: {e}; not logging flows"));
        None
    });
    let mut last_error: Option<String> = None;
    // Counts applied changes; a check compiled from an older state is of no use.
    let mut generation = 0u64;
    // Changes patched in since the last full compile, and when the directory last changed.
    let (mut unverified, mut quiet_since) = (false, Instant::now());
    let mut check: Option<Check> = None;
    // The kernel refused a change: the next one replaces the table whole.
    let mut replace = false;
    let changes = watch_directory(&args.source);
    loop {
        wait_for_change(changes.as_ref(), Duration::from_millis(args.interval_ms));
        if let Some(f) = flows.as_mut() {
            f.poll(&state.cluster, args.netns.as_deref(), args.mode);
        }
        if let Some(done) = check.as_ref().and_then(|c| c.result.try_recv().ok().map(|r| (c.generation, r))) {
            check = None;
            if let (true, Some(full)) = (done.0 == generation, done.1) {
                replace = !adopt(&kernel, &mut state, full, replace);
                unverified = false;
            }
        }
        let t = Instant::now();
        let changed = match watched.poll() {
            Ok(c) => c,
            Err(e) => {
                refused(&mut last_error, e.to_string());
                continue;
            }
        };
        let Some(changed) = changed else {
            let quiet = quiet_since.elapsed() >= Duration::from_millis(args.verify_after_ms);
            if unverified && quiet && check.is_none() && last_error.is_none() {
                check = Some(Check::start(&args, &watched, generation));
            }
            continue;
        };
        quiet_since = Instant::now();
        generation += 1;
        // While the directory does not validate, only the full build may say when it does.
        state.stale |= last_error.is_some();
        if let Some((delta, how)) = object_change(&args, &mut state, &changed) {
            unverified = true;
            replace = !apply(&kernel, &delta, state.compiled.ruleset(), replace, t, &how);
            continue;
        }
        let next = match full(&args, &watched) {
            Ok(next) => {
                last_error = None;
                next
            }
            Err(e) => {
                refused(&mut last_error, e);
                continue;
            }
        };
        let delta = script::update_commands(state.compiled.ruleset(), next.compiled.ruleset());
        replace = !apply(&kernel, &delta, next.compiled.ruleset(), replace, t, "full compile");
        state = next;
        unverified = false;
    }
}

/// Logs why a change is refused; a directory that cannot be read (or a file left broken)
/// fails on every look, so the same reason is said once.
fn refused(last_error: &mut Option<String>, e: String) {
    if last_error.as_ref() != Some(&e) {
        log(&format!("refused: {e}; the last good ruleset stays in force"));
    }
    *last_error = Some(e);
}

/// Sends a delta (or, after a refusal, the whole table) in one transaction; whether the kernel
/// now holds `target`.
fn apply(kernel: &Kernel, delta: &[Command], target: &Ruleset, replace: bool, t: Instant, how: &str) -> bool {
    let applied = if replace { Err(None) } else { kernel.apply(delta).map_err(Some) };
    let applied = applied.or_else(|e| {
        // The table changed under us (or the delta did not fit): replace it whole, still atomically.
        if let Some(e) = e {
            log(&format!("delta refused ({e}); replacing the table"));
        }
        kernel.apply(&script::full_commands(target))
    });
    match applied {
        Ok(()) => {
            log(&format!("updated in {:.1} ms: {} commands ({how})", t.elapsed().as_secs_f64() * 1e3, delta.len()));
            true
        }
        Err(e) => {
            log(&format!("cannot apply: {e}; the last good ruleset stays in force"));
            false
        }
    }
}

/// Takes a full compile of the same files as the patched state: the kernel must then hold
/// exactly it (a difference would be a bug in the object paths: it is logged and mended). The
/// full build also brings back what the object paths do not keep up to date in the cluster
/// (workloads' stand-in pods, warnings).
fn adopt(kernel: &Kernel, state: &mut Enforced, full: Enforced, replace: bool) -> bool {
    let delta = script::update_commands(state.compiled.ruleset(), full.compiled.ruleset());
    let held = if replace {
        // The kernel refused the last change: it does not hold the patched state.
        apply(kernel, &delta, full.compiled.ruleset(), true, Instant::now(), "full compile")
    } else if delta.is_empty() {
        log("checked against a full compile: no difference");
        true
    } else {
        log(&format!(
            "the object paths left {} differences to the full compile; applying the full compile",
            delta.len()
        ));
        apply(kernel, &delta, full.compiled.ruleset(), false, Instant::now(), "full compile")
    };
    *state = full;
    held
}

/// File events in the source directory (inotify), so that a change reaches the kernel at once
/// instead of at the next poll; `None` (polling only) when the watch cannot be set up.
fn watch_directory(dir: &std::path::Path) -> Option<(notify::RecommendedWatcher, Receiver<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })
    .ok()?;
    notify::Watcher::watch(&mut watcher, dir, notify::RecursiveMode::Recursive).ok()?;
    Some((watcher, rx))
}

/// Returns on a file event or after `interval` (the poll that catches anything missed, and
/// the flow log's pace). Events that came together are taken together.
fn wait_for_change(changes: Option<&(notify::RecommendedWatcher, Receiver<()>)>, interval: Duration) {
    match changes {
        Some((_, rx)) => {
            if rx.recv_timeout(interval).is_ok() {
                // An editor's save is several events; let them land, then read once.
                std::thread::sleep(Duration::from_millis(2));
                while rx.try_recv().is_ok() {}
            }
        }
        None => std::thread::sleep(interval),
    }
}

/// The flow log: new connections from the table's flow sets, each written once while the set
/// holds it (an hour since it was last seen), with the engine's verdict and deciding rules.
struct FlowLog {
    out: Box<dyn std::io::Write>,
    written: std::collections::HashSet<script::SeenFlow>,
}

impl FlowLog {
    fn open(path: &Path) -> std::io::Result<FlowLog> {
        let out: Box<dyn std::io::Write> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)
        };
        Ok(FlowLog { out, written: Default::default() })
    }

    fn poll(&mut self, cluster: &Cluster, netns: Option<&str>, mode: Mode) {
        let seen = match script::flows(netns) {
            Ok(s) => s,
            Err(e) => return log(&format!("cannot read flows: {e}")),
        };
        // Remember only what the kernel still holds: bounded by the sets' size, and a connection
        // seen again after its element timed out is logged again.
        let held: std::collections::HashSet<&script::SeenFlow> = seen.iter().collect();
        self.written.retain(|f| held.contains(f));
        for f in seen {
            if self.written.contains(&f) {
                continue;
            }
            let line = serde_json::to_string(&record(cluster, &f, mode)).expect("serializable");
            if writeln!(self.out, "{line}").and_then(|_| self.out.flush()).is_err() {
                return log("cannot write the flow log");
            }
            self.written.insert(f);
        }
    }
}

fn record(cluster: &Cluster, f: &script::SeenFlow, mode: Mode) -> FlowRecord {
    // The flow sets only note TCP, UDP and SCTP.
    let protocol = Protocol::from_number(f.protocol).unwrap_or(Protocol::TCP);
    let (src, dst) = (Side::ip(cluster, f.src), Side::ip(cluster, f.dst));
    let decision = decide(cluster, &Connection::new(src, dst, f.port, protocol));
    let time = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    FlowRecord {
        time,
        src: describe(cluster, &src),
        dst: describe(cluster, &dst),
        src_ip: f.src.to_string(),
        dst_ip: f.dst.to_string(),
        port: f.port,
        protocol,
        verdict: decision.verdict.as_str().to_string(),
        mode: if mode == Mode::Audit { "audit" } else { "enforce" }.to_string(),
        decided_by: decision.trace.iter().filter_map(palisade_review::graph::deciding_rule).collect(),
    }
}
