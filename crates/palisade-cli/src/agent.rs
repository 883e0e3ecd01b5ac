//! `palisade agent`: the arguments and the wiring of the node agent (`palisade-agent`), and
//! the commands that only read what a running agent left (`--counters`, `--status`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use palisade_agent::{Config, Mode as AgentMode};
use palisade_nft::script;

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Directory of manifests (cluster and policies), watched for changes. A ConfigMap or
    /// Secret volume is read as Kubernetes writes it (one version at a time, through `..data`).
    /// `kubernetes`: watch the API server instead (a directory of that name: `./kubernetes`).
    #[arg(long)]
    source: PathBuf,
    /// With `--source kubernetes`: this kubeconfig (else the in-cluster ServiceAccount).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// With `--source kubernetes`: this kubeconfig context (else its current one).
    #[arg(long)]
    context: Option<String>,
    /// Serve /livez, /readyz and /metrics (Prometheus text) over HTTP on this address
    /// (`ADDR:PORT`; port 0 picks one, which the log names).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
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
    /// Print what the agent enforcing this network namespace says (what is in force, what is
    /// held back and why, table restores), and exit.
    #[arg(long)]
    status: bool,
    /// Remove the table (`inet palisade`) from the kernel, and exit. A stopping agent leaves
    /// its table in force (pods stay protected across restarts and rolling updates); this is
    /// how it goes for good. Refused while an agent holds the network namespace.
    #[arg(long)]
    uninstall: bool,
    /// How often to look again without a file event (inotify wakes the agent at once), and to
    /// read the flow sets, in milliseconds.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// A changed file whose writer was not seen closing it is taken once it has not changed
    /// for this long, in milliseconds (a close after writing, or a rename into place, is
    /// taken at once).
    #[arg(long, default_value_t = 200, value_name = "MS")]
    settle_ms: u64,
    /// How often to compare the kernel's table with the ruleset (changes by others are
    /// noticed at once through nf_tables notifications; this is the backstop), in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    reconcile_ms: u64,
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
pub enum Mode {
    Enforce,
    Audit,
}

fn log(msg: &str) {
    palisade_agent::log(msg);
}

impl Args {
    fn config(&self) -> Config {
        Config {
            source: self.source.clone(),
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            listen: self.listen,
            node: self.node.clone(),
            netns: self.netns.clone(),
            mode: match self.mode {
                Mode::Enforce => AgentMode::Enforce,
                Mode::Audit => AgentMode::Audit,
            },
            once: self.once,
            interval: Duration::from_millis(self.interval_ms),
            settle: Duration::from_millis(self.settle_ms),
            reconcile: Duration::from_millis(self.reconcile_ms),
            verify_after: Duration::from_millis(self.verify_after_ms),
            namespace: self.namespace.clone(),
            flow_log: self.flow_log.clone(),
        }
    }
}

pub fn run(args: Args) -> u8 {
    if args.counters {
        return print_counters(args.netns.as_deref());
    }
    if args.status {
        return print_status(args.netns.as_deref());
    }
    if args.uninstall {
        return uninstall(args.netns.as_deref());
    }
    if args.dry_run {
        return match palisade_agent::dry_run(&args.config()) {
            Ok(script) => {
                crate::emit(&script);
                0
            }
            Err(_) => crate::EXIT_INVALID,
        };
    }
    match palisade_agent::run(args.config()) {
        Ok(()) => 0,
        Err(_) => crate::EXIT_INVALID,
    }
}

/// Deletes the table with `nft` (the image ships it) inside the namespace.
fn uninstall(netns: Option<&str>) -> u8 {
    let refuse = |why: String| {
        eprintln!("palisade agent: refused: {why}");
        crate::EXIT_INVALID
    };
    match palisade_nft::owner::ask(netns) {
        Ok(Some((pid, _))) => {
            return refuse(format!(
                "the agent (pid {pid}) holds this network namespace and would restore the table: stop it first"
            ))
        }
        Ok(None) => {}
        Err(e) => return refuse(format!("cannot tell whether an agent runs here: {e}")),
    }
    let table = palisade_nft::ir::TABLE;
    let run = move || std::process::Command::new("nft").args(["delete", "table", "inet", table]).output();
    match palisade_nft::netlink::in_netns(netns, run) {
        Ok(Ok(out)) if out.status.success() => {
            eprintln!("palisade agent: removed table inet {table}");
            0
        }
        Ok(Ok(out)) if String::from_utf8_lossy(&out.stderr).contains("No such file or directory") => {
            eprintln!("palisade agent: no table inet {table} to remove");
            0
        }
        Ok(Ok(out)) => refuse(format!("nft delete table: {}", String::from_utf8_lossy(&out.stderr).trim())),
        Ok(Err(e)) | Err(e) => refuse(format!("cannot run nft: {e}")),
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

/// `palisade agent --status`: what the agent enforcing network namespace `netns` says.
fn print_status(netns: Option<&str>) -> u8 {
    match palisade_nft::owner::ask(netns) {
        Ok(Some((_, status))) => {
            crate::emit(&status);
            0
        }
        Ok(None) => {
            log("no palisade agent runs in this network namespace");
            crate::EXIT_INVALID
        }
        Err(e) => {
            log(&format!("cannot ask the agent: {e}"));
            crate::EXIT_INVALID
        }
    }
}
