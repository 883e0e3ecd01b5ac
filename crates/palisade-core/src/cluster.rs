//! The resolved cluster: namespaces, pods, nodes, services and compiled policies.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::field::{Location, Problem};
use crate::label::Labels;
use crate::peer::NsId;
use crate::policy::Policy;
use crate::port::{ContainerPort, Protocol};

pub type PodId = usize;
pub type NodeId = usize;
pub type ServiceId = usize;

#[derive(Clone, Debug)]
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

#[derive(Clone, Debug)]
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
    pub location: Option<Location>,
}

#[derive(Clone, Debug)]
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

#[derive(Clone, Debug)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
    pub target: TargetPort,
}

/// One backend address of a Service, with the port numbers per service-port name.
#[derive(Clone, Debug)]
pub struct SliceEndpoint {
    pub ip: IpAddr,
    pub ports: Vec<(Option<String>, u16, Protocol)>,
    pub slice: String,
}

#[derive(Clone, Debug)]
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

#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
    pub nodes: Vec<Node>,
    pub services: Vec<Service>,
    pub policies: Vec<Policy>,
    /// Warnings found while building (errors prevent a Cluster from existing).
    pub warnings: Vec<Problem>,
    pub(crate) ns_by_name: HashMap<String, NsId>,
    pub(crate) pod_by_name: HashMap<(NsId, String), PodId>,
    pub(crate) pod_by_ip: HashMap<IpAddr, PodId>,
    pub(crate) node_by_ip: HashMap<IpAddr, NodeId>,
    pub(crate) service_by_name: HashMap<(NsId, String), ServiceId>,
    pub(crate) service_by_ip: HashMap<IpAddr, ServiceId>,
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
    pub fn node_by_ip(&self, ip: IpAddr) -> Option<NodeId> {
        self.node_by_ip.get(&ip).copied()
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
    pub fn policy_key(&self, idx: usize) -> String {
        let p = &self.policies[idx];
        format!("{}/{}", self.namespaces[p.namespace].name, p.name)
    }
    /// Pods ordered by `namespace/name`, the order every output uses.
    pub fn pods_sorted(&self) -> Vec<PodId> {
        let mut ids: Vec<PodId> = (0..self.pods.len()).collect();
        ids.sort_by_cached_key(|&i| (self.namespaces[self.pods[i].namespace].name.clone(), self.pods[i].name.clone()));
        ids
    }
    /// The IP a pod is reached at (its first), if it has one.
    pub fn primary_ip(&self, id: PodId) -> Option<IpAddr> {
        self.pods[id].ips.first().copied()
    }
    /// Whether NetworkPolicy applies to this pod (host-network pods share the node's stack).
    pub fn is_policy_subject(&self, id: PodId) -> bool {
        !self.pods[id].host_network
    }
}
