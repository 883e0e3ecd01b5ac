//! Palisade's engine: Kubernetes network policy semantics with no I/O beyond parsing.
//!
//! [`build`] turns Kubernetes objects into a validated [`cluster::Cluster`];
//! [`verdict`] decides one connection with a trace; [`index`] decides all pod pairs at once
//! with bitsets. Both must agree, and property tests hold them to it.

pub mod build;
pub mod calico;
pub mod cluster;
pub mod expr;
pub mod field;
pub mod index;
pub mod label;
pub mod peer;
pub mod policy;
pub mod port;
pub mod selector;
pub mod service;
pub mod verdict;
