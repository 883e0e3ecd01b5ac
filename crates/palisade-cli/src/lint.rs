//! `palisade lint`: what in a policy set likely does not do what its author meant.

use std::io::IsTerminal;

use palisade_core::field::Severity;
use palisade_load::diagnostic::Renderer;
use palisade_review::connectivity::Cuts;
use palisade_review::lint::{check, lint_with_progress, sarif::sarif, Finding, Scope, CHECKS};
use palisade_review::workload::Workloads;

use crate::input::{load_all, InputArgs};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Exit with 1 when a finding of this severity or worse remains.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    fail_on: FailOn,
    /// Do not report this check (code such as PAL005, or name such as any-peer); repeatable.
    #[arg(long, value_name = "CHECK")]
    allow: Vec<String>,
    /// List the checks and exit.
    #[arg(long, exclusive = true)]
    list_checks: bool,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Text,
    Json,
    Sarif,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum FailOn {
    Error,
    Warning,
    Never,
}

pub fn run(args: Args) -> u8 {
    if args.list_checks {
        let lines: Vec<String> = CHECKS
            .iter()
            .map(|c| format!("{}  {:<28} {:<8} {}\n", c.code, c.name, severity(c.severity), c.summary))
            .collect();
        crate::emit(&lines.concat());
        return 0;
    }
    let input = args.input;
    for a in &args.allow {
        if check(a).is_none() {
            let names = palisade_review::lint::CHECKS.iter().flat_map(|c| [c.code, c.name]);
            let near = crate::suggestion::closest(a, names);
            eprintln!(
                "error: --allow {a}: no such check{} (palisade lint --list-checks lists them)",
                crate::suggestion::did_you_mean(&near)
            );
            return crate::EXIT_INVALID;
        }
    }
    // Loader warnings become PAL000 findings instead of stderr lines.
    let quiet = InputArgs { quiet: true, ..input };
    let load = match load_all(&quiet) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let cluster = load.cluster.as_ref().expect("loaded");
    let workloads = Workloads::new(cluster);
    // The checks name probes and address endpoints and decide what they need themselves:
    // no connectivity (every pair on every probe) is computed for them.
    let scope = Scope::new(cluster, Cuts::of(&[cluster]));
    let mut findings = findings(&load, &scope, &workloads);
    let allowed: Vec<&str> = args.allow.iter().filter_map(|a| check(a)).map(|c| c.code).collect();
    findings.retain(|f| !allowed.contains(&f.code));
    match args.output {
        Format::Text => crate::emit(&text(&load, &findings)),
        Format::Json => crate::emit(&(serde_json::to_string_pretty(&findings).expect("serializable") + "\n")),
        Format::Sarif => crate::emit(&(serde_json::to_string_pretty(&sarif(&findings)).expect("serializable") + "\n")),
    }
    let worst = findings.iter().map(|f| f.severity).max();
    let fails = match args.fail_on {
        FailOn::Never => false,
        FailOn::Warning => worst.is_some(),
        FailOn::Error => worst == Some(Severity::Error),
    };
    u8::from(fails)
}

/// The loader's warnings (as PAL000) and every check's findings, with a spinner on a terminal.
pub fn findings(load: &palisade_load::Load, scope: &Scope, workloads: &Workloads) -> Vec<Finding> {
    let cluster = load.cluster.as_ref().expect("only a loaded cluster is linted");
    let mut findings: Vec<Finding> = load.problems.iter().map(Finding::from_problem).collect();
    let spinner = crate::progress::spinner("lint");
    findings.extend(lint_with_progress(cluster, &load.inputs, scope, workloads, &mut |p| {
        spinner.set_message(format!("lint: {p}"))
    }));
    spinner.finish_and_clear();
    findings
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn text(load: &palisade_load::Load, findings: &[Finding]) -> String {
    let renderer = Renderer::new(&load.sources, std::io::stdout().is_terminal());
    let mut out: String = findings.iter().map(|f| renderer.render(&f.to_problem())).collect();
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    out.push_str(&format!("{} error(s), {} warning(s)\n", count(Severity::Error), count(Severity::Warning)));
    out
}
