//! Deciding connections on the model: rule matching, one connection with a trace, all pod
//! pairs with bitsets, and Service DNAT in front of them.

pub mod index;
pub mod matching;
pub mod service;
pub mod trace;
pub mod verdict;
