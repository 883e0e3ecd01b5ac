//! Helpers for the root tests that run the agent: scratch network namespaces, the agent as a
//! child process with its log in a file, the e2e model built as a lab, and probes.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use palisade_core::port::Protocol;
use palisade_lab::{traffic, Topology};

/// Whether lab tests run here (root, unless PALISADE_SKIP_LAB is set).
pub fn lab_possible() -> bool {
    if std::env::var_os("PALISADE_SKIP_LAB").is_some() {
        eprintln!("PALISADE_SKIP_LAB is set: lab tests skipped");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc_geteuid() } == 0;
    assert!(root, "the lab tests need root (network namespaces, nftables); run as root or set PALISADE_SKIP_LAB=1");
    true
}

/// One lab at a time: they share the machine's namespace list and its two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `None` when lab tests are skipped; otherwise the lock that runs labs one at a time.
pub fn lab_slot() -> Option<std::sync::MutexGuard<'static, ()>> {
    lab_possible().then(|| SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// A scratch network namespace (`pal-test-<tag>-<pid>`), removed when dropped.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("pal-test-{tag}-{}", std::process::id());
        let ok = std::process::Command::new("ip").args(["netns", "add", &name]).status().unwrap().success();
        assert!(ok, "ip netns add {name}");
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// `nft list table inet palisade` in a namespace (empty when there is no table).
pub fn table(netns: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", netns, "nft", "list", "table", "inet", "palisade"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `nft ARGS` in a namespace; whether it succeeded.
pub fn nft(netns: &str, args: &[&str]) -> bool {
    let mut c = std::process::Command::new("ip");
    c.args(["netns", "exec", netns, "nft"]).args(args);
    c.status().unwrap().success()
}

/// Waits (up to `limit`) until `f` holds; panics naming `what` otherwise. Returns how long it took.
pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// `GET path` over HTTP/1.1 (the agent's port): (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A scratch directory under the system's temp dir, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("palisade-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a file the safe way: a hidden temporary file in the same directory, then a rename.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The agent under test, its log in a file; killed however the test ends.
pub struct Agent {
    pub child: std::process::Child,
    log: PathBuf,
}

impl Agent {
    pub fn start(source: &Path, netns: &str, extra: &[&str], log: PathBuf) -> Agent {
        let file = std::fs::File::create(&log).unwrap();
        let child = super::palisade()
            .args(["agent", "--source", source.to_str().unwrap(), "--netns", netns])
            .args(extra)
            .stderr(file)
            .spawn()
            .unwrap();
        Agent { child, log }
    }
    /// Any command that ends up running the agent (`ip netns exec ... setpriv ... palisade`),
    /// its stderr in `log`.
    pub fn spawn(mut cmd: std::process::Command, log: PathBuf) -> Agent {
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd.stderr(file).spawn().unwrap();
        Agent { child, log }
    }
    /// The exit code, waiting up to `limit` (panics, with the log, when still running).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(start.elapsed() < limit, "still running after {limit:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// [`wait_for`], showing the agent's log when it times out.
    pub fn wait_for(&self, what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < limit, "timed out waiting for {what}; the agent's log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The e2e model (namespaces x, y, z; pods a, b, c) built as a lab, each pod serving 80/TCP.
pub struct ModelLab {
    pub topo: Topology,
    /// `ns/pod` of each lab pod, and its address.
    pub pods: Vec<(String, IpAddr)>,
}

impl ModelLab {
    pub fn build() -> ModelLab {
        let model = super::repo().join("tests/conformance/model.yaml");
        let load = palisade_load::load_paths(&[model], &Default::default()).unwrap();
        let cluster = load.cluster.expect("the model loads");
        let ids = cluster.pods_sorted();
        let layout: Vec<_> = ids.iter().map(|&p| (cluster.pods[p].ips.clone(), false)).collect();
        let topo = Topology::build(&layout).unwrap();
        for lab_pod in &topo.pods {
            traffic::serve(&lab_pod.netns, &[(80, Protocol::TCP)], false, None).unwrap();
        }
        let pods = ids.iter().map(|&p| (cluster.pod_key(p), cluster.pods[p].ips[0])).collect();
        ModelLab { topo, pods }
    }

    fn at(&self, key: &str) -> usize {
        self.pods.iter().position(|(k, _)| k == key).unwrap_or_else(|| panic!("no pod {key}"))
    }

    /// Whether `from` reaches `to` on 80/TCP within `timeout`.
    pub fn probe(&self, from: &str, to: &str, timeout: Duration) -> bool {
        let (s, d) = (self.at(from), self.at(to));
        traffic::probe(&self.topo.pods[s].netns, None, self.pods[d].1, 80, Protocol::TCP, timeout).unwrap()
    }
}

/// Probes one connection again and again on a thread until stopped: (probes, reached).
pub struct Prober {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<(usize, usize)>,
}

impl Prober {
    /// At most `max` probes, `pause` apart; each waits `timeout` before it counts as dropped.
    pub fn start(
        lab: std::sync::Arc<ModelLab>,
        from: &str,
        to: &str,
        timeout: Duration,
        pause: Duration,
        max: usize,
    ) -> Prober {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, from, to) = (stop.clone(), from.to_string(), to.to_string());
        let handle = std::thread::spawn(move || {
            let (mut probes, mut reached) = (0, 0);
            while probes < max && !flag.load(std::sync::atomic::Ordering::SeqCst) {
                probes += 1;
                reached += usize::from(lab.probe(&from, &to, timeout));
                std::thread::sleep(pause);
            }
            (probes, reached)
        });
        Prober { stop, handle }
    }
    pub fn finish(self) -> (usize, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}
