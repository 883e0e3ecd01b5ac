//! Palisade's Kubernetes adapter: reads a live cluster with kube-rs (rustls, no OpenSSL).
//!
//! - [`discover::served`]: which kinds this cluster serves (absent optional groups are not read;
//!   Calico's CRD group without its API server is [`SourceError::CalicoApiServerMissing`]).
//! - [`read::read`]: every served kind listed once (pages of 500), decoded and validated by the
//!   file loader's code, for the read-only commands.
//! - [`watch::watch`]: every served kind watched with kube-runtime's watcher (relist after 410
//!   Gone, bookmarks, backoff) as one stream of [`watch::Change`]s: one apply or delete per
//!   object, a relist as the exact diff of what came and went, a `Synced` barrier per kind;
//!   [`watch::watch_restartable`] also hands back a [`watch::Restart`] to resume a kind's
//!   watch at once (a consumer that knows it is served again need not wait out the backoff).
//! - [`events::Events`]: Warning Events on the objects the agent refuses.
//!
//! Objects are stripped of what the engine does not read before they are decoded ([`strip`]).

#![forbid(unsafe_code)]

pub mod connect;
pub mod decode;
pub mod discover;
pub mod events;
pub mod kinds;
pub mod read;
pub mod strip;
pub mod watch;

pub use connect::Target;
pub use decode::{Decoded, ObjectKey, Refused};
pub use kinds::{Kind, KINDS};
pub use watch::{Change, WatchError};

/// Why the cluster could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("no kubeconfig found: KUBECONFIG names no file and ~/.kube/config does not exist; give manifest paths, or --kubeconfig PATH")]
    NoKubeconfig,
    #[error("{path}: {source}")]
    Kubeconfig { path: String, source: kube::config::KubeconfigError },
    #[error("cannot use the in-cluster configuration: {0}")]
    InCluster(String),
    #[error("cannot make a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("API discovery failed: {}", message(.0).1)]
    Discovery(#[source] kube::Error),
    #[error("Calico's policies are stored in this cluster (crd.projectcalico.org/v1) but projectcalico.org/v3 is not served, so they cannot be read as written: install the Calico API server (Calico docs: \"Install the Calico API server\")")]
    CalicoApiServerMissing,
    #[error("cannot list {kind}: {message}")]
    List { kind: &'static Kind, code: Option<u16>, message: String },
}

/// The HTTP status (when the API server answered) and message of a client error.
pub fn message(e: &kube::Error) -> (Option<u16>, String) {
    match e {
        // kube-client reads a watch line that is no event as a `Status` when it can, and every
        // field of one is optional: an empty one means a malformed event, not an answer.
        kube::Error::Api(status) if status.code == 0 && status.message.is_empty() => {
            (None, "an event that does not decode (a malformed object)".into())
        }
        kube::Error::Api(status) => (Some(status.code), status.message.clone()),
        other => (None, other.to_string()),
    }
}
