//! Peers that name host-network pods: those share their node's network stack and address, and
//! no selector matches them (the engine, like the plugins, sees them as their node: Calico has
//! no workload endpoint for them). A peer whose selector matches only such pods admits nothing.

use palisade_core::cluster::PodId;
use palisade_core::expr::Expr;
use palisade_core::policy::Direction;
use palisade_core::rule::Form;

use super::{is_calico, peer_end, rule_path, some_of, Context, HOST_NETWORK_PEER};

pub(super) fn run(cx: &mut Context) {
    let cluster = cx.cluster;
    let hosted: Vec<PodId> = cluster.pod_ids().filter(|&p| !cluster.is_policy_subject(p)).collect();
    if hosted.is_empty() {
        return;
    }
    let mut found = Vec::new();
    for pol in cluster.policy_ids() {
        for dir in [Direction::Ingress, Direction::Egress] {
            let mut seen = None;
            for rule in cluster.policies[pol].rules(dir).into_iter().flatten() {
                let origin = &rule.origin;
                // A Kubernetes peer lowers to one rule per protocol: look at it once.
                if seen.replace((origin.rule, origin.peer)) == Some((origin.rule, origin.peer)) {
                    continue;
                }
                let e = peer_end(rule, dir);
                let Some(pods) = e.selector.as_ref().and_then(|s| selector_pods(cx, &hosted, s)) else { continue };
                let i = origin.rule;
                match (&origin.written.form, origin.peer) {
                    (Form::Peers { .. }, Some(j)) => {
                        let path = rule_path(dir, i).key(dir.peers_field()).index(j);
                        found.push((pol, path, format!("{}[{j}]", dir.peers_field()), pods));
                    }
                    (Form::Entities { source, destination, .. }, _) => {
                        let (field, written) = match dir {
                            Direction::Ingress => ("source", source),
                            Direction::Egress => ("destination", destination),
                        };
                        let path = rule_path(dir, i).key(field).key("selector");
                        found.push((pol, path, format!("{field} ({written})"), pods));
                    }
                    (Form::Peers { .. }, None) => {}
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

/// The host-network pods a rule's selector matches by their labels, when it matches no other
/// pod, host endpoint or network set.
fn selector_pods(cx: &Context, hosted: &[PodId], sel: &Expr) -> Option<Vec<PodId>> {
    let cluster = cx.cluster;
    let others = cluster.host_endpoints.iter().map(|h| &h.labels).chain(cluster.network_sets.iter().map(|s| &s.labels));
    if others.into_iter().any(|l| sel.matches(l)) {
        return None;
    }
    only_hosted(cx, hosted, |p| sel.matches(&cluster.calico_labels(p)))
}

/// The host-network pods `matches`, if some and no pod that selectors can match. The few
/// host-network pods are tried first, so most peers never look at the others.
fn only_hosted(cx: &Context, hosted: &[PodId], matches: impl Fn(PodId) -> bool) -> Option<Vec<PodId>> {
    let hit: Vec<PodId> = hosted.iter().copied().filter(|&p| matches(p)).collect();
    if hit.is_empty() {
        return None;
    }
    let cluster = cx.cluster;
    let others = cluster.pod_ids().any(|p| cluster.is_policy_subject(p) && matches(p));
    (!others).then_some(hit)
}
