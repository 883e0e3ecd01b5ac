//! `palisade agent`: keep the kernel's Palisade table in step with a directory of manifests.
//!
//! Every change is one nft transaction. The first load replaces any table already there in
//! the same transaction (so a restart adopts it without a gap); later changes send only the
//! delta. Input that does not validate is refused and the last good ruleset stays in force.
//! Stopping the agent leaves the table, and enforcement, in place.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use palisade_core::build::BuildOptions;
use palisade_core::cluster::Cluster;
use palisade_core::port::Protocol;
use palisade_core::verdict::{decide, describe, Connection, Side};
use palisade_generate::flow::FlowRecord;
use palisade_load::watch::Watched;
use palisade_nft::kernel::Kernel;
use palisade_nft::{compile, script, Options, Ruleset};
use std::sync::mpsc::Receiver;

#[derive(clap::Args)]
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

/// Reads what changed in the source directory (only those files are parsed again) and
/// compiles; `Ok(None)` when nothing changed, `Err` carries the problems as one printable block.
fn build(args: &Args, watched: &mut Watched) -> Result<Option<(Cluster, Ruleset)>, String> {
    let opts = BuildOptions { default_namespace: args.namespace.clone() };
    let Some(load) = watched.refresh(&opts).map_err(|e| e.to_string())? else { return Ok(None) };
    if crate::input::report(&load, true).is_err() {
        return Err(format!("{} error(s) in {}", load.errors(), args.source.display()));
    }
    let cluster = load.cluster.expect("report returned Ok");
    let opts =
        Options { node: args.node.clone(), audit: args.mode == Mode::Audit, record_flows: args.flow_log.is_some() };
    let rs = compile(&cluster, &opts);
    Ok(Some((cluster, rs)))
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
    let (mut cluster, mut current) = match build(&args, &mut watched) {
        Ok(built) => built.expect("the first read always loads"),
        Err(e) => {
            log(&format!("refused: {e}; nothing applied"));
            return crate::EXIT_INVALID;
        }
    };
    if args.dry_run {
        crate::emit(&script::full(&current));
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
    if let Err(e) = kernel.apply(&script::full_commands(&current)) {
        log(&format!("cannot apply: {e}"));
        return crate::EXIT_INVALID;
    }
    let s = current.stats();
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
    let changes = watch_directory(&args.source);
    loop {
        wait_for_change(changes.as_ref(), Duration::from_millis(args.interval_ms));
        if let Some(f) = flows.as_mut() {
            f.poll(&cluster, args.netns.as_deref(), args.mode);
        }
        let t = Instant::now();
        let (next_cluster, next) = match build(&args, &mut watched) {
            Ok(None) => continue,
            Ok(Some(built)) => {
                last_error = None;
                built
            }
            Err(e) => {
                // A directory that cannot be read fails on every look: say so once.
                if last_error.as_ref() != Some(&e) {
                    log(&format!("refused: {e}; the last good ruleset stays in force"));
                }
                last_error = Some(e);
                continue;
            }
        };
        let delta = script::update_commands(&current, &next);
        let applied = kernel.apply(&delta).or_else(|e| {
            // The table changed under us (or the delta did not fit): replace it whole, still atomically.
            log(&format!("delta refused ({e}); replacing the table"));
            kernel.apply(&script::full_commands(&next))
        });
        match applied {
            Ok(()) => {
                log(&format!("updated in {:.1} ms: {} commands", t.elapsed().as_secs_f64() * 1e3, delta.len()));
                current = next;
                cluster = next_cluster;
            }
            Err(e) => log(&format!("cannot apply: {e}; the last good ruleset stays in force")),
        }
    }
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

/// The flow log: new connections from the table's flow sets, each written once, with the
/// engine's verdict and deciding rules for it.
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
