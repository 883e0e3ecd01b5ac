//! Checks on how policies are written: what they select, their peers and policyTypes.

use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use palisade_core::cluster::{Cluster, PolicyId};
use palisade_core::field::FieldPath;
use palisade_core::field::{Nowhere, Problems};
use palisade_core::label::EndpointLabels;
use palisade_core::matching;
use palisade_core::policy::{Action, Direction, Policy, PolicyKind};
use palisade_core::port::Protocol;
use palisade_core::rule::{Form, Port, Rule};
use palisade_core::verdict::{selects, Connection, Endpoint, Side};
use palisade_ingest::kubernetes::selector::compile as compile_selector;

use super::{
    rule_path, Context, ANY_PEER, DNS_ANYWHERE, JOINED_PEER, POLICY_TYPES, SELECTS_NOTHING, SPLIT_PEERS, UNKNOWN_LABEL,
};

pub(super) fn run(cx: &mut Context) {
    let carried = Labelled::new(cx.cluster);
    // Without pods every selector selects nothing: PAL020 says so once instead.
    let pods = !cx.cluster.pods.is_empty();
    for pol in cx.cluster.policy_ids() {
        if pods {
            selects_nothing(cx, pol);
            unknown_labels(cx, pol, &carried);
        }
        open_rules(cx, pol);
        if let Some(spec) = cx.written(pol).and_then(|np| np.spec.as_ref()) {
            peer_shapes(cx, pol, spec);
            policy_types(cx, pol, spec);
        }
    }
}

fn selects_nothing(cx: &mut Context, pol: PolicyId) {
    let (cluster, p) = (cx.cluster, &cx.cluster.policies[pol]);
    let pods = cluster.pod_ids().any(|i| selects(cluster, p, &Side::pod(cluster, i)));
    let hosts = cluster.host_ids().any(|h| {
        let ip = cluster.host_endpoints[h].ips.first().copied();
        selects(cluster, p, &Side { endpoint: Endpoint::Host(h), ip })
    });
    if pods || hosts {
        return;
    }
    let (field, written) = match p.kind {
        PolicyKind::Kubernetes => ("podSelector", describe_selector_field(cx, pol)),
        _ => ("selector", p.subject.to_string()),
    };
    cx.at_policy(
        &SELECTS_NOTHING,
        pol,
        FieldPath::root().key("spec").key(field),
        format!("selects no pod{} in this cluster ({field} {written})", if hosts { "" } else { " or host endpoint" }),
        "check the selector's labels against the pods' (palisade select shows what a selector matches); a policy that selects nothing enforces nothing",
    );
}

fn describe_selector_field(cx: &Context, pol: PolicyId) -> String {
    let sel = cx.written(pol).and_then(|np| np.spec.as_ref()).and_then(|s| s.pod_selector.clone()).unwrap_or_default();
    serde_json::to_string(&sel).unwrap_or_default()
}

/// Label keys (and key=value pairs) that something in the cluster carries.
struct Carried {
    keys: BTreeSet<String>,
    pairs: BTreeSet<(String, String)>,
}

impl Carried {
    fn of<'a>(label_sets: impl Iterator<Item = &'a palisade_core::label::Labels>) -> Carried {
        let mut c = Carried { keys: BTreeSet::new(), pairs: BTreeSet::new() };
        for labels in label_sets {
            for (k, v) in labels {
                c.keys.insert(k.clone());
                c.pairs.insert((k.clone(), v.clone()));
            }
        }
        c
    }
}

/// The labels things in the cluster carry, gathered once for every policy's selectors.
struct Labelled {
    pods: Carried,
    namespaces: Carried,
    /// Keys Calico selectors can see: endpoints (pseudo-labels included), host endpoints, network sets.
    calico: BTreeSet<String>,
}

impl Labelled {
    fn new(cluster: &palisade_core::cluster::Cluster) -> Labelled {
        let mut calico = BTreeSet::new();
        let endpoints = cluster.pod_ids().map(|p| cluster.calico_labels(p));
        let plain =
            cluster.host_endpoints.iter().map(|h| &h.labels).chain(cluster.network_sets.iter().map(|s| &s.labels));
        for labels in endpoints.chain(plain.map(EndpointLabels::plain)) {
            labels.for_each(|k, _| {
                if !calico.contains(k) {
                    calico.insert(k.to_string());
                }
            });
        }
        Labelled {
            pods: Carried::of(cluster.pods.iter().map(|p| &p.labels)),
            namespaces: Carried::of(cluster.namespaces.iter().map(|n| &n.labels)),
            calico,
        }
    }
}

fn unknown_labels(cx: &mut Context, pol: PolicyId, labelled: &Labelled) {
    let (pods, namespaces) = (&labelled.pods, &labelled.namespaces);
    let mut found: Vec<(FieldPath, String)> = Vec::new();
    if let Some(spec) = cx.written(pol).and_then(|np| np.spec.as_ref()) {
        let spec_path = FieldPath::root().key("spec");
        if let Some(s) = &spec.pod_selector {
            missing_labels(s, pods, "pod", &spec_path.key("podSelector"), &mut found);
        }
        for (dir, rules) in written_rules(spec) {
            for (i, peers) in rules.iter().enumerate() {
                for (j, peer) in peers.iter().flat_map(|p| p.iter()).enumerate() {
                    let path = rule_path(dir, i).key(dir.peers_field()).index(j);
                    if let Some(s) = &peer.pod_selector {
                        missing_labels(s, pods, "pod", &path.key("podSelector"), &mut found);
                    }
                    if let Some(s) = &peer.namespace_selector {
                        missing_labels(s, namespaces, "namespace", &path.key("namespaceSelector"), &mut found);
                    }
                }
            }
        }
    } else if cx.cluster.policies[pol].kind != PolicyKind::Kubernetes {
        calico_unknown_keys(cx, pol, &labelled.calico, &mut found);
    }
    for (path, message) in found {
        cx.at_policy(
            &UNKNOWN_LABEL,
            pol,
            path,
            message,
            "a typo in a label selects nothing: compare with the labels the pods and namespaces carry (kubectl get pods --show-labels)",
        );
    }
}

/// Each rule's peer list as written, per direction.
fn written_rules(spec: &NetworkPolicySpec) -> Vec<(Direction, Vec<Option<&Vec<NetworkPolicyPeer>>>)> {
    let ingress = spec.ingress.iter().flatten().map(|r| r.from.as_ref()).collect();
    let egress = spec.egress.iter().flatten().map(|r| r.to.as_ref()).collect();
    vec![(Direction::Ingress, ingress), (Direction::Egress, egress)]
}

fn missing_labels(
    sel: &LabelSelector,
    carried: &Carried,
    what: &str,
    path: &FieldPath,
    out: &mut Vec<(FieldPath, String)>,
) {
    for (k, v) in sel.match_labels.iter().flatten() {
        if !carried.keys.contains(k) {
            out.push((path.key("matchLabels").key(k), format!("no {what} carries the label {k}")));
        } else if !carried.pairs.contains(&(k.clone(), v.clone())) {
            out.push((path.key("matchLabels").key(k), format!("no {what} carries {k}={v}")));
        }
    }
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let at = path.key("matchExpressions").index(i);
        if !carried.keys.contains(&e.key) && matches!(e.operator.as_str(), "In" | "Exists") {
            out.push((at, format!("no {what} carries the label {}", e.key)));
        } else if e.operator == "In" {
            let values = e.values.iter().flatten();
            if !values.clone().any(|v| carried.pairs.contains(&(e.key.clone(), v.clone()))) {
                let list: Vec<&String> = values.collect();
                out.push((at, format!("no {what} carries {} with any of the values {list:?}", e.key)));
            }
        }
    }
}

/// Calico selectors: label keys that no endpoint, namespace, service account or network set carries.
fn calico_unknown_keys(cx: &Context, pol: PolicyId, carried: &BTreeSet<String>, found: &mut Vec<(FieldPath, String)>) {
    let cluster = cx.cluster;
    let p: &Policy = &cluster.policies[pol];
    let mut keys = BTreeSet::new();
    p.subject.keys(&mut keys);
    for k in keys.iter().filter(|k| !carried.contains(*k)) {
        found.push((
            FieldPath::root().key("spec").key("selector"),
            format!("no endpoint carries the label {}", shown_key(k)),
        ));
    }
    for dir in [Direction::Ingress, Direction::Egress] {
        for r in p.rules(dir).into_iter().flatten() {
            let i = r.origin.rule;
            let mut keys = BTreeSet::new();
            for e in [&r.source, &r.destination] {
                e.selector.iter().chain(e.not_selector.iter()).for_each(|x| x.keys(&mut keys));
            }
            for k in keys.iter().filter(|k| !carried.contains(*k)) {
                found.push((
                    rule_path(dir, i),
                    format!("no endpoint or network set carries the label {}", shown_key(k)),
                ));
            }
        }
    }
}

/// Calico folds namespace labels in as `pcns.<key>`; print them as people wrote them.
fn shown_key(k: &str) -> String {
    match k.strip_prefix("pcns.") {
        Some(ns) => format!("{ns} (on a namespace)"),
        None => k.to_string(),
    }
}

/// Whether one of a written rule's rules admits DNS (53 over UDP or TCP) to some address.
fn admits_dns(cluster: &Cluster, rules: &[Rule]) -> bool {
    let nowhere = Side { endpoint: Endpoint::External, ip: None };
    rules.iter().any(|r| {
        [Protocol::UDP, Protocol::TCP].into_iter().any(|protocol| {
            matching::packet(r, &Connection::new(nowhere, nowhere, 53, protocol)).is_ok()
                && matching::ports_match(cluster, &r.destination, &nowhere, 53, protocol)
        })
    })
}

fn open_rules(cx: &mut Context, pol: PolicyId) {
    let p = &cx.cluster.policies[pol];
    let calico = super::is_calico(cx.cluster, pol);
    let mut found = Vec::new();
    for dir in [Direction::Ingress, Direction::Egress] {
        for rules in p.written_rules(dir) {
            let (r, i) = (&rules[0], rules[0].origin.rule);
            if r.action != Action::Allow {
                continue;
            }
            let (every_peer, dns) = match &r.origin.written.form {
                Form::Peers { peers, ports } => {
                    // An ipBlock of every address: nets /0 and no except.
                    let everywhere = rules.iter().any(|r| {
                        let e = super::peer_end(r, dir);
                        e.nets.iter().any(|n| n.prefix_len() == 0) && e.not_nets.is_empty()
                    });
                    let dns = ports.is_some() && admits_dns(cx.cluster, rules);
                    (peers.is_none(), dns && (peers.is_none() || everywhere))
                }
                Form::Entities { .. } => calico_open(r, dir),
            };
            let ports = rule_ports(rules);
            if dir == Direction::Egress && dns && calico {
                found.push((&DNS_ANYWHERE, rule_path(dir, i), format!("egress rule [{i}] allows DNS ({ports}) to every address"),
                    "DNS to any address lets a compromised pod tunnel data out; allow 53 only to kube-dns: destination: {namespaceSelector: kubernetes.io/metadata.name == \"kube-system\", selector: k8s-app == \"kube-dns\"}"));
            } else if dir == Direction::Egress && dns {
                found.push((&DNS_ANYWHERE, rule_path(dir, i), format!("egress rule [{i}] allows DNS ({ports}) to every address"),
                    "DNS to any address lets a compromised pod tunnel data out; allow 53 only to kube-dns: one peer with namespaceSelector kubernetes.io/metadata.name: kube-system AND podSelector k8s-app: kube-dns"));
            } else if every_peer && calico {
                let field = if dir == Direction::Ingress { "source" } else { "destination" };
                found.push((&ANY_PEER, rule_path(dir, i), format!("{dir} rule [{i}] has no {field} selector or nets: it admits every endpoint in every namespace and every address, on {ports}"),
                    if field == "source" { "name the peers this rule is for in its source: selector, namespaceSelector, nets; without them it means everyone" } else { "name the peers this rule is for in its destination: selector, namespaceSelector, nets; without them it means everyone" }));
            } else if every_peer {
                let field = dir.peers_field();
                found.push((&ANY_PEER, rule_path(dir, i), format!("{dir} rule [{i}] has no {field}: it admits every pod in every namespace and every address, on {ports}"),
                    "name the peers this rule is for (podSelector, namespaceSelector, ipBlock); an empty or absent list means everyone"));
            }
        }
    }
    for (check, path, message, help) in found {
        cx.at_policy(check, pol, path, message, help);
    }
}

/// The ports a written rule admits, in its API's words.
fn rule_ports(rules: &[Rule]) -> String {
    match &rules[0].origin.written.form {
        Form::Peers { ports: None, .. } => "every port".into(),
        Form::Peers { ports: Some(list), .. } => list.iter().map(|p| p.text.clone()).collect::<Vec<_>>().join(", "),
        Form::Entities { protocol, .. } => {
            let ports: Vec<String> = rules[0].destination.ports.iter().map(|p| p.to_string()).collect();
            let proto = protocol.clone().unwrap_or_else(|| "any protocol".into());
            if ports.is_empty() {
                format!("every port of {proto}")
            } else {
                format!("{} {proto}", ports.join(", "))
            }
        }
    }
}

/// (the rule admits every peer, it admits DNS to every address) for a Calico Allow rule.
fn calico_open(c: &Rule, dir: Direction) -> (bool, bool) {
    let peer = super::peer_end(c, dir);
    let no_peer =
        peer.nets.is_empty() && peer.not_nets.is_empty() && peer.selector.is_none() && peer.not_selector.is_none();
    let everywhere = no_peer || peer.nets.iter().any(|n| n.prefix_len() == 0) && peer.selector.is_none();
    let proto_ok = c.protocol.is_none_or(|n| n == 17 || n == 6);
    let dns = proto_ok
        && !c.destination.ports.is_empty()
        && c.destination.ports.iter().any(|p| matches!(p, Port::Range(a, b) if (*a..=*b).contains(&53)));
    (no_peer, everywhere && dns)
}

fn peer_shapes(cx: &mut Context, pol: PolicyId, spec: &NetworkPolicySpec) {
    let mut found = Vec::new();
    for (dir, rules) in written_rules(spec) {
        for (i, peers) in rules.iter().enumerate() {
            let Some(peers) = peers else { continue };
            let ns_only = peers.iter().position(|x| x.namespace_selector.is_some() && x.pod_selector.is_none());
            let pod_only = peers.iter().position(|x| x.pod_selector.is_some() && x.namespace_selector.is_none());
            if let (Some(n), Some(p)) = (ns_only, pod_only) {
                let field = dir.peers_field();
                found.push((&SPLIT_PEERS, rule_path(dir, i).key(field).index(n.min(p)),
                    format!("{field}[{n}] (namespaceSelector) and {field}[{p}] (podSelector) are two peers: every pod of the selected namespaces, OR the selected pods of this namespace"),
                    "if you meant the selected pods in the selected namespaces, write both selectors in one peer (drop the '-' before podSelector)".to_string()));
            }
            for (j, peer) in peers.iter().enumerate() {
                if let Some(msg) = joined_peer_empty(cx, pol, dir, i, j, peer) {
                    let at = rule_path(dir, i).key(dir.peers_field()).index(j);
                    found.push((&JOINED_PEER, at, msg,
                        "if you meant either the namespaces or the pods, write them as two peers ('- namespaceSelector' and '- podSelector')".to_string()));
                }
            }
        }
    }
    for (check, path, message, help) in found {
        cx.at_policy(check, pol, path, message, help);
    }
}

/// A peer with both selectors that selects no pod, where each selector alone selects some.
fn joined_peer_empty(
    cx: &Context,
    pol: PolicyId,
    dir: Direction,
    i: usize,
    j: usize,
    peer: &NetworkPolicyPeer,
) -> Option<String> {
    if peer.namespace_selector.is_none() || peer.pod_selector.is_none() {
        return None;
    }
    let cluster = cx.cluster;
    cluster.policies[pol].rules(dir)?.iter().find(|r| (r.origin.rule, r.origin.peer) == (i, Some(j)))?;
    let mut problems = Problems::new(String::new(), &Nowhere);
    let root = FieldPath::root();
    let ns = compile_selector(peer.namespace_selector.as_ref()?, &root, &mut problems);
    let pods = compile_selector(peer.pod_selector.as_ref()?, &root, &mut problems);
    let in_ns = |p: &palisade_core::cluster::Pod| ns.matches(&cluster.namespaces[p.namespace].labels);
    let both = cluster.pods.iter().any(|p| in_ns(p) && pods.matches(&p.labels));
    let ns_alone = cluster.pods.iter().any(in_ns);
    let pods_alone = cluster.pods.iter().any(|p| pods.matches(&p.labels));
    (!both && ns_alone && pods_alone).then(|| {
        format!("{}[{j}] selects no pod: its namespaces hold pods and its podSelector matches pods, but never the same ones", dir.peers_field())
    })
}

fn policy_types(cx: &mut Context, pol: PolicyId, spec: &NetworkPolicySpec) {
    if spec.policy_types.as_ref().is_some_and(|t| !t.is_empty()) {
        return;
    }
    let ingress_rules = spec.ingress.as_ref().map(|r| r.len());
    let egress_rules = spec.egress.as_ref().map(|r| r.len());
    let path = FieldPath::root().key("spec").key("policyTypes");
    match (ingress_rules, egress_rules) {
        (None | Some(0), Some(n)) if n > 0 => cx.at_policy(
            &POLICY_TYPES,
            pol,
            path,
            "policyTypes is omitted, so it defaults to [Ingress, Egress]: the selected pods also deny all ingress, though the policy has only egress rules".into(),
            "write policyTypes: [Egress] if the policy is meant for egress only, or [Ingress, Egress] to keep the ingress deny on purpose",
        ),
        (_, Some(0)) => cx.at_policy(
            &POLICY_TYPES,
            pol,
            path,
            "policyTypes is omitted and egress is an empty list, so Egress is not a policy type: egress stays open".into(),
            "to deny all egress, write policyTypes: [Ingress, Egress] (or [Egress])",
        ),
        _ => {}
    }
}
