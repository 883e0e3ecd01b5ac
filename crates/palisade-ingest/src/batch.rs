//! Building a [`Cluster`] from a batch of API objects, with the API servers' validation.
//!
//! All objects are checked before anything is used: a set with any error yields no cluster,
//! because a silently dropped policy would be a hole in the firewall.

use std::collections::HashMap;

use crate::kubernetes::selector::Selector;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use palisade_core::cluster::*;
use palisade_core::field::{AtValues, FieldPath, Location, Problem, Problems, Severity};
use palisade_core::label::{Labels, NAMESPACE_NAME_LABEL};
use palisade_core::policy::{self, PolicyKind};

use crate::calico::policy::{self as calico_policy, PolicyContext};
use crate::calico::{sets, tier};
use crate::clusterpolicy::{self, lower::Tiers};
use crate::kubernetes::meta::{check_labels, check_labels_at, check_meta, parse_ip};
use crate::kubernetes::pod::{container_ports, finished_phase, pod_from};
use crate::kubernetes::service::{backends, compile_service, compile_slice};
use crate::kubernetes::workload::{
    owned_by_present_object, selector_path, template_path, workload_replicas, workload_template,
};
use crate::kubernetes::{networkpolicy, selector};
use crate::object::{object_label, BuildOptions, Input, Item, Object};

/// Builds the cluster, or returns every problem found (errors and warnings) if any is an error.
pub fn build(inputs: &[Input], opts: &BuildOptions) -> Result<Cluster, Vec<Problem>> {
    build_from(inputs, opts)
}

/// [`build`] from objects held elsewhere (the store's slots), in their order.
pub(crate) fn build_from<'a>(
    inputs: impl IntoIterator<Item = &'a Input>,
    opts: &BuildOptions,
) -> Result<Cluster, Vec<Problem>> {
    let mut b = Builder { cluster: Cluster::default(), problems: Vec::new() };
    let items = b.check_metadata(inputs, opts);
    b.cluster.dns = opts.dns.iter().flat_map(|(n, ips)| ips.iter().map(move |ip| (n.clone(), *ip))).collect();
    b.namespaces(&items);
    b.service_accounts(&items);
    b.pods(&items);
    b.workloads(&items);
    b.nodes(&items);
    b.services(&items);
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

pub(crate) struct Builder {
    pub(crate) cluster: Cluster,
    pub(crate) problems: Vec<Problem>,
}

fn root() -> FieldPath {
    FieldPath::root()
}

impl Builder {
    pub(crate) fn with_problems<R>(&mut self, item: &Item, f: impl FnOnce(&mut Problems) -> R) -> R {
        let label = object_label(item.input.object.kind(), item.namespace.as_deref(), &item.name);
        let mut p = Problems::new(label, item.input.locate.as_ref());
        let r = f(&mut p);
        self.problems.extend(p.list);
        r
    }

    pub(crate) fn check_metadata<'a>(
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

    fn add_namespace(&mut self, name: &str, labels: Labels, declared: bool) -> NsId {
        self.cluster.add_namespace(name, labels, declared)
    }

    fn ns_id(&self, item: &Item) -> NsId {
        self.cluster.namespace(item.namespace.as_deref().unwrap_or_default()).expect("namespace registered")
    }

    fn pods(&mut self, items: &[Item]) {
        // Reserved once: doubling left up to half of the (long-lived) vector unused.
        self.cluster.pods.reserve(items.iter().filter(|i| matches!(i.input.object, Object::Pod(_))).count());
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
        if !pod.host_network {
            for ip in &pod.ips {
                if let Some(other) = self.cluster.pod_by_ip(*ip) {
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
            }
        }
        self.cluster.add_pod(pod);
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
                    Some(s) => selector::compile(s, &selector_path(&item.input.object), p),
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
            let name = if self.cluster.pod_in(ns, &item.name).is_some() {
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
            self.cluster.add_node(Node { name: item.name.clone(), labels, addresses });
        }
    }

    fn services(&mut self, items: &[Item]) {
        for item in items {
            let Object::Service(svc) = &item.input.object else { continue };
            let ns = self.ns_id(item);
            let service = self.with_problems(item, |p| compile_service(svc, ns, &item.name, p));
            self.cluster.add_service(service);
        }
        let mut by_service: HashMap<ServiceId, Vec<_>> = HashMap::new();
        for item in items {
            let Object::EndpointSlice(slice) = &item.input.object else { continue };
            let ns = self.ns_id(item);
            let service_name =
                slice.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name")).cloned();
            let endpoints = self.with_problems(item, |p| compile_slice(slice, &item.name, p));
            let target = service_name.as_ref().and_then(|s| self.cluster.service_in(ns, s));
            match target {
                Some(id) => by_service.entry(id).or_default().extend(endpoints),
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
        for (id, endpoints) in by_service {
            self.cluster.services[id].endpoints.extend(backends(endpoints));
        }
    }

    fn policies(&mut self, items: &[Item]) {
        let tiers: HashMap<String, TierId> =
            self.cluster.tiers.iter().enumerate().map(|(i, t)| (t.name.clone(), TierId::new(i))).collect();
        let tier_id = |name: &str| tiers.get(name).copied();
        self.cluster.policies.reserve(items.iter().filter(|i| i.input.object.is_policy()).count());
        for item in items {
            let Some((compiled, staged)) = self.policy_of(item, &tier_id) else { continue };
            match staged {
                None => self.cluster.policies.push(compiled),
                Some(action) => {
                    if let Some(Some(action)) = calico_policy::staged_action(action.as_ref()) {
                        self.cluster.staged.push(StagedPolicy { action, policy: compiled });
                    }
                }
            }
        }
    }

    /// One policy object compiled, with its staged action when it is staged; `None` for other
    /// kinds.
    #[allow(clippy::type_complexity)]
    pub(crate) fn policy_of(
        &mut self,
        item: &Item,
        tier_id: &dyn Fn(&str) -> Option<TierId>,
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
                let pol = self.with_problems(item, |p| calico_policy::compile_policy(spec, &ctx, tier_id, p));
                (pol, staged.then(|| spec.and_then(|s| s.staged_action.clone())))
            }
            (Object::NetworkPolicy(np), None) => (
                self.with_problems(item, |p| {
                    networkpolicy::compile(
                        np,
                        ns.expect("namespaced"),
                        item.namespace.as_deref().unwrap_or_default(),
                        p,
                    )
                }),
                None,
            ),
            (object, None) if clusterpolicy::is_cluster_network_policy(object) => {
                let tiers = kube_tiers(tier_id);
                let cluster = &self.cluster;
                let label = object_label(object.kind(), None, &item.name);
                let at_values = AtValues(item.input.locate.as_ref());
                let mut p = Problems::new(label, &at_values);
                let pol = clusterpolicy::compile(object, &item.name, cluster, tiers, &mut p)?;
                self.problems.extend(p.list);
                (pol, None)
            }
            (Object::CalicoStagedKubernetesNetworkPolicy(o), None) => {
                let spec = o.spec.clone().unwrap_or_default();
                let np = NetworkPolicy { metadata: o.metadata.clone(), spec: Some(spec.spec) };
                let pol = self.with_problems(item, |p| {
                    networkpolicy::compile(
                        &np,
                        ns.expect("namespaced"),
                        item.namespace.as_deref().unwrap_or_default(),
                        p,
                    )
                });
                (pol, Some(spec.staged_action))
            }
            _ => return None,
        })
    }

    /// Labels as Calico selectors see pods: pseudo-labels, `pcns.` and `pcsa.` labels.
    /// ServiceAccounts first: their labels are part of pods' labels as Calico selectors see
    /// them (`pcsa.`), worked out as each pod is added.
    fn service_accounts(&mut self, items: &[Item]) {
        let mut accounts: HashMap<(NsId, String), Labels> = HashMap::new();
        for item in items {
            let Object::ServiceAccount(sa) = &item.input.object else { continue };
            let labels = sa.metadata.labels.clone().unwrap_or_default();
            self.with_problems(item, |p| check_labels(&labels, p));
            accounts.insert((self.ns_id(item), item.name.clone()), labels);
        }
        self.cluster.set_service_accounts(accounts);
    }

    fn tiers(&mut self, items: &[Item]) {
        self.cluster.tiers.push(Tier {
            name: "default".into(),
            order: Some(DEFAULT_TIER_ORDER),
            pass_at_end: false,
            location: None,
        });
        // Calico 3.32 always has the tiers of the cluster network policies; Palisade adds them
        // when something uses them, so that clusters without keep their traces.
        let uses_kube_tiers = items.iter().any(|i| match &i.input.object {
            o if clusterpolicy::is_cluster_network_policy(o) => true,
            Object::CalicoNetworkPolicy(o) => kube_tier_named(o.spec.as_ref()),
            Object::CalicoStagedNetworkPolicy(o) => kube_tier_named(o.spec.as_ref()),
            Object::CalicoGlobalNetworkPolicy(o) => kube_tier_named(o.spec.as_ref()),
            Object::CalicoStagedGlobalNetworkPolicy(o) => kube_tier_named(o.spec.as_ref()),
            _ => false,
        });
        if uses_kube_tiers {
            for (name, order) in [(KUBE_ADMIN_TIER, KUBE_ADMIN_ORDER), (KUBE_BASELINE_TIER, KUBE_BASELINE_ORDER)] {
                self.cluster.tiers.push(Tier {
                    name: name.into(),
                    order: Some(order),
                    pass_at_end: true,
                    location: None,
                });
            }
        }
        for item in items {
            let Object::CalicoTier(t) = &item.input.object else { continue };
            let tier = self.with_problems(item, |p| {
                let tier = tier::compile_tier(&item.name, t.spec.as_ref(), p);
                tier::check_kube_tier(&tier, p);
                tier
            });
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
                sets::compile_network_set(&item.name, ns_ref, &labels, spec, p)
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
                sets::compile_host_endpoint(&item.name, &labels, h.spec.as_ref(), p)
            });
            self.cluster.add_host_endpoint(hep);
        }
    }
}

/// Whether a Calico policy names one of the kube tiers.
fn kube_tier_named(spec: Option<&crate::calico::resource::PolicySpec>) -> bool {
    spec.and_then(|s| s.tier.as_deref()).is_some_and(|t| t == KUBE_ADMIN_TIER || t == KUBE_BASELINE_TIER)
}

/// The kube tiers' ids (added by `tiers` whenever a cluster network policy is present).
fn kube_tiers(tier_id: &dyn Fn(&str) -> Option<TierId>) -> Tiers {
    Tiers {
        admin: tier_id(KUBE_ADMIN_TIER).expect("kube-admin tier added"),
        baseline: tier_id(KUBE_BASELINE_TIER).expect("kube-baseline tier added"),
    }
}
