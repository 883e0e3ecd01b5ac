//! What the agent says about itself: log lines when objects are held back or let go, and the
//! status text it serves to `palisade agent --status` (through its claim on the namespace).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use palisade_load::watch::Held;

use crate::log;

/// Logs what is newly held back and what no longer is.
pub fn log_held(before: &[Held], now: &[Held]) {
    let was: BTreeSet<String> = before.iter().map(ToString::to_string).collect();
    let is: BTreeSet<String> = now.iter().map(ToString::to_string).collect();
    for h in now.iter().filter(|h| !was.contains(&h.to_string())) {
        log(&format!("held back: {h}"));
    }
    let still: BTreeSet<(&str, &std::path::Path)> = now.iter().map(|h| (h.object.as_str(), h.file.as_path())).collect();
    for h in before.iter().filter(|h| !is.contains(&h.to_string())) {
        if !still.contains(&(h.object.as_str(), h.file.as_path())) {
            log(&format!("no longer held back: {} ({})", h.object, h.file.display()));
        }
    }
}

/// The facts the status text is made of.
pub struct Facts<'a> {
    pub source: &'a std::path::Path,
    pub mode: &'a str,
    pub node: Option<&'a str>,
    pub pods: usize,
    pub enforced: usize,
    pub policies: usize,
    pub stats: palisade_nft::Stats,
    pub last_change: Option<&'a (Instant, String)>,
    pub held: &'a [Held],
    pub restores: usize,
    pub last_restore: Option<&'a str>,
    pub directory_error: Option<&'a str>,
}

fn ago(t: Instant) -> String {
    let s = t.elapsed();
    if s < Duration::from_secs(120) {
        format!("{} s ago", s.as_secs())
    } else {
        format!("{} min ago", s.as_secs() / 60)
    }
}

/// The status, one fact a line (stable words: scripts may grep it).
pub fn text(f: &Facts) -> String {
    let mut out = format!("palisade agent, pid {}\n", std::process::id());
    out.push_str(&format!("source: {}\n", f.source.display()));
    out.push_str(&format!("mode: {}, node: {}\n", f.mode, f.node.unwrap_or("(all)")));
    let s = &f.stats;
    out.push_str(&format!(
        "in force: {} pods ({} enforced), {} policies; {} chains, {} rules, {} sets ({} elements)\n",
        f.pods, f.enforced, f.policies, s.chains, s.rules, s.sets, s.set_elements
    ));
    match f.last_change {
        Some((t, how)) => out.push_str(&format!("last change: {} ({how})\n", ago(*t))),
        None => out.push_str("last change: none since start\n"),
    }
    if let Some(e) = f.directory_error {
        out.push_str(&format!("directory: {e} (everything stays in force)\n"));
    }
    out.push_str(&format!("held back: {}\n", f.held.len()));
    for h in f.held {
        out.push_str(&format!("  {h}\n"));
    }
    out.push_str(&format!("table restores: {}\n", f.restores));
    if let Some(r) = f.last_restore {
        out.push_str(&format!("  last: {r}\n"));
    }
    out
}
