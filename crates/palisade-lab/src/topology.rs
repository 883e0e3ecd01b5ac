//! The lab's network: a namespace for the node, one per pod, a veth from each pod to the node;
//! two labs can be joined as two nodes routed to each other's pods ([`join`]).
//!
//! Every name starts with `pal-`; devices are created directly inside the lab's namespaces, so
//! the host's own namespace, interfaces, routes and firewall are never touched. Addresses must
//! lie in 198.18.0.0/15 or fd00::/8. Dropping the [`Topology`] removes all of it.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ipnet::IpNet;

/// Namespaces alive in this process, for the Ctrl-C handler.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());
static COUNTER: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{0}")]
    Refused(String),
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot run {0}: {1}")]
    Spawn(String, std::io::Error),
}

/// Whether an address may be given to a lab host.
pub fn allowed_address(ip: &IpAddr) -> bool {
    let nets: [IpNet; 2] = ["198.18.0.0/15".parse().expect("net"), "fd00::/8".parse().expect("net")];
    nets.iter().any(|n| n.contains(ip))
}

/// One pod of the lab: its namespace and addresses.
#[derive(Clone, Debug)]
pub struct LabPod {
    pub netns: String,
    pub ips: Vec<IpAddr>,
    /// A host-network pod: it lives in the node's namespace, its addresses on the node.
    pub on_node: bool,
}

pub struct Topology {
    pub node: String,
    pub pods: Vec<LabPod>,
    created: Vec<String>,
}

fn run(args: &[&str], stdin: Option<&str>) -> Result<(), LabError> {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]).stdout(Stdio::null()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|e| LabError::Spawn(args[0].to_string(), e))?;
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())
            .map_err(|e| LabError::Spawn(args[0].into(), e))?;
    }
    let out = child.wait_with_output().map_err(|e| LabError::Spawn(args[0].to_string(), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Command { command: args.join(" "), stderr: String::from_utf8_lossy(&out.stderr).trim().into() })
    }
}

/// `ip -n NS -batch -` with the given lines.
fn batch(netns: Option<&str>, lines: &[String]) -> Result<(), LabError> {
    let text = lines.join("\n") + "\n";
    match netns {
        Some(ns) => run(&["ip", "-n", ns, "-batch", "-"], Some(&text)),
        None => run(&["ip", "-batch", "-"], Some(&text)),
    }
}

/// A network namespace named `pal-...` that exists as long as the value does, and that the
/// Ctrl-C handler ([`crate::install_interrupt_cleanup`]) removes too.
pub struct ScratchNetns(pub String);

impl ScratchNetns {
    pub fn new(name: String) -> Result<ScratchNetns, LabError> {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(name.clone());
        let scratch = ScratchNetns(name);
        run(&["ip", "netns", "add", &scratch.0], None)?;
        Ok(scratch)
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.0], None);
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|x| *x != self.0);
    }
}

/// Removes every lab namespace still alive (used on Ctrl-C).
pub fn remove_all_live() {
    let names = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for n in names {
        let _ = run(&["ip", "netns", "del", &n], None);
    }
}

impl Topology {
    /// Builds the node and one namespace per pod (addresses from `pods`; host-network pods,
    /// marked `true`, get their addresses on the node instead).
    pub fn build(pods: &[(Vec<IpAddr>, bool)]) -> Result<Topology, LabError> {
        Topology::build_with_node_addresses(pods, &[])
    }

    /// [`Topology::build`], the node namespace also holding `node_addresses` (the cluster's
    /// nodes' own, which it sends from when it stands for them).
    pub fn build_with_node_addresses(
        pods: &[(Vec<IpAddr>, bool)],
        node_addresses: &[IpAddr],
    ) -> Result<Topology, LabError> {
        for ip in pods.iter().flat_map(|(ips, _)| ips).chain(node_addresses) {
            if !allowed_address(ip) {
                return Err(LabError::Refused(format!(
                    "address {ip} is outside the lab's ranges: lab pods may only use 198.18.0.0/15 or fd00::/8"
                )));
            }
        }
        // `pal-<pid>-<n>-`: unique per process and topology, so a test can find exactly its own.
        let id = format!("{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let node = format!("pal-{id}-node");
        let lab_pods: Vec<LabPod> = pods
            .iter()
            .enumerate()
            .map(|(k, (ips, on_node))| LabPod {
                netns: if *on_node { node.clone() } else { format!("pal-{id}-{k}") },
                ips: ips.clone(),
                on_node: *on_node,
            })
            .collect();
        let mut topo = Topology { node: node.clone(), pods: lab_pods, created: Vec::new() };
        let node_addresses = node_addresses.to_vec();
        let names: Vec<String> = std::iter::once(node.clone())
            .chain(topo.pods.iter().filter(|p| !p.on_node).map(|p| p.netns.clone()))
            .collect();
        // Record before creating, so that a failure half-way still cleans up.
        topo.created = names.clone();
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).extend(names.iter().cloned());
        batch(None, &names.iter().map(|n| format!("netns add {n}")).collect::<Vec<_>>())?;
        topo.wire(&node_addresses)?;
        Ok(topo)
    }

    fn wire(&self, node_addresses: &[IpAddr]) -> Result<(), LabError> {
        let veths: Vec<String> = self
            .pods
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.on_node)
            .map(|(k, p)| format!("link add v{k} netns {} type veth peer name eth0 netns {}", self.node, p.netns))
            .collect();
        if !veths.is_empty() {
            batch(None, &veths)?;
        }
        let mut node = vec!["link set lo up".to_string()];
        let mut on_node: Vec<IpAddr> = self.pods.iter().filter(|p| p.on_node).flat_map(|p| p.ips.clone()).collect();
        on_node.extend(node_addresses);
        on_node.sort();
        on_node.dedup();
        for ip in on_node {
            node.push(format!("addr add {ip}/{} dev lo", if ip.is_ipv4() { 32 } else { 128 }));
        }
        for (k, p) in self.pods.iter().enumerate().filter(|(_, p)| !p.on_node) {
            node.push(format!("link set v{k} up"));
            node.push(format!("addr add 169.254.1.1/32 dev v{k}"));
            node.push(format!("addr add fe80::1/64 dev v{k} nodad"));
            for ip in &p.ips {
                node.push(format!("route add {ip} dev v{k}"));
            }
        }
        batch(Some(&self.node), &node)?;
        run(
            &[
                "ip",
                "netns",
                "exec",
                &self.node,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
            ],
            None,
        )?;
        for p in self.pods.iter().filter(|p| !p.on_node) {
            let mut lines = vec!["link set lo up".to_string()];
            for ip in &p.ips {
                let (len, extra) = if ip.is_ipv4() { (32, "") } else { (128, " nodad") };
                lines.push(format!("addr add {ip}/{len} dev eth0{extra}"));
            }
            lines.push("link set eth0 up".into());
            lines.push("route add 0.0.0.0/0 via 169.254.1.1 dev eth0 onlink".into());
            lines.push("route add ::/0 via fe80::1 dev eth0".into());
            batch(Some(&p.netns), &lines)?;
        }
        Ok(())
    }
}

/// Joins two labs as two nodes of one cluster: a veth between their node namespaces (`peer`
/// on each side, removed with them), each node's address on it (`a_addr`, `b_addr`, its
/// InternalIP), and on each node a route to every pod of the other through the other's
/// address, as a routed pod network without encapsulation does (Calico's BGP mode, say).
pub fn join(a: &Topology, a_addr: IpAddr, b: &Topology, b_addr: IpAddr) -> Result<(), LabError> {
    for ip in [a_addr, b_addr] {
        if !allowed_address(&ip) || !ip.is_ipv4() {
            return Err(LabError::Refused(format!("node address {ip}: lab nodes are joined on IPv4 in 198.18.0.0/15")));
        }
    }
    batch(None, &[format!("link add peer netns {} type veth peer name peer netns {}", a.node, b.node)])?;
    for (this, mine, other, theirs) in [(a, a_addr, b, b_addr), (b, b_addr, a, a_addr)] {
        let mut lines = vec![format!("addr add {mine}/32 dev peer"), "link set peer up".into()];
        lines.push(format!("route add {theirs}/32 dev peer"));
        for ip in other.pods.iter().filter(|p| !p.on_node).flat_map(|p| &p.ips).filter(|ip| ip.is_ipv4()) {
            lines.push(format!("route add {ip}/32 via {theirs} dev peer"));
        }
        batch(Some(&this.node), &lines)?;
    }
    Ok(())
}

impl Drop for Topology {
    fn drop(&mut self) {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        for n in &self.created {
            let _ = run(&["ip", "netns", "del", n], None);
            live.retain(|x| x != n);
        }
    }
}
