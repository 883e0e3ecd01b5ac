//! The least-privilege policy set for a list of connections: a default deny (with DNS) per
//! namespace, and per workload one ingress policy (who may open it) and one egress policy
//! (what it may open), each rule naming the flows it is for.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use palisade_core::cluster::{Cluster, PodId};
use palisade_core::label::NAMESPACE_NAME_LABEL;
use palisade_core::port::Protocol;
use palisade_review::workload::Workloads;

use crate::resolve::{Connection, End};
use crate::selector::select;

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Widen outside addresses to networks of this prefix length (IPv4, IPv6).
    pub aggregate: Option<(u8, u8)>,
    /// Also write policies for kube-* namespaces.
    pub system_namespaces: bool,
}

/// One policy and, for each of its rules (ingress first, then egress), the flows it covers.
#[derive(Clone, Debug)]
pub struct Generated {
    pub policy: NetworkPolicy,
    pub header: Vec<String>,
    pub rule_flows: Vec<Vec<String>>,
}

/// The policies of one file: `<namespace>/<stem>.yaml`.
#[derive(Clone, Debug)]
pub struct File {
    pub namespace: String,
    pub stem: String,
    pub policies: Vec<Generated>,
}

#[derive(Debug, Default)]
pub struct PolicySet {
    pub files: Vec<File>,
    pub notes: Vec<String>,
}

/// Where cluster DNS runs: its namespace and its pods' labels.
struct Dns {
    namespace: String,
    labels: BTreeMap<String, String>,
    pods: BTreeSet<PodId>,
}

fn dns(cluster: &Cluster) -> Dns {
    let pods: BTreeSet<PodId> =
        cluster.pod_ids().filter(|&p| palisade_core::label::is_kube_dns(&cluster.pods[p].labels)).collect();
    let namespace = pods
        .first()
        .map(|&p| cluster.namespaces[cluster.pods[p].namespace].name.clone())
        .unwrap_or("kube-system".into());
    Dns { namespace, labels: BTreeMap::from([("k8s-app".into(), "kube-dns".into())]), pods }
}

fn is_system(ns: &str) -> bool {
    ns.starts_with("kube-") || matches!(ns, "calico-system" | "tigera-operator" | "calico-apiserver")
}

fn labels(m: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector { match_labels: Some(m.clone()), match_expressions: None }
}

fn ports(set: &BTreeSet<(u16, Protocol)>) -> Vec<NetworkPolicyPort> {
    set.iter()
        .map(|(p, proto)| NetworkPolicyPort {
            port: Some(IntOrString::Int(i32::from(*p))),
            protocol: Some(proto.to_string()),
            end_port: None,
        })
        .collect()
}

fn meta(name: String, namespace: &str) -> ObjectMeta {
    let labels = BTreeMap::from([("app.kubernetes.io/managed-by".to_string(), "palisade-generate".to_string())]);
    ObjectMeta { name: Some(name), namespace: Some(namespace.to_string()), labels: Some(labels), ..Default::default() }
}

/// A peer, in the words of a policy in namespace `home`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    Workload { namespace: String, labels: BTreeMap<String, String> },
    Block(IpNet),
}

impl Peer {
    fn written(&self, home: &str) -> NetworkPolicyPeer {
        match self {
            Peer::Workload { namespace, labels: l } if namespace == home => {
                NetworkPolicyPeer { pod_selector: Some(labels(l)), ..Default::default() }
            }
            Peer::Workload { namespace, labels: l } => NetworkPolicyPeer {
                namespace_selector: Some(labels(&BTreeMap::from([(
                    NAMESPACE_NAME_LABEL.to_string(),
                    namespace.clone(),
                )]))),
                pod_selector: Some(labels(l)),
                ..Default::default()
            },
            Peer::Block(net) => NetworkPolicyPeer {
                ip_block: Some(IPBlock { cidr: net.to_string(), except: None }),
                ..Default::default()
            },
        }
    }
}

/// What the generator needs to know about each side of a connection.
struct Ctx<'a> {
    cluster: &'a Cluster,
    workloads: &'a Workloads,
    opts: &'a Options,
    selectors: BTreeMap<usize, BTreeMap<String, String>>,
}

impl Ctx<'_> {
    fn peer(&self, end: End) -> Peer {
        match end {
            End::Pod(p) => {
                let w = self.workloads.of_pod[p.index()];
                match self.selectors.get(&w) {
                    Some(l) => Peer::Workload {
                        namespace: self.cluster.namespaces[self.workloads.list[w].namespace].name.clone(),
                        labels: l.clone(),
                    },
                    None => {
                        Peer::Block(host_net(self.cluster.primary_ip(p).unwrap_or(IpAddr::from([0, 0, 0, 0])), None))
                    }
                }
            }
            End::Address(ip) => Peer::Block(host_net(ip, self.opts.aggregate)),
        }
    }
}

fn host_net(ip: IpAddr, aggregate: Option<(u8, u8)>) -> IpNet {
    let len = match (ip, aggregate) {
        (IpAddr::V4(_), Some((v4, _))) => v4,
        (IpAddr::V6(_), Some((_, v6))) => v6,
        (IpAddr::V4(_), None) => 32,
        (IpAddr::V6(_), None) => 128,
    };
    IpNet::new(ip, len).expect("prefix length checked by the caller").trunc()
}

/// The observed flows behind a rule, as written for comments.
type Flows = Vec<String>;
type Ports = BTreeSet<(u16, Protocol)>;

/// Rules of one policy side: peer -> (ports, flows).
type Side = BTreeMap<Peer, (Ports, Flows)>;

pub fn generate(cluster: &Cluster, conns: &[Connection], opts: &Options) -> PolicySet {
    let workloads = Workloads::new(cluster);
    let mut set = PolicySet::default();
    let mut selectors = BTreeMap::new();
    let involved: BTreeSet<usize> = conns
        .iter()
        .flat_map(|c| [c.src, c.dst])
        .filter_map(|e| match e {
            End::Pod(p) => Some(workloads.of_pod[p.index()]),
            End::Address(_) => None,
        })
        .collect();
    for &w in &involved {
        let s = select(cluster, &workloads, w);
        let key = workloads.key(cluster, w);
        if s.labels.is_empty() {
            set.notes.push(format!("{key} has no labels to select it by: its peers name its address instead, and it gets no policy of its own"));
            continue;
        }
        if !s.exact {
            set.notes.push(format!(
                "{key}: no labels tell it from other pods of its namespace; its policies select those too"
            ));
        }
        selectors.insert(w, s.labels);
    }
    let cx = Ctx { cluster, workloads: &workloads, opts, selectors };
    let dns = dns(cluster);
    let is_dns = |c: &Connection| c.port == 53 && matches!(c.dst, End::Pod(p) if dns.pods.contains(&p));
    let (mut ingress, mut egress): (BTreeMap<usize, Side>, BTreeMap<usize, Side>) = Default::default();
    let mut dns_flows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in conns {
        if let End::Pod(p) = c.src {
            let w = workloads.of_pod[p.index()];
            if is_dns(c) {
                dns_flows.entry(ns_of(cluster, &workloads, w)).or_default().extend(c.seen.iter().cloned());
            } else if cx.selectors.contains_key(&w) {
                let e = egress.entry(w).or_default().entry(cx.peer(c.dst)).or_default();
                e.0.insert((c.port, c.protocol));
                e.1.extend(c.seen.iter().cloned());
            }
        }
        if let End::Pod(p) = c.dst {
            let w = workloads.of_pod[p.index()];
            if cx.selectors.contains_key(&w) {
                let e = ingress.entry(w).or_default().entry(cx.peer(c.src)).or_default();
                e.0.insert((c.port, c.protocol));
                e.1.extend(c.seen.iter().cloned());
            }
        }
    }
    let mut namespaces: BTreeSet<String> = involved.iter().map(|&w| ns_of(cluster, &workloads, w)).collect();
    namespaces.retain(|ns| {
        let keep = opts.system_namespaces || !is_system(ns);
        if !keep {
            set.notes
                .push(format!("namespace {ns} is a system namespace: left without policies (--system includes it)"));
        }
        keep
    });
    for ns in &namespaces {
        let flows = dns_flows.remove(ns).unwrap_or_default();
        set.files.push(File {
            namespace: ns.clone(),
            stem: "default-deny".into(),
            policies: vec![default_deny(ns, &dns, flows)],
        });
    }
    for &w in cx.selectors.keys() {
        let ns = ns_of(cluster, &workloads, w);
        if !namespaces.contains(&ns) {
            continue;
        }
        let name = workloads.list[w].name.rsplit('/').next().unwrap_or_default().to_string();
        let mut policies = Vec::new();
        if let Some(side) = ingress.remove(&w) {
            policies.push(workload_policy(&cx, w, &name, &ns, side, true));
        }
        if let Some(side) = egress.remove(&w) {
            policies.push(workload_policy(&cx, w, &name, &ns, side, false));
        }
        if !policies.is_empty() {
            set.files.push(File { namespace: ns, stem: workloads.list[w].name.replace('/', "-"), policies });
        }
    }
    set
}

fn ns_of(cluster: &Cluster, workloads: &Workloads, w: usize) -> String {
    cluster.namespaces[workloads.list[w].namespace].name.clone()
}

fn default_deny(ns: &str, dns: &Dns, flows: Vec<String>) -> Generated {
    let dns_peer = NetworkPolicyPeer {
        namespace_selector: Some(labels(&BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), dns.namespace.clone())]))),
        pod_selector: Some(labels(&dns.labels)),
        ..Default::default()
    };
    let spec = NetworkPolicySpec {
        pod_selector: Some(LabelSelector::default()),
        policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
        ingress: None,
        egress: Some(vec![NetworkPolicyEgressRule {
            to: Some(vec![dns_peer]),
            ports: Some(ports(&BTreeSet::from([(53, Protocol::UDP), (53, Protocol::TCP)]))),
        }]),
    };
    let mut note =
        vec!["DNS to kube-dns only (namespace AND pod selector, so no other pod can pose as DNS)".to_string()];
    note.extend(summarize(&flows));
    Generated {
        policy: NetworkPolicy { metadata: meta("default-deny".into(), ns), spec: Some(spec) },
        header: vec![format!(
            "Every pod of {ns} is isolated both ways; the policies next to this one allow what was observed."
        )],
        rule_flows: vec![note],
    }
}

fn summarize(flows: &[String]) -> Vec<String> {
    let mut v: Vec<String> = flows.to_vec();
    v.sort();
    v.dedup();
    if v.is_empty() {
        return vec!["no DNS flow was observed; allowed anyway, since every pod resolves names".into()];
    }
    let mut out = vec![format!("observed: {} flow(s)", v.len())];
    out.extend(v.iter().take(6).map(|f| format!("  {f}")));
    if v.len() > 6 {
        out.push(format!("  and {} more", v.len() - 6));
    }
    out
}

fn workload_policy(cx: &Ctx, w: usize, name: &str, ns: &str, side: Side, ingress: bool) -> Generated {
    // Peers with the same ports share a rule.
    let mut rules: BTreeMap<Ports, (Vec<Peer>, Flows)> = BTreeMap::new();
    for (peer, (ports, flows)) in side {
        let r = rules.entry(ports).or_default();
        r.0.push(peer);
        r.1.extend(flows);
    }
    let mut rule_flows = Vec::new();
    let mut ingress_rules = Vec::new();
    let mut egress_rules = Vec::new();
    for (p, (peers, flows)) in rules {
        let written: Vec<NetworkPolicyPeer> = peers.iter().map(|x| x.written(ns)).collect();
        rule_flows.push(summarize(&flows));
        if ingress {
            ingress_rules.push(NetworkPolicyIngressRule { from: Some(written), ports: Some(ports(&p)) });
        } else {
            egress_rules.push(NetworkPolicyEgressRule { to: Some(written), ports: Some(ports(&p)) });
        }
    }
    let key = cx.workloads.key(cx.cluster, w);
    let (suffix, types, header) = if ingress {
        ("ingress", "Ingress", format!("Who may open {key}, as observed."))
    } else {
        ("egress", "Egress", format!("What {key} may open, as observed (DNS is in default-deny)."))
    };
    let spec = NetworkPolicySpec {
        pod_selector: Some(labels(&cx.selectors[&w])),
        policy_types: Some(vec![types.into()]),
        ingress: ingress.then_some(ingress_rules),
        egress: (!ingress).then_some(egress_rules),
    };
    Generated {
        policy: NetworkPolicy { metadata: meta(format!("{name}-{suffix}"), ns), spec: Some(spec) },
        header: vec![header],
        rule_flows,
    }
}
