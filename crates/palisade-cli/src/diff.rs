//! `palisade diff OLD NEW`: connections gained and lost between two policy sets.

use std::fmt::Write as _;
use std::path::PathBuf;

use palisade_review::change::diff_policies;
use palisade_review::connectivity::Cuts;
use palisade_review::diff::{diff, Diff, Group, Version};
use palisade_review::workload::Workloads;

use crate::input::{connectivity, read, report_all, InputArgs, Output};

#[derive(clap::Args)]
pub struct Args {
    /// The policy set before: a file, a directory, git:REV:PATH, or cluster: (the live cluster).
    old: PathBuf,
    /// The policy set after (same forms).
    new: PathBuf,
    /// Manifests both sides share (the cluster, say), added to OLD and to NEW; repeatable.
    /// `--with cluster:` puts the live cluster under both sides (files are applied over it).
    #[arg(long = "with", value_name = "PATH")]
    with: Vec<PathBuf>,
    #[command(flatten)]
    cluster: crate::cluster::ClusterArgs,
    /// Namespace for namespaced objects that name none.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Do not print warnings.
    #[arg(short, long)]
    quiet: bool,
    /// Leave out files and directories matching GLOB, on both sides; repeatable.
    #[arg(long = "exclude", value_name = "GLOB")]
    exclude: Vec<String>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Exit with 1 when any connection is gained (for pull-request checks).
    #[arg(long)]
    exit_code: bool,
}

pub fn run(args: Args) -> u8 {
    let side = |path: &PathBuf| {
        let paths = std::iter::once(path.clone()).chain(args.with.iter().cloned()).collect();
        InputArgs {
            paths,
            cluster: args.cluster.clone(),
            namespace: args.namespace.clone(),
            quiet: args.quiet,
            exclude: args.exclude.clone(),
            dns: Vec::new(),
        }
    };
    // Both sides read first, then their problems printed once: the files they share (--with)
    // would otherwise warn once per side.
    let (old, new) = match (read(&side(&args.old)), read(&side(&args.new))) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let (old, new) = match report_all(&[&old, &new], args.quiet) {
        Ok(c) => (c[0], c[1]),
        Err(code) => return code,
    };
    // Every connection has a pod at one end: without pods nothing is compared, and an
    // empty diff would pass a pull-request check it never made.
    let empty: Vec<String> = [(&args.old, &old), (&args.new, &new)]
        .iter()
        .filter(|(_, c)| c.pods.is_empty())
        .map(|(p, _)| p.display().to_string())
        .collect();
    if !empty.is_empty() {
        eprintln!(
            "error: no pods in {}: a diff compares connections of pods, so it needs the cluster (add it to both sides with --with cluster.yaml; kubectl get pods,namespaces -A -o yaml)",
            empty.join(" and ")
        );
        return crate::EXIT_INVALID;
    }
    let cuts = Cuts::of(&[old, new]);
    let new_w = Workloads::new(new);
    // Only policies changed (the usual pull request): the pods they select, not every pair.
    let d = diff_policies(old, new, &new_w, &cuts).unwrap_or_else(|| {
        let (old_conn, new_conn) = (connectivity(old, cuts.clone()), connectivity(new, cuts));
        let old_w = Workloads::new(old);
        diff(
            &Version { cluster: old, conn: &old_conn, workloads: &old_w },
            &Version { cluster: new, conn: &new_conn, workloads: &new_w },
        )
    });
    match args.output {
        Output::Json => crate::emit(&(serde_json::to_string_pretty(&d).expect("serializable") + "\n")),
        Output::Text => crate::emit(&text(&d)),
    }
    u8::from(args.exit_code && !d.gained.is_empty())
}

/// One line per workload pair: `+ from -> to  ports  (N connection(s) between M endpoint
/// pair(s); e.g. ...)`. A connection is one endpoint pair on one port and protocol.
fn text(d: &Diff) -> String {
    let mut out = String::new();
    for (sign, groups) in [("+", &d.gained), ("-", &d.lost)] {
        for g in groups {
            let _ = writeln!(
                out,
                "{sign} {} -> {}  {}  ({} connection(s) between {} endpoint pair(s); e.g. {} -> {} on {})",
                g.from, g.to, g.ports, g.connections, g.endpoint_pairs, g.example.0, g.example.1, g.example.2
            );
        }
    }
    let total = |gs: &[Group]| gs.iter().map(|g| g.connections).sum::<u64>();
    let _ = writeln!(
        out,
        "gained {} connection(s) in {} workload pair(s); lost {} in {} (a connection: one source, destination, port and protocol)",
        total(&d.gained),
        d.gained.len(),
        total(&d.lost),
        d.lost.len()
    );
    out
}
