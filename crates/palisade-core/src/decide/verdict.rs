//! Deciding one connection, as a conformant plugin enforces it, with a trace of why.
//!
//! Policies are evaluated as Calico's Felix does, which for Kubernetes NetworkPolicy alone is
//! exactly the Kubernetes semantics: tier by tier; in a tier, policy by policy in order; in a
//! policy, rule by rule; the first matching rule's action decides (Log goes on, Pass skips to
//! the next tier). An endpoint some policy of a tier selects, where no rule matched, is denied
//! at the end of that tier; an endpoint no policy selects is allowed.
//!
//! Two connections no policy sees: a pod's packets to itself (they never leave its namespace),
//! and a node's to the pods that run on it (the NetworkPolicy API reference: ingress is
//! allowed "if the traffic source is the pod's local node"; Calico: "traffic from a host to its
//! workload endpoints is always allowed, despite any policy in place"), which kubelet probes
//! depend on. A host-network pod is its node's network stack. The other direction, a pod to
//! its own node, is decided by the pod's egress policy as Calico and Cilium enforce it.
//!
//! This path scans policies directly and explains itself; [`crate::index`] decides all pairs
//! with bitsets. Property tests require the two to agree.

use serde::Serialize;

use crate::decide::trace;
use crate::model::cluster::{Cluster, HostId, PodId, PolicyId};
pub use crate::model::endpoint::{describe, Connection, Endpoint, Side, EPHEMERAL_PORT};
use crate::model::policy::{Action, Direction, Policy, PolicyKind};
use crate::model::port::Protocol;

/// How one rule fared.
#[derive(Clone, Debug, Serialize)]
pub struct RuleEval {
    pub index: usize,
    /// The rule's own name, for APIs whose rules have one (ClusterNetworkPolicy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub matched: bool,
    /// This rule's action decided the connection (or passed it to the next tier).
    pub decisive: bool,
    pub detail: String,
}

/// How one policy that selects the endpoint fared.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyEval {
    pub policy: String,
    pub kind: PolicyKind,
    pub tier: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The action of the first rule that matched, if any.
    pub outcome: Option<Action>,
    /// Whether evaluation reached this policy (an earlier rule may have decided).
    pub reached: bool,
    pub allowed: bool,
    pub rules: Vec<RuleEval>,
}

/// The end of one tier's evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct TierEval {
    pub tier: String,
    /// allow, deny, pass, end-of-tier deny, end-of-tier pass, or not reached.
    pub outcome: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackendEval {
    pub ip: Option<String>,
    pub port: u16,
    pub endpoint: String,
    pub verdict: Verdict,
    pub trace: Vec<Step>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
    /// No address to decide for: an `ExternalName` Service is a DNS alias with no backends;
    /// the connection goes wherever the name resolves.
    Undecided,
}

impl Verdict {
    pub fn from_bool(b: bool) -> Verdict {
        if b {
            Verdict::Allow
        } else {
            Verdict::Deny
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Undecided => "undecided",
        }
    }
}

/// One step of the reasoning, in order.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// A pod talking to its own IP never leaves its network namespace.
    SelfConnection { pod: String, reason: String },
    /// A node (or a host-network pod, its network stack) opening a pod that runs on it.
    OwnNode { node: String, pod: String, reason: String },
    /// Both ends are one workload's template pod standing for its replicas: two distinct
    /// pods, so policy decides (the steps that follow).
    Replicas { workload: String, replicas: Option<u32>, reason: String },
    /// Policy is enforced on this side: which policies select the endpoint, tier by tier,
    /// and what they said.
    Policies {
        direction: Direction,
        endpoint: String,
        isolated: bool,
        allowed: bool,
        /// One sentence: what decided.
        reason: String,
        tiers: Vec<TierEval>,
        policies: Vec<PolicyEval>,
    },
    /// No policy can apply on this side (node, host network, outside the cluster).
    NotEnforced { direction: Direction, endpoint: String, reason: String },
    /// kube-proxy rewrote a Service address to its backends before policy sees the packet.
    Dnat { service: String, address: String, port: u16, protocol: Protocol, target_port: String, backends: usize },
    /// The decision for one Service backend.
    Backend(BackendEval),
    /// The connection cannot happen at all (Service without that port or without backends).
    Unreachable { reason: String },
    /// An `ExternalName` Service: DNS answers with another name, there is no ClusterIP, no
    /// DNAT and no backend, so there is nothing here to decide.
    ExternalName { service: String, external_name: String, reason: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub trace: Vec<Step>,
}

/// Decides a connection between two concrete endpoints (after any Service DNAT).
pub fn decide(cluster: &Cluster, conn: &Connection) -> Decision {
    decide_as(cluster, conn, false, None)
}

/// The policies that apply to each pod, per direction (`[egress, ingress][pod]`, each list in
/// policy order), as [`crate::index::Index::applicable`] gives them.
pub type Applicable = [Vec<Vec<PolicyId>>; 2];

/// [`decide`] with the policies that apply to each pod known beforehand, instead of matching
/// every policy's selector against each end: the same decision and trace, for callers that
/// explain thousands of connections (each scan reads every policy of the cluster).
pub fn decide_known(cluster: &Cluster, conn: &Connection, applicable: &Applicable) -> Decision {
    decide_as(cluster, conn, false, Some(applicable))
}

/// Decides a connection that kube-proxy DNATed from a Service address to `conn.dst`. When the
/// backend is the source pod itself (hairpin), ClusterNetworkPolicies apply to it (their API:
/// "A Pod connecting to a Service IP that the service proxy load-balances back to the same
/// Pod is subject to ClusterNetworkPolicy"); other kinds keep the self rule.
pub fn decide_backend(cluster: &Cluster, conn: &Connection) -> Decision {
    decide_as(cluster, conn, true, None)
}

fn decide_as(cluster: &Cluster, conn: &Connection, via_service: bool, known: Option<&Applicable>) -> Decision {
    let mut trace = Vec::new();
    let hairpin = via_service
        && conn.src.pod_id().is_some()
        && cluster.policies.iter().any(|p| p.kind.is_cluster_network_policy());
    // The same pod, host endpoint or node on both ends: the packets stay on loopback, unless
    // the pod stands for a workload's replicas (two of them are two pods).
    if conn.src.endpoint == conn.dst.endpoint && conn.src.endpoint != Endpoint::External {
        match conn.src.pod_id().filter(|&p| cluster.pods[p].is_replica_group()) {
            Some(p) => trace.push(replicas_step(cluster, p)),
            None if hairpin => {
                let egress = side_step(cluster, conn, Direction::Egress, true, None);
                let ingress = side_step(cluster, conn, Direction::Ingress, true, None);
                let allowed = step_allows(&egress) && step_allows(&ingress);
                return Decision { verdict: Verdict::from_bool(allowed), trace: vec![egress, ingress] };
            }
            None => {
                return Decision {
                    verdict: Verdict::Allow,
                    trace: vec![Step::SelfConnection {
                        pod: describe(cluster, &conn.src),
                        reason: "packets to its own IP stay inside its network namespace (loopback); no plugin sees or filters them"
                            .into(),
                    }],
                }
            }
        }
    }
    if let Some(node) = own_node(cluster, &conn.src, &conn.dst) {
        let pod = describe(cluster, &conn.dst);
        let every = |side: &Side| side.pod_id().is_some_and(|p| cluster.pods[p].on_every_node());
        let runs = match (every(&conn.src), every(&conn.dst)) {
            (_, true) => format!("{pod} stands for a DaemonSet's pods, one on every node, so one runs on {node}"),
            (true, false) => {
                format!("{pod} runs on {node}, where {} has a pod (one on every node)", describe(cluster, &conn.src))
            }
            (false, false) => format!("{pod} runs on {node}"),
        };
        let reason =
            format!("{runs}; a node's traffic to its own pods is never filtered (kubelet probes depend on it)");
        return Decision {
            verdict: Verdict::Allow,
            trace: vec![Step::OwnNode { node: node.to_string(), pod, reason }],
        };
    }
    let egress = side_step(cluster, conn, Direction::Egress, false, known);
    let ingress = side_step(cluster, conn, Direction::Ingress, false, known);
    let allowed = step_allows(&egress) && step_allows(&ingress);
    trace.extend([egress, ingress]);
    Decision { verdict: Verdict::from_bool(allowed), trace }
}

fn replicas_step(cluster: &Cluster, p: PodId) -> Step {
    let pod = &cluster.pods[p];
    let workload = match &pod.workload {
        Some(w) => format!("{} {}/{}", w.kind, cluster.namespaces[pod.namespace].name, w.name),
        None => cluster.pod_key(p),
    };
    let count = pod.replicas.map_or("one per node".to_string(), |n| format!("{n} replicas"));
    let reason = format!(
        "{} stands for the {count} of {workload} (no Pod objects were given): one replica to another is a connection between two pods",
        cluster.pod_key(p)
    );
    Step::Replicas { workload, replicas: pod.replicas, reason }
}

/// Where a pod runs, for the node exception: on one node, or (a DaemonSet's template pod
/// standing for its pods, Pod objects not given) on every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Placement<'c> {
    Node(&'c str),
    EveryNode,
}

/// Where a pod runs: its `spec.nodeName`, every node for a DaemonSet's template pod, `None`
/// when unknown.
pub fn placement(cluster: &Cluster, p: PodId) -> Option<Placement<'_>> {
    let pod = &cluster.pods[p];
    match pod.node.as_deref() {
        Some(node) => Some(Placement::Node(node)),
        None if pod.on_every_node() => Some(Placement::EveryNode),
        None => None,
    }
}

/// The node whose own network stack an endpoint is: a node, a Calico host endpoint, or a
/// host-network pod (by its placement). `None` for pods on the pod network and outside
/// addresses.
pub fn node_of<'c>(cluster: &'c Cluster, side: &Side) -> Option<Placement<'c>> {
    match side.endpoint {
        Endpoint::Node(n) => Some(Placement::Node(&cluster.nodes[n].name)),
        Endpoint::Host(h) => {
            Some(&cluster.host_endpoints[h].node).filter(|n| !n.is_empty()).map(|n| Placement::Node(n))
        }
        Endpoint::Pod(p) if cluster.pods[p].host_network => placement(cluster, p),
        _ => None,
    }
}

/// The node `src` is, when `dst` is a pod on the pod network that runs on it: such traffic is
/// always allowed. Pods without `spec.nodeName` are on no known node, except a DaemonSet's
/// template pods, which are on every node (`each node` when both are).
pub fn own_node<'c>(cluster: &'c Cluster, src: &Side, dst: &Side) -> Option<&'c str> {
    let d = dst.pod_id().filter(|&d| cluster.is_policy_subject(d))?;
    match (node_of(cluster, src)?, placement(cluster, d)?) {
        (Placement::Node(a), Placement::Node(b)) => (a == b).then_some(a),
        (Placement::Node(n), Placement::EveryNode) | (Placement::EveryNode, Placement::Node(n)) => Some(n),
        (Placement::EveryNode, Placement::EveryNode) => Some("each node"),
    }
}

fn step_allows(step: &Step) -> bool {
    match step {
        Step::Policies { allowed, .. } => *allowed,
        _ => true,
    }
}

/// The subject of policy on one side, or why there is none.
#[derive(Clone, Copy)]
enum Subject {
    Pod(PodId),
    Host(HostId),
}

fn subject_of(cluster: &Cluster, side: &Side) -> Result<Subject, &'static str> {
    match side.endpoint {
        Endpoint::Pod(p) if cluster.is_policy_subject(p) => Ok(Subject::Pod(p)),
        Endpoint::Pod(_) => {
            Err("host-network pod: it uses the node's network stack, which NetworkPolicy does not govern")
        }
        Endpoint::Host(h) => Ok(Subject::Host(h)),
        Endpoint::Node(_) => Err("a node is not a pod: NetworkPolicy does not apply to it"),
        Endpoint::External => Err("outside the cluster: no policy is enforced there"),
    }
}

/// Whether a policy applies to the subject endpoint.
pub fn selects(cluster: &Cluster, pol: &Policy, side: &Side) -> bool {
    match subject_of(cluster, side) {
        Ok(Subject::Pod(p)) => pol.subject.matches(&cluster.calico_labels(p)),
        Ok(Subject::Host(h)) => pol.namespace.is_none() && pol.subject.matches(&cluster.host_endpoints[h].labels),
        Err(_) => false,
    }
}

/// Felix's default failsafe ports for one direction: host endpoints always pass these, so
/// policy cannot lock out the node's own control plane (BGP, etcd, Typha, the API server, SSH,
/// DHCP, DNS).
pub fn failsafe_ports(dir: Direction) -> Vec<(Protocol, u16)> {
    const TCP_BOTH: [u16; 7] = [179, 2379, 2380, 5473, 6443, 6666, 6667];
    let own: &[(Protocol, u16)] = match dir {
        Direction::Ingress => &[(Protocol::TCP, 22), (Protocol::UDP, 68)],
        Direction::Egress => &[(Protocol::UDP, 53), (Protocol::UDP, 67)],
    };
    own.iter().copied().chain(TCP_BOTH.iter().map(|&p| (Protocol::TCP, p))).collect()
}

pub fn is_failsafe(dir: Direction, protocol: Protocol, port: u16) -> bool {
    failsafe_ports(dir).contains(&(protocol, port))
}

/// Egress is judged at the source, ingress at the destination. `hairpin`: a pod reaching
/// itself through a Service, where only cluster network policies apply. `known`: the policies
/// that apply to each pod, when the caller has them.
fn side_step(cluster: &Cluster, conn: &Connection, dir: Direction, hairpin: bool, known: Option<&Applicable>) -> Step {
    let this = match dir {
        Direction::Egress => &conn.src,
        Direction::Ingress => &conn.dst,
    };
    let endpoint = describe(cluster, this);
    let subject = match subject_of(cluster, this) {
        Ok(s) => s,
        Err(reason) => return Step::NotEnforced { direction: dir, endpoint, reason: reason.into() },
    };
    if let Subject::Host(_) = subject {
        if is_failsafe(dir, conn.protocol, conn.port) {
            let reason =
                format!("{}/{} is a Felix failsafe port for host endpoints: always allowed", conn.port, conn.protocol);
            return Step::NotEnforced { direction: dir, endpoint, reason };
        }
    }
    let mut policies = Vec::new();
    let mut tiers: Vec<TierEval> = Vec::new();
    let mut decided: Option<(bool, String)> = None;
    let applicable: Vec<PolicyId> = match (known, subject) {
        (Some(known), Subject::Pod(p)) if !hairpin => known[usize::from(dir == Direction::Ingress)][p.index()].clone(),
        _ => cluster
            .policy_ids()
            .filter(|&i| !hairpin || cluster.policies[i].kind.is_cluster_network_policy())
            .filter(|&i| cluster.policies[i].rules(dir).is_some() && selects(cluster, &cluster.policies[i], this))
            .collect(),
    };
    for (tier, run) in cluster.tier_runs(&applicable) {
        let tier_name = cluster.tiers[tier].name.clone();
        let reached = decided.is_none();
        let mut tier_outcome: Option<Action> = None;
        for &idx in run {
            let live = reached && tier_outcome.is_none();
            let (eval, hit) = eval_policy(cluster, idx, dir, conn, live);
            if live {
                if let Some((action, rule)) = hit {
                    tier_outcome = Some(action);
                    let pol = &cluster.policies[idx];
                    let written = pol.written_rules(dir).find(|g| g[0].origin.rule == rule).unwrap_or_default();
                    let why = trace::cluster_policy_decision(pol, written, action, &tier_name).unwrap_or_else(|| {
                        format!("rule [{rule}] of {} (tier {tier_name}) says {action}", eval.policy)
                    });
                    if action != Action::Pass {
                        decided = Some((action == Action::Allow, why));
                    }
                }
            }
            policies.push(eval);
        }
        let outcome = match (reached, tier_outcome) {
            (false, _) => "not reached".to_string(),
            (true, Some(a)) => a.as_str().to_ascii_lowercase(),
            (true, None) if cluster.tiers[tier].pass_at_end => "end-of-tier pass".into(),
            (true, None) => {
                let n = run.len();
                let why = format!(
                    "end of tier {tier_name}: {n} polic{} select{} {endpoint} and no rule matched",
                    if n == 1 { "y" } else { "ies" },
                    if n == 1 { "s" } else { "" },
                );
                decided = Some((false, why));
                "end-of-tier deny".into()
            }
        };
        tiers.push(TierEval { tier: tier_name, outcome });
    }
    let isolated = !applicable.is_empty();
    let (allowed, reason) = decided.unwrap_or_else(|| match subject {
        Subject::Host(h) if !cluster.host_endpoints[h].default_allow => (
            false,
            "no policy decided, and a host endpoint without the projectcalico-default-allow profile denies by default"
                .into(),
        ),
        _ if isolated => (true, "every tier passed: the endpoint's profile allows".into()),
        _ => (true, format!("no policy selects it for {dir}: not isolated")),
    });
    Step::Policies { direction: dir, endpoint, isolated, allowed, reason, tiers, policies }
}

/// Evaluates every rule of one policy (for the trace) and returns the first decisive hit.
fn eval_policy(
    cluster: &Cluster,
    idx: PolicyId,
    dir: Direction,
    conn: &Connection,
    live: bool,
) -> (PolicyEval, Option<(Action, usize)>) {
    let pol = &cluster.policies[idx];
    let mut rules: Vec<RuleEval> = pol
        .written_rules(dir)
        .map(|group| {
            let (matched, detail) = trace::explain(cluster, group, conn, dir);
            let origin = &group[0].origin;
            let location = origin.written.location.as_ref().map(|l| format!("{}:{}", l.file, l.line));
            let name = origin.written.name.clone();
            RuleEval { index: origin.rule, name, action: group[0].action, location, matched, decisive: false, detail }
        })
        .collect();
    let hit = rules.iter().position(|r| r.matched && r.action != Action::Log);
    if let (Some(i), true) = (hit, live) {
        rules[i].decisive = true;
    }
    let outcome = hit.map(|i| rules[i].action);
    let decisive = hit.filter(|_| live).map(|i| (rules[i].action, rules[i].index));
    let eval = PolicyEval {
        policy: cluster.policy_key(idx),
        kind: pol.kind,
        tier: cluster.tiers[pol.tier].name.clone(),
        order: pol.order,
        location: pol.location.as_ref().map(|l| format!("{}:{}", l.file, l.line)),
        outcome,
        reached: live,
        allowed: outcome == Some(Action::Allow),
        rules,
    };
    (eval, decisive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::{ports, rule, selecting, ClusterBuilder};
    use crate::model::rule::Entity;

    /// shop: web and db; db admits web on 5432/TCP, then denies the rest at the end of its tier.
    fn shop() -> Cluster {
        let admit_web = rule(Action::Allow, Some(Protocol::TCP), selecting("app == 'web'"), ports(&[5432]));
        ClusterBuilder::new()
            .ns("shop", &[])
            .pod("shop/web", &[("app", "web")], "10.0.0.1")
            .pod("shop/db", &[("app", "db")], "10.0.0.2")
            .pod("shop/batch", &[("app", "batch")], "10.0.0.3")
            .policy("shop/db", 10.0, "app == 'db'", Some(vec![admit_web]), None)
            .build()
    }

    fn conn(c: &Cluster, src: &str, dst: &str, port: u16) -> Connection {
        let side = |k: &str| Side::pod(c, c.pod("shop", k).expect("fixture pod"));
        Connection::new(side(src), side(dst), port, Protocol::TCP)
    }

    fn ingress_step(d: &Decision) -> (&str, &[PolicyEval]) {
        d.trace
            .iter()
            .find_map(|s| match s {
                Step::Policies { direction: Direction::Ingress, reason, policies, .. } => {
                    Some((reason.as_str(), policies.as_slice()))
                }
                _ => None,
            })
            .expect("db is isolated for ingress")
    }

    #[test]
    fn a_matching_rule_allows_and_the_end_of_its_tier_denies_the_rest() {
        let c = shop();
        let d = decide(&c, &conn(&c, "web", "db", 5432));
        assert_eq!(d.verdict, Verdict::Allow);
        let (reason, policies) = ingress_step(&d);
        assert_eq!(reason, "rule [0] of shop/db (tier default) says Allow");
        assert_eq!(
            policies[0].rules[0].detail,
            "protocol TCP; source selector app == \"web\"; destination ports [5432]"
        );
        let d = decide(&c, &conn(&c, "batch", "db", 5432));
        assert_eq!(d.verdict, Verdict::Deny);
        let (reason, policies) = ingress_step(&d);
        assert_eq!(reason, "end of tier default: 1 policy selects shop/db and no rule matched");
        assert_eq!(policies[0].rules[0].detail, "source shop/batch is not selected by selector app == \"web\"");
    }

    #[test]
    fn the_trace_names_the_condition_that_failed() {
        let c = shop();
        let d = decide(&c, &conn(&c, "web", "db", 80));
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(ingress_step(&d).1[0].rules[0].detail, "destination port 80 is not in ports [5432]");
        let udp = Connection { protocol: Protocol::UDP, ..conn(&c, "web", "db", 5432) };
        assert_eq!(ingress_step(&decide(&c, &udp)).1[0].rules[0].detail, "protocol UDP is not TCP");
    }

    #[test]
    fn unselected_pods_are_not_isolated_and_a_pod_reaches_itself() {
        let c = shop();
        assert_eq!(decide(&c, &conn(&c, "db", "web", 80)).verdict, Verdict::Allow);
        let to_itself = decide(&c, &conn(&c, "db", "db", 9));
        assert!(matches!(to_itself.trace[..], [Step::SelfConnection { .. }]), "{:?}", to_itself.trace);
        let no_rules = ClusterBuilder::new()
            .ns("shop", &[])
            .pod("shop/db", &[("app", "db")], "10.0.0.2")
            .pod("shop/web", &[("app", "web")], "10.0.0.1")
            .policy(
                "shop/deny",
                1.0,
                "all()",
                Some(vec![rule(Action::Deny, None, Entity::default(), Entity::default())]),
                None,
            )
            .build();
        assert_eq!(decide(&no_rules, &conn(&no_rules, "web", "db", 80)).verdict, Verdict::Deny);
    }
}
