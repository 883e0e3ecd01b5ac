//! Endpoints as people name them on the command line, including every name the review
//! commands print: `ns/pod`, a workload (`ns/deployment/web`), `node NAME`, `host endpoint
//! NAME`, a piece of the outside world (`outside 0.0.0.0/0 except 10.0.0.0/8`), or an IP.

use std::net::IpAddr;

use palisade_core::cluster::{Cluster, PodId};
use palisade_review::outside::{find, Piece};
use palisade_review::workload::Workloads;

/// What a name stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Named {
    Pod(PodId),
    Address(IpAddr),
}

/// A resolved name, and what to tell the user when it stands for something narrower (a
/// workload for one of its pods, a piece of the world for one of its addresses).
#[derive(Debug)]
pub struct Resolved {
    pub named: Named,
    pub note: Option<String>,
}

impl Resolved {
    fn plain(named: Named) -> Resolved {
        Resolved { named, note: None }
    }
    /// Prints the note, if any, on stderr.
    pub fn tell(&self, flag: &str) {
        if let Some(n) = &self.note {
            eprintln!("note: {flag} {n}");
        }
    }
}

/// Resolves `s` against the cluster (and its pieces of the outside world, for `outside ...`).
pub fn resolve(cluster: &Cluster, pieces: &[Piece], s: &str) -> Result<Resolved, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Resolved::plain(cluster.pod_by_ip(ip).map_or(Named::Address(ip), Named::Pod)));
    }
    if let Some(name) = s.strip_prefix("node ") {
        let node = cluster.nodes.iter().find(|n| n.name == name).ok_or_else(|| format!("no node {name}"))?;
        let ip = node.addresses.first().ok_or_else(|| format!("node {name} has no address"))?;
        return Ok(Resolved::plain(Named::Address(*ip)));
    }
    if let Some(name) = s.strip_prefix("host endpoint ") {
        let h =
            cluster.host_endpoints.iter().find(|h| h.name == name).ok_or_else(|| format!("no host endpoint {name}"))?;
        let ip = h.ips.first().ok_or_else(|| format!("host endpoint {name} has no expectedIPs"))?;
        return Ok(Resolved::plain(Named::Address(*ip)));
    }
    if s.starts_with("outside ") {
        let piece = find(cluster, pieces, s).map_err(|e| format!("{s}: {e}"))?;
        let note = format!("{s} stands for {}, an address of {piece}", piece.address);
        return Ok(Resolved { named: Named::Address(piece.address), note: Some(note) });
    }
    if let Some(p) = s.split_once('/').and_then(|(ns, name)| cluster.pod(ns, name)) {
        return Ok(Resolved::plain(Named::Pod(p)));
    }
    let workloads = Workloads::new(cluster);
    let Some(w) = workloads.find(cluster, s) else {
        return Err(format!("no pod or workload {s}{}", suggest(cluster, s)));
    };
    let pods = &workloads.list[w].pods;
    let pod = pods[0];
    let note = match pods.len() {
        1 if workloads.key(cluster, w) == cluster.pod_key(pod) => None,
        1 => Some(format!("{s} stands for its pod {}", cluster.pod_key(pod))),
        n => Some(format!(
            "{s} stands for its pod {} (1 of {n}; name a pod to decide for another)",
            cluster.pod_key(pod)
        )),
    };
    Ok(Resolved { named: Named::Pod(pod), note })
}

/// What could have been meant: the namespaces, or the pods of the namespace named.
fn suggest(cluster: &Cluster, s: &str) -> String {
    let ns = s.split('/').next().unwrap_or_default();
    let Some(nid) = cluster.namespace(ns) else {
        let all: Vec<&str> = cluster.namespaces.iter().map(|n| n.name.as_str()).collect();
        return format!(
            " (write ns/pod, ns/kind/workload, node NAME, outside CIDR or an IP; namespaces: {})",
            all.join(", ")
        );
    };
    let pods: Vec<&str> =
        cluster.pods.iter().filter(|p| p.namespace == nid).map(|p| p.name.as_str()).take(12).collect();
    format!(" (pods there: {})", if pods.is_empty() { "none".into() } else { pods.join(", ") })
}
