//! Random clusters for property tests: three namespaces, nodes, pods scheduled to them (or to
//! none), host-network pods on a node's address or their own, workloads with no Pod objects
//! standing for their replicas, and Kubernetes NetworkPolicies over them (selectors, ipBlocks
//! that cut across pod addresses, numbered and named ports, ranges, every protocol). Shared by
//! the property tests of several crates (`#[path]`), so it depends only on what they all have.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Node, NodeAddress, NodeStatus, Pod, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use palisade_ingest::Object;
use proptest::prelude::*;

pub const NAMESPACES: [&str; 3] = ["n0", "n1", "n2"];
const KEYS: [&str; 3] = ["app", "tier", "env"];
const VALUES: [&str; 3] = ["a", "b", "c"];
pub const PORTS: [u16; 3] = [80, 81, 8080];
const NODES: [&str; 2] = ["node-0", "node-1"];

/// Node `i`'s address, inside the blocks policies cut (198.18.<ns>.x) so ipBlocks match nodes too.
fn node_ip(i: usize) -> String {
    format!("198.18.{i}.250")
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(&KEYS[..]).prop_map(String::from),
        prop::sample::select(&VALUES[..]).prop_map(String::from),
        0..3,
    )
}

fn meta(name: String, ns: Option<&str>, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta { name: Some(name), namespace: ns.map(String::from), labels: Some(labels), ..Default::default() }
}

fn requirement() -> impl Strategy<Value = LabelSelectorRequirement> {
    let key = prop::sample::select(&KEYS[..]).prop_map(String::from);
    let vals = prop::collection::vec(prop::sample::select(&VALUES[..]).prop_map(String::from), 1..3);
    (key, 0..4u8, vals).prop_map(|(key, op, values)| {
        let (operator, values) = match op {
            0 => ("In", Some(values)),
            1 => ("NotIn", Some(values)),
            2 => ("Exists", None),
            _ => ("DoesNotExist", None),
        };
        LabelSelectorRequirement { key, operator: operator.into(), values }
    })
}

/// Biased toward selectors that match something: empty, one label, or anything.
fn selector() -> impl Strategy<Value = LabelSelector> {
    let one = (prop::sample::select(&KEYS[..]), prop::sample::select(&VALUES[..])).prop_map(|(k, v)| LabelSelector {
        match_labels: Some(BTreeMap::from([(k.to_string(), v.to_string())])),
        match_expressions: None,
    });
    let any_sel =
        (labels(), prop::collection::vec(requirement(), 0..2), any::<bool>()).prop_map(|(l, e, use_labels)| {
            LabelSelector { match_labels: use_labels.then_some(l), match_expressions: (!e.is_empty()).then_some(e) }
        });
    prop_oneof![2 => Just(LabelSelector::default()), 2 => one, 2 => any_sel]
}

fn ip_block() -> impl Strategy<Value = IPBlock> {
    // Pod IPs are 198.18.<ns>.<n>; blocks cut across them.
    (0..3u8, 22..=32u8, prop::option::of(10..24u8)).prop_map(|(ns, len, except)| IPBlock {
        cidr: format!("198.18.{ns}.0/{}", len.min(24)),
        except: except.filter(|_| len < 32).map(|e| vec![format!("198.18.{ns}.{e}/32")]),
    })
}

fn peer() -> impl Strategy<Value = NetworkPolicyPeer> {
    prop_oneof![
        (prop::option::of(selector()), prop::option::of(selector()))
            .prop_filter("a peer needs a selector", |(p, n)| p.is_some() || n.is_some())
            .prop_map(|(pod_selector, namespace_selector)| NetworkPolicyPeer {
                pod_selector,
                namespace_selector,
                ip_block: None
            }),
        ip_block().prop_map(|b| NetworkPolicyPeer { ip_block: Some(b), ..Default::default() }),
    ]
}

fn policy_port() -> impl Strategy<Value = NetworkPolicyPort> {
    let proto = prop::option::of(prop::sample::select(vec!["TCP", "UDP", "SCTP"]).prop_map(String::from));
    let port = prop_oneof![
        Just(None),
        prop::sample::select(&PORTS[..]).prop_map(|p| Some(IntOrString::Int(i32::from(p)))),
        prop::sample::select(vec!["http", "alt", "web"]).prop_map(|n| Some(IntOrString::String(n.into()))),
    ];
    (proto, port, prop::option::of(0..10i32)).prop_map(|(protocol, port, extra)| {
        let end_port = match &port {
            Some(IntOrString::Int(p)) => extra.map(|e| p + e),
            _ => None,
        };
        NetworkPolicyPort { protocol, port, end_port }
    })
}

type RuleParts = (Option<Vec<NetworkPolicyPeer>>, Option<Vec<NetworkPolicyPort>>);

fn rule() -> impl Strategy<Value = RuleParts> {
    (
        prop::option::weighted(0.8, prop::collection::vec(peer(), 0..3)),
        prop::option::weighted(0.6, prop::collection::vec(policy_port(), 0..3)),
    )
}

fn policy(i: usize) -> impl Strategy<Value = NetworkPolicy> {
    let types = prop_oneof![
        Just(None),
        Just(Some(vec!["Ingress"])),
        Just(Some(vec!["Egress"])),
        Just(Some(vec!["Ingress", "Egress"]))
    ];
    (
        0..3usize,
        selector(),
        prop::option::weighted(0.8, prop::collection::vec(rule(), 0..4)),
        prop::option::weighted(0.8, prop::collection::vec(rule(), 0..4)),
        types,
    )
        .prop_map(move |(ns, sel, ingress, egress, types)| NetworkPolicy {
            metadata: meta(format!("p{i}"), Some(NAMESPACES[ns]), BTreeMap::new()),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(sel),
                ingress: ingress
                    .map(|rs| rs.into_iter().map(|(from, ports)| NetworkPolicyIngressRule { from, ports }).collect()),
                egress: egress
                    .map(|rs| rs.into_iter().map(|(to, ports)| NetworkPolicyEgressRule { to, ports }).collect()),
                policy_types: types.map(|t| t.into_iter().map(String::from).collect()),
            }),
        })
}

fn pod(i: usize) -> impl Strategy<Value = Pod> {
    let ports = prop::collection::vec(
        (
            prop::sample::select(vec!["http", "alt", "web"]),
            prop::sample::select(&PORTS[..]),
            prop::sample::select(vec!["TCP", "UDP", "SCTP"]),
        ),
        0..3,
    );
    let node = prop::option::weighted(0.7, 0..NODES.len());
    (0..3usize, labels(), ports, prop::bool::weighted(0.85), prop::bool::weighted(0.15), node, any::<bool>()).prop_map(
        move |(ns, l, ports, has_ip, host, node, node_address)| {
            let ports: Vec<ContainerPort> = ports
                .into_iter()
                .enumerate()
                .map(|(j, (name, port, proto))| ContainerPort {
                    name: Some(format!("{name}{}", if j > 0 { j.to_string() } else { String::new() })),
                    container_port: i32::from(port),
                    protocol: Some(proto.into()),
                    ..Default::default()
                })
                .collect();
            // A host-network pod sends from its node's address, or (some) from one of its own.
            let ip = match node {
                Some(n) if host && node_address => node_ip(n),
                _ => format!("198.18.{ns}.{}", 10 + i),
            };
            Pod {
                metadata: meta(format!("pod{i}"), Some(NAMESPACES[ns]), l),
                spec: Some(PodSpec {
                    containers: vec![Container { name: "c".into(), ports: Some(ports), ..Default::default() }],
                    host_network: Some(host),
                    node_name: node.map(|n| NODES[n].to_string()),
                    ..Default::default()
                }),
                status: has_ip.then(|| PodStatus { pod_ip: Some(ip), ..Default::default() }),
            }
        },
    )
}

/// A workload whose pods were not given: one template pod stands for its pods. A Deployment
/// (1-3 replicas), or a DaemonSet (one pod on every node), on the host network or not.
fn workload(i: usize) -> impl Strategy<Value = Object> {
    (0..3usize, labels(), 0..4i32, any::<bool>()).prop_map(move |(ns, mut l, replicas, host_network)| {
        l.insert("workload".into(), format!("w{i}"));
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([("workload".to_string(), format!("w{i}"))])),
            match_expressions: None,
        };
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some(l), ..Default::default() }),
            spec: Some(PodSpec {
                containers: vec![Container { name: "c".into(), ..Default::default() }],
                host_network: Some(host_network && replicas == 0),
                ..Default::default()
            }),
        };
        let metadata = meta(format!("deploy{i}"), Some(NAMESPACES[ns]), BTreeMap::new());
        if replicas == 0 {
            let spec = DaemonSetSpec { selector, template, ..Default::default() };
            return Object::DaemonSet(Box::new(DaemonSet { metadata, spec: Some(spec), ..Default::default() }));
        }
        let spec = DeploymentSpec { replicas: Some(replicas), selector, template, ..Default::default() };
        Object::Deployment(Box::new(Deployment { metadata, spec: Some(spec), ..Default::default() }))
    })
}

fn node(i: usize) -> Node {
    Node {
        metadata: meta(NODES[i].to_string(), None, BTreeMap::new()),
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress { type_: "InternalIP".into(), address: node_ip(i) }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A whole cluster: namespaces (labelled), maybe nodes, pods, deployments and policies.
pub fn scenario() -> impl Strategy<Value = Vec<Object>> {
    let pods = (2..14usize).prop_flat_map(|n| (0..n).map(pod).collect::<Vec<_>>());
    let policies = (1..8usize).prop_flat_map(|n| (0..n).map(policy).collect::<Vec<_>>());
    let deployments = (0..3usize).prop_flat_map(|n| (0..n).map(workload).collect::<Vec<_>>());
    let ns_labels = prop::collection::vec(labels(), 3);
    (pods, policies, deployments, ns_labels, any::<bool>()).prop_map(
        |(pods, policies, deployments, ns_labels, with_nodes)| {
            let mut objs: Vec<Object> = NAMESPACES
                .iter()
                .zip(ns_labels)
                .map(|(n, l)| {
                    Object::Namespace(Namespace { metadata: meta(n.to_string(), None, l), ..Default::default() })
                })
                .collect();
            // Without Node objects, nodes are known only by the pods scheduled to them.
            objs.extend((0..NODES.len()).filter(|_| with_nodes).map(|i| Object::Node(Box::new(node(i)))));
            objs.extend(pods.into_iter().map(|p| Object::Pod(p.into())));
            objs.extend(deployments);
            objs.extend(policies.into_iter().map(Object::NetworkPolicy));
            objs
        },
    )
}
