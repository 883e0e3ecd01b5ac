//! `palisade matrix`: every pod pair for one port and protocol.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use palisade_core::cluster::{Cluster, PodId};
use palisade_core::index::{matrix, Matrix};
use palisade_core::port::Protocol;
use palisade_review::connectivity::PodFamilies;
use serde::Serialize;

use crate::input::{load, InputArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Destination port of the connections: a number (default 80), or a container port name,
    /// resolved per destination pod (pods that declare no such port are not opened on it).
    /// None for ICMP.
    #[arg(long)]
    port: Option<String>,
    /// TCP, UDP, SCTP, ICMP or ICMPv6.
    #[arg(long, default_value = "TCP")]
    protocol: Protocol,
    /// Every port at once: each pod pair (and pod and outside piece or node) with the TCP,
    /// UDP and SCTP port ranges it may use, the ports cut where pods, Services and rules
    /// name them. `--output table` groups the lines by workload.
    #[arg(long, conflicts_with_all = ["port", "protocol"])]
    all_ports: bool,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Output {
    Table,
    Json,
    Csv,
}

/// The JSON shape: `{"port": 80, "protocol": "TCP", "allowed": {"x/a": ["x/a", ...]}}`
/// (`"port": "http"` for a port name, `0` for ICMP).
#[derive(Serialize)]
pub struct JsonMatrix {
    pub port: Port,
    pub protocol: Protocol,
    pub allowed: BTreeMap<String, Vec<String>>,
}

/// The port a matrix is for, as the user gave it.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Port {
    Number(u16),
    Name(String),
}

pub fn to_json(cluster: &Cluster, m: &Matrix, port: Port) -> JsonMatrix {
    let order = cluster.pods_sorted();
    let keys: Vec<String> = cluster.pod_ids().map(|p| cluster.pod_key(p)).collect();
    let mut allowed = BTreeMap::new();
    for &s in &order {
        let dsts: Vec<String> = order.iter().filter(|&&d| m.allowed(s, d)).map(|&d| keys[d.index()].clone()).collect();
        allowed.insert(keys[s.index()].clone(), dsts);
    }
    JsonMatrix { port, protocol: m.protocol, allowed }
}

pub fn run(args: Args) -> u8 {
    let port = match (args.port.as_deref(), args.protocol.has_ports()) {
        (Some(p), false) => {
            eprintln!("error: --port {p}: {} has no ports", args.protocol);
            return crate::EXIT_INVALID;
        }
        (None, false) => Port::Number(0),
        (None, true) => Port::Number(80),
        (Some(p), true) => match p.parse::<u16>() {
            Ok(0) => {
                eprintln!("error: --port must be 1-65535 or a port name");
                return crate::EXIT_INVALID;
            }
            Ok(n) => Port::Number(n),
            Err(_) => Port::Name(p.to_string()),
        },
    };
    let cluster = match load(&args.input) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if cluster.pods.is_empty() {
        eprintln!("error: the input holds no pods, so there is no pod pair to decide; add the cluster (kubectl get pods,namespaces -A -o yaml)");
        return crate::EXIT_INVALID;
    }
    if args.all_ports {
        return all_ports(&cluster, args.output);
    }
    let spinner = crate::progress::spinner(format!("deciding {} pod pairs", cluster.pods.len().pow(2)));
    let mut m = match &port {
        Port::Number(n) => matrix(&cluster, *n, args.protocol),
        Port::Name(name) => match named_matrix(&cluster, name, args.protocol) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("error: --port {name}: {e}");
                return crate::EXIT_INVALID;
            }
        },
    };
    // No pair in a family one of the two has no address of (ICMPv6 between IPv4-only pods).
    PodFamilies::new(&cluster).keep_pairs(&mut m.rows, args.protocol.families());
    let shown = match &port {
        Port::Number(_) if !args.protocol.has_ports() => args.protocol.to_string(),
        Port::Number(n) => format!("{}/{n}", args.protocol),
        Port::Name(name) => format!("{}/{name}", args.protocol),
    };
    spinner.set_message("writing the matrix");
    let text = match args.output {
        Output::Json => serde_json::to_string_pretty(&to_json(&cluster, &m, port)).expect("serializable") + "\n",
        Output::Csv => csv(&cluster, &m),
        Output::Table => table(&cluster, &m, &shown),
    };
    spinner.finish_and_clear();
    crate::emit(&text);
    0
}

/// The matrix for a port name: each destination pod on the number its own container port of
/// that name has (as a rule's named port resolves); pods without one are opened by nobody.
fn named_matrix(cluster: &Cluster, name: &str, protocol: Protocol) -> Result<Matrix, String> {
    let number = |d: PodId| {
        let ports = &cluster.pods[d].ports;
        ports.iter().find(|c| c.name.as_deref() == Some(name) && c.protocol == protocol).map(|c| c.port)
    };
    let numbers: std::collections::BTreeSet<u16> = cluster.pod_ids().filter_map(number).collect();
    if numbers.is_empty() {
        return Err(format!("no pod declares a {protocol} container port named {name:?}"));
    }
    let mut index = palisade_core::index::Index::new(cluster);
    let by_number: BTreeMap<u16, Matrix> = numbers.iter().map(|&n| (n, index.matrix(n, protocol))).collect();
    // Rows of the same shape as the index's, emptied.
    let template = by_number.values().next().expect("one number at least");
    let mut rows: Vec<_> = template
        .rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.clear();
            r
        })
        .collect();
    for d in cluster.pod_ids() {
        let Some(m) = number(d).map(|p| &by_number[&p]) else { continue };
        for (s, row) in cluster.pod_ids().zip(rows.iter_mut()) {
            row.set(d.index(), m.allowed(s, d));
        }
    }
    Ok(Matrix { port: 0, protocol, rows })
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

/// What pods are grouped by: their workload, else their labels without per-rollout ones.
fn group_name(cluster: &Cluster, p: PodId) -> String {
    let pod = &cluster.pods[p];
    if let Some(w) = &pod.workload {
        return format!("{} ({})", w.name, w.kind);
    }
    let labels: Vec<String> = pod
        .labels
        .iter()
        .filter(|(k, _)| !palisade_core::label::is_per_rollout(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if labels.is_empty() {
        pod.name.clone()
    } else {
        format!("[{}]", labels.join(","))
    }
}

/// Groups pods by workload (or identical labels); a group is shown as one line only if all its
/// pods have identical rows and columns, so the table stays exact.
fn groups(cluster: &Cluster, m: &Matrix) -> Vec<Group> {
    let mut by_key: BTreeMap<(String, String), Vec<PodId>> = BTreeMap::new();
    for p in cluster.pods_sorted() {
        let ns = cluster.namespaces[cluster.pods[p].namespace].name.clone();
        by_key.entry((ns, group_name(cluster, p))).or_default().push(p);
    }
    let mut out = Vec::new();
    for ((ns, name), pods) in by_key {
        let same = pods.windows(2).all(|w| interchangeable(m, w[0], w[1]));
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

/// Whether two pods treat, and are treated by, every other pod alike (their own pair aside:
/// each pod reaches itself, so replicas isolated from each other differ on the diagonal).
fn interchangeable(m: &Matrix, p: PodId, q: PodId) -> bool {
    let n = m.rows.len();
    let others = |x: &PodId| *x != p && *x != q;
    m.allowed(p, q) == m.allowed(q, p)
        && PodId::all(n)
            .filter(others)
            .all(|x| m.allowed(p, x) == m.allowed(q, x) && m.allowed(x, p) == m.allowed(x, q))
}

/// Beyond this many groups a grid is too wide to read; rows become lists of column ranges.
const GRID_MAX_GROUPS: usize = 40;

fn table(cluster: &Cluster, m: &Matrix, shown: &str) -> String {
    let gs = groups(cluster, m);
    let n = cluster.pods.len();
    let allowed: usize = m.rows.iter().map(|r| r.count_ones(..)).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{shown}: {allowed} of {} pod pairs allowed ({n} pods in {} groups, {} namespaces)",
        n * n,
        gs.len(),
        cluster.namespaces.len()
    );
    if gs.len() <= GRID_MAX_GROUPS {
        grid(&mut out, &gs, m);
    } else {
        lists(&mut out, &gs, m);
    }
    out
}

fn grid(out: &mut String, gs: &[Group], m: &Matrix) {
    let _ =
        writeln!(out, "rows: source, columns: destination by number; + allowed, . denied, ~ some pods of the group");
    let width = gs.len().to_string().len() + 1;
    let label_w = gs.iter().map(|g| g.label.len() + 5).max().unwrap_or(10).max(12);
    let mut header = format!("{:label_w$}", "");
    for i in 1..=gs.len() {
        let _ = write!(header, "{i:>width$}");
    }
    let mut last_ns = "";
    for (i, g) in gs.iter().enumerate() {
        if g.namespace != last_ns {
            let _ = writeln!(out, "\nnamespace {}\n{header}", g.namespace);
            last_ns = &g.namespace;
        }
        let mut line = format!("{:label_w$}", format!("{:>3} {}", i + 1, g.label));
        for d in gs {
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
}

/// One line per group: the numbers of the groups it may reach, as ranges (`~` marks partial).
fn lists(out: &mut String, gs: &[Group], m: &Matrix) {
    let _ = writeln!(out, "each source group lists the destination groups it reaches, by number; ~N: only some pods");
    let mut last_ns = "";
    for (i, g) in gs.iter().enumerate() {
        if g.namespace != last_ns {
            let _ = writeln!(out, "\nnamespace {}", g.namespace);
            last_ns = &g.namespace;
        }
        let mut full = Vec::new();
        let mut partial = Vec::new();
        for (j, d) in gs.iter().enumerate() {
            match cell(m, &g.pods, &d.pods) {
                (true, _) => full.push(j + 1),
                (false, true) => partial.push(format!("~{}", j + 1)),
                _ => {}
            }
        }
        let mut reach = ranges(&full);
        reach.extend(partial);
        let reach = if full.len() == gs.len() { "all".to_string() } else { reach.join(", ") };
        let _ = writeln!(out, "{:>4} {} -> {}", i + 1, g.label, if reach.is_empty() { "none".into() } else { reach });
    }
}

/// `[1,2,3,5]` -> `["1-3", "5"]`.
fn ranges(nums: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < nums.len() {
        let mut j = i;
        while j + 1 < nums.len() && nums[j + 1] == nums[j] + 1 {
            j += 1;
        }
        out.push(if i == j { nums[i].to_string() } else { format!("{}-{}", nums[i], nums[j]) });
        i = j + 1;
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

/// `--all-ports`: the connectivity map, every pair with every port it may use, in the chosen form.
fn all_ports(cluster: &palisade_core::cluster::Cluster, output: Output) -> u8 {
    use palisade_review::map::{text, Map};
    let map = Map::compute(cluster);
    match output {
        Output::Table => crate::emit(&text::render(&map, cluster)),
        Output::Json => {
            crate::emit(&(serde_json::to_string_pretty(&map.to_json(cluster)).expect("serializable") + "\n"))
        }
        Output::Csv => crate::emit(&map.to_csv(cluster)),
    }
    0
}
