//! A manifest directory's files, read as Kubernetes and editors write them, each taken only
//! once it is complete.
//!
//! - ConfigMap and Secret volumes: the kubelet writes each version into a hidden timestamped
//!   directory (`..2026_01_02_03_04_05.123456789`), points the `..data` symlink at it with one
//!   rename, and shows each key as a symlink `name -> ..data/name` (Kubernetes' `AtomicWriter`).
//!   A directory holding `..data` is read through that one target, so a version is taken whole
//!   (one snapshot per flip, never half old and half new) and each file once.
//! - Names starting with `.` are never read (`..data`, the hidden versions, `.x.yaml.swp`,
//!   `.#x.yaml`, `.x.yaml.tmp`), nor names not ending in `.yaml`, `.yml` or `.json` (`x.yaml~`,
//!   `#x.yaml#`).
//! - A changed file is taken once it is complete: no write to it is open (a write seen without
//!   its close), it did not change while being read, and its last change was closed (or renamed
//!   into place) or is `settle` old. A removed file is taken as removed once it stayed away for
//!   `settle` (`rm x; cp new x` is not a removal).
//! - A change is a change of content: the inode's change time (which `cp -p` and `rsync -t`
//!   cannot set back) says when to read a file again, and only a different text counts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::source::ReadError;

/// A closed file is taken this long after its last change at the earliest, so that a write
/// starting right after the close has reached the event queue.
const CLOSED_MIN_AGE: Duration = Duration::from_millis(10);
/// A write seen without its close is waited for at most this many settle times (a writer that
/// keeps the file open for good).
const OPEN_WRITER_SETTLES: u32 = 10;
/// Looks retried when a `..data` link flips during the look.
const FLIP_RETRIES: usize = 3;

/// What marks a file as possibly changed: its inode and the inode's change time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }

    fn changed_at(&self) -> SystemTime {
        let ns = u64::try_from(self.ctime_ns.max(0)).unwrap_or(u64::MAX);
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)
    }
}

/// What file events (inotify, through the agent) said about paths since they were last
/// taken: a write still open, or the time of the last close after writing (or rename into
/// place).
#[derive(Default, Debug)]
pub struct Activity {
    writing: HashMap<PathBuf, SystemTime>,
    closed: HashMap<PathBuf, SystemTime>,
}

impl Activity {
    /// A write to `path` (IN_MODIFY), seen at `at`: the file is not complete until it is closed.
    pub fn written(&mut self, path: &Path, at: SystemTime) {
        self.writing.insert(path.to_path_buf(), at);
    }
    /// `path` was closed after writing (IN_CLOSE_WRITE) or renamed into place (IN_MOVED_TO),
    /// seen at `at`: take the time when the event arrives, not when it is handled, so that a
    /// write started after the close (its inode change time later) is not taken for closed.
    pub fn closed(&mut self, path: &Path, at: SystemTime) {
        self.writing.remove(path);
        self.closed.insert(path.to_path_buf(), at);
    }
    /// `path` was removed or renamed away.
    pub fn gone(&mut self, path: &Path) {
        self.writing.remove(path);
        self.closed.remove(path);
    }
}

/// One look at the directory: the files whose text changed or that appeared, the files that
/// went, and when to look again for files still being written.
#[derive(Debug, Default)]
pub struct Look {
    /// (path as shown, its text or why it cannot be read), in path order.
    pub changed: Vec<(PathBuf, Result<Arc<str>, ReadError>)>,
    pub gone: Vec<PathBuf>,
    /// Some file changed but is not complete yet, or went only just now: look again after this.
    pub again_in: Option<Duration>,
}

/// A file as listed: the name it is shown (and known) by, the path its text is read from (in
/// a `..data` version for a ConfigMap volume), and whether it is part of such a version.
struct Listed {
    shown: PathBuf,
    path: PathBuf,
    snapshot: bool,
}

/// A directory's `..data` link and the version it pointed to when listed.
type Flip = (PathBuf, PathBuf);

/// A directory (or one file) of manifests, with the text last taken of each file (`None`: it
/// could not be read).
pub struct Directory {
    root: PathBuf,
    settle: Duration,
    known: BTreeMap<PathBuf, (Stamp, Option<Arc<str>>)>,
    /// Files not found since this time (a removal is taken once it lasted `settle`).
    missing: HashMap<PathBuf, SystemTime>,
}

enum Examined {
    Same,
    /// Not complete yet: look again in this long.
    Pending(Duration),
    Taken(Stamp, Result<Arc<str>, ReadError>),
}

impl Directory {
    pub fn new(root: &Path, settle: Duration) -> Directory {
        Directory { root: root.to_path_buf(), settle, known: BTreeMap::new(), missing: HashMap::new() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Looks at every file; `Err` when the directory itself cannot be read or holds no
    /// manifest at all (taken as a mount gone wrong, not as every object removed).
    pub fn look(&mut self, activity: &Activity) -> Result<Look, ReadError> {
        for _ in 0..FLIP_RETRIES {
            let (listed, flips) = list(&self.root)?;
            let paths: Vec<PathBuf> = listed.iter().map(|l| l.path.clone()).collect();
            let examined: Vec<(Listed, Examined)> = listed
                .into_iter()
                .map(|l| {
                    let e = self.examine(&l, activity);
                    (l, e)
                })
                .collect();
            // A version is taken whole or not at all.
            if flips.iter().any(|(link, target)| std::fs::read_link(link).ok().as_ref() != Some(target)) {
                continue;
            }
            // So is a change of the tree: a directory renamed away while its files were read
            // leaves some read and some missing, a state that never was (half a removal).
            let same = list(&self.root).is_ok_and(|(again, _)| again.iter().map(|l| &l.path).eq(paths.iter()));
            if !same {
                continue;
            }
            return Ok(self.take(examined));
        }
        Ok(Look { again_in: Some(self.settle.max(CLOSED_MIN_AGE)), ..Look::default() })
    }

    fn take(&mut self, examined: Vec<(Listed, Examined)>) -> Look {
        let mut look = Look::default();
        let mut again = |d: Duration| look.again_in = Some(look.again_in.map_or(d, |a| a.min(d)));
        let listed: HashSet<PathBuf> = examined.iter().map(|(l, _)| l.shown.clone()).collect();
        for (l, e) in examined {
            self.missing.remove(&l.shown);
            match e {
                Examined::Same => {}
                Examined::Pending(d) => again(d),
                Examined::Taken(stamp, text) => {
                    let unchanged = match (&text, self.known.get(&l.shown)) {
                        (Ok(t), Some((_, Some(known)))) => t == known,
                        _ => false,
                    };
                    self.known.insert(l.shown.clone(), (stamp, text.as_ref().ok().cloned()));
                    if !unchanged {
                        look.changed.push((l.shown, text));
                    }
                }
            }
        }
        let now = SystemTime::now();
        let away: Vec<PathBuf> = self.known.keys().filter(|p| !listed.contains(*p)).cloned().collect();
        for path in away {
            let since = *self.missing.entry(path.clone()).or_insert(now);
            let gone_for = now.duration_since(since).unwrap_or_default();
            if gone_for >= self.settle {
                self.known.remove(&path);
                self.missing.remove(&path);
                look.gone.push(path);
            } else {
                again(self.settle - gone_for);
            }
        }
        look
    }

    /// Whether a listed file changed, and if so whether it is complete. A file that cannot be
    /// read is taken with the reason (once per change of its inode).
    fn examine(&self, l: &Listed, activity: &Activity) -> Examined {
        let shown = l.shown.display().to_string();
        let io = |source| ReadError::Io { path: shown.clone(), source };
        // Not there any more (removed since it was listed), or not even its inode readable:
        // the next look says.
        let Ok(stamp) = std::fs::metadata(&l.path).map(|m| Stamp::of(&m)) else {
            return Examined::Pending(self.settle);
        };
        if self.known.get(&l.shown).is_some_and(|(s, _)| *s == stamp) {
            return Examined::Same;
        }
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&l.path).and_then(|mut f| {
            f.read_to_end(&mut bytes)?;
            f.metadata()
        });
        let read = match read {
            Ok(after) if Stamp::of(&after) != stamp => return Examined::Pending(self.settle),
            Ok(_) => Ok(()),
            Err(e) => Err(io(e)),
        };
        if !l.snapshot {
            if let Some(wait) = self.unfinished(&l.shown, &stamp, activity) {
                return Examined::Pending(wait);
            }
        }
        let text =
            read.and_then(|()| String::from_utf8(bytes).map(Arc::from).map_err(|_| ReadError::NotText { path: shown }));
        Examined::Taken(stamp, text)
    }

    /// How long to wait before a file that changed may be complete; `None`: it is.
    fn unfinished(&self, shown: &Path, stamp: &Stamp, activity: &Activity) -> Option<Duration> {
        let now = SystemTime::now();
        let changed = stamp.changed_at();
        let age = now.duration_since(changed).unwrap_or_default();
        let open_writer = activity
            .writing
            .get(shown)
            .is_some_and(|at| now.duration_since(*at).unwrap_or_default() < self.settle * OPEN_WRITER_SETTLES);
        if open_writer {
            return Some(self.settle);
        }
        let closed_since = activity.closed.get(shown).is_some_and(|at| *at >= changed);
        let needed = if closed_since { CLOSED_MIN_AGE } else { self.settle };
        (age < needed).then(|| needed - age)
    }
}

/// `.yaml`, `.yml` or `.json`, and not hidden.
fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.') && [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e))
}

/// Every manifest under `root` (or `root` itself when it is a file), in name order, and the
/// `..data` links they were read through.
fn list(root: &Path) -> Result<(Vec<Listed>, Vec<Flip>), ReadError> {
    let shown = root.display().to_string();
    let meta = std::fs::metadata(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::Missing { path: shown.clone() },
        _ => ReadError::Io { path: shown.clone(), source: e },
    })?;
    let mut out = (Vec::new(), Vec::new());
    if meta.is_file() {
        out.0.push(Listed { shown: root.to_path_buf(), path: root.to_path_buf(), snapshot: false });
        return Ok(out);
    }
    let mut seen = HashSet::from([(meta.dev(), meta.ino())]);
    walk(root, root, false, &mut out, &mut seen)?;
    if out.0.is_empty() {
        return Err(ReadError::EmptyDir { path: shown });
    }
    Ok(out)
}

/// Lists `dir` (read from `dir`, shown under `shown`); `snapshot`: inside a `..data` version.
fn walk(
    dir: &Path,
    shown: &Path,
    snapshot: bool,
    out: &mut (Vec<Listed>, Vec<Flip>),
    seen: &mut HashSet<(u64, u64)>,
) -> Result<(), ReadError> {
    let io = |source| ReadError::Io { path: dir.display().to_string(), source };
    let data_link = dir.join("..data");
    let data = if snapshot { None } else { std::fs::read_link(&data_link).ok() };
    let mut entries: Vec<std::fs::DirEntry> =
        std::fs::read_dir(dir).map_err(io)?.collect::<Result<_, _>>().map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    let mut mine = Vec::new();
    for entry in entries {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // A key of a ConfigMap volume: read once, from the version `..data` points to.
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if data.is_some() && is_link && std::fs::read_link(&path).is_ok_and(|t| t.starts_with("..data")) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else { continue }; // a dangling link
        if meta.is_dir() {
            if seen.insert((meta.dev(), meta.ino())) {
                walk(&path, &shown.join(&name), snapshot, out, seen)?;
            }
        } else if meta.is_file() && is_manifest_name(&name) {
            mine.push(Listed { shown: shown.join(&name), path, snapshot });
        }
    }
    if let Some(target) = data {
        let version = dir.join(&target);
        if std::fs::metadata(&version).is_ok_and(|m| m.is_dir()) {
            out.1.push((data_link, target));
            walk(&version, shown, true, out, seen)?;
        }
    }
    out.0.extend(mine);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("palisade-dir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(look: &Look) -> Vec<String> {
        look.changed.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().to_string()).collect()
    }

    /// Writes one version of a ConfigMap volume the way the kubelet's AtomicWriter does.
    fn project(dir: &Path, version: &str, files: &[(&str, &str)]) {
        let v = dir.join(format!("..{version}"));
        std::fs::create_dir_all(&v).unwrap();
        for (name, text) in files {
            std::fs::write(v.join(name), text).unwrap();
        }
        let tmp = dir.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
        for (name, _) in files {
            let _ = std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name));
        }
    }

    #[test]
    fn a_configmap_volume_is_read_once_per_version_and_whole() {
        let dir = scratch("configmap");
        project(&dir, "2026_01_01_00_00_00.1", &[("a.yaml", "a: 1\n"), ("b.yaml", "b: 1\n")]);
        let mut d = Directory::new(&dir, Duration::ZERO);
        let first = d.look(&Activity::default()).unwrap();
        assert_eq!(names(&first), ["a.yaml", "b.yaml"], "each key once, by its own name");
        assert!(first.changed.iter().all(|(p, _)| p.parent() == Some(dir.as_path())));
        // The next version changes b and drops a; the old version goes after the flip.
        project(&dir, "2026_01_01_00_00_01.2", &[("b.yaml", "b: 2\n")]);
        std::fs::remove_dir_all(dir.join("..2026_01_01_00_00_00.1")).unwrap();
        std::fs::remove_file(dir.join("a.yaml")).unwrap();
        let next = d.look(&Activity::default()).unwrap();
        assert_eq!(names(&next), ["b.yaml"]);
        assert_eq!(next.gone, [dir.join("a.yaml")]);
        assert_eq!(&*next.changed[0].1.as_ref().unwrap().clone(), "b: 2\n");
        assert!(d.look(&Activity::default()).unwrap().changed.is_empty(), "nothing new");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hidden_and_editor_files_are_not_manifests() {
        let dir = scratch("hidden");
        for name in ["p.yaml", ".p.yaml.swp", ".#p.yaml", ".p.yaml.tmp", "p.yaml~", "#p.yaml#", "4913", "notes.txt"] {
            std::fs::write(dir.join(name), "kind: x\n").unwrap();
        }
        let mut d = Directory::new(&dir, Duration::ZERO);
        assert_eq!(names(&d.look(&Activity::default()).unwrap()), ["p.yaml"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_same_size_rewrite_with_the_old_mtime_is_a_change() {
        let dir = scratch("mtime");
        let file = dir.join("p.yaml");
        std::fs::write(&file, "port: 80\n").unwrap();
        let mut d = Directory::new(&dir, Duration::ZERO);
        d.look(&Activity::default()).unwrap();
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        // What `cp -p` and `rsync -t` do: same size, modification time set back.
        std::fs::write(&file, "port: 81\n").unwrap();
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(mtime).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), mtime);
        let look = d.look(&Activity::default()).unwrap();
        assert_eq!(names(&look), ["p.yaml"], "same size and mtime, other content");
        // The same text written again (a new inode change time) is no change.
        std::fs::write(&file, "port: 81\n").unwrap();
        assert!(d.look(&Activity::default()).unwrap().changed.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_is_taken_only_once_complete() {
        let dir = scratch("settle");
        let file = dir.join("p.yaml");
        std::fs::write(&file, "port: 80\n").unwrap();
        // An empty directory is a problem, not a removal of everything: keep another file.
        std::fs::write(dir.join("other.yaml"), "x: 1\n").unwrap();
        let settle = Duration::from_millis(300);
        let mut d = Directory::new(&dir, settle);
        let mut activity = Activity::default();
        // Older than the settle time by the time it is looked at.
        std::thread::sleep(settle);
        assert_eq!(names(&d.look(&activity).unwrap()), ["other.yaml", "p.yaml"]);
        // A write in progress: seen written, not closed.
        std::fs::write(&file, "port: 8").unwrap();
        activity.written(&file, SystemTime::now());
        let look = d.look(&activity).unwrap();
        assert!(look.changed.is_empty() && look.again_in.is_some(), "an open write is waited for");
        // Closed: taken at once (after the short minimum age).
        std::fs::write(&file, "port: 8080\n").unwrap();
        activity.closed(&file, SystemTime::now());
        std::thread::sleep(CLOSED_MIN_AGE);
        assert_eq!(names(&d.look(&activity).unwrap()), ["p.yaml"]);
        // Without events: a fresh change waits for the settle time.
        std::fs::write(&file, "port: 9090\n").unwrap();
        let look = d.look(&activity).unwrap();
        assert!(look.changed.is_empty() && look.again_in.is_some_and(|d| d <= settle));
        std::thread::sleep(settle);
        assert_eq!(names(&d.look(&activity).unwrap()), ["p.yaml"]);
        // A removal followed by the file coming back is no removal.
        std::fs::remove_file(&file).unwrap();
        let look = d.look(&activity).unwrap();
        assert!(look.gone.is_empty() && look.again_in.is_some());
        std::fs::write(&file, "port: 9090\n").unwrap();
        std::thread::sleep(settle);
        let look = d.look(&activity).unwrap();
        assert!(look.gone.is_empty() && look.changed.is_empty(), "{look:?}");
        std::fs::remove_file(&file).unwrap();
        d.look(&activity).unwrap();
        std::thread::sleep(settle);
        assert_eq!(d.look(&activity).unwrap().gone, [file]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
