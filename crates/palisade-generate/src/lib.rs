//! Writing policies so people do not have to: least privilege from observed traffic, and the
//! egress side of existing ingress policies.

#![forbid(unsafe_code)]

pub mod complement;
pub mod flow;
pub mod policy;
pub mod render;
pub mod resolve;
pub mod selector;
