//! The world outside the pods as endpoints: the address space cut at every CIDR and every
//! `except` any policy or network set names, so that every policy treats each piece alike.
//!
//! Named CIDRs nest or are disjoint, so each one (and the two roots `0.0.0.0/0` and `::/0`,
//! "the rest of the world") makes one piece: the CIDR without the named CIDRs directly inside
//! it. Deciding one address of a piece decides the whole piece, as one port decides a stretch
//! of ports (`probe`). The address chosen belongs to no pod, node, host endpoint or Service,
//! so the engine sees it as outside the cluster.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use palisade_core::cluster::Cluster;
use serde::Serialize;

/// One piece of the outside world: `cidr` without the named CIDRs inside it (`holes`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Piece {
    pub cidr: IpNet,
    /// The largest named CIDRs inside `cidr`: separate pieces, judged on their own.
    pub holes: Vec<IpNet>,
    /// An address in the piece that no pod, node, host endpoint or Service holds.
    pub address: IpAddr,
}

/// Holes named in full; more are counted.
const HOLES_SHOWN: usize = 4;

impl fmt::Display for Piece {
    /// `outside 0.0.0.0/0 except 10.0.0.0/8, 192.168.0.0/16`: the one form every output uses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "outside {}", self.cidr)?;
        if !self.holes.is_empty() {
            let shown: Vec<String> = self.holes.iter().take(HOLES_SHOWN).map(|h| h.to_string()).collect();
            write!(f, " except {}", shown.join(", "))?;
            if self.holes.len() > HOLES_SHOWN {
                write!(f, " and {} more", self.holes.len() - HOLES_SHOWN)?;
            }
        }
        Ok(())
    }
}

impl Piece {
    /// Whether `ip` lies in this piece.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(&ip) && !self.holes.iter().any(|h| h.contains(&ip))
    }
}

/// The pieces for one cluster.
pub fn pieces(cluster: &Cluster) -> Vec<Piece> {
    pieces_of(&[cluster])
}

/// Pieces that serve several clusters alike (to compare them): cut at every CIDR any of them
/// names, each standing at an address none of them holds. Pieces whose every address is held
/// by the cluster (a `/32` naming a pod) are left out: those addresses are endpoints already.
pub fn pieces_of(clusters: &[&Cluster]) -> Vec<Piece> {
    let mut nets: BTreeSet<IpNet> = BTreeSet::from([world(false), world(true)]);
    let mut taken: HashSet<IpAddr> = HashSet::new();
    for c in clusters {
        named(c, &mut nets);
        taken.extend(held(c));
    }
    let mut holes: BTreeMap<IpNet, Vec<IpNet>> = nets.iter().map(|n| (*n, Vec::new())).collect();
    for net in &nets {
        if let Some(parent) = (0..net.prefix_len()).rev().map(|len| supernet(net, len)).find(|p| nets.contains(p)) {
            holes.entry(parent).or_default().push(*net);
        }
    }
    holes
        .into_iter()
        .filter_map(|(cidr, holes)| {
            let address = representative(&cidr, &holes, &taken)?;
            Some(Piece { cidr, holes, address })
        })
        .collect()
}

/// Why a name is no piece of the outside world.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("write a piece of the outside world as diff and reach print it: `outside CIDR` or `outside CIDR except CIDR, CIDR`")]
    Shape,
    #[error("{0:?} is not a CIDR")]
    Cidr(String),
    #[error("every address of {0} belongs to the cluster")]
    Empty(String),
}

/// The piece a printed name stands for (`outside 0.0.0.0/0 except 10.0.0.0/8`): the piece of
/// `pieces` by that name, else the one of the same CIDR (the cut differs when the name came from
/// a diff of two versions), else the CIDR written without the holes written, at an address the
/// cluster holds nothing at.
pub fn find(cluster: &Cluster, pieces: &[Piece], name: &str) -> Result<Piece, NameError> {
    if let Some(p) = pieces.iter().find(|p| p.to_string() == name) {
        return Ok(p.clone());
    }
    let rest = name.trim().strip_prefix("outside ").ok_or(NameError::Shape)?;
    let (cidr, holes) = rest.split_once(" except ").unwrap_or((rest, ""));
    let parse = |s: &str| s.trim().parse::<IpNet>().map(|n| n.trunc()).map_err(|_| NameError::Cidr(s.trim().into()));
    let cidr = parse(cidr)?;
    if let Some(p) = pieces.iter().find(|p| p.cidr == cidr) {
        return Ok(p.clone());
    }
    let listed = holes.split(" and ").next().unwrap_or_default();
    let holes = listed.split(',').filter(|h| !h.trim().is_empty()).map(parse).collect::<Result<Vec<_>, _>>()?;
    let taken: HashSet<IpAddr> = held(cluster).collect();
    let address = representative(&cidr, &holes, &taken).ok_or_else(|| NameError::Empty(name.to_string()))?;
    Ok(Piece { cidr, holes, address })
}

/// `0.0.0.0/0` or `::/0`.
fn world(v6: bool) -> IpNet {
    let net = if v6 { "::/0" } else { "0.0.0.0/0" };
    net.parse().expect("a valid CIDR")
}

fn supernet(net: &IpNet, len: u8) -> IpNet {
    IpNet::new(net.addr(), len).expect("a shorter prefix is valid").trunc()
}

/// Every CIDR the cluster's policies and network sets name (ipBlock `cidr` and `except`,
/// Calico `nets` and `notNets`, NetworkSet and GlobalNetworkSet `nets`).
fn named(cluster: &Cluster, out: &mut BTreeSet<IpNet>) {
    let mut add = |n: &IpNet| {
        out.insert(n.trunc());
    };
    for pol in &cluster.policies {
        for rule in pol.ingress.iter().chain(pol.egress.iter()).flatten() {
            for e in [&rule.source, &rule.destination] {
                e.nets.iter().chain(&e.not_nets).for_each(&mut add);
            }
        }
    }
    cluster.network_sets.iter().flat_map(|s| &s.nets).for_each(add);
}

/// Addresses that belong to something in the cluster.
fn held(cluster: &Cluster) -> impl Iterator<Item = IpAddr> + '_ {
    let pods = cluster.pods.iter().flat_map(|p| p.ips.iter());
    let nodes = cluster.nodes.iter().flat_map(|n| n.addresses.iter());
    let services = cluster.services.iter().flat_map(|s| s.cluster_ips.iter());
    let hosts = cluster.host_endpoints.iter().flat_map(|h| h.ips.iter());
    pods.chain(nodes).chain(services).chain(hosts).copied()
}

/// An address as a number, and back, so that IPv4 and IPv6 ranges are walked alike.
fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

fn address(v6: bool, n: u128) -> IpAddr {
    if v6 {
        Ipv6Addr::from(n).into()
    } else {
        Ipv4Addr::from(n as u32).into()
    }
}

/// Blocks no example of the outside world should stand at: IANA's IPv4 and IPv6
/// Special-Purpose Address Registries (RFC 6890 and its updates: this network, private,
/// shared, loopback, link-local, benchmarking, documentation, ULA, ...), multicast and the
/// reserved IPv4 space. IPv6 outside global unicast (`2000::/3`) is left out as well.
const SPECIAL_PURPOSE: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/3",
    "2001::/23",
    "2001:db8::/32",
    "2002::/16",
    "2620:4f:8000::/48",
    "3fff::/20",
    "4000::/2",
    "8000::/1",
];

/// A free address of `cidr` outside `holes`: a documentation address when one lies there (so
/// that the rest of the world stands at 203.0.113.10 or 2001:db8::10: addresses reserved for
/// examples), else the first free address, one past the start of a gap, that is in no
/// special-purpose block ([`SPECIAL_PURPOSE`]: never `::1` or `0.0.0.1`), else the first free
/// address of the piece at all.
fn representative(cidr: &IpNet, holes: &[IpNet], taken: &HashSet<IpAddr>) -> Option<IpAddr> {
    let documentation: [IpAddr; 4] = [
        Ipv4Addr::new(203, 0, 113, 10).into(),
        Ipv4Addr::new(192, 0, 2, 10).into(),
        Ipv4Addr::new(198, 51, 100, 10).into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10).into(),
    ];
    let inside = |ip: &IpAddr| cidr.contains(ip) && !holes.iter().any(|h| h.contains(ip));
    if let Some(ip) = documentation.into_iter().find(|ip| inside(ip) && !taken.contains(ip)) {
        return Some(ip);
    }
    let v6 = matches!(cidr, IpNet::V6(_));
    let gaps = gaps(cidr, holes);
    let special: Vec<IpNet> = SPECIAL_PURPOSE.iter().map(|s| s.parse().expect("a valid CIDR")).collect();
    let special: Vec<IpNet> = special.into_iter().filter(|s| matches!(s, IpNet::V6(_)) == v6).collect();
    let ordinary = gaps.iter().flat_map(|&(a, b)| without(a, b, &special));
    ordinary.chain(gaps.iter().copied()).find_map(|(a, b)| {
        let free = |n: &u128| !taken.contains(&address(v6, *n));
        // Bounded by the taken addresses: at most that many are skipped.
        let after = (a.saturating_add(1)..=b).take(taken.len() + 1).find(free);
        after.or_else(|| free(&a).then_some(a)).map(|n| address(v6, n))
    })
}

/// The ranges of `cidr` outside `holes`, in order, as inclusive numbers.
fn gaps(cidr: &IpNet, holes: &[IpNet]) -> Vec<(u128, u128)> {
    let mut cut: Vec<(u128, u128)> = holes.iter().map(|h| (number(h.network()), number(h.broadcast()))).collect();
    cut.sort_unstable();
    let hi = number(cidr.broadcast());
    let (mut gaps, mut next) = (Vec::new(), Some(number(cidr.network())));
    for (a, b) in cut {
        let Some(n) = next else { break };
        if a > n {
            gaps.push((n, a - 1));
        }
        if b >= n {
            next = b.checked_add(1).filter(|&n| n <= hi);
        }
    }
    gaps.extend(next.map(|n| (n, hi)));
    gaps
}

/// The range `a..=b` without the blocks `out`, as inclusive ranges in order.
fn without(a: u128, b: u128, out: &[IpNet]) -> Vec<(u128, u128)> {
    let mut ranges = vec![(a, b)];
    for net in out {
        let (x, y) = (number(net.network()), number(net.broadcast()));
        ranges = ranges
            .into_iter()
            .flat_map(|(a, b)| {
                let mut keep = Vec::new();
                if x > a {
                    keep.push((a, b.min(x - 1)));
                }
                if y < b {
                    keep.push((a.max(y + 1), b));
                }
                keep.into_iter().filter(|(a, b)| a <= b)
            })
            .collect();
    }
    ranges.sort_unstable();
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn a_free_address_outside_the_holes() {
        let none = HashSet::new();
        let world = representative(&net("0.0.0.0/0"), &[net("10.0.0.0/8")], &none);
        assert_eq!(world, Some("203.0.113.10".parse().unwrap()), "documentation addresses first");
        let hole = representative(&net("10.0.0.0/8"), &[net("10.0.0.0/9")], &none).unwrap();
        assert_eq!(hole, "10.128.0.1".parse::<IpAddr>().unwrap(), "the gap after the hole");
        let one: HashSet<IpAddr> = ["10.0.0.5".parse().unwrap()].into();
        assert_eq!(representative(&net("10.0.0.5/32"), &[], &one), None, "a /32 held by a pod is no piece");
        let taken: HashSet<IpAddr> = ["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()].into();
        let skip = representative(&net("10.0.0.0/30"), &[], &taken).unwrap();
        assert_eq!(skip, "10.0.0.3".parse::<IpAddr>().unwrap());
        let whole = representative(&net("10.0.0.0/30"), &[net("10.0.0.0/31"), net("10.0.0.2/31")], &none);
        assert_eq!(whole, None, "holes that fill the CIDR leave nothing");
        let last = representative(&net("::/0"), &[net("2001:db8::/32"), net("::/1")], &none).unwrap();
        assert_eq!(last, "8000::1".parse::<IpAddr>().unwrap(), "only special-purpose space is left: its first");
        let top = representative(&net("255.255.255.254/31"), &[net("255.255.255.255/32")], &none).unwrap();
        assert_eq!(top, "255.255.255.254".parse::<IpAddr>().unwrap(), "a hole at the very end");
    }

    /// (piece, holes, the example address): never loopback, "this network", private or
    /// documentation space when the piece holds an ordinary address.
    const ORDINARY: &[(&str, &[&str], &str)] = &[
        ("::/0", &["2001:db8::/32"], "2000::1"),
        ("0.0.0.0/0", &["203.0.113.0/24", "192.0.2.0/24", "198.51.100.0/24"], "1.0.0.1"),
        ("0.0.0.0/1", &["0.0.0.0/2"], "64.0.0.1"),
        ("10.0.0.0/7", &["10.0.0.0/8"], "11.0.0.1"),
        ("::/1", &["2001:db8::/32"], "2000::1"),
        ("2001::/16", &["2001:db8::/32"], "2001:200::1"),
        // Nothing ordinary inside: the first address of the piece, special or not.
        ("10.0.0.0/8", &["10.0.0.0/9"], "10.128.0.1"),
    ];

    #[test]
    fn an_example_address_is_an_ordinary_one_when_the_piece_holds_one() {
        let none = HashSet::new();
        let special: Vec<IpNet> = SPECIAL_PURPOSE.iter().map(|s| net(s)).collect();
        for &(cidr, holes, want) in ORDINARY {
            let holes: Vec<IpNet> = holes.iter().map(|h| net(h)).collect();
            let got = representative(&net(cidr), &holes, &none).unwrap();
            assert_eq!(got, want.parse::<IpAddr>().unwrap(), "{cidr} except {holes:?}");
            let piece = Piece { cidr: net(cidr), holes: holes.clone(), address: got };
            assert!(piece.contains(got), "{got} lies in {piece}");
        }
        // Whenever the world is cut so that the documentation addresses are gone, the example
        // is in no special-purpose block.
        for hole in ["0.0.0.0/1", "128.0.0.0/1", "192.0.0.0/2", "200.0.0.0/5", "2000::/4", "2001::/16"] {
            let (h, v6) = (net(hole), hole.contains(':'));
            let world = if v6 { net("::/0") } else { net("0.0.0.0/0") };
            let docs: Vec<IpNet> = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]
                .iter()
                .map(|d| net(d))
                .filter(|d| matches!(d, IpNet::V6(_)) == v6 && !h.contains(d))
                .collect();
            let holes = [vec![h], docs].concat();
            let got = representative(&world, &holes, &none).unwrap();
            assert!(!special.iter().any(|s| s.contains(&got)), "{world} except {holes:?}: {got} is special-purpose");
        }
    }

    #[test]
    fn pieces_nest_and_print_alike() {
        let p =
            Piece { cidr: net("0.0.0.0/0"), holes: vec![net("10.0.0.0/8")], address: "203.0.113.10".parse().unwrap() };
        assert_eq!(p.to_string(), "outside 0.0.0.0/0 except 10.0.0.0/8");
        assert!(p.contains("11.0.0.1".parse().unwrap()) && !p.contains("10.1.0.1".parse().unwrap()));
        let many = Piece { holes: (1..=6).map(|i| net(&format!("10.{i}.0.0/16"))).collect(), ..p };
        assert_eq!(
            many.to_string(),
            "outside 0.0.0.0/0 except 10.1.0.0/16, 10.2.0.0/16, 10.3.0.0/16, 10.4.0.0/16 and 2 more"
        );
        let world = pieces(&Cluster::default());
        assert_eq!(find(&Cluster::default(), &world, "outside 0.0.0.0/0").unwrap(), world[0]);
        let written = find(&Cluster::default(), &world, "outside 10.0.0.0/8 except 10.0.0.0/9").unwrap();
        assert_eq!(written.address, "10.128.0.1".parse::<IpAddr>().unwrap(), "a piece this cluster does not cut");
        assert_eq!(find(&Cluster::default(), &world, "outside x"), Err(NameError::Cidr("x".into())));
        assert_eq!(find(&Cluster::default(), &world, "ns/pod"), Err(NameError::Shape));
        let empty = world;
        let names: Vec<String> = empty.iter().map(|p| p.to_string()).collect();
        assert_eq!(names, ["outside 0.0.0.0/0", "outside ::/0"], "the rest of the world, both families");
    }
}
