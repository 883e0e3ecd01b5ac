//! A fake Kubernetes API server for Palisade's tests (never shipped): real HTTPS on loopback
//! with a throwaway CA and a bearer token, discovery, list (`limit`/`continue`,
//! `resourceVersion`, `resourceVersionMatch`), watch (from a resourceVersion, bookmarks,
//! `timeoutSeconds`, 410 Gone after compaction), label and field selectors, object writes
//! (Events among them, checked as the API server checks a new one), and RBAC from a ClusterRole manifest. Objects are plain JSON: the fake
//! knows no Palisade type.
//!
//! A test drives it through [`FakeApi`]: write and delete objects, compact the history, drop
//! every watch or expire it (410 mid-stream), fail or stall requests, take the server down and up, read the request log.

#![forbid(unsafe_code)]

mod discovery;
mod event;
mod objects;
pub mod rbac;
mod request;
pub mod resource;
pub mod select;
mod server;
mod status;
pub mod store;
pub mod tls;
mod watch;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use rbac::Rbac;
pub use resource::{Groups, Resource};
pub use server::Logged;

/// How the fake is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// The group versions served (discovery lists these; others are 404).
    pub groups: Groups,
    /// The ClusterRole the client's token is bound to; `None` allows everything.
    pub rbac: Option<Rbac>,
    /// How many changes the history keeps: a watch or an exact list from before them is 410 Gone.
    pub window: usize,
    /// How often a watch that asked for them gets a BOOKMARK.
    pub bookmark_every: Duration,
    /// The IPv4 address to listen on (its certificate names it too): 127.0.0.1 by default;
    /// a lab's node address when agents in other network namespaces must reach it.
    pub address: std::net::Ipv4Addr,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            groups: Groups::kubernetes(),
            rbac: None,
            window: 10_000,
            bookmark_every: Duration::from_secs(60),
            address: std::net::Ipv4Addr::LOCALHOST,
        }
    }
}

/// Injected failures.
#[derive(Default)]
struct Faults {
    /// Every request is answered with this status until the instant.
    fail: Option<(u16, Instant)>,
}

/// State the connection tasks share with the handle.
pub(crate) struct Shared {
    catalog: Vec<Resource>,
    groups: Groups,
    store: Mutex<store::Store>,
    /// Changed by [`FakeApi::set_rbac`] while clients run.
    rbac: Mutex<Option<Rbac>>,
    token: String,
    admin_token: String,
    user: String,
    faults: Mutex<Faults>,
    stalls: tokio::sync::watch::Sender<BTreeSet<String>>,
    drops: tokio::sync::watch::Sender<u64>,
    /// Bumped to send every open watch a 410 ERROR event mid-stream.
    expiries: tokio::sync::watch::Sender<u64>,
    log: Mutex<Vec<Logged>>,
    bookmark_every: Duration,
    addr: SocketAddr,
}

impl Shared {
    /// The catalog index of a served resource.
    fn find(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.catalog
            .iter()
            .position(|r| r.group == group && r.version == version && r.plural == plural && self.groups.serves(r))
    }

    fn current_rv(&self) -> u64 {
        self.store.lock().expect("store lock").rv
    }

    fn failing(&self) -> Option<u16> {
        let mut f = self.faults.lock().expect("faults lock");
        match f.fail {
            Some((code, until)) if Instant::now() < until => Some(code),
            Some(_) => {
                f.fail = None;
                None
            }
            None => None,
        }
    }

    async fn wait_unstalled(&self, plural: &str) {
        let mut rx = self.stalls.subscribe();
        while rx.borrow_and_update().contains(plural) {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on loopback: {0}")]
    Io(#[from] std::io::Error),
    #[error("{api_version} {kind} is not a resource the fake serves")]
    UnknownKind { api_version: String, kind: String },
}

/// A running fake API server and the handle that drives it. Dropping it stops the server.
pub struct FakeApi {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    tls: Arc<rustls::ServerConfig>,
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
    ca_pem: String,
}

/// The token the client's kubeconfig carries (subject to RBAC).
pub const TOKEN: &str = "palisade-test-token";
/// A token that bypasses RBAC, as `system:masters` does (for manual runs with kubectl).
pub const ADMIN_TOKEN: &str = "palisade-admin-token";
/// The user named in 403 messages: the agent's ServiceAccount in `deploy/`.
pub const USER: &str = "system:serviceaccount:palisade:palisade";

fn listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

impl FakeApi {
    /// Starts the server on `config.address` (127.0.0.1) at a free port, on its own runtime thread (so sync and
    /// async tests alike can drive it).
    pub fn start(config: Config) -> Result<Self, FakeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let tls = tls::make(config.address)?;
        let std_listener = std::net::TcpListener::bind((config.address, 0))?;
        let addr = std_listener.local_addr()?;
        drop(std_listener);
        let catalog = resource::catalog();
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::new(catalog.len(), config.window)),
            catalog,
            groups: config.groups,
            rbac: Mutex::new(config.rbac),
            token: TOKEN.into(),
            admin_token: ADMIN_TOKEN.into(),
            user: USER.into(),
            faults: Mutex::new(Faults::default()),
            stalls: tokio::sync::watch::Sender::new(BTreeSet::new()),
            drops: tokio::sync::watch::Sender::new(0),
            expiries: tokio::sync::watch::Sender::new(0),
            log: Mutex::new(Vec::new()),
            bookmark_every: config.bookmark_every,
            addr,
        });
        let api =
            FakeApi { shared, runtime: Some(runtime), tls: tls.server, accept: Mutex::new(None), ca_pem: tls.ca_pem };
        api.up()?;
        Ok(api)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("running")
    }

    /// `https://<address>:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.shared.addr)
    }

    /// The CA certificate (PEM) that signed the server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes `ca.crt` and a kubeconfig (context `fake`, the client token) into `dir`; returns
    /// the kubeconfig's path.
    pub fn write_kubeconfig(&self, dir: &Path) -> std::io::Result<std::path::PathBuf> {
        let ca = dir.join("ca.crt");
        std::fs::write(&ca, &self.ca_pem)?;
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: palisade\n  user:\n    token: {TOKEN}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: palisade\n",
            self.url(),
            ca.display()
        );
        std::fs::write(&path, text)?;
        Ok(path)
    }

    fn index_of(&self, obj: &Value) -> Result<usize, FakeError> {
        let s = |k: &str| obj[k].as_str().unwrap_or_default().to_string();
        let (api_version, kind) = (s("apiVersion"), s("kind"));
        self.shared
            .catalog
            .iter()
            .position(|r| r.api_version() == api_version && r.kind == kind)
            .ok_or(FakeError::UnknownKind { api_version, kind })
    }

    /// Creates or replaces an object (by `apiVersion`, `kind`, namespace and name), served or
    /// not; returns it as stored (with its new resourceVersion).
    pub fn apply(&self, obj: Value) -> Result<Value, FakeError> {
        let idx = self.index_of(&obj)?;
        Ok(self.shared.store.lock().expect("store lock").put(idx, obj))
    }

    /// Deletes the object with this `apiVersion`, `kind`, namespace and name; whether it existed.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<bool, FakeError> {
        let probe = serde_json::json!({"apiVersion": api_version, "kind": kind});
        let idx = self.index_of(&probe)?;
        let key = (namespace.unwrap_or_default().to_string(), name.to_string());
        Ok(self.shared.store.lock().expect("store lock").delete(idx, &key).is_some())
    }

    /// Every stored object of a kind (Events the client created, say), as JSON.
    pub fn objects(&self, api_version: &str, kind: &str) -> Result<Vec<Value>, FakeError> {
        let idx = self.index_of(&serde_json::json!({"apiVersion": api_version, "kind": kind}))?;
        Ok(self.shared.store.lock().expect("store lock").objects[idx].values().cloned().collect())
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.current_rv()
    }

    /// Forgets the change history: watches and exact lists from an older resourceVersion get 410.
    pub fn compact(&self) {
        self.shared.store.lock().expect("store lock").compact();
    }

    /// Ends every open watch (clients resume from their last resourceVersion).
    pub fn drop_watches(&self) {
        self.shared.drops.send_modify(|g| *g += 1);
    }

    /// Sends every open watch an ERROR event with a 410 Status mid-stream, then ends it, as the
    /// API server does when a watcher falls behind its watch cache: clients must relist.
    pub fn expire_watches(&self) {
        self.shared.expiries.send_modify(|g| *g += 1);
    }

    /// Binds the client's token to another ClusterRole from now on (`None`: allow everything),
    /// as when its role is edited while clients run: requests it does not allow are 403; open
    /// watches go on until they end, as the API server's do.
    pub fn set_rbac(&self, rbac: Option<Rbac>) {
        *self.shared.rbac.lock().expect("rbac lock") = rbac;
    }

    /// Answers every request with `code` for `duration` (e.g. 500 for 30 s).
    pub fn fail_for(&self, code: u16, duration: Duration) {
        self.shared.faults.lock().expect("faults lock").fail = Some((code, Instant::now() + duration));
    }

    /// Holds every request on a resource (by plural, `pods`) until [`FakeApi::release`].
    pub fn stall(&self, plural: &str) {
        self.shared.stalls.send_modify(|s| {
            s.insert(plural.to_string());
        });
    }

    /// Lets stalled requests on `plural` go on.
    pub fn release(&self, plural: &str) {
        self.shared.stalls.send_modify(|s| {
            s.remove(plural);
        });
    }

    /// Takes the server down: the port is closed and every connection (watches included) is cut.
    pub fn down(&self) {
        if let Some(task) = self.accept.lock().expect("accept lock").take() {
            task.abort();
            let deadline = Instant::now() + Duration::from_secs(5);
            while !task.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    /// Brings the server up again on the same address.
    pub fn up(&self) -> Result<(), FakeError> {
        let mut accept = self.accept.lock().expect("accept lock");
        if accept.is_some() {
            return Ok(());
        }
        let _guard = self.runtime().enter();
        let listener = listener(self.shared.addr)?;
        *accept = Some(self.runtime().spawn(server::accept(self.shared.clone(), listener, self.tls.clone())));
        Ok(())
    }

    /// Every request so far (method, path, decoded query), oldest first.
    pub fn requests(&self) -> Vec<Logged> {
        self.shared.log.lock().expect("log lock").clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.shared.log.lock().expect("log lock").clear();
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
