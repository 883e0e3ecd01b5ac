//! Palisade's nftables adapter: lower the engine's model to a typed nftables IR (one table),
//! render it as an atomic `nft -f` transaction or as one netlink batch (whole, or as the delta
//! from the table in force), apply it.

pub mod ir;
pub mod kernel;
mod membership;
pub mod monitor;
pub mod netlink;
pub mod own_node;
pub mod owner;
pub mod render;
pub mod ruleset;
pub mod script;
pub mod unenforced;

pub use ruleset::{compile, Compiled, NeedsFullCompile, Options, Ruleset, Stats};
