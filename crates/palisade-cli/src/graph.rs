//! `palisade graph`: who can talk to whom, as Graphviz, SVG, or an offline HTML report.

use std::path::PathBuf;

use palisade_review::connectivity::Cuts;
use palisade_review::graph::Graph;
use palisade_review::lint::Scope;
use palisade_review::overview::Overview;
use palisade_review::report::{html, svg};
use palisade_review::workload::Workloads;

use crate::input::{connectivity, connectivity_keeping_sides, load_all, InputArgs};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = Format::Dot)]
    output: Format,
    /// What `--output json` lists: `namespaces` (the default) is the aggregated view the HTML
    /// report draws (namespaces, then each one's workloads; schemas/overview.schema.json);
    /// `workloads` lists every workload pair with each port's deciding rules
    /// (schemas/graph.schema.json), one engine trace per pair and port: expensive at
    /// thousands of workloads (minutes at 10,000 pods). Dot and SVG always draw workloads.
    #[arg(long, value_enum, default_value_t = Detail::Namespaces)]
    detail: Detail,
    /// Write here instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Detail {
    Namespaces,
    Workloads,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Dot,
    Svg,
    Html,
    Json,
}

pub fn run(args: Args) -> u8 {
    let load = match load_all(&args.input) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let cluster = load.cluster.as_ref().expect("loaded");
    let workloads = Workloads::new(cluster);
    // The report's lint reads the sides its matrices were made of again.
    let conn = match args.output {
        Format::Html => connectivity_keeping_sides(cluster, Cuts::of(&[cluster])),
        _ => connectivity(cluster, Cuts::of(&[cluster])),
    };
    let text = match args.output {
        Format::Dot => Graph::new(cluster, &conn, &workloads).dot(),
        Format::Svg => svg(&Graph::new(cluster, &conn, &workloads)),
        Format::Json if args.detail == Detail::Workloads => {
            serde_json::to_string_pretty(&Graph::new(cluster, &conn, &workloads)).expect("serializable") + "\n"
        }
        Format::Json => serde_json::to_string(&Overview::new(cluster, &conn, &workloads)).expect("serializable") + "\n",
        Format::Html => {
            // Namespaces and workloads, never pod pairs: the report stays small at any size.
            let spinner = crate::progress::spinner("laying out the report");
            let overview = Overview::new(cluster, &conn, &workloads);
            spinner.finish_and_clear();
            let findings = crate::lint::findings(&load, &Scope::of(&conn), &workloads);
            let shown: Vec<String> = args.input.paths.iter().map(|p| p.display().to_string()).collect();
            html(&format!("Palisade report: {}", shown.join(" ")), &overview, &findings)
        }
    };
    match &args.out {
        None => crate::emit(&text),
        Some(path) => {
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("error: {}: {e}", path.display());
                return crate::EXIT_INVALID;
            }
        }
    }
    0
}
