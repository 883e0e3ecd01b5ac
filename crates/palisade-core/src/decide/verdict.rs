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
use std::fmt::Write as _;

use crate::model::cluster::{Cluster, PodId};
pub use crate::model::endpoint::{describe, Connection, Endpoint, Side, EPHEMERAL_PORT};
use crate::model::peer::{NamespaceScope, Peer};
use crate::model::policy::{Action, Direction, Match, Policy, PolicyKind, Subject as PolicySubject};
use crate::model::port::{ContainerPort, Protocol, RulePort};

/// How one rule fared.
#[derive(Clone, Debug, Serialize)]
pub struct RuleEval {
    pub index: usize,
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
    let mut trace = Vec::new();
    // The same pod, host endpoint or node on both ends: the packets stay on loopback, unless
    // the pod stands for a workload's replicas (two of them are two pods).
    if conn.src.endpoint == conn.dst.endpoint && conn.src.endpoint != Endpoint::External {
        match conn.src.pod_id().filter(|&p| cluster.pods[p].is_replica_group()) {
            Some(p) => trace.push(replicas_step(cluster, p)),
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
        let reason = format!(
            "{pod} runs on {node}; a node's traffic to its own pods is never filtered (kubelet probes depend on it)"
        );
        return Decision {
            verdict: Verdict::Allow,
            trace: vec![Step::OwnNode { node: node.to_string(), pod, reason }],
        };
    }
    let egress = side_step(cluster, conn, Direction::Egress);
    let ingress = side_step(cluster, conn, Direction::Ingress);
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

/// The node whose own network stack an endpoint is: a node, a Calico host endpoint, or a
/// host-network pod (by its `spec.nodeName`). `None` for pods on the pod network and outside
/// addresses.
pub fn node_of<'c>(cluster: &'c Cluster, side: &Side) -> Option<&'c str> {
    match side.endpoint {
        Endpoint::Node(n) => Some(&cluster.nodes[n].name),
        Endpoint::Host(h) => Some(&cluster.host_endpoints[h].node).filter(|n| !n.is_empty()).map(String::as_str),
        Endpoint::Pod(p) if cluster.pods[p].host_network => cluster.pods[p].node.as_deref(),
        _ => None,
    }
}

/// The node `src` is, when `dst` is a pod on the pod network that runs on it: such traffic is
/// always allowed. Pods without `spec.nodeName` are on no known node.
pub fn own_node<'c>(cluster: &'c Cluster, src: &Side, dst: &Side) -> Option<&'c str> {
    let d = dst.pod_id().filter(|&d| cluster.is_policy_subject(d))?;
    let node = node_of(cluster, src)?;
    (cluster.pods[d].node.as_deref() == Some(node)).then_some(node)
}

fn step_allows(step: &Step) -> bool {
    match step {
        Step::Policies { allowed, .. } => *allowed,
        _ => true,
    }
}

/// The subject of policy on one side, or why there is none.
enum Subject {
    Pod(PodId),
    Host(usize),
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
    let Ok(subject) = subject_of(cluster, side) else { return false };
    match (&pol.subject, subject) {
        (PolicySubject::Pods(sel), Subject::Pod(p)) => {
            Some(cluster.pods[p].namespace) == pol.namespace && sel.matches(&cluster.pods[p].labels)
        }
        (PolicySubject::Pods(_), Subject::Host(_)) => false,
        (PolicySubject::Endpoints(e), Subject::Pod(p)) => e.matches(&cluster.calico_labels[p]),
        (PolicySubject::Endpoints(e), Subject::Host(h)) => {
            pol.namespace.is_none() && e.matches(&cluster.host_endpoints[h].labels)
        }
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

/// Egress is judged at the source, ingress at the destination.
fn side_step(cluster: &Cluster, conn: &Connection, dir: Direction) -> Step {
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
    let applicable: Vec<usize> = (0..cluster.policies.len())
        .filter(|&i| cluster.policies[i].rules(dir).is_some() && selects(cluster, &cluster.policies[i], this))
        .collect();
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
                    let why = format!("rule [{rule}] of {} (tier {tier_name}) says {action}", eval.policy);
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
    idx: usize,
    dir: Direction,
    conn: &Connection,
    live: bool,
) -> (PolicyEval, Option<(Action, usize)>) {
    let pol = &cluster.policies[idx];
    let other = match dir {
        Direction::Egress => &conn.dst,
        Direction::Ingress => &conn.src,
    };
    let dst_ports = conn.dst.pod_id().map(|d| cluster.pods[d].ports.as_slice());
    let mut rules: Vec<RuleEval> = pol
        .rules(dir)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            let (matched, detail) = match &r.matches {
                Match::Kubernetes { peers, ports } => eval_k8s_rule(cluster, peers, ports, other, conn, dst_ports),
                Match::Calico(c) => c.evaluate(cluster, conn),
            };
            let location = r.location.as_ref().map(|l| format!("{}:{}", l.file, l.line));
            RuleEval { index: i, action: r.action, location, matched, decisive: false, detail }
        })
        .collect();
    let hit = rules.iter().position(|r| r.matched && r.action != Action::Log);
    if let (Some(i), true) = (hit, live) {
        rules[i].decisive = true;
    }
    let outcome = hit.map(|i| rules[i].action);
    let decisive = hit.filter(|_| live).map(|i| (rules[i].action, i));
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

fn eval_k8s_rule(
    cluster: &Cluster,
    peers: &Option<Vec<Peer>>,
    ports: &Option<Vec<RulePort>>,
    peer: &Side,
    conn: &Connection,
    dst_ports: Option<&[ContainerPort]>,
) -> (bool, String) {
    let mut detail = String::new();
    let ports_ok = match ports {
        None => {
            detail.push_str("all ports; ");
            true
        }
        Some(ports) => {
            let hit = ports.iter().find(|p| p.matches(conn.port, conn.protocol, dst_ports));
            let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
            match hit {
                Some(p) => {
                    let _ = write!(detail, "port {} matches {}; ", conn.port, p);
                }
                None => {
                    let _ = write!(detail, "{}/{} is not among ports [{}]", conn.protocol, conn.port, list.join(", "));
                    if ports.iter().any(|p| p.is_named()) && dst_ports.is_none() {
                        detail.push_str(" (named ports only match pod destinations)");
                    }
                }
            }
            hit.is_some()
        }
    };
    if !ports_ok {
        return (false, detail);
    }
    let peers_ok = match peers {
        None => {
            detail.push_str("all peers");
            true
        }
        Some(peers) => match peers.iter().position(|p| peer_matches(cluster, p, peer)) {
            Some(j) => {
                let _ = write!(
                    detail,
                    "peer [{j}] {} matches {}",
                    describe_peer(cluster, &peers[j]),
                    describe(cluster, peer)
                );
                true
            }
            None => {
                let _ = write!(
                    detail,
                    "{} matches none of the peers: {}",
                    describe(cluster, peer),
                    why_no_peer(cluster, peers, peer)
                );
                false
            }
        },
    };
    (peers_ok, detail)
}

/// Whether a peer clause covers the endpoint on the other side.
pub fn peer_matches(cluster: &Cluster, peer: &Peer, side: &Side) -> bool {
    match peer {
        Peer::IpBlock(b) => side.ip.is_some_and(|ip| b.contains(ip)),
        Peer::Pods { namespaces, pods } => {
            let Some(p) = side.pod_id() else { return false };
            if !cluster.is_policy_subject(p) {
                return false;
            }
            let pod = &cluster.pods[p];
            let ns_ok = match namespaces {
                NamespaceScope::Own(n) => pod.namespace == *n,
                NamespaceScope::Matching(sel) => sel.matches(&cluster.namespaces[pod.namespace].labels),
            };
            ns_ok && pods.matches(&pod.labels)
        }
    }
}

pub fn describe_peer(cluster: &Cluster, peer: &Peer) -> String {
    match peer {
        Peer::IpBlock(b) => format!("ipBlock {b}"),
        Peer::Pods { namespaces, pods } => {
            let ns = match namespaces {
                NamespaceScope::Own(n) => format!("namespace {}", cluster.namespaces[*n].name),
                NamespaceScope::Matching(s) => format!("namespaces {s}"),
            };
            format!("pods {pods} in {ns}")
        }
    }
}

fn why_no_peer(cluster: &Cluster, peers: &[Peer], side: &Side) -> String {
    let reasons: Vec<String> = peers
        .iter()
        .enumerate()
        .map(|(j, p)| {
            let why = match p {
                Peer::IpBlock(b) => match side.ip {
                    None => "the endpoint has no IP (built from a workload template)".to_string(),
                    Some(ip) => match b.excepted_by(ip) {
                        Some(e) if b.cidr.contains(&ip) => format!("{ip} is excepted by {e}"),
                        _ => format!("{ip} is outside {}", b.cidr),
                    },
                },
                Peer::Pods { .. } => match side.pod_id() {
                    None => "not a pod".to_string(),
                    Some(pod) if !cluster.is_policy_subject(pod) => {
                        "host-network pods are not matched by selectors".into()
                    }
                    Some(_) => "namespace or pod labels do not match".into(),
                },
            };
            format!("[{j}] {}: {why}", describe_peer(cluster, p))
        })
        .collect();
    reasons.join("; ")
}
