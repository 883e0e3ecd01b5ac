//! A lab that stays up while the policies change: the pods and nodes of one cluster are built
//! once, each new policy set is enforced in one transaction (the table replaced whole), and
//! chosen probes (`from` pod, `to` address, port, protocol) run against it. This is how a
//! sequence of policy changes over the same pods, such as the network-policy-api conformance
//! suite's steps, is proven in the kernel without rebuilding namespaces for every step.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use palisade_core::cluster::Cluster;
use palisade_core::port::Protocol;

use crate::{place, plan, start_servers, traffic, LabEnd, LabError, Topology};

/// One probe: from a lab pod (`namespace/name`) to an address (a pod's, a node's, or a
/// host-network pod's), on a destination port and protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub from: String,
    pub to: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

/// What a probe showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Answered or refused: the packet got through.
    Reached,
    /// Silent twice.
    Dropped,
    /// Not run, and why (SCTP on a kernel without it).
    Skipped(&'static str),
}

/// The lab's pods as built: key, addresses, host network. A policy set may be enforced only
/// on a cluster with exactly these.
type Layout = Vec<(String, Vec<IpAddr>, bool)>;

/// The first UDP source port probes use; each UDP probe takes the next (see
/// [`traffic::probe_udp_from_port`]), wrapping below 61000.
const FIRST_UDP_PORT: u16 = 20000;

/// A built lab whose policies can be replaced.
pub struct StandingLab {
    topo: Topology,
    layout: Layout,
    /// Per end: its key, the namespace it sends from and the source address it binds.
    senders: Vec<(String, String, Option<IpAddr>)>,
    sctp: bool,
    next_udp_port: AtomicU16,
}

fn layout(cluster: &Cluster, ends: &[LabEnd]) -> Layout {
    ends.iter()
        .filter_map(|e| match e {
            LabEnd::Pod(p) => Some((cluster.pod_key(*p), cluster.pods[*p].ips.clone(), cluster.pods[*p].host_network)),
            LabEnd::Node(_) => None,
        })
        .collect()
}

impl StandingLab {
    /// Builds `cluster`'s pods (those with addresses) and nodes as [`crate::run`] does, with
    /// servers on `ports` (TCP and UDP; SCTP is left out) and every pod's declared ports. No
    /// policy is enforced until [`StandingLab::enforce`].
    pub fn build(cluster: &Cluster, ports: &[(u16, Protocol)]) -> Result<StandingLab, LabError> {
        let (ends, _) = plan(cluster);
        let pods: Vec<_> = ends.iter().filter_map(|e| if let LabEnd::Pod(p) = e { Some(*p) } else { None }).collect();
        let shape: Vec<(Vec<IpAddr>, bool)> =
            pods.iter().map(|&p| (cluster.pods[p].ips.clone(), cluster.pods[p].host_network)).collect();
        let node_addresses: Vec<IpAddr> = ends
            .iter()
            .filter_map(|e| if let LabEnd::Node(n) = e { Some(*n) } else { None })
            .flat_map(|n| cluster.nodes[n].addresses.iter().copied().filter(crate::allowed_address))
            .collect();
        let topo = Topology::build_with_node_addresses(&shape, &node_addresses)?;
        let ports: Vec<(u16, Protocol)> = ports.iter().copied().filter(|(_, p)| *p != Protocol::SCTP).collect();
        start_servers(cluster, &ends, &topo, &ports)?;
        let senders = (0..ends.len())
            .map(|k| {
                let (netns, src) = place(cluster, &topo, &ends, k);
                (ends[k].key(cluster), netns, src)
            })
            .collect();
        Ok(StandingLab {
            layout: layout(cluster, &ends),
            topo,
            senders,
            sctp: traffic::sctp_available(),
            next_udp_port: AtomicU16::new(FIRST_UDP_PORT),
        })
    }

    /// The node's network namespace: where the table goes (and an agent under test runs).
    pub fn node(&self) -> &str {
        &self.topo.node
    }

    /// Compiles `cluster`'s policies and replaces the node's table with them in one
    /// transaction. Errors when `cluster`'s pods are not the lab's (keys, addresses, host
    /// network), or when the kernel refuses the table.
    pub fn enforce(&self, cluster: &Cluster) -> Result<palisade_nft::Stats, LabError> {
        let (ends, _) = plan(cluster);
        if layout(cluster, &ends) != self.layout {
            return Err(LabError::Refused("the cluster's pods are not the ones this lab was built for".into()));
        }
        let ruleset = palisade_nft::compile(cluster, &palisade_nft::Options::default());
        palisade_nft::kernel::Kernel::open(Some(&self.topo.node))
            .and_then(|k| k.apply(&palisade_nft::script::full_commands(&ruleset)))
            .map_err(|e| LabError::Refused(e.to_string()))?;
        Ok(ruleset.stats())
    }

    /// Runs `probes` at once (a silent probe is tried once more after `timeout`); one
    /// [`Seen`] per probe, in order. Errors on a `from` that is not a lab pod or a failed
    /// socket call.
    pub fn probe(&self, probes: &[Probe], timeout: Duration) -> Result<Vec<Seen>, LabError> {
        let senders: Vec<(&str, Option<IpAddr>)> = probes
            .iter()
            .map(|p| {
                self.senders
                    .iter()
                    .find(|(key, _, _)| *key == p.from)
                    .map(|(_, netns, src)| (netns.as_str(), *src))
                    .ok_or_else(|| LabError::Refused(format!("{} is not a pod of this lab", p.from)))
            })
            .collect::<Result<_, _>>()?;
        std::thread::scope(|scope| {
            let handles: Vec<_> = probes
                .iter()
                .zip(senders)
                .map(|(p, (netns, src))| scope.spawn(move || self.one(p, netns, src, timeout)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(std::io::Error::other("a probe thread panicked"))))
                .collect::<Result<Vec<Seen>, _>>()
                .map_err(|e| LabError::Refused(format!("probe failed: {e}")))
        })
    }

    fn one(&self, p: &Probe, netns: &str, src: Option<IpAddr>, timeout: Duration) -> std::io::Result<Seen> {
        let attempt = || match p.protocol {
            Protocol::UDP => traffic::probe_udp_from_port(netns, src, self.udp_port(), p.to, p.port, timeout),
            _ => traffic::probe(netns, src, p.to, p.port, p.protocol, timeout),
        };
        match p.protocol {
            Protocol::SCTP if !self.sctp => return Ok(Seen::Skipped("this kernel has no SCTP")),
            Protocol::TCP | Protocol::UDP => {}
            Protocol::SCTP => return Ok(Seen::Skipped("the lab serves TCP and UDP only")),
            _ => return Ok(Seen::Skipped("the lab probes TCP, UDP and SCTP only")),
        }
        Ok(if attempt()? || attempt()? { Seen::Reached } else { Seen::Dropped })
    }

    /// A UDP source port no earlier probe of this lab used (until the range wraps).
    fn udp_port(&self) -> u16 {
        let next = |p: u16| if p >= 60999 { FIRST_UDP_PORT } else { p + 1 };
        self.next_udp_port.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| Some(next(p))).unwrap_or(FIRST_UDP_PORT)
    }
}
