//! `palisade agent`: keep the kernel's Palisade table in step with a directory of manifests.
//!
//! Every change is one nft transaction. The first load replaces any table already there in
//! the same transaction (so a restart adopts it without a gap); later changes send only the
//! delta. Input that does not validate is refused and the last good ruleset stays in force.
//! Stopping the agent leaves the table, and enforcement, in place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use palisade_core::build::BuildOptions;
use palisade_nft::{compile, script, Options, Ruleset};

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
    /// How often to look for changes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// Namespace for manifests that name none.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Enforce,
    Audit,
}

/// Files under `dir` with their modification time and size: a change in any means reload.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (SystemTime, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(p);
            } else {
                out.insert(p, (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len()));
            }
        }
    }
    out
}

fn log(msg: &str) {
    eprintln!("palisade agent: {msg}");
}

/// Loads and compiles; `Err` carries the problems as one printable block.
fn build(args: &Args) -> Result<Ruleset, String> {
    let opts = BuildOptions { default_namespace: args.namespace.clone() };
    let load = palisade_load::load_paths(std::slice::from_ref(&args.source), &opts).map_err(|e| e.to_string())?;
    if crate::input::report(&load, true).is_err() {
        return Err(format!("{} error(s) in {}", load.errors(), args.source.display()));
    }
    let cluster = load.cluster.as_ref().expect("report returned Ok");
    Ok(compile(cluster, &Options { node: args.node.clone(), audit: args.mode == Mode::Audit }))
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
    let mut current = match build(&args) {
        Ok(rs) => rs,
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
    if let Err(e) = script::apply(&script::full(&current), args.netns.as_deref()) {
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
    let mut seen = snapshot(&args.source);
    loop {
        std::thread::sleep(Duration::from_millis(args.interval_ms));
        let now = snapshot(&args.source);
        if now == seen {
            continue;
        }
        seen = now;
        let t = Instant::now();
        let next = match build(&args) {
            Ok(rs) => rs,
            Err(e) => {
                log(&format!("refused: {e}; the last good ruleset stays in force"));
                continue;
            }
        };
        let delta = script::update(&current, &next);
        let applied = script::apply(&delta, args.netns.as_deref()).or_else(|e| {
            // The table changed under us (or the delta did not fit): replace it whole, still atomically.
            log(&format!("delta refused ({e}); replacing the table"));
            script::apply(&script::full(&next), args.netns.as_deref())
        });
        match applied {
            Ok(()) => {
                log(&format!("updated in {} ms: {} nft commands", t.elapsed().as_millis(), delta.lines().count()));
                current = next;
            }
            Err(e) => log(&format!("cannot apply: {e}; the last good ruleset stays in force")),
        }
    }
}
