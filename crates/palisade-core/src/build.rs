//! Building a [`Cluster`] from Kubernetes objects, with the API server's validation.
//!
//! All objects are checked before anything is used: a set with any error yields no cluster,
//! because a silently dropped policy would be a hole in the firewall.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{self as core, PodSpec, PodTemplateSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::calico::compile::{self as calico_compile, PolicyContext};
use crate::calico::resource as calico;
use crate::cluster::*;
use crate::expr;
use crate::field::{FieldPath, Locate, Location, Problem, Problems, Severity};
use crate::label::{
    check_dns_label, check_dns_subdomain, check_label_key, check_label_value, Labels, NAMESPACE_NAME_LABEL,
};
use crate::peer::NsId;
use crate::policy;
use crate::policy::PolicyKind;
use crate::port::{check_port_name, check_port_number, ContainerPort, Protocol};
use crate::selector::Selector;

/// The kinds the engine uses.
// Objects are decoded once and read in place; boxing each variant would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Namespace(core::Namespace),
    Pod(core::Pod),
    Deployment(Deployment),
    ReplicaSet(ReplicaSet),
    StatefulSet(StatefulSet),
    DaemonSet(DaemonSet),
    Job(Job),
    CronJob(CronJob),
    Service(core::Service),
    EndpointSlice(EndpointSlice),
    Node(core::Node),
    NetworkPolicy(NetworkPolicy),
    ServiceAccount(core::ServiceAccount),
    CalicoNetworkPolicy(calico::NetworkPolicy),
    CalicoGlobalNetworkPolicy(calico::GlobalNetworkPolicy),
    CalicoStagedNetworkPolicy(calico::StagedNetworkPolicy),
    CalicoStagedGlobalNetworkPolicy(calico::StagedGlobalNetworkPolicy),
    CalicoStagedKubernetesNetworkPolicy(calico::StagedKubernetesNetworkPolicy),
    CalicoTier(calico::Tier),
    CalicoNetworkSet(calico::NetworkSet),
    CalicoGlobalNetworkSet(calico::GlobalNetworkSet),
    CalicoHostEndpoint(calico::HostEndpoint),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::Pod(_) => "Pod",
            Object::Deployment(_) => "Deployment",
            Object::ReplicaSet(_) => "ReplicaSet",
            Object::StatefulSet(_) => "StatefulSet",
            Object::DaemonSet(_) => "DaemonSet",
            Object::Job(_) => "Job",
            Object::CronJob(_) => "CronJob",
            Object::Service(_) => "Service",
            Object::EndpointSlice(_) => "EndpointSlice",
            Object::Node(_) => "Node",
            Object::NetworkPolicy(_) => "NetworkPolicy",
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::CalicoNetworkPolicy(_) => "Calico NetworkPolicy",
            Object::CalicoGlobalNetworkPolicy(_) => "GlobalNetworkPolicy",
            Object::CalicoStagedNetworkPolicy(_) => "StagedNetworkPolicy",
            Object::CalicoStagedGlobalNetworkPolicy(_) => "StagedGlobalNetworkPolicy",
            Object::CalicoStagedKubernetesNetworkPolicy(_) => "StagedKubernetesNetworkPolicy",
            Object::CalicoTier(_) => "Tier",
            Object::CalicoNetworkSet(_) => "NetworkSet",
            Object::CalicoGlobalNetworkSet(_) => "GlobalNetworkSet",
            Object::CalicoHostEndpoint(_) => "HostEndpoint",
        }
    }
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::ReplicaSet(o) => &o.metadata,
            Object::StatefulSet(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
            Object::Job(o) => &o.metadata,
            Object::CronJob(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
            Object::ServiceAccount(o) => &o.metadata,
            Object::CalicoNetworkPolicy(o) => &o.metadata,
            Object::CalicoGlobalNetworkPolicy(o) => &o.metadata,
            Object::CalicoStagedNetworkPolicy(o) => &o.metadata,
            Object::CalicoStagedGlobalNetworkPolicy(o) => &o.metadata,
            Object::CalicoStagedKubernetesNetworkPolicy(o) => &o.metadata,
            Object::CalicoTier(o) => &o.metadata,
            Object::CalicoNetworkSet(o) => &o.metadata,
            Object::CalicoGlobalNetworkSet(o) => &o.metadata,
            Object::CalicoHostEndpoint(o) => &o.metadata,
        }
    }
    /// Whether the object is a policy (of any kind, staged included).
    pub fn is_policy(&self) -> bool {
        matches!(
            self,
            Object::NetworkPolicy(_)
                | Object::CalicoNetworkPolicy(_)
                | Object::CalicoGlobalNetworkPolicy(_)
                | Object::CalicoStagedNetworkPolicy(_)
                | Object::CalicoStagedGlobalNetworkPolicy(_)
                | Object::CalicoStagedKubernetesNetworkPolicy(_)
        )
    }
    pub fn is_namespaced(&self) -> bool {
        !matches!(
            self,
            Object::Namespace(_)
                | Object::Node(_)
                | Object::CalicoGlobalNetworkPolicy(_)
                | Object::CalicoStagedGlobalNetworkPolicy(_)
                | Object::CalicoTier(_)
                | Object::CalicoGlobalNetworkSet(_)
                | Object::CalicoHostEndpoint(_)
        )
    }
}

/// One object and where it came from.
#[derive(Clone)]
pub struct Input {
    pub object: Object,
    pub locate: Arc<dyn Locate>,
}

impl Input {
    /// How problems name this object ([`Problem::object`]): `NetworkPolicy x/p`, `Tier t`.
    pub fn label(&self, opts: &BuildOptions) -> String {
        let m = self.object.metadata();
        let ns = match self.object.is_namespaced() {
            true => m.namespace.clone().or_else(|| opts.default_namespace.clone()),
            false => None,
        };
        object_label(self.object.kind(), ns.as_deref(), m.name.as_deref().unwrap_or_default())
    }
}

#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Namespace for namespaced objects that name none (as `kubectl apply -n`).
    pub default_namespace: Option<String>,
}

/// An object that passed the metadata checks, with its resolved namespace.
struct Item<'a> {
    input: &'a Input,
    name: String,
    namespace: Option<String>,
}

/// Builds the cluster, or returns every problem found (errors and warnings) if any is an error.
pub fn build(inputs: &[Input], opts: &BuildOptions) -> Result<Cluster, Vec<Problem>> {
    let mut b = Builder { cluster: Cluster::default(), problems: Vec::new() };
    let items = b.check_metadata(inputs, opts);
    b.namespaces(&items);
    b.pods(&items);
    b.workloads(&items);
    b.nodes(&items);
    b.services(&items);
    b.calico_labels(&items);
    b.tiers(&items);
    b.network_sets(&items);
    b.host_endpoints(&items);
    b.policies(&items);
    b.cluster.sort_policies();
    if b.problems.iter().any(|p| p.severity == Severity::Error) {
        return Err(b.problems);
    }
    b.cluster.warnings = b.problems;
    Ok(b.cluster)
}

struct Builder {
    cluster: Cluster,
    problems: Vec<Problem>,
}

fn object_label(kind: &str, ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

fn root() -> FieldPath {
    FieldPath::root()
}

impl Builder {
    fn with_problems<R>(&mut self, item: &Item, f: impl FnOnce(&mut Problems) -> R) -> R {
        let label = object_label(item.input.object.kind(), item.namespace.as_deref(), &item.name);
        let mut p = Problems::new(label, item.input.locate.as_ref());
        let r = f(&mut p);
        self.problems.extend(p.list);
        r
    }

    fn check_metadata<'a>(
        &mut self,
        inputs: impl IntoIterator<Item = &'a Input>,
        opts: &BuildOptions,
    ) -> Vec<Item<'a>> {
        let mut seen: HashMap<(String, Option<String>, String), Option<Location>> = HashMap::new();
        let mut items = Vec::new();
        for input in inputs {
            let kind = input.object.kind();
            let meta = input.object.metadata();
            let name = meta.name.clone().unwrap_or_default();
            let namespace = if input.object.is_namespaced() {
                meta.namespace.clone().or_else(|| opts.default_namespace.clone())
            } else {
                None
            };
            let item = Item { input, name: name.clone(), namespace: namespace.clone() };
            let ok = self.with_problems(&item, |p| check_meta(&item, meta, p));
            if !ok {
                continue;
            }
            let key = (kind.to_string(), namespace.clone(), name.clone());
            let here = input.locate.locate(&root());
            if let Some(first) = seen.get(&key) {
                let first = first.as_ref().map(|l| l.to_string()).unwrap_or_else(|| "earlier".into());
                self.with_problems(&item, |p| {
                    p.error(
                        &root().key("metadata").key("name"),
                        format!("duplicate {kind} {:?}: already defined at {first}", name),
                        "each object needs a unique name within its kind and namespace; rename or remove one",
                    )
                });
                continue;
            }
            seen.insert(key, here);
            items.push(item);
        }
        items
    }

    fn namespaces(&mut self, items: &[Item]) {
        for item in items {
            let Object::Namespace(ns) = &item.input.object else { continue };
            let labels = ns.metadata.labels.clone().unwrap_or_default();
            self.with_problems(item, |p| {
                check_labels(&labels, p);
                if let Some(v) = labels.get(NAMESPACE_NAME_LABEL).filter(|v| **v != item.name) {
                    p.warn(
                        &root().key("metadata").key("labels").key(NAMESPACE_NAME_LABEL),
                        format!(
                            "label {NAMESPACE_NAME_LABEL}={v} differs from the name; the API server sets it to {:?}",
                            item.name
                        ),
                        "remove the label: Kubernetes manages it",
                    );
                }
            });
            self.add_namespace(&item.name, labels, true);
        }
        for item in items {
            if let Some(ns) = &item.namespace {
                if self.cluster.namespace(ns).is_none() {
                    self.add_namespace(ns, Labels::new(), false);
                }
            }
        }
    }

    fn add_namespace(&mut self, name: &str, mut labels: Labels, declared: bool) -> NsId {
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
        let id = self.cluster.namespaces.len();
        self.cluster.namespaces.push(Namespace { name: name.to_string(), labels, declared });
        self.cluster.ns_by_name.insert(name.to_string(), id);
        id
    }

    fn ns_id(&self, item: &Item) -> NsId {
        self.cluster.namespace(item.namespace.as_deref().unwrap_or_default()).expect("namespace registered")
    }

    fn pods(&mut self, items: &[Item]) {
        let mut finished = Vec::new();
        for item in items {
            let Object::Pod(pod) = &item.input.object else { continue };
            if let Some(phase) = finished_phase(pod) {
                finished.push((item, phase));
                continue;
            }
            let ns = self.ns_id(item);
            let built = self.with_problems(item, |p| pod_from(pod, item, ns, p));
            self.add_pod(built, item);
        }
        self.note_finished(&finished);
    }

    /// One warning for all pods left out because they finished.
    fn note_finished(&mut self, finished: &[(&Item, &str)]) {
        let Some((first, _)) = finished.first() else { return };
        let names: Vec<String> = finished
            .iter()
            .take(5)
            .map(|(i, phase)| format!("{}/{} ({phase})", i.namespace.as_deref().unwrap_or_default(), i.name))
            .collect();
        let more = if finished.len() > 5 { format!(" and {} more", finished.len() - 5) } else { String::new() };
        let path = root().key("status").key("phase");
        self.problems.push(Problem {
            severity: Severity::Warning,
            object: "input".into(),
            path: path.clone(),
            message: format!(
                "left out {} finished pod(s) (phase Succeeded or Failed: they hold no address and send nothing): {}{more}",
                finished.len(),
                names.join(", ")
            ),
            help: Some("a finished pod's IP may already belong to a running pod; only running and pending pods are decided".into()),
            location: first.input.locate.locate(&path),
        });
    }

    fn add_pod(&mut self, pod: Pod, item: &Item) {
        let id = self.cluster.pods.len();
        if !pod.host_network {
            for ip in &pod.ips {
                if let Some(&other) = self.cluster.pod_by_ip.get(ip) {
                    let other = self.cluster.pod_key(other);
                    let at = match &item.input.object {
                        Object::Pod(o)
                            if o.status.as_ref().and_then(|s| s.pod_ip.as_deref()) == Some(&ip.to_string()) =>
                        {
                            "status.podIP"
                        }
                        _ => "status.podIPs",
                    };
                    self.with_problems(item, |p| {
                        p.error(
                            &FieldPath::parse(at),
                            format!("pod IP {ip} is already used by pod {other}"),
                            "pod IPs are unique in a cluster; fix one of the two pods",
                        )
                    });
                }
                self.cluster.pod_by_ip.insert(*ip, id);
            }
        }
        self.cluster.pod_by_name.insert((pod.namespace, pod.name.clone()), id);
        self.cluster.pods.push(pod);
    }

    /// Workloads whose pods were not given stand in as one pod built from their template.
    fn workloads(&mut self, items: &[Item]) {
        let owned: Vec<(String, String, String)> = items
            .iter()
            .filter_map(|i| i.namespace.clone().map(|ns| (i.input.object.kind().to_string(), ns, i.name.clone())))
            .collect();
        let mut scaled_to_zero = Vec::new();
        for item in items {
            let Some((selector, template)) = workload_template(&item.input.object) else { continue };
            if owned_by_present_object(item.input.object.metadata(), item.namespace.as_deref(), &owned) {
                continue;
            }
            let replicas = workload_replicas(&item.input.object);
            let ns = self.ns_id(item);
            let kind = item.input.object.kind().to_string();
            let template_labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
            let selector = self.with_problems(item, |p| {
                check_labels_at(&template_labels, &template_path(&item.input.object).key("metadata").key("labels"), p);
                match &selector {
                    Some(s) => Selector::compile(s, &selector_path(&item.input.object), p),
                    None => Selector::from_labels(&template_labels),
                }
            });
            let workload = WorkloadRef { kind: kind.clone(), name: item.name.clone() };
            let mut represented = false;
            for pod in self.cluster.pods.iter_mut().filter(|p| p.namespace == ns && !p.derived) {
                if selector.matches(&pod.labels) {
                    represented = true;
                    pod.workload.get_or_insert_with(|| workload.clone());
                }
            }
            if represented {
                continue;
            }
            if replicas == Some(0) {
                scaled_to_zero.push(format!("{kind} {}/{}", item.namespace.as_deref().unwrap_or_default(), item.name));
                continue;
            }
            let spec = template.spec.clone().unwrap_or_default();
            let tpath = template_path(&item.input.object).key("spec");
            let ports = self.with_problems(item, |p| container_ports(&spec, &tpath, p));
            let name = if self.cluster.pod_by_name.contains_key(&(ns, item.name.clone())) {
                format!("{}-{}", item.name, kind.to_lowercase())
            } else {
                item.name.clone()
            };
            let pod = Pod {
                namespace: ns,
                name,
                labels: template_labels,
                ips: Vec::new(),
                ports,
                host_network: spec.host_network.unwrap_or(false),
                node: spec.node_name.clone(),
                service_account: spec.service_account_name.clone().unwrap_or_else(|| "default".into()),
                workload: Some(workload),
                derived: true,
                replicas,
                location: item.input.locate.locate(&root()),
            };
            self.add_pod(pod, item);
        }
        if !scaled_to_zero.is_empty() {
            self.problems.push(Problem {
                severity: Severity::Warning,
                object: "input".into(),
                path: root(),
                message: format!(
                    "left out {} workload(s) scaled to zero replicas (no pods to decide): {}",
                    scaled_to_zero.len(),
                    scaled_to_zero.join(", ")
                ),
                help: None,
                location: None,
            });
        }
    }

    fn nodes(&mut self, items: &[Item]) {
        for item in items {
            let Object::Node(node) = &item.input.object else { continue };
            let labels = node.metadata.labels.clone().unwrap_or_default();
            let addresses = self.with_problems(item, |p| {
                check_labels(&labels, p);
                let list = node.status.as_ref().and_then(|s| s.addresses.clone()).unwrap_or_default();
                let path = root().key("status").key("addresses");
                list.iter()
                    .enumerate()
                    .filter(|(_, a)| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
                    .filter_map(|(i, a)| parse_ip(&a.address, &path.index(i).key("address"), p))
                    .collect::<Vec<_>>()
            });
            let id = self.cluster.nodes.len();
            for ip in &addresses {
                self.cluster.node_by_ip.insert(*ip, id);
            }
            self.cluster.nodes.push(Node { name: item.name.clone(), labels, addresses });
        }
    }

    fn services(&mut self, items: &[Item]) {
        for item in items {
            let Object::Service(svc) = &item.input.object else { continue };
            let ns = self.ns_id(item);
            let service = self.with_problems(item, |p| compile_service(svc, ns, &item.name, p));
            let id = self.cluster.services.len();
            for ip in &service.cluster_ips {
                self.cluster.service_by_ip.insert(*ip, id);
            }
            self.cluster.service_by_name.insert((ns, item.name.clone()), id);
            self.cluster.services.push(service);
        }
        for item in items {
            let Object::EndpointSlice(slice) = &item.input.object else { continue };
            let ns = self.ns_id(item);
            let service_name =
                slice.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name")).cloned();
            let endpoints = self.with_problems(item, |p| compile_slice(slice, &item.name, p));
            let target =
                service_name.as_ref().and_then(|s| self.cluster.service_by_name.get(&(ns, s.clone())).copied());
            match target {
                Some(id) => self.cluster.services[id].endpoints.extend(endpoints),
                None => self.with_problems(item, |p| {
                    p.warn(
                        &root().key("metadata").key("labels"),
                        format!(
                            "EndpointSlice belongs to no known Service (label kubernetes.io/service-name is {:?})",
                            service_name.as_deref().unwrap_or("missing")
                        ),
                        "label it kubernetes.io/service-name: <service> and include that Service",
                    )
                }),
            }
        }
    }

    fn policies(&mut self, items: &[Item]) {
        let tiers: HashMap<String, usize> =
            self.cluster.tiers.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        let tier_id = |name: &str| tiers.get(name).copied();
        for item in items {
            let Some((compiled, staged)) = self.policy_of(item, &tier_id) else { continue };
            match staged {
                None => self.cluster.policies.push(compiled),
                Some(action) => {
                    if let Some(Some(action)) = calico_compile::staged_action(action.as_ref()) {
                        self.cluster.staged.push(StagedPolicy { action, policy: compiled });
                    }
                }
            }
        }
    }

    /// One policy object compiled, with its staged action when it is staged; `None` for other
    /// kinds.
    #[allow(clippy::type_complexity)]
    fn policy_of(
        &mut self,
        item: &Item,
        tier_id: &dyn Fn(&str) -> Option<usize>,
    ) -> Option<(policy::Policy, Option<Option<String>>)> {
        let ns = item.namespace.as_deref().map(|_| self.ns_id(item));
        // Calico policies, staged or not: (spec, kind, staged).
        let calico = match &item.input.object {
            Object::CalicoNetworkPolicy(o) => Some((o.spec.as_ref(), PolicyKind::Calico, false)),
            Object::CalicoGlobalNetworkPolicy(o) => Some((o.spec.as_ref(), PolicyKind::CalicoGlobal, false)),
            Object::CalicoStagedNetworkPolicy(o) => Some((o.spec.as_ref(), PolicyKind::Calico, true)),
            Object::CalicoStagedGlobalNetworkPolicy(o) => Some((o.spec.as_ref(), PolicyKind::CalicoGlobal, true)),
            _ => None,
        };
        Some(match (&item.input.object, calico) {
            (_, Some((spec, kind, staged))) => {
                let ctx = PolicyContext {
                    kind,
                    name: &item.name,
                    namespace: ns.map(|id| (id, item.namespace.as_deref().unwrap_or_default())),
                    staged,
                };
                let pol = self.with_problems(item, |p| calico_compile::compile_policy(spec, &ctx, tier_id, p));
                (pol, staged.then(|| spec.and_then(|s| s.staged_action.clone())))
            }
            (Object::NetworkPolicy(np), None) => {
                (self.with_problems(item, |p| policy::compile(np, ns.expect("namespaced"), p)), None)
            }
            (Object::CalicoStagedKubernetesNetworkPolicy(o), None) => {
                let spec = o.spec.clone().unwrap_or_default();
                let np = NetworkPolicy { metadata: o.metadata.clone(), spec: Some(spec.spec) };
                let pol = self.with_problems(item, |p| policy::compile(&np, ns.expect("namespaced"), p));
                (pol, Some(spec.staged_action))
            }
            _ => return None,
        })
    }

    /// Labels as Calico selectors see pods: pseudo-labels, `pcns.` and `pcsa.` labels.
    fn calico_labels(&mut self, items: &[Item]) {
        let mut accounts: HashMap<(NsId, String), Labels> = HashMap::new();
        for item in items {
            let Object::ServiceAccount(sa) = &item.input.object else { continue };
            let labels = sa.metadata.labels.clone().unwrap_or_default();
            self.with_problems(item, |p| check_labels(&labels, p));
            accounts.insert((self.ns_id(item), item.name.clone()), labels);
        }
        let c = &self.cluster;
        let all = c.pods.iter().map(|pod| pod_calico_labels(c, pod, &accounts)).collect();
        self.cluster.calico_labels = all;
        self.cluster.service_accounts = accounts;
    }

    fn tiers(&mut self, items: &[Item]) {
        self.cluster.tiers.push(Tier {
            name: "default".into(),
            order: Some(DEFAULT_TIER_ORDER),
            pass_at_end: false,
            location: None,
        });
        for item in items {
            let Object::CalicoTier(t) = &item.input.object else { continue };
            let tier = self.with_problems(item, |p| calico_compile::compile_tier(&item.name, t.spec.as_ref(), p));
            match self.cluster.tiers.iter().position(|x| x.name == tier.name) {
                Some(i) => self.cluster.tiers[i] = tier,
                None => self.cluster.tiers.push(tier),
            }
        }
    }

    fn network_sets(&mut self, items: &[Item]) {
        for item in items {
            let (spec, namespaced) = match &item.input.object {
                Object::CalicoNetworkSet(o) => (o.spec.as_ref(), true),
                Object::CalicoGlobalNetworkSet(o) => (o.spec.as_ref(), false),
                _ => continue,
            };
            let labels = item.input.object.metadata().labels.clone().unwrap_or_default();
            let ns = namespaced.then(|| self.ns_id(item));
            let ns_info =
                ns.map(|id| (id, self.cluster.namespaces[id].name.clone(), self.cluster.namespaces[id].labels.clone()));
            let set = self.with_problems(item, |p| {
                check_labels(&labels, p);
                let ns_ref = ns_info.as_ref().map(|(id, n, l)| (*id, n.as_str(), l));
                calico_compile::compile_network_set(&item.name, ns_ref, &labels, spec, p)
            });
            self.cluster.network_sets.push(set);
        }
    }

    fn host_endpoints(&mut self, items: &[Item]) {
        for item in items {
            let Object::CalicoHostEndpoint(h) = &item.input.object else { continue };
            let labels = h.metadata.labels.clone().unwrap_or_default();
            let hep = self.with_problems(item, |p| {
                check_labels(&labels, p);
                calico_compile::compile_host_endpoint(&item.name, &labels, h.spec.as_ref(), p)
            });
            for ip in &hep.ips {
                self.cluster.host_by_ip.insert(*ip, self.cluster.host_endpoints.len());
            }
            self.cluster.host_endpoints.push(hep);
        }
    }
}

fn pod_from(pod: &core::Pod, item: &Item, ns: NsId, p: &mut Problems) -> Pod {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    check_labels(&labels, p);
    let spec = pod.spec.clone().unwrap_or_default();
    let ips = pod_ips(pod, p);
    let ports = container_ports(&spec, &root().key("spec"), p);
    Pod {
        namespace: ns,
        name: item.name.clone(),
        labels,
        ips,
        ports,
        host_network: spec.host_network.unwrap_or(false),
        node: spec.node_name.clone(),
        service_account: spec.service_account_name.clone().unwrap_or_else(|| "default".into()),
        workload: owner_workload(&pod.metadata),
        derived: false,
        replicas: Some(1),
        location: item.input.locate.locate(&root()),
    }
}

/// `Succeeded` or `Failed`: a pod whose containers all terminated. It holds no address any
/// more (its IP may already be another pod's) and sends nothing.
fn finished_phase(pod: &core::Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref().filter(|p| matches!(*p, "Succeeded" | "Failed"))
}

/// A pod's labels as Calico selectors see them.
pub(crate) fn pod_calico_labels(c: &Cluster, pod: &Pod, accounts: &HashMap<(NsId, String), Labels>) -> Labels {
    let ns = &c.namespaces[pod.namespace];
    let mut l = pod.labels.clone();
    calico_compile::namespace_pseudo_labels(&ns.name, &ns.labels, &mut l);
    l.insert(expr::ORCHESTRATOR_LABEL.into(), "k8s".into());
    l.insert(expr::SERVICE_ACCOUNT_LABEL.into(), pod.service_account.clone());
    let sa = expr::SERVICE_ACCOUNT_PREFIX;
    for (k, v) in accounts.get(&(pod.namespace, pod.service_account.clone())).into_iter().flatten() {
        l.insert(format!("{sa}{k}"), v.clone());
    }
    l.insert(format!("{sa}{}", expr::NAME_LABEL), pod.service_account.clone());
    l
}

/// Pod objects that came, changed or went, applied to a built cluster without building it
/// again (the agent's path for pod churn).
#[derive(Default)]
pub struct PodPatch {
    /// Pods that leave (gone, or replaced by a new version).
    pub remove: Vec<PodId>,
    pub add: Vec<Pod>,
}

/// Works out a [`PodPatch`] when the change is one a full build would take without a word:
/// only Pods, each valid and warning-free, in namespaces that exist (and are declared, for the
/// pods that go), none on the host network, no name or address clash. `None` when anything else is the case: the full build then
/// decides (and reports what is wrong, with its code frames).
pub fn pod_patch(
    cluster: &Cluster,
    gone: &[(String, String)],
    came: &[&Input],
    opts: &BuildOptions,
) -> Option<PodPatch> {
    let mut remove = Vec::new();
    for (ns, name) in gone {
        let id = cluster.pod(ns, name)?;
        let pod = &cluster.pods[id];
        // A namespace only inferred from its members may go with this pod, renumbering the rest.
        if pod.host_network || pod.derived || !cluster.namespaces[pod.namespace].declared {
            return None;
        }
        remove.push(id);
    }
    let mut b = Builder { cluster: Cluster::default(), problems: Vec::new() };
    let items = b.check_metadata(came.iter().copied(), opts);
    if items.len() != came.len() || !b.problems.is_empty() {
        return None;
    }
    let mut add = Vec::new();
    let mut taken_ips = std::collections::HashSet::new();
    let leaving: std::collections::HashSet<PodId> = remove.iter().copied().collect();
    for item in &items {
        let Object::Pod(obj) = &item.input.object else { return None };
        if finished_phase(obj).is_some() {
            return None;
        }
        let ns = cluster.namespace(item.namespace.as_deref()?)?;
        let pod = b.with_problems(item, |p| pod_from(obj, item, ns, p));
        if !b.problems.is_empty() || pod.host_network {
            return None;
        }
        let clash = |id: PodId| !leaving.contains(&id);
        if cluster.pod_by_name.get(&(ns, pod.name.clone())).is_some_and(|&id| clash(id)) {
            return None;
        }
        for ip in &pod.ips {
            if cluster.pod_by_ip(*ip).is_some_and(clash) || !taken_ips.insert(*ip) {
                return None;
            }
        }
        add.push(pod);
    }
    Some(PodPatch { remove, add })
}

/// Enforced policy objects that came, changed or went, applied to a built cluster without
/// building it again (the agent's path for a policy edit).
#[derive(Default)]
pub struct PolicyPatch {
    /// Indexes in `Cluster::policies` of the policies that leave.
    pub remove: Vec<usize>,
    pub add: Vec<policy::Policy>,
}

/// Kubernetes, Calico and Calico global policies: the kinds [`policy_patch`] takes.
pub fn enforced_policy_kind(o: &Object) -> Option<PolicyKind> {
    match o {
        Object::NetworkPolicy(_) => Some(PolicyKind::Kubernetes),
        Object::CalicoNetworkPolicy(_) => Some(PolicyKind::Calico),
        Object::CalicoGlobalNetworkPolicy(_) => Some(PolicyKind::CalicoGlobal),
        _ => None,
    }
}

/// Works out a [`PolicyPatch`] when the change is one a full build would take without a word:
/// only enforced policies (Kubernetes, Calico, global), valid and warning-free, in namespaces
/// and tiers that exist, no name clash. `None` otherwise: the full build decides.
pub fn policy_patch(cluster: &Cluster, gone: &[&Input], came: &[&Input], opts: &BuildOptions) -> Option<PolicyPatch> {
    let namespace = |i: &Input| {
        let ns = i.object.metadata().namespace.clone().or_else(|| opts.default_namespace.clone());
        i.object.is_namespaced().then_some(ns)
    };
    // Policies by identity: one lookup per policy, whatever the size of the change.
    let by_key: HashMap<(PolicyKind, Option<NsId>, &str), usize> =
        cluster.policies.iter().enumerate().map(|(i, p)| ((p.kind, p.namespace, p.name.as_str()), i)).collect();
    let mut remove = Vec::new();
    for i in gone {
        let kind = enforced_policy_kind(&i.object)?;
        let ns = namespace(i).map(|ns| ns.and_then(|n| cluster.namespace(&n)));
        let ns = match ns {
            Some(None) => return None,
            Some(id) => id,
            None => None,
        };
        // As for pods: a namespace only inferred from its members may go with this policy.
        if ns.is_some_and(|n| !cluster.namespaces[n].declared) {
            return None;
        }
        let name = i.object.metadata().name.as_deref()?;
        remove.push(*by_key.get(&(kind, ns, name))?);
    }
    let leaving: std::collections::HashSet<usize> = remove.iter().copied().collect();
    let context = Cluster {
        namespaces: cluster.namespaces.clone(),
        ns_by_name: cluster.ns_by_name.clone(),
        tiers: cluster.tiers.clone(),
        ..Cluster::default()
    };
    let mut b = Builder { cluster: context, problems: Vec::new() };
    let items = b.check_metadata(came.iter().copied(), opts);
    if items.len() != came.len() || !b.problems.is_empty() {
        return None;
    }
    let tiers: HashMap<String, usize> = cluster.tiers.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
    let tier_id = |name: &str| tiers.get(name).copied();
    let mut add = Vec::new();
    for item in &items {
        enforced_policy_kind(&item.input.object)?;
        if item.namespace.as_ref().is_some_and(|ns| cluster.namespace(ns).is_none()) {
            return None;
        }
        let (pol, _) = b.policy_of(item, &tier_id)?;
        if !b.problems.is_empty() {
            return None;
        }
        let clash = by_key.get(&(pol.kind, pol.namespace, pol.name.as_str())).is_some_and(|i| !leaving.contains(i));
        if clash {
            return None;
        }
        add.push(pol);
    }
    Some(PolicyPatch { remove, add })
}

fn check_meta(item: &Item, meta: &ObjectMeta, p: &mut Problems) -> bool {
    let kind = item.input.object.kind();
    let name_path = root().key("metadata").key("name");
    if item.name.is_empty() {
        p.error(&name_path, format!("{kind} has no metadata.name"), "every object needs a name");
        return false;
    }
    // The API server's name rules per kind: Namespaces are RFC 1123 labels, Services RFC 1035
    // labels (they become DNS names), everything else RFC 1123 subdomains.
    let (check, help) = match kind {
        "Namespace" => (check_dns_label(&item.name), "namespace names are lowercase letters, digits and '-'"),
        "Service" => (
            crate::label::check_dns1035_label(&item.name),
            "Service names are lowercase letters, digits and '-', starting with a letter (no '.')",
        ),
        _ => (check_dns_subdomain(&item.name), "names are lowercase letters, digits, '-' and '.'"),
    };
    if let Err(e) = check {
        p.error(&name_path, format!("invalid {kind} name: {e}"), help);
    }
    if item.input.object.is_namespaced() && item.namespace.is_none() {
        p.error(
            &root().key("metadata"),
            format!("{kind} {:?} has no metadata.namespace", item.name),
            "a namespaced object must say which namespace it is in: set metadata.namespace, or pass --namespace NS to place namespace-less objects (as kubectl apply -n NS does)",
        );
        return false;
    }
    if let Some(ns) = &item.namespace {
        if let Err(e) = check_dns_label(ns) {
            p.error(
                &root().key("metadata").key("namespace"),
                format!("invalid namespace: {e}"),
                "namespace names are RFC 1123 labels",
            );
            return false;
        }
    }
    if !item.input.object.is_namespaced() && meta.namespace.is_some() {
        p.warn(
            &root().key("metadata").key("namespace"),
            format!("{kind} is cluster-scoped; metadata.namespace is ignored"),
            "remove metadata.namespace",
        );
    }
    true
}

fn check_labels(labels: &Labels, p: &mut Problems) {
    check_labels_at(labels, &root().key("metadata").key("labels"), p)
}

fn check_labels_at(labels: &Labels, path: &FieldPath, p: &mut Problems) {
    for (k, v) in labels {
        if let Err(e) = check_label_key(k) {
            p.error(&path.key(k), e, "label keys are [prefix/]name, name at most 63 characters [A-Za-z0-9_.-]");
        }
        if let Err(e) = check_label_value(v) {
            p.error(
                &path.key(k),
                e,
                "label values are empty or at most 63 characters [A-Za-z0-9_.-], starting and ending alphanumeric",
            );
        }
    }
}

fn parse_ip(s: &str, path: &FieldPath, p: &mut Problems) -> Option<IpAddr> {
    match s.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            p.error(path, format!("invalid IP address {s:?}"), "an IPv4 (10.0.0.1) or IPv6 (fd00::1) address");
            None
        }
    }
}

fn pod_ips(pod: &core::Pod, p: &mut Problems) -> Vec<IpAddr> {
    let Some(status) = &pod.status else { return Vec::new() };
    let path = root().key("status");
    let mut ips: Vec<IpAddr> = Vec::new();
    if let Some(ip) = status.pod_ip.as_deref().and_then(|s| parse_ip(s, &path.key("podIP"), p)) {
        ips.push(ip);
    }
    for (i, entry) in status.pod_ips.iter().flatten().enumerate() {
        if let Some(ip) = parse_ip(&entry.ip, &path.key("podIPs").index(i).key("ip"), p) {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    ips
}

fn container_ports(spec: &PodSpec, path: &FieldPath, p: &mut Problems) -> Vec<ContainerPort> {
    let mut out = Vec::new();
    let groups = [("containers", Some(&spec.containers)), ("initContainers", spec.init_containers.as_ref())];
    for (field, containers) in groups {
        for (ci, c) in containers.into_iter().flatten().enumerate() {
            for (pi, port) in c.ports.iter().flatten().enumerate() {
                let pp = path.key(field).index(ci).key("ports").index(pi);
                let protocol = Protocol::compile(port.protocol.as_deref(), &pp.key("protocol"), p);
                let number = match check_port_number(port.container_port) {
                    Ok(n) => n,
                    Err(e) => {
                        p.error(&pp.key("containerPort"), e, "containerPort must be between 1 and 65535");
                        continue;
                    }
                };
                if let Some(name) = &port.name {
                    if let Err(e) = check_port_name(name) {
                        p.error(
                            &pp.key("name"),
                            e,
                            "port names are IANA service names: at most 15 of a-z, 0-9, '-', with a letter",
                        );
                    }
                }
                out.push(ContainerPort { name: port.name.clone(), port: number, protocol });
            }
        }
    }
    out
}

/// The workload of a pod from its owner references; a ReplicaSet owned by a Deployment
/// (name `<deployment>-<pod-template-hash>`) counts as the Deployment.
fn owner_workload(meta: &ObjectMeta) -> Option<WorkloadRef> {
    let owner = meta.owner_references.as_ref()?.iter().find(|o| o.controller.unwrap_or(true))?;
    let hash = meta.labels.as_ref().and_then(|l| l.get("pod-template-hash"));
    if owner.kind == "ReplicaSet" {
        if let Some(deploy) = hash.and_then(|h| owner.name.strip_suffix(&format!("-{h}"))) {
            return Some(WorkloadRef { kind: "Deployment".into(), name: deploy.to_string() });
        }
    }
    Some(WorkloadRef { kind: owner.kind.clone(), name: owner.name.clone() })
}

fn owned_by_present_object(meta: &ObjectMeta, ns: Option<&str>, present: &[(String, String, String)]) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| present.iter().any(|(k, n, name)| *k == o.kind && Some(n.as_str()) == ns && *name == o.name))
}

fn workload_template(obj: &Object) -> Option<(Option<LabelSelector>, PodTemplateSpec)> {
    match obj {
        Object::Deployment(d) => d.spec.as_ref().map(|s| (Some(s.selector.clone()), s.template.clone())),
        Object::ReplicaSet(r) => r.spec.as_ref().and_then(|s| Some((Some(s.selector.clone()), s.template.clone()?))),
        Object::StatefulSet(s) => s.spec.as_ref().map(|s| (Some(s.selector.clone()), s.template.clone())),
        Object::DaemonSet(d) => d.spec.as_ref().map(|s| (Some(s.selector.clone()), s.template.clone())),
        Object::Job(j) => j.spec.as_ref().map(|s| (s.selector.clone(), s.template.clone())),
        Object::CronJob(c) => c.spec.as_ref().and_then(|s| {
            let job = s.job_template.spec.as_ref()?;
            Some((job.selector.clone(), job.template.clone()))
        }),
        _ => None,
    }
}

/// How many pods a workload runs: `replicas` (Deployment, ReplicaSet, StatefulSet; default 1),
/// `parallelism` (Job, CronJob's job template; default 1); `None` for a DaemonSet (one per
/// node). Negative counts are the API server's to reject; they count as none.
fn workload_replicas(obj: &Object) -> Option<u32> {
    let count = |n: Option<i32>| Some(u32::try_from(n.unwrap_or(1)).unwrap_or(0));
    match obj {
        Object::Deployment(d) => count(d.spec.as_ref().and_then(|s| s.replicas)),
        Object::ReplicaSet(r) => count(r.spec.as_ref().and_then(|s| s.replicas)),
        Object::StatefulSet(s) => count(s.spec.as_ref().and_then(|s| s.replicas)),
        Object::Job(j) => count(j.spec.as_ref().and_then(|s| s.parallelism)),
        Object::CronJob(c) => {
            count(c.spec.as_ref().and_then(|s| s.job_template.spec.as_ref()).and_then(|s| s.parallelism))
        }
        _ => None,
    }
}

fn template_path(obj: &Object) -> FieldPath {
    match obj {
        Object::CronJob(_) => FieldPath::parse("spec.jobTemplate.spec.template"),
        _ => FieldPath::parse("spec.template"),
    }
}

fn selector_path(obj: &Object) -> FieldPath {
    match obj {
        Object::CronJob(_) => FieldPath::parse("spec.jobTemplate.spec.selector"),
        _ => FieldPath::parse("spec.selector"),
    }
}

fn compile_service(svc: &core::Service, ns: NsId, name: &str, p: &mut Problems) -> Service {
    let spec = svc.spec.clone().unwrap_or_default();
    let path = root().key("spec");
    let mut cluster_ips = Vec::new();
    let listed = spec.cluster_ips.clone().unwrap_or_default();
    let all = spec.cluster_ip.iter().chain(listed.iter());
    for (i, ip) in all.enumerate() {
        if ip == "None" || ip.is_empty() {
            continue;
        }
        let at = if i == 0 && spec.cluster_ip.is_some() { path.key("clusterIP") } else { path.key("clusterIPs") };
        if let Some(ip) = parse_ip(ip, &at, p) {
            if !cluster_ips.contains(&ip) {
                cluster_ips.push(ip);
            }
        }
    }
    let mut ports = Vec::new();
    for (i, sp) in spec.ports.iter().flatten().enumerate() {
        let pp = path.key("ports").index(i);
        let protocol = Protocol::compile(sp.protocol.as_deref(), &pp.key("protocol"), p);
        let Ok(port) = check_port_number(sp.port) else {
            p.error(&pp.key("port"), format!("port {} is out of range", sp.port), "service ports are 1-65535");
            continue;
        };
        let target = match &sp.target_port {
            None => TargetPort::Number(port),
            Some(IntOrString::Int(n)) => match check_port_number(*n) {
                Ok(n) => TargetPort::Number(n),
                Err(e) => {
                    p.error(&pp.key("targetPort"), e, "targetPort is a number 1-65535 or a container port name");
                    continue;
                }
            },
            Some(IntOrString::String(s)) => match check_port_name(s) {
                Ok(()) => TargetPort::Name(s.clone()),
                Err(e) => {
                    p.error(&pp.key("targetPort"), e, "targetPort is a number 1-65535 or a container port name (at most 15 characters of a-z, 0-9 and '-', with a letter)");
                    continue;
                }
            },
        };
        ports.push(ServicePort { name: sp.name.clone(), port, protocol, target });
    }
    Service {
        namespace: ns,
        name: name.to_string(),
        cluster_ips,
        selector: spec.selector.clone(),
        ports,
        endpoints: Vec::new(),
        external_name: spec.external_name.clone().filter(|_| spec.type_.as_deref() == Some("ExternalName")),
    }
}

fn compile_slice(slice: &EndpointSlice, name: &str, p: &mut Problems) -> Vec<SliceEndpoint> {
    let mut ports = Vec::new();
    for (i, ep) in slice.ports.iter().flatten().enumerate() {
        let pp = root().key("ports").index(i);
        let protocol = Protocol::compile(ep.protocol.as_deref(), &pp.key("protocol"), p);
        if let Some(n) = ep.port {
            match check_port_number(n) {
                Ok(n) => ports.push((ep.name.clone(), n, protocol)),
                Err(e) => p.error(&pp.key("port"), e, "endpoint ports are 1-65535"),
            }
        }
    }
    let mut out = Vec::new();
    for (i, ep) in slice.endpoints.iter().enumerate() {
        for (j, a) in ep.addresses.iter().enumerate() {
            let at = root().key("endpoints").index(i).key("addresses").index(j);
            if let Some(ip) = parse_ip(a, &at, p) {
                out.push(SliceEndpoint { ip, ports: ports.clone(), slice: name.to_string() });
            }
        }
    }
    out
}

/// Counts objects by kind, for summaries.
pub fn count_kinds(inputs: &[Input]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for i in inputs {
        *m.entry(i.object.kind()).or_insert(0) += 1;
    }
    m
}
