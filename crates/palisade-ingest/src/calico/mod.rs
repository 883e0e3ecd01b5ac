//! Calico (projectcalico.org/v3): the resource types, validated like Calico's API server and
//! compiled into the same model as Kubernetes NetworkPolicies; conversion between the two.

pub mod convert;
pub mod policy;
pub mod resource;
pub(crate) mod rule;
pub mod selector;
pub mod sets;
pub mod tier;
