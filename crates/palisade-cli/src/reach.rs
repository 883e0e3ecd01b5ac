//! `palisade reach`: what an endpoint can open, what can open it, and lateral-movement paths.

use std::fmt::Write as _;

use palisade_review::connectivity::{Address, AddressKind, Connectivity, Cuts};
use palisade_review::one_pod::PodConnectivity;
use palisade_review::reach::{hops, reach, reach_pod, Hop, Subject, Target};
use palisade_review::workload::Workloads;
use serde_json::json;

use crate::endpoint::{resolve, Named};
use crate::input::{connectivity, load, InputArgs, Output};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("endpoint").required(true).args(["from", "to"])))]
pub struct Args {
    /// Everything this endpoint can open: what an attacker who owns it reaches. A pod (ns/pod),
    /// a workload (ns/deployment/web: one of its pods), node NAME, or a piece of the outside
    /// world as reach and diff print it (outside 0.0.0.0/0 ...).
    #[arg(long)]
    from: Option<String>,
    /// Everything that can open this endpoint (the same forms as --from).
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
    let (flag, name, outbound) = match (&args.from, &args.to) {
        (Some(f), _) => ("--from", f.clone(), true),
        (_, Some(t)) => ("--to", t.clone(), false),
        _ => unreachable!("clap requires one"),
    };
    if cluster.pods.is_empty() {
        eprintln!("error: the input holds no pods: reach needs the cluster (kubectl get pods,namespaces -A -o yaml)");
        return crate::EXIT_INVALID;
    }
    let cuts = Cuts::of(&[&cluster]);
    let resolved = match resolve(&cluster, &cuts.pieces, &name) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {flag} {name}: {e}");
            return crate::EXIT_INVALID;
        }
    };
    if let Named::Pod(_) = resolved.named {
        resolved.tell(flag); // a workload stands for one of its pods; an address for its endpoint
    }
    let workloads = Workloads::new(&cluster);
    // A pod's own reach needs its row (or column) of each matrix, not every pair; hops
    // follow connections through the pods reached, so they need every pair.
    let (shown, targets, paths, addresses) = match (resolved.named, args.hops) {
        (Named::Pod(p), None) => {
            let one = PodConnectivity::compute(&cluster, cuts, p, outbound);
            (cluster.pod_key(p), reach_pod(&cluster, &one, &workloads, outbound), None, one.addresses)
        }
        (named, hop_limit) => {
            let conn = connectivity(&cluster, cuts.clone());
            let subject = match subject(named, &cuts, &conn) {
                Ok(subject) => subject,
                Err(ip) => {
                    eprintln!(
                        "error: {flag} {name}: {ip} is no pod, node or piece of the outside world of this cluster"
                    );
                    return crate::EXIT_INVALID;
                }
            };
            let targets = reach(&cluster, &conn, &workloads, subject, outbound);
            let paths = hop_limit.map(|n| hops(&cluster, &conn, &workloads, subject, n));
            (subject.name(&cluster, &conn), targets, paths, conn.addresses)
        }
    };
    print(&args, outbound, &shown, &targets, paths, &addresses);
    0
}

/// What the endpoint stands for in the connectivity: the pod, else the address endpoint its
/// address is in (a node, else the piece of the outside world holding it); `Err(address)`
/// when there is none.
fn subject(named: Named, cuts: &Cuts, conn: &Connectivity) -> Result<Subject, std::net::IpAddr> {
    match named {
        Named::Pod(p) => Ok(Subject::Pod(p)),
        Named::Address(ip) => {
            let by_node = conn.addresses.iter().position(|a| a.kind == AddressKind::Node && a.address == ip);
            let piece = cuts.pieces.iter().find(|p| p.contains(ip)).and_then(|p| conn.address(&p.to_string()));
            by_node.or(piece).map(Subject::Address).ok_or(ip)
        }
    }
}

/// Prints what `reach` found, as text or JSON.
fn print(args: &Args, outbound: bool, shown: &str, targets: &[Target], paths: Option<Vec<Hop>>, addresses: &[Address]) {
    if args.output == Output::Json {
        let key = if outbound { "reaches" } else { "reached_by" };
        let v = json!({ "endpoint": shown, key: targets, "hops": paths });
        crate::emit(&(serde_json::to_string_pretty(&v).expect("serializable") + "\n"));
        return;
    }
    let mut out = String::new();
    let verb = if outbound { "can open" } else { "can be opened by" };
    let _ = writeln!(out, "{shown} {verb} {}{}", count(targets, addresses), if targets.is_empty() { "" } else { ":" });
    for t in targets {
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
}

/// `3 workload(s), 1 node(s) and 2 piece(s) of the outside world` (parts that are zero left out).
fn count(targets: &[Target], addresses: &[Address]) -> String {
    let kind = |t: &Target| addresses.iter().find(|a| a.name == t.name).map(|a| a.kind);
    let of = |k: Option<AddressKind>| targets.iter().filter(|t| kind(t) == k).count();
    let parts: Vec<String> = [
        (None, "workload(s)"),
        (Some(AddressKind::Node), "node(s)"),
        (Some(AddressKind::Outside), "piece(s) of the outside world"),
    ]
    .into_iter()
    .filter(|(k, _)| of(*k) > 0)
    .map(|(k, what)| format!("{} {what}", of(k)))
    .collect();
    match parts.as_slice() {
        [] => "nothing".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
