//! Transactions sent to the kernel over netlink: the commands of a [`crate::script`],
//! encoded by [`crate::render::netlink`] as one nf_tables batch.

use nix::libc;

use crate::ir::Command;
use crate::netlink::{Batch, NetlinkError, Socket};
pub use crate::render::netlink::encode;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("the kernel refused the transaction (nothing was changed): {command}: {reason}")]
    Refused { command: String, reason: String },
}

/// The node's nf_tables, reached through one netlink socket in its network namespace.
pub struct Kernel {
    socket: Socket,
}

impl Kernel {
    pub fn open(netns: Option<&str>) -> Result<Kernel, KernelError> {
        Ok(Kernel { socket: Socket::open(netns)? })
    }

    /// The netlink port id of the socket this kernel handle changes the table through.
    pub fn portid(&self) -> Result<u32, KernelError> {
        Ok(self.socket.portid()?)
    }

    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }

    /// Applies the commands as one transaction: all of them or, on any error, none.
    pub fn apply(&self, commands: &[Command]) -> Result<(), KernelError> {
        // Nothing to change (a file saved as it was): no transaction at all.
        if commands.is_empty() {
            return Ok(());
        }
        self.apply_encoded(commands, &encode(commands))
    }

    /// [`Kernel::apply`] with the commands already encoded (`batch` is `encode(commands)`): a
    /// table kept encoded ahead goes out without the time encoding takes.
    pub fn apply_encoded(&self, commands: &[Command], batch: &Batch) -> Result<(), KernelError> {
        let mut replays = 0;
        loop {
            match self.socket.transact(batch.clone()) {
                // A missing expression module: the kernel loads it and asks for the batch again.
                Err(NetlinkError::Refused { errno, .. }) if errno == libc::EAGAIN && replays < 3 => replays += 1,
                // Only a refusal pays for rendering the command it names.
                Err(NetlinkError::Refused { owner, reason, .. }) => {
                    let command = owner.map_or_else(|| "the batch".into(), |i| brief(&commands[i].to_string()));
                    return Err(KernelError::Refused { command, reason });
                }
                other => return Ok(other?),
            }
        }
    }
}

/// A command as a refusal names it: the first 200 characters.
fn brief(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{} ...", &text[..at]),
        None => text.to_string(),
    }
}
