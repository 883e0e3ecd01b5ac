//! Services: kube-proxy's DNAT from ClusterIP:port to backend IP:targetPort happens before
//! policy, so policy only ever sees the backends.

use std::net::IpAddr;

use crate::decide::verdict::{decide_backend, BackendEval, Decision, Step, Verdict};
use crate::model::cluster::{Cluster, PodId, ServiceId, TargetPort};
use crate::model::endpoint::{describe, Connection, Side};
use crate::model::port::Protocol;

/// One backend a Service forwards to.
#[derive(Clone, Debug)]
pub struct Backend {
    pub side: Side,
    pub port: u16,
}

/// Why a Service has no backends for a connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoBackends {
    #[error("Service is ExternalName ({0}): it has no backends")]
    ExternalName(String),
    /// `offered`: the ports it serves, as `80/TCP, 53/UDP` (`none` when it has none).
    #[error("the Service has no port {port}/{protocol} (it serves {offered})")]
    NoSuchPort { port: u16, protocol: Protocol, offered: String },
    #[error("the Service has no selector and no EndpointSlice for it was given, so it has no backends")]
    Unselected,
}

/// The backends of `service` for a connection to its `port`/`protocol`, and the target port text.
pub fn backends(
    cluster: &Cluster,
    id: ServiceId,
    port: u16,
    protocol: Protocol,
) -> Result<(Vec<Backend>, String), NoBackends> {
    let svc = &cluster.services[id];
    if let Some(name) = &svc.external_name {
        return Err(NoBackends::ExternalName(name.clone()));
    }
    let Some(sp) = svc.ports.iter().find(|p| p.port == port && p.protocol == protocol) else {
        let offered: Vec<String> = svc.ports.iter().map(|p| format!("{}/{}", p.port, p.protocol)).collect();
        let offered = if offered.is_empty() { "none".into() } else { offered.join(", ") };
        return Err(NoBackends::NoSuchPort { port, protocol, offered });
    };
    let target_text = match &sp.target {
        TargetPort::Number(n) => n.to_string(),
        TargetPort::Name(n) => format!("{n} (named)"),
    };
    if !svc.endpoints.is_empty() {
        let list = svc
            .endpoints
            .iter()
            .filter_map(|e| {
                let (_, n, _) = e.ports.iter().find(|(name, _, proto)| *name == sp.name && *proto == protocol)?;
                Some(Backend { side: Side::ip(cluster, e.ip), port: *n })
            })
            .collect();
        return Ok((list, target_text));
    }
    let Some(sel) = &svc.selector else { return Err(NoBackends::Unselected) };
    // A Service's selector is matchLabels only: every pair must be on the pod.
    let selected = |p: PodId| sel.iter().all(|(k, v)| cluster.pods[p].labels.get(k) == Some(v));
    let list = cluster
        .pods_sorted()
        .into_iter()
        .filter(|&p| cluster.pods[p].namespace == svc.namespace && selected(p))
        .filter_map(|p| {
            let port = match &sp.target {
                TargetPort::Number(n) => *n,
                TargetPort::Name(name) => {
                    cluster.pods[p]
                        .ports
                        .iter()
                        .find(|c| c.name.as_deref() == Some(name) && c.protocol == protocol)?
                        .port
                }
            };
            Some(Backend { side: Side::pod(cluster, p), port })
        })
        .collect();
    Ok((list, target_text))
}

/// Decides a connection to a Service address: DNAT to every backend, then policy for each.
/// Allowed only if every backend is allowed (kube-proxy may pick any of them).
/// `conn` carries the source and the Service port; its `dst` is replaced by each backend.
pub fn decide_service(cluster: &Cluster, conn: &Connection, id: ServiceId, address: Option<IpAddr>) -> Decision {
    let (port, protocol) = (conn.port, conn.protocol);
    let svc = &cluster.services[id];
    let service = format!("{}/{}", cluster.namespaces[svc.namespace].name, svc.name);
    if let Some(name) = &svc.external_name {
        let reason = format!(
            "{service} is an ExternalName Service: DNS answers with {name}, there is no ClusterIP, no DNAT and no backend; \
             the connection goes to whatever {name} resolves to (decide that address: check --to ADDRESS)"
        );
        let step = Step::ExternalName { service, external_name: name.clone(), reason };
        return Decision { verdict: Verdict::Undecided, trace: vec![step] };
    }
    let address = address
        .or_else(|| svc.cluster_ips.first().copied())
        .map(|a| a.to_string())
        .unwrap_or_else(|| "(no ClusterIP)".into());
    let (list, target_port) = match backends(cluster, id, port, protocol) {
        Ok(x) => x,
        Err(reason) => {
            return Decision {
                verdict: Verdict::Deny,
                trace: vec![Step::Unreachable { reason: format!("Service {service}: {reason}") }],
            }
        }
    };
    let mut trace =
        vec![Step::Dnat { service: service.clone(), address, port, protocol, target_port, backends: list.len() }];
    if list.is_empty() {
        trace.push(Step::Unreachable {
            reason: format!("Service {service} has no backends for port {port}/{protocol}"),
        });
        return Decision { verdict: Verdict::Deny, trace };
    }
    let mut all = true;
    for b in &list {
        let d = decide_backend(cluster, &Connection { dst: b.side, port: b.port, ..*conn });
        all &= d.verdict == Verdict::Allow;
        trace.push(Step::Backend(BackendEval {
            ip: b.side.ip.map(|i| i.to_string()),
            port: b.port,
            endpoint: describe(cluster, &b.side),
            verdict: d.verdict,
            trace: d.trace,
        }));
    }
    Decision { verdict: Verdict::from_bool(all), trace }
}
