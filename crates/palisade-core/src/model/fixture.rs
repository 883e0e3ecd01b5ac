//! Small clusters for unit tests, written the way one reads them:
//! `ClusterBuilder::new().ns("shop", &[]).pod("shop/web", &[("app", "web")], "10.0.0.1")`.

use std::sync::Arc;

use crate::model::cluster::{Cluster, HostEndpoint, Node, Pod, Tier, DEFAULT_TIER, DEFAULT_TIER_ORDER};
use crate::model::expr::Expr;
use crate::model::label::Labels;
use crate::model::policy::{Policy, PolicyKind};
use crate::model::port::{ContainerPort, Protocol};
use crate::model::rule::{Action, Entity, Form, Origin, Port, Rule, Written};

pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A selector in Calico's language; panics on a syntax error (fixtures are written by hand).
pub(crate) fn sel(text: &str) -> Expr {
    Expr::parse(text).expect("a valid selector")
}

/// An entity that selects by labels.
pub(crate) fn selecting(text: &str) -> Entity {
    Entity { selector: Some(sel(text)), ..Entity::default() }
}

/// An entity with destination (or source) ports.
pub(crate) fn ports(list: &[u16]) -> Entity {
    Entity { ports: list.iter().map(|&p| Port::Range(p, p)).collect(), ..Entity::default() }
}

/// A rule with the given action, protocol and ends; its words are Calico's, its origin set when
/// its policy is added.
pub(crate) fn rule(action: Action, protocol: Option<Protocol>, source: Entity, destination: Entity) -> Rule {
    let form = Form::Entities {
        protocol: protocol.map(|p| p.to_string()),
        not_protocol: None,
        source: entity_words(&source),
        destination: entity_words(&destination),
    };
    Rule {
        action,
        protocol: protocol.map(Protocol::number),
        not_protocol: None,
        ip_version: None,
        icmp: None,
        not_icmp: None,
        source,
        destination,
        origin: Origin { rule: 0, peer: None, written: Arc::new(Written { location: None, form, name: None }) },
    }
}

fn entity_words(e: &Entity) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &e.selector {
        parts.push(format!("selector {s}"));
    }
    if !e.ports.is_empty() {
        parts.push(format!("ports [{}]", e.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")));
    }
    parts.join(", ")
}

pub(crate) struct ClusterBuilder {
    cluster: Cluster,
}

impl ClusterBuilder {
    pub(crate) fn new() -> ClusterBuilder {
        let mut cluster = Cluster::default();
        cluster.tiers.push(Tier {
            name: "default".into(),
            order: Some(DEFAULT_TIER_ORDER),
            pass_at_end: false,
            location: None,
        });
        ClusterBuilder { cluster }
    }

    pub(crate) fn ns(mut self, name: &str, pairs: &[(&str, &str)]) -> ClusterBuilder {
        self.cluster.add_namespace(name, labels(pairs), true);
        self
    }

    /// A pod `namespace/name` with labels, an address and a TCP port 80 named `http`.
    pub(crate) fn pod(mut self, key: &str, pairs: &[(&str, &str)], ip: &str) -> ClusterBuilder {
        let (ns, name) = key.split_once('/').expect("namespace/name");
        let namespace = self.cluster.namespace(ns).expect("namespace added first");
        self.cluster.add_pod(Pod {
            namespace,
            name: name.into(),
            labels: labels(pairs),
            ips: vec![ip.parse().expect("an IP address")],
            ports: vec![ContainerPort { name: Some("http".into()), port: 80, protocol: Protocol::TCP }],
            host_network: false,
            node: None,
            service_account: "default".into(),
            workload: None,
            derived: false,
            replicas: Some(1),
            location: None,
        });
        self
    }

    /// A node at one address.
    pub(crate) fn node(mut self, name: &str, ip: &str) -> ClusterBuilder {
        let addresses = vec![ip.parse().expect("an IP address")];
        self.cluster.add_node(Node { name: name.into(), labels: Default::default(), addresses });
        self
    }

    /// A pod (as [`ClusterBuilder::pod`]) that runs on `node`, on the host network when
    /// `host_network`.
    pub(crate) fn pod_on(mut self, key: &str, node: &str, host_network: bool, ip: &str) -> ClusterBuilder {
        self = self.pod(key, &[], ip);
        let id = self.cluster.pod_ids().last().expect("just added");
        let mut pod = self.cluster.pods[id].clone();
        self.cluster.remove_pod(id);
        (pod.node, pod.host_network) = (Some(node.into()), host_network);
        self.cluster.add_pod(pod);
        self
    }

    /// A Calico host endpoint of `node` at one address.
    pub(crate) fn host_endpoint(mut self, name: &str, node: &str, ip: &str) -> ClusterBuilder {
        self.cluster.add_host_endpoint(HostEndpoint {
            name: name.into(),
            node: node.into(),
            interface: String::new(),
            labels: Default::default(),
            ips: vec![ip.parse().expect("an IP address")],
            ports: Vec::new(),
            default_allow: false,
            location: None,
        });
        self
    }

    /// A Calico-style policy `namespace/name` in the default tier: its subject is the selector
    /// within the namespace; `None` rules leave that direction alone.
    pub(crate) fn policy(
        mut self,
        key: &str,
        order: f64,
        subject: &str,
        ingress: Option<Vec<Rule>>,
        egress: Option<Vec<Rule>>,
    ) -> ClusterBuilder {
        let (ns, name) = key.split_once('/').expect("namespace/name");
        let namespace = self.cluster.namespace(ns).expect("namespace added first");
        let number = |rules: Vec<Rule>| {
            let numbered = rules.into_iter().enumerate().map(|(i, mut r)| {
                r.origin.rule = i;
                r
            });
            numbered.collect::<Vec<_>>()
        };
        let subject = Expr::and([Expr::Eq(crate::model::expr::NAMESPACE_LABEL.into(), ns.into()), sel(subject)]);
        self.cluster.policies.push(Policy {
            kind: PolicyKind::Calico,
            namespace: Some(namespace),
            name: name.into(),
            tier: DEFAULT_TIER,
            order: Some(order),
            subject,
            ingress: ingress.map(number),
            egress: egress.map(number),
            location: None,
        });
        self
    }

    pub(crate) fn build(mut self) -> Cluster {
        self.cluster.sort_policies();
        self.cluster
    }
}
