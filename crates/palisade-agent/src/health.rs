//! The agent's one HTTP port (`--listen ADDR:PORT`): `/livez` (the loop's heartbeat only, so
//! losing the API server never restarts the agent), `/readyz` (whole view and last apply
//! succeeded; 503 naming what fails) and `/metrics` (Prometheus text, prometheus-client).
//! Served by hyper (already in the tree through kube) on a thread of its own, so a slow
//! compile never delays a probe's answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A metric's `kind` label: the API kind (`Pod`, `NetworkPolicy`), for the Kubernetes source
/// `apiVersion Kind` (`v1 Pod`, `projectcalico.org/v3 NetworkPolicy`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

impl KindLabel {
    pub fn of(kind: impl ToString) -> KindLabel {
        KindLabel { kind: kind.to_string() }
    }
}

/// Everything `/metrics` shows. Durations are in seconds.
pub struct Metrics {
    /// One nf_tables transaction of a change: compile excluded, sending and the kernel's answer
    /// included (`palisade_apply_duration_seconds`).
    pub apply_duration: Histogram,
    pub apply_failures: Counter,
    /// From the agent receiving a change (watch event, file event) to the kernel holding it.
    pub event_to_kernel: Histogram,
    pub objects: Family<KindLabel, Gauge>,
    /// Objects that do not validate (a changed one keeps its last good version, a new one is
    /// left out).
    pub refused: Family<KindLabel, Gauge>,
    pub enforced_pods: Gauge,
    pub chains: Gauge,
    pub rules: Gauge,
    pub set_elements: Gauge,
    /// Differences a full compile found after object-path changes, and table restores.
    pub self_check_mismatches: Counter,
    pub table_restores: Gauge,
    /// Failed lists or watches per kind (each is retried with backoff), and (re)lists.
    pub watch_restarts: Family<KindLabel, Counter>,
    pub relists: Family<KindLabel, Counter>,
    /// Events written on refused objects, and Events the API server did not take.
    pub refusal_events: Counter,
    pub refusal_event_failures: Counter,
    /// Conntrack entries deleted because their address changed hands.
    pub conntrack_deleted: Counter,
}

fn seconds() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    fn new() -> (Metrics, Registry) {
        let m = Metrics {
            apply_duration: seconds(),
            apply_failures: Counter::default(),
            event_to_kernel: seconds(),
            objects: Family::default(),
            refused: Family::default(),
            enforced_pods: Gauge::default(),
            chains: Gauge::default(),
            rules: Gauge::default(),
            set_elements: Gauge::default(),
            self_check_mismatches: Counter::default(),
            table_restores: Gauge::default(),
            watch_restarts: Family::default(),
            relists: Family::default(),
            refusal_events: Counter::default(),
            refusal_event_failures: Counter::default(),
            conntrack_deleted: Counter::default(),
        };
        let mut r = Registry::with_prefix("palisade");
        r.register("apply_duration_seconds", "Time to send one change to nf_tables", m.apply_duration.clone());
        r.register("apply_failures", "Transactions the kernel refused", m.apply_failures.clone());
        r.register(
            "event_to_kernel_seconds",
            "Time from a change reaching the agent to the kernel enforcing it",
            m.event_to_kernel.clone(),
        );
        r.register("objects", "Objects held, per kind", m.objects.clone());
        r.register("refused_objects", "Objects that do not validate, per kind", m.refused.clone());
        r.register("enforced_pods", "Pods whose traffic a group chain decides", m.enforced_pods.clone());
        r.register("chains", "Chains in the table", m.chains.clone());
        r.register("rules", "Rules in the table", m.rules.clone());
        r.register("set_elements", "Set and map elements in the table", m.set_elements.clone());
        r.register(
            "self_check_mismatches",
            "Differences between the object paths and a full compile",
            m.self_check_mismatches.clone(),
        );
        r.register("table_restores", "Times the table was restored after someone changed it", m.table_restores.clone());
        r.register("watch_restarts", "Failed lists or watches per kind (each retried)", m.watch_restarts.clone());
        r.register("relists", "Completed lists and relists per kind", m.relists.clone());
        r.register("refusal_events", "Events written on refused objects", m.refusal_events.clone());
        r.register(
            "refusal_event_failures",
            "Events on refused objects the API server did not take",
            m.refusal_event_failures.clone(),
        );
        r.register(
            "conntrack_deleted",
            "Conntrack entries deleted because their pod went or its address changed hands",
            m.conntrack_deleted.clone(),
        );
        (m, r)
    }

    /// What the table holds now.
    pub fn in_force(&self, enforced_pods: usize, stats: &palisade_nft::Stats) {
        let g = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.enforced_pods.set(g(enforced_pods));
        self.chains.set(g(stats.chains));
        self.rules.set(g(stats.rules));
        self.set_elements.set(g(stats.set_elements));
    }

    /// Sets a per-kind gauge family to exactly these counts (kinds absent now go).
    pub fn counts(family: &Family<KindLabel, Gauge>, counts: impl IntoIterator<Item = (String, usize)>) {
        family.clear();
        for (kind, n) in counts {
            family.get_or_create(&KindLabel { kind }).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// A loop that has not turned for this long (and for three of its wait intervals) is not live.
const LIVE_WITHIN: Duration = Duration::from_secs(30);

/// What the port serves, shared between the loop and the server thread.
pub struct Health {
    beat: Mutex<Instant>,
    live_within: Duration,
    /// Why the agent is not ready (none: ready).
    unready: Mutex<Vec<String>>,
    pub metrics: Metrics,
    registry: Registry,
}

impl Health {
    /// `interval`: the loop's longest wait between turns.
    pub fn new(interval: Duration) -> Arc<Health> {
        let (metrics, registry) = Metrics::new();
        Arc::new(Health {
            beat: Mutex::new(Instant::now()),
            live_within: LIVE_WITHIN.max(interval * 3),
            unready: Mutex::new(vec!["starting".into()]),
            metrics,
            registry,
        })
    }

    /// The loop turned.
    pub fn beat(&self) {
        *self.beat.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Why the agent is not ready, one reason a line (empty: ready).
    pub fn set_unready(&self, reasons: Vec<String>) {
        *self.unready.lock().unwrap_or_else(|e| e.into_inner()) = reasons;
    }

    /// One transaction sent: how long it took, whether the kernel took it, and when each change
    /// it carries reached the agent.
    pub fn applied(&self, ok: bool, took: Duration, received: &[Instant]) {
        self.metrics.apply_duration.observe(took.as_secs_f64());
        if !ok {
            self.metrics.apply_failures.inc();
            return;
        }
        for t in received {
            self.metrics.event_to_kernel.observe(t.elapsed().as_secs_f64());
        }
    }

    /// The answer to one request: (status, body).
    pub fn answer(&self, path: &str) -> (StatusCode, String) {
        match path {
            "/livez" => {
                let since = self.beat.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
                if since <= self.live_within {
                    (StatusCode::OK, "ok\n".into())
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("the agent's loop has not turned for {} s\n", since.as_secs()),
                    )
                }
            }
            "/readyz" => {
                let unready = self.unready.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if unready.is_empty() {
                    (StatusCode::OK, "ok\n".into())
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, unready.iter().map(|r| format!("{r}\n")).collect())
                }
            }
            "/metrics" => {
                let mut out = String::new();
                match prometheus_client::encoding::text::encode(&mut out, &self.registry) {
                    Ok(()) => (StatusCode::OK, out),
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
                }
            }
            _ => (StatusCode::NOT_FOUND, "not found: /livez, /readyz, /metrics\n".into()),
        }
    }
}

/// Why the port could not be served.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ListenError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Binds `addr` now (so a taken port is an error at start) and serves it on a thread; returns
/// the bound address (port 0 picks a free one).
pub fn serve(addr: SocketAddr, health: Arc<Health>) -> Result<SocketAddr, ListenError> {
    let err = |source| ListenError { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(err)?;
    std::thread::spawn(move || runtime.block_on(accept(listener, health)));
    Ok(bound)
}

async fn accept(listener: std::net::TcpListener, health: Arc<Health>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let health = health.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (status, body) = health.answer(req.uri().path());
                let mut res = Response::new(Full::new(Bytes::from(body)));
                *res.status_mut() = status;
                async move { Ok::<_, Infallible>(res) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}
