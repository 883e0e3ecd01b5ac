//! Third-party expected connectivity: np-guard's netpol-analyzer test folders that hold only
//! Kubernetes NetworkPolicies (tests/corpus/np-guard, Apache-2.0, see its LICENSE-NOTE.md),
//! decided by Palisade and printed in np-guard's `list` format, must equal its expected output.
//!
//! np-guard reports per workload (the pod's owner reference as written, else the pod), every
//! TCP/UDP/SCTP port range exactly, and the outside as IPv4 ranges split at every CIDR and
//! `except` boundary the policies name.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use common::repo;
use palisade_core::cluster::{Cluster, PodId};
use palisade_core::index::{Index, Matrix};
use palisade_core::policy::Direction;
use palisade_core::port::Protocol;
use palisade_core::rule::Port;
use palisade_core::verdict::{decide, Connection, Side, Verdict};
use palisade_ingest::Object;

const PROTOCOLS: [Protocol; 3] = [Protocol::SCTP, Protocol::TCP, Protocol::UDP];

/// np-guard's name for each pod: `ns/owner[Kind]` from the first owner reference as written,
/// `ns/name[Kind]` for a pod built from a workload template, else `ns/pod[Pod]`.
fn workload_names(cluster: &Cluster, load: &palisade_load::Load) -> Vec<String> {
    let mut owners: BTreeMap<(String, String), String> = BTreeMap::new();
    for input in &load.inputs {
        if let Object::Pod(p) = &input.object {
            let m = &p.metadata;
            if let Some(o) = m.owner_references.iter().flatten().next() {
                let ns = m.namespace.clone().unwrap_or_else(|| "default".into());
                owners.insert((ns.clone(), m.name.clone().unwrap_or_default()), format!("{ns}/{}[{}]", o.name, o.kind));
            }
        }
    }
    cluster
        .pod_ids()
        .map(|p| {
            let pod = &cluster.pods[p];
            let ns = cluster.namespaces[pod.namespace].name.clone();
            match (&pod.workload, owners.get(&(ns.clone(), pod.name.clone()))) {
                (_, Some(owner)) => owner.clone(),
                (Some(w), None) if pod.derived => format!("{ns}/{}[{}]", w.name, w.kind),
                _ => format!("{ns}/{}[Pod]", pod.name),
            }
        })
        .collect()
}

/// Per protocol, the first port of every stretch of ports that policies treat alike.
fn port_segments(cluster: &Cluster) -> BTreeMap<Protocol, Vec<u16>> {
    let mut starts: BTreeMap<Protocol, BTreeSet<u32>> = PROTOCOLS.iter().map(|&p| (p, BTreeSet::from([1]))).collect();
    let mut add = |proto: Protocol, a: u16, b: u16| {
        if let Some(s) = starts.get_mut(&proto) {
            s.insert(u32::from(a));
            s.insert(u32::from(b) + 1);
        }
    };
    for pod in &cluster.pods {
        pod.ports.iter().for_each(|c| add(c.protocol, c.port, c.port));
    }
    for pol in &cluster.policies {
        for rule in pol.ingress.iter().chain(pol.egress.iter()).flatten() {
            let Some(protocol) = rule.protocol.and_then(Protocol::from_number) else { continue };
            for port in rule.source.ports.iter().chain(&rule.destination.ports).filter(|p| **p != Port::ALL) {
                if let Port::Range(a, b) = *port {
                    add(protocol, a, b);
                }
            }
        }
    }
    starts.into_iter().map(|(p, s)| (p, s.into_iter().filter(|&x| x <= 65535).map(|x| x as u16).collect())).collect()
}

/// `All Connections`, or `TCP 80,UDP 53-54` from the allowed segments; `None` when nothing is.
fn conn_text(segments: &BTreeMap<Protocol, Vec<u16>>, allowed: &dyn Fn(Protocol, u16) -> bool) -> Option<String> {
    let mut parts = Vec::new();
    let mut everything = true;
    // np-guard lists protocols by name: SCTP, TCP, UDP.
    for proto in PROTOCOLS {
        let Some(starts) = segments.get(&proto) else { continue };
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for (i, &s) in starts.iter().enumerate() {
            let end = starts.get(i + 1).map_or(65535, |&n| u32::from(n) - 1);
            if !allowed(proto, s) {
                everything = false;
                continue;
            }
            match ranges.last_mut() {
                Some(last) if last.1 + 1 == u32::from(s) => last.1 = end,
                _ => ranges.push((u32::from(s), end)),
            }
        }
        if !ranges.is_empty() {
            let text: Vec<String> =
                ranges.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
            parts.push(format!("{proto} {}", text.join(",")));
        }
    }
    if everything {
        return Some("All Connections".into());
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// The IPv4 space split at every boundary of the CIDRs and exceptions of the ipBlocks that
/// rules of direction `dir` name (np-guard splits each direction by its own blocks).
fn external_ranges(cluster: &Cluster, dir: Direction) -> Vec<(u32, u32)> {
    let mut cuts: BTreeSet<u64> = BTreeSet::from([0, 1 << 32]);
    for pol in &cluster.policies {
        for rule in pol.rules(dir).into_iter().flatten() {
            {
                let peer = if dir == Direction::Egress { &rule.destination } else { &rule.source };
                for net in peer.nets.iter().chain(&peer.not_nets) {
                    if let ipnet::IpNet::V4(n) = net {
                        cuts.insert(u64::from(u32::from(n.network())));
                        cuts.insert(u64::from(u32::from(n.broadcast())) + 1);
                    }
                }
            }
        }
    }
    let cuts: Vec<u64> = cuts.into_iter().collect();
    cuts.windows(2).map(|w| (w[0] as u32, (w[1] - 1) as u32)).collect()
}

/// Folders the API server would reject, and so does Palisade (np-guard reads them anyway).
const INVALID: &[(&str, &str)] = &[
    // `containerport: 3535` (lower-case p): containerPort is missing, so it is 0.
    ("netpol_named_port_test", "port 0 is out of range"),
    ("netpol_named_port_test_2", "port 0 is out of range"),
];

/// The connection list, or the first error that keeps the folder from loading.
fn connlist(dir: &Path) -> Result<BTreeSet<String>, String> {
    // np-guard places objects without a namespace in `default`.
    let opts = palisade_ingest::BuildOptions { default_namespace: Some("default".into()), ..Default::default() };
    let load = palisade_load::load_paths(&[dir.to_path_buf()], &opts).unwrap();
    let Some(loaded) = load.cluster.as_ref() else {
        let first = load.problems.iter().find(|p| p.severity == palisade_core::field::Severity::Error);
        return Err(first.map(|p| p.message.clone()).unwrap_or_default());
    };
    // np-guard treats host-network pods as ordinary pods; no data plane does (their traffic
    // is the node's), and neither does Palisade. Compare in np-guard's model.
    let mut cluster = loaded.clone();
    cluster.pods.iter_mut().for_each(|p| p.host_network = false);
    let cluster = &cluster;
    let names = workload_names(cluster, &load);
    // One pod stands for its workload (np-guard assumes a workload's pods alike).
    let mut reps: BTreeMap<&str, PodId> = BTreeMap::new();
    for p in cluster.pods_sorted() {
        reps.entry(names[p.index()].as_str()).or_insert(p);
    }
    let segments = port_segments(cluster);
    let mut index = Index::new(cluster);
    let mut matrices: BTreeMap<(Protocol, u16), Matrix> = BTreeMap::new();
    for (&proto, starts) in &segments {
        for &s in starts {
            matrices.insert((proto, s), index.matrix(s, proto));
        }
    }
    let mut out = BTreeSet::new();
    for (&a, &s) in &reps {
        for (&b, &d) in &reps {
            if a == b {
                continue;
            }
            let allowed = |proto, port| matrices[&(proto, port)].allowed(s, d);
            if let Some(conn) = conn_text(&segments, &allowed) {
                out.insert(format!("{a} => {b} : {conn}"));
            }
        }
    }
    let verdict =
        |src, dst, proto, port| decide(cluster, &Connection::new(src, dst, port, proto)).verdict == Verdict::Allow;
    for dir in [Direction::Egress, Direction::Ingress] {
        for (lo, hi) in external_ranges(cluster, dir) {
            let outside = Side::ip(cluster, IpAddr::V4(Ipv4Addr::from(lo)));
            let ext = format!("{}-{}[External]", Ipv4Addr::from(lo), Ipv4Addr::from(hi));
            for (&name, &p) in &reps {
                let pod = Side::pod(cluster, p);
                let (src, dst) = if dir == Direction::Egress { (pod, outside) } else { (outside, pod) };
                if let Some(conn) = conn_text(&segments, &|proto, port| verdict(src, dst, proto, port)) {
                    out.insert(match dir {
                        Direction::Egress => format!("{name} => {ext} : {conn}"),
                        Direction::Ingress => format!("{ext} => {name} : {conn}"),
                    });
                }
            }
        }
    }
    Ok(out)
}

#[test]
fn npguard_connectivity_lists_match() {
    compare_folders("tests/corpus/np-guard", 18, INVALID, |name| format!("{name}_connlist_output.txt"));
}

/// np-guard's AdminNetworkPolicy/BaselineAdminNetworkPolicy folders (tests/cnp/np-guard,
/// docs/cnp-spec.md §14).
const INVALID_ANP: &[(&str, &str)] = &[
    // A named port with a `networks` peer: the experimental CRD's CEL rule refuses it (np-guard
    // applies the named port to the pod peer only).
    ("anp_test_named_ports_multiple_peers", "namedPort cannot be used with networks"),
];

#[test]
fn npguard_admin_network_policy_lists_match() {
    compare_folders("tests/cnp/np-guard", 6, INVALID_ANP, |name| format!("connlist/{name}_connlist_output.txt"));
}

/// Every folder under `ROOT/tests` against `ROOT/expected/<expected(name)>`.
fn compare_folders(root: &str, count: usize, invalid: &[(&str, &str)], expected: impl Fn(&str) -> String) {
    let root = repo().join(root);
    let mut dirs: Vec<_> = std::fs::read_dir(root.join("tests")).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    assert_eq!(dirs.len(), count, "the folders of {}", root.display());
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let expected: BTreeSet<String> = std::fs::read_to_string(root.join("expected").join(expected(&name)))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        let got = match (connlist(dir), invalid.iter().find(|(n, _)| *n == name)) {
            (Err(e), Some((_, why))) => {
                assert!(e.contains(why), "{name}: refused for {e:?}, expected {why:?}");
                continue;
            }
            (Err(e), None) => {
                failures.push(format!("{name}: does not load: {e}"));
                continue;
            }
            (Ok(_), Some(_)) => {
                failures.push(format!("{name}: loads, but the API server would reject it"));
                continue;
            }
            (Ok(got), None) => got,
        };
        if got != expected {
            let missing: Vec<&String> = expected.difference(&got).take(8).collect();
            let extra: Vec<&String> = got.difference(&expected).take(8).collect();
            failures.push(format!(
                "{name}: {} expected, {} found\n  missing: {missing:#?}\n  extra: {extra:#?}",
                expected.len(),
                got.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} folders differ:\n{}", failures.len(), dirs.len(), failures.join("\n"));
}
