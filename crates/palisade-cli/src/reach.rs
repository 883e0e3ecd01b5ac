//! `palisade reach`: what a pod can open, what can open it, and lateral-movement paths.

use std::fmt::Write as _;

use palisade_review::probe::probes;
use palisade_review::reach::{hops, reach};
use palisade_review::workload::Workloads;
use serde_json::json;

use crate::input::{connectivity, load, InputArgs, Output};

#[derive(clap::Args)]
pub struct Args {
    /// Everything this pod (ns/pod) can open: what an attacker who owns it reaches.
    #[arg(long, conflicts_with = "to", required_unless_present = "to")]
    from: Option<String>,
    /// Everything that can open this pod (ns/pod).
    #[arg(long)]
    to: Option<String>,
    /// With --from: follow connections through the pods reached, up to N hops.
    #[arg(long, requires = "from")]
    hops: Option<usize>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(flatten)]
    input: InputArgs,
}

pub fn run(args: Args) -> u8 {
    let cluster = match load(&args.input) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (name, outbound) = match (&args.from, &args.to) {
        (Some(f), _) => (f.clone(), true),
        (_, Some(t)) => (t.clone(), false),
        _ => unreachable!("clap requires one"),
    };
    let Some(pod) = name.split_once('/').and_then(|(ns, p)| cluster.pod(ns, p)) else {
        eprintln!("error: no pod {name} (write namespace/pod)");
        return crate::EXIT_INVALID;
    };
    let workloads = Workloads::new(&cluster);
    let conn = connectivity(&cluster, probes(&cluster));
    let targets = reach(&cluster, &conn, &workloads, pod, outbound);
    let paths = args.hops.map(|n| hops(&cluster, &conn, &workloads, pod, n));
    if args.output == Output::Json {
        let key = if outbound { "reaches" } else { "reached_by" };
        let v = json!({ "pod": name, key: targets, "hops": paths });
        crate::emit(&(serde_json::to_string_pretty(&v).expect("serializable") + "\n"));
        return 0;
    }
    let mut out = String::new();
    let verb = if outbound { "can open" } else { "can be opened by" };
    let _ = writeln!(out, "{name} {verb} {} workload(s) and address block(s):", targets.len());
    for t in &targets {
        let pods = if t.of > 1 { format!(" ({}/{} pods)", t.pods, t.of) } else { String::new() };
        let _ = writeln!(out, "  {}{pods}: {}", t.name, t.ports);
    }
    if let Some(paths) = paths {
        let _ =
            writeln!(out, "within {} hop(s), following connections through the pods reached:", args.hops.unwrap_or(0));
        for h in paths {
            let steps: Vec<String> = h.path.iter().skip(1).map(|(pod, ports)| format!("-[{ports}]-> {pod}")).collect();
            let _ = writeln!(out, "  {} hop(s): {}  via {} {}", h.hops, h.workload, h.path[0].0, steps.join(" "));
        }
    }
    crate::emit(&out);
    0
}
