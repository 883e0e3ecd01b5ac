//! Synthetic clusters for benchmarks: namespaces of workloads with realistic policies
//! (default deny, app-to-app ingress, cross-namespace access by team, DNS egress, IP blocks).
//! Deterministic for a given seed.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ContainerPort, Namespace, Pod, PodSpec, PodStatus};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use palisade_ingest::Object;

/// splitmix64: small, fast, deterministic.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

#[derive(Clone, Debug)]
pub struct Shape {
    pub pods: usize,
    pub policies: usize,
    pub namespaces: usize,
    pub pods_per_app: usize,
    pub seed: u64,
}

fn meta(name: String, ns: Option<&str>, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta { name: Some(name), namespace: ns.map(String::from), labels: Some(labels), ..Default::default() }
}

fn labels(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn sel(pairs: &[(&str, String)]) -> LabelSelector {
    LabelSelector { match_labels: Some(labels(pairs)), match_expressions: None }
}

fn port(p: i32, proto: &str) -> NetworkPolicyPort {
    NetworkPolicyPort { port: Some(IntOrString::Int(p)), protocol: Some(proto.into()), end_port: None }
}

fn ns_name(i: usize) -> String {
    format!("ns-{i:03}")
}

/// Builds the objects: namespaces, pods (with IPs from 198.18.0.0/15, so the lab can host any
/// of them) and policies.
pub fn generate(shape: &Shape) -> Vec<Object> {
    let mut rng = Rng::new(shape.seed);
    let mut out = Vec::new();
    let teams = 10;
    for n in 0..shape.namespaces {
        let l = labels(&[
            ("team", format!("t{}", n % teams)),
            ("env", if n % 3 == 0 { "prod".into() } else { "dev".into() }),
        ]);
        out.push(Object::Namespace(Namespace { metadata: meta(ns_name(n), None, l), ..Default::default() }));
    }
    let apps_per_ns = shape.pods.div_ceil(shape.namespaces * shape.pods_per_app).max(1);
    for i in 0..shape.pods {
        let n = i % shape.namespaces;
        let app = (i / shape.namespaces) % apps_per_ns;
        let ip = format!("198.{}.{}.{}", 18 + ((i >> 16) & 1), (i >> 8) & 0xff, i & 0xff);
        let l = labels(&[
            ("app", format!("app-{app}")),
            ("tier", ["web", "api", "db"][app % 3].into()),
            ("pod-template-hash", format!("h{}", rng.below(1000))),
        ]);
        let spec = PodSpec {
            containers: vec![Container {
                name: "main".into(),
                ports: Some(vec![
                    ContainerPort { name: Some("http".into()), container_port: 8080, ..Default::default() },
                    ContainerPort { name: Some("metrics".into()), container_port: 9090, ..Default::default() },
                ]),
                ..Default::default()
            }],
            ..Default::default()
        };
        let status = PodStatus { pod_ip: Some(ip), ..Default::default() };
        let pod =
            Pod { metadata: meta(format!("pod-{i}"), Some(&ns_name(n)), l), spec: Some(spec), status: Some(status) };
        out.push(Object::Pod(pod.into()));
    }
    for p in 0..shape.policies {
        let n = p % shape.namespaces;
        let ns = ns_name(n);
        let spec = policy_spec(p / shape.namespaces, apps_per_ns, teams, &mut rng);
        out.push(Object::NetworkPolicy(NetworkPolicy {
            metadata: meta(format!("pol-{p}"), Some(&ns), BTreeMap::new()),
            spec: Some(spec),
        }));
    }
    out
}

/// The k-th policy of a namespace: 0 is default deny, then a mix of rule shapes.
fn policy_spec(k: usize, apps: usize, teams: usize, rng: &mut Rng) -> NetworkPolicySpec {
    let app = |rng: &mut Rng| format!("app-{}", rng.below(apps));
    if k == 0 {
        return NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ..Default::default()
        };
    }
    let target = sel(&[("app", app(rng))]);
    match k % 5 {
        1 => NetworkPolicySpec {
            pod_selector: Some(target),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(sel(&[("app", app(rng))])),
                    ..Default::default()
                }]),
                ports: Some(vec![port(8080, "TCP")]),
            }]),
            ..Default::default()
        },
        2 => NetworkPolicySpec {
            pod_selector: Some(target),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(sel(&[("team", format!("t{}", rng.below(teams)))])),
                    pod_selector: Some(sel(&[("tier", "web".into())])),
                    ..Default::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::String("http".into())),
                    protocol: None,
                    end_port: None,
                }]),
            }]),
            ..Default::default()
        },
        3 => NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            egress: Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(sel(&[("kubernetes.io/metadata.name", "ns-000".into())])),
                    pod_selector: Some(sel(&[("app", "app-0".into())])),
                    ..Default::default()
                }]),
                ports: Some(vec![port(53, "UDP"), port(53, "TCP")]),
            }]),
            policy_types: Some(vec!["Egress".into()]),
            ..Default::default()
        },
        4 => {
            let net = rng.below(2);
            NetworkPolicySpec {
                pod_selector: Some(target),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: format!("198.{}.0.0/16", 18 + net),
                            except: Some(vec![format!("198.{}.{}.0/24", 18 + net, rng.below(40))]),
                        }),
                        ..Default::default()
                    }]),
                    ports: Some(vec![NetworkPolicyPort {
                        port: Some(IntOrString::Int(8000)),
                        end_port: Some(8100),
                        protocol: None,
                    }]),
                }]),
                policy_types: Some(vec!["Egress".into()]),
                ..Default::default()
            }
        }
        _ => NetworkPolicySpec {
            pod_selector: Some(target),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(sel(&[("env", "prod".into())])),
                    ..Default::default()
                }]),
                ports: Some(vec![port(9090, "TCP")]),
            }]),
            egress: Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector::default()),
                    ..Default::default()
                }]),
                ports: None,
            }]),
            ..Default::default()
        },
    }
}

/// Serializes objects as a JSON `List`, which every Palisade command reads.
/// The same cluster with every NetworkPolicy converted to a Calico NetworkPolicy (same
/// verdicts, by the converter's property test), plus a security tier in front: a
/// GlobalNetworkPolicy that passes intra-team traffic to the default tier and denies the
/// rest from other teams' namespaces on port 9090.
pub fn calicoize(objects: Vec<Object>) -> Vec<Object> {
    use palisade_ingest::calico::resource::{
        EntityRule, GlobalNetworkPolicy, NumOrString, PolicySpec, Rule, Tier, TierSpec,
    };
    let mut out: Vec<Object> = objects
        .into_iter()
        .map(|o| match o {
            Object::NetworkPolicy(np) => Object::CalicoNetworkPolicy(palisade_ingest::calico::convert::to_calico(&np)),
            other => other,
        })
        .collect();
    out.push(Object::CalicoTier(Tier {
        metadata: meta("security".into(), None, BTreeMap::new()),
        spec: Some(TierSpec { order: Some(100.0), default_action: Some("Pass".into()) }),
        ..Default::default()
    }));
    let rule = |action: &str, dst_port: Option<i64>, src_ns: Option<&str>| Rule {
        action: action.into(),
        protocol: dst_port.map(|_| NumOrString::Str("TCP".into())),
        source: src_ns.map(|s| EntityRule { namespace_selector: Some(s.into()), ..Default::default() }),
        destination: dst_port.map(|p| EntityRule { ports: Some(vec![NumOrString::Num(p)]), ..Default::default() }),
        ..Default::default()
    };
    out.push(Object::CalicoGlobalNetworkPolicy(GlobalNetworkPolicy {
        metadata: meta("security.team-walls".into(), None, BTreeMap::new()),
        spec: Some(PolicySpec {
            tier: Some("security".into()),
            order: Some(10.0),
            selector: Some("has(app)".into()),
            types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                rule("Pass", None, Some("team in {\"t0\", \"t1\", \"t2\"}")),
                rule("Deny", Some(9090), None),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }));
    out
}

pub fn to_list_json(objects: &[Object]) -> String {
    to_list(objects).to_string()
}

/// The objects as one `kind: List` value (what `kubectl get -A -o json` prints).
pub fn to_list(objects: &[Object]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = objects
        .iter()
        .map(|o| {
            let (api, v) = match o {
                Object::Namespace(x) => ("v1", serde_json::to_value(x)),
                Object::Pod(x) => ("v1", serde_json::to_value(x)),
                Object::NetworkPolicy(x) => ("networking.k8s.io/v1", serde_json::to_value(x)),
                Object::CalicoNetworkPolicy(x) => ("projectcalico.org/v3", serde_json::to_value(x)),
                Object::CalicoGlobalNetworkPolicy(x) => ("projectcalico.org/v3", serde_json::to_value(x)),
                Object::CalicoTier(x) => ("projectcalico.org/v3", serde_json::to_value(x)),
                Object::CalicoGlobalNetworkSet(x) => ("projectcalico.org/v3", serde_json::to_value(x)),
                Object::CalicoNetworkSet(x) => ("projectcalico.org/v3", serde_json::to_value(x)),
                _ => unreachable!("the generator makes namespaces, pods, policies and network sets"),
            };
            let mut v = v.expect("serializable");
            v["apiVersion"] = api.into();
            v["kind"] = o.kind().trim_start_matches("Calico ").into();
            v
        })
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
}
