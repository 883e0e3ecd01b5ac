//! The API server's side of the Kubernetes source, on a thread with its own tokio runtime: a
//! client (a kubeconfig, else the in-cluster ServiceAccount), discovery of the served kinds
//! (retried until it works), `palisade_kube::watch` for every kind, a probe that tells when a
//! failed kind is served again (and restarts its watch then), and SIGTERM/SIGINT. Everything
//! arrives at the agent's loop as one [`Feed`] channel, with the instant each change was
//! received. The other way, the loop's refusals become Events on the refused objects
//! ([`palisade_kube::events`]).

use std::collections::BTreeSet;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use palisade_kube::events::{Events, Refusal};
use palisade_kube::kinds::Kind;
use palisade_kube::watch::{reachable, watch_restartable, Settings};
use palisade_kube::{Change, Target};
use palisade_nft::monitor::TableEvent;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::health::Health;

/// What wakes the Kubernetes agent.
pub enum Feed {
    /// The kinds discovery found served: the ones to sync before anything is applied.
    Kinds(Vec<&'static Kind>),
    /// A change from a watch, and when it arrived.
    Change(Instant, Change),
    /// A kind whose watch failed can be listed again.
    Recovered(&'static Kind),
    /// No client or no discovery yet (retried every [`RETRY`]).
    Unavailable(String),
    /// Someone else changed the kernel's table.
    Table(TableEvent),
    /// A signal asked the agent to stop (its name).
    Stop(&'static str),
}

/// How often a failed connection, discovery or kind is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Where the feed reports refused objects: as whom (`instance`, the node's name), what to
/// report, and the metrics that count Events written and failed.
pub struct Reports {
    pub instance: String,
    pub refusals: UnboundedReceiver<Refusal>,
    pub health: Arc<Health>,
}

/// Starts the feed; it ends when the loop drops its receiver.
pub fn start(target: Option<Target>, tx: Sender<Feed>, reports: Reports) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    std::thread::spawn(move || runtime.block_on(feed(target, tx, reports)));
    Ok(())
}

/// Writes one Event per refusal, in order; a failure is logged and counted, never retried
/// (the refusal stays in the log, the metric and `--status`).
async fn report(events: Events, mut reports: Reports) {
    let m = &reports.health.metrics;
    while let Some(r) = reports.refusals.recv().await {
        match events.refused(&r).await {
            Ok(()) => {
                m.refusal_events.inc();
            }
            Err(e) => {
                m.refusal_event_failures.inc();
                let (_, why) = palisade_kube::message(&e);
                crate::log(&format!("cannot write an Event on {}: {why}", r.key));
            }
        }
    }
}

async fn feed(target: Option<Target>, tx: Sender<Feed>, reports: Reports) {
    signals(tx.clone());
    let (client, kinds) = loop {
        let connected = match &target {
            Some(t) => t.client().await,
            None => palisade_kube::connect::in_cluster(),
        };
        let found = match connected {
            Ok(client) => palisade_kube::discover::served(&client).await.map(|kinds| (client, kinds)),
            Err(e) => Err(e),
        };
        match found {
            Ok(found) => break found,
            Err(e) => {
                if tx.send(Feed::Unavailable(e.to_string())).is_err() {
                    return;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    if tx.send(Feed::Kinds(kinds.clone())).is_err() {
        return;
    }
    tokio::spawn(report(Events::new(client.clone(), &reports.instance), reports));
    let (mut changes, restart) = watch_restartable(client.clone(), &kinds, &Settings::default());
    let mut failing: BTreeSet<&'static Kind> = BTreeSet::new();
    let mut tick = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            change = changes.next() => {
                let Some(change) = change else { return };
                match &change {
                    Change::Error(e) => failing.insert(e.kind),
                    other => failing.remove(other.kind()),
                };
                if tx.send(Feed::Change(Instant::now(), change)).is_err() {
                    return;
                }
            }
            _ = tick.tick() => {
                for kind in failing.clone() {
                    if reachable(&client, kind).await.is_ok() {
                        failing.remove(kind);
                        // Served again: resume now, not after the watcher's backoff (up to 30 s).
                        restart.kind(kind);
                        if tx.send(Feed::Recovered(kind)).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// SIGTERM (a rolling update, a drain) and SIGINT become [`Feed::Stop`].
fn signals(tx: Sender<Feed>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        crate::log("cannot handle SIGTERM: a stop will not wait for the transaction in flight");
        return;
    };
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        let _ = tx.send(Feed::Stop(name));
    });
}
