//! `palisade matrix`: every pod pair for one port and protocol.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use palisade_core::cluster::{Cluster, PodId};
use palisade_core::index::{matrix, Matrix};
use palisade_core::port::Protocol;
use serde::Serialize;

use crate::input::{load, InputArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Destination port of the connections.
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// TCP, UDP or SCTP.
    #[arg(long, default_value = "TCP")]
    protocol: Protocol,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Output {
    Table,
    Json,
    Csv,
}

/// The JSON shape: `{"port": 80, "protocol": "TCP", "allowed": {"x/a": ["x/a", ...]}}`.
#[derive(Serialize)]
pub struct JsonMatrix {
    pub port: u16,
    pub protocol: Protocol,
    pub allowed: BTreeMap<String, Vec<String>>,
}

pub fn to_json(cluster: &Cluster, m: &Matrix) -> JsonMatrix {
    let order = cluster.pods_sorted();
    let keys: Vec<String> = (0..cluster.pods.len()).map(|p| cluster.pod_key(p)).collect();
    let mut allowed = BTreeMap::new();
    for &s in &order {
        let dsts: Vec<String> = order.iter().filter(|&&d| m.allowed(s, d)).map(|&d| keys[d].clone()).collect();
        allowed.insert(keys[s].clone(), dsts);
    }
    JsonMatrix { port: m.port, protocol: m.protocol, allowed }
}

pub fn run(args: Args) -> u8 {
    if args.port == 0 {
        eprintln!("error: --port must be 1-65535");
        return crate::EXIT_INVALID;
    }
    let cluster = match load(&args.input) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let m = matrix(&cluster, args.port, args.protocol);
    match args.output {
        Output::Json => {
            crate::emit(&(serde_json::to_string_pretty(&to_json(&cluster, &m)).expect("serializable") + "\n"))
        }
        Output::Csv => crate::emit(&csv(&cluster, &m)),
        Output::Table => crate::emit(&table(&cluster, &m)),
    }
    0
}

fn csv(cluster: &Cluster, m: &Matrix) -> String {
    let order = cluster.pods_sorted();
    let mut out = String::from("from\\to");
    for &d in &order {
        let _ = write!(out, ",{}", cluster.pod_key(d));
    }
    out.push('\n');
    for &s in &order {
        out.push_str(&cluster.pod_key(s));
        for &d in &order {
            out.push_str(if m.allowed(s, d) { ",1" } else { ",0" });
        }
        out.push('\n');
    }
    out
}

/// A row/column of the table: one pod, or a workload's pods that behave identically.
struct Group {
    label: String,
    namespace: String,
    pods: Vec<PodId>,
}

/// Groups pods by workload; a workload is shown as one line only if all its pods have
/// identical rows and columns, so the table stays exact.
fn groups(cluster: &Cluster, m: &Matrix) -> Vec<Group> {
    let mut by_key: BTreeMap<(String, String), Vec<PodId>> = BTreeMap::new();
    for p in cluster.pods_sorted() {
        let pod = &cluster.pods[p];
        let name = match &pod.workload {
            Some(w) => format!("{} ({})", w.name, w.kind),
            None => pod.name.clone(),
        };
        by_key.entry((cluster.namespaces[pod.namespace].name.clone(), name)).or_default().push(p);
    }
    let mut out = Vec::new();
    for ((ns, name), pods) in by_key {
        let same = pods.windows(2).all(|w| {
            m.rows[w[0]] == m.rows[w[1]] && (0..cluster.pods.len()).all(|x| m.allowed(x, w[0]) == m.allowed(x, w[1]))
        });
        if pods.len() > 1 && same {
            out.push(Group { label: format!("{name} x{}", pods.len()), namespace: ns, pods });
        } else {
            for p in pods {
                out.push(Group { label: cluster.pods[p].name.clone(), namespace: ns.clone(), pods: vec![p] });
            }
        }
    }
    out
}

fn table(cluster: &Cluster, m: &Matrix) -> String {
    let gs = groups(cluster, m);
    let n = cluster.pods.len();
    let allowed: usize = m.rows.iter().map(|r| r.count_ones(..)).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}/{}: {allowed} of {} pod pairs allowed ({} pods, {} namespaces)",
        m.protocol,
        m.port,
        n * n,
        n,
        cluster.namespaces.len()
    );
    let _ =
        writeln!(out, "rows: source, columns: destination by number; + allowed, . denied, ~ some pods of the group");
    let width = gs.len().to_string().len().max(1) + 1;
    let label_w = gs.iter().map(|g| g.label.len() + 6).max().unwrap_or(10).max(12);
    let mut header = format!("{:label_w$}", "");
    for i in 1..=gs.len() {
        let _ = write!(header, "{i:>width$}");
    }
    let mut last_ns = String::new();
    let mut counter = 0;
    for g in &gs {
        if g.namespace != last_ns {
            let _ = writeln!(out, "\nnamespace {}", g.namespace);
            let _ = writeln!(out, "{header}");
            last_ns = g.namespace.clone();
        }
        counter += 1;
        let mut line = format!("{:label_w$}", format!("{counter:>3} {}", g.label));
        for d in &gs {
            let (all, any) = cell(m, &g.pods, &d.pods);
            let c = if all {
                '+'
            } else if any {
                '~'
            } else {
                '.'
            };
            let _ = write!(line, "{c:>width$}");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

fn cell(m: &Matrix, srcs: &[PodId], dsts: &[PodId]) -> (bool, bool) {
    let mut all = true;
    let mut any = false;
    for &s in srcs {
        for &d in dsts {
            let a = m.allowed(s, d);
            all &= a;
            any |= a;
        }
    }
    (all, any)
}
