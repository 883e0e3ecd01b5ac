//! The fake's storage: objects as JSON per resource, one resourceVersion counter for all of
//! them (as etcd's revision), and a bounded history of changes that watches replay from. A
//! resourceVersion older than the history (compacted) is answered with 410 Gone.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;
use tokio::sync::broadcast;

/// `(namespace or "", name)`.
pub type Key = (String, String);

/// ADDED, MODIFIED or DELETED, as watch events name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

impl Change {
    pub fn word(self) -> &'static str {
        match self {
            Change::Added => "ADDED",
            Change::Modified => "MODIFIED",
            Change::Deleted => "DELETED",
        }
    }
}

/// One change to one object: the object after it (for a deletion, the last state, with the
/// deletion's resourceVersion) and before it.
#[derive(Clone, Debug)]
pub struct Event {
    /// Index of the resource in the catalog.
    pub resource: usize,
    pub rv: u64,
    pub change: Change,
    pub object: Value,
    pub before: Option<Value>,
}

/// Objects, the resourceVersion counter and the history of changes.
pub struct Store {
    pub objects: Vec<BTreeMap<Key, Value>>,
    pub rv: u64,
    history: VecDeque<Event>,
    /// Watches and lists at a resourceVersion below this are answered 410 Gone.
    pub oldest: u64,
    /// How many changes are kept (the compaction window).
    pub window: usize,
    pub feed: broadcast::Sender<Event>,
}

fn set_rv(obj: &mut Value, rv: u64) {
    obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
}

pub fn key_of(obj: &Value) -> Key {
    let meta = &obj["metadata"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (s(&meta["namespace"]), s(&meta["name"]))
}

impl Store {
    pub fn new(resources: usize, window: usize) -> Self {
        let (feed, _) = broadcast::channel(4096);
        Store { objects: vec![BTreeMap::new(); resources], rv: 1, history: VecDeque::new(), oldest: 1, window, feed }
    }

    fn record(&mut self, event: Event) {
        self.history.push_back(event.clone());
        while self.history.len() > self.window {
            let gone = self.history.pop_front().expect("not empty");
            self.oldest = gone.rv;
        }
        let _ = self.feed.send(event);
    }

    /// Creates or replaces an object (metadata.resourceVersion, uid and creationTimestamp are
    /// set as the API server sets them). Returns the stored object.
    pub fn put(&mut self, resource: usize, mut obj: Value) -> Value {
        self.rv += 1;
        let key = key_of(&obj);
        let before = self.objects[resource].get(&key).cloned();
        let meta = &mut obj["metadata"];
        if meta.get("uid").is_none() {
            meta["uid"] = match &before {
                Some(b) => b["metadata"]["uid"].clone(),
                None => Value::String(format!("fake-{resource}-{}", self.rv)),
            };
        }
        if meta.get("creationTimestamp").is_none() {
            meta["creationTimestamp"] = Value::String("2026-01-01T00:00:00Z".into());
        }
        set_rv(&mut obj, self.rv);
        self.objects[resource].insert(key, obj.clone());
        let change = if before.is_some() { Change::Modified } else { Change::Added };
        self.record(Event { resource, rv: self.rv, change, object: obj.clone(), before });
        obj
    }

    /// Deletes an object; `None` when there was none.
    pub fn delete(&mut self, resource: usize, key: &Key) -> Option<Value> {
        let before = self.objects[resource].remove(key)?;
        self.rv += 1;
        let mut last = before.clone();
        set_rv(&mut last, self.rv);
        self.record(Event {
            resource,
            rv: self.rv,
            change: Change::Deleted,
            object: last.clone(),
            before: Some(before),
        });
        Some(last)
    }

    /// Forgets the whole history: any older resourceVersion is now 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.oldest = self.rv;
    }

    /// The changes to `resource` after `rv`, or `None` when some are compacted away.
    pub fn since(&self, resource: usize, rv: u64) -> Option<Vec<Event>> {
        if rv < self.oldest {
            return None;
        }
        Some(self.history.iter().filter(|e| e.resource == resource && e.rv > rv).cloned().collect())
    }

    /// The objects of `resource` as they were at `rv` (undoing later changes), or `None` when
    /// that is older than the history.
    pub fn at(&self, resource: usize, rv: u64) -> Option<BTreeMap<Key, Value>> {
        let mut objects = self.objects[resource].clone();
        for e in self.since(resource, rv)?.iter().rev() {
            let key = key_of(&e.object);
            match &e.before {
                Some(b) => objects.insert(key, b.clone()),
                None => objects.remove(&key),
            };
        }
        Some(objects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, app: &str) -> Value {
        json!({"metadata": {"namespace": "x", "name": name, "labels": {"app": app}}})
    }

    #[test]
    fn snapshots_undo_later_changes_until_compacted() {
        let mut s = Store::new(1, 10);
        s.put(0, pod("a", "one"));
        let at = s.rv;
        s.put(0, pod("a", "two"));
        s.put(0, pod("b", "one"));
        s.delete(0, &("x".into(), "a".into()));
        let then = s.at(0, at).unwrap();
        assert_eq!(then.len(), 1);
        assert_eq!(then[&("x".to_string(), "a".to_string())]["metadata"]["labels"]["app"], "one");
        assert_eq!(s.since(0, at).unwrap().len(), 3);
        s.compact();
        assert!(s.at(0, at).is_none() && s.since(0, at).is_none());
        assert_eq!(s.since(0, s.rv).unwrap().len(), 0);
    }

    #[test]
    fn the_window_bounds_the_history() {
        let mut s = Store::new(1, 2);
        let start = s.rv;
        for i in 0..3 {
            s.put(0, pod(&format!("p{i}"), "a"));
        }
        assert!(s.since(0, start).is_none(), "the first change fell out of the window");
        assert_eq!(s.since(0, s.rv - 1).unwrap().len(), 1);
    }
}
