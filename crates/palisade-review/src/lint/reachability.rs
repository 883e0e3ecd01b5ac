//! Checks on what the policies let through: DNS under egress isolation, allows that the
//! other side's isolation defeats, and namespaces where only some pods are isolated.

use std::collections::{BTreeMap, HashMap};

use palisade_core::cluster::{Cluster, PodId};
use palisade_core::field::FieldPath;
use palisade_core::index::{Admitted, Index};
use palisade_core::peer::Peer;
use palisade_core::policy::{Action, Direction, Match};
use palisade_core::port::Protocol;
use palisade_core::verdict::{decide, selects, Connection, Side, Step};

use super::{some_of, Context, NO_DNS, ONE_SIDED, PARTLY_ISOLATED};
use crate::probe::Probe;

type Sides = (Vec<Admitted>, Vec<Admitted>);

pub(super) fn run(cx: &mut Context) {
    let mut index = Index::new(cx.cluster);
    let dns = index.sides(53, Protocol::UDP);
    no_dns(cx, &dns.0);
    partly_isolated(cx, &dns);
    let probes = cx.conn.probes.clone();
    let sides: Vec<Sides> = probes.iter().map(|p| index.sides(p.port, p.protocol)).collect();
    one_sided(cx, &probes, &sides);
}

/// The policies selecting pod `p` in `dir`, in evaluation order.
fn policies_of(cluster: &Cluster, p: PodId, dir: Direction) -> Vec<usize> {
    let side = Side::pod(cluster, p);
    (0..cluster.policies.len())
        .filter(|&i| cluster.policies[i].rules(dir).is_some() && selects(cluster, &cluster.policies[i], &side))
        .collect()
}

fn no_dns(cx: &mut Context, egress: &[Admitted]) {
    let cluster = cx.cluster;
    let servers: Vec<PodId> = (0..cluster.pods.len())
        .filter(|&p| cluster.pods[p].labels.get("k8s-app").is_some_and(|v| v == "kube-dns"))
        .collect();
    let mut blocked: BTreeMap<usize, Vec<PodId>> = BTreeMap::new();
    for (p, allowed) in egress.iter().enumerate() {
        let Some(allowed) = allowed else { continue };
        let ok = if servers.is_empty() {
            // DNS is not in the input: any egress rule that admits 53/UDP counts.
            policies_of(cluster, p, Direction::Egress).iter().any(|&i| admits_dns_port(cluster, i))
        } else {
            servers.iter().any(|&s| allowed.contains(s))
        };
        if !ok {
            blocked.entry(cx.workloads.of_pod[p]).or_default().push(p);
        }
    }
    for (w, pods) in blocked {
        let Some(&pol) = policies_of(cluster, pods[0], Direction::Egress).first() else { continue };
        let target = if servers.is_empty() { "any address".to_string() } else { "kube-dns".to_string() };
        let message = format!(
            "{} ({} pod(s)) is isolated for egress and may not reach {target} on 53/UDP: name resolution fails",
            cx.workloads.key(cluster, w),
            pods.len()
        );
        cx.at_policy(&NO_DNS, pol, FieldPath::root().key("spec").key("egress"), message,
            "add an egress rule to kube-dns on 53/UDP and 53/TCP: one peer with namespaceSelector kubernetes.io/metadata.name: kube-system AND podSelector k8s-app: kube-dns");
    }
}

fn admits_dns_port(cluster: &Cluster, pol: usize) -> bool {
    let rules = cluster.policies[pol].egress.iter().flatten();
    rules.filter(|r| r.action == Action::Allow).any(|r| match &r.matches {
        Match::Kubernetes { ports: None, .. } => true,
        Match::Kubernetes { ports: Some(ps), .. } => ps.iter().any(|p| p.matches(53, Protocol::UDP, None)),
        Match::Calico(c) => {
            let probe = Connection::new(
                Side::ip(cluster, [0, 0, 0, 0].into()),
                Side::ip(cluster, [0, 0, 0, 0].into()),
                53,
                Protocol::UDP,
            );
            c.packet_matches(&probe).is_ok()
        }
    })
}

fn partly_isolated(cx: &mut Context, (egress, ingress): &Sides) {
    let cluster = cx.cluster;
    for dir in [Direction::Ingress, Direction::Egress] {
        let side = if dir == Direction::Ingress { ingress } else { egress };
        let mut by_ns: BTreeMap<String, (Vec<PodId>, Vec<PodId>)> = BTreeMap::new();
        for p in cluster.pods_sorted().into_iter().filter(|&p| cluster.is_policy_subject(p)) {
            let entry = by_ns.entry(cluster.namespaces[cluster.pods[p].namespace].name.clone()).or_default();
            if side[p].is_some() {
                entry.0.push(p)
            } else {
                entry.1.push(p)
            }
        }
        for (ns, (isolated, open)) in by_ns {
            if isolated.is_empty() || open.is_empty() {
                continue;
            }
            let mut open_workloads: Vec<String> =
                open.iter().map(|&p| cx.workloads.key(cluster, cx.workloads.of_pod[p])).collect();
            open_workloads.dedup();
            let pol = policies_of(cluster, isolated[0], dir)[0];
            let message = format!(
                "in namespace {ns}, {} pod(s) are isolated for {dir} but {} are not: {}",
                isolated.len(),
                open.len(),
                some_of(&open_workloads, 4)
            );
            let location = cx.locate(pol, &FieldPath::root());
            cx.push(&PARTLY_ISOLATED, format!("namespace {ns}"), FieldPath::root(), message,
                format!("add a default-deny {dir} policy for the namespace (podSelector: {{}}) and allow what each workload needs"), location);
        }
    }
}

/// Whether the rule that decided `dir` in this trace names its peer by selector (an explicit
/// intent to talk to that pod), rather than admitting everyone or an address block.
fn explicit(
    cluster: &Cluster,
    keys: &HashMap<String, usize>,
    trace: &[Step],
    dir: Direction,
) -> Option<(usize, usize)> {
    trace.iter().find_map(|s| match s {
        Step::Policies { direction, policies, .. } if *direction == dir => {
            policies.iter().filter(|p| p.reached).find_map(|p| {
                let rule = p.rules.iter().find(|r| r.decisive && r.action == Action::Allow)?;
                let pol = *keys.get(&p.policy)?;
                let r = &cluster.policies[pol].rules(dir)?[rule.index];
                let named = match &r.matches {
                    Match::Kubernetes { peers: Some(ps), .. } => ps.iter().any(|x| matches!(x, Peer::Pods { .. })),
                    Match::Kubernetes { peers: None, .. } => false,
                    Match::Calico(c) => {
                        let e = if dir == Direction::Egress { &c.destination } else { &c.source };
                        e.selector.is_some()
                    }
                };
                named.then_some((pol, rule.index))
            })
        }
        _ => None,
    })
}

/// The probes a one-sided allow covers, one pod pair, and the allowing (policy, rule).
type OneSided = (Vec<Probe>, (PodId, PodId), (usize, usize));

fn one_sided(cx: &mut Context, probes: &[Probe], sides: &[Sides]) {
    let cluster = cx.cluster;
    let keys: HashMap<String, usize> = (0..cluster.policies.len()).map(|i| (cluster.policy_key(i), i)).collect();
    // (direction that allows, src workload, dst workload) -> probes, a pod pair, the allowing rule.
    let mut found: BTreeMap<(Direction, usize, usize), OneSided> = BTreeMap::new();
    // Each workload pair is traced at most once per probe.
    let mut traced: std::collections::HashSet<(Direction, usize, usize, usize)> = Default::default();
    for (n, (probe, (egress, ingress))) in probes.iter().zip(sides).enumerate() {
        for (s, out) in egress.iter().enumerate() {
            for d in (0..cluster.pods.len()).filter(|&d| d != s) {
                let e = out.as_ref().map(|x| x.contains(d));
                let i = ingress[d].as_ref().map(|x| x.contains(s));
                let allowing = match (e, i) {
                    (Some(true), Some(false)) => Direction::Egress,
                    (Some(false), Some(true)) => Direction::Ingress,
                    _ => continue,
                };
                let key = (allowing, cx.workloads.of_pod[s], cx.workloads.of_pod[d]);
                if let Some(entry) = found.get_mut(&key) {
                    if entry.0.last() != Some(probe) {
                        entry.0.push(*probe);
                    }
                    continue;
                }
                if !traced.insert((key.0, key.1, key.2, n)) {
                    continue;
                }
                let conn = Connection::new(Side::pod(cluster, s), Side::pod(cluster, d), probe.port, probe.protocol);
                if let Some(rule) = explicit(cluster, &keys, &decide(cluster, &conn).trace, allowing) {
                    found.insert(key, (vec![*probe], (s, d), rule));
                }
            }
        }
    }
    for ((allowing, _, _), (probes, (s, d), (pol, rule))) in found {
        let ports = crate::probe::describe(&cx.conn.probes, &probes);
        let (src, dst) = (cluster.pod_key(s), cluster.pod_key(d));
        let message = match allowing {
            Direction::Egress => format!("egress rule [{rule}] lets {src} open {dst} on {ports}, but {dst} is isolated for ingress and does not admit it: the connection fails"),
            Direction::Ingress => format!("ingress rule [{rule}] admits {src} to {dst} on {ports}, but {src} is isolated for egress and may not open it: the connection fails"),
        };
        let help = match allowing {
            Direction::Egress => format!("allow it on the other side too: an ingress rule at {dst} from {src}'s pods"),
            Direction::Ingress => format!("allow it on the other side too: an egress rule at {src} to {dst}'s pods (palisade generate --complement-egress)"),
        };
        cx.at_policy(&ONE_SIDED, pol, super::rule_path(allowing, rule), message, help);
    }
}
