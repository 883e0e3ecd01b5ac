//! Palisade's engine: Kubernetes and Calico network policy semantics, with no I/O.
//!
//! Two layers, each importing only the one below it:
//! - [`model`]: the cluster and its policies as data (labels, selectors, ports, rules,
//!   policies, endpoints, field paths and problems). It imports nothing above it.
//! - [`decide`]: deciding connections on the model. [`verdict`] decides one connection with a
//!   trace; [`index`] decides all pod pairs at once with bitsets. Both must agree, and property
//!   tests hold them to it.
//!
//! Objects of the Kubernetes and Calico APIs become this model in `palisade-ingest`; the
//! engine knows neither API's types. The modules of both layers are re-exported at the crate
//! root (`palisade_core::cluster`, `palisade_core::verdict`).

#![forbid(unsafe_code)]

pub mod decide;
pub mod model;

pub use decide::{index, matching, service, trace, verdict};
pub use model::{change, cluster, endpoint, expr, family, field, id, label, policy, port, rule};
