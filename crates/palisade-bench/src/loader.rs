//! `--loader-curve`: loading speed and memory over input sizes from 1 KB to 50 MB, in JSON and
//! in block-style YAML (one `kind: List` document, as `kubectl get -A -o json|yaml` prints).
//! CPU time of this thread (schedstat), so other load on the machine skews it less than wall
//! time; peak memory above what the process held before, over the input's size.

use palisade_bench::{generate, to_list, Shape};
use palisade_ingest::BuildOptions;

/// CPU time of the calling thread, in seconds.
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    s.split_whitespace().next().and_then(|n| n.parse::<f64>().ok()).map_or(0.0, |ns| ns / 1e9)
}

fn status_kib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

struct Figure {
    decode: f64,
    load: f64,
    peak: f64,
}

/// Runs in a child process (`--loader-one FILE`), so that each figure's peak memory is its own:
/// prints the CPU seconds of decoding alone and of the whole load per run (median of 3 runs, or
/// the mean of as many as make 0.3 s for small inputs: CPU time comes in coarse ticks), and the
/// peak resident memory above what the process held with the text read, in bytes.
pub fn one(path: &std::path::Path) {
    let bytes = std::fs::read(path).expect("read the input");
    let text: std::sync::Arc<str> = String::from_utf8(bytes).expect("UTF-8").into();
    let sources = vec![palisade_load::Source { name: "curve".into(), text }];
    let before = status_kib("VmRSS:");
    let (mut decode, mut load) = (Vec::new(), Vec::new());
    let (mut spent, mut runs) = (0.0, 0);
    while runs < 3 || (spent < 0.3 && runs < 1000) {
        let t = cpu_seconds();
        let loaded = palisade_load::manifest::decode(&sources);
        decode.push(cpu_seconds() - t);
        assert!(!loaded.has_errors(), "the synthetic input does not decode");
        drop(loaded);
        let t = cpu_seconds();
        let l = palisade_load::load_sources(sources.clone(), &BuildOptions::default());
        load.push(cpu_seconds() - t);
        assert!(l.cluster.is_some(), "the synthetic input does not load");
        spent += load.last().expect("pushed");
        runs += 1;
    }
    let peak = (status_kib("VmHWM:") - before).max(0.0) * 1024.0;
    let per_run = |v: &[f64]| if runs > 3 { v.iter().sum::<f64>() / runs as f64 } else { median(v) };
    println!("{} {} {}", per_run(&decode), per_run(&load), peak);
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn measure(path: &std::path::Path) -> Figure {
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe).arg("--loader-one").arg(path).output().expect("run the child");
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    assert_eq!(f.len(), 3, "child: {text} {}", String::from_utf8_lossy(&out.stderr));
    Figure { decode: f[0], load: f[1], peak: f[2] }
}

/// Prints the curve up to `max_mb` megabytes of JSON, then the former worst cases.
pub fn curve(max_mb: f64) {
    worst_cases();
    println!();
    println!("format  input        objects  decode s  decode MB/s  load s  load MB/s  peak MiB  peak/input");
    let mut target = 1_000.0;
    while target <= max_mb * 1e6 * 1.001 {
        // About 330 bytes of JSON per object: two pods to each policy, a namespace per 100 pods.
        let objects = (target / 330.0).max(3.0) as usize;
        let pods = (objects * 2 / 3).max(2);
        let shape = Shape {
            pods,
            policies: (objects / 3).max(1),
            namespaces: (pods / 100).clamp(1, 100),
            pods_per_app: 10,
            seed: 1,
        };
        let list = to_list(&generate(&shape));
        let json = list.to_string();
        let yaml = palisade_load::yaml::emit(std::slice::from_ref(&list));
        drop(list);
        for (format, text) in [("json", &json), ("yaml", &yaml)] {
            let path = std::env::temp_dir().join(format!("palisade-loader-curve-{}.{format}", std::process::id()));
            std::fs::write(&path, text).expect("write the input");
            let f = measure(&path);
            let _ = std::fs::remove_file(&path);
            let mb = text.len() as f64 / 1e6;
            println!(
                "{format:<6}  {:>8.3} MB  {:>7}  {:>8.4}  {:>11.1}  {:>6.3}  {:>9.1}  {:>8.1}  {:>9.1}x",
                mb,
                objects,
                f.decode,
                mb / f.decode,
                f.load,
                mb / f.load,
                f.peak / (1 << 20) as f64,
                f.peak / text.len() as f64,
            );
        }
        target *= if target * 10.0 > max_mb * 1e6 && target < max_mb * 1e6 { max_mb * 1e6 / target } else { 10.0 };
    }
}

/// Writes an input of size n.
type Shaper = fn(usize) -> String;

/// The shapes that were quadratic before (issue 14), at two sizes ten times apart: a linear
/// loader takes about ten times as long for the larger.
pub fn worst_cases() {
    println!("shape                                        n        decode s   (x10 n: ~x10 time when linear)");
    let shapes: [(&str, Shaper); 4] = [
        ("one pod, n numeric label values (refused)", |n| {
            let labels: String = (0..n).map(|i| format!("    l{i}: {i}\n")).collect();
            format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  namespace: x\n  labels:\n{labels}")
        }),
        ("one pod, n quoted label values", |n| {
            let labels: String = (0..n).map(|i| format!("    l{i}: \"{i}\"\n")).collect();
            format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  namespace: x\n  labels:\n{labels}")
        }),
        ("one mapping of n keys (duplicate check)", |n| {
            let keys: String = (0..n).map(|i| format!("    k{i}: v\n")).collect();
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a, namespace: x}}\ndata:\n{keys}")
        }),
        ("block YAML list of n pods (positions)", |n| {
            let pods: String = (0..n)
                .map(|i| format!("- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: p{i}\n    namespace: x\n    labels:\n      app: a{i}\n"))
                .collect();
            format!("apiVersion: v1\nkind: List\nitems:\n{pods}")
        }),
    ];
    for (name, make) in shapes {
        for n in [4_000, 40_000] {
            let text = make(n);
            let sources = vec![palisade_load::Source { name: "worst".into(), text: text.into() }];
            let t = cpu_seconds();
            let loaded = palisade_load::manifest::decode(&sources);
            let secs = cpu_seconds() - t;
            println!("{name:<44} {n:>6}  {secs:>10.4}   ({} problem(s))", loaded.problems.len());
        }
    }
}
