//! Palisade's node agent as a library: keeps the kernel's Palisade table in step with a
//! directory of manifests, and the table as the agent left it.
//!
//! One turn of the loop ([`controller::Agent::turn`]), phase by phase: the kernel's table
//! (restored when someone else changed it; `table`) → the flow log → the files (only complete
//! ones; `palisade_load::directory`) → the objects that changed, invalid ones held back alone
//! (`palisade_load::watch`) → a patch of what they touch, or a full build and compile → one
//! nft transaction through a [`kernel::Kernel`]; and, once the directory is quiet, a full
//! compile as a self-check. The kernel is a trait: netlink in production, [`kernel::Fake`] in
//! tests that need no root. [`kubernetes`]: the same table kept in step with the API
//! server's objects instead of a directory; [`health`]: the `--listen` port (`/livez`,
//! `/readyz`, `/metrics`); [`conntrack`]: a gone pod's flows forgotten. `palisade agent` (the
//! binary) keeps the arguments.

#![forbid(unsafe_code)]

pub mod conntrack;
pub mod controller;
mod enforcement;
mod files;
mod flows;
pub mod health;
pub mod kernel;
pub mod kubernetes;
mod status;
mod table;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use controller::{dry_run, run, Agent};

/// What the agent enforces and how (the binary's arguments, as values).
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory of manifests (cluster and policies), watched for changes;
    /// [`kubernetes::SOURCE`] (`kubernetes`): the API server's objects instead.
    pub source: PathBuf,
    /// With the Kubernetes source: this kubeconfig (else the in-cluster ServiceAccount).
    pub kubeconfig: Option<PathBuf>,
    /// With the Kubernetes source: this kubeconfig context (else its current one).
    pub context: Option<String>,
    /// Serve /livez, /readyz and /metrics over HTTP on this address ([`health`]).
    pub listen: Option<SocketAddr>,
    /// Enforce only for pods scheduled to this node (spec.nodeName); all pods when `None`.
    pub node: Option<String>,
    /// Apply inside this network namespace (`ip netns` name) instead of the current one.
    pub netns: Option<String>,
    pub mode: Mode,
    /// Apply once and stop (the table stays).
    pub once: bool,
    /// How often to look again without a file event, and to read the flow sets.
    pub interval: Duration,
    /// A changed file whose writer was not seen closing it is taken once quiet this long.
    pub settle: Duration,
    /// How often to compare the kernel's table with the ruleset (the backstop to notifications).
    pub reconcile: Duration,
    /// After changes took the object path, compile everything again once quiet this long.
    pub verify_after: Duration,
    /// Namespace for manifests that name none.
    pub namespace: Option<String>,
    /// Append every new connection to this file as JSON lines (`-`: stdout).
    pub flow_log: Option<PathBuf>,
}

/// enforce: drop what policy denies; audit: log it (prefix "palisade audit deny") and drop nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Audit,
}

/// Why the agent did not start (or did not apply): already logged, with the details.
#[derive(Debug, thiserror::Error)]
#[error("refused: {0}")]
pub struct Refused(pub String);

/// The agent's log line (stderr, as a node agent's log is read).
pub fn log(msg: &str) {
    eprintln!("palisade agent: {msg}");
}
