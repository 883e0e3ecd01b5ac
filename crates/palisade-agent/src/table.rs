//! The kernel's side of the loop: every change is one nf_tables transaction, and the table is
//! kept as the agent left it: notifications of anyone else's change (`nft flush ruleset`, as a
//! host's nftables service does on restart; a deleted element) restore it at once, and a
//! periodic comparison of the kernel's listing with the ruleset is the backstop.

use std::time::{Duration, Instant};

use palisade_nft::cost::{self, Footprint, Transaction};
use palisade_nft::kernel::{encode, KernelError};
use palisade_nft::monitor::{Expectation, Listing, TableEvent, Watch};
use palisade_nft::netlink::Batch;
use palisade_nft::script::{self, Command};
use palisade_nft::Ruleset;

use crate::kernel::Kernel;
use crate::log;

/// Transactions of the agent's own with more commands go out unheard by the table watch.
const UNHEARD: usize = 1_000;

/// How the kernel's table differs from the ruleset: in words, and when elements are all that
/// is missing, the sets to fill again.
struct Drifted {
    notes: Vec<String>,
    missing: Option<Vec<String>>,
}

pub struct Table<K: Kernel> {
    pub kernel: K,
    /// The watch on the table's notifications, once it runs.
    watch: Option<Watch>,
    /// The kernel refused a change: the next one replaces the table whole.
    replace: bool,
    /// What the table in force holds, for the choice between a delta and the whole table
    /// (`None`: not known, e.g. before the first transaction; then a delta goes as it is).
    in_force: Option<Footprint>,
    /// The listing the ruleset should have, for the change (the agent's count) it was made for.
    expected: Option<(u64, Listing)>,
    expectation: Expectation,
    /// The whole table, encoded, for the same change: a restore sends it as it is.
    whole: Option<(u64, Vec<Command>, Batch)>,
    /// The namespace's ruleset generation when the table was last found as it should be.
    verified: Option<u32>,
    next_check: Instant,
    every: Duration,
    /// Restores so far, and the last one in words.
    pub restores: usize,
    pub last_restore: Option<String>,
}

impl<K: Kernel> Table<K> {
    pub fn new(kernel: K, every: Duration) -> Table<K> {
        Table {
            kernel,
            watch: None,
            replace: false,
            in_force: None,
            expected: None,
            expectation: Expectation::default(),
            whole: None,
            verified: None,
            next_check: Instant::now() + every,
            every,
            restores: 0,
            last_restore: None,
        }
    }

    pub fn set_watch(&mut self, watch: Watch) {
        self.watch = Some(watch);
    }

    /// One transaction (`batch`: the commands already encoded); a big one unheard by the
    /// watch, and when anyone else changed a table meanwhile, the comparison runs at once.
    /// A table found right stays found right through the agent's own transactions: when the
    /// generation moved by exactly this one, nobody else committed in between, so the kernel
    /// holds what was verified plus these commands (or, for a replacement, these commands),
    /// and the periodic comparison need not list the table again.
    fn send(&mut self, commands: &[Command], batch: Option<&Batch>) -> Result<(), KernelError> {
        let before = self.kernel.generation().ok();
        let (outcome, others) = send(&self.kernel, self.watch.as_ref(), commands, batch);
        let replaced = matches!(commands.first(), Some(Command::ReplaceTable));
        let known = replaced || (before.is_some() && before == self.verified);
        let after = self.kernel.generation().ok();
        let ours_alone = before.zip(after).is_some_and(|(b, a)| a == b.wrapping_add(1));
        if outcome.is_ok() && !commands.is_empty() {
            self.verified = (known && ours_alone && !others).then_some(after).flatten();
        }
        if others {
            self.verified = None;
            self.next_check = Instant::now();
        }
        outcome
    }

    /// Whether to send the whole table instead of `delta`: after a refusal, or when the
    /// kernel's work is estimated smaller that way ([`palisade_nft::cost`]).
    fn whole_instead(&self, delta: &[Command], target: &Ruleset) -> bool {
        self.replace || self.in_force.as_ref().is_some_and(|f| cost::cheaper(delta, f, target) == Transaction::Whole)
    }

    /// Keeps the footprint of the table in force after a committed transaction.
    fn committed(&mut self, commands: &[Command], target: &Ruleset) {
        match (commands.first(), &mut self.in_force) {
            (Some(Command::ReplaceTable), _) | (_, None) => self.in_force = Some(Footprint::of(target)),
            (_, Some(f)) => f.apply(commands),
        }
    }

    /// When the periodic comparison is due.
    pub fn due_in(&self) -> Duration {
        self.next_check.saturating_duration_since(Instant::now())
    }

    /// Sends a delta (or the whole table: after a refusal, or when that is estimated cheaper
    /// for the kernel) in one transaction; whether the kernel now holds `target`.
    pub fn apply(&mut self, delta: &[Command], target: &Ruleset, t: Instant, how: &str) -> bool {
        let mut sent = delta.len();
        let applied = match self.whole_instead(delta, target) {
            true => {
                let full = script::full_commands(target);
                sent = full.len();
                self.send(&full, None).map(|()| self.committed(&full, target))
            }
            false => match self.send(delta, None) {
                Ok(()) => {
                    self.committed(delta, target);
                    Ok(())
                }
                Err(e) => {
                    // The table changed under us (or the delta did not fit): replace it whole, still atomically.
                    log(&format!("delta refused ({e}); replacing the table"));
                    let full = script::full_commands(target);
                    sent = full.len();
                    self.send(&full, None).map(|()| self.committed(&full, target))
                }
            },
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
        let (outcome, how) = match missing {
            Some(sets) => {
                let added = self.send(&script::element_commands(rs, &sets), None).map_err(|e| e.to_string());
                (added.or_else(|_| self.replace_whole(rs, generation)), "elements added back")
            }
            None => (self.replace_whole(rs, generation), "table replaced"),
        };
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let what = notes.join("; ");
        match outcome {
            Ok(()) => {
                self.in_force = Some(Footprint::of(rs));
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

    /// Replaces the table with the whole ruleset (encoded now, unless a restore of the same
    /// change encoded it already).
    fn replace_whole(&mut self, rs: &Ruleset, generation: u64) -> Result<(), String> {
        self.encode_whole(rs, generation)?;
        let (_, commands, batch) = self.whole.as_ref().expect("just encoded");
        let (outcome, others) = send(&self.kernel, self.watch.as_ref(), commands, Some(batch));
        if others {
            self.verified = None;
            self.next_check = Instant::now();
        }
        outcome.map_err(|e| e.to_string())
    }

    /// Encodes the whole table for this change, unless it is already.
    fn encode_whole(&mut self, rs: &Ruleset, generation: u64) -> Result<(), String> {
        if self.whole.as_ref().is_none_or(|(g, _, _)| *g != generation) {
            let commands = script::full_commands(rs);
            let batch = encode(&commands);
            self.whole = Some((generation, commands, batch));
        }
        Ok(())
    }

    /// Computes the listing the ruleset should have (once per change: the periodic comparison
    /// and a restore share it).
    pub fn expect(&mut self, rs: &Ruleset, generation: u64) -> Result<&Listing, String> {
        if self.expected.as_ref().is_none_or(|(g, _)| *g != generation) {
            let listing = self.expectation.listing(&script::full_commands(rs)).map_err(|e| e.to_string())?;
            self.expected = Some((generation, listing));
        }
        Ok(&self.expected.as_ref().expect("just computed").1)
    }

    /// How the kernel's table differs from the ruleset (`None`: it does not).
    fn drift(&mut self, rs: &Ruleset, generation: u64) -> Result<Option<Drifted>, String> {
        // A missing table (a flush) is restored whole at once: nothing to compare.
        let Some(have) = self.kernel.listing().map_err(|e| e.to_string())? else {
            return Ok(Some(Drifted { notes: vec!["table inet palisade missing".into()], missing: None }));
        };
        let d = have.drift(self.expect(rs, generation)?);
        if d.notes.is_empty() {
            return Ok(None);
        }
        let missing = (!d.missing_elements.is_empty()).then_some(d.missing_elements);
        Ok(Some(Drifted { notes: d.notes, missing }))
    }
}

/// Sends one transaction, a big one unheard by the watch; whether anyone else changed a table
/// meanwhile.
fn send<K: Kernel>(
    kernel: &K,
    watch: Option<&Watch>,
    commands: &[Command],
    batch: Option<&Batch>,
) -> (Result<(), KernelError>, bool) {
    let run = || kernel.apply(commands, batch);
    match watch.filter(|_| commands.len() > UNHEARD) {
        Some(w) => w.unheard(|| kernel.generation(), run),
        None => (run(), false),
    }
}
