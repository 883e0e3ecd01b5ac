//! A directory that is read again whenever it changes, decoding only the files that changed
//! (for the agent: parsing every manifest again on each change costs seconds in a big cluster).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use palisade_core::cluster::Cluster;
use palisade_ingest::patch::{pod_patch, policy_patch, PodPatch, PolicyPatch};
use palisade_ingest::{BuildOptions, Input, Object};

use crate::manifest::{decode, Loaded};
use crate::source::{ReadError, Source};
use crate::{assemble, Load};

/// What marks a file as changed: modification time and size.
type Stamp = (SystemTime, u64);

struct Entry {
    stamp: Stamp,
    source: Source,
    loaded: Loaded,
}

pub struct Watched {
    root: PathBuf,
    files: BTreeMap<PathBuf, Arc<Entry>>,
}

/// The directory's files as last read, cheap to take and to build from elsewhere (the agent
/// checks its patched ruleset against a full build on another thread).
#[derive(Clone)]
pub struct Snapshot(Vec<Arc<Entry>>);

fn manifests(root: &Path) -> Result<BTreeMap<PathBuf, Stamp>, ReadError> {
    let shown = root.display().to_string();
    if !root.exists() {
        return Err(ReadError::Missing { path: shown });
    }
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name().follow_links(true) {
        let entry = entry.map_err(|e| ReadError::Io { path: shown.clone(), source: e.into() })?;
        let p = entry.path();
        let is_manifest = matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"));
        if entry.file_type().is_file() && is_manifest {
            let meta =
                entry.metadata().map_err(|e| ReadError::Io { path: p.display().to_string(), source: e.into() })?;
            out.insert(p.to_path_buf(), (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len()));
        }
    }
    if out.is_empty() {
        return Err(ReadError::EmptyDir { path: shown });
    }
    Ok(out)
}

impl Watched {
    pub fn new(root: &Path) -> Watched {
        Watched { root: root.to_path_buf(), files: BTreeMap::new() }
    }

    /// Reads the files that changed since the last call (all of them the first time) and
    /// builds the cluster from every file; `None` when nothing changed.
    pub fn refresh(&mut self, opts: &BuildOptions) -> Result<Option<Load>, ReadError> {
        Ok(self.poll()?.map(|_| self.load(opts)))
    }

    /// Reads the files that changed since the last call (all of them the first time) and says
    /// which objects went and came; `None` when no file changed.
    pub fn poll(&mut self) -> Result<Option<Changes>, ReadError> {
        let now = manifests(&self.root)?;
        let same =
            now.len() == self.files.len() && now.iter().all(|(p, s)| self.files.get(p).is_some_and(|e| e.stamp == *s));
        if same {
            return Ok(None);
        }
        // Every changed file is read before any is taken in: a read that fails leaves the
        // directory as it was last seen, so the next look finds (and reports) all of it again.
        let mut read = Vec::new();
        for (path, stamp) in &now {
            if self.files.get(path).is_none_or(|e| e.stamp != *stamp) {
                read.push((path.clone(), *stamp, crate::source::read_paths(std::slice::from_ref(path))?.remove(0)));
            }
        }
        let mut changes = Changes::default();
        let gone: Vec<PathBuf> = self.files.keys().filter(|p| !now.contains_key(*p)).cloned().collect();
        for path in gone {
            let e = self.files.remove(&path).expect("listed");
            changes.gone.extend(e.loaded.inputs.iter().cloned());
        }
        for (path, stamp, source) in read {
            let loaded = decode(std::slice::from_ref(&source));
            changes.problems |= !loaded.problems.is_empty();
            let old = self.files.remove(&path);
            changes.add_file(old.as_ref().map_or(&[][..], |e| &e.loaded.inputs), &loaded.inputs);
            self.files.insert(path, Arc::new(Entry { stamp, source, loaded }));
        }
        Ok(Some(changes))
    }

    /// Builds the cluster from every file as last read.
    pub fn load(&self, opts: &BuildOptions) -> Load {
        self.snapshot().load(opts)
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.files.values().cloned().collect())
    }
}

impl Snapshot {
    /// Builds the cluster from every file.
    pub fn load(&self, opts: &BuildOptions) -> Load {
        let mut all = Loaded::default();
        let mut sources = Vec::with_capacity(self.0.len());
        for e in &self.0 {
            all.inputs.extend(e.loaded.inputs.iter().cloned());
            all.problems.extend(e.loaded.problems.iter().cloned());
            for (k, n) in &e.loaded.ignored {
                *all.ignored.entry(k.clone()).or_default() += n;
            }
            sources.push(e.source.clone());
        }
        assemble(sources, all, opts)
    }
}

/// Objects that went and came between two looks at the directory; a changed object is in
/// both (old and new version), an unchanged one in neither.
#[derive(Default)]
pub struct Changes {
    pub gone: Vec<Input>,
    pub came: Vec<Input>,
    /// A changed file did not decode cleanly (errors or warnings).
    pub problems: bool,
}

fn key(i: &Input) -> (&'static str, Option<String>, Option<String>) {
    let m = i.object.metadata();
    (i.object.kind(), m.namespace.clone(), m.name.clone())
}

impl Changes {
    /// The change as patches for the cluster built before it (policies, pods) when the object
    /// path can take it: only Pods and enforced policies, each one the full build would take
    /// as it is (see `pod_patch` and `policy_patch`). `None`: build and compile in full.
    pub fn patches(&self, cluster: &Cluster, opts: &BuildOptions) -> Option<(PolicyPatch, PodPatch)> {
        if self.problems {
            return None;
        }
        let is_pod = |i: &Input| matches!(i.object, Object::Pod(_));
        let (pods_gone, policies_gone): (Vec<Input>, Vec<Input>) = self.gone.iter().cloned().partition(is_pod);
        let (pods_came, policies_came): (Vec<Input>, Vec<Input>) = self.came.iter().cloned().partition(is_pod);
        let gone: Option<Vec<(String, String)>> = pods_gone
            .iter()
            .map(|i| {
                let m = i.object.metadata();
                Some((m.namespace.clone().or_else(|| opts.default_namespace.clone())?, m.name.clone()?))
            })
            .collect();
        let pods = pod_patch(cluster, &gone?, &pods_came, opts)?;
        let policies = policy_patch(cluster, &policies_gone, &policies_came, opts)?;
        Some((policies, pods))
    }

    /// Pod objects and other objects among those that went or came.
    pub fn counts(&self) -> (usize, usize) {
        let pods = self.gone.iter().chain(&self.came).filter(|i| matches!(i.object, Object::Pod(_))).count();
        (pods, self.gone.len() + self.came.len() - pods)
    }

    fn add_file(&mut self, old: &[Input], new: &[Input]) {
        let before: HashMap<_, &Input> = old.iter().map(|i| (key(i), i)).collect();
        let after: HashMap<_, &Input> = new.iter().map(|i| (key(i), i)).collect();
        self.gone.extend(old.iter().filter(|i| after.get(&key(i)).is_none_or(|n| n.object != i.object)).cloned());
        self.came.extend(new.iter().filter(|i| before.get(&key(i)).is_none_or(|o| o.object != i.object)).cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(inputs: &[Input]) -> Vec<String> {
        let mut v: Vec<String> = inputs.iter().map(|i| i.object.metadata().name.clone().unwrap()).collect();
        v.sort();
        v
    }

    #[test]
    fn poll_names_the_objects_that_went_and_came() {
        let dir = std::env::temp_dir().join(format!("palisade-poll-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pod = |name: &str, app: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: a, labels: {{app: {app}}}}}\n")
        };
        std::fs::write(dir.join("one.yaml"), format!("{}---\n{}", pod("p", "x"), pod("q", "x"))).unwrap();
        let mut w = Watched::new(&dir);
        let first = w.poll().unwrap().expect("the first read");
        assert_eq!((names(&first.gone), names(&first.came)), (vec![], vec!["p".into(), "q".into()]));
        // q changes, p stays as it was: only q's old and new versions are named.
        std::fs::write(dir.join("one.yaml"), format!("{}---\n{}", pod("p", "x"), pod("q", "z"))).unwrap();
        let changed = w.poll().unwrap().expect("a change");
        assert_eq!((names(&changed.gone), names(&changed.came)), (vec!["q".into()], vec!["q".into()]));
        assert!(!changed.problems);
        std::fs::remove_file(dir.join("one.yaml")).unwrap();
        std::fs::write(dir.join("two.yaml"), pod("r", "x")).unwrap();
        let moved = w.poll().unwrap().expect("a change");
        assert_eq!((names(&moved.gone), names(&moved.came)), (vec!["p".into(), "q".into()], vec!["r".into()]));
        std::fs::write(dir.join("two.yaml"), "kind: Pod\nmetadata: [\n").unwrap();
        assert!(w.poll().unwrap().expect("a change").problems, "a file that does not decode");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_changes_are_reported_and_files_come_and_go() {
        let dir = std::env::temp_dir().join(format!("palisade-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ns.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n").unwrap();
        let mut w = Watched::new(&dir);
        let opts = BuildOptions::default();
        let first = w.refresh(&opts).unwrap().expect("the first read loads");
        assert_eq!(first.cluster.unwrap().namespaces.len(), 1);
        assert!(w.refresh(&opts).unwrap().is_none(), "nothing changed");
        std::fs::write(dir.join("more.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n").unwrap();
        let second = w.refresh(&opts).unwrap().expect("a new file");
        assert_eq!(second.cluster.unwrap().namespaces.len(), 2);
        std::fs::write(
            dir.join("more.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: b, labels: {x: \"1\"}}\n",
        )
        .unwrap();
        let third = w.refresh(&opts).unwrap().expect("a changed file");
        let c = third.cluster.unwrap();
        assert_eq!(c.namespaces[c.namespace("b").unwrap()].labels.get("x").map(String::as_str), Some("1"));
        std::fs::remove_file(dir.join("more.yaml")).unwrap();
        let fourth = w.refresh(&opts).unwrap().expect("a removed file");
        assert_eq!(fourth.cluster.unwrap().namespaces.len(), 1);
        std::fs::write(dir.join("ns.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: [}\n").unwrap();
        let broken = w.refresh(&opts).unwrap().expect("a broken file");
        assert!(broken.cluster.is_none() && broken.errors() > 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
