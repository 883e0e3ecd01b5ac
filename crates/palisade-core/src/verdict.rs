//! Deciding one connection, as a conformant plugin enforces it, with a trace of why.
//!
//! This path scans policies directly and explains itself; [`crate::index`] decides all pairs
//! with bitsets. Property tests require the two to agree.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;

use crate::cluster::{Cluster, NodeId, PodId};
use crate::peer::{NamespaceScope, Peer};
use crate::policy::{Direction, Rule};
use crate::port::{ContainerPort, Protocol};

/// What stands at one end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Pod(PodId),
    Node(NodeId),
    External,
}

/// One end of a connection: the endpoint and the IP it uses (if known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Side {
    pub endpoint: Endpoint,
    pub ip: Option<IpAddr>,
}

impl Side {
    pub fn pod(cluster: &Cluster, id: PodId) -> Side {
        if cluster.pods[id].host_network {
            // A host-network pod is the node's network stack: policy sees the node.
            let ip = cluster.primary_ip(id);
            if let Some(node) = ip.and_then(|ip| cluster.node_by_ip(ip)) {
                return Side { endpoint: Endpoint::Node(node), ip };
            }
        }
        Side { endpoint: Endpoint::Pod(id), ip: cluster.primary_ip(id) }
    }
    /// The endpoint behind an IP: a pod, a node, or something outside the cluster.
    pub fn ip(cluster: &Cluster, ip: IpAddr) -> Side {
        let endpoint = if let Some(p) = cluster.pod_by_ip(ip) {
            Endpoint::Pod(p)
        } else if let Some(n) = cluster.node_by_ip(ip) {
            Endpoint::Node(n)
        } else {
            Endpoint::External
        };
        Side { endpoint, ip: Some(ip) }
    }
    fn pod_id(&self) -> Option<PodId> {
        match self.endpoint {
            Endpoint::Pod(p) => Some(p),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Connection {
    pub src: Side,
    pub dst: Side,
    pub port: u16,
    pub protocol: Protocol,
}

/// How one rule fared.
#[derive(Clone, Debug, Serialize)]
pub struct RuleEval {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub matched: bool,
    pub detail: String,
}

/// How one policy that selects the pod fared.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyEval {
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub allowed: bool,
    pub rules: Vec<RuleEval>,
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
        }
    }
}

/// One step of the reasoning, in order.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// A pod talking to its own IP never leaves its network namespace.
    SelfConnection { pod: String, reason: String },
    /// Policy is enforced on this side: which policies select the pod, and what they said.
    Policies { direction: Direction, endpoint: String, isolated: bool, allowed: bool, policies: Vec<PolicyEval> },
    /// No NetworkPolicy can apply on this side (node, host network, outside the cluster).
    NotEnforced { direction: Direction, endpoint: String, reason: String },
    /// kube-proxy rewrote a Service address to its backends before policy sees the packet.
    Dnat { service: String, address: String, port: u16, protocol: Protocol, target_port: String, backends: usize },
    /// The decision for one Service backend.
    Backend(BackendEval),
    /// The connection cannot happen at all (Service without that port or without backends).
    Unreachable { reason: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub trace: Vec<Step>,
}

/// Describes an endpoint for people: `ns/pod`, `node n1`, or the IP.
pub fn describe(cluster: &Cluster, side: &Side) -> String {
    let ip = side.ip.map(|i| i.to_string());
    match side.endpoint {
        Endpoint::Pod(p) => cluster.pod_key(p),
        Endpoint::Node(n) => format!("node {} ({})", cluster.nodes[n].name, ip.unwrap_or_default()),
        Endpoint::External => ip.unwrap_or_else(|| "?".into()),
    }
}

/// Decides a connection between two concrete endpoints (after any Service DNAT).
pub fn decide(cluster: &Cluster, conn: &Connection) -> Decision {
    if let (Some(a), Some(b)) = (conn.src.pod_id(), conn.dst.pod_id()) {
        if a == b {
            return Decision {
                verdict: Verdict::Allow,
                trace: vec![Step::SelfConnection {
                    pod: cluster.pod_key(a),
                    reason: "a pod's packets to its own IP stay inside its network namespace (loopback); no plugin sees or filters them".into(),
                }],
            };
        }
    }
    let egress = side_step(cluster, conn, Direction::Egress);
    let ingress = side_step(cluster, conn, Direction::Ingress);
    let allowed = step_allows(&egress) && step_allows(&ingress);
    Decision { verdict: Verdict::from_bool(allowed), trace: vec![egress, ingress] }
}

fn step_allows(step: &Step) -> bool {
    match step {
        Step::Policies { allowed, .. } => *allowed,
        _ => true,
    }
}

/// Egress is judged at the source, ingress at the destination.
fn side_step(cluster: &Cluster, conn: &Connection, dir: Direction) -> Step {
    let (this, other) = match dir {
        Direction::Egress => (&conn.src, &conn.dst),
        Direction::Ingress => (&conn.dst, &conn.src),
    };
    let endpoint = describe(cluster, this);
    let pod = match this.endpoint {
        Endpoint::Pod(p) if cluster.is_policy_subject(p) => p,
        Endpoint::Pod(_) => {
            return Step::NotEnforced {
                direction: dir,
                endpoint,
                reason: "host-network pod: it uses the node's network stack, which NetworkPolicy does not govern"
                    .into(),
            }
        }
        Endpoint::Node(_) => {
            return Step::NotEnforced {
                direction: dir,
                endpoint,
                reason: "a node is not a pod: NetworkPolicy does not apply to it".into(),
            }
        }
        Endpoint::External => {
            return Step::NotEnforced {
                direction: dir,
                endpoint,
                reason: "outside the cluster: no policy is enforced there".into(),
            }
        }
    };
    let dst_ports = conn.dst.pod_id().map(|d| cluster.pods[d].ports.as_slice());
    let mut policies = Vec::new();
    for (idx, pol) in cluster.policies.iter().enumerate() {
        let Some(rules) = pol.rules(dir) else { continue };
        if pol.namespace != cluster.pods[pod].namespace || !pol.selector.matches(&cluster.pods[pod].labels) {
            continue;
        }
        let rules: Vec<RuleEval> =
            rules.iter().enumerate().map(|(i, r)| eval_rule(cluster, r, i, other, conn, dst_ports)).collect();
        policies.push(PolicyEval {
            policy: cluster.policy_key(idx),
            location: pol.location.as_ref().map(|l| format!("{}:{}", l.file, l.line)),
            allowed: rules.iter().any(|r| r.matched),
            rules,
        });
    }
    let isolated = !policies.is_empty();
    let allowed = !isolated || policies.iter().any(|p| p.allowed);
    Step::Policies { direction: dir, endpoint, isolated, allowed, policies }
}

fn eval_rule(
    cluster: &Cluster,
    rule: &Rule,
    index: usize,
    peer: &Side,
    conn: &Connection,
    dst_ports: Option<&[ContainerPort]>,
) -> RuleEval {
    let location = rule.location.as_ref().map(|l| format!("{}:{}", l.file, l.line));
    let mut detail = String::new();
    let ports_ok = match &rule.ports {
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
        return RuleEval { index, location, matched: false, detail };
    }
    let peers_ok = match &rule.peers {
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
    RuleEval { index, location, matched: peers_ok, detail }
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
