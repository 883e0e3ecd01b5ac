//! The table Palisade writes, as one value: named sets, group chains (typed rules) and verdict
//! map elements, plus the options it was compiled with. `script` turns it into the commands
//! of a transaction (adding the fixed base chains); [`crate::lower`] builds it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::ir::{NamedSet, Rule as NftRule};
use crate::own_node::OwnNode;

/// What a table is compiled for: which node's pods, audit or enforce, flow sets or none.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only pods scheduled to this node are enforced (all pods when `None`).
    pub node: Option<String>,
    /// Log what would be denied and drop nothing.
    pub audit: bool,
    /// Note every new connection in the flow sets (for the agent's flow log). Off by default:
    /// traffic that stays "new" to conntrack (one-way UDP) pays for it on every packet.
    pub record_flows: bool,
    /// Keep every Allow rule apart, one rule per policy rule and peer, instead of merging runs
    /// of Allow rules that differ only in their peers into one rule over the union of their
    /// peers (`crate::merge`). The design before the merge, kept so that the data plane
    /// benchmark can compare both in one run; off (merging) by default.
    pub unmerged: bool,
}

/// The whole table, in parts that can be compared for incremental updates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub sets: BTreeMap<String, NamedSet>,
    /// Group chains (name → rules); the base chains are the same for every ruleset
    /// (`script::full_commands` adds them).
    pub chains: BTreeMap<String, Vec<NftRule>>,
    /// Verdict maps: `egress_4` etc. → (address → chain).
    pub maps: BTreeMap<String, BTreeMap<IpAddr, String>>,
    /// A node's traffic to its own pods, accepted whatever the policies say.
    pub own_node: OwnNode,
    pub audit: bool,
    pub record_flows: bool,
}

/// Figures about a compiled ruleset.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub chains: usize,
    pub rules: usize,
    pub sets: usize,
    pub set_elements: usize,
}

impl Ruleset {
    pub fn stats(&self) -> Stats {
        Stats {
            chains: self.chains.len(),
            rules: self.chains.values().map(Vec::len).sum(),
            sets: self.sets.len(),
            set_elements: self.sets.values().map(|s| s.elements.len()).sum(),
        }
    }
}
