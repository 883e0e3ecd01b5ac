//! Flows as the engine sees them: endpoints are pods or addresses, and a connection to a
//! Service address is the connections to its backends (policy sees them after DNAT).

use std::collections::BTreeMap;
use std::net::IpAddr;

use palisade_core::cluster::{Cluster, PodId};
use palisade_core::port::Protocol;
use palisade_core::service::backends;
use palisade_core::verdict::Endpoint;

use crate::flow::Flow;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum End {
    /// A pod that policy applies to.
    Pod(PodId),
    /// Anything else: outside the cluster, a node, a host-network pod.
    Address(IpAddr),
}

/// A connection to allow, and the observed flows behind it.
#[derive(Clone, Debug)]
pub struct Connection {
    pub src: End,
    pub dst: End,
    pub port: u16,
    pub protocol: Protocol,
    /// The flows as given (for comments), e.g. `x/a -> y/svc 80/TCP`.
    pub seen: Vec<String>,
}

/// Resolves flows; returns the connections (deduplicated) and what could not be resolved.
pub fn resolve(cluster: &Cluster, flows: &[Flow]) -> (Vec<Connection>, Vec<String>) {
    let mut out: BTreeMap<(End, End, u16, Protocol), Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for f in flows {
        let shown = format!("{} -> {} {}/{}", f.src, f.dst, f.port, f.protocol);
        let src = match endpoint(cluster, &f.src) {
            Ok(e) => e,
            Err(m) => {
                problems.push(format!("{shown}: {m}"));
                continue;
            }
        };
        let targets = match targets(cluster, &f.dst, f.port, f.protocol) {
            Ok(t) => t,
            Err(m) => {
                problems.push(format!("{shown}: {m}"));
                continue;
            }
        };
        for (dst, port) in targets {
            if src == dst {
                continue; // A pod's connections to itself never meet policy.
            }
            out.entry((src, dst, port, f.protocol)).or_default().push(shown.clone());
        }
    }
    let conns = out
        .into_iter()
        .map(|((src, dst, port, protocol), mut seen)| {
            seen.dedup();
            Connection { src, dst, port, protocol, seen }
        })
        .collect();
    (conns, problems)
}

/// A pod as policy sees it: itself, or for a host-network pod (no policy side) its address.
fn pod_end(cluster: &Cluster, p: PodId) -> End {
    match cluster.is_policy_subject(p) {
        true => End::Pod(p),
        false => End::Address(cluster.primary_ip(p).unwrap_or(IpAddr::from([0, 0, 0, 0]))),
    }
}

/// Why a flow's end names nothing policy can decide.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum Unresolved {
    #[error("{0:?} is neither namespace/pod nor an IP")]
    NotAnEndpoint(String),
    #[error("no pod {0} in the cluster")]
    NoPod(String),
    #[error("no Service {0}")]
    NoService(String),
    #[error(transparent)]
    NoBackends(#[from] palisade_core::service::NoBackends),
    #[error("the Service has no backends")]
    NoBackendsYet,
}

/// `ns/pod` or an address (a pod's address is that pod).
fn endpoint(cluster: &Cluster, name: &str) -> Result<End, Unresolved> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(match cluster.pod_by_ip(ip) {
            Some(p) if cluster.is_policy_subject(p) => End::Pod(p),
            _ => End::Address(ip),
        });
    }
    let (ns, pod) = name.split_once('/').ok_or_else(|| Unresolved::NotAnEndpoint(name.to_string()))?;
    cluster.pod(ns, pod).map(|p| pod_end(cluster, p)).ok_or_else(|| Unresolved::NoPod(name.to_string()))
}

/// The destinations policy sees: a Service address (or `ns/svc/NAME`) becomes its backends
/// at their target ports.
fn targets(cluster: &Cluster, name: &str, port: u16, protocol: Protocol) -> Result<Vec<(End, u16)>, Unresolved> {
    let service = match name.parse::<IpAddr>() {
        Ok(ip) => cluster.service_by_ip(ip),
        Err(_) => match name.split('/').collect::<Vec<_>>().as_slice() {
            [ns, "svc", svc] => {
                Some(cluster.service(ns, svc).ok_or_else(|| Unresolved::NoService(format!("{ns}/{svc}")))?)
            }
            _ => None,
        },
    };
    let Some(id) = service else {
        return Ok(vec![(endpoint(cluster, name)?, port)]);
    };
    let (list, _) = backends(cluster, id, port, protocol)?;
    if list.is_empty() {
        return Err(Unresolved::NoBackendsYet);
    }
    Ok(list
        .into_iter()
        .map(|b| {
            let end = match b.side.endpoint {
                Endpoint::Pod(p) if cluster.is_policy_subject(p) => End::Pod(p),
                _ => End::Address(b.side.ip.unwrap_or(IpAddr::from([0, 0, 0, 0]))),
            };
            (end, b.port)
        })
        .collect())
}
