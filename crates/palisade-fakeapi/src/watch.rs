//! Watches: a stream of JSON lines (`{"type": "ADDED", "object": {...}}`) from a
//! resourceVersion, with BOOKMARK events when asked (`allowWatchBookmarks`), `sendInitialEvents`,
//! an end after `timeoutSeconds`, an ERROR event with a 410 Status for a compacted
//! resourceVersion (what the API server sends, and what kube-rs' watcher relists on), and
//! ADDED/DELETED when a change moves an object into or out of the selection (as the watch cache
//! does). Dropping all watches or taking the server down ends every stream; expiring them sends
//! each a 410 ERROR event first (mid-stream, as when a watcher falls behind the watch cache).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::objects::{typed, Filter};
use crate::request::Target;
use crate::status::{error, status_value, Body};
use crate::store::{Change, Event};
use crate::Shared;

type Line = Result<Frame<Bytes>, Infallible>;

fn line(kind: &str, object: &Value) -> Line {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Ok(Frame::data(Bytes::from(text)))
}

/// What one stored change looks like through this watch's selection, if anything.
fn through(filter: &Filter, e: &Event) -> Option<(&'static str, Value)> {
    let now = e.change != Change::Deleted && filter.matches(&e.object);
    let was = e.before.as_ref().is_some_and(|b| filter.matches(b));
    match (was, now) {
        (false, true) => Some(("ADDED", e.object.clone())),
        (true, true) => Some(("MODIFIED", e.object.clone())),
        (true, false) if e.change == Change::Deleted => Some(("DELETED", e.object.clone())),
        (true, false) => {
            // Left the selection: the previous state, at the change's resourceVersion.
            let mut last = e.before.clone().expect("was present");
            last["metadata"]["resourceVersion"] = e.object["metadata"]["resourceVersion"].clone();
            Some(("DELETED", last))
        }
        (false, false) => None,
    }
}

/// Starts a watch; the response body streams until the watch ends.
pub fn watch(shared: &Arc<Shared>, idx: usize, target: &Target, q: &BTreeMap<String, String>) -> hyper::Response<Body> {
    let res = shared.catalog[idx].clone();
    let filter = match Filter::from_query(&res, target, q) {
        Ok(f) => f,
        Err(refusal) => return refusal.reply(),
    };
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
    let bookmarks = flag("allowWatchBookmarks");
    let initial_events = flag("sendInitialEvents");
    let timeout = q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).map(Duration::from_secs);
    let from = q.get("resourceVersion").filter(|v| !v.is_empty() && *v != "0").map(|v| v.parse::<u64>());
    if let Some(Err(_)) = from {
        return error(400, "BadRequest", "invalid resourceVersion");
    }

    let (tx, rx) = mpsc::channel::<Line>(256);
    let (backlog, feed, rv) = {
        let store = shared.store.lock().expect("store lock");
        let feed = store.feed.subscribe();
        let backlog: Result<Vec<(&'static str, Value)>, ()> = match from {
            Some(Ok(rv)) => match store.since(idx, rv) {
                Some(events) => Ok(events.iter().filter_map(|e| through(&filter, e)).collect()),
                None => Err(()),
            },
            // No resourceVersion (or 0): the current state as ADDED events, then changes.
            _ => Ok(store.objects[idx].values().filter(|o| filter.matches(o)).map(|o| ("ADDED", o.clone())).collect()),
        };
        (backlog, feed, store.rv)
    };
    let mut first: Vec<Line> = Vec::new();
    let gone = backlog.is_err();
    match backlog {
        Err(()) => {
            let rv = q.get("resourceVersion").cloned().unwrap_or_default();
            let status =
                status_value(410, "Expired", &format!("too old resource version: {rv} ({})", shared.current_rv()));
            first.push(line("ERROR", &status));
        }
        Ok(events) => {
            first.extend(events.iter().map(|(kind, o)| line(kind, &typed(&res, o.clone()))));
            if initial_events && bookmarks && from.is_none() {
                let mark = json!({"kind": res.kind, "apiVersion": res.api_version(),
                    "metadata": {"resourceVersion": rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
                first.push(line("BOOKMARK", &mark));
            }
        }
    }
    let stream = Stream { shared: shared.clone(), idx, filter, res, bookmarks, tx };
    tokio::spawn(stream.run(first, feed, timeout, gone));
    let body = StreamBody::new(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|l| (l, rx)) }));
    hyper::Response::builder()
        .header("content-type", "application/json")
        .body(body.boxed_unsync())
        .expect("static headers are valid")
}

struct Stream {
    shared: Arc<Shared>,
    idx: usize,
    filter: Filter,
    res: crate::resource::Resource,
    bookmarks: bool,
    tx: mpsc::Sender<Line>,
}

impl Stream {
    async fn send(&self, l: Line) -> bool {
        self.tx.send(l).await.is_ok()
    }

    fn emit(&self, e: &Event) -> Option<Line> {
        if e.resource != self.idx {
            return None;
        }
        through(&self.filter, e).map(|(kind, o)| line(kind, &typed(&self.res, o)))
    }

    /// A BOOKMARK at the current resourceVersion, after every change up to it (drained under
    /// the store's lock, so the bookmark never skips a change this watch has not sent).
    fn bookmark(&self, feed: &mut broadcast::Receiver<Event>) -> Option<Vec<Line>> {
        let store = self.shared.store.lock().expect("store lock");
        let mut out = Vec::new();
        loop {
            match feed.try_recv() {
                Ok(e) => out.extend(self.emit(&e)),
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(_) => return None,
            }
        }
        let mark = json!({"kind": self.res.kind, "apiVersion": self.res.api_version(),
            "metadata": {"resourceVersion": store.rv.to_string()}});
        out.push(line("BOOKMARK", &mark));
        Some(out)
    }

    async fn run(self, first: Vec<Line>, mut feed: broadcast::Receiver<Event>, timeout: Option<Duration>, ended: bool) {
        for l in first {
            if !self.send(l).await {
                return;
            }
        }
        if ended {
            return;
        }
        let mut drops = self.shared.drops.subscribe();
        let mut expiries = self.shared.expiries.subscribe();
        let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(1800)));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(self.shared.bookmark_every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = drops.changed() => return,
                _ = expiries.changed() => {
                    let rv = self.shared.current_rv();
                    let status = status_value(410, "Expired", &format!("too old resource version: {rv} ({})", rv + 1));
                    let _ = self.send(line("ERROR", &status)).await;
                    return;
                }
                e = feed.recv() => match e {
                    Ok(e) => if let Some(l) = self.emit(&e) {
                        if !self.send(l).await { return; }
                    },
                    // Too slow a reader: end the watch; the client resumes from its last resourceVersion.
                    Err(_) => return,
                },
                _ = tick.tick(), if self.bookmarks => {
                    let Some(lines) = self.bookmark(&mut feed) else { return };
                    for l in lines {
                        if !self.send(l).await { return; }
                    }
                }
            }
        }
    }
}
