//! The Kubernetes API (core, apps, batch, discovery, networking): objects validated as the API
//! server does and compiled to the engine's model.

pub(crate) mod meta;
pub mod networkpolicy;
pub(crate) mod pod;
pub mod port;
pub mod selector;
pub(crate) mod service;
pub mod stored_pod;
pub(crate) mod workload;
