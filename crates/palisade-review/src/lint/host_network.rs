//! Peers that name host-network pods: those share their node's network stack and address, and
//! no selector matches them (the engine, like the plugins, sees them as their node: Calico has
//! no workload endpoint for them). A peer whose selector matches only such pods admits nothing.

use palisade_core::cluster::PodId;
use palisade_core::expr::Expr;
use palisade_core::peer::{NamespaceScope, Peer};
use palisade_core::policy::{Direction, Match};

use super::{is_calico, rule_path, some_of, Context, HOST_NETWORK_PEER};

pub(super) fn run(cx: &mut Context) {
    let cluster = cx.cluster;
    let hosted: Vec<PodId> = (0..cluster.pods.len()).filter(|&p| !cluster.is_policy_subject(p)).collect();
    if hosted.is_empty() {
        return;
    }
    let mut found = Vec::new();
    for pol in 0..cluster.policies.len() {
        for dir in [Direction::Ingress, Direction::Egress] {
            for (i, rule) in cluster.policies[pol].rules(dir).into_iter().flatten().enumerate() {
                match &rule.matches {
                    Match::Kubernetes { peers: Some(peers), .. } => {
                        for (j, peer) in peers.iter().enumerate() {
                            let Some(pods) = kubernetes_peer(cx, &hosted, peer) else { continue };
                            let path = rule_path(dir, i).key(dir.peers_field()).index(j);
                            found.push((pol, path, format!("{}[{j}]", dir.peers_field()), pods));
                        }
                    }
                    Match::Calico(c) => {
                        let (field, e) = match dir {
                            Direction::Ingress => ("source", &c.source),
                            Direction::Egress => ("destination", &c.destination),
                        };
                        let Some(pods) = e.selector.as_ref().and_then(|s| calico_selector(cx, &hosted, s)) else {
                            continue;
                        };
                        let path = rule_path(dir, i).key(field).key("selector");
                        found.push((pol, path, format!("{field} ({})", e.written), pods));
                    }
                    Match::Kubernetes { peers: None, .. } => {}
                }
            }
        }
    }
    for (pol, path, what, pods) in found {
        let names: Vec<String> = pods.iter().map(|&p| cluster.pod_key(p)).collect();
        let message = format!(
            "{what} matches only host-network pods ({}), which selectors never match: it admits nothing",
            some_of(&names, 3)
        );
        let help = if is_calico(cluster, pol) {
            "a host-network pod sends from its node's address: name the nodes with nets (or a host endpoint's labels), or run the pod off the host network"
        } else {
            "a host-network pod sends from its node's address: name the node network with an ipBlock, or run the pod off the host network"
        };
        cx.at_policy(&HOST_NETWORK_PEER, pol, path, message, help);
    }
}

/// The host-network pods a Kubernetes peer's selectors match by labels, when they match no
/// other pod.
fn kubernetes_peer(cx: &Context, hosted: &[PodId], peer: &Peer) -> Option<Vec<PodId>> {
    let cluster = cx.cluster;
    let Peer::Pods { namespaces, pods } = peer else { return None };
    let matches = |p: PodId| {
        let pod = &cluster.pods[p];
        let ns_ok = match namespaces {
            NamespaceScope::Own(n) => pod.namespace == *n,
            NamespaceScope::Matching(sel) => sel.matches(&cluster.namespaces[pod.namespace].labels),
        };
        ns_ok && pods.matches(&pod.labels)
    };
    only_hosted(cx, hosted, matches)
}

/// The host-network pods a Calico selector matches by their labels, when it matches no other
/// pod, host endpoint or network set.
fn calico_selector(cx: &Context, hosted: &[PodId], sel: &Expr) -> Option<Vec<PodId>> {
    let cluster = cx.cluster;
    let others = cluster.host_endpoints.iter().map(|h| &h.labels).chain(cluster.network_sets.iter().map(|s| &s.labels));
    if others.into_iter().any(|l| sel.matches(l)) {
        return None;
    }
    only_hosted(cx, hosted, |p| sel.matches(&cluster.calico_labels[p]))
}

/// The host-network pods `matches`, if some and no pod that selectors can match. The few
/// host-network pods are tried first, so most peers never look at the others.
fn only_hosted(cx: &Context, hosted: &[PodId], matches: impl Fn(PodId) -> bool) -> Option<Vec<PodId>> {
    let hit: Vec<PodId> = hosted.iter().copied().filter(|&p| matches(p)).collect();
    if hit.is_empty() {
        return None;
    }
    let cluster = cx.cluster;
    let others = (0..cluster.pods.len()).any(|p| cluster.is_policy_subject(p) && matches(p));
    (!others).then_some(hit)
}
