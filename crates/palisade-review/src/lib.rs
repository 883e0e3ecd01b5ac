//! Reviewing a policy set for people and for CI: pods grouped into workloads, connectivity
//! over every port that matters, lint findings, the difference between two sets, what a pod
//! can reach, and pictures of it all. Pure computation on the engine's model; no I/O.

#![forbid(unsafe_code)]

pub mod change;
pub mod connectivity;
pub mod diff;
pub mod graph;
pub mod layout;
pub mod lint;
pub mod map;
pub mod one_pod;
pub mod outside;
pub mod overview;
pub mod probe;
pub mod reach;
pub mod report;
pub mod workload;
