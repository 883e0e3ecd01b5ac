//! The cluster and its policies as data: what every other layer reads. Imports nothing above it.

pub mod change;
pub mod cluster;
pub mod endpoint;
pub mod expr;
pub mod field;
pub mod label;
pub mod peer;
pub mod policy;
pub mod port;
pub mod rule;
pub mod selector;
