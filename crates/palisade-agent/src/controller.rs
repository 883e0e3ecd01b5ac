//! The controller loop: sources → changes → store → sync → kernel, with refusal (invalid
//! input never opens a hole), the table kept as the agent left it, and a full compile as the
//! self-check once the directory is quiet. One agent per network namespace
//! (`palisade_nft::owner`). Stopping the agent leaves the table, and enforcement, in place.

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_core::cluster::Cluster;
use palisade_ingest::object::followed_by_patch;
use palisade_ingest::store::{self, Store};
use palisade_ingest::Input;
use palisade_load::directory::Activity;
use palisade_load::watch::{Built, Changes, Held, Watched};
use palisade_load::Load;
use palisade_nft::owner::Owner;
use palisade_nft::script::{self, Command};
use palisade_nft::{Compiled, Synced};

use crate::enforcement::{build_options, claim, compile_options, warn_unenforced};
use crate::files::{Events, Wake};
use crate::flows::FlowLog;
use crate::health::{self, Health};
use crate::kernel::Kernel;
use crate::table::Table;
use crate::{log, status, Config, Mode, Refused};

/// At start, files still being written are waited for this long at most.
const FIRST_LOOK: Duration = Duration::from_secs(5);

/// The objects in force and their compiled ruleset: what the kernel holds.
struct Enforced {
    /// The live index of the objects in force (the files' objects less those held back):
    /// changes go in as objects, and `finish` gives the cluster and what it touched.
    store: Store,
    /// The ruleset in force, with the cluster it enforces; it follows the store's cluster
    /// (`Compiled::sync`).
    compiled: Compiled,
}

impl Enforced {
    /// What a full build gave (`None`: it gave no cluster), compiled in full.
    fn compile(load: Load, args: &Config) -> Option<Enforced> {
        let cluster = load.cluster?;
        warn_unenforced(&cluster);
        let compiled = Compiled::following(&cluster, &compile_options(args));
        Some(Enforced { store: Store::adopt(load.inputs, cluster, build_options(args)), compiled })
    }

    /// The cluster the kernel enforces.
    fn cluster(&self) -> &Cluster {
        self.compiled.cluster().expect("a following compile keeps its cluster")
    }
}

/// A full build and compile running on another thread, of what was in force after change
/// number `generation`.
struct Check {
    generation: u64,
    result: Receiver<Option<Enforced>>,
}

impl Check {
    fn start(args: &Config, watched: &Watched, generation: u64) -> Check {
        let (tx, result) = std::sync::mpsc::channel();
        let (snapshot, args) = (watched.snapshot(), args.clone());
        std::thread::spawn(move || {
            let load = snapshot.load(&build_options(&args));
            let _ = tx.send(Enforced::compile(load, &args));
        });
        Check { generation, result }
    }
}

/// Serves `/livez`, `/readyz` and `/metrics` on `args.listen` (when given), then claims the
/// network namespace, opens its nf_tables, applies the source and keeps the table in step
/// until the process ends (with `once`: returns after the first apply; the Kubernetes source
/// returns on SIGTERM or SIGINT).
pub fn run(args: Config) -> Result<(), Refused> {
    let health = Health::new(args.interval);
    if let Some(addr) = args.listen {
        match health::serve(addr, health.clone()) {
            Ok(bound) => log(&format!("serving /livez, /readyz and /metrics on http://{bound}")),
            Err(e) => {
                log(&format!("refused: {e}"));
                return Err(Refused(e.to_string()));
            }
        }
    }
    if args.source.as_os_str() == crate::kubernetes::SOURCE {
        return crate::kubernetes::run(args, health);
    }
    let netns = args.netns.clone();
    let (owner, kernel) = claim(netns.as_deref())?;
    let own = kernel.portid().unwrap_or(0);
    let mut agent = Agent::with_health(args, kernel, Some(owner), health)?;
    if agent.args.once {
        return Ok(());
    }
    let tx = agent.events.sender();
    match palisade_nft::monitor::watch(netns.as_deref(), own, move |e| tx.send(Wake::Table(e)).is_ok()) {
        Ok(watch) => agent.table.set_watch(watch),
        Err(e) => log(&format!("cannot watch the table ({e}): only the periodic comparison will restore it")),
    }
    loop {
        agent.turn();
    }
}

/// Reads the directory as it is (waiting for files still being written), and builds it.
fn first_load(args: &Config, watched: &mut Watched) -> Result<Built, String> {
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

/// `--dry-run`: the script of the whole table (`nft -f` text); every object must validate.
pub fn dry_run(args: &Config) -> Result<String, Refused> {
    let mut watched = Watched::with_settle(&args.source, args.settle);
    let built = first_load(args, &mut watched).map_err(|e| {
        log(&format!("refused: {e}; nothing applied"));
        Refused(e)
    })?;
    let Some(cluster) = built.load.cluster.clone().filter(|_| built.held.is_empty()) else {
        report(&built);
        let why = format!("{} object(s) or file(s) do not validate; nothing applied", built.held.len());
        log(&format!("refused: {why}"));
        return Err(Refused(why));
    };
    warn_unenforced(&cluster);
    let compiled = Compiled::new(&cluster, &compile_options(args));
    Ok(palisade_nft::render::text::full(compiled.ruleset()))
}

/// The running agent: its inputs, what is in force, and the kernel.
pub struct Agent<K: Kernel> {
    args: Config,
    watched: Watched,
    activity: Activity,
    state: Enforced,
    table: Table<K>,
    /// The claim on the network namespace, which serves the status (`None` in tests).
    owner: Option<Owner>,
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
    /// What `--listen` serves: heartbeat, readiness, metrics.
    health: Arc<Health>,
    /// The kernel refused the last transaction.
    apply_failed: bool,
}

impl<K: Kernel> Agent<K> {
    /// Reads and builds the directory and loads the whole table in one transaction (replacing
    /// any table there, so a restart adopts it without a gap). Refuses when objects do not
    /// validate and a table is in force (it is the last good state there is), with `once`, or
    /// when nothing builds; on a fresh node it enforces what validates.
    pub fn start(args: Config, kernel: K, owner: Option<Owner>) -> Result<Agent<K>, Refused> {
        let health = Health::new(args.interval);
        Agent::with_health(args, kernel, owner, health)
    }

    /// [`Agent::start`], reporting to `health` (what `--listen` serves).
    pub fn with_health(
        args: Config,
        kernel: K,
        owner: Option<Owner>,
        health: Arc<Health>,
    ) -> Result<Agent<K>, Refused> {
        let source = std::path::absolute(&args.source).unwrap_or_else(|_| args.source.clone());
        // Watching before the first look: no change between the two is missed.
        let events = Events::watch(&source);
        let mut watched = Watched::with_settle(&source, args.settle);
        let built = first_load(&args, &mut watched).map_err(|e| {
            log(&format!("refused: {e}; nothing applied"));
            Refused(e)
        })?;
        let builds = built.load.cluster.is_some();
        if !built.held.is_empty() || !builds {
            report(&built);
            let in_force = kernel.listing().ok().flatten().is_some();
            if args.once || in_force || !builds {
                let table = if in_force { "the table in force stays as it is" } else { "nothing applied" };
                let why = format!("{} object(s) or file(s) do not validate; {table}", built.held.len());
                log(&format!("refused: {why}"));
                return Err(Refused(why));
            }
        }
        let Built { load, held, .. } = built;
        let state = Enforced::compile(load, &args).expect("checked");
        let t = Instant::now();
        let applied = kernel.apply(&script::full_commands(state.compiled.ruleset()), None);
        health.applied(applied.is_ok(), t.elapsed(), &[t]);
        if let Err(e) = applied {
            log(&format!("cannot apply: {e}"));
            return Err(Refused(format!("cannot apply: {e}")));
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
        status::log_held(&[], &held);
        let flows =
            args.flow_log.as_deref().filter(|_| !args.once).map(FlowLog::open).transpose().unwrap_or_else(|e| {
                log(&format!("cannot open the flow log: {e}; not logging flows"));
                None
            });
        // A restore encodes the whole table when it needs it, not ahead on the loop's thread
        // (as in Kubernetes mode): a change arriving meanwhile would wait for it, and the
        // encoded table would be held in memory all the time.
        let table = Table::new(kernel, args.reconcile);
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
            held,
            last_change: None,
            directory_error: None,
            health,
            apply_failed: false,
        };
        agent.publish();
        Ok(agent)
    }

    /// One turn of the loop: waits for a file or table event (or the next due time), then
    /// the kernel's table first (a flushed table leaves every pod open), the flow log, a
    /// finished self-check, the directory's changes, the periodic comparison.
    pub fn turn(&mut self) {
        let interval = self.args.interval;
        let timeout = [Some(interval), self.watched.again_in(), Some(self.table.due_in())]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(interval)
            .max(Duration::from_millis(1));
        let woken = self.events.wait(timeout, &mut self.activity);
        self.table.react(woken.table, self.state.compiled.ruleset(), self.generation);
        if let Some(f) = self.flows.as_mut() {
            f.poll(self.state.cluster(), self.args.netns.as_deref(), self.args.mode);
        }
        self.adopt_check();
        self.take_changes();
        self.table.check_if_due(self.state.compiled.ruleset(), self.generation);
        self.publish();
        self.health.beat();
    }

    /// What `--listen` serves for this agent.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The kernel the agent drives.
    pub fn kernel(&self) -> &K {
        &self.table.kernel
    }

    /// The cluster in force.
    pub fn cluster(&self) -> &Cluster {
        self.state.cluster()
    }

    /// Restores the agent has made of its table.
    pub fn restores(&self) -> usize {
        self.table.restores
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
            let quiet = self.quiet_since.elapsed() >= self.args.verify_after;
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
        if let Some((delta, how)) = self.object_change(changes) {
            self.watched.settle();
            self.unverified = true;
            self.send(&delta, t, &how);
            self.last_change = Some((Instant::now(), how));
            self.note_held(self.watched.held());
            return;
        }
        self.full_change(t);
    }

    /// The object path: when only Pods and enforced policies came, went or changed, they go
    /// into the store one by one, and its cluster into the ruleset by what they touched (a
    /// change then costs what it touches, not what the cluster holds). `None`: the store
    /// cannot build them as they are (it reports nothing: the full path holds back what
    /// does not validate, with code frames), or they are not such objects; take the full path.
    fn object_change(&mut self, changes: Changes) -> Option<(Vec<Command>, String)> {
        let followed = |i: &Input| followed_by_patch(&i.object);
        if changes.problems || !changes.gone.iter().chain(&changes.came).all(followed) {
            return None;
        }
        let (pod_objects, policy_objects) = changes.counts();
        let opts = build_options(&self.args);
        let state = &mut self.state;
        // A changed object is in both: out as it was, in as it is.
        for gone in &changes.gone {
            state.store.delete(&store::key(&gone.object, &opts));
        }
        for came in changes.came {
            state.store.apply(came);
        }
        let touched = state.store.finish().ok()?;
        let cluster = state.store.cluster().expect("finished");
        let delta = state.compiled.sync(cluster, &touched);
        let mut how = format!("object path: {pod_objects} pod and {policy_objects} policy objects");
        if state.compiled.synced() == Synced::Compiled {
            warn_unenforced(cluster);
            how.push_str("; compiled in full");
        }
        Some((delta, how))
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
        warn_unenforced(&cluster);
        let delta = self.state.compiled.recompile(&cluster);
        self.state.store = Store::adopt(built.load.inputs, cluster, build_options(&self.args));
        let how = match built.held.len() {
            0 => "full compile".to_string(),
            n => format!("full compile; {n} held back"),
        };
        self.send(&delta, t, &how);
        self.unverified = false;
        self.last_change = Some((Instant::now(), how));
        self.note_held(built.held);
    }

    /// One transaction to the kernel, counted (`t`: when the change was taken).
    fn send(&mut self, delta: &[Command], t: Instant, how: &str) {
        let sent = Instant::now();
        let ok = self.table.apply(delta, self.state.compiled.ruleset(), t, how);
        self.health.applied(ok, sent.elapsed(), &[t]);
        self.apply_failed = !ok;
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
            self.health.metrics.self_check_mismatches.inc();
        }
        self.state = full;
        if !delta.is_empty() {
            self.send(&delta, Instant::now(), "full compile");
        }
        self.unverified = false;
    }

    /// Serves the status to `palisade agent --status`, and readiness and metrics to `--listen`.
    fn publish(&self) {
        let rs = self.state.compiled.ruleset();
        let metrics = &self.health.metrics;
        metrics.in_force(self.state.compiled.enforced_pods(), &rs.stats());
        metrics.table_restores.set(i64::try_from(self.table.restores).unwrap_or(i64::MAX));
        let mut refused = std::collections::BTreeMap::<String, usize>::new();
        for h in &self.held {
            *refused.entry(h.object.split(' ').next().unwrap_or_default().to_string()).or_default() += 1;
        }
        health::Metrics::counts(&metrics.refused, refused);
        let mut unready = Vec::new();
        if let Some(e) = &self.directory_error {
            unready.push(format!("the directory cannot be read: {e}"));
        }
        if self.apply_failed {
            unready.push("the kernel refused the last transaction; the last good ruleset stays in force".into());
        }
        self.health.set_unready(unready);
        let Some(owner) = &self.owner else { return };
        let facts = status::Facts {
            source: self.watched.root(),
            mode: if self.args.mode == Mode::Audit { "audit" } else { "enforce" },
            node: self.args.node.as_deref(),
            pods: self.state.cluster().pods.len(),
            enforced: self.state.compiled.enforced_pods(),
            policies: self.state.cluster().policies.len(),
            stats: rs.stats(),
            last_change: self.last_change.as_ref(),
            held: &self.held,
            restores: self.table.restores,
            last_restore: self.table.last_restore.as_deref(),
            directory_error: self.directory_error.as_deref(),
        };
        owner.set_status(status::text(&facts));
    }
}
