//! The resolved cluster: namespaces, pods, nodes, services and compiled policies.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::model::field::{Location, Problem};
use crate::model::id::indexed_by;
pub use crate::model::id::{HostId, NetSetId, NodeId, NsId, PodId, PolicyId, ServiceId, TierId};

indexed_by! {
    PodId => Pod, Labels;
    NsId => Namespace;
    NodeId => Node;
    ServiceId => Service;
    TierId => Tier;
    HostId => HostEndpoint;
    NetSetId => NetworkSet;
}
use crate::model::label::{EndpointLabels, Labels};
use crate::model::policy::{Policy, PolicyKind};
use crate::model::port::{ContainerPort, Protocol};

#[derive(Clone, Debug, PartialEq)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
    /// False when no Namespace object was given and it was inferred from its members.
    pub declared: bool,
}

/// The workload a pod belongs to, for grouping output.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct WorkloadRef {
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pod {
    pub namespace: NsId,
    pub name: String,
    pub labels: Labels,
    pub ips: Vec<IpAddr>,
    pub ports: Vec<ContainerPort>,
    pub host_network: bool,
    pub node: Option<String>,
    pub service_account: String,
    pub workload: Option<WorkloadRef>,
    /// Stands for a workload's pods: built from its template, no Pod object was given.
    pub derived: bool,
    /// How many pods this one stands for: 1 for a Pod object; a workload's replica count for a
    /// derived pod (`None` when unknown: a DaemonSet runs one per node). Replicas are distinct
    /// pods, so traffic between two of them is decided by policy, never a self connection.
    pub replicas: Option<u32>,
    pub location: Option<Location>,
}

impl Pod {
    /// Whether this pod stands for several distinct pods (a workload's replicas).
    pub fn is_replica_group(&self) -> bool {
        self.replicas != Some(1)
    }
    /// Whether this pod stands for a DaemonSet's pods (no Pod objects given): one on every node.
    pub fn on_every_node(&self) -> bool {
        self.derived && self.replicas.is_none()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub labels: Labels,
    pub addresses: Vec<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
    pub target: TargetPort,
}

/// One backend address of a Service, with the port numbers per service-port name.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceEndpoint {
    pub ip: IpAddr,
    pub ports: Vec<(Option<String>, u16, Protocol)>,
    pub slice: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub namespace: NsId,
    pub name: String,
    pub cluster_ips: Vec<IpAddr>,
    pub selector: Option<Labels>,
    pub ports: Vec<ServicePort>,
    /// Backends from EndpointSlices (empty when none were given).
    pub endpoints: Vec<SliceEndpoint>,
    pub external_name: Option<String>,
}

/// A Calico tier: policies are evaluated tier by tier, in `order` (`None` last, ties by name).
#[derive(Clone, Debug, PartialEq)]
pub struct Tier {
    pub name: String,
    pub order: Option<f64>,
    /// What happens to traffic no policy of the tier decided: deny (default) or pass on.
    pub pass_at_end: bool,
    pub location: Option<Location>,
}

/// The tier every Kubernetes NetworkPolicy and every untiered Calico policy belongs to.
pub const DEFAULT_TIER: TierId = TierId(0);
/// Calico gives the default tier this order (since v3.28); user tiers usually come before.
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

/// Calico 3.32's tier of the Admin ClusterNetworkPolicies (`kube-admin`, order 1000, Pass at
/// its end: `api/pkg/apis/projectcalico/v3/tier.go`).
pub const KUBE_ADMIN_TIER: &str = "kube-admin";
pub const KUBE_ADMIN_ORDER: f64 = 1_000.0;
/// Calico 3.32's tier of the Baseline ClusterNetworkPolicies (`kube-baseline`, order
/// 10000000, Pass at its end).
pub const KUBE_BASELINE_TIER: &str = "kube-baseline";
pub const KUBE_BASELINE_ORDER: f64 = 10_000_000.0;

/// A Calico NetworkSet or GlobalNetworkSet: addresses that rule selectors can match by labels.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSet {
    pub namespace: Option<NsId>,
    pub name: String,
    /// Labels as rule selectors see them (pseudo-labels included).
    pub labels: Labels,
    pub nets: Vec<ipnet::IpNet>,
    pub location: Option<Location>,
}

/// A Calico HostEndpoint: a node interface that GlobalNetworkPolicies can protect.
#[derive(Clone, Debug, PartialEq)]
pub struct HostEndpoint {
    pub name: String,
    pub node: String,
    pub interface: String,
    pub labels: Labels,
    pub ips: Vec<IpAddr>,
    pub ports: Vec<ContainerPort>,
    /// Has the `projectcalico-default-allow` profile: allowed when no policy decides.
    pub default_allow: bool,
    pub location: Option<Location>,
}

/// What a staged policy would do if it were enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum StagedAction {
    /// Add the policy, or replace the enforced one of the same name.
    Set,
    /// Remove the enforced policy of the same name.
    Delete,
}

#[derive(Clone, Debug)]
pub struct StagedPolicy {
    pub action: StagedAction,
    pub policy: Policy,
}

#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
    pub nodes: Vec<Node>,
    pub services: Vec<Service>,
    /// In evaluation order: by tier, then order, then name.
    pub policies: Vec<Policy>,
    /// Index 0 is the default tier.
    pub tiers: Vec<Tier>,
    pub network_sets: Vec<NetworkSet>,
    pub host_endpoints: Vec<HostEndpoint>,
    pub staged: Vec<StagedPolicy>,
    /// Warnings found while building (errors prevent a Cluster from existing).
    pub warnings: Vec<Problem>,
    /// Address-to-name facts the user gave (DNS A/AAAA answers: name, address), by which
    /// ClusterNetworkPolicy `domainNames` peers are decided; traces explain with them.
    pub dns: Vec<(String, IpAddr)>,
    ns_by_name: HashMap<String, NsId>,
    pod_by_name: HashMap<(NsId, String), PodId>,
    pod_by_ip: HashMap<IpAddr, PodId>,
    /// Host-network pods by address (several share their node's), in the order added.
    host_pods_by_ip: HashMap<IpAddr, Vec<PodId>>,
    node_by_ip: HashMap<IpAddr, NodeId>,
    service_by_name: HashMap<(NsId, String), ServiceId>,
    service_by_ip: HashMap<IpAddr, ServiceId>,
    host_by_ip: HashMap<IpAddr, HostId>,
    /// ServiceAccount labels by namespace, then name, for pods' Calico labels.
    service_accounts: HashMap<NsId, HashMap<String, Labels>>,
}

impl Cluster {
    pub fn namespace(&self, name: &str) -> Option<NsId> {
        self.ns_by_name.get(name).copied()
    }
    pub fn pod(&self, ns: &str, name: &str) -> Option<PodId> {
        let ns = self.namespace(ns)?;
        self.pod_by_name.get(&(ns, name.to_string())).copied()
    }
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<PodId> {
        self.pod_by_ip.get(&ip).copied()
    }
    /// The first host-network pod holding `ip` (its node's network stack answers there).
    pub fn host_pod_by_ip(&self, ip: IpAddr) -> Option<PodId> {
        self.host_pods_by_ip.get(&ip).and_then(|ps| ps.first()).copied()
    }
    pub fn node_by_ip(&self, ip: IpAddr) -> Option<NodeId> {
        self.node_by_ip.get(&ip).copied()
    }
    /// A pod by namespace id and name.
    pub fn pod_in(&self, ns: NsId, name: &str) -> Option<PodId> {
        self.pod_by_name.get(&(ns, name.to_string())).copied()
    }
    /// A Service by namespace id and name.
    pub fn service_in(&self, ns: NsId, name: &str) -> Option<ServiceId> {
        self.service_by_name.get(&(ns, name.to_string())).copied()
    }
    pub fn service(&self, ns: &str, name: &str) -> Option<ServiceId> {
        let ns = self.namespace(ns)?;
        self.service_by_name.get(&(ns, name.to_string())).copied()
    }
    pub fn service_by_ip(&self, ip: IpAddr) -> Option<ServiceId> {
        self.service_by_ip.get(&ip).copied()
    }
    /// `namespace/name` of a pod.
    pub fn pod_key(&self, id: PodId) -> String {
        let p = &self.pods[id];
        format!("{}/{}", self.namespaces[p.namespace].name, p.name)
    }
    pub fn policy_key(&self, idx: PolicyId) -> String {
        self.policy_name(&self.policies[idx])
    }
    /// `namespace/name`, or the bare name of a global policy.
    pub fn policy_name(&self, p: &Policy) -> String {
        match p.namespace {
            Some(ns) => format!("{}/{}", self.namespaces[ns].name, p.name),
            None => p.name.clone(),
        }
    }
    pub fn host_by_ip(&self, ip: IpAddr) -> Option<HostId> {
        self.host_by_ip.get(&ip).copied()
    }
    /// Whether any Calico object shapes decisions (traces then show tiers and actions).
    pub fn uses_calico(&self) -> bool {
        self.tiers.len() > 1
            || !self.host_endpoints.is_empty()
            || self.policies.iter().any(|p| p.kind != PolicyKind::Kubernetes)
    }
    /// The tier rank, order and tie-break name that put policies in evaluation order.
    pub fn sort_policies(&mut self) {
        let order = policy_order(self.tier_ranks(), &self.namespaces);
        self.policies.sort_by(order);
    }
    /// Adds a policy in its place in evaluation order (after any it ties with); returns its index.
    pub fn insert_policy(&mut self, policy: Policy) -> PolicyId {
        let order = policy_order(self.tier_ranks(), &self.namespaces);
        let at = self.policies.partition_point(|p| order(p, &policy) != std::cmp::Ordering::Greater);
        self.policies.insert(at, policy);
        PolicyId::new(at)
    }
    /// Takes a policy out; the policies after it move up one place.
    pub fn remove_policy(&mut self, id: PolicyId) -> Policy {
        self.policies.remove(id.index())
    }
    /// Adds policies in their places in evaluation order, each after any it ties with (as
    /// [`Cluster::insert_policy`] one at a time, in one pass); returns their ids, ascending.
    pub fn insert_policies(&mut self, mut new: Vec<Policy>) -> Vec<PolicyId> {
        let order = policy_order(self.tier_ranks(), &self.namespaces);
        new.sort_by(&order);
        let mut old = std::mem::take(&mut self.policies).into_iter().peekable();
        let mut merged = Vec::with_capacity(old.len() + new.len());
        let mut at = Vec::with_capacity(new.len());
        for pol in new {
            while let Some(o) = old.next_if(|o| order(o, &pol) != std::cmp::Ordering::Greater) {
                merged.push(o);
            }
            at.push(PolicyId::new(merged.len()));
            merged.push(pol);
        }
        merged.extend(old);
        self.policies = merged;
        at
    }
    /// Takes out the policies with these ids (any order), keeping the others' order.
    pub fn remove_policies(&mut self, ids: &[PolicyId]) {
        let gone: std::collections::HashSet<usize> = ids.iter().map(|id| id.index()).collect();
        let mut i = 0;
        self.policies.retain(|_| {
            i += 1;
            !gone.contains(&(i - 1))
        });
    }
    /// Rank of each tier in evaluation order (by [`TierId::index`]).
    pub fn tier_ranks(&self) -> Vec<usize> {
        let mut ids: Vec<usize> = (0..self.tiers.len()).collect();
        ids.sort_by(|&a, &b| {
            let (ta, tb) = (&self.tiers[a], &self.tiers[b]);
            order_cmp(ta.order, tb.order).then_with(|| ta.name.cmp(&tb.name))
        });
        let mut rank = vec![0; ids.len()];
        for (r, id) in ids.into_iter().enumerate() {
            rank[id] = r;
        }
        rank
    }
    /// Policy ids in evaluation order, split into runs of one tier each: `(tier, run)`.
    pub fn tier_runs<'a>(&'a self, pols: &'a [PolicyId]) -> impl Iterator<Item = (TierId, &'a [PolicyId])> + 'a {
        pols.chunk_by(|a, b| self.policies[*a].tier == self.policies[*b].tier)
            .map(|run| (self.policies[run[0]].tier, run))
    }
    /// The cluster as it would be with every staged policy applied.
    pub fn with_staged(&self) -> Cluster {
        let mut c = self.clone();
        for s in &self.staged {
            let same =
                |p: &Policy| p.kind == s.policy.kind && p.namespace == s.policy.namespace && p.name == s.policy.name;
            c.policies.retain(|p| !same(p));
            if s.action == StagedAction::Set {
                c.policies.push(s.policy.clone());
            }
        }
        c.staged.clear();
        c.sort_policies();
        c
    }
    /// Pods ordered by `namespace/name`, the order every output uses.
    pub fn pods_sorted(&self) -> Vec<PodId> {
        let mut ids: Vec<PodId> = self.pod_ids().collect();
        ids.sort_by_cached_key(|&i| (self.namespaces[self.pods[i].namespace].name.clone(), self.pods[i].name.clone()));
        ids
    }
    /// The IP a pod is reached at (its first), if it has one.
    pub fn primary_ip(&self, id: PodId) -> Option<IpAddr> {
        self.pods[id].ips.first().copied()
    }
    /// Takes a pod out; the last pod moves into its place (its id becomes `id`).
    pub fn remove_pod(&mut self, id: PodId) {
        let pod = &self.pods[id];
        self.pod_by_name.remove(&(pod.namespace, pod.name.clone()));
        for ip in &pod.ips {
            if self.pod_by_ip.get(ip) == Some(&id) {
                self.pod_by_ip.remove(ip);
            }
            if let Some(ps) = self.host_pods_by_ip.get_mut(ip) {
                ps.retain(|&p| p != id);
                if ps.is_empty() {
                    self.host_pods_by_ip.remove(ip);
                }
            }
        }
        let last = PodId::new(self.pods.len() - 1);
        self.pods.swap_remove(id.index());
        if let Some(moved) = self.pods.get(id.index()) {
            self.pod_by_name.insert((moved.namespace, moved.name.clone()), id);
            for ip in &moved.ips {
                if !moved.host_network {
                    self.pod_by_ip.insert(*ip, id);
                } else if let Some(ps) = self.host_pods_by_ip.get_mut(ip) {
                    ps.iter_mut().filter(|p| **p == last).for_each(|p| *p = id);
                }
            }
        }
    }

    /// Adds a pod (its addresses replace any other pod's in the address lookup); returns its id.
    pub fn add_pod(&mut self, pod: Pod) -> PodId {
        let id = PodId::new(self.pods.len());
        for ip in &pod.ips {
            if pod.host_network {
                self.host_pods_by_ip.entry(*ip).or_default().push(id);
            } else {
                self.pod_by_ip.insert(*ip, id);
            }
        }
        self.pod_by_name.insert((pod.namespace, pod.name.clone()), id);
        self.pods.push(pod);
        id
    }

    /// Adds a namespace (its name label set as the API server sets it); returns its id.
    pub fn add_namespace(&mut self, name: &str, mut labels: Labels, declared: bool) -> NsId {
        labels.insert(crate::model::label::NAMESPACE_NAME_LABEL.to_string(), name.to_string());
        let id = NsId::new(self.namespaces.len());
        self.namespaces.push(Namespace { name: name.to_string(), labels, declared });
        self.ns_by_name.insert(name.to_string(), id);
        id
    }

    /// Adds a node, found by its addresses from then on; returns its id.
    pub fn add_node(&mut self, node: Node) -> NodeId {
        let id = NodeId::new(self.nodes.len());
        for ip in &node.addresses {
            self.node_by_ip.insert(*ip, id);
        }
        self.nodes.push(node);
        id
    }

    /// Adds a Service, found by name and ClusterIPs from then on; returns its id.
    pub fn add_service(&mut self, service: Service) -> ServiceId {
        let id = ServiceId::new(self.services.len());
        for ip in &service.cluster_ips {
            self.service_by_ip.insert(*ip, id);
        }
        self.service_by_name.insert((service.namespace, service.name.clone()), id);
        self.services.push(service);
        id
    }

    /// Adds a Calico host endpoint, found by its expected IPs from then on; returns its id.
    pub fn add_host_endpoint(&mut self, hep: HostEndpoint) -> HostId {
        let id = HostId::new(self.host_endpoints.len());
        for ip in &hep.ips {
            self.host_by_ip.insert(*ip, id);
        }
        self.host_endpoints.push(hep);
        id
    }

    /// ServiceAccount labels by (namespace, name), which pods' Calico labels include.
    pub fn set_service_accounts(&mut self, accounts: HashMap<(NsId, String), Labels>) {
        self.service_accounts.clear();
        for ((ns, name), labels) in accounts {
            self.service_accounts.entry(ns).or_default().insert(name, labels);
        }
    }

    /// Whether two clusters give every service account the same labels.
    pub fn same_service_accounts(&self, other: &Cluster) -> bool {
        self.service_accounts == other.service_accounts
    }

    /// A pod's labels as Calico selectors see them (with its namespace's and service account's,
    /// and the `projectcalico.org/*` pseudo-labels): what policies select subjects and peers by.
    pub fn calico_labels(&self, id: PodId) -> EndpointLabels<'_> {
        let pod = &self.pods[id];
        let ns = &self.namespaces[pod.namespace];
        let account = self.service_accounts.get(&pod.namespace).and_then(|m| m.get(pod.service_account.as_str()));
        EndpointLabels::pod(&pod.labels, (&ns.name, &ns.labels), (&pod.service_account, account))
    }

    /// A cluster holding only this one's namespaces and tiers: what compiling a policy needs.
    pub fn namespaces_and_tiers(&self) -> Cluster {
        Cluster {
            namespaces: self.namespaces.clone(),
            ns_by_name: self.ns_by_name.clone(),
            tiers: self.tiers.clone(),
            ..Cluster::default()
        }
    }

    /// Every pod's id, in order.
    pub fn pod_ids(&self) -> impl DoubleEndedIterator<Item = PodId> + ExactSizeIterator + Clone {
        PodId::all(self.pods.len())
    }
    /// Every policy's id, in evaluation order.
    pub fn policy_ids(&self) -> impl DoubleEndedIterator<Item = PolicyId> + ExactSizeIterator + Clone {
        PolicyId::all(self.policies.len())
    }
    /// Every namespace's id.
    pub fn namespace_ids(&self) -> impl DoubleEndedIterator<Item = NsId> + ExactSizeIterator + Clone {
        NsId::all(self.namespaces.len())
    }
    /// Every node's id.
    pub fn node_ids(&self) -> impl DoubleEndedIterator<Item = NodeId> + ExactSizeIterator + Clone {
        NodeId::all(self.nodes.len())
    }
    /// Every Service's id.
    pub fn service_ids(&self) -> impl DoubleEndedIterator<Item = ServiceId> + ExactSizeIterator + Clone {
        ServiceId::all(self.services.len())
    }
    /// Every host endpoint's id.
    pub fn host_ids(&self) -> impl DoubleEndedIterator<Item = HostId> + ExactSizeIterator + Clone {
        HostId::all(self.host_endpoints.len())
    }

    /// Whether NetworkPolicy applies to this pod (host-network pods share the node's stack).
    pub fn is_policy_subject(&self, id: PodId) -> bool {
        !self.pods[id].host_network
    }

    /// Pods on the pod network (policy subjects) that run on node `name` (`spec.nodeName`).
    pub fn pods_on_node<'a>(&'a self, name: &'a str) -> impl Iterator<Item = PodId> + 'a {
        self.pod_ids().filter(move |&p| self.is_policy_subject(p) && self.pods[p].node.as_deref() == Some(name))
    }
}

/// Evaluation order: tier rank, then order, then name.
fn policy_order(
    tier_rank: Vec<usize>,
    namespaces: &[Namespace],
) -> impl Fn(&Policy, &Policy) -> std::cmp::Ordering + '_ {
    let name = |p: &Policy| p.sort_name(p.namespace.map(|n| namespaces[n].name.as_str()));
    move |a: &Policy, b: &Policy| {
        tier_rank[a.tier.index()]
            .cmp(&tier_rank[b.tier.index()])
            .then_with(|| order_cmp(a.order, b.order))
            .then_with(|| name(a).cmp(&name(b)))
    }
}

/// Calico's ordering: lower order first, a missing order after every number.
pub fn order_cmp(a: Option<f64>, b: Option<f64>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}
