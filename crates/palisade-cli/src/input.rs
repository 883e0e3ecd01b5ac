//! Loading the command's paths and reporting problems the same way for every command.

use std::io::IsTerminal;
use std::path::PathBuf;

use palisade_core::cluster::Cluster;
use palisade_core::field::Severity;
use palisade_ingest::BuildOptions;
use palisade_load::diagnostic::Renderer;

/// Options every command that reads manifests shares.
#[derive(clap::Args, Clone, Debug)]
pub struct InputArgs {
    /// Manifests: files, directories (recursive), - for stdin, or cluster: for the live cluster
    /// (files are then applied over it). YAML or JSON, multi-document, kind: List. None: the
    /// cluster of the current kubeconfig context.
    #[arg(value_name = "PATHS")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,
    /// Namespace for namespaced objects that name none (as kubectl apply -n).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Do not print warnings.
    #[arg(short, long)]
    pub quiet: bool,
    /// Leave out files and directories matching GLOB (a path as walked, `charts/**`, or a
    /// file name, `values.yaml`); repeatable.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// A DNS fact for ClusterNetworkPolicy domainNames peers: NAME=ADDRESS[,ADDRESS...], as an
    /// A/AAAA answer (repeatable). Without one for an address, a domainNames peer does not
    /// match it and the trace says the verdict depends on DNS resolution.
    #[arg(long = "dns", value_name = "NAME=ADDRESSES", value_parser = parse_dns_fact)]
    pub dns: Vec<(String, Vec<std::net::IpAddr>)>,
}

/// `api.example.com=198.19.200.10,fd00::10`.
fn parse_dns_fact(s: &str) -> Result<(String, Vec<std::net::IpAddr>), String> {
    let (name, addrs) = s.split_once('=').ok_or("expected NAME=ADDRESS[,ADDRESS...]")?;
    let ips = addrs
        .split(',')
        .map(|a| a.trim().parse().map_err(|_| format!("{a:?} is not an IP address")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.trim().to_string(), ips))
}

/// Output of commands that print for people or for programs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// Loads the cluster, printing problems to stderr. `Err(exit code)` when unusable.
pub fn load(args: &InputArgs) -> Result<Cluster, u8> {
    let load = load_all(args)?;
    Ok(load.cluster.expect("load_all returns Ok only with a cluster"))
}

/// Like [`load`], keeping the sources and decoded objects (for commands that point into them).
pub fn load_all(args: &InputArgs) -> Result<palisade_load::Load, u8> {
    let load = read(args)?;
    report(&load, args.quiet)?;
    Ok(load)
}

/// Reads and decodes the paths (files, directories, `-`, `git:REV:PATH`, `cluster:`, minus `--exclude`)
/// without reporting problems; `Err(exit code)` when they cannot be read.
pub fn read(args: &InputArgs) -> Result<palisade_load::Load, u8> {
    let fail = |e: String| {
        eprintln!("error: {e}");
        crate::EXIT_INVALID
    };
    let exclude = palisade_load::source::Exclude::new(&args.exclude).map_err(|e| fail(e.to_string()))?;
    let (files, from_cluster) = crate::cluster::split(&args.paths);
    let sources = crate::revision::read(&files, &exclude).map_err(fail)?;
    let spinner = crate::progress::spinner(format!("reading {} source(s)", sources.len()));
    let mut decoded = palisade_load::manifest::decode(&sources);
    if from_cluster {
        decoded = crate::cluster::apply_files(
            crate::cluster::read(&args.cluster).map_err(|e| fail(e.to_string()))?,
            decoded,
            args.namespace.as_deref(),
        );
    }
    spinner.set_message("validating and building the cluster");
    let load = palisade_load::object::load_decoded(sources, decoded, &build_options(args));
    spinner.finish_and_clear();
    Ok(load)
}

pub fn build_options(args: &InputArgs) -> BuildOptions {
    let mut dns: std::collections::BTreeMap<String, Vec<std::net::IpAddr>> = Default::default();
    for (name, ips) in &args.dns {
        dns.entry(name.clone()).or_default().extend(ips);
    }
    BuildOptions { default_namespace: args.namespace.clone(), dns }
}

/// Computes connectivity over every probe and address endpoint, with a progress bar on a terminal.
pub fn connectivity(
    cluster: &Cluster,
    cuts: palisade_review::connectivity::Cuts,
) -> palisade_review::connectivity::Connectivity {
    with_progress(cluster, cuts, false)
}

/// [`connectivity`], keeping each probe's sides for lint to read again (the HTML report).
pub fn connectivity_keeping_sides(
    cluster: &Cluster,
    cuts: palisade_review::connectivity::Cuts,
) -> palisade_review::connectivity::Connectivity {
    with_progress(cluster, cuts, true)
}

fn with_progress(
    cluster: &Cluster,
    cuts: palisade_review::connectivity::Cuts,
    keep_sides: bool,
) -> palisade_review::connectivity::Connectivity {
    use palisade_review::connectivity::Connectivity;
    let bar = crate::progress::bar(Connectivity::work(cluster, &cuts), "deciding every pair on every port");
    let tick = || bar.inc(1);
    let c = match keep_sides {
        true => Connectivity::compute_keeping_sides(cluster, cuts, tick),
        false => Connectivity::compute(cluster, cuts, tick),
    };
    bar.finish_and_clear();
    c
}

/// Prints a load's problems; `Err(exit code)` when it yielded no cluster.
pub fn report(load: &palisade_load::Load, quiet: bool) -> Result<&Cluster, u8> {
    report_all(&[load], quiet).map(|mut c| c.remove(0))
}

/// Prints the problems of the loads one command makes (diff's two sides share files), each
/// distinct problem once; `Err(exit code)` when one of them yielded no cluster.
pub fn report_all<'a>(loads: &[&'a palisade_load::Load], quiet: bool) -> Result<Vec<&'a Cluster>, u8> {
    let mut seen = std::collections::HashSet::new();
    for load in loads {
        for text in problem_texts(load, quiet) {
            if seen.insert(text.clone()) {
                eprint!("{text}");
            }
        }
    }
    let mut clusters = Vec::new();
    for load in loads {
        match &load.cluster {
            Some(c) => clusters.push(c),
            None => {
                let n = load.errors();
                eprintln!(
                    "error: {n} error(s) in the input; no verdicts are given for an input that does not fully load"
                );
                return Err(crate::EXIT_INVALID);
            }
        }
    }
    Ok(clusters)
}

/// Each problem of a load as printed (errors rendered with their source line; warnings unless
/// `quiet`), and the count of ignored objects.
fn problem_texts(load: &palisade_load::Load, quiet: bool) -> Vec<String> {
    let renderer = Renderer::new(&load.sources, std::io::stderr().is_terminal());
    let mut out = Vec::new();
    for p in &load.problems {
        if p.severity == Severity::Error {
            out.push(renderer.render(p));
        } else if !quiet {
            let at = p.location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default();
            let help = p.help.as_ref().map(|h| format!("  help: {h}\n")).unwrap_or_default();
            out.push(format!("warning: {at}{}: {}\n{help}", p.object, p.message));
        }
    }
    if !load.ignored.is_empty() && !quiet {
        let kinds: Vec<String> = load.ignored.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        let total: usize = load.ignored.values().sum();
        out.push(format!("warning: ignored {total} object(s) of kinds Palisade does not use: {}\n", kinds.join(", ")));
    }
    out
}
