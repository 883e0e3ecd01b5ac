//! IP families (IPv4, IPv6): which an endpoint has addresses of and which a protocol runs over.
//! A connection exists only in a family both ends have and its protocol uses: an IPv4-only pod
//! neither sends nor receives ICMPv6, and no IPv6 address reaches it.

use std::net::IpAddr;

/// A set of IP families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Families {
    pub v4: bool,
    pub v6: bool,
}

impl Families {
    pub const NONE: Families = Families { v4: false, v6: false };
    pub const V4: Families = Families { v4: true, v6: false };
    pub const V6: Families = Families { v4: false, v6: true };
    pub const BOTH: Families = Families { v4: true, v6: true };

    /// The family of one address.
    pub fn of(ip: IpAddr) -> Families {
        if ip.is_ipv4() {
            Families::V4
        } else {
            Families::V6
        }
    }
    /// The families of a list of addresses; `BOTH` when the list is empty (addresses unknown,
    /// as for a workload's template pods: nothing is ruled out).
    pub fn of_addresses<'a>(ips: impl IntoIterator<Item = &'a IpAddr>) -> Families {
        let mut out = Families::NONE;
        for ip in ips {
            out = out.union(Families::of(*ip));
        }
        if out == Families::NONE {
            Families::BOTH
        } else {
            out
        }
    }
    pub fn union(self, o: Families) -> Families {
        Families { v4: self.v4 || o.v4, v6: self.v6 || o.v6 }
    }
    pub fn intersect(self, o: Families) -> Families {
        Families { v4: self.v4 && o.v4, v6: self.v6 && o.v6 }
    }
    pub fn is_empty(self) -> bool {
        !self.v4 && !self.v6
    }
    /// Whether a connection can exist among ends and a protocol of these families.
    pub fn meet(all: impl IntoIterator<Item = Families>) -> bool {
        !all.into_iter().fold(Families::BOTH, Families::intersect).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_needs_a_family_every_part_has() {
        let v4: IpAddr = "198.18.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(Families::of_addresses(&[v4]), Families::V4);
        assert_eq!(Families::of_addresses(&[v4, v6]), Families::BOTH);
        assert_eq!(Families::of_addresses(&[]), Families::BOTH, "unknown addresses rule nothing out");
        assert!(!Families::meet([Families::V4, Families::V4, Families::V6]), "ICMPv6 between IPv4-only pods");
        assert!(!Families::meet([Families::V4, Families::V6, Families::BOTH]), "IPv6 outside to an IPv4-only pod");
        assert!(Families::meet([Families::BOTH, Families::V6, Families::BOTH]));
    }
}
