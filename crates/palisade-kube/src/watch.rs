//! Watching every served kind: kube-runtime's watcher per kind (paged relist, relist after 410
//! Gone, bookmarks, the default exponential backoff after errors) turned into one stream of
//! [`Change`]s that a consumer applies one object at a time.

use std::collections::HashMap;

use futures::stream::{self, BoxStream, StreamExt};
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;

use crate::decode::{decode, key_of, Decoded, ObjectKey, Refused};
use crate::kinds::Kind;

/// One thing a consumer must apply, in order.
#[derive(Debug)]
pub enum Change {
    /// An object was added or changed.
    Apply(Box<Decoded>),
    /// An object went away.
    Delete(ObjectKey),
    /// A (re)list of `kind` finished: exactly the objects that came or changed since what was
    /// known before it, and the keys that went. The first list reports every object.
    Relisted { kind: &'static Kind, applied: Vec<Decoded>, deleted: Vec<ObjectKey> },
    /// The first list of `kind` is complete: from here on its view is whole (the barrier a
    /// consumer waits for, for every kind, before it acts).
    Synced(&'static Kind),
    /// An object that does not decode or validate; its watch goes on. A later version that is
    /// valid comes as `Apply`, its deletion as `Delete`.
    Refused(Refused),
    /// The watch of a kind failed (403 for a kind the role does not grant, 5xx, a lost
    /// connection); it retries with backoff while the other kinds go on.
    Error(WatchError),
}

/// A failed list or watch of one kind.
#[derive(Clone, Debug)]
pub struct WatchError {
    pub kind: &'static Kind,
    /// The API server's status code, when it answered.
    pub code: Option<u16>,
    pub message: String,
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "watch of {} failed: {}", self.kind, self.message)
    }
}

fn watch_error(kind: &'static Kind, e: &watcher::Error) -> WatchError {
    let (code, message) = match e {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            crate::message(e)
        }
        watcher::Error::WatchError(status) => (Some(status.code), status.message.clone()),
        other => (None, other.to_string()),
    };
    WatchError { kind, code, message }
}

/// What one kind's watch has seen: every key (valid or refused) at its resourceVersion, and
/// the objects of a relist in progress.
struct KindState {
    kind: &'static Kind,
    known: HashMap<ObjectKey, String>,
    relist: Option<Vec<DynamicObject>>,
    /// The first list's objects being decoded as they arrive.
    decoder: Option<Decoder>,
    synced: bool,
}

/// An object of a list, decoded: its key, its resourceVersion, and what it decoded to.
type Listed = (ObjectKey, String, Result<Decoded, Refused>);

/// Decodes the first list's objects on a thread of its own as they arrive, so that decoding
/// overlaps with reading the next pages instead of following the last one (a later relist
/// decodes at its end, where it skips the objects it already has at their version).
struct Decoder {
    tx: std::sync::mpsc::Sender<DynamicObject>,
    done: std::thread::JoinHandle<Vec<Listed>>,
}

impl Decoder {
    /// `None` when no thread can be started (the list is then decoded at its end).
    fn start(kind: &'static Kind) -> Option<Decoder> {
        let (tx, rx) = std::sync::mpsc::channel::<DynamicObject>();
        let decode_all =
            move || rx.into_iter().map(|obj| (key_of(kind, &obj), version(&obj), decode(kind, obj))).collect();
        let done = std::thread::Builder::new().name(format!("decode {}", kind.kind)).spawn(decode_all).ok()?;
        Some(Decoder { tx, done })
    }

    /// Hands an object over; gives it back when the thread is gone.
    fn send(&self, obj: DynamicObject) -> Option<DynamicObject> {
        self.tx.send(obj).err().map(|e| e.0)
    }

    /// Everything sent, decoded, in order (waits for the last objects).
    fn finish(self) -> Vec<Listed> {
        drop(self.tx);
        self.done.join().unwrap_or_default()
    }
}

fn version(obj: &DynamicObject) -> String {
    obj.metadata.resource_version.clone().unwrap_or_default()
}

fn decoded(result: Result<Decoded, Refused>) -> Change {
    match result {
        Ok(d) => Change::Apply(Box::new(d)),
        Err(r) => Change::Refused(r),
    }
}

impl KindState {
    fn step(&mut self, event: Result<Event<DynamicObject>, watcher::Error>) -> Vec<Change> {
        match event {
            Ok(Event::Apply(obj)) => {
                self.known.insert(key_of(self.kind, &obj), version(&obj));
                vec![decoded(decode(self.kind, obj))]
            }
            Ok(Event::Delete(obj)) => {
                let key = key_of(self.kind, &obj);
                self.known.remove(&key);
                vec![Change::Delete(key)]
            }
            Ok(Event::Init) => {
                self.relist = Some(Vec::new());
                self.decoder = if self.synced { None } else { Decoder::start(self.kind) };
                Vec::new()
            }
            Ok(Event::InitApply(obj)) => {
                let left = match &self.decoder {
                    Some(d) => d.send(obj),
                    None => Some(obj),
                };
                self.relist.get_or_insert_with(Vec::new).extend(left);
                Vec::new()
            }
            Ok(Event::InitDone) => self.relisted(),
            Err(e) => vec![Change::Error(watch_error(self.kind, &e))],
        }
    }

    /// The exact difference between what was known and what the relist returned.
    fn relisted(&mut self) -> Vec<Change> {
        let early = self.decoder.take().map(Decoder::finish).unwrap_or_default();
        let listed = self.relist.take().unwrap_or_default();
        let mut before = std::mem::take(&mut self.known);
        let mut out = Vec::new();
        let mut applied = Vec::new();
        let kind = self.kind;
        let late = listed.into_iter().map(|obj| (key_of(kind, &obj), version(&obj), Err(obj)));
        let all = early.into_iter().map(|(key, rv, decoded)| (key, rv, Ok(decoded))).chain(late);
        for (key, rv, decoded) in all {
            let unchanged = before.remove(&key).is_some_and(|old| old == rv);
            self.known.insert(key, rv);
            if unchanged {
                continue;
            }
            match decoded.unwrap_or_else(|obj| decode(kind, obj)) {
                Ok(d) => applied.push(d),
                Err(r) => out.push(Change::Refused(r)),
            }
        }
        let mut deleted: Vec<ObjectKey> = before.into_keys().collect();
        deleted.sort();
        out.push(Change::Relisted { kind: self.kind, applied, deleted });
        if !self.synced {
            self.synced = true;
            out.push(Change::Synced(self.kind));
        }
        out
    }
}

/// Watcher settings for every kind.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `timeoutSeconds` of each watch call (the watcher then resumes from its last version).
    pub timeout_seconds: u32,
    /// Objects per page of a (re)list.
    pub page_size: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { timeout_seconds: 290, page_size: crate::read::PAGE }
    }
}

/// kube-runtime's watcher of one kind, with its default backoff (0.8 s doubling to 30 s).
fn watcher_of(client: &Client, kind: &'static Kind, settings: &Settings) -> BoxStream<'static, WatcherEvent> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.api_resource());
    let config = watcher::Config::default().timeout(settings.timeout_seconds).page_size(settings.page_size);
    watcher(api, config).default_backoff().boxed()
}

type WatcherEvent = Result<Event<DynamicObject>, watcher::Error>;

/// Restarts watches on demand: a consumer that knows a failed kind is served again (a list of
/// it succeeds, see [`reachable`]) need not wait out the watcher's backoff, which reaches 30 s
/// after a long outage. A restarted watch relists, and its changes are the exact difference to
/// what its kind had seen, as after a 410.
#[derive(Default)]
pub struct Restart(HashMap<&'static Kind, tokio::sync::watch::Sender<u64>>);

impl Restart {
    /// Restarts `kind`'s watch now (nothing if it is not watched).
    pub fn kind(&self, kind: &'static Kind) {
        if let Some(tx) = self.0.get(kind) {
            tx.send_modify(|n| *n += 1);
        }
    }
}

/// One kind's changes; its watch starts again from a relist whenever `restart` changes.
fn watch_kind(
    client: Client,
    kind: &'static Kind,
    settings: &Settings,
    restart: tokio::sync::watch::Receiver<u64>,
) -> BoxStream<'static, Change> {
    let state = KindState { kind, known: HashMap::new(), relist: None, decoder: None, synced: false };
    let inner = watcher_of(&client, kind, settings);
    let settings = settings.clone();
    let start = (state, inner, Some(restart));
    stream::unfold(start, move |(mut state, mut inner, mut restart)| {
        let (client, settings) = (client.clone(), settings.clone());
        async move {
            loop {
                let restarted = async {
                    match restart.as_mut() {
                        Some(r) => r.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    event = inner.next() => {
                        let changes = state.step(event?);
                        return Some((changes, (state, inner, restart)));
                    }
                    again = restarted => {
                        if again {
                            state.relist = None;
                            state.decoder = None;
                            inner = watcher_of(&client, state.kind, &settings);
                        } else {
                            restart = None;
                        }
                    }
                }
            }
        }
    })
    .map(stream::iter)
    .flatten()
    .boxed()
}

/// Every kind's changes, merged (each kind's in its own order), and the handle that restarts a
/// kind's watch.
pub fn watch_restartable(
    client: Client,
    kinds: &[&'static Kind],
    settings: &Settings,
) -> (BoxStream<'static, Change>, Restart) {
    let mut restart = Restart::default();
    let streams: Vec<_> = kinds
        .iter()
        .map(|k| {
            let (tx, rx) = tokio::sync::watch::channel(0);
            restart.0.insert(*k, tx);
            watch_kind(client.clone(), k, settings, rx)
        })
        .collect();
    (stream::select_all(streams).boxed(), restart)
}

/// Every kind's changes, merged (each kind's in its own order).
pub fn watch(client: Client, kinds: &[&'static Kind], settings: &Settings) -> BoxStream<'static, Change> {
    watch_restartable(client, kinds, settings).0
}

/// Whether `kind` can be listed now (one object): how a consumer tells that a kind whose watch
/// failed is served again, without waiting for the watcher's backoff (which may be 30 s).
pub async fn reachable(client: &Client, kind: &'static Kind) -> Result<(), WatchError> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.api_resource());
    match api.list(&kube::api::ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let (code, message) = crate::message(&e);
            Err(WatchError { kind, code, message })
        }
    }
}

impl Change {
    /// The kind this change is about.
    pub fn kind(&self) -> &'static Kind {
        match self {
            Change::Apply(d) => d.key.kind,
            Change::Delete(k) => k.kind,
            Change::Relisted { kind, .. } | Change::Synced(kind) => kind,
            Change::Refused(r) => r.key.kind,
            Change::Error(e) => e.kind,
        }
    }
}
