//! A directory that is read again whenever it changes, decoding only the files that changed
//! (for the agent: parsing every manifest again on each change costs seconds in a big cluster).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use palisade_core::build::BuildOptions;

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
    files: BTreeMap<PathBuf, Entry>,
}

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
        let now = manifests(&self.root)?;
        let same =
            now.len() == self.files.len() && now.iter().all(|(p, s)| self.files.get(p).is_some_and(|e| e.stamp == *s));
        if same {
            return Ok(None);
        }
        self.files.retain(|p, _| now.contains_key(p));
        for (path, stamp) in now {
            if self.files.get(&path).is_some_and(|e| e.stamp == stamp) {
                continue;
            }
            let source = crate::source::read_paths(std::slice::from_ref(&path))?.remove(0);
            let loaded = decode(std::slice::from_ref(&source));
            self.files.insert(path, Entry { stamp, source, loaded });
        }
        let mut all = Loaded::default();
        let mut sources = Vec::with_capacity(self.files.len());
        for e in self.files.values() {
            all.inputs.extend(e.loaded.inputs.iter().cloned());
            all.problems.extend(e.loaded.problems.iter().cloned());
            for (k, n) in &e.loaded.ignored {
                *all.ignored.entry(k.clone()).or_default() += n;
            }
            sources.push(e.source.clone());
        }
        Ok(Some(assemble(sources, all, opts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
