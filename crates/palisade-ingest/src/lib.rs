//! Palisade's way in: Kubernetes and Calico API objects become the engine's model.
//!
//! This crate owns the API types (k8s-openapi's and [`calico::resource`]'s) so that
//! `palisade-core` depends on neither. [`object`] names the kinds read; [`kubernetes`] and
//! [`calico`] validate each API's objects as its API server does and compile them;
//! [`store::Store`] is the way in (`apply`/`delete`, then `finish`; a batch is "apply all, then
//! finish"); [`batch::build`] turns a whole set into a [`palisade_core::cluster::Cluster`] (any
//! error: no cluster); [`patch`] holds the pod and policy shortcuts the store takes.

#![forbid(unsafe_code)]

pub mod batch;
pub mod calico;
pub mod clusterpolicy;
#[cfg(test)]
pub(crate) mod fixture;
pub mod kubernetes;
pub mod names;
pub mod object;
pub mod patch;
pub mod store;

pub use batch::build;
pub use kubernetes::stored_pod::StoredPod;
pub use object::{count_kinds, BuildOptions, Input, Object};
