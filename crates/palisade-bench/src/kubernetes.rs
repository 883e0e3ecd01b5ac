//! `palisade-bench --kubernetes` (root): the agent in Kubernetes mode against the fake API
//! server serving the synthetic cluster. The real `palisade` binary (built next to this one)
//! runs in a scratch network namespace; figures: initial sync + first apply (start to
//! `/readyz` 200), event -> kernel latency for one pod change and one policy change (from the
//! write to the fake to the agent's transaction counter moving: the agent counts a transaction
//! once the kernel has acknowledged it), and the agent's resident memory.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palisade_ingest::Object;
use serde_json::Value;

/// The agent's peak and current resident memory (VmHWM, VmRSS), in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let (now, peak) = crate::enforcer::process_memory_mib(&pid.to_string());
    (peak, now)
}

/// `GET path` on the agent's port: (status, body); (0, "") when it does not answer yet.
fn get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return (0, String::new()) };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(s, "GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n").is_err() {
        return (0, String::new());
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn transactions(addr: &str) -> u64 {
    let body = get(addr, "/metrics").1;
    body.lines()
        .find_map(|l| l.strip_prefix("palisade_apply_duration_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Writes `change(i)` to the fake `n` times and times each until the kernel holds it.
fn latencies(api: &palisade_fakeapi::FakeApi, addr: &str, n: usize, change: impl Fn(usize) -> Value) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..n {
        let before = transactions(addr);
        let t = Instant::now();
        api.apply(change(i)).expect("the fake takes the change");
        while transactions(addr) == before {
            assert!(t.elapsed() < Duration::from_secs(30), "no transaction 30 s after a change");
            std::thread::sleep(Duration::from_micros(200));
        }
        out.push(t.elapsed().as_secs_f64());
        // Samples apart, as changes of a live cluster come (and past any quiet-time work).
        std::thread::sleep(Duration::from_millis(1200));
    }
    out.sort_by(f64::total_cmp);
    out
}

/// Runs the benchmark on `objects` (the synthetic cluster) with `samples` changes of each kind.
pub fn bench(objects: &[Object], samples: usize) {
    let items = match palisade_bench::to_list(objects) {
        Value::Object(mut m) => m.remove("items").and_then(|v| v.as_array().cloned()).unwrap_or_default(),
        _ => Vec::new(),
    };
    let pods = items.iter().filter(|o| o["kind"] == "Pod").count();
    let role = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/agent-rbac.yaml"))
        .expect("deploy/agent-rbac.yaml");
    let rbac = palisade_fakeapi::Rbac::from_manifest(&role, "palisade-agent").expect("the agent's role");
    let api = palisade_fakeapi::FakeApi::start(palisade_fakeapi::Config { rbac: Some(rbac), ..Default::default() })
        .expect("the fake API server starts");
    for o in &items {
        api.apply(o.clone()).expect("the fake takes the object");
    }
    let dir = std::env::temp_dir().join(format!("palisade-bench-kube-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let kubeconfig = api.write_kubeconfig(&dir).expect("kubeconfig");
    let scratch = palisade_lab::topology::ScratchNetns::new(format!("pal-bench-kube-{}", std::process::id()))
        .expect("cannot create a network namespace: the benchmark needs root");
    let binary = std::env::current_exe().expect("own path").with_file_name("palisade");
    let log = dir.join("agent.log");
    let t = Instant::now();
    let mut agent = Command::new(&binary)
        .args(["agent", "--source", "kubernetes", "--netns", &scratch.0, "--listen", "127.0.0.1:0"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stderr(std::fs::File::create(&log).expect("log"))
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {}: {e} (build it: cargo build --release -p palisade-cli)", binary.display())
        });
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("on http://").nth(1) {
            break rest.lines().next().unwrap_or_default().to_string();
        }
        assert!(t.elapsed() < Duration::from_secs(30), "the agent did not serve its port:\n{text}");
        std::thread::sleep(Duration::from_millis(5));
    };
    while get(&addr, "/readyz").0 != 200 {
        assert!(t.elapsed() < Duration::from_secs(120), "not ready after 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let synced = t.elapsed().as_secs_f64();
    let (peak_sync, _) = memory(agent.id());
    println!("kubernetes: {pods} pods, {} objects served by the fake", items.len());
    println!("sync + first apply   {synced:>9.3} s  (agent start to /readyz 200)");
    std::thread::sleep(Duration::from_millis(1500));

    let pod = items.iter().find(|o| o["kind"] == "Pod").expect("a pod").clone();
    let pod_times = latencies(&api, &addr, samples, |i| {
        let mut p = pod.clone();
        p["metadata"]["labels"]["app"] = format!("app-{}", i % 2 + 1000).into();
        p
    });
    let policy = items.iter().filter(|o| o["kind"] == "NetworkPolicy").nth(1).expect("a policy").clone();
    let policy_times = latencies(&api, &addr, samples, |i| {
        let mut p = policy.clone();
        p["spec"]["ingress"] = serde_json::json!([{"ports": [{"port": 7000 + i % 2, "protocol": "TCP"}]}]);
        p
    });
    for (what, times) in [("one pod change", &pod_times), ("one policy change", &policy_times)] {
        println!(
            "{what:<20} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  ({} samples, API write to kernel)",
            percentile(times, 0.5) * 1000.0,
            percentile(times, 0.99) * 1000.0,
            times[times.len() - 1] * 1000.0,
            times.len()
        );
    }
    let (peak, now) = memory(agent.id());
    println!(
        "agent memory         {now:>9.1} MiB resident, peak {peak:.1} MiB (peak {peak_sync:.1} MiB at first apply)"
    );
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
