//! `--versus-nca NCA`: the connectivity map (every pair, every port) by `palisade matrix
//! --all-ports` and by network-config-analyzer (`nca --connectivity`) on the same clusters,
//! written as block-style YAML files both read. Whole processes, timed side by side (runs
//! interleaved, medians of 3, CPU and wall seconds by GNU time), then their answers compared
//! pair by pair: pod pairs, and pods against the IPv4 outside world (NCA's address ranges
//! against Palisade's outside pieces). Prints figures and differences; asserts nothing.
//!
//! NCA never lets an ipBlock hold a pod (it reads ipBlocks as the world outside the cluster);
//! Palisade decides as Calico does, by the pod's address. The generator's ipBlocks hold pod
//! addresses, so each cluster also runs with its pods readdressed outside every ipBlock: there
//! the two questions are the same one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use palisade_bench::{generate, to_list, Shape};
use palisade_core::port::Protocol;
use palisade_review::map::JsonMap;
use palisade_review::outside::{pieces, Piece};

use crate::process::{median, palisade_binary, timed};

/// The clusters of issue 19's comparison: (pods, policies, namespaces).
const SHAPES: [(usize, usize, usize); 2] = [(200, 50, 10), (400, 100, 20)];
const ROUNDS: usize = 3;
/// Ports each single-port rule names in the "many ports" variant: issue 19's clusters named
/// 84 and 159 distinct ports; the generator's name four (53, 8080, 9090, 8000-8100).
const SPREAD: u16 = 8;

/// How a generated cluster is changed before both tools read it.
#[derive(Clone, Copy)]
struct Variant {
    /// Pods get addresses in 10.244.0.0/16, outside every ipBlock of the generator (data only:
    /// nothing is sent to them).
    readdress: bool,
    /// Rules' ports are spread: see [`spread_ports`].
    spread: bool,
    /// Egress rules become ingress rules: see [`open_egress`].
    open: bool,
    name: &'static str,
}

const VARIANTS: [Variant; 5] = [
    Variant { readdress: false, spread: false, open: false, name: "as generated" },
    Variant { readdress: true, spread: false, open: false, name: "pods readdressed outside every ipBlock" },
    Variant {
        readdress: true,
        spread: true,
        open: false,
        name: "readdressed, each rule's port spread to 8 of its own",
    },
    Variant { readdress: true, spread: false, open: true, name: "readdressed, egress open (pods connect)" },
    Variant { readdress: true, spread: true, open: true, name: "readdressed, egress open, ports spread" },
];

/// Port ranges per protocol, each protocol's ranges merged and sorted.
type Ports = BTreeMap<Protocol, Vec<(u16, u16)>>;

pub fn versus(nca: &Path, seed: u64) {
    let palisade = palisade_binary();
    let scratch = std::env::temp_dir().join(format!("palisade-nca-{}", std::process::id()));
    for (v, ((pods, policies, namespaces), variant)) in
        SHAPES.into_iter().flat_map(|s| VARIANTS.map(|v| (s, v))).enumerate()
    {
        let shape = Shape { pods, policies, namespaces, pods_per_app: 10, seed };
        let dir = scratch.join(format!("c{pods}-{v}"));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        let (yaml, ports) = write_cluster(&shape, &dir, variant);
        let (kib, name) = (yaml / 1024, variant.name);
        println!(
            "-- {pods} pods, {policies} policies, {namespaces} namespaces, {name} ({kib} KiB of block YAML, {ports} distinct port entries) --"
        );
        let pal_args: Vec<String> = ["matrix", "--all-ports", "--output", "json", "-q"]
            .map(String::from)
            .into_iter()
            .chain([arg(&dir)])
            .collect();
        let nca_args: Vec<String> =
            ["--connectivity", "-r", &arg(&dir), "-o", "txt_no_fw_rules"].map(String::from).into();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut pal_out, mut nca_out) = (String::new(), String::new());
        for _ in 0..ROUNDS {
            let (r, out) = timed(&palisade, &pal_args, &scratch);
            ours.push(r);
            pal_out = out;
            let (r, out) = timed(nca, &nca_args, &scratch);
            theirs.push(r);
            nca_out = out;
        }
        let (p, n) = (median(&ours), median(&theirs));
        println!("palisade matrix --all-ports  {:>8.3} s CPU {:>8.3} s wall {:>7.1} MiB", p.cpu, p.wall, p.peak_mib);
        println!("nca --connectivity           {:>8.3} s CPU {:>8.3} s wall {:>7.1} MiB", n.cpu, n.wall, n.peak_mib);
        // GNU time counts CPU in 10 ms ticks: a run under one tick has no CPU ratio.
        let cpu = if p.cpu > 0.0 { format!("{:>8.0}x", n.cpu / p.cpu) } else { "   (<10 ms)".into() };
        println!("ratio                        {cpu} CPU {:>8.0}x wall", n.wall / p.wall);
        let load = palisade_load::load_paths(std::slice::from_ref(&dir), &Default::default());
        let cluster = load.ok().and_then(|l| l.cluster).expect("the written cluster loads");
        let _ = std::fs::remove_dir_all(&dir);
        compare(&pal_out, &nca_out, &pieces(&cluster));
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

fn arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The cluster as one multi-document block-style YAML file; returns its size in bytes and the
/// number of distinct port entries its policies name. With `readdress`, pods get addresses in
/// 10.244.0.0/16, which no ipBlock of the generator holds (an IPv6 address would also leave
/// them out, but review counts no connection from an IPv6-only pod to IPv4 addresses); with `spread`, see [`spread_ports`].
fn write_cluster(shape: &Shape, dir: &Path, variant: Variant) -> (usize, usize) {
    let list = to_list(&generate(shape));
    let mut items = list["items"].as_array().expect("a List has items").clone();
    if variant.readdress {
        let pods = items.iter_mut().filter(|i| i["kind"] == "Pod");
        pods.enumerate()
            .for_each(|(n, pod)| pod["status"]["podIP"] = format!("10.244.{}.{}", (n + 1) >> 8, (n + 1) & 0xff).into());
    }
    if variant.open {
        open_egress(&mut items);
    }
    if variant.spread {
        spread_ports(&mut items);
    }
    let text = palisade_load::yaml::emit(&items);
    std::fs::write(dir.join("cluster.yaml"), &text).expect("write the cluster");
    (text.len(), distinct_ports(&mut items))
}

/// Every policy's egress rules become ingress rules of the same peers and ports (`to` read as
/// `from`) and every policy governs ingress only. As generated, default deny covers egress and
/// the egress rules admit only DNS and ipBlocks, so no pod reaches another: both tools' maps
/// hold no pod pair. Opened, pods connect on the ingress rules' ports, as in most clusters.
fn open_egress(items: &mut [serde_json::Value]) {
    let policies = items.iter_mut().filter(|i| i["kind"] == "NetworkPolicy");
    for spec in policies.filter_map(|p| p.get_mut("spec").and_then(|s| s.as_object_mut())) {
        let egress = spec.remove("egress").and_then(|e| e.as_array().cloned()).unwrap_or_default();
        let turned = egress.into_iter().map(|mut rule| {
            if let Some(to) = rule.as_object_mut().and_then(|r| r.remove("to")) {
                rule["from"] = to;
            }
            rule
        });
        let ingress = spec.entry("ingress").or_insert_with(|| serde_json::json!([]));
        ingress.as_array_mut().expect("ingress is a list").extend(turned);
        spec.insert("policyTypes".into(), serde_json::json!(["Ingress"]));
    }
}

/// The ingress and egress rules of every NetworkPolicy among `items`, as JSON values.
fn rules(items: &mut [serde_json::Value]) -> Vec<&mut serde_json::Value> {
    let policies = items.iter_mut().filter(|i| i["kind"] == "NetworkPolicy");
    let specs = policies.filter_map(|p| p.get_mut("spec").and_then(|s| s.as_object_mut()));
    let lists = specs.flat_map(|s| s.iter_mut()).filter(|(k, _)| *k == "ingress" || *k == "egress");
    lists.flat_map(|(_, v)| v.as_array_mut().into_iter().flatten()).collect()
}

/// Each rule's single numeric ports other than 53 (DNS stays) become `SPREAD` ports of the
/// rule's own (10000 + SPREAD * rule + i), so the policies name many distinct ports, as the
/// clusters behind issue 19's NCA figures did.
fn spread_ports(items: &mut [serde_json::Value]) {
    let single = |p: &serde_json::Value| p["port"].is_u64() && p["port"] != 53 && p.get("endPort").is_none();
    let ports = rules(items).into_iter().filter_map(|r| r.get_mut("ports").and_then(|p| p.as_array_mut()));
    for (rule, ports) in ports.filter(|p| p.iter().any(single)).enumerate() {
        let protocol = ports.iter().find(|p| single(p)).map(|p| p["protocol"].clone());
        let protocol = protocol.filter(|p| p.is_string()).unwrap_or_else(|| "TCP".into());
        ports.retain(|p| !single(p));
        let first = 10_000 + SPREAD as usize * rule;
        ports.extend(
            (first..first + SPREAD as usize).map(|port| serde_json::json!({"port": port, "protocol": protocol})),
        );
    }
}

/// Distinct port entries (protocol, port, endPort) the policies name.
fn distinct_ports(items: &mut [serde_json::Value]) -> usize {
    let ports = rules(items).into_iter().filter_map(|r| r["ports"].as_array().cloned());
    ports.flatten().map(|e| e.to_string()).collect::<BTreeSet<_>>().len()
}

/// Merges ranges per protocol.
fn normalize(mut p: Ports) -> Ports {
    for ranges in p.values_mut() {
        ranges.sort();
        let mut merged: Vec<(u16, u16)> = Vec::new();
        for &(a, b) in ranges.iter() {
            match merged.last_mut() {
                Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        *ranges = merged;
    }
    p
}

/// An NCA endpoint: a pod (`ns/name`, its `[Pod]` suffix dropped) or an IPv4 range.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum NcaEnd {
    Pod(String),
    Range(Ipv4Addr, Ipv4Addr),
    /// IPv6 or anything else NCA prints that this comparison does not read.
    Other(String),
}

fn nca_end(s: &str) -> NcaEnd {
    if let Some((name, _kind)) = s.split_once('[') {
        return NcaEnd::Pod(name.to_string());
    }
    if let Some((a, b)) = s.split_once('-') {
        if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
            return NcaEnd::Range(a, b);
        }
    }
    if let Ok(net) = s.parse::<ipnet::Ipv4Net>() {
        return NcaEnd::Range(net.network(), net.broadcast());
    }
    NcaEnd::Other(s.to_string())
}

/// `All connections`, or `{protocols:TCP,UDP,dst_ports:53,8000-8100}` (no ports: all of them).
fn nca_ports(s: &str) -> Option<Ports> {
    let all = || -> Ports { [Protocol::TCP, Protocol::UDP, Protocol::SCTP].map(|p| (p, vec![(1, 65535)])).into() };
    if s.trim() == "All connections" {
        return Some(all());
    }
    let body = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    let (mut protocols, mut ports, mut key) = (Vec::new(), Vec::new(), "");
    for token in body.split(',') {
        let value = match token.split_once(':') {
            Some((k, v)) => {
                key = k;
                v
            }
            None => token,
        };
        match key {
            "protocols" => protocols.push(Protocol::from_api(value.trim())?),
            "dst_ports" => ports.push(match value.split_once('-') {
                Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                None => (value.parse().ok()?, value.parse().ok()?),
            }),
            _ => return None,
        }
    }
    if ports.is_empty() {
        ports.push((1, 65535));
    }
    Some(protocols.into_iter().map(|p| (p, ports.clone())).collect())
}

/// NCA's `txt_no_fw_rules` lines: `src => dst : connection`, one line per protocol.
fn parse_nca(text: &str) -> (BTreeMap<(NcaEnd, NcaEnd), Ports>, usize) {
    let mut out: BTreeMap<(NcaEnd, NcaEnd), Ports> = BTreeMap::new();
    let mut unread = 0;
    for line in text.lines().filter(|l| l.contains(" => ")) {
        let parsed = line.split_once(" => ").and_then(|(s, rest)| {
            let (d, conn) = rest.split_once(" : ")?;
            Some((nca_end(s.trim()), nca_end(d.trim()), nca_ports(conn)?))
        });
        let Some((s, d, ports)) = parsed else {
            unread += 1;
            continue;
        };
        let entry = out.entry((s, d)).or_default();
        for (p, r) in ports {
            entry.entry(p).or_default().extend(r);
        }
    }
    (out.into_iter().map(|(k, v)| (k, normalize(v))).collect(), unread)
}

fn parse_palisade(text: &str) -> BTreeMap<(String, String), Ports> {
    let map: JsonMap = serde_json::from_str(text).expect("palisade's JSON map");
    let mut out = BTreeMap::new();
    for c in map.connections {
        let mut ports = Ports::new();
        for r in c.ports {
            ports.entry(r.protocol).or_default().push((r.first, r.last));
        }
        out.insert((c.from, c.to), normalize(ports));
    }
    out
}

/// Compares the two maps and prints what agrees and (up to a few of) what does not.
fn compare(palisade: &str, nca: &str, pieces: &[Piece]) {
    let ours = parse_palisade(palisade);
    let (theirs, unread) = parse_nca(nca);
    let is_pod = |n: &str| !n.starts_with("outside ") && !n.starts_with("node ") && !n.starts_with("host endpoint ");
    let mut differences: Vec<String> = Vec::new();
    // Pod pairs, both ways round.
    let our_pods: BTreeMap<(String, String), &Ports> =
        ours.iter().filter(|((s, d), _)| is_pod(s) && is_pod(d)).map(|(k, v)| (k.clone(), v)).collect();
    let their_pods: BTreeMap<(String, String), &Ports> = (theirs.iter())
        .filter_map(|(k, v)| match k {
            (NcaEnd::Pod(s), NcaEnd::Pod(d)) => Some(((s.clone(), d.clone()), v)),
            _ => None,
        })
        .collect();
    let keys: BTreeSet<&(String, String)> = our_pods.keys().chain(their_pods.keys()).collect();
    let mut same = 0;
    for k in &keys {
        match (our_pods.get(*k), their_pods.get(*k)) {
            (Some(a), Some(b)) if a == b => same += 1,
            (a, b) => differences.push(format!("{} => {}: palisade {a:?}, nca {b:?}", k.0, k.1)),
        }
    }
    println!(
        "pod pairs     {same} identical of {} listed by either (palisade {}, nca {})",
        keys.len(),
        our_pods.len(),
        their_pods.len()
    );
    let pod_differences = differences.len();
    let outside = compare_outside(&ours, &theirs, pieces, &mut differences);
    println!(
        "pod-outside   {} identical of {} (pod, IPv4 address interval) pairs, each direction",
        outside.0, outside.1
    );
    let others = theirs.keys().filter(|(s, d)| matches!(s, NcaEnd::Other(_)) || matches!(d, NcaEnd::Other(_))).count();
    println!("not compared  {unread} NCA lines unread, {others} NCA pairs with an endpoint neither pod nor IPv4 range");
    println!(
        "differences   {} ({} pod pairs, {} pod-outside)",
        differences.len(),
        pod_differences,
        differences.len() - pod_differences
    );
    let shown = differences.iter().take(4).chain(differences.iter().skip(pod_differences).take(4));
    shown.for_each(|d| println!("  {d}"));
}

/// An NCA address range (first and last address as numbers) with the ports it may use.
type Span<'a> = (u64, u64, &'a Ports);

/// Pods against the IPv4 world, cut at every boundary of an NCA range or a Palisade piece (and
/// its holes), so each cut lies in one NCA range (or none) and one piece: per pod and cut, both
/// directions, NCA's ports for the range against Palisade's for the piece. (identical, compared)
fn compare_outside(
    ours: &BTreeMap<(String, String), Ports>,
    theirs: &BTreeMap<(NcaEnd, NcaEnd), Ports>,
    pieces: &[Piece],
    differences: &mut Vec<String>,
) -> (usize, usize) {
    let v4 = |n: &ipnet::IpNet| match n {
        ipnet::IpNet::V4(n) => Some((u64::from(u32::from(n.network())), u64::from(u32::from(n.broadcast())))),
        ipnet::IpNet::V6(_) => None,
    };
    let mut cuts: BTreeSet<u64> = [0, 1 << 32].into();
    for p in pieces {
        for (a, b) in std::iter::once(&p.cidr).chain(&p.holes).filter_map(v4) {
            cuts.extend([a, b + 1]);
        }
    }
    let ranges: BTreeSet<(u64, u64)> = (theirs.keys())
        .flat_map(|(s, d)| [s, d])
        .filter_map(|e| match e {
            NcaEnd::Range(a, b) => Some((u64::from(u32::from(*a)), u64::from(u32::from(*b)))),
            _ => None,
        })
        .collect();
    ranges.iter().for_each(|&(a, b)| cuts.extend([a, b + 1]));
    let pods: BTreeSet<&str> = (ours.keys().flat_map(|(s, d)| [s.as_str(), d.as_str()]))
        .chain(theirs.keys().flat_map(|(s, d)| [s, d]).filter_map(|e| match e {
            NcaEnd::Pod(p) => Some(p.as_str()),
            _ => None,
        }))
        .filter(|n| !n.contains(' '))
        .collect();
    // Per (pod, outbound): NCA's ranges with their ports.
    let mut by_pod: BTreeMap<(&str, bool), Vec<Span>> = BTreeMap::new();
    for ((s, d), ports) in theirs {
        let (pod, outbound, a, b) = match (s, d) {
            (NcaEnd::Pod(p), NcaEnd::Range(a, b)) => (p, true, a, b),
            (NcaEnd::Range(a, b), NcaEnd::Pod(p)) => (p, false, a, b),
            _ => continue,
        };
        by_pod.entry((pod.as_str(), outbound)).or_default().push((
            u64::from(u32::from(*a)),
            u64::from(u32::from(*b)),
            ports,
        ));
    }
    let none = Ports::new();
    let (mut same, mut compared) = (0, 0);
    let cuts: Vec<u64> = cuts.into_iter().collect();
    for w in cuts.windows(2) {
        let first = Ipv4Addr::from(w[0] as u32);
        let Some(piece) = pieces.iter().find(|p| p.contains(first.into())) else {
            continue; // an address a pod holds: the pod is the endpoint there
        };
        let piece = piece.to_string();
        for pod in &pods {
            for outbound in [true, false] {
                let key = match outbound {
                    true => (pod.to_string(), piece.clone()),
                    false => (piece.clone(), pod.to_string()),
                };
                let ours = ours.get(&key).unwrap_or(&none);
                let mut theirs = Ports::new();
                let holding =
                    by_pod.get(&(*pod, outbound)).into_iter().flatten().filter(|r| r.0 <= w[0] && w[0] <= r.1);
                for (p, r) in holding.flat_map(|r| r.2.iter()) {
                    theirs.entry(*p).or_default().extend(r);
                }
                let theirs = normalize(theirs);
                compared += 1;
                if *ours == theirs {
                    same += 1;
                } else {
                    differences.push(format!("{} => {} (at {first}): palisade {ours:?}, nca {theirs:?}", key.0, key.1));
                }
            }
        }
    }
    (same, compared)
}
