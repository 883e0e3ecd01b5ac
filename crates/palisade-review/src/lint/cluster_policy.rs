//! Checks on ClusterNetworkPolicy and AdminNetworkPolicy / BaselineAdminNetworkPolicy
//! (`docs/cnp-spec.md` §7, §11), found by deciding every workload and address endpoint pair on
//! the probe ports and reading the traces:
//! - equal priorities in one tier whose policies both match a connection (the API leaves their
//!   order undefined; Palisade and Calico take the name);
//! - a Pass after which nothing decides (no NetworkPolicy selects the pod, no Baseline rule
//!   matches): the connection is allowed by default, as an Accept would;
//! - a rule that matches connections but never decides one: a higher-precedence rule or policy
//!   always decides first;
//! - a Deny to `networks` 0.0.0.0/0 or ::/0, which also matches pod addresses and so cuts pod
//!   traffic too.

use std::collections::{BTreeMap, HashMap};

use crate::connectivity::side_families;
use palisade_core::cluster::PolicyId;
use palisade_core::family::Families;
use palisade_core::field::FieldPath;
use palisade_core::policy::{Action, Direction};
use palisade_core::rule::Form;
use palisade_core::verdict::{decide, Connection, PolicyEval, Side, Step};

use super::{rule_path, Context, EQUAL_PRIORITY, FULL_NETWORK_DENY, PASS_TO_NOTHING, SHADOWED_BY_PRIORITY};

/// What the traversal saw of one written rule.
#[derive(Default)]
struct Seen {
    /// A connection it matched without deciding, and what decided first.
    shadowed: Option<String>,
    decided: bool,
    /// For a Pass: a connection it passed, and whether something after it decided every one.
    passed: Option<String>,
    pass_then_decided: bool,
    /// For a Deny: a pod destination it denied.
    cut_pod: Option<String>,
}

/// What one connection's traces say about equal-priority pairs: (first, second) -> example.
type Ties = BTreeMap<(PolicyId, PolicyId), String>;

pub(super) fn run(cx: &mut Context) {
    let cluster = cx.cluster;
    if !cluster.policies.iter().any(|p| p.kind.is_cluster_network_policy()) {
        return;
    }
    let keys: HashMap<String, PolicyId> = cluster.policy_ids().map(|i| (cluster.policy_key(i), i)).collect();
    let mut seen: BTreeMap<(PolicyId, Direction, usize), Seen> = BTreeMap::new();
    let mut ties = Ties::new();
    let ends = super::calico::endpoints(cx);
    for probe in &cx.conn.probes {
        for (a, (src, from)) in ends.iter().enumerate() {
            for (b, (dst, to)) in ends.iter().enumerate() {
                // No connection in a family an end has no address of (ICMPv6 to an IPv4-only pod).
                let shared = [side_families(cluster, src), side_families(cluster, dst), probe.protocol.families()];
                if a == b || !Families::meet(shared) {
                    continue;
                }
                let conn = Connection::new(*src, *dst, probe.port, probe.protocol);
                let what = format!("{from} -> {to} on {probe}");
                for step in decide(cluster, &conn).trace {
                    let Step::Policies { direction, policies, allowed, .. } = step else { continue };
                    let evals: Vec<(PolicyId, &PolicyEval)> =
                        policies.iter().filter_map(|p| keys.get(&p.policy).map(|&id| (id, p))).collect();
                    let ctx = Trace { evals: &evals, direction, allowed, what: &what, dst };
                    ctx.note_rules(cx, &mut seen);
                    ctx.note_ties(cx, &mut ties);
                }
            }
        }
    }
    report(cx, seen, ties);
}

/// One `Policies` step of one connection.
struct Trace<'t> {
    evals: &'t [(PolicyId, &'t PolicyEval)],
    direction: Direction,
    allowed: bool,
    what: &'t str,
    dst: &'t Side,
}

impl Trace<'_> {
    fn note_rules(&self, cx: &Context, seen: &mut BTreeMap<(PolicyId, Direction, usize), Seen>) {
        let cluster = cx.cluster;
        let decider = self.evals.iter().find_map(|(_, p)| {
            let r = p.rules.iter().find(|r| r.decisive)?;
            let action = match (r.action, p.kind.is_cluster_network_policy()) {
                (Action::Allow, true) => "Accept",
                (a, _) => a.as_str(),
            };
            Some(format!("{} rule [{}] ({action})", p.policy, r.index))
        });
        for (k, &(pol, p)) in self.evals.iter().enumerate() {
            if !cluster.policies[pol].kind.is_cluster_network_policy() {
                continue;
            }
            for r in p.rules.iter().filter(|r| r.matched) {
                let s = seen.entry((pol, self.direction, r.index)).or_default();
                s.decided |= r.decisive;
                if !r.decisive && s.shadowed.is_none() {
                    let by = decider.clone().unwrap_or_else(|| "an earlier tier".into());
                    s.shadowed = Some(format!("{}, {}: {by} decided first", self.what, self.direction));
                }
                if r.decisive && r.action == Action::Pass {
                    // Something after the Pass decided: a deny (a rule's, or NetworkPolicy's
                    // end-of-tier deny), or a later rule's Accept.
                    let later = self.evals[k + 1..].iter().any(|(_, q)| q.rules.iter().any(|r| r.decisive));
                    s.pass_then_decided |= !self.allowed || later;
                    if s.passed.is_none() {
                        s.passed = Some(format!("{}, {}", self.what, self.direction));
                    }
                }
                if r.decisive && r.action == Action::Deny && self.dst.pod_id().is_some() && s.cut_pod.is_none() {
                    s.cut_pod = Some(format!("{}, {}", self.what, self.direction));
                }
            }
        }
    }

    /// Equal-priority policies of one tier that both match this connection.
    fn note_ties(&self, cx: &Context, ties: &mut Ties) {
        let cluster = cx.cluster;
        let matched: Vec<PolicyId> = self
            .evals
            .iter()
            .filter(|(pol, p)| {
                cluster.policies[*pol].kind.is_cluster_network_policy() && p.rules.iter().any(|r| r.matched)
            })
            .map(|&(pol, _)| pol)
            .collect();
        for (n, &a) in matched.iter().enumerate() {
            for &b in &matched[n + 1..] {
                let (pa, pb) = (&cluster.policies[a], &cluster.policies[b]);
                if pa.tier == pb.tier && pa.order == pb.order {
                    ties.entry((a, b)).or_insert_with(|| format!("{}, {}", self.what, self.direction));
                }
            }
        }
    }
}

fn tier_word(cx: &Context, pol: PolicyId) -> &'static str {
    let cluster = cx.cluster;
    match cluster.tiers[cluster.policies[pol].tier].name.as_str() {
        "kube-baseline" => "Baseline",
        _ => "Admin",
    }
}

fn report(cx: &mut Context, seen: BTreeMap<(PolicyId, Direction, usize), Seen>, ties: Ties) {
    let cluster = cx.cluster;
    for ((a, b), example) in ties {
        let priority = cluster.policies[a].order.unwrap_or_default();
        let message = format!(
            "{} and {} both have priority {priority} in the {} tier and both match {example}: the API leaves their order undefined (Palisade, like Calico, takes {} first by name)",
            cluster.policy_key(a),
            cluster.policy_key(b),
            tier_word(cx, a),
            cluster.policy_key(a)
        );
        let help = "give each policy its own priority so that the order is written, not left to the implementation";
        cx.at_policy(&EQUAL_PRIORITY, b, FieldPath::root().key("spec").key("priority"), message, help);
    }
    for ((pol, dir, i), s) in seen {
        if let (Some(example), false) = (&s.shadowed, s.decided) {
            let message = format!("{dir} rule [{i}] matches connections but never decides one; for example {example}");
            let help = "remove the rule, or give its policy a lower priority number than the policy that takes its connections";
            cx.at_policy(&SHADOWED_BY_PRIORITY, pol, rule_path(dir, i), message, help);
        }
        if let (Some(example), false) = (&s.passed, s.pass_then_decided) {
            let message = format!(
                "{dir} rule [{i}] passes, but nothing after it decides what it passes (no NetworkPolicy selects the pod, no Baseline rule matches): the connections are allowed by default, as with Accept; for example {example}"
            );
            let help = "write Accept if that is meant, or add the NetworkPolicy or Baseline rule that should decide";
            cx.at_policy(&PASS_TO_NOTHING, pol, rule_path(dir, i), message, help);
        }
        if let Some(example) = &s.cut_pod {
            full_network_deny(cx, pol, dir, i, example);
        }
    }
}

/// PAL024 for the `networks` peers of rule `i` that hold 0.0.0.0/0 or ::/0, when the rule
/// denied a pod destination.
fn full_network_deny(cx: &mut Context, pol: PolicyId, dir: Direction, i: usize, example: &str) {
    let p = &cx.cluster.policies[pol];
    let mut peers: Vec<(usize, String)> = Vec::new();
    for r in p.rules(dir).into_iter().flatten().filter(|r| r.origin.rule == i && r.action == Action::Deny) {
        let (Form::Peers { peers: Some(words), .. }, Some(j)) = (&r.origin.written.form, r.origin.peer) else {
            continue;
        };
        let everything = super::peer_end(r, dir).nets.iter().find(|n| n.prefix_len() == 0);
        if let Some(net) = everything {
            if !peers.iter().any(|(k, _)| *k == j) && words[j].text.starts_with("networks") {
                peers.push((j, net.to_string()));
            }
        }
    }
    let field = match dir {
        Direction::Egress => "to",
        Direction::Ingress => "from",
    };
    for (j, net) in peers {
        let message = format!(
            "{dir} rule [{i}] denies networks {net}, which holds every pod address too (networks match pods): it cuts pod traffic as well as the outside; for example {example}"
        );
        let help = "to deny only the outside, Accept or Pass the cluster's pods (a namespaces peer) in a rule before it, or list the outside CIDRs";
        cx.at_policy(&FULL_NETWORK_DENY, pol, rule_path(dir, i).key(field).index(j).key("networks"), message, help);
    }
}
