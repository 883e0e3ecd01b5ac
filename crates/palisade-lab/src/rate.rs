//! New connections per second from one lab namespace to a listener in another: what a ruleset
//! costs per new connection (established packets stop at the conntrack rule, so only each
//! connection's first packet walks the policy chains).
//!
//! Bounded in count and in time: at most [`RateOptions::connections`] attempts, none started
//! after [`RateOptions::max`], each waiting at most [`RateOptions::timeout`]. Each connection is
//! closed with a reset (linger 0) as soon as it is established, so that no TIME_WAIT state
//! holds on to the client's ports and the next connection is new to conntrack again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::traffic::in_netns;

/// How many connections a rate probe makes, and for how long at most.
#[derive(Clone, Debug)]
pub struct RateOptions {
    /// Connection attempts in all (the probe's count bound).
    pub connections: usize,
    /// No attempt starts after this long (the probe's time bound).
    pub max: Duration,
    /// How long one connect may wait for its answer before it counts as failed.
    pub timeout: Duration,
    /// Connections in flight at once, each from a thread of its own.
    pub workers: usize,
}

impl Default for RateOptions {
    fn default() -> Self {
        RateOptions {
            connections: 10_000,
            max: Duration::from_secs(5),
            timeout: Duration::from_millis(500),
            workers: 1,
        }
    }
}

/// What a rate probe saw.
#[derive(Clone, Debug, PartialEq)]
pub struct Rate {
    /// Connections established (the server's SYN-ACK came back).
    pub connected: usize,
    /// Attempts refused, reset or unanswered within the timeout.
    pub failed: usize,
    /// Wall time from the first attempt to the last answer, in seconds.
    pub seconds: f64,
    /// Why the first failed attempt failed (the OS error), if one did.
    pub first_error: Option<String>,
}

impl Rate {
    /// Established connections per second of wall time (0 when nothing was measured).
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.connected as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Connects from namespace `netns` to `dst` over TCP as fast as `opts.workers` threads can, up
/// to `opts.connections` attempts or `opts.max`; each connection is reset right after it is
/// established. Errors: a namespace that cannot be entered, or a thread that panicked.
pub fn connect_rate(netns: &str, dst: SocketAddr, opts: &RateOptions) -> std::io::Result<Rate> {
    let started = Arc::new(AtomicUsize::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None));
    let begin = Instant::now();
    let deadline = begin + opts.max;
    let workers: Vec<_> = (0..opts.workers.max(1))
        .map(|_| {
            let (netns, opts) = (netns.to_string(), opts.clone());
            let (started, connected, failed) = (started.clone(), connected.clone(), failed.clone());
            let first_error = first_error.clone();
            std::thread::spawn(move || {
                in_netns(&netns, move || {
                    while started.fetch_add(1, Ordering::Relaxed) < opts.connections && Instant::now() < deadline {
                        match connect_and_reset(dst, opts.timeout) {
                            Ok(()) => connected.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e.to_string());
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| std::io::Error::other("rate probe thread panicked"))??;
    }
    let first_error = first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
    Ok(Rate {
        connected: connected.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        seconds: begin.elapsed().as_secs_f64(),
        first_error,
    })
}

/// Connection rates to several targets measured side by side: batches of `batch` connections
/// to each target in turn (every other round in reverse order), `batches` times, so that whatever else the machine does weighs on
/// every target alike. Returns each target's rate per batch (connections established per
/// second); a batch whose attempts all failed counts as 0. Bounded: at most
/// `batches * batch * targets.len()` attempts, each waiting at most `timeout`.
pub fn paired_rates(
    netns: &str,
    targets: &[SocketAddr],
    batch: usize,
    batches: usize,
    timeout: Duration,
) -> std::io::Result<Vec<Vec<f64>>> {
    let targets = targets.to_vec();
    in_netns(netns, move || {
        let mut rates = vec![Vec::with_capacity(batches); targets.len()];
        for round in 0..batches {
            // Every other round in reverse (A B, B A, ...): neither target always goes first.
            let mut order: Vec<usize> = (0..targets.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let dst = &targets[i];
                let t = Instant::now();
                let ok = (0..batch).filter(|_| connect_and_reset(*dst, timeout).is_ok()).count();
                rates[i].push(ok as f64 / t.elapsed().as_secs_f64());
            }
        }
        rates
    })
}

/// A listener for rate probes in namespace `netns` on `addr`: it accepts and closes at once,
/// with a backlog deep enough (4,096) that a burst of connections never meets a full accept
/// queue (the kernel drops SYNs then, and the probe would measure its retransmission timer).
/// Runs until the process ends; the namespace's removal takes the socket with it.
pub fn serve(netns: &str, addr: SocketAddr) -> std::io::Result<()> {
    let listener = in_netns(netns, move || -> std::io::Result<std::net::TcpListener> {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(4096)?;
        Ok(socket.into())
    })??;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    Ok(())
}

/// One connection: established within `timeout`, then closed with a reset.
fn connect_and_reset(dst: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(dst), socket2::Type::STREAM, None)?;
    socket.connect_timeout(&dst.into(), timeout)?;
    // Linger 0: close sends a reset and leaves no TIME_WAIT behind.
    socket.set_linger(Some(Duration::ZERO))
}
