//! What wakes the agent: file events in the source directory (inotify, through `notify`),
//! which also tell which files are still being written, and changes to the kernel's table
//! that someone else made (see `palisade_nft::monitor`).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::EventKind;
use palisade_load::directory::Activity;
use palisade_nft::monitor::TableEvent;

/// Events of a save arriving in a burst are taken together after this pause.
const GATHER: Duration = Duration::from_millis(10);

pub enum Wake {
    /// Something happened to a file (`None`: to no file in particular, or to a directory).
    File(Option<FileEvent>),
    Table(TableEvent),
}

/// What happened to a file, and when the event arrived.
pub enum FileEvent {
    Written(PathBuf, SystemTime),
    Closed(PathBuf, SystemTime),
    Gone(PathBuf),
}

/// What a wait brought: whether files changed, and the table's events.
#[derive(Default)]
pub struct Woken {
    pub files: bool,
    pub table: Vec<TableEvent>,
}

pub struct Events {
    tx: Sender<Wake>,
    rx: Receiver<Wake>,
    /// `None`: the directory is only polled.
    _watcher: Option<notify::RecommendedWatcher>,
}

fn file_event(e: &notify::Event) -> Option<FileEvent> {
    let (path, now) = (e.paths.last()?.clone(), SystemTime::now());
    match e.kind {
        EventKind::Modify(ModifyKind::Data(_)) => Some(FileEvent::Written(path, now)),
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(FileEvent::Closed(path, now)),
        // Renamed into place: written whole elsewhere (the safe way to write a manifest).
        EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => Some(FileEvent::Closed(path, now)),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) | EventKind::Remove(_) => Some(FileEvent::Gone(path)),
        _ => None,
    }
}

impl Events {
    /// Watches `dir` (recursively: a ConfigMap volume's `..data` versions are directories that
    /// come and go); logs and falls back to polling when inotify cannot be set up.
    pub fn watch(dir: &Path) -> Events {
        let (tx, rx) = std::sync::mpsc::channel();
        let files = tx.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let wake = match event {
                Ok(e) if matches!(e.kind, EventKind::Access(AccessKind::Open(_) | AccessKind::Read)) => return,
                Ok(e) if matches!(e.kind, EventKind::Access(AccessKind::Close(AccessMode::Read))) => return,
                Ok(e) => file_event(&e),
                // A lost event (queue overflow): look at everything.
                Err(_) => None,
            };
            let _ = files.send(Wake::File(wake));
        })
        .and_then(|mut w| notify::Watcher::watch(&mut w, dir, notify::RecursiveMode::Recursive).map(|()| w));
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                crate::log(&format!("no file events ({e}): looking at the directory every --interval-ms only"));
                None
            }
        };
        Events { tx, rx, _watcher: watcher }
    }

    /// Where the table watch sends its events.
    pub fn sender(&self) -> Sender<Wake> {
        self.tx.clone()
    }

    /// Waits up to `timeout` for anything to happen; file events go into `activity`.
    pub fn wait(&self, timeout: Duration, activity: &mut Activity) -> Woken {
        let mut woken = Woken::default();
        let Ok(first) = self.rx.recv_timeout(timeout) else { return woken };
        let mut take = |w: Wake, woken: &mut Woken| match w {
            Wake::Table(e) => woken.table.push(e),
            Wake::File(e) => {
                woken.files = true;
                match e {
                    Some(FileEvent::Written(p, at)) => activity.written(&p, at),
                    Some(FileEvent::Closed(p, at)) => activity.closed(&p, at),
                    Some(FileEvent::Gone(p)) => activity.gone(&p),
                    None => {}
                }
            }
        };
        let files = matches!(first, Wake::File(_));
        take(first, &mut woken);
        // An editor's save is several events (and a table flush several messages): let them land.
        if files {
            std::thread::sleep(GATHER);
        }
        while let Ok(w) = self.rx.try_recv() {
            take(w, &mut woken);
        }
        woken
    }
}
