//! The kernel's side of the loop: every change is one nf_tables transaction, and the table is
//! kept as the agent left it: notifications of anyone else's change (`nft flush ruleset`, as a
//! host's nftables service does on restart; a deleted element) restore it at once, and a
//! periodic comparison of the kernel's listing with the ruleset is the backstop.

use std::time::{Duration, Instant};

use palisade_nft::kernel::Kernel;
use palisade_nft::monitor::{Listing, TableEvent};
use palisade_nft::script::{self, Command};
use palisade_nft::Ruleset;

use super::log;

/// Past this many commands a delta is compared with loading the table whole, which the kernel
/// takes faster than deleting and adding most of it.
const BIG_DELTA: usize = 5_000;

/// How the kernel's table differs from the ruleset: in words, and when elements are all that
/// is missing, the sets to fill again.
struct Drifted {
    notes: Vec<String>,
    missing: Option<Vec<String>>,
}

pub struct Table {
    pub kernel: Kernel,
    /// The kernel refused a change: the next one replaces the table whole.
    replace: bool,
    /// The listing the ruleset should have, for the change (the agent's count) it was made for.
    expected: Option<(u64, Listing)>,
    /// The namespace's ruleset generation when the table was last found as it should be.
    verified: Option<u32>,
    next_check: Instant,
    every: Duration,
    /// Restores so far, and the last one in words.
    pub restores: usize,
    pub last_restore: Option<String>,
}

impl Table {
    pub fn new(kernel: Kernel, every: Duration) -> Table {
        Table {
            kernel,
            replace: false,
            expected: None,
            verified: None,
            next_check: Instant::now() + every,
            every,
            restores: 0,
            last_restore: None,
        }
    }

    /// When the periodic comparison is due.
    pub fn due_in(&self) -> Duration {
        self.next_check.saturating_duration_since(Instant::now())
    }

    /// Sends a delta (or, after a refusal or when it is bigger, the whole table) in one
    /// transaction; whether the kernel now holds `target`.
    pub fn apply(&mut self, delta: &[Command], target: &Ruleset, t: Instant, how: &str) -> bool {
        let mut sent = delta.len();
        let whole = (self.replace || delta.len() > BIG_DELTA).then(|| script::full_commands(target));
        let applied = match whole {
            Some(full) if self.replace || full.len() < delta.len() => {
                sent = full.len();
                self.kernel.apply(&full)
            }
            _ => self.kernel.apply(delta).or_else(|e| {
                // The table changed under us (or the delta did not fit): replace it whole, still atomically.
                log(&format!("delta refused ({e}); replacing the table"));
                self.kernel.apply(&script::full_commands(target))
            }),
        };
        self.replace = applied.is_err();
        match applied {
            Ok(()) => {
                let whole =
                    if sent != delta.len() { format!(", sent as the whole table: {sent}") } else { String::new() };
                let ms = t.elapsed().as_secs_f64() * 1e3;
                log(&format!("updated in {ms:.1} ms: {} commands ({how}{whole})", delta.len()));
                true
            }
            Err(e) => {
                log(&format!("cannot apply: {e}; the last good ruleset stays in force"));
                false
            }
        }
    }

    /// Someone else changed the table (or notifications were lost): compare and restore now.
    pub fn react(&mut self, events: Vec<TableEvent>, rs: &Ruleset, generation: u64) {
        if events.is_empty() {
            return;
        }
        let t = Instant::now();
        let mut why = Vec::new();
        for e in events {
            match e {
                TableEvent::Changed { by, what } => {
                    log(&format!("the table was changed by {by}: {what}"));
                    why.push(format!("changed by {by}"));
                }
                TableEvent::Lost => why.push("table notifications were lost".into()),
            }
        }
        why.dedup();
        self.compare(rs, generation, t, &why.join(", "));
    }

    /// The periodic backstop: compares the listing when the namespace's ruleset moved on since
    /// the table was last found right.
    pub fn check_if_due(&mut self, rs: &Ruleset, generation: u64) {
        if Instant::now() < self.next_check {
            return;
        }
        self.next_check = Instant::now() + self.every;
        if self.verified.is_some() && self.kernel.generation().ok() == self.verified {
            return;
        }
        self.compare(rs, generation, Instant::now(), "periodic comparison");
    }

    /// Lists the table, and restores it when it is not what the ruleset says.
    fn compare(&mut self, rs: &Ruleset, generation: u64, t: Instant, why: &str) {
        let gen = self.kernel.generation().ok();
        let drift = match self.drift(rs, generation) {
            Ok(d) => d,
            Err(e) => return log(&format!("cannot list the table: {e}")),
        };
        let Some(Drifted { notes, missing }) = drift else {
            self.verified = gen;
            return;
        };
        let (commands, how) = match missing {
            Some(sets) => (script::element_commands(rs, &sets), "elements added back"),
            None => (script::full_commands(rs), "table replaced"),
        };
        let outcome = self.kernel.apply(&commands).or_else(|_| self.kernel.apply(&script::full_commands(rs)));
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let what = notes.join("; ");
        match outcome {
            Ok(()) => {
                self.restores += 1;
                let line = format!("restored the table in {ms:.1} ms ({how}; {why}): {what}");
                log(&line);
                self.last_restore = Some(line);
                self.replace = false;
            }
            Err(e) => {
                log(&format!("cannot restore the table ({what}): {e}"));
                self.replace = true;
                return;
            }
        }
        // Right after a restore the table must be right; if the listing still differs, it is
        // the comparison that cannot tell (then it says so once instead of restoring forever).
        if let Ok(Some(Drifted { notes, .. })) = self.drift(rs, generation) {
            log(&format!(
                "after the restore the listing still differs ({}); the periodic comparison stops",
                notes.join("; ")
            ));
            self.every = Duration::MAX / 4;
            self.next_check = Instant::now() + self.every;
        }
        self.verified = None;
    }

    /// How the kernel's table differs from the ruleset (`None`: it does not).
    fn drift(&mut self, rs: &Ruleset, generation: u64) -> Result<Option<Drifted>, String> {
        if self.expected.as_ref().is_none_or(|(g, _)| *g != generation) {
            let listing = Listing::of(&script::full_commands(rs)).map_err(|e| e.to_string())?;
            self.expected = Some((generation, listing));
        }
        let expected = &self.expected.as_ref().expect("just computed").1;
        let Some(have) = self.kernel.listing().map_err(|e| e.to_string())? else {
            return Ok(Some(Drifted { notes: vec!["table inet palisade missing".into()], missing: None }));
        };
        let d = have.drift(expected);
        if d.notes.is_empty() {
            return Ok(None);
        }
        let missing = (!d.missing_elements.is_empty()).then_some(d.missing_elements);
        Ok(Some(Drifted { notes: d.notes, missing }))
    }
}
