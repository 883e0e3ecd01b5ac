//! Loading the command's paths and reporting problems the same way for every command.

use std::io::IsTerminal;
use std::path::PathBuf;

use palisade_core::build::BuildOptions;
use palisade_core::cluster::Cluster;
use palisade_core::field::Severity;
use palisade_load::diagnostic::Renderer;

/// Options every command that reads manifests shares.
#[derive(clap::Args, Clone, Debug)]
pub struct InputArgs {
    /// Manifests: files, directories (recursive), or - for stdin. YAML or JSON, multi-document, kind: List.
    #[arg(required = true, value_name = "PATHS")]
    pub paths: Vec<PathBuf>,
    /// Namespace for namespaced objects that name none (as kubectl apply -n).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Do not print warnings.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Output of commands that print for people or for programs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// Loads the cluster, printing problems to stderr. `Err(exit code)` when unusable.
pub fn load(args: &InputArgs) -> Result<Cluster, u8> {
    let opts = BuildOptions { default_namespace: args.namespace.clone() };
    let load = match palisade_load::load_paths(&args.paths, &opts) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(crate::EXIT_INVALID);
        }
    };
    report(&load, args.quiet)?;
    Ok(load.cluster.expect("report returns Ok only with a cluster"))
}

/// Prints a load's problems; `Err(exit code)` when it yielded no cluster.
pub fn report(load: &palisade_load::Load, quiet: bool) -> Result<&Cluster, u8> {
    let renderer = Renderer::new(&load.sources, std::io::stderr().is_terminal());
    for p in &load.problems {
        if p.severity == Severity::Error {
            eprint!("{}", renderer.render(p));
        } else if !quiet {
            let at = p.location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default();
            eprintln!("warning: {at}{}: {}", p.object, p.message);
            if let Some(h) = &p.help {
                eprintln!("  help: {h}");
            }
        }
    }
    if !load.ignored.is_empty() && !quiet {
        let kinds: Vec<String> = load.ignored.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        let total: usize = load.ignored.values().sum();
        eprintln!("warning: ignored {total} object(s) of kinds Palisade does not use: {}", kinds.join(", "));
    }
    match &load.cluster {
        Some(c) => Ok(c),
        None => {
            let n = load.errors();
            eprintln!("error: {n} error(s) in the input; no verdicts are given for an input that does not fully load");
            Err(crate::EXIT_INVALID)
        }
    }
}
