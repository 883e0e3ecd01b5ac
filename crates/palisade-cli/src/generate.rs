//! `palisade generate`: least-privilege policies from observed flows, checked by the engine;
//! or, with --complement-egress, the egress policies that existing ingress policies need.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use fixedbitset::FixedBitSet;
use palisade_core::cluster::{Cluster, PodId};
use palisade_core::verdict::{decide, Connection as Conn, Side, Verdict};
use palisade_generate::flow::{parse, Flow};
use palisade_generate::policy::{generate, File, Options};
use palisade_generate::render::{render, Format};
use palisade_generate::resolve::{resolve, Connection, End};
use palisade_ingest::{build, Input};
use palisade_load::source::Source;
use palisade_review::connectivity::{Connectivity, Cuts};
use palisade_review::probe::Probe;
use palisade_review::workload::Workloads;

use crate::input::{build_options, connectivity, load_all, InputArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Observed flows: the agent's flow log (JSON lines), `hubble observe -o json` output, or
    /// CSV `src,dst,port,protocol` (pods as ns/pod or IPs); repeatable.
    #[arg(long, value_name = "FILE", required_unless_present = "complement_egress")]
    flows: Vec<PathBuf>,
    /// Instead: write the egress policies that the ingress policies in PATHS need once
    /// egress is isolated (the egress article's algorithm).
    #[arg(long, conflicts_with = "flows")]
    complement_egress: bool,
    /// Write one directory per namespace here (else print everything).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = FormatArg::Kubernetes)]
    format: FormatArg,
    /// Widen outside addresses to networks: /24 (IPv4), or /24,/64 for IPv4 and IPv6.
    #[arg(long, value_name = "/N[,/M]")]
    aggregate: Option<String>,
    /// Also write policies for system namespaces (kube-*, calico-system).
    #[arg(long)]
    system: bool,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum FormatArg {
    Kubernetes,
    Calico,
}

fn aggregate(s: &str) -> Result<(u8, u8), String> {
    let parse = |p: &str, max: u8| -> Result<u8, String> {
        let n: u8 =
            p.trim().trim_start_matches('/').parse().map_err(|_| format!("--aggregate {s}: write /N (e.g. /24)"))?;
        (n <= max).then_some(n).ok_or(format!("--aggregate {s}: /{n} is longer than /{max}"))
    };
    match s.split_once(',') {
        Some((a, b)) => Ok((parse(a, 32)?, parse(b, 128)?)),
        None => Ok((parse(s, 32)?, 128)),
    }
}

pub fn run(args: Args) -> u8 {
    let load = match load_all(&args.input) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let cluster = load.cluster.as_ref().expect("loaded");
    let format = match args.format {
        FormatArg::Kubernetes => Format::Kubernetes,
        FormatArg::Calico => Format::Calico,
    };
    if args.complement_egress {
        let (files, notes) = palisade_generate::complement::complement(cluster, &load.inputs);
        notes.iter().for_each(|n| eprintln!("note: {n}"));
        let rendered = render(&files, format, "from ingress policies (--complement-egress)");
        let code = write(&rendered, args.out.as_deref());
        if code != 0 {
            return code;
        }
        return verify_complement(cluster, &load.inputs, &rendered, &args.input);
    }
    let mut flows: Vec<Flow> = Vec::new();
    let mut blocked = 0;
    for f in &args.flows {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {}: {e}", f.display());
                return crate::EXIT_INVALID;
            }
        };
        match parse(&f.display().to_string(), &text) {
            Ok(p) => {
                flows.extend(p.flows);
                blocked += p.blocked;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return crate::EXIT_INVALID;
            }
        }
    }
    let opts = match args.aggregate.as_deref().map(aggregate).transpose() {
        Ok(aggregate) => Options { aggregate, system_namespaces: args.system },
        Err(e) => {
            eprintln!("error: {e}");
            return crate::EXIT_INVALID;
        }
    };
    if blocked > 0 {
        eprintln!("note: {blocked} attempt(s) that enforcing policy dropped are not learned (record in audit mode to learn them)");
    }
    let (conns, unresolved) = resolve(cluster, &flows);
    unresolved.iter().for_each(|u| eprintln!("warning: flow not used: {u}"));
    if conns.is_empty() {
        eprintln!("error: no usable flow in {} line(s) read", flows.len());
        return crate::EXIT_INVALID;
    }
    let set = generate(cluster, &conns, &opts);
    set.notes.iter().for_each(|n| eprintln!("note: {n}"));
    let rendered = render(&set.files, format, "from observed flows");
    let code = write(&rendered, args.out.as_deref());
    if code != 0 {
        return code;
    }
    eprintln!(
        "wrote {} file(s): {} namespace(s), {} connection(s) from {} flow(s)",
        rendered.len(),
        set.files.iter().map(|f| &f.namespace).collect::<BTreeSet<_>>().len(),
        conns.len(),
        flows.len()
    );
    let code = verify(&load.inputs, &rendered, &conns, &set.files, &args.input, unresolved.len());
    if !unresolved.is_empty() {
        // Policies that leave out observed traffic would break it once enforced.
        eprintln!(
            "error: {} observed flow(s) could not be resolved to pods or addresses (see the warnings above): the generated policies do not cover them, so they are not verified",
            unresolved.len()
        );
        return 1;
    }
    code
}

fn write(files: &[(String, String)], out: Option<&Path>) -> u8 {
    let Some(dir) = out else {
        let text: String = files.iter().map(|(path, text)| format!("# file: {path}\n{text}")).collect();
        crate::emit(&text);
        return 0;
    };
    for (path, text) in files {
        let full = dir.join(path);
        let written = full.parent().map(std::fs::create_dir_all).transpose().and_then(|_| std::fs::write(&full, text));
        if let Err(e) = written {
            eprintln!("error: {}: {e}", full.display());
            return crate::EXIT_INVALID;
        }
    }
    0
}

/// Ingress allows that egress isolation defeats (lint PAL011, ingress side).
fn defeated_ingress(cluster: &Cluster, inputs: &[Input]) -> usize {
    let workloads = Workloads::new(cluster);
    let conn = connectivity(cluster, Cuts::of(&[cluster]));
    let findings = palisade_review::lint::lint(cluster, inputs, &conn, &workloads);
    let one_sided = findings.iter().filter(|f| f.code == palisade_review::lint::ONE_SIDED.code);
    one_sided.filter(|f| f.path.contains("ingress")).count()
}

/// With the complementary egress added, no ingress allow should be defeated any more.
fn verify_complement(cluster: &Cluster, inputs: &[Input], rendered: &[(String, String)], args: &InputArgs) -> u8 {
    let after = match with_generated(inputs, rendered, args, true) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: the generated policies do not load: {e}");
            return 1;
        }
    };
    let (before, left) = (defeated_ingress(cluster, inputs), defeated_ingress(&after, inputs));
    eprintln!(
        "wrote {} file(s); ingress allows defeated by egress isolation: {before} before, {left} with these policies",
        rendered.len()
    );
    u8::from(left > 0)
}

/// The cluster with the generated policies added (`keep`) or in place of the ones it had.
fn with_generated(
    inputs: &[Input],
    rendered: &[(String, String)],
    args: &InputArgs,
    keep: bool,
) -> Result<Cluster, String> {
    let sources: Vec<Source> = rendered
        .iter()
        .map(|(p, t)| Source { name: format!("generated/{p}").into(), text: t.clone().into() })
        .collect();
    let decoded = palisade_load::manifest::decode(&sources);
    if decoded.has_errors() {
        return Err(decoded
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.object, p.message))
            .collect::<Vec<_>>()
            .join("; "));
    }
    let mut all: Vec<Input> = inputs.iter().filter(|i| keep || !i.object.is_policy()).cloned().collect();
    all.extend(decoded.inputs);
    build(&all, &build_options(args))
        .map_err(|ps| ps.iter().map(|p| format!("{}: {}", p.object, p.message)).collect::<Vec<_>>().join("; "))
}

fn side(cluster: &Cluster, e: End) -> Side {
    match e {
        End::Pod(p) => Side::pod(cluster, p),
        End::Address(ip) => Side::ip(cluster, ip),
    }
}

/// Whether the cluster allows an observed connection: between two pods, the matrix of the
/// probe whose stretch holds its port says so (it agrees with `check` there, and leaves out
/// only pairs without a shared IP family); anything else, and what the matrix refuses, is
/// decided by the engine as `check` decides it.
fn allowed(cluster: &Cluster, conn: &Connectivity, c: &Connection) -> bool {
    // A pod to itself is loopback in the matrix, which `check` decides by the policies.
    if let (End::Pod(s), End::Pod(d)) = (c.src, c.dst) {
        let holds = |p: &Probe| p.protocol == c.protocol && (p.port..=p.end).contains(&c.port);
        if s != d && conn.probes.iter().position(holds).is_some_and(|i| conn.matrices[i].allowed(s, d)) {
            return true;
        }
    }
    let checked = Conn::new(side(cluster, c.src), side(cluster, c.dst), c.port, c.protocol);
    decide(cluster, &checked).verdict == Verdict::Allow
}

/// Every observed connection must be allowed; and says what else the set allows between the
/// workloads it covers.
fn verify(
    inputs: &[Input],
    rendered: &[(String, String)],
    conns: &[Connection],
    files: &[File],
    args: &InputArgs,
    unresolved: usize,
) -> u8 {
    let cluster = match with_generated(inputs, rendered, args, false) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: the generated policies do not load: {e}");
            return 1;
        }
    };
    let conn = connectivity(&cluster, Cuts::of(&[&cluster]));
    let denied: Vec<&Connection> = conns.iter().filter(|c| !allowed(&cluster, &conn, c)).collect();
    for c in &denied {
        eprintln!("error: observed but denied by the generated policies: {}", c.seen.join(", "));
    }
    if !denied.is_empty() {
        return 1;
    }
    let mut report = match unresolved {
        0 => format!("verified: the generated policies allow all {} observed connection(s)\n", conns.len()),
        n => format!(
            "the generated policies allow the {} resolved connection(s); {n} flow(s) were not resolved\n",
            conns.len()
        ),
    };
    let extras = extras(&cluster, &conn, conns, files);
    if extras.is_empty() {
        report.push_str("also allowed between the covered workloads: nothing beyond what was observed (and DNS)\n");
    } else {
        let _ = writeln!(report, "also allowed between the covered workloads, not observed ({}):", extras.len());
        extras.iter().for_each(|e| {
            let _ = writeln!(report, "  {e}");
        });
    }
    eprint!("{report}");
    0
}

/// Workload pairs and ports the set allows that no flow showed, where a generated namespace
/// is on at least one side (elsewhere nothing was asked of it). DNS to kube-dns is expected.
fn extras(cluster: &Cluster, conn: &Connectivity, conns: &[Connection], files: &[File]) -> Vec<String> {
    let workloads = Workloads::new(cluster);
    let covered: BTreeSet<&str> = files.iter().map(|f| f.namespace.as_str()).collect();
    // Per pod, once: whether its namespace is covered (asked for every allowed pair below).
    let in_covered: Vec<bool> =
        cluster.pods.iter().map(|p| covered.contains(cluster.namespaces[p.namespace].name.as_str())).collect();
    let observed: BTreeSet<(usize, usize, u16, palisade_core::port::Protocol)> = conns
        .iter()
        .filter_map(|c| match (c.src, c.dst) {
            (End::Pod(a), End::Pod(b)) => {
                Some((workloads.of_pod[a.index()], workloads.of_pod[b.index()], c.port, c.protocol))
            }
            _ => None,
        })
        .collect();
    // Workload pairs per probe first: many pod pairs make one line, worded once. A source
    // workload's pods' rows are joined first, so each destination is looked at once per
    // workload rather than once per allowed pod pair.
    let n = cluster.pods.len();
    let covered_pods: FixedBitSet = (0..n).filter(|&p| in_covered[p]).collect();
    let mut found: BTreeSet<(usize, usize, usize)> = BTreeSet::new();
    for (i, probe) in conn.probes.iter().enumerate() {
        let rows = &conn.matrices[i].rows;
        // DNS to kube-dns is expected: those destinations are left out on port 53.
        let dns = (probe.port == 53).then(|| {
            (0..n).filter(|&d| palisade_core::label::is_kube_dns(&cluster.pods[PodId::new(d)].labels)).collect()
        });
        let mut seen = vec![usize::MAX; workloads.list.len()];
        for (ws, wl) in workloads.list.iter().enumerate() {
            let mut reach = FixedBitSet::with_capacity(n);
            for &s in &wl.pods {
                let mut row = rows[s.index()].clone();
                row.set(s.index(), false);
                reach.union_with(&row);
            }
            // A pair counts where a generated namespace is on at least one side.
            if !in_covered[wl.pods[0].index()] {
                reach.intersect_with(&covered_pods);
            }
            if let Some(dns) = &dns {
                reach.difference_with(dns);
            }
            for d in reach.ones() {
                let wd = workloads.of_pod[d];
                if std::mem::replace(&mut seen[wd], ws) != ws
                    && !observed.contains(&(ws, wd, probe.port, probe.protocol))
                {
                    found.insert((ws, wd, i));
                }
            }
        }
    }
    let line = |(ws, wd, i): (usize, usize, usize)| {
        format!("{} -> {} on {}", workloads.key(cluster, ws), workloads.key(cluster, wd), conn.probes[i])
    };
    let out: BTreeSet<String> = found.into_iter().map(line).collect();
    out.into_iter().collect()
}
