//! The cluster and its policies as data: what every other layer reads. Imports nothing above it.

pub mod change;
pub mod cluster;
pub mod endpoint;
pub mod expr;
pub mod family;
pub mod field;
#[cfg(test)]
pub(crate) mod fixture;
pub mod id;
pub mod label;
pub mod policy;
pub mod port;
pub mod rule;
