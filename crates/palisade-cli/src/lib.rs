//! `palisade`: decide, explain and enforce Kubernetes and Calico network policy. The library
//! holds the whole command line; the `palisade` and `kubectl-palisade` binaries only name it.

#![forbid(unsafe_code)]

mod agent;
mod check;
mod cluster;
mod convert;
mod diff;
mod endpoint;
mod generate;
mod graph;
mod input;
mod lab;
mod lint;
mod matrix;
mod meta;
mod progress;
mod reach;
mod revision;
mod select;

use std::process::ExitCode;

use palisade_load::suggestion;

/// Loading and the engine allocate many small values: mimalloc frees them far faster than
/// glibc's allocator (loading 2.9 MB of JSON: 0.13 s instead of 0.19 s of CPU). Declared here so
/// both binaries (`palisade`, `kubectl-palisade`) use it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// `0.1.0 (9666c16b2a1f 2026-12-01)`: the package version and the git revision it was built
/// from (build.rs; `unknown revision` outside a git checkout).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PALISADE_REVISION"), ")");

#[derive(Parser)]
#[command(
    name = "palisade",
    version = VERSION,
    about = "Decide, explain and enforce Kubernetes and Calico network policy, exactly as a conformant plugin does"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decide one connection and explain why.
    Check(check::Args),
    /// Decide every pod pair for one port and protocol, or every port at once (`--all-ports`:
    /// each pair with the port ranges it may use).
    Matrix(matrix::Args),
    /// Convert Kubernetes NetworkPolicies to Calico, or Calico policies to Kubernetes where expressible.
    Convert(convert::Args),
    /// Keep this node's nftables table in step with a directory of manifests.
    Agent(agent::Args),
    /// Build the cluster from network namespaces on this machine, enforce it with nftables,
    /// probe every pair and compare with the engine (needs root).
    Lab(lab::Args),
    /// List the pods a Calico selector expression selects.
    Select(select::Args),
    /// Find what in a policy set likely does not do what was meant (stable codes; text, JSON or SARIF).
    Lint(lint::Args),
    /// Connections gained and lost between two policy sets (directories, files, git:REV:PATH).
    Diff(diff::Args),
    /// Everything a pod can open, or everything that can open it; multi-hop paths.
    Reach(reach::Args),
    /// Who can talk to whom: Graphviz, SVG, JSON, or a self-contained HTML report.
    Graph(graph::Args),
    /// Write least-privilege policies from observed flows (and check them), or the egress
    /// policies that ingress policies need (--complement-egress).
    Generate(generate::Args),
    /// Print the version and the git revision it was built from (as --version).
    Version,
    /// Print a shell completion script (bash: `source <(palisade completion bash)`).
    Completion(meta::CompletionArgs),
    /// Write the man pages (palisade.1 and one per command) into a directory.
    Man(meta::ManArgs),
}

/// Exit codes: 0 ran, 1 denied (check --exit-code), 2 invalid input or usage.
pub const EXIT_INVALID: u8 = 2;

/// The command line as `bin_name` (`palisade`, or `kubectl palisade` for the kubectl plugin)
/// shows it in usage lines and help.
pub fn command(bin_name: &'static str) -> clap::Command {
    Cli::command().bin_name(bin_name)
}

/// Parses the process's arguments and runs the command; usage and help name `bin_name`.
pub fn main(bin_name: &'static str) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("PALISADE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::from_arg_matches(&command(bin_name).get_matches()).unwrap_or_else(|e| e.exit());
    let code = match cli.command {
        Command::Check(a) => check::run(a),
        Command::Matrix(a) => matrix::run(a),
        Command::Select(a) => select::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Lab(a) => lab::run(a),
        Command::Agent(a) => agent::run(a),
        Command::Lint(a) => lint::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Reach(a) => reach::run(a),
        Command::Graph(a) => graph::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Version => {
            emit(&format!("palisade {VERSION}\n"));
            0
        }
        Command::Completion(a) => meta::completion(a, bin_name),
        Command::Man(a) => meta::man(a),
    };
    ExitCode::from(code)
}

/// Writes to stdout; a closed pipe (`| head`) ends output quietly instead of panicking.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}
