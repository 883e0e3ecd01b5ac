//! One agent per network namespace. Two agents writing one table leave a table that is
//! neither's, so an agent claims the namespace first: it binds the abstract unix socket
//! `@palisade-agent` inside it. Abstract names belong to a network namespace and vanish with
//! their process (a killed agent leaves nothing stale behind), and agents in containers that
//! share a namespace but not a `/run` still find each other. A second agent's bind fails; it
//! connects instead and learns the owner's pid (`SO_PEERCRED`) and status, which the owner
//! writes to every connection (`palisade agent --status`).

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::netlink::in_netns;

const NAME: &[u8] = b"palisade-agent";

#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("another palisade agent (pid {pid}) enforces this network namespace")]
    Taken {
        pid: i32,
        /// What that agent says about itself.
        status: String,
    },
    #[error("cannot claim the network namespace: {0}")]
    Io(#[from] std::io::Error),
}

/// The claim on a network namespace, held while this value lives; it serves the status.
pub struct Owner {
    status: Arc<Mutex<String>>,
}

impl Owner {
    /// What `palisade agent --status` prints from now on.
    pub fn set_status(&self, text: String) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }
}

fn address() -> std::io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(NAME)
}

/// Claims network namespace `netns` (`ip netns` name; the current one when `None`).
pub fn claim(netns: Option<&str>) -> Result<Owner, OwnerError> {
    for _ in 0..3 {
        match in_netns(netns, || UnixListener::bind_addr(&address()?))? {
            Ok(listener) => {
                let status = Arc::new(Mutex::new(String::from("starting\n")));
                let served = status.clone();
                std::thread::spawn(move || serve(&listener, &served));
                return Ok(Owner { status });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                // Taken: by whom (unless it went away meanwhile; then try again).
                if let Some((pid, status)) = ask(netns)? {
                    return Err(OwnerError::Taken { pid, status });
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(OwnerError::Io(std::io::Error::other("the claim kept changing hands")))
}

fn serve(listener: &UnixListener, status: &Mutex<String>) {
    for mut conn in listener.incoming().flatten() {
        let text = status.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = conn.write_all(text.as_bytes());
    }
}

/// The agent that owns network namespace `netns`: its pid and status; `None` when no agent does.
pub fn ask(netns: Option<&str>) -> std::io::Result<Option<(i32, String)>> {
    let conn = in_netns(netns, || UnixStream::connect_addr(&address()?))?;
    let mut conn = match conn {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(None),
        Err(e) => return Err(e),
    };
    let creds = nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(std::io::Error::from)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut status = String::new();
    // A status that does not come (an agent busy starting) still names the pid.
    let _ = conn.read_to_string(&mut status);
    Ok(Some((creds.pid(), status)))
}
