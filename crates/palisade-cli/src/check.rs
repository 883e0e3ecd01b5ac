//! `palisade check`: one connection, its verdict, and the reasoning.

use std::fmt::Write as _;
use std::net::IpAddr;

use palisade_core::cluster::Cluster;
use palisade_core::port::Protocol;
use palisade_core::service::decide_service;
use palisade_core::verdict::{decide, Connection, Decision, Endpoint, PolicyEval, Side, Step, Verdict};
use serde::Serialize;

use crate::endpoint::{resolve, unknown_service, Named};
use crate::input::{load, InputArgs, Output};
use palisade_review::outside::pieces;

#[derive(clap::Args)]
pub struct Args {
    /// Source: ns/pod, a workload (ns/deployment/web: one of its pods), node NAME, a piece of
    /// the outside world (outside CIDR [except CIDR, ...]), or an IP.
    #[arg(long)]
    from: String,
    /// Destination: the same forms as --from, or ns/svc/NAME for a Service (an IP that is a
    /// ClusterIP is DNATed).
    #[arg(long)]
    to: String,
    /// Destination port: a number, or a port name of the destination pod or Service
    /// (required for TCP, UDP and SCTP; other protocols have none). Every port as diff and
    /// reach print it also sets the protocol: PORT/PROTOCOL (53/UDP; a stretch, 81-442/TCP, is
    /// decided at its first port), or a protocol without ports (ICMP, ICMPv6, protocol 47).
    #[arg(long)]
    port: Option<String>,
    /// TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite, or a protocol number 1-255 (47: GRE).
    #[arg(long, default_value = "TCP")]
    protocol: Protocol,
    /// Source port (only Calico rules can match it).
    #[arg(long, default_value_t = palisade_core::verdict::EPHEMERAL_PORT)]
    source_port: u16,
    /// ICMP type (default: echo request).
    #[arg(long)]
    icmp_type: Option<u8>,
    /// ICMP code.
    #[arg(long, default_value_t = 0)]
    icmp_code: u8,
    /// Also decide with the staged Calico policies applied, and say what would change.
    #[arg(long)]
    staged: bool,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Exit with 1 when the connection is denied.
    #[arg(long)]
    exit_code: bool,
    #[command(flatten)]
    input: InputArgs,
}

/// A destination as the user named it.
enum Target {
    Side(Side),
    Service { id: palisade_core::cluster::ServiceId, address: Option<IpAddr> },
}

#[derive(Serialize)]
struct JsonOut<'a> {
    verdict: Verdict,
    from: &'a str,
    to: &'a str,
    port: u16,
    protocol: Protocol,
    trace: &'a [Step],
}

pub fn run(mut args: Args) -> u8 {
    if let Err(msg) = port_with_protocol(&mut args) {
        eprintln!("error: {msg}");
        return crate::EXIT_INVALID;
    }
    let cluster = match load(&args.input) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.staged {
        return run_staged(&cluster, &args);
    }
    match evaluate(&cluster, &args) {
        Ok((decision, port)) => {
            match args.output {
                Output::Json => {
                    let out = JsonOut {
                        verdict: decision.verdict,
                        from: &args.from,
                        to: &args.to,
                        port,
                        protocol: args.protocol,
                        trace: &decision.trace,
                    };
                    crate::emit(&(serde_json::to_string_pretty(&out).expect("serializable") + "\n"));
                }
                Output::Text => crate::emit(&render(&args, port, &decision, cluster.uses_calico())),
            }
            u8::from(args.exit_code && decision.verdict == Verdict::Deny)
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            crate::EXIT_INVALID
        }
    }
}

/// `--port 53/UDP` (and `81-442/TCP`), or `--port ICMP` (`protocol 47`), as diff and reach
/// print ports: the port, and the protocol unless `--protocol` names another than the default.
fn port_with_protocol(args: &mut Args) -> Result<(), String> {
    let Some(given) = args.port.clone() else { return Ok(()) };
    let (port, protocol) = match (given.split_once('/'), portless(&given)) {
        (_, Some(protocol)) => (None, protocol),
        (Some((port, protocol)), None) => {
            (Some(port), protocol.parse::<Protocol>().map_err(|e| format!("--port {given}: {e}"))?)
        }
        (None, None) => return Ok(()),
    };
    if args.protocol != Protocol::TCP && args.protocol != protocol {
        return Err(format!("--port {given} says {protocol}, --protocol says {}", args.protocol));
    }
    args.protocol = protocol;
    args.port = port.map(|port| {
        let first = port.split_once('-').map_or(port, |(first, _)| first);
        if first != port {
            eprintln!("note: --port {given}: every port of the stretch is decided alike; deciding {first}");
        }
        first.to_string()
    });
    Ok(())
}

/// A protocol without ports exactly as diff and reach print it in place of a port (`ICMP`,
/// `UDPLite`, `protocol 47`): never a number or a port name, which are ports.
fn portless(printed: &str) -> Option<Protocol> {
    let p: Protocol = printed.parse().ok()?;
    (!p.has_ports() && p.to_string() == printed).then_some(p)
}

/// Decides with and without the staged policies and reports the difference.
fn run_staged(cluster: &Cluster, args: &Args) -> u8 {
    let staged = cluster.with_staged();
    let (now, then) = match (evaluate(cluster, args), evaluate(&staged, args)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(msg), _) | (_, Err(msg)) => {
            eprintln!("error: {msg}");
            return crate::EXIT_INVALID;
        }
    };
    let change = if now.0.verdict == then.0.verdict { "no change" } else { "would change" };
    match args.output {
        Output::Json => {
            let out = serde_json::json!({
                "enforced": now.0, "staged": then.0, "changes": now.0.verdict != then.0.verdict,
                "staged_policies": cluster.staged.len(),
            });
            crate::emit(&(serde_json::to_string_pretty(&out).expect("serializable") + "\n"));
        }
        Output::Text => {
            let mut out = format!(
                "staged policies ({}): {} -> {} ({change})\n\nenforced now:\n",
                cluster.staged.len(),
                now.0.verdict.as_str(),
                then.0.verdict.as_str()
            );
            out += &render(args, now.1, &now.0, true);
            out += "\nwith staged policies applied:\n";
            out += &render(args, then.1, &then.0, true);
            crate::emit(&out);
        }
    }
    u8::from(args.exit_code && then.0.verdict == Verdict::Deny)
}

fn evaluate(cluster: &Cluster, args: &Args) -> Result<(Decision, u16), String> {
    let src = match parse_target(cluster, &args.from, "--from")? {
        Target::Side(s) => s,
        Target::Service { .. } => {
            return Err("--from must be a pod or an IP; a Service never originates connections".into())
        }
    };
    let dst = parse_target(cluster, &args.to, "--to")?;
    let port = match (&args.port, args.protocol.has_ports()) {
        (Some(p), true) => resolve_port(cluster, p, args.protocol, &dst)?,
        (None, true) => return Err(format!("--port is required for {}", args.protocol)),
        (Some(p), false) => {
            let icmp = matches!(args.protocol, Protocol::ICMP | Protocol::ICMPv6);
            let hint = if icmp { " (use --icmp-type and --icmp-code)" } else { "" };
            return Err(format!("--port {p}: {} has no ports{hint}", args.protocol));
        }
        (None, false) => 0,
    };
    let placeholder = Side { endpoint: Endpoint::External, ip: None };
    let mut conn = Connection::new(src, placeholder, port, args.protocol);
    conn.src_port = args.source_port;
    conn.icmp_type = args.icmp_type.unwrap_or(conn.icmp_type);
    conn.icmp_code = args.icmp_code;
    let decision = match dst {
        Target::Side(dst) => decide(cluster, &Connection { dst, ..conn }),
        Target::Service { id, address } => decide_service(cluster, &conn, id, address),
    };
    Ok((decision, port))
}

fn parse_target(cluster: &Cluster, s: &str, flag: &str) -> Result<Target, String> {
    if let Some(id) = s.parse::<IpAddr>().ok().and_then(|ip| cluster.service_by_ip(ip)) {
        return Ok(Target::Service { id, address: s.parse().ok() });
    }
    if let [ns, "svc" | "service", name] = s.split('/').collect::<Vec<_>>().as_slice() {
        return cluster
            .service(ns, name)
            .map(|id| Target::Service { id, address: None })
            .ok_or_else(|| format!("{flag} {s}: {}", unknown_service(cluster, ns, name)));
    }
    let resolved = resolve(cluster, &pieces(cluster), s).map_err(|e| format!("{flag} {s}: {e}"))?;
    resolved.tell(flag);
    Ok(Target::Side(match resolved.named {
        Named::Pod(p) => Side::pod(cluster, p),
        Named::Address(ip) => Side::ip(cluster, ip),
    }))
}

fn resolve_port(cluster: &Cluster, port: &str, protocol: Protocol, dst: &Target) -> Result<u16, String> {
    if let Ok(n) = port.parse::<u16>() {
        return if n == 0 { Err("--port must be 1-65535".into()) } else { Ok(n) };
    }
    let found = match dst {
        Target::Side(Side { endpoint: Endpoint::Pod(p), .. }) => cluster.pods[*p]
            .ports
            .iter()
            .find(|c| c.name.as_deref() == Some(port) && c.protocol == protocol)
            .map(|c| c.port),
        Target::Service { id, .. } => cluster.services[*id]
            .ports
            .iter()
            .find(|sp| sp.name.as_deref() == Some(port) && sp.protocol == protocol)
            .map(|sp| sp.port),
        Target::Side(_) => None,
    };
    found.ok_or_else(|| {
        let declared: Vec<String> = match dst {
            Target::Side(Side { endpoint: Endpoint::Pod(p), .. }) => cluster.pods[*p]
                .ports
                .iter()
                .filter(|c| c.protocol == protocol)
                .filter_map(|c| c.name.clone())
                .collect(),
            Target::Service { id, .. } => cluster.services[*id]
                .ports
                .iter()
                .filter(|sp| sp.protocol == protocol)
                .filter_map(|sp| sp.name.clone())
                .collect(),
            Target::Side(_) => Vec::new(),
        };
        format!(
            "--port {port}: the destination declares no {protocol} port named {port:?}{}",
            crate::suggestion::did_you_mean(&crate::suggestion::closest(port, declared))
        )
    })
}

fn render(args: &Args, port: u16, d: &Decision, tiers: bool) -> String {
    let mut out = String::new();
    let head = d.verdict.as_str().to_ascii_uppercase();
    let what = if args.protocol.has_ports() {
        format!("port {port}/{}", args.protocol)
    } else if !matches!(args.protocol, Protocol::ICMP | Protocol::ICMPv6) {
        args.protocol.to_string()
    } else {
        // The type decided: the one given, else an echo request (8; 128 for ICMPv6).
        let echo = if args.protocol == Protocol::ICMPv6 { 128 } else { 8 };
        let given = args.icmp_type.is_some();
        let type_ = args.icmp_type.unwrap_or(echo);
        let note = if given { "" } else { " (echo request)" };
        format!("{} type {type_}{note} code {}", args.protocol, args.icmp_code)
    };
    let _ = writeln!(out, "{head}  {} -> {} {what}", args.from, args.to);
    render_steps(&mut out, &d.trace, 1, tiers);
    let _ = writeln!(out, "verdict: {}", d.verdict.as_str());
    out
}

fn render_steps(out: &mut String, steps: &[Step], depth: usize, tiers: bool) {
    let pad = "  ".repeat(depth);
    for step in steps {
        match step {
            Step::SelfConnection { pod, reason } => {
                let _ = writeln!(out, "{pad}self: {pod} to itself is always allowed: {reason}");
            }
            Step::OwnNode { node, reason, .. } => {
                let _ = writeln!(out, "{pad}from its own node {node}: always allowed: {reason}");
            }
            Step::Replicas { reason, .. } => {
                let _ = writeln!(out, "{pad}replicas: {reason}");
            }
            Step::ExternalName { reason, .. } => {
                let _ = writeln!(out, "{pad}no backends: {reason}");
            }
            Step::NotEnforced { direction, endpoint, reason } => {
                let _ = writeln!(out, "{pad}{direction} at {endpoint}: not enforced ({reason})");
            }
            Step::Dnat { service, address, port, protocol, target_port, backends } => {
                let _ = writeln!(out, "{pad}DNAT: Service {service} {address}:{port}/{protocol} -> targetPort {target_port} on {backends} backend(s); policy sees the backends, never the ClusterIP");
            }
            Step::Unreachable { reason } => {
                let _ = writeln!(out, "{pad}unreachable: {reason}");
            }
            Step::Backend(b) => {
                let ip = b.ip.clone().unwrap_or_else(|| "(no IP)".into());
                let _ = writeln!(out, "{pad}backend {} at {ip}:{}: {}", b.endpoint, b.port, b.verdict.as_str());
                render_steps(out, &b.trace, depth + 1, tiers);
            }
            Step::Policies { direction, endpoint, allowed, reason, tiers: tier_evals, policies, .. } if tiers => {
                let verdict = if *allowed { "allowed" } else { "denied" };
                let _ = writeln!(out, "{pad}{direction} at {endpoint}: {verdict}: {reason}");
                for t in tier_evals {
                    let _ = writeln!(out, "{pad}  tier {}: {}", t.tier, t.outcome);
                    for p in policies.iter().filter(|p| p.tier == t.tier) {
                        render_calico_policy(out, p, depth + 2);
                    }
                }
            }
            Step::Policies { direction, endpoint, isolated, allowed, policies, .. } => {
                if !isolated {
                    let _ = writeln!(out, "{pad}{direction} at {endpoint}: allowed (no NetworkPolicy selects it for {direction}: not isolated)");
                    continue;
                }
                let verdict = if *allowed { "allowed" } else { "denied" };
                let _ = writeln!(
                    out,
                    "{pad}{direction} at {endpoint}: {verdict}; isolated by {} polic{}",
                    policies.len(),
                    if policies.len() == 1 { "y" } else { "ies" }
                );
                for p in policies {
                    render_policy(out, p, depth + 1);
                }
                if !allowed {
                    let _ = writeln!(out, "{pad}  -> no {direction} rule of these policies allows it");
                }
            }
        }
    }
}

fn render_policy(out: &mut String, p: &PolicyEval, depth: usize) {
    let pad = "  ".repeat(depth);
    let mark = if p.allowed { "+" } else { "-" };
    let at = p.location.as_deref().map(|l| format!("  ({l})")).unwrap_or_default();
    let _ = writeln!(out, "{pad}{mark} {}{at}", p.policy);
    if p.rules.is_empty() {
        let _ = writeln!(out, "{pad}    no rules: isolates and allows nothing");
    }
    for r in &p.rules {
        let at = r.location.as_deref().map(|l| format!(" ({l})")).unwrap_or_default();
        let m = if r.matched { "matches" } else { "no match" };
        let _ = writeln!(out, "{pad}    rule [{}]{at}: {m}: {}", r.index, r.detail);
    }
}

fn render_calico_policy(out: &mut String, p: &PolicyEval, depth: usize) {
    let pad = "  ".repeat(depth);
    let order = p.order.map_or("none (last)".to_string(), |o| o.to_string());
    let at = p.location.as_deref().map(|l| format!("  ({l})")).unwrap_or_default();
    let mark = match (p.reached, p.outcome) {
        (false, _) => "·",
        (true, Some(palisade_core::policy::Action::Allow)) => "+",
        (true, Some(_)) => "-",
        (true, None) => " ",
    };
    let reached = if p.reached { "" } else { " (not reached: decided earlier)" };
    let _ = writeln!(out, "{pad}{mark} {} order {order}{at}{reached}", p.policy);
    if !p.reached {
        return;
    }
    if p.rules.is_empty() {
        let _ = writeln!(out, "{pad}    no rules");
    }
    for r in &p.rules {
        let at = r.location.as_deref().map(|l| format!(" ({l})")).unwrap_or_default();
        let m = if r.matched { "matches" } else { "no match" };
        let decides = if r.decisive { "  <- decides" } else { "" };
        let _ = writeln!(out, "{pad}    rule [{}] {}{at}: {m}: {}{decides}", r.index, r.action, r.detail);
    }
}
