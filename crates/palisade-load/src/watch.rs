//! A watched manifest directory as objects: what is in force, what went and came since, and
//! what is held back. Only the files that changed are decoded (for the agent: decoding every
//! manifest again on each change costs seconds in a big cluster).
//!
//! Each file's objects are in force as last applied. A file whose latest version cannot be
//! read or decoded (a syntax error, an empty or half-written file, not UTF-8) keeps its objects
//! as last applied; a removed file takes its objects along. When the full build finds errors,
//! each object it blames is held back on its own and everything else goes ahead; see
//! [`Watched::build`] for the rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use palisade_core::field::{FieldPath, Location, Problem, Severity};
use palisade_ingest::{BuildOptions, Input, Object};

use crate::directory::{Activity, Directory};
use crate::manifest::{decode, Loaded};
use crate::source::{ReadError, Source};
use crate::{assemble, Load};

/// Full builds tried per change before everything changed is held back.
const ROUNDS: usize = 6;
/// Changed files decoded on one thread; more are shared out over the cores.
const FILES_PER_THREAD: usize = 16;

/// One file: its latest text, what it holds now (when that decodes cleanly) and what of it is
/// in force.
struct File {
    source: Source,
    /// The latest version's objects; the objects in force when it is broken.
    candidate: Arc<Vec<Input>>,
    in_force: Arc<Vec<Input>>,
    /// Why the latest version is not taken (cannot be read or decoded).
    broken: Option<Problem>,
    /// Objects the last full build held back.
    held: Vec<Held>,
    /// The latest version's decoding warnings and ignored kinds.
    warnings: Vec<Problem>,
    ignored: BTreeMap<String, usize>,
    /// The file was removed (kept while some of its objects stay in force).
    removed: bool,
}

pub struct Watched {
    directory: Directory,
    files: BTreeMap<PathBuf, File>,
    /// Files whose objects in force may differ from their latest version.
    unsettled: BTreeSet<PathBuf>,
    again_in: Option<Duration>,
}

/// The objects in force, cheap to take and to build from elsewhere (the agent checks its
/// patched ruleset against a full build on another thread).
#[derive(Clone)]
pub struct Snapshot(Vec<(Source, Arc<Vec<Input>>)>);

/// How an object (or a file) is held back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// A changed object that does not validate: the version last in force stays.
    LastGood,
    /// A new object that does not validate: left out, as the API server would refuse it.
    LeftOut,
    /// An object whose file was removed, kept because removing it leaves others invalid (as
    /// Calico refuses to delete a tier that still holds policies).
    NotRemoved,
    /// A file that cannot be read or decoded: its objects stay as last applied.
    File,
}

/// An object (or file) held back, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// `NetworkPolicy x/p` (as problems name objects), or the file.
    pub object: String,
    pub file: PathBuf,
    pub kept: Kept,
    /// The first error, with its place.
    pub reason: String,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (object, file) = (&self.object, self.file.display());
        match self.kept {
            Kept::LastGood => write!(f, "{object} ({file}): its last good version stays in force: {}", self.reason),
            Kept::LeftOut => write!(f, "{object} ({file}): left out (new, and it does not validate): {}", self.reason),
            Kept::NotRemoved => {
                write!(
                    f,
                    "{object} ({file}, removed): stays in force, removing it leaves others invalid: {}",
                    self.reason
                )
            }
            Kept::File => write!(f, "{file}: not taken, its objects stay as last applied: {}", self.reason),
        }
    }
}

/// A problem's message with its place.
fn reason(p: &Problem) -> String {
    match &p.location {
        Some(l) => format!("{l}: {}", p.message),
        None => p.message.clone(),
    }
}

/// Objects that went and came between what is in force and the files now; a changed object
/// is in both (old and new version), an unchanged one in neither.
#[derive(Default)]
pub struct Changes {
    pub gone: Vec<Input>,
    pub came: Vec<Input>,
    /// A changed file decoded with warnings (the full build reports them).
    pub problems: bool,
    /// Files changed in this look whose latest version is not taken: their objects stay.
    pub broken: Vec<Held>,
}

type Key = (&'static str, Option<String>, Option<String>);
/// Objects by kind, namespace and name.
type ByKey<'a> = HashMap<Key, Vec<&'a Input>>;
/// A file's text decoded, or why it could not be read.
type Decoded = Result<(Source, Loaded), ReadError>;

fn key(i: &Input) -> Key {
    let m = i.object.metadata();
    (i.object.kind(), m.namespace.clone(), m.name.clone())
}

impl Changes {
    /// Pod objects and other objects among those that went or came.
    pub fn counts(&self) -> (usize, usize) {
        let pods = self.gone.iter().chain(&self.came).filter(|i| matches!(i.object, Object::Pod(_))).count();
        (pods, self.gone.len() + self.came.len() - pods)
    }

    /// Nothing went or came (a broken file keeps its objects, or a file was saved as it was).
    pub fn is_empty(&self) -> bool {
        self.gone.is_empty() && self.came.is_empty()
    }
}

/// A file with no document in it (empty, blank, only comments or separators): how a
/// truncated file looks halfway through being written, never taken as its objects removed.
fn blank(text: &str) -> bool {
    text.lines().map(str::trim).all(|l| l.is_empty() || l.starts_with('#') || l == "---" || l == "...")
}

fn file_problem(file: &Path, message: String, help: &str) -> Problem {
    Problem {
        severity: Severity::Error,
        object: "file".into(),
        path: FieldPath::root(),
        message,
        help: Some(help.into()),
        location: Some(Location { file: file.display().to_string().into(), line: 1, column: 1, offset: 0, len: 0 }),
    }
}

/// Decodes changed files, over several threads when there are many.
fn decode_files(changed: Vec<(PathBuf, Result<Arc<str>, ReadError>)>) -> Vec<(PathBuf, Decoded)> {
    let one = |(path, text): (PathBuf, Result<Arc<str>, ReadError>)| {
        let decoded = text.map(|text| {
            let source = Source { name: path.display().to_string().into(), text };
            let loaded = decode(std::slice::from_ref(&source));
            (source, loaded)
        });
        (path, decoded)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(changed.len() / FILES_PER_THREAD);
    if threads <= 1 {
        return changed.into_iter().map(one).collect();
    }
    let mut chunks: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
    let size = changed.len().div_ceil(threads);
    for (i, c) in changed.into_iter().enumerate() {
        chunks[i / size].push(c);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> =
            chunks.into_iter().map(|c| s.spawn(move || c.into_iter().map(one).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("decoding does not panic")).collect()
    })
}

impl Watched {
    /// A directory (or file) whose changes are taken as soon as they are seen.
    pub fn new(root: &Path) -> Watched {
        Watched::with_settle(root, Duration::ZERO)
    }

    /// A directory whose changed files are taken once complete (see [`crate::directory`]).
    pub fn with_settle(root: &Path, settle: Duration) -> Watched {
        Watched {
            directory: Directory::new(root, settle),
            files: BTreeMap::new(),
            unsettled: BTreeSet::new(),
            again_in: None,
        }
    }

    /// Looks at the directory and says which objects would go and come; `None` when no file
    /// changed. What is in force changes only with [`Watched::settle`] or [`Watched::build`].
    pub fn poll(&mut self) -> Result<Option<Changes>, ReadError> {
        self.poll_with(&Activity::default())
    }

    /// [`Watched::poll`], taking only the files that are complete by what file events said.
    pub fn poll_with(&mut self, activity: &Activity) -> Result<Option<Changes>, ReadError> {
        let look = self.directory.look(activity)?;
        self.again_in = look.again_in;
        if look.changed.is_empty() && look.gone.is_empty() {
            return Ok(None);
        }
        let mut changes = Changes::default();
        for (path, decoded) in decode_files(look.changed) {
            let file = self.files.entry(path.clone()).or_insert_with(|| File {
                source: Source { name: path.display().to_string().into(), text: "".into() },
                candidate: Arc::default(),
                in_force: Arc::default(),
                broken: None,
                held: Vec::new(),
                warnings: Vec::new(),
                ignored: BTreeMap::new(),
                removed: false,
            });
            file.removed = false;
            file.broken = match decoded {
                Err(e) => Some(file_problem(&path, e.to_string(), "make the file readable UTF-8 text")),
                Ok((source, loaded)) => {
                    let broken = if blank(&source.text) {
                        let message = "the file holds no manifest (empty, or only comments): taken as being written, not as its objects removed".into();
                        Some(file_problem(
                            &path,
                            message,
                            "to remove objects, delete their file; write files whole (a temporary file, then rename)",
                        ))
                    } else {
                        loaded.problems.iter().find(|p| p.severity == Severity::Error).cloned()
                    };
                    if broken.is_none() {
                        changes.problems |= !loaded.problems.is_empty();
                        file.candidate = Arc::new(loaded.inputs);
                        file.warnings = loaded.problems;
                        file.ignored = loaded.ignored;
                    }
                    file.source = source;
                    broken
                }
            };
            if let Some(p) = &file.broken {
                file.candidate = file.in_force.clone();
                let held = Held {
                    object: path.display().to_string(),
                    file: path.clone(),
                    kept: Kept::File,
                    reason: reason(p),
                };
                changes.broken.push(held);
            }
            self.unsettled.insert(path);
        }
        for path in look.gone {
            if let Some(file) = self.files.get_mut(&path) {
                file.removed = true;
                file.broken = None;
                file.candidate = Arc::default();
                self.unsettled.insert(path);
            }
        }
        let (gone, came) = self.difference();
        changes.gone = gone;
        changes.came = came;
        Ok(Some(changes))
    }

    /// The directory (or file) watched.
    pub fn root(&self) -> &Path {
        self.directory.root()
    }

    /// When a file that changed may be complete, or a removal final: look again after this.
    pub fn again_in(&self) -> Option<Duration> {
        self.again_in
    }

    /// Objects in force that go or change, and objects that come or change, over the files
    /// not settled.
    fn difference(&self) -> (Vec<Input>, Vec<Input>) {
        let (mut old, mut new): (ByKey, ByKey) = Default::default();
        for path in &self.unsettled {
            let f = &self.files[path];
            f.in_force.iter().for_each(|i| old.entry(key(i)).or_default().push(i));
            f.candidate.iter().for_each(|i| new.entry(key(i)).or_default().push(i));
        }
        let absent =
            |i: &Input, other: &ByKey| other.get(&key(i)).is_none_or(|v| !v.iter().any(|o| o.object == i.object));
        let gone = old.values().flatten().filter(|i| absent(i, &new)).map(|i| (*i).clone()).collect();
        let came = new.values().flatten().filter(|i| absent(i, &old)).map(|i| (*i).clone()).collect();
        (gone, came)
    }

    /// The changes last polled are in force (the object path took them).
    pub fn settle(&mut self) {
        for path in std::mem::take(&mut self.unsettled) {
            let file = self.files.get_mut(&path).expect("unsettled files exist");
            file.in_force = file.candidate.clone();
            file.held.clear();
            if file.removed {
                self.files.remove(&path);
            }
        }
    }

    /// Builds the cluster from what is in force and every change not yet in force, holding
    /// back what does not validate, and makes the result what is in force:
    ///
    /// - An object an error is about is held back on its own: a changed one at the version
    ///   last in force, a new one left out (the API server would have refused it). Objects
    ///   that come before others (already in force, or unchanged) win clashes: a new or changed
    ///   object taking a name or pod IP that an object in force holds is the one held back.
    /// - An error about an object already in force means a removal broke it (a tier removed
    ///   under its policies): the removals of this change are held back too.
    /// - Otherwise (an error no object can be blamed for), everything changed is held back.
    ///
    /// Held-back objects are tried again with every later change.
    pub fn build(&mut self, opts: &BuildOptions) -> Built {
        let mut play = Play::new(self, opts);
        let mut errors: Vec<Problem> = Vec::new();
        let mut load = play.load(self, opts);
        for round in 0.. {
            if load.cluster.is_some() {
                break;
            }
            for p in load.problems.iter().filter(|p| p.severity == Severity::Error) {
                if !errors.iter().any(|e| e.message == p.message && e.location == p.location) {
                    errors.push(p.clone());
                }
            }
            if round + 1 == ROUNDS || !play.hold_back(&load.problems) {
                play.hold_everything();
                load = play.load(self, opts);
                break;
            }
            load = play.load(self, opts);
        }
        play.commit(self, opts);
        let held = self.held();
        let broken = self.files.values().filter_map(|f| f.broken.clone());
        errors.splice(0..0, broken);
        Built { load, held, errors }
    }

    /// Everything held back now: broken files and objects the last build held back.
    pub fn held(&self) -> Vec<Held> {
        let files = self.files.iter();
        let broken = files.clone().filter_map(|(path, f)| {
            let p = f.broken.as_ref()?;
            Some(Held { object: path.display().to_string(), file: path.clone(), kept: Kept::File, reason: reason(p) })
        });
        broken.chain(files.flat_map(|(_, f)| f.held.iter().cloned())).collect()
    }

    /// Builds the cluster from every object in force.
    pub fn load(&self, opts: &BuildOptions) -> Load {
        self.snapshot().load(opts)
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.files.values().map(|f| (f.source.clone(), f.in_force.clone())).collect())
    }

    fn sources(&self) -> Vec<Source> {
        self.files.values().map(|f| f.source.clone()).collect()
    }

    /// Decoding warnings and ignored kinds of every file's latest version.
    fn decoded(&self) -> Loaded {
        let mut all = Loaded::default();
        for f in self.files.values() {
            all.problems.extend(f.warnings.iter().cloned());
            for (k, n) in &f.ignored {
                *all.ignored.entry(k.clone()).or_default() += n;
            }
        }
        all
    }
}

/// What a full build made of the files: the cluster of what is now in force (with every
/// warning), what is held back, and the errors that held it back.
pub struct Built {
    pub load: Load,
    pub held: Vec<Held>,
    pub errors: Vec<Problem>,
}

/// A new or changed object of a full build, and whether it is held back.
struct Trial {
    file: PathBuf,
    input: Input,
    label: String,
    /// Its root's line in its file.
    line: usize,
    /// The version in force.
    was: Option<Input>,
    held: Option<String>,
}

/// The objects of a full build: those of settled files, those of unsettled files that did not
/// change, the removed ones, and the trials.
struct Play {
    base: Vec<Input>,
    same: Vec<(PathBuf, Input)>,
    removed: Vec<(PathBuf, Input)>,
    keep_removed: Option<String>,
    trials: Vec<Trial>,
    /// Every object's (file, root line) for blaming by position: whether it is a trial.
    places: Vec<(Arc<str>, usize, Option<usize>)>,
}

fn root_of(i: &Input) -> Option<Location> {
    i.locate.locate(&FieldPath::root())
}

impl Play {
    fn new(w: &Watched, opts: &BuildOptions) -> Play {
        let mut base: Vec<Input> = Vec::new();
        for (path, f) in &w.files {
            if !w.unsettled.contains(path) {
                base.extend(f.in_force.iter().cloned());
            }
        }
        let mut old: HashMap<Key, (PathBuf, &Input)> = HashMap::new();
        let mut now: BTreeSet<Key> = BTreeSet::new();
        for path in &w.unsettled {
            let f = &w.files[path];
            f.in_force.iter().for_each(|i| drop(old.insert(key(i), (path.clone(), i))));
            now.extend(f.candidate.iter().map(key));
        }
        let (mut trials, mut same) = (Vec::new(), Vec::new());
        for path in &w.unsettled {
            for input in w.files[path].candidate.iter() {
                let was = old.get(&key(input)).map(|(_, i)| (*i).clone());
                if was.as_ref().is_some_and(|w| w.object == input.object) {
                    same.push((path.clone(), input.clone()));
                    continue;
                }
                let line = root_of(input).map_or(0, |l| l.line);
                let label = input.label(opts);
                trials.push(Trial { file: path.clone(), input: input.clone(), label, line, was, held: None });
            }
        }
        let removed = old.into_values().filter(|(_, i)| !now.contains(&key(i))).map(|(p, i)| (p, i.clone())).collect();
        let mut places: Vec<(Arc<str>, usize, Option<usize>)> = base
            .iter()
            .chain(same.iter().map(|(_, i)| i))
            .filter_map(|i| root_of(i).map(|l| (l.file, l.line, None)))
            .collect();
        for (t, trial) in trials.iter().enumerate() {
            if let Some(l) = root_of(&trial.input) {
                places.push((l.file, l.line, Some(t)));
            }
        }
        Play { base, same, removed, keep_removed: None, trials, places }
    }

    /// The objects of this round, those in force first (they win clashes).
    fn inputs(&self) -> Vec<Input> {
        let mut out = self.base.clone();
        out.extend(self.same.iter().map(|(_, i)| i.clone()));
        if self.keep_removed.is_some() {
            out.extend(self.removed.iter().map(|(_, i)| i.clone()));
        }
        for t in &self.trials {
            match &t.held {
                None => out.push(t.input.clone()),
                Some(_) => out.extend(t.was.clone()),
            }
        }
        out
    }

    fn load(&self, w: &Watched, opts: &BuildOptions) -> Load {
        let mut decoded = w.decoded();
        decoded.inputs = self.inputs();
        assemble(w.sources(), decoded, opts)
    }

    /// The trial an error is about: by the object it names and the file it is in, else by
    /// position in the file (`None` when it is an object that did not change).
    fn blame(&self, p: &Problem) -> Option<usize> {
        let at = p.location.as_ref();
        let in_file = |file: &Path| at.is_none_or(|l| *l.file == *file.display().to_string());
        let before = |line: usize| at.is_none_or(|l| line <= l.line);
        let named: Vec<usize> = (0..self.trials.len())
            .filter(|&t| {
                self.trials[t].held.is_none() && self.trials[t].label == p.object && in_file(&self.trials[t].file)
            })
            .collect();
        if let Some(&t) = named.iter().filter(|&&t| before(self.trials[t].line)).max_by_key(|&&t| self.trials[t].line) {
            return Some(t);
        }
        if let Some(&t) = named.first() {
            return Some(t);
        }
        let l = at?;
        let nearest = self
            .places
            .iter()
            .filter(|(f, line, _)| *f == l.file && *line <= l.line)
            .max_by_key(|(_, line, _)| *line)?;
        nearest.2.filter(|&t| self.trials[t].held.is_none())
    }

    /// Holds back what the errors are about; whether anything more is held back.
    fn hold_back(&mut self, problems: &[Problem]) -> bool {
        let mut progress = false;
        let mut unblamed = None;
        for p in problems.iter().filter(|p| p.severity == Severity::Error) {
            match self.blame(p) {
                Some(t) => {
                    if self.trials[t].held.is_none() {
                        self.trials[t].held = Some(reason(p));
                        progress = true;
                    }
                }
                None => unblamed = unblamed.or(Some(p)),
            }
        }
        if let Some(p) = unblamed.filter(|_| !progress) {
            if self.keep_removed.is_none() && !self.removed.is_empty() {
                self.keep_removed = Some(reason(p));
                return true;
            }
        }
        progress
    }

    fn hold_everything(&mut self) {
        let why = "the change does not build with any of its objects held back alone".to_string();
        for t in &mut self.trials {
            t.held.get_or_insert_with(|| why.clone());
        }
        self.keep_removed.get_or_insert(why);
    }

    /// Makes this round what is in force.
    fn commit(self, w: &mut Watched, opts: &BuildOptions) {
        let mut in_force: BTreeMap<PathBuf, Vec<Input>> = BTreeMap::new();
        let mut held: BTreeMap<PathBuf, Vec<Held>> = BTreeMap::new();
        for (path, i) in self.same {
            in_force.entry(path).or_default().push(i);
        }
        for t in self.trials {
            let entry = in_force.entry(t.file.clone()).or_default();
            match t.held {
                None => entry.push(t.input),
                Some(reason) => {
                    let kept = if t.was.is_some() { Kept::LastGood } else { Kept::LeftOut };
                    entry.extend(t.was);
                    held.entry(t.file.clone()).or_default().push(Held { object: t.label, file: t.file, kept, reason });
                }
            }
        }
        if let Some(reason) = &self.keep_removed {
            for (path, i) in self.removed {
                let object = i.label(opts);
                in_force.entry(path.clone()).or_default().push(i);
                held.entry(path.clone()).or_default().push(Held {
                    object,
                    file: path,
                    kept: Kept::NotRemoved,
                    reason: reason.clone(),
                });
            }
        }
        for path in std::mem::take(&mut w.unsettled) {
            let file = w.files.get_mut(&path).expect("unsettled files exist");
            file.in_force = Arc::new(in_force.remove(&path).unwrap_or_default());
            file.held = held.remove(&path).unwrap_or_default();
            if !file.held.is_empty() {
                w.unsettled.insert(path);
            } else if file.removed {
                w.files.remove(&path);
            }
        }
    }
}

impl Snapshot {
    /// Builds the cluster from every object in force.
    pub fn load(&self, opts: &BuildOptions) -> Load {
        let mut all = Loaded::default();
        for (_, inputs) in &self.0 {
            all.inputs.extend(inputs.iter().cloned());
        }
        assemble(self.0.iter().map(|(s, _)| s.clone()).collect(), all, opts)
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

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("palisade-watch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn pod(name: &str, app: &str, ip: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: a, labels: {{app: {app}}}}}\nstatus: {{podIP: {ip}}}\n"
        )
    }

    fn policy(name: &str, port: &str) -> String {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: a}}\nspec:\n  podSelector: {{}}\n  ingress:\n  - ports: [{{port: {port}}}]\n"
        )
    }

    /// Ports each policy in force allows, by name.
    fn ports(w: &Watched) -> Vec<(String, String)> {
        let cluster = w.load(&BuildOptions::default()).cluster.expect("what is in force builds");
        let mut out: Vec<(String, String)> = cluster
            .policies
            .iter()
            .map(|p| (p.name.clone(), format!("{:?}", p.rules(palisade_core::policy::Direction::Ingress))))
            .collect();
        out.sort();
        out
    }

    fn held(w: &Watched) -> Vec<(String, Kept)> {
        let mut v: Vec<(String, Kept)> = w.held().into_iter().map(|h| (h.object, h.kept)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn poll_names_the_objects_that_went_and_came() {
        let dir = scratch("poll");
        std::fs::write(
            dir.join("one.yaml"),
            format!("{}---\n{}", pod("p", "x", "198.18.0.1"), pod("q", "x", "198.18.0.2")),
        )
        .unwrap();
        let mut w = Watched::new(&dir);
        let first = w.poll().unwrap().expect("the first read");
        assert_eq!((names(&first.gone), names(&first.came)), (vec![], vec!["p".into(), "q".into()]));
        w.settle();
        // q changes, p stays as it was: only q's old and new versions are named.
        std::fs::write(
            dir.join("one.yaml"),
            format!("{}---\n{}", pod("p", "x", "198.18.0.1"), pod("q", "z", "198.18.0.2")),
        )
        .unwrap();
        let changed = w.poll().unwrap().expect("a change");
        assert_eq!((names(&changed.gone), names(&changed.came)), (vec!["q".into()], vec!["q".into()]));
        assert!(!changed.problems);
        w.settle();
        std::fs::remove_file(dir.join("one.yaml")).unwrap();
        std::fs::write(dir.join("two.yaml"), pod("r", "x", "198.18.0.3")).unwrap();
        let moved = w.poll().unwrap().expect("a change");
        assert_eq!((names(&moved.gone), names(&moved.came)), (vec!["p".into(), "q".into()], vec!["r".into()]));
        w.settle();
        assert!(w.poll().unwrap().is_none(), "nothing changed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_broken_or_emptied_file_keeps_its_objects_and_a_removed_file_takes_them() {
        let dir = scratch("broken");
        std::fs::write(dir.join("ns.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n").unwrap();
        std::fs::write(dir.join("p.yaml"), policy("p", "80")).unwrap();
        let mut w = Watched::new(&dir);
        w.poll().unwrap();
        assert!(w.build(&BuildOptions::default()).held.is_empty());
        for text in [
            "",
            "# being written\n",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namesp",
        ] {
            std::fs::write(dir.join("p.yaml"), text).unwrap();
            let changes = w.poll().unwrap().expect("a change");
            assert!(changes.is_empty(), "{text:?}: nothing goes");
            assert_eq!(changes.broken.len(), 1, "{text:?}");
            w.settle();
            assert_eq!(ports(&w).len(), 1, "{text:?}: p stays in force");
            assert_eq!(held(&w), [(dir.join("p.yaml").display().to_string(), Kept::File)]);
        }
        std::fs::remove_file(dir.join("p.yaml")).unwrap();
        let changes = w.poll().unwrap().expect("a change");
        assert_eq!(names(&changes.gone), ["p"]);
        w.settle();
        assert!(ports(&w).is_empty() && w.held().is_empty(), "a removed file takes its objects along");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_invalid_object_is_held_back_alone() {
        let dir = scratch("held");
        std::fs::write(dir.join("ns.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n").unwrap();
        std::fs::write(dir.join("p.yaml"), policy("p", "80")).unwrap();
        std::fs::write(dir.join("q.yaml"), policy("q", "81")).unwrap();
        std::fs::write(dir.join("pods.yaml"), pod("web", "x", "198.18.0.1")).unwrap();
        let opts = BuildOptions::default();
        let mut w = Watched::new(&dir);
        w.poll().unwrap();
        w.build(&opts);
        let before = ports(&w);
        // p changes to something invalid, a new policy is invalid, q changes validly, and the pod goes.
        std::fs::write(dir.join("p.yaml"), policy("p", "70000")).unwrap();
        std::fs::write(dir.join("new.yaml"), policy("new", "0")).unwrap();
        std::fs::write(dir.join("q.yaml"), policy("q", "82")).unwrap();
        std::fs::remove_file(dir.join("pods.yaml")).unwrap();
        w.poll().unwrap().expect("a change");
        let built = w.build(&opts);
        assert!(built.load.cluster.as_ref().is_some_and(|c| c.pods.is_empty()), "the pod removal goes ahead");
        let now = ports(&w);
        assert_eq!(now[0], before[0], "p keeps its last good version");
        assert_ne!(now[1], before[1], "q's change goes ahead");
        assert_eq!(now.len(), 2, "the new invalid policy is left out");
        assert_eq!(
            held(&w),
            [("NetworkPolicy a/new".into(), Kept::LeftOut), ("NetworkPolicy a/p".into(), Kept::LastGood)]
        );
        assert!(built.held.iter().any(|h| h.reason.contains("p.yaml:")), "{:?}", built.held);
        // Fixed: taken with the next look, held-back objects are tried again.
        std::fs::write(dir.join("p.yaml"), policy("p", "90")).unwrap();
        w.poll().unwrap().expect("a change");
        w.build(&opts);
        assert_eq!(held(&w), [("NetworkPolicy a/new".into(), Kept::LeftOut)]);
        assert!(ports(&w)[0].1.contains("90"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_newcomer_taking_a_name_or_address_in_force_is_held_back() {
        let dir = scratch("clash");
        std::fs::write(dir.join("b.yaml"), pod("web", "x", "198.18.0.1")).unwrap();
        let opts = BuildOptions::default();
        let mut w = Watched::new(&dir);
        w.poll().unwrap();
        w.build(&opts);
        // Earlier in file order than the pod in force, but the newcomer: held back.
        std::fs::write(dir.join("a.yaml"), pod("web", "w", "198.18.0.2")).unwrap();
        std::fs::write(dir.join("c.yaml"), pod("other", "w", "198.18.0.1")).unwrap();
        w.poll().unwrap().expect("a change");
        let built = w.build(&opts);
        let c = built.load.cluster.expect("builds");
        assert_eq!(c.pods.len(), 1);
        assert_eq!(c.pods[0].labels.get("app").map(String::as_str), Some("x"), "the pod in force stays");
        assert_eq!(held(&w).len(), 2, "{:?}", w.held());
        assert!(held(&w).iter().all(|(_, k)| *k == Kept::LeftOut));
        // The pod in force goes: its address is free for the other.
        std::fs::remove_file(dir.join("b.yaml")).unwrap();
        w.poll().unwrap().expect("a change");
        let c = w.build(&opts).load.cluster.expect("builds");
        let mut pods: Vec<&str> = c.pods.iter().map(|p| p.name.as_str()).collect();
        pods.sort();
        assert_eq!(pods, ["other", "web"]);
        assert!(w.held().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_removal_that_breaks_objects_in_force_is_held_back() {
        let dir = scratch("tier");
        let tier = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n";
        let gnp = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: security.deny}\nspec:\n  tier: security\n  selector: all()\n  types: [Ingress]\n  ingress: [{action: Deny}]\n";
        std::fs::write(dir.join("tier.yaml"), tier).unwrap();
        std::fs::write(dir.join("gnp.yaml"), gnp).unwrap();
        std::fs::write(dir.join("ns.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n").unwrap();
        let opts = BuildOptions::default();
        let mut w = Watched::new(&dir);
        w.poll().unwrap();
        assert!(w.build(&opts).held.is_empty());
        std::fs::remove_file(dir.join("tier.yaml")).unwrap();
        w.poll().unwrap().expect("a change");
        let built = w.build(&opts);
        assert_eq!(built.load.cluster.expect("builds").policies.len(), 1, "the policy stays, in its tier");
        assert_eq!(held(&w), [("Tier security".into(), Kept::NotRemoved)]);
        // The policy goes too: now the tier can.
        std::fs::remove_file(dir.join("gnp.yaml")).unwrap();
        w.poll().unwrap().expect("a change");
        let c = w.build(&opts).load.cluster.expect("builds");
        assert!(c.policies.is_empty() && c.tiers.len() == 1 && w.held().is_empty(), "{:?}", w.held());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
