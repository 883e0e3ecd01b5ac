//! Checks on Calico's ordered evaluation: rules that never get to decide, rules that can never
//! match, policies ordered only by name, and Pass with nowhere to go.

use std::collections::{BTreeMap, HashMap};

use crate::connectivity::side_families;
use palisade_core::cluster::{Cluster, PodId, PolicyId, TierId};
use palisade_core::family::Families;
use palisade_core::field::FieldPath;
use palisade_core::matching::{address_matches, version_ok};
use palisade_core::policy::{Action, Direction, PolicyKind};
use palisade_core::rule::Form;
use palisade_core::verdict::{decide, describe, selects, Connection, Endpoint, Side, Step};

use super::{rule_path, Context, EQUAL_ORDER, NEVER_MATCHES, PASS_LAST, SHADOWED};
use crate::probe::Probe;

pub(super) fn run(cx: &mut Context) {
    if !cx.cluster.uses_calico() {
        return;
    }
    shadowed(cx);
    equal_order(cx);
    pass_last(cx);
    never_matches(cx);
}

/// A rule whose own side (destination on ingress, source on egress) excludes every endpoint
/// its policy applies to: it narrows the policy's endpoints to none, so it never matches.
fn never_matches(cx: &mut Context) {
    let cluster = cx.cluster;
    let ends: Vec<Side> = cluster
        .pod_ids()
        .map(|p| Side::pod(cluster, p))
        .chain(
            cluster
                .host_ids()
                .map(|h| Side { endpoint: Endpoint::Host(h), ip: cluster.host_endpoints[h].ips.first().copied() }),
        )
        .collect();
    let mut found = Vec::new();
    for (pol, p) in cluster.policy_ids().zip(&cluster.policies) {
        let selected: Vec<&Side> = ends.iter().filter(|s| selects(cluster, p, s)).collect();
        if selected.is_empty() {
            continue; // PAL001 says so.
        }
        for dir in [Direction::Ingress, Direction::Egress] {
            for rules in p.written_rules(dir) {
                let field = match dir {
                    Direction::Ingress => "destination",
                    Direction::Egress => "source",
                };
                let admits = |s: &&Side| {
                    rules.iter().any(|r| version_ok(r, s.ip) && address_matches(cluster, super::own_end(r, dir), s))
                };
                if selected.iter().any(admits) {
                    continue;
                }
                let origin = &rules[0].origin;
                let written = match &origin.written.form {
                    Form::Entities { source, destination, .. } if dir == Direction::Egress => source.as_str(),
                    Form::Entities { destination, .. } => destination.as_str(),
                    Form::Peers { .. } => "",
                };
                let (i, names) = (origin.rule, selected.iter().map(|s| describe(cluster, s)).collect::<Vec<_>>());
                let message = format!(
                    "{dir} rule [{i}] can never match: its {field} ({written}) excludes every endpoint the policy applies to ({})",
                    super::some_of(&names, 3)
                );
                found.push((pol, rule_path(dir, i).key(field), message, dir));
            }
        }
    }
    for (pol, path, message, dir) in found {
        let (own, peer) = match dir {
            Direction::Ingress => ("destination", "source"),
            Direction::Egress => ("source", "destination"),
        };
        let help = format!("in an {dir} rule, {own} narrows the policy's own endpoints and {peer} names the other side: move the selector or nets to {peer}, or drop them");
        cx.at_policy(&NEVER_MATCHES, pol, path, message, help);
    }
}

/// The endpoints rules are tried on, with their names: one pod per workload, every host
/// endpoint, and every address endpoint (each piece of the outside world, each node).
pub(super) fn endpoints(cx: &Context) -> Vec<(Side, String)> {
    let cluster = cx.cluster;
    let mut out: Vec<(Side, String)> =
        cx.workloads.list.iter().map(|w| (Side::pod(cluster, w.pods[0]), cluster.pod_key(w.pods[0]))).collect();
    out.extend(cluster.host_ids().map(|h| {
        let side = Side { endpoint: Endpoint::Host(h), ip: cluster.host_endpoints[h].ips.first().copied() };
        (side, format!("host endpoint {}", cluster.host_endpoints[h].name))
    }));
    let known: Vec<Side> = out.iter().map(|(s, _)| *s).collect();
    for a in &cx.conn.addresses {
        let side = Side::ip(cluster, a.address);
        if !known.contains(&side) {
            out.push((side, a.name.clone()));
        }
    }
    out
}

#[derive(Default)]
struct Seen {
    /// A connection this rule matches, and what decided it instead.
    matched: Option<String>,
    decided: bool,
}

/// A Calico rule that matches some connection but never decides one: something earlier
/// (a rule of the same policy, or a policy or tier before it) always decided first.
fn shadowed(cx: &mut Context) {
    let cluster = cx.cluster;
    let keys: HashMap<String, PolicyId> = cluster.policy_ids().map(|i| (cluster.policy_key(i), i)).collect();
    let mut seen: BTreeMap<(PolicyId, Direction, usize), Seen> = BTreeMap::new();
    let ends = endpoints(cx);
    for probe in &cx.conn.probes {
        for (a, (src, from)) in ends.iter().enumerate() {
            for (b, (dst, to)) in ends.iter().enumerate() {
                // No connection in a family an end has no address of (ICMPv6 to an IPv4-only pod).
                let shared = [side_families(cluster, src), side_families(cluster, dst), probe.protocol.families()];
                if a == b || !Families::meet(shared) {
                    continue;
                }
                let conn = Connection::new(*src, *dst, probe.port, probe.protocol);
                for step in decide(cluster, &conn).trace {
                    let Step::Policies { direction, policies, endpoint, .. } = step else { continue };
                    let winner = decider(&policies);
                    for p in &policies {
                        let Some(&pol) = keys.get(&p.policy) else { continue };
                        // Kubernetes policies have no order; cluster network policies have their own check.
                        if !is_calico_kind(cluster.policies[pol].kind) {
                            continue;
                        }
                        for r in p.rules.iter().filter(|r| r.matched && r.action != Action::Log) {
                            let s = seen.entry((pol, direction, r.index)).or_default();
                            s.decided |= r.decisive;
                            if s.matched.is_none() && !r.decisive {
                                let by = winner.clone().unwrap_or_else(|| "the end of an earlier tier".into());
                                // The port decided, not the stretch it stands for: a port
                                // `check` takes as it is, inside the rule's range.
                                let on = Probe { end: probe.port, ..*probe };
                                s.matched = Some(format!(
                                    "{from} -> {to} on {on}, {direction} at {endpoint}: {by} decided first"
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    for ((pol, dir, rule), s) in seen {
        if let (Some(example), false) = (s.matched, s.decided) {
            cx.at_policy(
                &SHADOWED,
                pol,
                rule_path(dir, rule),
                format!("{dir} rule [{rule}] never decides a connection it matches; for example {example}"),
                "remove the rule, or move it (or its policy) before the rule that takes its connections",
            );
        }
    }
}

fn decider(policies: &[palisade_core::verdict::PolicyEval]) -> Option<String> {
    policies.iter().find_map(|p| {
        let r = p.rules.iter().find(|r| r.decisive)?;
        Some(format!("{} rule [{}] ({})", p.policy, r.index, r.action.as_str()))
    })
}

fn equal_order(cx: &mut Context) {
    let cluster = cx.cluster;
    let calico: Vec<PolicyId> = cluster.policy_ids().filter(|&i| is_calico_kind(cluster.policies[i].kind)).collect();
    let selected = |i: PolicyId| -> Vec<PodId> {
        cluster.pod_ids().filter(|&p| selects(cluster, &cluster.policies[i], &Side::pod(cluster, p))).collect()
    };
    let mut found = Vec::new();
    for (n, &a) in calico.iter().enumerate() {
        for &b in &calico[n + 1..] {
            let (pa, pb) = (&cluster.policies[a], &cluster.policies[b]);
            if pa.tier != pb.tier || pa.order.is_none() || pa.order != pb.order {
                continue;
            }
            let (sa, sb) = (selected(a), selected(b));
            if let Some(&p) = sa.iter().find(|p| sb.contains(p)) {
                let message = format!(
                    "{} and {} both have order {} in tier {} and both select {}: only their names decide which goes first",
                    cluster.policy_key(a), cluster.policy_key(b), pa.order.unwrap_or_default(), cluster.tiers[pa.tier].name, cluster.pod_key(p)
                );
                found.push((b, message));
            }
        }
    }
    for (pol, message) in found {
        cx.at_policy(
            &EQUAL_ORDER,
            pol,
            FieldPath::root().key("spec").key("order"),
            message,
            "give each policy its own order so that the evaluation order is written, not implied",
        );
    }
}

/// Calico's own kinds: the ones these checks speak of (orders, tiers, Calico words).
fn is_calico_kind(kind: PolicyKind) -> bool {
    matches!(kind, PolicyKind::Calico | PolicyKind::CalicoGlobal)
}

/// Whether a tier has a later tier that holds policies (ranks computed once).
fn later_tiers(cluster: &Cluster) -> impl Fn(TierId) -> bool {
    let rank = cluster.tier_ranks();
    let last = cluster.policies.iter().map(|p| rank[p.tier.index()]).max();
    move |tier| last.is_some_and(|last| last > rank[tier.index()])
}

fn pass_last(cx: &mut Context) {
    let cluster = cx.cluster;
    let help = "with no later tier, a passed connection goes to the endpoint's profile (which allows Kubernetes pods): use Allow or Deny, or add the tier it should go to";
    let later_tiers = later_tiers(cluster);
    for pol in cluster.policy_ids() {
        let p = &cluster.policies[pol];
        if later_tiers(p.tier) || !is_calico_kind(p.kind) {
            continue;
        }
        for dir in [Direction::Ingress, Direction::Egress] {
            let passes = p.written_rules(dir).filter(|r| r[0].action == Action::Pass);
            for i in passes.map(|r| r[0].origin.rule) {
                let message = format!(
                    "{dir} rule [{i}] passes, but tier {} is the last tier that holds policies",
                    cluster.tiers[p.tier].name
                );
                cx.at_policy(&PASS_LAST, pol, rule_path(dir, i), message, help);
            }
        }
    }
    for (t, tier) in TierId::all(cluster.tiers.len()).zip(&cluster.tiers) {
        // The kube tiers end in Pass by definition (PAL022 judges their policies' Passes).
        let used = cluster.policies.iter().any(|p| p.tier == t && is_calico_kind(p.kind));
        if tier.pass_at_end && used && !later_tiers(t) {
            let message =
                format!("tier {} ends in Pass (defaultAction: Pass), but no later tier holds policies", tier.name);
            cx.push(
                &PASS_LAST,
                format!("Tier {}", tier.name),
                FieldPath::root().key("spec").key("defaultAction"),
                message,
                help.into(),
                tier.location.clone(),
            );
        }
    }
}
