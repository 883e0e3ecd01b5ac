//! `palisade select`: the pods a Calico selector expression selects.

use palisade_core::expr::Expr;

use crate::input::{load, InputArgs, Output};

#[derive(clap::Args)]
pub struct Args {
    /// A Calico selector, e.g. 'app == "web" && !has(canary)'. Pods carry Calico's
    /// pseudo-labels too: projectcalico.org/namespace, pcns.<namespace label>, pcsa.<service account label>.
    #[arg(value_name = "EXPR")]
    expr: String,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(flatten)]
    input: InputArgs,
}

pub fn run(args: Args) -> u8 {
    let expr = match Expr::parse(&args.expr) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: invalid selector: {e}\n  {}\n  {}^", args.expr, " ".repeat(e.offset));
            return crate::EXIT_INVALID;
        }
    };
    let cluster = match load(&args.input) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Host-network pods have no Calico workload endpoint: selectors never pick them.
    let mut picked: Vec<String> = cluster
        .pod_ids()
        .filter(|&p| cluster.is_policy_subject(p) && expr.matches(&cluster.calico_labels(p)))
        .map(|p| cluster.pod_key(p))
        .collect();
    picked.sort();
    match args.output {
        Output::Json => crate::emit(&(serde_json::to_string_pretty(&picked).expect("strings") + "\n")),
        Output::Text => {
            let mut out = String::new();
            for p in &picked {
                out.push_str(p);
                out.push('\n');
            }
            crate::emit(&out);
            if picked.is_empty() {
                eprintln!("no pod matches {expr}");
            }
        }
    }
    0
}
