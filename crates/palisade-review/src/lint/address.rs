//! Checks on address blocks: ipBlocks that hit cluster addresses, which selectors should name,
//! and ipBlocks that name a Service's ClusterIP, which policy never sees after DNAT.

use std::net::IpAddr;

use ipnet::IpNet;
use palisade_core::cluster::{Cluster, PodId};
use palisade_core::policy::Direction;
use palisade_core::service::backends;

use super::{peer_entities, rule_path, some_of, some_of_total, Context, IPBLOCK_PODS, IPBLOCK_SERVICE};

/// A Kubernetes ipBlock peer, read from the rule it lowered to (its nets and notNets), and
/// the words it was written in (`ipBlock 10.0.0.0/8 except 10.1.0.0/16`).
struct IpBlock<'a> {
    cidr: &'a IpNet,
    except: &'a [IpNet],
    written: &'a str,
}

impl IpBlock<'_> {
    fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(&ip) && !self.except.iter().any(|e| e.contains(&ip))
    }
    fn excepted_by(&self, ip: IpAddr) -> Option<&IpNet> {
        self.except.iter().find(|e| e.contains(&ip))
    }
}

pub(super) fn run(cx: &mut Context) {
    let cluster = cx.cluster;
    let sorted = cluster.pods_sorted();
    for pol in cluster.policy_ids() {
        for dir in [Direction::Ingress, Direction::Egress] {
            for (i, j, peer, written) in peer_entities(&cluster.policies[pol], dir) {
                let Some(cidr) = peer.nets.first() else { continue };
                let block = &IpBlock { cidr, except: &peer.not_nets, written };
                {
                    let path = rule_path(dir, i).key(dir.peers_field()).index(j).key("ipBlock");
                    if let Some(msg) = covers_cluster(cluster, &sorted, block) {
                        cx.at_policy(&IPBLOCK_PODS, pol, path.clone(), msg,
                            "pod IPs change on every restart and plugins differ on whether ipBlock matches pod traffic; select pods and namespaces by labels, and except the pod and node networks from blocks meant for the outside");
                    }
                    if dir == Direction::Egress {
                        if let Some(msg) = service_addresses(cluster, block) {
                            cx.at_policy(&IPBLOCK_SERVICE, pol, path, msg,
                                "policy sees a Service connection after kube-proxy's DNAT, at the backend's address and targetPort: allow the backends (by selector, or their addresses)");
                        }
                    }
                }
            }
        }
    }
}

/// Pods and nodes inside a block that is narrower than "everything" (a /0 is read as "the
/// outside" and is left to the Service check).
fn covers_cluster(cluster: &Cluster, sorted: &[PodId], block: &IpBlock) -> Option<String> {
    if block.cidr.prefix_len() == 0 {
        return None;
    }
    let pods: Vec<PodId> = sorted
        .iter()
        .copied()
        .filter(|&p| !cluster.pods[p].host_network && cluster.pods[p].ips.iter().any(|&ip| block.contains(ip)))
        .collect();
    let nodes: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.addresses.iter().any(|&ip| block.contains(ip)))
        .map(|n| n.name.clone())
        .collect();
    if pods.is_empty() && nodes.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    if !pods.is_empty() {
        // Only the pods shown are named: a block can hold thousands.
        let shown: Vec<String> = pods.iter().take(3).map(|&p| cluster.pod_key(p)).collect();
        parts.push(format!("{} pod(s) ({})", pods.len(), some_of_total(&shown, pods.len())));
    }
    if !nodes.is_empty() {
        parts.push(format!("{} node(s) ({})", nodes.len(), some_of(&nodes, 3)));
    }
    Some(format!("{} covers {}", block.written, parts.join(" and ")))
}

/// Services whose ClusterIP is in the block while some backend is not.
fn service_addresses(cluster: &Cluster, block: &IpBlock) -> Option<String> {
    let mut hit = Vec::new();
    for (id, svc) in cluster.service_ids().zip(&cluster.services) {
        let Some(&vip) = svc.cluster_ips.iter().find(|&&ip| block.contains(ip)) else { continue };
        let outside: Vec<(IpAddr, String)> = svc
            .ports
            .iter()
            .filter_map(|sp| backends(cluster, id, sp.port, sp.protocol).ok())
            .flat_map(|(list, _)| list)
            .filter_map(|b| b.side.ip)
            .filter(|&ip| !block.contains(ip))
            .map(|ip| (ip, block.excepted_by(ip).map(|e| format!(" (excepted by {e})")).unwrap_or_default()))
            .collect();
        if let Some((ip, why)) = outside.first() {
            let name = format!("{}/{}", cluster.namespaces[svc.namespace].name, svc.name);
            hit.push(format!("{name} ({vip} -> backend {ip}{why})"));
        }
    }
    if hit.is_empty() {
        return None;
    }
    let what = if block.except.is_empty() { "includes" } else { "leaves" };
    Some(format!(
        "{} {what} the ClusterIP of {} Service(s) but not their backends, so connections to them are not allowed by this peer: {}",
        block.written,
        hit.len(),
        some_of(&hit, 3)
    ))
}
