//! `palisade agent`: keep the kernel's Palisade table in step with a directory of manifests,
//! and the table as the agent left it.
//!
//! One turn of the loop, phase by phase: the files (only complete ones; see
//! `palisade_load::directory`) → the objects that changed, invalid ones held back alone
//! (`palisade_load::watch`) → a patch of what they touch, or a full build and compile → one nft
//! transaction; and the kernel's table, watched and compared, restored when someone else
//! changed it (`table`). One agent per network namespace (`palisade_nft::owner`). Stopping the
//! agent leaves the table, and enforcement, in place.

mod files;
mod flows;
mod status;
mod table;

use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use palisade_core::cluster::Cluster;
use palisade_ingest::BuildOptions;
use palisade_load::directory::Activity;
use palisade_load::watch::{Built, Changes, Held, Watched};
use palisade_nft::kernel::Kernel;
use palisade_nft::owner::{Owner, OwnerError};
use palisade_nft::script::{self, Command};
use palisade_nft::{Compiled, NeedsFullCompile, Options};

use files::{Events, Wake};
use flows::FlowLog;
use table::Table;

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Directory of manifests (cluster and policies), watched for changes. A ConfigMap or
    /// Secret volume is read as Kubernetes writes it (one version at a time, through `..data`).
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
    /// Print what the agent enforcing this network namespace says (what is in force, what is
    /// held back and why, table restores), and exit.
    #[arg(long)]
    status: bool,
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

pub fn log(msg: &str) {
    eprintln!("palisade agent: {msg}");
}

fn build_options(args: &Args) -> BuildOptions {
    BuildOptions { default_namespace: args.namespace.clone() }
}

fn compile_options(args: &Args) -> Options {
    Options { node: args.node.clone(), audit: args.mode == Mode::Audit, record_flows: args.flow_log.is_some() }
}

/// At start, files still being written are waited for this long at most.
const FIRST_LOOK: Duration = Duration::from_secs(5);
/// After the directory has been quiet this long, a restore is got ready ahead.
const PREPARE_AFTER: Duration = Duration::from_secs(1);

/// The cluster and its compiled ruleset: what the kernel holds.
struct Enforced {
    cluster: Cluster,
    compiled: Compiled,
    /// The cluster and the compiled state no longer match what is in force (a patch fell back
    /// half-way): only the ruleset is right, and the next change takes the full path.
    stale: bool,
}

impl Enforced {
    fn compile(cluster: Cluster, args: &Args) -> Enforced {
        let compiled = Compiled::new(&cluster, &compile_options(args));
        Enforced { cluster, compiled, stale: false }
    }
}

/// A full build and compile running on another thread, of what was in force after change
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
            let _ = tx.send(load.cluster.map(|c| Enforced::compile(c, &args)));
        });
        Check { generation, result }
    }
}

pub fn run(args: Args) -> u8 {
    if args.counters {
        return print_counters(args.netns.as_deref());
    }
    if args.status {
        return status::print(args.netns.as_deref());
    }
    if args.dry_run {
        return dry_run(&args);
    }
    match Agent::start(args) {
        Ok(agent) if agent.args.once => 0,
        Ok(mut agent) => agent.run(),
        Err(code) => code,
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

/// Reads the directory as it is (waiting for files still being written), and builds it.
fn first_load(args: &Args, watched: &mut Watched) -> Result<Built, String> {
    let start = Instant::now();
    watched.poll().map_err(|e| e.to_string())?;
    while let Some(wait) = watched.again_in().filter(|_| start.elapsed() < FIRST_LOOK) {
        std::thread::sleep(wait);
        watched.poll().map_err(|e| e.to_string())?;
    }
    Ok(watched.build(&build_options(args)))
}

/// Prints the errors of what does not validate, with their code frames.
fn report(built: &Built) {
    use std::io::IsTerminal;
    let renderer = palisade_load::diagnostic::Renderer::new(&built.load.sources, std::io::stderr().is_terminal());
    for p in &built.errors {
        eprint!("{}", renderer.render(p));
    }
}

/// `--dry-run`: the script of the whole table; every object must validate.
fn dry_run(args: &Args) -> u8 {
    let mut watched = Watched::with_settle(&args.source, Duration::from_millis(args.settle_ms));
    let built = match first_load(args, &mut watched) {
        Ok(b) => b,
        Err(e) => {
            log(&format!("refused: {e}; nothing applied"));
            return crate::EXIT_INVALID;
        }
    };
    let Some(cluster) = built.load.cluster.clone().filter(|_| built.held.is_empty()) else {
        report(&built);
        log(&format!("refused: {} object(s) or file(s) do not validate; nothing applied", built.held.len()));
        return crate::EXIT_INVALID;
    };
    let compiled = Compiled::new(&cluster, &compile_options(args));
    crate::emit(&script::full(compiled.ruleset()));
    0
}

/// The running agent: its inputs, what is in force, and the kernel.
struct Agent {
    args: Args,
    watched: Watched,
    activity: Activity,
    state: Enforced,
    table: Table,
    owner: Owner,
    events: Events,
    flows: Option<FlowLog>,
    /// Counts applied changes; a check compiled from an older state is of no use.
    generation: u64,
    /// Changes patched in since the last full compile, and when the directory last changed.
    unverified: bool,
    quiet_since: Instant,
    check: Option<Check>,
    held: Vec<Held>,
    last_change: Option<(Instant, String)>,
    /// Why the directory cannot be read, while it cannot.
    directory_error: Option<String>,
}

impl Agent {
    /// Claims the namespace, reads and builds the directory and loads the whole table in one
    /// transaction (replacing any table there, so a restart adopts it without a gap).
    fn start(args: Args) -> Result<Agent, u8> {
        let netns = args.netns.as_deref();
        let owner = match palisade_nft::owner::claim(netns) {
            Ok(o) => o,
            Err(OwnerError::Taken { pid, status }) => {
                log(&format!(
                    "refused: another palisade agent (pid {pid}) enforces this network namespace; its status:"
                ));
                eprint!("{status}");
                return Err(crate::EXIT_INVALID);
            }
            Err(e) => {
                log(&format!("refused: {e}"));
                return Err(crate::EXIT_INVALID);
            }
        };
        let kernel = Kernel::open(netns).map_err(|e| {
            log(&format!("cannot reach nf_tables: {e}"));
            crate::EXIT_INVALID
        })?;
        let source = std::path::absolute(&args.source).unwrap_or_else(|_| args.source.clone());
        // Watching before the first look: no change between the two is missed.
        let events = Events::watch(&source);
        let mut watched = Watched::with_settle(&source, Duration::from_millis(args.settle_ms));
        let built = first_load(&args, &mut watched).map_err(|e| {
            log(&format!("refused: {e}; nothing applied"));
            crate::EXIT_INVALID
        })?;
        let cluster = built.load.cluster.clone();
        if !built.held.is_empty() || cluster.is_none() {
            report(&built);
            // With a table in force (a restart), it is the last good state there is: keep it
            // until the input is fixed. On a fresh node, enforcing what validates beats nothing.
            let in_force = kernel.listing().ok().flatten().is_some();
            if args.once || in_force || cluster.is_none() {
                let table = if in_force { "the table in force stays as it is" } else { "nothing applied" };
                log(&format!("refused: {} object(s) or file(s) do not validate; {table}", built.held.len()));
                return Err(crate::EXIT_INVALID);
            }
        }
        let state = Enforced::compile(cluster.expect("checked"), &args);
        let t = Instant::now();
        if let Err(e) = kernel.apply(&script::full_commands(state.compiled.ruleset())) {
            log(&format!("cannot apply: {e}"));
            return Err(crate::EXIT_INVALID);
        }
        let s = state.compiled.ruleset().stats();
        log(&format!(
            "applied: {} pods enforced, {} chains, {} rules, {} set elements ({} ms, mode {:?})",
            state.compiled.enforced_pods(),
            s.chains,
            s.rules,
            s.set_elements,
            t.elapsed().as_millis(),
            args.mode
        ));
        status::log_held(&[], &built.held);
        let flows =
            args.flow_log.as_deref().filter(|_| !args.once).map(FlowLog::open).transpose().unwrap_or_else(|e| {
                log(&format!("cannot open the flow log: {e}; not logging flows"));
                None
            });
        let own = kernel.portid().unwrap_or(0);
        let mut table = Table::new(kernel, Duration::from_millis(args.reconcile_ms));
        if !args.once {
            table.prepare(state.compiled.ruleset(), 0);
        }
        if !args.once {
            let tx = events.sender();
            match palisade_nft::monitor::watch(netns, own, move |e| tx.send(Wake::Table(e)).is_ok()) {
                Ok(watch) => table.set_watch(watch),
                Err(e) => log(&format!("cannot watch the table ({e}): only the periodic comparison will restore it")),
            }
        }
        let agent = Agent {
            args,
            watched,
            activity: Activity::default(),
            state,
            table,
            owner,
            events,
            flows,
            generation: 0,
            unverified: false,
            quiet_since: Instant::now(),
            check: None,
            held: built.held,
            last_change: None,
            directory_error: None,
        };
        agent.publish();
        Ok(agent)
    }

    fn run(&mut self) -> u8 {
        let interval = Duration::from_millis(self.args.interval_ms);
        loop {
            let timeout = [Some(interval), self.watched.again_in(), Some(self.table.due_in())]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(interval)
                .max(Duration::from_millis(1));
            let woken = self.events.wait(timeout, &mut self.activity);
            // The kernel first: a flushed table leaves every pod open.
            self.table.react(woken.table, self.state.compiled.ruleset(), self.generation);
            if let Some(f) = self.flows.as_mut() {
                f.poll(&self.state.cluster, self.args.netns.as_deref(), self.args.mode);
            }
            self.adopt_check();
            self.take_changes();
            self.table.check_if_due(self.state.compiled.ruleset(), self.generation);
            // Quiet for a while: get the next restore ready.
            if self.quiet_since.elapsed() >= PREPARE_AFTER {
                self.table.prepare(self.state.compiled.ruleset(), self.generation);
            }
            self.publish();
        }
    }

    /// Sources → changes → compile → kernel, for whatever the directory holds now.
    fn take_changes(&mut self) {
        let t = Instant::now();
        let changes = match self.watched.poll_with(&self.activity) {
            Ok(c) => {
                if let Some(e) = self.directory_error.take() {
                    log(&format!("the directory can be read again (it could not: {e})"));
                }
                c
            }
            Err(e) => {
                let e = e.to_string();
                if self.directory_error.as_ref() != Some(&e) {
                    log(&format!("cannot read the directory: {e}; everything stays in force"));
                }
                self.directory_error = Some(e);
                return;
            }
        };
        let Some(changes) = changes else {
            let quiet = self.quiet_since.elapsed() >= Duration::from_millis(self.args.verify_after_ms);
            if self.unverified && quiet && self.check.is_none() {
                self.check = Some(Check::start(&self.args, &self.watched, self.generation));
            }
            return;
        };
        self.quiet_since = Instant::now();
        // A broken file keeps its objects, a file saved as it was changes none: nothing to apply
        // (and nothing held back can have become valid).
        if changes.is_empty() && !changes.problems {
            self.watched.settle();
            self.note_held(self.watched.held());
            return;
        }
        self.generation += 1;
        if let Some((delta, how)) = self.object_change(&changes) {
            self.watched.settle();
            self.unverified = true;
            self.table.apply(&delta, self.state.compiled.ruleset(), t, &how);
            self.last_change = Some((Instant::now(), how));
            self.note_held(self.watched.held());
            return;
        }
        self.full_change(t);
    }

    /// The object path: when only Pods and enforced policies came, went or changed, and the
    /// full build would take them as they are, patch the cluster and the ruleset instead of
    /// building and compiling everything (a change then costs what it touches, not what the
    /// cluster holds). `None`: take the full path.
    fn object_change(&mut self, changes: &Changes) -> Option<(Vec<Command>, String)> {
        let state = &mut self.state;
        if state.stale {
            return None;
        }
        let (policies, pods) = changes.patches(&state.cluster, &build_options(&self.args))?;
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

    /// The full path: build everything (holding back what does not validate), compile, and
    /// send the difference.
    fn full_change(&mut self, t: Instant) {
        let built = self.watched.build(&build_options(&self.args));
        let newly = built.held.iter().any(|h| !self.held.iter().any(|was| was.to_string() == h.to_string()));
        if newly {
            report(&built);
        }
        let Some(cluster) = built.load.cluster else {
            log("refused: what is in force does not build any more; the last good ruleset stays in force");
            return;
        };
        let next = Enforced::compile(cluster, &self.args);
        let delta = script::update_commands(self.state.compiled.ruleset(), next.compiled.ruleset());
        let how = match built.held.len() {
            0 => "full compile".to_string(),
            n => format!("full compile; {n} held back"),
        };
        self.table.apply(&delta, next.compiled.ruleset(), t, &how);
        self.state = next;
        self.unverified = false;
        self.last_change = Some((Instant::now(), how));
        self.note_held(built.held);
    }

    fn note_held(&mut self, now: Vec<Held>) {
        status::log_held(&self.held, &now);
        self.held = now;
    }

    /// Takes a full compile of what is in force after the changes the object path took: the
    /// kernel must then hold exactly it (a difference would be a bug in the object paths: it
    /// is logged and mended). The full build also brings back what the object paths do not
    /// keep up to date in the cluster (workloads' stand-in pods, warnings).
    fn adopt_check(&mut self) {
        let Some(done) = self.check.as_ref().and_then(|c| c.result.try_recv().ok().map(|r| (c.generation, r))) else {
            return;
        };
        self.check = None;
        let (true, Some(full)) = (done.0 == self.generation, done.1) else { return };
        let delta = script::update_commands(self.state.compiled.ruleset(), full.compiled.ruleset());
        if delta.is_empty() {
            log("checked against a full compile: no difference");
        } else {
            log(&format!(
                "the object paths left {} differences to the full compile; applying the full compile",
                delta.len()
            ));
            self.table.apply(&delta, full.compiled.ruleset(), Instant::now(), "full compile");
        }
        self.state = full;
        self.unverified = false;
    }

    /// Serves the status to `palisade agent --status`.
    fn publish(&self) {
        let rs = self.state.compiled.ruleset();
        let facts = status::Facts {
            source: self.watched.root(),
            mode: if self.args.mode == Mode::Audit { "audit" } else { "enforce" },
            node: self.args.node.as_deref(),
            pods: self.state.cluster.pods.len(),
            enforced: self.state.compiled.enforced_pods(),
            policies: self.state.cluster.policies.len(),
            stats: rs.stats(),
            last_change: self.last_change.as_ref(),
            held: &self.held,
            restores: self.table.restores,
            last_restore: self.table.last_restore.as_deref(),
            directory_error: self.directory_error.as_deref(),
        };
        self.owner.set_status(status::text(&facts));
    }
}
