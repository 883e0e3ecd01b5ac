//! The kernel as the agent sees it: transactions, the table's listing and the ruleset
//! generation. [`palisade_nft::kernel::Kernel`] (netlink) is the real one; [`Fake`] keeps
//! what it is sent in memory, so that refusal, restore and delta logic are tested without root.

use std::cell::RefCell;

use palisade_nft::kernel::{self as nft, KernelError};
use palisade_nft::monitor::{Expectation, Listing};
use palisade_nft::netlink::Batch;
use palisade_nft::script::Command;

/// What the agent needs of nf_tables in one network namespace.
pub trait Kernel {
    /// Applies the commands as one transaction: all of them or, on any error, none.
    /// `encoded`: the same commands encoded ahead (`palisade_nft::kernel::encode`).
    fn apply(&self, commands: &[Command], encoded: Option<&Batch>) -> Result<(), KernelError>;
    /// The table as the kernel holds it (`None`: there is no table).
    fn listing(&self) -> Result<Option<Listing>, KernelError>;
    /// The namespace's ruleset generation: it moves with every committed transaction.
    fn generation(&self) -> Result<u32, KernelError>;
}

impl Kernel for nft::Kernel {
    fn apply(&self, commands: &[Command], encoded: Option<&Batch>) -> Result<(), KernelError> {
        match encoded {
            Some(batch) => nft::Kernel::apply_encoded(self, commands, batch),
            None => nft::Kernel::apply(self, commands),
        }
    }
    fn listing(&self) -> Result<Option<Listing>, KernelError> {
        nft::Kernel::listing(self)
    }
    fn generation(&self) -> Result<u32, KernelError> {
        nft::Kernel::generation(self)
    }
}

/// A kernel in memory: the table is the whole ruleset it was last given plus the deltas since,
/// listed as [`Expectation`] lists commands; transactions can be refused on demand.
#[derive(Default)]
pub struct Fake {
    state: RefCell<FakeState>,
}

#[derive(Default)]
struct FakeState {
    /// Every transaction the kernel committed, in order.
    committed: Vec<Vec<Command>>,
    /// The commands that make up the table now (`None`: no table).
    table: Option<Vec<Command>>,
    /// Transactions to refuse before committing again.
    refuse: usize,
    generation: u32,
}

impl Fake {
    pub fn new() -> Fake {
        Fake::default()
    }

    /// A kernel that already holds a table (a restart finds one in force).
    pub fn holding(commands: Vec<Command>) -> Fake {
        let fake = Fake::default();
        fake.state.borrow_mut().table = Some(commands);
        fake
    }

    /// Refuses the next `n` transactions, as the kernel refuses one whose delete names what is
    /// not there.
    pub fn refuse_next(&self, n: usize) {
        self.state.borrow_mut().refuse = n;
    }

    /// Someone else flushed the ruleset (`nft flush ruleset`).
    pub fn flush(&self) {
        let mut s = self.state.borrow_mut();
        s.table = None;
        s.generation += 1;
    }

    /// The transactions committed so far.
    pub fn committed(&self) -> Vec<Vec<Command>> {
        self.state.borrow().committed.clone()
    }

    /// Whether a table is there.
    pub fn has_table(&self) -> bool {
        self.state.borrow().table.is_some()
    }
}

impl Kernel for Fake {
    fn apply(&self, commands: &[Command], _: Option<&Batch>) -> Result<(), KernelError> {
        let mut s = self.state.borrow_mut();
        if s.refuse > 0 {
            s.refuse -= 1;
            let command = commands.first().map_or_else(String::new, Command::to_string);
            return Err(KernelError::Refused { command, reason: "refused by the fake kernel".into() });
        }
        if commands.is_empty() {
            return Ok(());
        }
        let whole = matches!(commands.first(), Some(Command::ReplaceTable));
        match (&mut s.table, whole) {
            (table, true) => *table = Some(commands.to_vec()),
            (Some(table), false) => table.extend(commands.iter().cloned()),
            (None, false) => {
                return Err(KernelError::Refused { command: commands[0].to_string(), reason: "no such table".into() })
            }
        }
        s.committed.push(commands.to_vec());
        s.generation += 1;
        Ok(())
    }

    fn listing(&self) -> Result<Option<Listing>, KernelError> {
        let s = self.state.borrow();
        s.table.as_ref().map(|commands| Expectation::default().listing(commands)).transpose()
    }

    fn generation(&self) -> Result<u32, KernelError> {
        Ok(self.state.borrow().generation)
    }
}
