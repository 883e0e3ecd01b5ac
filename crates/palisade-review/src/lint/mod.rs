//! `lint`: findings about a policy set that loads fine but does not do what its author
//! likely meant. Every finding has a stable code, a severity, a place and a hint.

mod address;
mod calico;
mod cluster_policy;
mod dns;
mod host_network;
mod reachability;
pub mod sarif;
mod syntax;

use std::sync::Arc;

use palisade_core::cluster::{Cluster, PolicyId};
use palisade_core::field::{FieldPath, Location, Problem, Severity};
use palisade_core::index::Sides;
use palisade_core::policy::{Direction, Policy, PolicyKind};
use palisade_core::rule::{Entity, Form, Rule};
use palisade_ingest::{Input, Object};
use serde::Serialize;

use crate::connectivity::{Address, Connectivity, Cuts};
use crate::probe::Probe;
use crate::workload::Workloads;

/// A kind of finding. Codes never change meaning; new checks get new codes.
#[derive(Debug, Serialize)]
pub struct Check {
    pub code: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

macro_rules! checks {
    ($($id:ident = $code:literal, $name:literal, $sev:ident, $summary:literal;)*) => {
        $(pub const $id: Check = Check { code: $code, name: $name, severity: Severity::$sev, summary: $summary };)*
        /// Every check, in code order.
        pub const CHECKS: &[Check] = &[$($id),*];
    };
}

checks! {
    INPUT = "PAL000", "input-warning", Warning, "The input loads, but a field is suspicious (reported by the loader).";
    SELECTS_NOTHING = "PAL001", "selects-nothing", Warning, "A policy selects no pod or host endpoint of this cluster.";
    UNKNOWN_LABEL = "PAL002", "unknown-label", Warning, "A selector names a label (or value) that no pod or namespace carries.";
    NO_DNS = "PAL003", "egress-without-dns", Error, "Pods are isolated for egress and cannot reach DNS.";
    DNS_ANYWHERE = "PAL004", "dns-to-any-address", Warning, "DNS is allowed to every address: a path to exfiltrate data.";
    ANY_PEER = "PAL005", "any-peer", Warning, "A rule with an empty or absent from/to admits every peer, in every namespace and outside.";
    SPLIT_PEERS = "PAL006", "split-peers", Warning, "namespaceSelector and podSelector are two peers (OR) where one peer (AND) was likely meant.";
    JOINED_PEER = "PAL007", "joined-peer-selects-nothing", Warning, "A peer with namespaceSelector AND podSelector selects no pod, though each alone does: two peers were likely meant.";
    IPBLOCK_PODS = "PAL008", "ipblock-covers-cluster", Warning, "An ipBlock covers pod or node addresses, which selectors should name.";
    IPBLOCK_SERVICE = "PAL009", "ipblock-service-address", Warning, "An ipBlock covers a Service's ClusterIP but not its backends: policy sees the backends after DNAT.";
    POLICY_TYPES = "PAL010", "policy-types-default", Warning, "policyTypes is omitted and its default differs from what the rules suggest.";
    ONE_SIDED = "PAL011", "one-sided-allow", Error, "One side allows a connection the other side's isolation denies: it still fails.";
    PARTLY_ISOLATED = "PAL012", "partly-isolated-namespace", Warning, "Some pods of a namespace are isolated, others are left open.";
    SHADOWED = "PAL013", "shadowed-rule", Error, "A Calico rule can never decide: an earlier rule or policy always decides first.";
    EQUAL_ORDER = "PAL014", "equal-order", Warning, "Two Calico policies of one tier share an order and an endpoint: only their names order them.";
    PASS_LAST = "PAL015", "pass-without-later-tier", Warning, "A Pass has no later tier to hand the connection to: the profile decides.";
    DNS_SERVER_ISOLATED = "PAL016", "dns-server-isolated", Error, "The DNS pods are isolated for ingress and refuse client pods on their DNS port.";
    DNS_WRONG_PORT = "PAL017", "dns-wrong-port", Error, "Egress allows 53 to the DNS pods, but they listen on another port (the Service's targetPort): policy sees that one.";
    HOST_NETWORK_PEER = "PAL018", "host-network-peer", Warning, "A peer's selector matches only host-network pods, which selectors never match: it admits nothing.";
    NEVER_MATCHES = "PAL019", "rule-never-matches", Error, "A Calico rule's own side excludes every endpoint its policy applies to: it can never match.";
    NO_PODS = "PAL020", "no-pods", Warning, "The input holds no pods: findings about what selectors select need the cluster.";
    EQUAL_PRIORITY = "PAL021", "equal-priority", Warning, "Two cluster network policies of one tier share a priority and both match a connection: the API leaves their order undefined.";
    PASS_TO_NOTHING = "PAL022", "pass-to-nothing", Warning, "A cluster network policy's Pass hands connections on, but nothing after it decides them: they are allowed by default, as with Accept.";
    SHADOWED_BY_PRIORITY = "PAL023", "shadowed-by-priority", Error, "A cluster network policy's rule matches connections but never decides one: a higher-precedence rule or policy always decides first.";
    FULL_NETWORK_DENY = "PAL024", "networks-deny-cuts-pods", Warning, "A Deny to networks 0.0.0.0/0 or ::/0 also matches pod addresses: it cuts pod traffic, not only the outside.";
}

pub fn check(code: &str) -> Option<&'static Check> {
    CHECKS.iter().find(|c| c.code == code || c.name == code)
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub code: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    /// `NetworkPolicy ns/name`, `namespace ns`, ...
    pub object: String,
    pub path: String,
    pub message: String,
    pub help: String,
    pub location: Option<Location>,
}

impl Finding {
    pub fn from_problem(p: &Problem) -> Finding {
        Finding {
            code: INPUT.code,
            name: INPUT.name,
            severity: p.severity,
            object: p.object.clone(),
            path: p.path.to_string(),
            message: p.message.clone(),
            help: p.help.clone().unwrap_or_default(),
            location: p.location.clone(),
        }
    }
    /// As a loader problem, so it renders with the same code frames; the code leads the message.
    pub fn to_problem(&self) -> Problem {
        Problem {
            severity: self.severity,
            object: self.object.clone(),
            path: FieldPath::parse(&self.path),
            message: format!("[{} {}] {}", self.code, self.name, self.message),
            help: (!self.help.is_empty()).then(|| self.help.clone()),
            location: self.location.clone(),
        }
    }
}

/// The connections the checks speak of: the probe ports and the address endpoints. The
/// checks decide what they need themselves and never read a connectivity's matrices, so
/// `lint` alone need not compute them (every pair on every probe).
#[derive(Clone, Debug)]
pub struct Scope {
    pub probes: Vec<Probe>,
    pub addresses: Vec<Address>,
    /// Per probe, its sides when a connectivity worked them out already (else empty).
    pub sides: Vec<Sides>,
}

impl Scope {
    /// The probes and address endpoints of one cluster cut at `cuts`, as
    /// [`Connectivity::compute`] would name them.
    pub fn new(cluster: &Cluster, cuts: Cuts) -> Scope {
        let addresses = crate::connectivity::addresses(cluster, &cuts.pieces);
        Scope { probes: cuts.probes, addresses, sides: Vec::new() }
    }

    /// The probes and address endpoints of a connectivity computed anyway.
    pub fn of(conn: &Connectivity) -> Scope {
        Scope { probes: conn.probes.clone(), addresses: conn.addresses.clone(), sides: conn.sides.clone() }
    }
}

/// What the checks read, and where they put their findings.
pub(crate) struct Context<'a> {
    pub cluster: &'a Cluster,
    pub conn: &'a Scope,
    pub workloads: &'a Workloads,
    /// Per policy of the cluster, its input object (to read fields as written and locate them).
    pub inputs: Vec<Option<&'a Input>>,
    pub findings: Vec<Finding>,
}

impl<'a> Context<'a> {
    fn new(cluster: &'a Cluster, inputs: &'a [Input], conn: &'a Scope, workloads: &'a Workloads) -> Self {
        let root = FieldPath::root();
        let by_location: std::collections::HashMap<(Arc<str>, usize), &Input> =
            inputs.iter().filter_map(|i| i.locate.locate(&root).map(|l| ((l.file.clone(), l.offset), i))).collect();
        let inputs = cluster
            .policies
            .iter()
            .map(|p| p.location.as_ref().and_then(|l| by_location.get(&(l.file.clone(), l.offset)).copied()))
            .collect();
        Context { cluster, conn, workloads, inputs, findings: Vec::new() }
    }

    pub fn policy_object(&self, pol: PolicyId) -> String {
        let p = &self.cluster.policies[pol];
        let kind = match p.kind {
            PolicyKind::Kubernetes => "NetworkPolicy",
            PolicyKind::Calico => "Calico NetworkPolicy",
            PolicyKind::CalicoGlobal => "GlobalNetworkPolicy",
            other => other.as_str(),
        };
        format!("{kind} {}", self.cluster.policy_key(pol))
    }

    pub fn locate(&self, pol: PolicyId, path: &FieldPath) -> Option<Location> {
        match self.inputs[pol.index()] {
            Some(input) => input.locate.locate(path),
            None => self.cluster.policies[pol].location.clone(),
        }
    }

    /// The Kubernetes NetworkPolicy as written, for a Kubernetes policy.
    pub fn written(&self, pol: PolicyId) -> Option<&'a k8s_openapi::api::networking::v1::NetworkPolicy> {
        match &self.inputs[pol.index()]?.object {
            Object::NetworkPolicy(np) => Some(np),
            _ => None,
        }
    }

    pub fn at_policy(
        &mut self,
        check: &Check,
        pol: PolicyId,
        path: FieldPath,
        message: String,
        help: impl Into<String>,
    ) {
        let location = self.locate(pol, &path);
        let object = self.policy_object(pol);
        self.push(check, object, path, message, help.into(), location);
    }

    pub fn push(
        &mut self,
        check: &Check,
        object: String,
        path: FieldPath,
        message: String,
        help: String,
        location: Option<Location>,
    ) {
        self.findings.push(Finding {
            code: check.code,
            name: check.name,
            severity: check.severity,
            object,
            path: if path.0.is_empty() { String::new() } else { path.to_string() },
            message,
            help,
            location,
        });
    }
}

/// Whether a policy is Calico's (its findings speak of source, destination, selector, nets).
pub(crate) fn is_calico(cluster: &Cluster, pol: PolicyId) -> bool {
    cluster.policies[pol].kind != PolicyKind::Kubernetes
}

/// The peers of a Kubernetes-shaped policy's rules, each once, as the entities they lowered
/// to: `(written rule, peer index, entity, the peer as written)`.
pub(crate) fn peer_entities(pol: &Policy, dir: Direction) -> Vec<(usize, usize, &Entity, &str)> {
    let mut out: Vec<(usize, usize, &Entity, &str)> = Vec::new();
    for r in pol.rules(dir).into_iter().flatten() {
        let (Form::Peers { peers: Some(words), .. }, Some(j)) = (&r.origin.written.form, r.origin.peer) else {
            continue;
        };
        if out.last().is_some_and(|&(i, k, _, _)| (i, k) == (r.origin.rule, j)) {
            continue;
        }
        out.push((r.origin.rule, j, peer_end(r, dir), words[j].text.as_str()));
    }
    out
}

/// A rule's peer end: its source for ingress, its destination for egress.
pub(crate) fn peer_end(r: &Rule, dir: Direction) -> &Entity {
    match dir {
        Direction::Ingress => &r.source,
        Direction::Egress => &r.destination,
    }
}

/// A rule's own end (the policy's endpoint): its destination for ingress, its source for egress.
pub(crate) fn own_end(r: &Rule, dir: Direction) -> &Entity {
    match dir {
        Direction::Ingress => &r.destination,
        Direction::Egress => &r.source,
    }
}

/// The path of rule `i` in direction `dir`: `spec.ingress[2]`.
pub(crate) fn rule_path(dir: Direction, i: usize) -> FieldPath {
    FieldPath::root().key("spec").key(dir.field()).index(i)
}

/// Runs every check. Findings come in code order, then by place.
pub fn lint(cluster: &Cluster, inputs: &[Input], conn: &Connectivity, workloads: &Workloads) -> Vec<Finding> {
    lint_with_progress(cluster, inputs, &Scope::of(conn), workloads, &mut |_| {})
}

/// [`lint`], naming each group of checks as it starts (for a progress display).
pub fn lint_with_progress(
    cluster: &Cluster,
    inputs: &[Input],
    conn: &Scope,
    workloads: &Workloads,
    phase: &mut dyn FnMut(&'static str),
) -> Vec<Finding> {
    let mut cx = Context::new(cluster, inputs, conn, workloads);
    no_pods(&mut cx);
    phase("selectors, peers and policyTypes");
    syntax::run(&mut cx);
    host_network::run(&mut cx);
    phase("address blocks");
    address::run(&mut cx);
    phase("DNS, isolation and one-sided allows");
    reachability::run(&mut cx);
    phase("Calico ordering and shadowed rules");
    calico::run(&mut cx);
    phase("cluster network policies: priorities, Pass, shadowed rules, networks");
    cluster_policy::run(&mut cx);
    let mut findings = cx.findings;
    findings.sort_by(|a, b| {
        let place = |f: &Finding| f.location.as_ref().map(|l| (l.file.clone(), l.line, l.column));
        (a.code, place(a), &a.message).cmp(&(b.code, place(b), &b.message))
    });
    findings
}

/// Policies without the cluster's pods: what selectors select cannot be judged. Said once,
/// instead of a selects-nothing and an unknown-label finding for every policy.
fn no_pods(cx: &mut Context) {
    let cluster = cx.cluster;
    if !cluster.pods.is_empty() || cluster.policies.is_empty() {
        return;
    }
    let message = format!(
        "the input holds {} polic(ies) and no pods: what their selectors select (PAL001, PAL002, PAL007, PAL011, PAL012, PAL016-PAL019) cannot be judged",
        cluster.policies.len()
    );
    let help = "lint the policies together with the cluster: kubectl get pods,namespaces,services -A -o yaml > cluster.yaml; palisade lint cluster.yaml POLICIES";
    cx.push(&NO_PODS, "input".into(), FieldPath::root(), message, help.into(), None);
}

/// "a, b, c and 4 more".
pub(crate) fn some_of(items: &[String], shown: usize) -> String {
    some_of_total(&items[..shown.min(items.len())], items.len())
}

/// "a, b, c and 4 more" from the items shown and how many there are in all (so that only
/// those shown need be worded).
pub(crate) fn some_of_total(shown: &[String], total: usize) -> String {
    let mut s = shown.join(", ");
    if total > shown.len() {
        s.push_str(&format!(" and {} more", total - shown.len()));
    }
    s
}
