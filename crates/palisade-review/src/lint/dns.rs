//! DNS, the one dependency every pod has. Three ways policy breaks it: clients isolated for
//! egress that may not reach the DNS pods (PAL003), DNS pods isolated for ingress that refuse
//! their clients (PAL016), and egress allowed on the Service's port 53 while the DNS pods
//! listen on another port (PAL017: OpenShift's DNS listens on 5353), since policy sees the
//! connection after kube-proxy's DNAT, at the backend and its targetPort.

use std::collections::{BTreeMap, BTreeSet};

use palisade_core::cluster::{Cluster, PodId, PolicyId, ServiceId};
use palisade_core::field::FieldPath;
use palisade_core::index::{Admitted, Index};
use palisade_core::label::Labels;
use palisade_core::matching;
use palisade_core::policy::{Action, Direction};
use palisade_core::port::Protocol;
use palisade_core::service::backends;
use palisade_core::verdict::{decide, Connection, Endpoint, Side, Step};

use super::{is_calico, some_of, Context, DNS_SERVER_ISOLATED, DNS_WRONG_PORT, NO_DNS};

/// A DNS pod and the UDP port policy sees DNS arrive on there.
#[derive(Clone, Debug)]
pub(super) struct Server {
    pub pod: PodId,
    pub port: u16,
    /// The Service that DNATs 53 to it (`kube-system/kube-dns`), if any.
    pub service: Option<String>,
}

/// kube-dns/CoreDNS (`k8s-app: kube-dns`) or OpenShift's DNS daemon set.
fn is_dns_server(labels: &Labels) -> bool {
    palisade_core::label::is_kube_dns(labels) || labels.contains_key("dns.operator.openshift.io/daemonset-dns")
}

/// Services clients send DNS to: kube-system/kube-dns, openshift-dns/dns-default, and any
/// Service on 53/UDP in front of pods labelled as DNS servers.
fn is_dns_service(cluster: &Cluster, id: ServiceId) -> bool {
    let svc = &cluster.services[id];
    let ns = cluster.namespaces[svc.namespace].name.as_str();
    let named = matches!((ns, svc.name.as_str()), ("kube-system", "kube-dns") | ("openshift-dns", "dns-default"));
    named
        || backends(cluster, id, 53, Protocol::UDP).is_ok_and(|(list, _)| {
            list.iter().any(|b| matches!(b.side.endpoint, Endpoint::Pod(p) if is_dns_server(&cluster.pods[p].labels)))
        })
}

/// The DNS pods: the backends of the DNS Services (at their targetPort for 53/UDP), and pods
/// labelled as DNS servers that no such Service fronts (at their UDP port named `dns`, else 53).
pub(super) fn servers(cluster: &Cluster) -> Vec<Server> {
    let mut out: BTreeMap<PodId, Server> = BTreeMap::new();
    for id in cluster.service_ids().filter(|&id| is_dns_service(cluster, id)) {
        let name = format!("{}/{}", cluster.namespaces[cluster.services[id].namespace].name, cluster.services[id].name);
        for b in backends(cluster, id, 53, Protocol::UDP).map(|(list, _)| list).unwrap_or_default() {
            if let Endpoint::Pod(pod) = b.side.endpoint {
                out.entry(pod).or_insert(Server { pod, port: b.port, service: Some(name.clone()) });
            }
        }
    }
    for (pod, p) in cluster.pod_ids().zip(&cluster.pods).filter(|(_, p)| is_dns_server(&p.labels)) {
        let named = p.ports.iter().find(|c| c.protocol == Protocol::UDP && c.name.as_deref() == Some("dns"));
        out.entry(pod).or_insert(Server { pod, port: named.map_or(53, |c| c.port), service: None });
    }
    out.into_values().filter(|s| cluster.is_policy_subject(s.pod)).collect()
}

type Sides = (Vec<Admitted>, Vec<Admitted>);

/// Runs PAL003, PAL016 and PAL017; returns each direction's admitted peers on 53/UDP.
pub(super) fn run(cx: &mut Context, index: &mut Index, applicable: &[Vec<Vec<PolicyId>>; 2]) -> Sides {
    let cluster = cx.cluster;
    let servers = servers(cluster);
    let mut ports: BTreeSet<u16> = DNS_PORTS.into();
    ports.extend(servers.iter().map(|s| s.port));
    let mut sides: BTreeMap<u16, Sides> = ports.iter().map(|&p| (p, index.sides(p, Protocol::UDP))).collect();
    no_dns(cx, &servers, &sides, &applicable[0]);
    wrong_port(cx, &servers, &sides, &applicable[0]);
    isolated_servers(cx, &servers, &sides);
    sides.remove(&53).expect("53 is always decided")
}

/// DNS as policy sees it after DNAT: 53, or 5353 where OpenShift's DNS pods listen.
const DNS_PORTS: [u16; 2] = [53, 5353];

/// How to allow DNS to the DNS pods, in the words of the policy's kind.
fn fix(cx: &Context, pol: PolicyId, servers: &[Server]) -> String {
    let cluster = cx.cluster;
    let (ns, key, value, port) = match servers.first() {
        Some(s) => {
            let pod = &cluster.pods[s.pod];
            let (k, v) = pod
                .labels
                .iter()
                .find(|(k, _)| *k == "k8s-app" || *k == "dns.operator.openshift.io/daemonset-dns")
                .map_or(("k8s-app", "kube-dns"), |(k, v)| (k.as_str(), v.as_str()));
            (cluster.namespaces[pod.namespace].name.as_str(), k, v, s.port)
        }
        None => ("kube-system", "k8s-app", "kube-dns", 53),
    };
    if is_calico(cluster, pol) {
        format!("add an egress rule before the policy's end: action: Allow, protocol: UDP, destination: {{namespaceSelector: kubernetes.io/metadata.name == \"{ns}\", selector: {key} == \"{value}\", ports: [{port}]}} (and the same for TCP); or end the tier with a Pass so that a later tier decides DNS")
    } else {
        format!("add an egress rule to the DNS pods on {port}/UDP and {port}/TCP: one peer with namespaceSelector kubernetes.io/metadata.name: {ns} AND podSelector {key}: {value}")
    }
}

/// PAL003: egress-isolated pods that may reach no DNS pod on any DNS port.
fn no_dns(cx: &mut Context, servers: &[Server], sides: &BTreeMap<u16, Sides>, applicable: &[Vec<PolicyId>]) {
    let cluster = cx.cluster;
    let mut blocked: BTreeMap<usize, Vec<PodId>> = BTreeMap::new();
    for (p, policies) in cluster.pod_ids().zip(applicable) {
        if sides[&53].0[p.index()].is_none() {
            continue; // Not isolated for egress.
        }
        let ok = if servers.is_empty() {
            // DNS is not in the input: any egress rule that admits a DNS port counts.
            policies.iter().any(|&i| admits_dns_port(cluster, i))
        } else {
            let admits =
                |s: &Server, port: u16| sides[&port].0[p.index()].as_ref().is_some_and(|a| a.contains(s.pod.index()));
            servers.iter().any(|s| DNS_PORTS.iter().chain([&s.port]).any(|&port| admits(s, port)))
        };
        if !ok {
            blocked.entry(cx.workloads.of_pod[p.index()]).or_default().push(p);
        }
    }
    for (w, pods) in blocked {
        let Some(&pol) = applicable[pods[0].index()].first() else { continue };
        let target = if servers.is_empty() { "any address" } else { "the cluster's DNS pods" };
        let message = format!(
            "{} ({} pod(s)) is isolated for egress and may not reach {target} on 53/UDP (or 5353, OpenShift's): name resolution fails",
            cx.workloads.key(cluster, w),
            pods.len()
        );
        let help = fix(cx, pol, servers);
        cx.at_policy(&NO_DNS, pol, FieldPath::root().key("spec").key("egress"), message, help);
    }
}

/// Whether an egress Allow rule of the policy admits a DNS port to some address: its packet
/// conditions and destination ports (named ports name nothing without the destination).
fn admits_dns_port(cluster: &Cluster, pol: PolicyId) -> bool {
    let rules = cluster.policies[pol].egress.iter().flatten();
    let nowhere = Side { endpoint: Endpoint::External, ip: None };
    rules.filter(|r| r.action == Action::Allow).any(|r| {
        DNS_PORTS.iter().any(|&port| {
            let conn = Connection::new(nowhere, nowhere, port, Protocol::UDP);
            matching::packet(r, &conn).is_ok()
                && matching::ports_match(cluster, &r.destination, &nowhere, port, Protocol::UDP)
        })
    })
}

/// PAL017: egress admits 53 to DNS pods that listen on another port, and not that port.
fn wrong_port(cx: &mut Context, servers: &[Server], sides: &BTreeMap<u16, Sides>, applicable: &[Vec<PolicyId>]) {
    let cluster = cx.cluster;
    // (policy, rule) -> (client pods, DNS pods) the rule admits on 53 in vain.
    let mut found: BTreeMap<(PolicyId, usize), (BTreeSet<PodId>, BTreeSet<usize>)> = BTreeMap::new();
    for (p, policies) in cluster.pod_ids().zip(applicable) {
        for (k, s) in servers.iter().enumerate().filter(|(_, s)| s.port != 53) {
            let admits = |port: u16| sides[&port].0[p.index()].as_ref().is_some_and(|a| a.contains(s.pod.index()));
            if !admits(53) || admits(s.port) {
                continue;
            }
            let conn = Connection::new(Side::pod(cluster, p), Side::pod(cluster, s.pod), 53, Protocol::UDP);
            for &pol in policies {
                let rules = cluster.policies[pol].egress.iter().flatten();
                let hits = rules.filter(|r| r.action == Action::Allow && matching::matches(cluster, r, &conn));
                for i in hits.map(|r| r.origin.rule) {
                    let entry = found.entry((pol, i)).or_default();
                    entry.0.insert(p);
                    entry.1.insert(k);
                }
            }
        }
    }
    for ((pol, i), (clients, which)) in found {
        let dns: Vec<&Server> = which.iter().map(|&k| &servers[k]).collect();
        let names: Vec<String> = dns.iter().map(|s| cluster.pod_key(s.pod)).collect();
        let ports: BTreeSet<u16> = dns.iter().map(|s| s.port).collect();
        let port = ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
        let via = dns[0]
            .service
            .as_ref()
            .map(|s| format!(" (Service {s}: port 53 -> targetPort {port})"))
            .unwrap_or_default();
        let clients: Vec<String> = clients
            .iter()
            .map(|&c| cx.workloads.key(cluster, cx.workloads.of_pod[c.index()]))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let message = format!(
            "egress rule [{i}] allows 53/UDP to the DNS pods {}, but they listen on {port}{via}: policy sees DNS after DNAT, on {port}, which no rule allows: name resolution fails for {}",
            some_of(&names, 3),
            some_of(&clients, 3)
        );
        let help = if is_calico(cluster, pol) {
            format!("allow the port the DNS pods listen on: destination ports: [{port}] (UDP and TCP), not 53")
        } else {
            format!("allow the port the DNS pods listen on: ports: [{{port: {port}, protocol: UDP}}, {{port: {port}, protocol: TCP}}], not 53")
        };
        cx.at_policy(&DNS_WRONG_PORT, pol, super::rule_path(Direction::Egress, i), message, help);
    }
}

/// PAL016: DNS pods isolated for ingress that refuse client pods on their DNS port. A client
/// some DNS pod refuses loses a share of its lookups (kube-proxy picks any backend).
fn isolated_servers(cx: &mut Context, servers: &[Server], sides: &BTreeMap<u16, Sides>) {
    let cluster = cx.cluster;
    let dns: BTreeSet<PodId> = servers.iter().map(|s| s.pod).collect();
    let clients: Vec<PodId> =
        cluster.pod_ids().filter(|&p| cluster.is_policy_subject(p) && !dns.contains(&p)).collect();
    if clients.is_empty() {
        return;
    }
    // policy that decides -> (DNS pods, client pods refused, one refused connection's port)
    let mut found: BTreeMap<PolicyId, (Vec<PodId>, BTreeSet<PodId>, u16)> = BTreeMap::new();
    for s in servers {
        let Some(admitted) = &sides[&s.port].1[s.pod.index()] else { continue };
        let refused: Vec<PodId> = clients.iter().copied().filter(|&c| !admitted.contains(c.index())).collect();
        let Some(&example) = refused.first() else { continue };
        let Some(pol) = deciding_policy(cluster, example, s) else { continue };
        let entry = found.entry(pol).or_insert_with(|| (Vec::new(), BTreeSet::new(), s.port));
        entry.0.push(s.pod);
        entry.1.extend(refused);
    }
    for (pol, (pods, refused, port)) in found {
        let names: Vec<String> = pods.iter().map(|&p| cluster.pod_key(p)).collect();
        let workloads: BTreeSet<String> =
            refused.iter().map(|&c| cx.workloads.key(cluster, cx.workloads.of_pod[c.index()])).collect();
        let workloads: Vec<String> = workloads.into_iter().collect();
        let how_many = if refused.len() == clients.len() {
            format!("refuse every client pod ({})", clients.len())
        } else {
            format!("refuse {} of {} client pods: {}", refused.len(), clients.len(), some_of(&workloads, 3))
        };
        let message = format!(
            "the DNS pods {} are isolated for ingress by {} and {how_many} on {port}/UDP: name resolution fails",
            some_of(&names, 3),
            cx.policy_object(pol)
        );
        let help = if is_calico(cluster, pol) {
            format!("admit DNS at the DNS pods before the deny: a rule action: Allow, protocol: UDP, destination: {{ports: [{port}]}} (and TCP) in a policy selecting them, ordered before this one; or exempt their namespace from its selector")
        } else {
            format!("admit DNS at the DNS pods: an ingress policy in their namespace selecting them, from: [{{namespaceSelector: {{}}}}] on {port}/UDP and {port}/TCP")
        };
        cx.at_policy(&DNS_SERVER_ISOLATED, pol, FieldPath::root().key("spec"), message, help);
    }
}

/// The policy that denies `client` DNS at `server` on ingress: the one whose rule decided,
/// else (end of tier) the last one that selects the DNS pod.
fn deciding_policy(cluster: &Cluster, client: PodId, server: &Server) -> Option<PolicyId> {
    let conn = Connection::new(Side::pod(cluster, client), Side::pod(cluster, server.pod), server.port, Protocol::UDP);
    let trace = decide(cluster, &conn).trace;
    let policies = trace.iter().find_map(|s| match s {
        Step::Policies { direction: Direction::Ingress, policies, .. } => Some(policies),
        _ => None,
    })?;
    let decided = policies.iter().filter(|p| p.reached).find(|p| p.rules.iter().any(|r| r.decisive));
    let name = decided.or_else(|| policies.iter().rfind(|p| p.reached))?.policy.clone();
    cluster.policy_ids().find(|&i| cluster.policy_key(i) == name)
}
