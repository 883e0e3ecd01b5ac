//! Calico (projectcalico.org/v3): resources, validation, compiled rules.
//!
//! Calico policies compile into the same [`crate::policy::Policy`] model as Kubernetes
//! NetworkPolicies; the verdict and index evaluate both with Felix's tiered semantics.

pub mod compile;
pub mod convert;
pub mod resource;
pub mod rule;
