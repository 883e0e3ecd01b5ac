//! `palisade agent --source kubernetes`: the node's table kept in step with the API server.
//! The feed (`feed`) watches every served kind; its changes go into the store one object at
//! a time (`view`); once every kind has synced once, each batch of changes is finished by the
//! store, followed by the ruleset (`Compiled::sync`: a pod or policy change costs what it
//! touches) and sent as one nf_tables transaction. Until then nothing is applied: the table already in
//! the kernel (a restart's) stays. SIGTERM stops the loop between transactions and leaves the
//! table in force. The table is kept as the agent left it as in directory mode (`table`).

mod feed;
#[cfg(test)]
mod tests;
mod view;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_kube::kinds::Kind;
use palisade_kube::{Change, Target};
use palisade_nft::script;
use palisade_nft::{Compiled, Synced};

use crate::enforcement::{build_options, claim, compile_options};
use crate::health::{Health, KindLabel, Metrics};
use crate::kernel::Kernel;
use crate::table::Table;
use crate::{log, Config, Mode, Refused};
use feed::Feed;
use view::View;

/// The `--source` value that means the API server.
pub const SOURCE: &str = "kubernetes";

/// The loop's longest wait: the heartbeat `/livez` reads.
const TURN: Duration = Duration::from_secs(1);

/// The agent's state between turns, over any [`Kernel`] (netlink in production, the fake in
/// the unit tests, which drive [`KubeAgent::turn`] with the feed's messages directly).
struct KubeAgent<K: Kernel> {
    args: Config,
    health: Arc<Health>,
    /// The claim on the network namespace, which serves `--status` (`None` in unit tests).
    owner: Option<palisade_nft::owner::Owner>,
    table: Table<K>,
    view: View,
    /// The kinds discovery found served (`None`: not yet).
    kinds: Option<Vec<&'static Kind>>,
    /// Why there is no client or no discovery yet.
    unavailable: Option<String>,
    /// Kinds whose list or watch fails now, and why.
    failing: BTreeMap<&'static Kind, String>,
    /// What the kernel holds (`None`: nothing applied yet).
    compiled: Option<Compiled>,
    /// When each change not yet in the kernel arrived.
    pending: Vec<Instant>,
    generation: u64,
    /// When the agent started, and the time spent putting objects into the store before the
    /// first transaction: the startup's phases in the log.
    started: Instant,
    storing: Duration,
    last_change: Option<(Instant, String)>,
    /// Why the last build or transaction failed.
    failed: Option<String>,
    /// The kernel refused the last transaction: the next turn sends the table again (whole),
    /// changes or not, so that a refusal does not leave the kernel behind until the next change.
    resend: bool,
    /// Which pod holds each address the kernel's ruleset knows (`namespace/name`).
    holders: HashMap<IpAddr, String>,
    /// Refusals to write as Events (by the feed).
    events: tokio::sync::mpsc::UnboundedSender<palisade_kube::events::Refusal>,
    /// Deletes the conntrack entries of addresses that changed hands (`None`: the unit tests,
    /// which must not touch the host's conntrack table).
    forget: Option<Forget>,
}

/// How gone pods' flows are forgotten: [`crate::conntrack::forget`]'s shape.
type Forget = fn(Option<&str>, &BTreeSet<IpAddr>) -> Result<usize, crate::conntrack::ConntrackError>;

/// What a turn tells the loop.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Wait for the next message.
    Wait,
    /// A signal asked to stop (its name); the table stays in force.
    Stop(&'static str),
}

/// Runs the agent on the API server's objects until SIGTERM or SIGINT (`Ok`, the table stays
/// in force); refuses `once`, a namespace another agent holds, and a client that cannot start.
pub fn run(args: Config, health: Arc<Health>) -> Result<(), Refused> {
    if args.once {
        let why = "--once reads a directory; with --source kubernetes the agent runs until stopped";
        log(&format!("refused: {why}"));
        return Err(Refused(why.into()));
    }
    let (owner, kernel) = claim(args.netns.as_deref())?;
    let (tx, rx) = std::sync::mpsc::channel();
    let target = match (&args.kubeconfig, &args.context) {
        (None, None) => None,
        (k, c) => Some(Target { kubeconfig: k.clone(), context: c.clone() }),
    };
    let (events, refusals) = tokio::sync::mpsc::unbounded_channel();
    let instance = args.node.clone().unwrap_or_else(host_name);
    let reports = feed::Reports { instance, refusals, health: health.clone() };
    if let Err(e) = feed::start(target, tx.clone(), reports) {
        log(&format!("refused: cannot start the API client's runtime: {e}"));
        return Err(Refused(format!("cannot start the API client's runtime: {e}")));
    }
    let own = kernel.portid().unwrap_or(0);
    let mut table = Table::new(kernel, args.reconcile);
    match palisade_nft::monitor::watch(args.netns.as_deref(), own, move |e| tx.send(Feed::Table(e)).is_ok()) {
        Ok(watch) => table.set_watch(watch),
        Err(e) => log(&format!("cannot watch the table ({e}): only the periodic comparison will restore it")),
    }
    let mut agent = KubeAgent::new(args, health, Some(owner), table, events);
    agent.forget = Some(crate::conntrack::forget);
    log("watching the API server; nothing is applied before every kind has synced once");
    agent.run(&rx)
}

/// Each address a pod on the pod network holds, and the pod (`namespace/name`).
fn pod_addresses(cluster: &palisade_core::cluster::Cluster) -> HashMap<IpAddr, String> {
    let mut out = HashMap::new();
    for pod in cluster.pods.iter().filter(|p| !p.host_network && !p.derived) {
        let ns = cluster.namespaces.get(pod.namespace.index()).map_or("", |n| n.name.as_str());
        for ip in &pod.ips {
            out.insert(*ip, format!("{ns}/{}", pod.name));
        }
    }
    out
}

/// The Events' `reportingInstance` without `--node`: the host's name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map_or_else(|_| "palisade-agent".into(), |h| h.trim().into())
}

impl<K: Kernel> KubeAgent<K> {
    /// An agent that has seen nothing yet: no kinds, nothing synced, nothing applied.
    fn new(
        args: Config,
        health: Arc<Health>,
        owner: Option<palisade_nft::owner::Owner>,
        table: Table<K>,
        events: tokio::sync::mpsc::UnboundedSender<palisade_kube::events::Refusal>,
    ) -> KubeAgent<K> {
        KubeAgent {
            view: View::new(build_options(&args)),
            args,
            health,
            owner,
            table,
            kinds: None,
            unavailable: None,
            failing: BTreeMap::new(),
            compiled: None,
            pending: Vec::new(),
            generation: 0,
            started: Instant::now(),
            storing: Duration::ZERO,
            last_change: None,
            failed: None,
            resend: false,
            holders: HashMap::new(),
            events,
            forget: None,
        }
    }

    fn run(&mut self, rx: &Receiver<Feed>) -> Result<(), Refused> {
        loop {
            let wait = TURN.min(self.table.due_in()).max(Duration::from_millis(1));
            let mut woken = match rx.recv_timeout(wait) {
                Ok(f) => vec![f],
                Err(RecvTimeoutError::Timeout) => Vec::new(),
                Err(RecvTimeoutError::Disconnected) => {
                    log("the API client stopped; the table stays in force");
                    return Err(Refused("the API client stopped".into()));
                }
            };
            woken.extend(rx.try_iter());
            if let Next::Stop(signal) = self.turn(woken) {
                log(&format!("{signal}: stopped; the table stays in force"));
                return Ok(());
            }
        }
    }

    /// One turn of the loop on what woke it: take the changes, restore the table if someone
    /// else changed it, send one transaction once every kind has synced, publish readiness
    /// and metrics. A stop ends the turn before anything is sent.
    fn turn(&mut self, woken: Vec<Feed>) -> Next {
        let mut table_events = Vec::new();
        for f in woken {
            match f {
                Feed::Stop(signal) => return Next::Stop(signal),
                Feed::Table(e) => table_events.push(e),
                other => self.take(other),
            }
        }
        if let Some(rs) = self.compiled.as_ref().map(Compiled::ruleset) {
            self.table.react(table_events, rs, self.generation);
        }
        if (self.view.dirty || self.resend) && self.all_synced() {
            self.transact();
        }
        // A restore encodes the whole table when it needs it, not ahead on this thread: a
        // change arriving meanwhile would wait for it.
        if let Some(rs) = self.compiled.as_ref().map(Compiled::ruleset) {
            self.table.check_if_due(rs, self.generation);
        }
        for r in std::mem::take(&mut self.view.reports) {
            let _ = self.events.send(r);
        }
        self.publish();
        self.health.beat();
        Next::Wait
    }

    fn take(&mut self, f: Feed) {
        match f {
            Feed::Kinds(kinds) => {
                let names: Vec<String> = kinds.iter().map(ToString::to_string).collect();
                log(&format!("watching {} kinds: {}", kinds.len(), names.join(", ")));
                self.kinds = Some(kinds);
                self.unavailable = None;
            }
            Feed::Unavailable(why) => {
                if self.unavailable.as_ref() != Some(&why) {
                    log(&format!("cannot reach the API server: {why}; retrying"));
                }
                self.unavailable = Some(why);
            }
            Feed::Recovered(kind) => {
                if self.failing.remove(kind).is_some() {
                    log(&format!("{kind} can be listed again"));
                }
            }
            Feed::Change(at, change) => self.change(at, change),
            Feed::Table(_) | Feed::Stop(_) => {}
        }
    }

    fn change(&mut self, at: Instant, change: Change) {
        let kind = change.kind();
        let label = KindLabel::of(kind);
        match &change {
            Change::Error(e) => {
                self.health.metrics.watch_restarts.get_or_create(&label).inc();
                if self.failing.get(kind) != Some(&e.message) {
                    log(&format!("{e}; retrying (what is in force stays)"));
                }
                self.failing.insert(kind, e.message.clone());
                return;
            }
            Change::Relisted { applied, deleted, .. } => {
                self.health.metrics.relists.get_or_create(&label).inc();
                if self.view.synced.contains(kind) && !(applied.is_empty() && deleted.is_empty()) {
                    log(&format!("relisted {kind}: {} came or changed, {} went", applied.len(), deleted.len()));
                }
            }
            _ => {}
        }
        if self.failing.remove(kind).is_some() {
            log(&format!("the watch of {kind} is back"));
        }
        let t = Instant::now();
        self.view.take(change);
        if self.compiled.is_none() {
            self.storing += t.elapsed();
        }
        self.pending.push(at);
    }

    fn all_synced(&self) -> bool {
        self.kinds.as_ref().is_some_and(|k| k.iter().all(|k| self.view.synced.contains(k)))
    }

    /// Finishes what the view holds, brings the ruleset to it (`Compiled::sync`: by what the
    /// change touched) and sends the delta in one transaction.
    fn transact(&mut self) {
        let t = Instant::now();
        let synced = t.duration_since(self.started);
        let touched = match self.view.finish() {
            Ok(t) => t,
            Err(p) => {
                let why = format!("what was in force no longer builds ({p}); the last good ruleset stays in force");
                log(&why);
                self.failed = Some(why);
                return;
            }
        };
        if touched.is_empty() && self.compiled.is_some() && !self.resend {
            self.pending.clear();
            return;
        }
        let finished = t.elapsed();
        let Some(cluster) = self.view.cluster() else { return };
        let first = self.compiled.is_none();
        let (next, delta, how) = match self.compiled.take() {
            Some(mut compiled) => {
                let delta = compiled.sync(cluster, &touched);
                let mut how = format!("{} objects", touched.objects.len());
                if compiled.synced() == Synced::Compiled {
                    crate::enforcement::warn_unenforced(cluster);
                    how.push_str("; compiled in full");
                }
                (compiled, delta, how)
            }
            None => {
                crate::enforcement::warn_unenforced(cluster);
                let compiling = Instant::now();
                let next = Compiled::following(cluster, &compile_options(&self.args));
                let compiled = compiling.elapsed();
                let delta = script::full_commands(next.ruleset());
                let phases = [
                    ("lists, decoded and stored", synced),
                    ("of which into the store", self.storing),
                    ("build", finished),
                    ("compile", compiled),
                    ("commands", compiling.elapsed() - compiled),
                ];
                let phases: Vec<String> =
                    phases.iter().map(|(what, d)| format!("{what} {:.2} s", d.as_secs_f64())).collect();
                (next, delta, format!("first ruleset, every kind synced; {}", phases.join(", ")))
            }
        };
        self.generation += 1;
        let sent = Instant::now();
        let ok = self.table.apply(&delta, next.ruleset(), t, &how);
        if first {
            log(&format!("first apply: encode and kernel {:.2} s", sent.elapsed().as_secs_f64()));
        }
        self.health.applied(ok, sent.elapsed(), &self.pending);
        self.pending.clear();
        self.failed =
            (!ok).then(|| "the kernel refused the last transaction; the last good ruleset stays in force".into());
        self.resend = !ok && !first;
        if ok {
            self.forget_gone_addresses();
        }
        if ok || !first {
            self.compiled = Some(next);
        } else {
            // The first ruleset did not go in: try again with the next turn.
            self.view.dirty = true;
        }
        self.last_change = Some((Instant::now(), how));
    }

    /// Deletes the conntrack entries of addresses whose pod went (or that another pod holds
    /// now), once the kernel enforces the ruleset without it: a pod given a gone pod's IP must
    /// not inherit its established flows.
    fn forget_gone_addresses(&mut self) {
        let Some(cluster) = self.view.cluster() else { return };
        let holders = pod_addresses(cluster);
        let gone: BTreeSet<IpAddr> =
            self.holders.iter().filter(|(ip, pod)| holders.get(*ip) != Some(*pod)).map(|(ip, _)| *ip).collect();
        self.holders = holders;
        let Some(forget) = self.forget.filter(|_| !gone.is_empty()) else { return };
        match forget(self.args.netns.as_deref(), &gone) {
            Ok(n) => {
                self.health.metrics.conntrack_deleted.inc_by(n as u64);
                if n > 0 {
                    log(&format!("deleted {n} conntrack entries of {} addresses that changed hands", gone.len()));
                }
            }
            Err(e) => log(&format!("cannot delete the conntrack entries of gone pods' addresses: {e}")),
        }
    }

    /// Why the agent is not ready (empty: ready).
    fn unready(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(why) = &self.unavailable {
            out.push(format!("cannot reach the API server: {why}"));
        }
        match &self.kinds {
            None => out.push("discovering the served kinds".into()),
            Some(kinds) => {
                let waiting: Vec<String> =
                    kinds.iter().filter(|k| !self.view.synced.contains(*k)).map(ToString::to_string).collect();
                if !waiting.is_empty() {
                    out.push(format!("not synced yet (nothing applied): {}", waiting.join(", ")));
                }
            }
        }
        for (kind, why) in &self.failing {
            out.push(format!("watch of {kind} failing: {why}"));
        }
        out.extend(self.failed.clone());
        if out.is_empty() && self.compiled.is_none() {
            out.push("no ruleset applied yet".into());
        }
        out
    }

    /// Serves the status (`palisade agent --status`), readiness and metrics.
    fn publish(&self) {
        let m = &self.health.metrics;
        Metrics::counts(&m.objects, self.view.counts());
        let mut refused = BTreeMap::<String, usize>::new();
        for key in self.view.refused.keys() {
            *refused.entry(key.kind.to_string()).or_default() += 1;
        }
        Metrics::counts(&m.refused, refused);
        m.table_restores.set(i64::try_from(self.table.restores).unwrap_or(i64::MAX));
        if let Some(c) = &self.compiled {
            m.in_force(c.enforced_pods(), &c.ruleset().stats());
        }
        let unready = self.unready();
        if let Some(owner) = &self.owner {
            owner.set_status(self.status(&unready));
        }
        self.health.set_unready(unready);
    }

    fn status(&self, unready: &[String]) -> String {
        let mut out = format!("palisade agent, pid {}\n", std::process::id());
        let from = match (&self.args.kubeconfig, &self.args.context) {
            (None, None) => "in-cluster".to_string(),
            (k, c) => format!(
                "kubeconfig {}, context {}",
                k.as_ref().map_or("(default)".into(), |p| p.display().to_string()),
                c.as_deref().unwrap_or("(current)")
            ),
        };
        out.push_str(&format!("source: kubernetes ({from})\n"));
        let mode = if self.args.mode == Mode::Audit { "audit" } else { "enforce" };
        out.push_str(&format!("mode: {mode}, node: {}\n", self.args.node.as_deref().unwrap_or("(all)")));
        let (kinds, synced) = (self.kinds.as_ref().map_or(0, Vec::len), self.view.synced.len());
        out.push_str(&format!("kinds: {kinds} watched, {synced} synced\n"));
        match (&self.compiled, self.view.cluster()) {
            (Some(c), Some(cluster)) => {
                let s = c.ruleset().stats();
                out.push_str(&format!(
                    "in force: {} pods ({} enforced), {} policies; {} chains, {} rules, {} sets ({} elements)\n",
                    cluster.pods.len(),
                    c.enforced_pods(),
                    cluster.policies.len(),
                    s.chains,
                    s.rules,
                    s.sets,
                    s.set_elements
                ));
            }
            _ => out.push_str("in force: nothing applied yet (the table in the kernel, if any, stays)\n"),
        }
        if let Some((t, how)) = &self.last_change {
            out.push_str(&format!("last change: {} s ago ({how})\n", t.elapsed().as_secs()));
        }
        out.push_str(&format!("refused: {}\n", self.view.refused.len()));
        for (key, r) in &self.view.refused {
            let what = if r.kept { "its last good version stays in force" } else { "left out" };
            out.push_str(&format!("  {key}: {what}: {}\n", r.why));
        }
        match unready.is_empty() {
            true => out.push_str("ready\n"),
            false => out.push_str(&format!("not ready: {}\n", unready.join("; "))),
        }
        out.push_str(&format!("table restores: {}\n", self.table.restores));
        out
    }
}
