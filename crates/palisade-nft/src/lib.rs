//! Palisade's nftables adapter: compile the engine's decisions to one table, render it as an
//! atomic `nft -f` transaction (whole, or as the delta from the table in force), apply it.

pub mod bytecode;
pub mod kernel;
mod membership;
pub mod monitor;
pub mod netlink;
pub mod own_node;
pub mod owner;
pub mod ruleset;
pub mod script;
pub mod unenforced;

pub use ruleset::{compile, Compiled, NeedsFullCompile, Options, Ruleset, Stats};
