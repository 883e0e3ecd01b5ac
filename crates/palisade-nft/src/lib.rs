//! Palisade's nftables adapter: lower the engine's model to a typed nftables IR (one table),
//! render it as an atomic `nft -f` transaction or as one netlink batch (whole, or as the delta
//! from the table in force), apply it.

mod compiled;
pub mod cost;
mod incremental;
pub mod ir;
pub mod kernel;
pub mod lower;
mod membership;
mod merge;
pub mod monitor;
pub mod netlink;
pub mod own_node;
pub mod owner;
pub mod render;
pub mod script;
mod sync;
pub mod table;
pub mod unenforced;

pub use compiled::{Compiled, Synced};
pub use lower::compile;
pub use sync::Delta;
pub use table::{Options, Ruleset, Stats};
