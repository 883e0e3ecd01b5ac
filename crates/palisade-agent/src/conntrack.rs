//! Forgetting the connections of addresses that changed hands: every conntrack entry whose
//! original or reply tuple holds one of them is deleted, in the node's network namespace, over
//! ctnetlink (`NFNL_SUBSYS_CTNETLINK`, `include/uapi/linux/netfilter/nfnetlink_conntrack.h`).
//! Why: the table accepts packets of established connections before any policy, so a new pod
//! given a gone pod's IP would otherwise inherit its flows, even where policy denies the new
//! pod. Spoken directly (a dump, then one delete per entry, as `conntrack -D -s IP` does), so
//! the image needs no `conntrack` binary and the agent nothing beyond CAP_NET_ADMIN.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{self, sockopt, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeVal;
use palisade_nft::netlink::{messages, Message};

/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET` and `..._DELETE`.
const CT_GET: u16 = 1 << 8 | 1;
const CT_DELETE: u16 = 1 << 8 | 2;
/// `CTA_TUPLE_ORIG`, `CTA_TUPLE_REPLY`, `CTA_ZONE`; in a tuple `CTA_TUPLE_IP`; in that
/// `CTA_IP_V4_SRC` .. `CTA_IP_V6_DST`.
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;

/// Why the entries could not be listed or deleted.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("conntrack netlink socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("the kernel refused a conntrack request: {0}")]
    Refused(std::io::Error),
}

impl From<nix::Error> for ConntrackError {
    fn from(e: nix::Error) -> Self {
        ConntrackError::Io(e.into())
    }
}

/// Deletes every conntrack entry of network namespace `netns` (`ip netns` name; `None`: this
/// one) that has one of `addresses` as a source or destination, either direction. Returns how
/// many were deleted (entries that went meanwhile are not counted).
pub fn forget(netns: Option<&str>, addresses: &BTreeSet<IpAddr>) -> Result<usize, ConntrackError> {
    if addresses.is_empty() {
        return Ok(0);
    }
    let fd = open(netns)?;
    let doomed = dump(&fd, addresses)?;
    let mut deleted = 0;
    for (seq, (family, attrs)) in (2u32..).zip(doomed) {
        send(&fd, CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, family, &attrs)?;
        match ack(&fd, seq)? {
            0 => deleted += 1,
            e if e == -(nix::errno::Errno::ENOENT as i32) => {}
            e => return Err(ConntrackError::Refused(std::io::Error::from_raw_os_error(-e))),
        }
    }
    Ok(deleted)
}

/// A ctnetlink socket created in `netns` (a socket keeps the namespace it was created in).
fn open(netns: Option<&str>) -> Result<OwnedFd, ConntrackError> {
    let here = || -> Result<OwnedFd, ConntrackError> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )?;
        socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        socket::setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(5, 0))?;
        Ok(fd)
    };
    let Some(ns) = netns else { return here() };
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path)?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
        here()
    })
    .join()
    .map_err(|_| ConntrackError::Io(std::io::Error::other("namespace thread panicked")))?
}

/// One netlink message with an nfgenmsg header (`family`, version 0) and `attrs`.
fn send(fd: &OwnedFd, kind: u16, flags: u16, seq: u32, family: u8, attrs: &[u8]) -> Result<(), ConntrackError> {
    let len = (NLMSG_HDRLEN + 4 + attrs.len()) as u32;
    let mut buf = Vec::with_capacity(len as usize);
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[family, 0, 0, 0]);
    buf.extend_from_slice(attrs);
    socket::send(fd.as_raw_fd(), &buf, socket::MsgFlags::empty())?;
    Ok(())
}

/// The entries to delete: for each, its family and the attributes that name it (the original
/// tuple as the kernel gave it, and its zone).
fn dump(fd: &OwnedFd, addresses: &BTreeSet<IpAddr>) -> Result<Vec<(u8, Vec<u8>)>, ConntrackError> {
    // AF_UNSPEC: IPv4 and IPv6 entries in one dump.
    send(fd, CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 1, 0, &[])?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = socket::recv(fd.as_raw_fd(), &mut buf, socket::MsgFlags::empty())?;
        for m in messages(&buf[..n]) {
            match m.kind {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let code = error_code(body(&m));
                    if code != 0 {
                        return Err(ConntrackError::Refused(std::io::Error::from_raw_os_error(-code)));
                    }
                }
                _ => {
                    if let Some(named) = doomed(m.attrs, addresses) {
                        out.push((m.family, named));
                    }
                }
            }
        }
    }
}

/// The waiting answer to request `seq`: 0, or a negative errno.
fn ack(fd: &OwnedFd, seq: u32) -> Result<i32, ConntrackError> {
    let mut buf = vec![0u8; 8192];
    loop {
        let n = socket::recv(fd.as_raw_fd(), &mut buf, socket::MsgFlags::empty())?;
        for m in messages(&buf[..n]) {
            if m.kind == NLMSG_ERROR && error_seq(body(&m)) == Some(seq) {
                return Ok(error_code(body(&m)));
            }
        }
    }
}

/// An NLMSG_ERROR body: the error code, then the request's header.
fn error_code(body: &[u8]) -> i32 {
    body.get(..4).map_or(0, |c| i32::from_ne_bytes(c.try_into().expect("4 bytes")))
}

fn error_seq(body: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(body.get(12..16)?.try_into().ok()?))
}

/// What follows a message's netlink header (for NLMSG_ERROR: the code, then the request's header).
fn body<'a>(m: &Message<'a>) -> &'a [u8] {
    m.raw.get(NLMSG_HDRLEN..).unwrap_or_default()
}

/// Attributes: (type, the whole attribute with its header, payload).
fn attrs(buf: &[u8]) -> Vec<(u16, &[u8], &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= buf.len() {
        let len = u16::from_ne_bytes([buf[at], buf[at + 1]]) as usize;
        if len < 4 || at + len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]) & NLA_TYPE_MASK;
        out.push((kind, &buf[at..at + len], &buf[at + 4..at + len]));
        at += len.div_ceil(4) * 4;
    }
    out
}

/// The addresses of a tuple (`CTA_TUPLE_IP`'s source and destination, v4 or v6).
fn tuple_addresses(tuple: &[u8]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for (kind, _, ip) in attrs(tuple) {
        if kind != CTA_TUPLE_IP {
            continue;
        }
        for (_, _, a) in attrs(ip) {
            if let Ok(v4) = <[u8; 4]>::try_from(a) {
                out.push(IpAddr::from(v4));
            } else if let Ok(v6) = <[u8; 16]>::try_from(a) {
                out.push(IpAddr::from(v6));
            }
        }
    }
    out
}

/// The attributes that name an entry for its deletion, when it holds one of `addresses`.
fn doomed(entry: &[u8], addresses: &BTreeSet<IpAddr>) -> Option<Vec<u8>> {
    let all = attrs(entry);
    let hit = all
        .iter()
        .filter(|(k, _, _)| *k == CTA_TUPLE_ORIG || *k == CTA_TUPLE_REPLY)
        .flat_map(|(_, _, t)| tuple_addresses(t))
        .any(|a| addresses.contains(&a));
    if !hit {
        return None;
    }
    let mut named = Vec::new();
    for (kind, whole, _) in all {
        if kind == CTA_TUPLE_ORIG || kind == CTA_ZONE {
            named.extend_from_slice(whole);
            while !named.len().is_multiple_of(4) {
                named.push(0);
            }
        }
    }
    Some(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(payload);
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v
    }

    fn tuple(kind: u16, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let ip = attr(1 | 0x8000, &[attr(1, &src), attr(2, &dst)].concat());
        let proto = attr(2 | 0x8000, &attr(1, &[6]));
        attr(kind | 0x8000, &[ip, proto].concat())
    }

    #[test]
    fn an_entry_is_named_by_its_original_tuple_and_zone_when_either_tuple_holds_an_address() {
        let orig = tuple(CTA_TUPLE_ORIG, [198, 18, 0, 2], [198, 18, 0, 3]);
        // A DNATed reply: the pod's address only in the reply tuple.
        let reply = tuple(CTA_TUPLE_REPLY, [198, 18, 0, 9], [198, 18, 0, 2]);
        let zone = attr(CTA_ZONE, &0u16.to_be_bytes());
        let status = attr(3, &8u32.to_be_bytes());
        let entry = [orig.clone(), reply, status, zone.clone()].concat();
        let set = |a: [u8; 4]| BTreeSet::from([IpAddr::from(a)]);
        assert_eq!(doomed(&entry, &set([198, 18, 0, 9])), Some([orig.clone(), zone.clone()].concat()));
        assert_eq!(doomed(&entry, &set([198, 18, 0, 3])), Some([orig, zone].concat()));
        assert_eq!(doomed(&entry, &set([198, 18, 0, 4])), None);
    }
}
