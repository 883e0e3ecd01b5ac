//! Enforcer figures: compile and load the synthetic cluster's ruleset, one pod added and one
//! policy changed as deltas, and throughput between two lab pods with and without the table.
//! Needs root (network namespaces, nftables) for everything past compiling.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use palisade_core::cluster::Cluster;
use palisade_core::field::Nowhere;
use palisade_ingest::calico::resource::{GlobalNetworkSet, NetworkSetSpec};
use palisade_ingest::kubernetes::stored_pod::StoredPodStatus as PodStatus;
use palisade_ingest::store::{self, Store};
use palisade_ingest::{build, BuildOptions, Input, Object, StoredPod as Pod};
use palisade_lab::Topology;
use palisade_load::watch::Watched;
use palisade_nft::cost::{self, Footprint, Transaction, Work};
use palisade_nft::kernel::Kernel;
use palisade_nft::{compile, script, Compiled, Delta, Options, Ruleset};

const A: &str = "198.19.255.1";
const B: &str = "198.19.255.2";
const PORT: i32 = 5201;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn cluster(objects: &[Object]) -> Cluster {
    let inputs: Vec<Input> =
        objects.iter().cloned().map(|object| Input { object, locate: std::sync::Arc::new(Nowhere) }).collect();
    build(&inputs, &BuildOptions::default()).unwrap_or_else(|p| panic!("invalid bench cluster: {}", p.len()))
}

fn bench_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), "bench".to_string())])
}

/// Two iperf3 pods in ns-000 and the policies that let them talk on 5201 (TCP and UDP), so the
/// measured packets walk real group chains and sets.
pub fn bench_pods(objects: &mut Vec<Object>) {
    for (name, ip) in [("bench-a", A), ("bench-b", B)] {
        let mut pod = match objects.iter().find(|o| matches!(o, Object::Pod(_))) {
            Some(Object::Pod(p)) => p.clone(),
            _ => Pod::default(),
        };
        pod.metadata = ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns-000".into()),
            labels: Some(bench_labels()),
            ..Default::default()
        };
        pod.status = Some(PodStatus { pod_ip: Some(ip.into()), ..Default::default() });
        objects.push(Object::Pod(pod));
    }
    let sel = LabelSelector { match_labels: Some(bench_labels()), ..Default::default() };
    let peers = Some(vec![NetworkPolicyPeer { pod_selector: Some(sel.clone()), ..Default::default() }]);
    let ports = Some(
        ["TCP", "UDP"]
            .map(|p| NetworkPolicyPort { port: Some(IntOrString::Int(PORT)), protocol: Some(p.into()), end_port: None })
            .to_vec(),
    );
    objects.push(Object::NetworkPolicy(NetworkPolicy {
        metadata: ObjectMeta { name: Some("bench".into()), namespace: Some("ns-000".into()), ..Default::default() },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(sel),
            ingress: Some(vec![NetworkPolicyIngressRule { from: peers.clone(), ports: ports.clone() }]),
            egress: Some(vec![NetworkPolicyEgressRule { to: peers, ports }]),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
        }),
    }));
}

/// A Calico rule in the bench pods' ingress path that looks the source up in a set of
/// `elements` addresses.
pub fn add_big_set(objects: &mut Vec<Object>, elements: usize) {
    {
        // Every other address, so that no two elements merge into one interval.
        let nets = (0..elements).map(|i| {
            let n = 2 * i as u32;
            format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
        });
        objects.push(Object::CalicoGlobalNetworkSet(GlobalNetworkSet {
            metadata: ObjectMeta {
                name: Some("big".into()),
                labels: Some(BTreeMap::from([("set".into(), "big".into())])),
                ..Default::default()
            },
            spec: Some(NetworkSetSpec { nets: Some(nets.collect()) }),
            ..Default::default()
        }));
        let calico = serde_json::json!({
            "metadata": {"name": "bench-big-set", "namespace": "ns-000"},
            "spec": {"order": 10, "selector": "app == \"bench\"", "types": ["Ingress"],
                     "ingress": [{"action": "Deny", "source": {"selector": "set == \"big\"", "namespaceSelector": "global()"}}]}
        });
        objects.push(Object::CalicoNetworkPolicy(serde_json::from_value(calico).expect("policy")));
    }
}

fn nft_in(netns: &str, args: &[&str]) -> bool {
    script::nft(Some(netns)).args(args).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn timed_apply(text: &str, netns: &str) -> f64 {
    let t = Instant::now();
    script::apply(text, Some(netns)).expect("nft accepts the ruleset");
    t.elapsed().as_secs_f64()
}

/// Compile, load, and the two deltas.
pub fn load_figures(objects: &[Object], netns: &str) -> Ruleset {
    let c = cluster(objects);
    let t = Instant::now();
    let full = Compiled::new(&c, &Options::default());
    let compiled = t.elapsed().as_secs_f64();
    let rs = full.ruleset().clone();
    let text = palisade_nft::render::text::full(&rs);
    let s = rs.stats();
    println!(
        "nft compile       {compiled:>9.3} s  ({} pods enforced, {} chains, {} rules, {} sets, {} elements, {} KiB script)",
        full.enforced_pods(),
        s.chains,
        s.rules,
        s.sets,
        s.set_elements,
        text.len() / 1024
    );
    let loads: Vec<f64> = (0..3).map(|_| timed_apply(&text, netns)).collect();
    println!("nft -f load (full){:>9.3} s  (median of 3, one transaction)", median(loads));
    let kernel = Kernel::open(Some(netns)).expect("netlink");
    let commands = script::full_commands(&rs);
    let loads: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            kernel.apply(&commands).expect("the kernel takes the ruleset");
            t.elapsed().as_secs_f64()
        })
        .collect();
    let load = median(loads);
    println!(
        "netlink load      {load:>9.3} s  (median of 3, one transaction; compile + load {:.3} s)",
        compiled + load
    );
    // One pod more: a copy of pod-1 with a new name and address.
    let mut more = objects.to_vec();
    if let Some(Object::Pod(p)) =
        objects.iter().find(|o| matches!(o, Object::Pod(p) if p.metadata.name.as_deref() == Some("pod-1")))
    {
        let mut p = p.clone();
        p.metadata.name = Some("pod-new".into());
        p.status = Some(PodStatus { pod_ip: Some("198.19.254.1".into()), ..Default::default() });
        more.push(Object::Pod(p));
    }
    delta_figure("one pod added", &rs, &more, netns);
    // One policy changed: the first policy's first port moves.
    let mut changed = objects.to_vec();
    if let Some(Object::NetworkPolicy(np)) = changed.iter_mut().find(|o| matches!(o, Object::NetworkPolicy(n) if n.spec.as_ref().is_some_and(|s| s.ingress.as_ref().is_some_and(|i| i.iter().any(|r| r.ports.is_some()))))) {
        let spec = np.spec.as_mut().expect("spec");
        for r in spec.ingress.iter_mut().flatten() {
            for p in r.ports.iter_mut().flatten() {
                p.port = Some(IntOrString::Int(8181));
            }
        }
    }
    delta_figure("one policy changed", &rs, &changed, netns);
    agent_figure(objects, netns);
    rs
}

/// The agent's path from a file change to the kernel: the cluster as 50 files in a directory,
/// read, built, compiled and loaded once; then pod files come, change and go, each taking the
/// agent's object path (read the changed file, into the store, `sync`, send the delta).
fn agent_figure(objects: &[Object], netns: &str) {
    let dir = std::env::temp_dir().join(format!("palisade-bench-agent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (i, chunk) in objects.chunks(objects.len().div_ceil(50)).enumerate() {
        std::fs::write(dir.join(format!("part-{i:02}.json")), palisade_bench::to_list_json(chunk)).expect("write");
    }
    let t = Instant::now();
    let mut live = Live::start(&dir);
    let kernel = Kernel::open(Some(netns)).expect("netlink");
    kernel.apply(&script::full_commands(live.compiled.ruleset())).expect("the kernel takes the ruleset");
    println!("agent: first load {:>9.3} s  (50 files read, built, compiled, loaded)", t.elapsed().as_secs_f64());
    let pod = objects.iter().find(|o| matches!(o, Object::Pod(p) if p.metadata.name.as_deref() == Some("pod-1")));
    let Some(Object::Pod(template)) = pod else { return };
    let other = objects.iter().rev().find_map(|o| match o {
        Object::Pod(p) if p.metadata.labels != template.metadata.labels => p.metadata.labels.clone(),
        _ => None,
    });
    let file = dir.join("zz-change.json");
    let edited = objects.iter().find_map(|o| match o {
        Object::NetworkPolicy(n)
            if n.spec.as_ref().is_some_and(|s| s.ingress.iter().flatten().any(|r| r.ports.is_some())) =>
        {
            Some(n.clone())
        }
        _ => None,
    });
    let mut samples: BTreeMap<&str, Vec<(f64, [f64; 4])>> = BTreeMap::new();
    for round in 0..5 {
        let mut p = template.clone();
        p.metadata.name = Some("pod-new".into());
        p.status = Some(PodStatus { pod_ip: Some(format!("198.19.254.{}", 1 + round)), ..Default::default() });
        let relabelled = Pod { metadata: ObjectMeta { labels: other.clone(), ..p.metadata.clone() }, ..p.clone() };
        let mut steps = vec![
            ("pod added", Some(Object::Pod(p))),
            ("pod relabelled", Some(Object::Pod(relabelled))),
            ("pod removed", None),
        ];
        // A policy like the synthetic ones, added, edited (a port moves) and removed.
        if let Some(mut np) = edited.clone() {
            np.metadata.name = Some("bench-edit".into());
            let mut moved = np.clone();
            for r in moved.spec.iter_mut().flat_map(|s| s.ingress.iter_mut().flatten()) {
                for p in r.ports.iter_mut().flatten() {
                    p.port = Some(IntOrString::Int(8181 + round));
                }
            }
            steps.push(("policy added", Some(Object::NetworkPolicy(np))));
            steps.push(("policy changed", Some(Object::NetworkPolicy(moved))));
            steps.push(("policy removed", None));
        }
        for (what, object) in steps {
            let took = write_and_take(&file, object, &mut live, &kernel);
            samples.entry(what).or_default().push(took);
        }
    }
    // The worst case for the object path, after the others (the kernel frees a big transaction's
    // old chains for a while after it, which would weigh on the next small change): a global
    // policy every pod joins and leaves.
    for round in 0..5 {
        let global = serde_json::json!({
            "metadata": {"name": format!("bench-global-{round}")},
            "spec": {"order": 500, "selector": "all()", "types": ["Egress"],
                     "egress": [{"action": "Deny", "destination": {"nets": ["203.0.113.0/24"]}}]}
        });
        let global = Object::CalicoGlobalNetworkPolicy(serde_json::from_value(global).expect("policy"));
        for (what, object) in [("global policy added (all pods)", Some(global)), ("global policy removed", None)] {
            let took = write_and_take(&file, object, &mut live, &kernel);
            samples.entry(what).or_default().push(took);
        }
    }
    for (what, times) in samples {
        let ms: Vec<String> = times.iter().map(|t| format!("{:.1}", t.0 * 1e3)).collect();
        // Each phase's median on its own (they need not add up to the median in all).
        let phase = |i: usize| median(times.iter().map(|t| t.1[i]).collect()) * 1e3;
        println!(
            "agent: {what:<31}{:>8.1} ms  (file read, store finished, ruleset synced, delta applied; 5 runs: {}; medians: read {:.2}, store {:.2}, sync {:.2}, kernel {:.2} ms)",
            median(times.iter().map(|t| t.0).collect()) * 1e3,
            ms.join(" "),
            phase(0),
            phase(1),
            phase(2),
            phase(3),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Resident memory now and at its peak since the last reset, in MiB; `reset` starts a new peak.
fn memory_mib(reset: bool) -> (f64, f64) {
    if reset {
        // Writing 5 to clear_refs resets the peak resident set size (VmHWM) to the current one.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
    process_memory_mib("self")
}

/// A process's resident memory now and at its peak (VmRSS, VmHWM), in MiB; `pid` is a number
/// or `self`.
pub fn process_memory_mib(pid: &str) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Many files in one change, as a `kubectl get -o yaml` dump split into files or a GitOps sync
/// lands them: `n` policy files (copies of the synthetic ones) added, changed (a port moves in
/// each) and removed; the same `n` all in one namespace, added and removed (every pod there
/// gains hundreds of policies: the worst case for group chains); then `n` pod files added and
/// removed. Each step is one look at the directory and one transaction.
pub fn bulk_figure(objects: &[Object], netns: &str, n: usize) {
    let dir = std::env::temp_dir().join(format!("palisade-bench-bulk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bulk")).expect("temp dir");
    std::fs::write(dir.join("cluster.json"), palisade_bench::to_list_json(objects)).expect("write");
    let mut live = Live::start(&dir);
    let kernel = Kernel::open(Some(netns)).expect("netlink");
    kernel.apply(&script::full_commands(live.compiled.ruleset())).expect("the kernel takes the ruleset");
    let policies: Vec<NetworkPolicy> = objects
        .iter()
        .filter_map(|o| match o {
            Object::NetworkPolicy(p) => Some(p.clone()),
            _ => None,
        })
        .cycle()
        .take(n)
        .enumerate()
        .map(|(i, mut p)| {
            p.metadata.name = Some(format!("bulk-{i}"));
            p
        })
        .collect();
    let moved = |mut p: NetworkPolicy| {
        for r in p.spec.iter_mut().flat_map(|s| s.ingress.iter_mut().flatten()) {
            for port in r.ports.iter_mut().flatten() {
                port.port = Some(IntOrString::Int(7070));
            }
        }
        p
    };
    let template = objects.iter().find_map(|o| match o {
        Object::Pod(p) => Some(p.clone()),
        _ => None,
    });
    let pods: Vec<Pod> = (0..n)
        .filter_map(|i| {
            let mut p = template.clone()?;
            p.metadata.name = Some(format!("bulk-{i}"));
            let ip = format!("198.19.{}.{}", 100 + (i >> 8), i & 0xff);
            p.status = Some(PodStatus { pod_ip: Some(ip), ..Default::default() });
            Some(p)
        })
        .collect();
    let write_all = |objects: Vec<Option<Object>>| {
        for (i, o) in objects.into_iter().enumerate() {
            let file = dir.join("bulk").join(format!("{i:05}.json"));
            match o {
                Some(o) => std::fs::write(&file, palisade_bench::to_list_json(&[o])).expect("write"),
                None => std::fs::remove_file(&file).expect("remove"),
            }
        }
    };
    let one_namespace = |mut p: NetworkPolicy| {
        p.metadata.namespace = Some("ns-000".into());
        Some(Object::NetworkPolicy(p))
    };
    let steps: Vec<(&str, Vec<Option<Object>>)> = vec![
        ("policy files added", policies.iter().cloned().map(|p| Some(Object::NetworkPolicy(p))).collect()),
        ("policy files changed", policies.iter().cloned().map(|p| Some(Object::NetworkPolicy(moved(p)))).collect()),
        ("policy files removed", vec![None; n]),
        ("policy files added, one ns", policies.iter().cloned().map(one_namespace).collect()),
        ("policy files removed, one ns", vec![None; n]),
        ("pod files added", pods.into_iter().map(|p| Some(Object::Pod(p))).collect()),
        ("pod files removed", vec![None; n]),
    ];
    for (what, objects) in steps {
        write_all(objects);
        let old = live.compiled.ruleset().clone();
        let (before, _) = memory_mib(true);
        let t = Instant::now();
        let taken = live.take();
        let t_kernel = Instant::now();
        kernel.apply(&taken.delta).expect("the kernel takes the delta");
        let kernel_s = t_kernel.elapsed().as_secs_f64();
        let took = t.elapsed().as_secs_f64();
        let (_, peak) = memory_mib(false);
        // The same change sent as the whole table instead, from the same table in force.
        kernel.apply(&script::full_commands(&old)).expect("back to the table before");
        let whole = script::full_commands(live.compiled.ruleset());
        let t_whole = Instant::now();
        kernel.apply(&whole).expect("the kernel takes the whole table");
        let whole_s = t_whole.elapsed().as_secs_f64();
        // What the agent sends (`palisade_nft::cost`: by the estimate of the kernel's work).
        let in_force = Footprint::of(&old);
        let pick = cost::cheaper(&taken.delta, &in_force, live.compiled.ruleset());
        let picked = took - kernel_s + if pick == Transaction::Whole { whole_s } else { kernel_s };
        println!(
            "agent: {n} {what:<28}{took:>8.3} s  (read {:.3}, store {:.3}, sync {:.3} {:?}, kernel {kernel_s:.3} s, {} commands; memory peak +{:.0} MiB; as the whole table: kernel {whole_s:.3} s, {} commands; estimated work delta {} / whole {}: the agent sends {pick:?}, {picked:.3} s in all)",
            taken.read,
            taken.store,
            taken.sync,
            live.compiled.synced(),
            taken.delta.len(),
            peak - before,
            whole.len(),
            Work::of_delta(&taken.delta, &in_force).cost(),
            Work::of_whole(&in_force, live.compiled.ruleset()).cost(),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `object` to `file` (or removes the file) and takes the change to the kernel as the
/// agent does; the seconds that took, in all and per phase (read, store, sync, kernel).
fn write_and_take(file: &std::path::Path, object: Option<Object>, live: &mut Live, kernel: &Kernel) -> (f64, [f64; 4]) {
    match object {
        Some(o) => std::fs::write(file, palisade_bench::to_list_json(&[o])),
        None => std::fs::remove_file(file),
    }
    .expect("write");
    let t = Instant::now();
    let taken = live.take();
    let t_kernel = Instant::now();
    kernel.apply(&taken.delta).expect("the kernel takes the delta");
    let kernel_s = t_kernel.elapsed().as_secs_f64();
    (t.elapsed().as_secs_f64(), [taken.read, taken.store, taken.sync, kernel_s])
}

/// What the agent holds for its object path: the directory, the live store of the objects in
/// force, and the ruleset that follows the store's cluster.
struct Live {
    watched: Watched,
    store: Store,
    compiled: Compiled,
}

/// One change taken: the delta, and seconds spent reading the directory, in the store
/// (`apply`/`delete`, `finish`) and in `sync`.
struct Taken {
    delta: Delta,
    read: f64,
    store: f64,
    sync: f64,
}

impl Live {
    /// Reads and builds the directory, and compiles it in full.
    fn start(dir: &std::path::Path) -> Live {
        let opts = BuildOptions::default();
        let mut watched = Watched::new(dir);
        watched.poll().expect("readable");
        let load = watched.build(&opts).load;
        let cluster = load.cluster.expect("valid");
        let compiled = Compiled::following(&cluster, &Options::default());
        Live { watched, store: Store::adopt(load.inputs, cluster, opts), compiled }
    }

    /// The agent's object path for whatever changed in the directory: read it, the objects
    /// out of and into the store, `finish`, `sync`.
    fn take(&mut self) -> Taken {
        let opts = BuildOptions::default();
        let t = Instant::now();
        let changes = self.watched.poll().expect("readable").expect("changed");
        let read = t.elapsed().as_secs_f64();
        for gone in &changes.gone {
            self.store.delete(&store::key(&gone.object, &opts));
        }
        for came in changes.came {
            self.store.apply(came);
        }
        let touched = self.store.finish().expect("a valid change");
        self.watched.settle();
        let stored = t.elapsed().as_secs_f64();
        let delta = self.compiled.sync(self.store.cluster().expect("finished"), &touched);
        let synced = t.elapsed().as_secs_f64();
        Taken { delta, read, store: stored - read, sync: synced - stored }
    }
}

/// Compiles `c`, applies the delta from `old` (timed), and goes back to `old`, so that each
/// figure starts from the same table: (compile and diff s, apply s, nft commands).
fn delta_and_back(old: &Ruleset, c: &Cluster, netns: &str) -> (f64, f64, usize) {
    let kernel = Kernel::open(Some(netns)).expect("netlink");
    let t = Instant::now();
    let new = compile(c, &Options::default());
    let delta = script::update_commands(old, &new);
    let compiled = t.elapsed().as_secs_f64();
    let t = Instant::now();
    kernel.apply(&delta).expect("the kernel takes the delta");
    let applied = t.elapsed().as_secs_f64();
    kernel.apply(&script::update_commands(&new, old)).expect("revert");
    (compiled, applied, delta.len())
}

fn delta_figure(what: &str, old: &Ruleset, objects: &[Object], netns: &str) {
    let t = Instant::now();
    let c = cluster(objects);
    let built = t.elapsed().as_secs_f64();
    let (compiled, applied, commands) = delta_and_back(old, &c, netns);
    println!(
        "{what:<18}{:>9.3} s  (build {built:.3} + compile and diff {compiled:.3} + apply {applied:.4} s; {commands} commands)",
        built + compiled + applied,
    );
}

fn iperf(client_ns: &str, udp: bool) -> f64 {
    let mut args = vec!["netns", "exec", client_ns, "iperf3", "-c", B, "-p", "5201", "-t", "3", "-J"];
    if udp {
        args.extend(["-u", "-l", "64", "-b", "0"]);
    }
    let out = Command::new("ip").args(&args).output().expect("iperf3");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if udp {
        let sum = &v["end"]["sum"];
        let packets = sum["packets"].as_f64().unwrap_or(0.0) - sum["lost_packets"].as_f64().unwrap_or(0.0);
        packets / sum["seconds"].as_f64().unwrap_or(1.0)
    } else {
        v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0)
    }
}

/// TCP Gbit/s and 64-byte UDP packets/s between the two bench pods, bare and with the table,
/// interleaved, medians of `rounds`.
pub fn throughput(objects: &[Object], rounds: usize) {
    let c = cluster(objects);
    let rs = compile(&c, &Options::default());
    let full = script::full_commands(&rs);
    let topo =
        Topology::build(&[(vec![A.parse().expect("ip")], false), (vec![B.parse().expect("ip")], false)]).expect("lab");
    let server = Command::new("ip")
        .args(["netns", "exec", &topo.pods[1].netns, "iperf3", "-s", "-p", "5201"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(300));
    let mut server = Guard(server);
    // What statefulness costs by itself: the same hooks holding nothing but the conntrack rule.
    let mut stateful = vec![script::Command::ReplaceTable];
    for hook in [script::Hook::Prerouting, script::Hook::Postrouting] {
        stateful.push(script::Command::AddChain { name: hook.name().into(), hook: Some(hook) });
        use palisade_nft::ir::{CtState, Rule, Stmt, Verdict};
        let rule =
            Rule::new(vec![Stmt::Ct(vec![CtState::Established, CtState::Related]), Stmt::Verdict(Verdict::Accept)]);
        stateful.push(script::Command::AddRule { chain: hook.name().into(), rule });
    }
    let kernel = Kernel::open(Some(&topo.node)).expect("netlink");
    for (udp, unit, scale) in [(false, "Gbit/s", 1e9), (true, "packets/s (64-byte UDP)", 1.0)] {
        let (mut bare, mut ct, mut ruled) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            nft_in(&topo.node, &["delete", "table", "inet", "palisade"]);
            bare.push(iperf(&topo.pods[0].netns, udp) / scale);
            kernel.apply(&stateful).expect("conntrack-only table");
            ct.push(iperf(&topo.pods[0].netns, udp) / scale);
            kernel.apply(&full).expect("ruleset");
            ruled.push(iperf(&topo.pods[0].netns, udp) / scale);
        }
        let (b, c, r) = (median(bare.clone()), median(ct.clone()), median(ruled.clone()));
        println!(
            "{:<18}{b:>12.2} bare, {c:>12.2} conntrack only ({:.1}%), {r:>12.2} with the ruleset = {:.1}% {unit}  (medians of {rounds} interleaved runs; bare {bare:.2?}, conntrack only {ct:.2?}, ruled {ruled:.2?})",
            if udp { "UDP 64 B" } else { "TCP" },
            100.0 * c / b,
            100.0 * r / b
        );
    }
    let _ = server.0.kill();
    drop(topo);
}

struct Guard(std::process::Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
