//! Endpoints as people name them on the command line, including every name the review
//! commands print: `ns/pod`, a workload (`ns/deployment/web`), `node NAME`, `host endpoint
//! NAME`, a piece of the outside world (`outside 0.0.0.0/0 except 10.0.0.0/8`), or an IP;
//! also an endpoint as traces print it (`node n1 (10.0.0.1)`). A name that matches nothing is
//! answered with the names closest to it.

use std::net::IpAddr;

use palisade_core::cluster::{Cluster, PodId};
use palisade_review::outside::{find, Piece};
use palisade_review::workload::Workloads;

use crate::suggestion::{closest, did_you_mean, some_of};

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
/// The error says what is wrong with `s` without repeating it (callers print `--from S: ...`).
pub fn resolve(cluster: &Cluster, pieces: &[Piece], s: &str) -> Result<Resolved, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Resolved::plain(cluster.pod_by_ip(ip).map_or(Named::Address(ip), Named::Pod)));
    }
    let s = without_address(s);
    let as_key = workload_key(s);
    let s = as_key.as_deref().unwrap_or(s);
    if let Some(name) = s.strip_prefix("node ") {
        let names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
        let node = cluster.nodes.iter().find(|n| n.name == name).ok_or_else(|| not_among("node", name, &names))?;
        let ip = node.addresses.first().ok_or_else(|| "the node has no address".to_string())?;
        return Ok(Resolved::plain(Named::Address(*ip)));
    }
    if let Some(name) = s.strip_prefix("host endpoint ") {
        let names: Vec<String> = cluster.host_endpoints.iter().map(|h| h.name.clone()).collect();
        let h = cluster
            .host_endpoints
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| not_among("host endpoint", name, &names))?;
        let ip = h.ips.first().ok_or_else(|| "the host endpoint has no expectedIPs".to_string())?;
        return Ok(Resolved::plain(Named::Address(*ip)));
    }
    if s.starts_with("outside ") {
        let piece = find(cluster, pieces, s).map_err(|e| e.to_string())?;
        let note = format!("{s} stands for {}, an address of {piece}", piece.address);
        return Ok(Resolved { named: Named::Address(piece.address), note: Some(note) });
    }
    if let Some(p) = s.split_once('/').and_then(|(ns, name)| cluster.pod(ns, name)) {
        return Ok(Resolved::plain(Named::Pod(p)));
    }
    let workloads = Workloads::new(cluster);
    let Some(w) = workloads.find(cluster, s) else {
        return Err(unknown(cluster, &workloads, s));
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

/// `shop/deployment/api` for `Deployment shop/api`, as the trace's replicas step names a workload.
fn workload_key(s: &str) -> Option<String> {
    let (kind, key) = s.split_once(' ')?;
    let (ns, name) = key.split_once('/')?;
    kind.starts_with(|c: char| c.is_ascii_uppercase()).then(|| format!("{ns}/{}/{name}", kind.to_ascii_lowercase()))
}

/// `node n1` for `node n1 (10.0.0.1)`: traces print an endpoint with its address.
fn without_address(s: &str) -> &str {
    match s.strip_suffix(')').and_then(|t| t.rsplit_once(" (")) {
        Some((name, ip)) if ip.parse::<IpAddr>().is_ok() => name,
        _ => s,
    }
}

/// Why `s` names nothing, and what could have been meant: a Service of that name (written
/// `ns/svc/NAME`), the pods and workloads closest to it, or the namespaces closest to its own.
fn unknown(cluster: &Cluster, workloads: &Workloads, s: &str) -> String {
    let forms = "write ns/pod, ns/kind/workload, ns/svc/NAME (a destination), node NAME, outside CIDR or an IP";
    let Some((ns, rest)) = s.split_once('/') else {
        return format!("no pod or workload of that name: {forms}");
    };
    let Some(nid) = cluster.namespace(ns) else {
        let near = closest(ns, cluster.namespaces.iter().map(|n| n.name.clone()));
        // Offer the whole name where the rest of it exists in the namespace meant.
        let offers: Vec<String> = near
            .iter()
            .map(|n| {
                let whole = format!("{n}/{rest}");
                if workloads.find(cluster, &whole).is_some() {
                    whole
                } else {
                    format!("namespace {n}")
                }
            })
            .collect();
        if offers.is_empty() {
            let all: Vec<String> = cluster.namespaces.iter().map(|n| n.name.clone()).collect();
            return format!("no namespace {ns} ({forms}; namespaces: {})", some_of(&all, 12));
        }
        return format!("no namespace {ns}{}", did_you_mean(&offers));
    };
    if rest.split('/').count() == 1 && cluster.service(ns, rest).is_some() {
        return format!(
            "no pod or workload of that name, but a Service: write {ns}/svc/{rest} (a Service is a destination only)"
        );
    }
    let mut here: Vec<String> =
        cluster.pods.iter().filter(|p| p.namespace == nid).map(|p| format!("{ns}/{}", p.name)).collect();
    here.extend(
        (0..workloads.list.len()).filter(|&w| workloads.list[w].namespace == nid).map(|w| workloads.key(cluster, w)),
    );
    here.sort();
    here.dedup();
    let near = closest(s, here.iter().cloned());
    if !near.is_empty() {
        return format!("no pod or workload of that name{}", did_you_mean(&near));
    }
    let there = if here.is_empty() { "none".to_string() } else { some_of(&here, 12) };
    format!("no pod or workload of that name (in namespace {ns}: {there})")
}

/// `--to ns/svc/NAME` that names no Service: the Services closest to it.
pub fn unknown_service(cluster: &Cluster, ns: &str, name: &str) -> String {
    let typed = format!("{ns}/svc/{name}");
    let all = cluster.services.iter().map(|s| format!("{}/svc/{}", cluster.namespaces[s.namespace].name, s.name));
    format!("no Service {name} in namespace {ns}{}", did_you_mean(&closest(&typed, all)))
}

/// `no such node (did you mean node n1?)`, or the ones there are when none is close.
fn not_among(what: &str, name: &str, names: &[String]) -> String {
    let near: Vec<String> = closest(name, names.iter().cloned()).into_iter().map(|n| format!("{what} {n}")).collect();
    if near.is_empty() {
        let there = if names.is_empty() { "none".to_string() } else { some_of(names, 12) };
        return format!("no such {what} ({what}s: {there})");
    }
    format!("no such {what}{}", did_you_mean(&near))
}
