//! Servers and probes inside lab namespaces.
//!
//! A thread enters a namespace with setns(2), creates its sockets there (a socket belongs to
//! the namespace it was created in) and hands them back; accepting and probing then run on
//! ordinary threads. A probe counts as *reached* when the server answered or the destination
//! refused (RST, ICMP port unreachable): either way the packet got through. Only silence
//! means the firewall dropped it.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use palisade_core::port::Protocol;

/// Runs `f` on a thread inside network namespace `netns`.
pub fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> std::io::Result<T> {
    let path = format!("/run/netns/{netns}");
    let handle = thread::spawn(move || -> std::io::Result<T> {
        let file = File::open(&path)?;
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
        Ok(f())
    });
    handle.join().map_err(|_| std::io::Error::other("namespace thread panicked"))?
}

/// Whether this kernel can open SCTP sockets.
pub fn sctp_available() -> bool {
    // SAFETY: socket(2) with constant arguments; the descriptor is closed right away.
    unsafe {
        let fd = nix::libc::socket(nix::libc::AF_INET, nix::libc::SOCK_STREAM, nix::libc::IPPROTO_SCTP);
        if fd >= 0 {
            nix::libc::close(fd);
            true
        } else {
            false
        }
    }
}

/// Starts servers in `netns` on each (port, protocol): TCP answers and closes, UDP echoes.
/// They listen on `addr` (all addresses when `None`) and run until the process ends; the
/// namespace's removal takes their sockets with it.
pub fn serve(netns: &str, ports: &[(u16, Protocol)], dual_stack: bool, addr: Option<IpAddr>) -> std::io::Result<()> {
    let ports = ports.to_vec();
    let (tcp, udp) = in_netns(netns, move || -> std::io::Result<(Vec<TcpListener>, Vec<UdpSocket>)> {
        let unspecified: IpAddr = if dual_stack { Ipv6Addr::UNSPECIFIED.into() } else { Ipv4Addr::UNSPECIFIED.into() };
        let any = addr.unwrap_or(unspecified);
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        for (port, proto) in ports {
            let addr = SocketAddr::new(any, port);
            match proto {
                Protocol::TCP => tcp.push(TcpListener::bind(addr)?),
                Protocol::UDP => udp.push(UdpSocket::bind(addr)?),
                _ => {}
            }
        }
        Ok((tcp, udp))
    })??;
    for l in tcp {
        thread::spawn(move || {
            for mut conn in l.incoming().flatten() {
                let _ = conn.write_all(b"palisade\n");
            }
        });
    }
    for s in udp {
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        });
    }
    Ok(())
}

/// Whether a connection from `netns` (from address `src` when given) to `dst` got through
/// (see the module comment).
pub fn probe(
    netns: &str,
    src: Option<IpAddr>,
    dst: IpAddr,
    port: u16,
    proto: Protocol,
    timeout: Duration,
) -> std::io::Result<bool> {
    in_netns(netns, move || attempt(src, 0, dst, port, proto, timeout))?
}

/// [`probe`], a UDP probe leaving from source port `sport`. A lab whose table changes between
/// probes gives each UDP probe a port of its own: a reused 5-tuple would meet the conntrack
/// entry of an earlier answered probe and pass as established, whatever the policy now says
/// (a TCP SYN on a closed tuple is a new connection to conntrack, so TCP needs none).
pub fn probe_udp_from_port(
    netns: &str,
    src: Option<IpAddr>,
    sport: u16,
    dst: IpAddr,
    port: u16,
    timeout: Duration,
) -> std::io::Result<bool> {
    in_netns(netns, move || attempt(src, sport, dst, port, Protocol::UDP, timeout))?
}

/// Silence, or (for packets the node itself sends) the EPERM a drop in the output hook gives.
fn dropped(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::PermissionDenied)
}

/// A TCP connection from a chosen source address.
fn connect(src: Option<IpAddr>, addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let Some(src) = src else { return TcpStream::connect_timeout(&addr, timeout) };
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(src, 0).into())?;
    socket.connect_timeout(&addr.into(), timeout)?;
    Ok(socket.into())
}

/// One probe; `sport` is the UDP source port (0: any).
fn attempt(
    src: Option<IpAddr>,
    sport: u16,
    dst: IpAddr,
    port: u16,
    proto: Protocol,
    timeout: Duration,
) -> std::io::Result<bool> {
    let addr = SocketAddr::new(dst, port);
    match proto {
        Protocol::TCP => match connect(src, addr, timeout) {
            Ok(mut s) => {
                let mut buf = [0u8; 16];
                s.set_read_timeout(Some(timeout))?;
                let _ = s.read(&mut buf);
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(true),
            Err(e) if dropped(&e) => Ok(false),
            Err(e) => Err(e),
        },
        Protocol::UDP => {
            let any: IpAddr = if dst.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
            let local = src.unwrap_or(any);
            let s = UdpSocket::bind(SocketAddr::new(local, sport))?;
            s.connect(addr)?;
            s.set_read_timeout(Some(timeout))?;
            if let Err(e) = s.send(b"palisade probe") {
                return if dropped(&e) { Ok(false) } else { Err(e) };
            }
            let mut buf = [0u8; 64];
            match s.recv(&mut buf) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(true),
                Err(e) if dropped(&e) => Ok(false),
                Err(e) => Err(e),
            }
        }
        other => Err(std::io::Error::other(format!("the lab does not probe {other}"))),
    }
}
