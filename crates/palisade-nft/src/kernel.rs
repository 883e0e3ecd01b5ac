//! Transactions sent to the kernel over netlink: the same commands `script` renders for
//! `nft -f`, encoded as one nf_tables batch.

use std::net::IpAddr;

use ipnet::IpNet;
use nix::libc;

use crate::bytecode::{self, dtype, AnonSet, Unsupported};
use crate::netlink::{attr, Attrs, Batch, NetlinkError, Socket};
use crate::ruleset::{Family, TABLE};
use crate::script::{Command, Hook, SetKind};

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("the kernel refused the transaction (nothing was changed): {command}: {reason}")]
    Refused { command: String, reason: String },
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
    #[error("bad set element {0:?}")]
    Element(String),
}

/// The node's nf_tables, reached through one netlink socket in its network namespace.
pub struct Kernel {
    socket: Socket,
}

impl Kernel {
    pub fn open(netns: Option<&str>) -> Result<Kernel, KernelError> {
        Ok(Kernel { socket: Socket::open(netns)? })
    }

    /// The netlink port id of the socket this kernel handle changes the table through.
    pub fn portid(&self) -> Result<u32, KernelError> {
        Ok(self.socket.portid()?)
    }

    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }

    /// Applies the commands as one transaction: all of them or, on any error, none.
    pub fn apply(&self, commands: &[Command]) -> Result<(), KernelError> {
        // Nothing to change (a file saved as it was): no transaction at all.
        if commands.is_empty() {
            return Ok(());
        }
        self.apply_encoded(commands, &encode(commands)?)
    }

    /// [`Kernel::apply`] with the commands already encoded (`batch` is `encode(commands)`): a
    /// table kept encoded ahead goes out without the time encoding takes.
    pub fn apply_encoded(&self, commands: &[Command], batch: &Batch) -> Result<(), KernelError> {
        let mut replays = 0;
        loop {
            match self.socket.transact(batch.clone()) {
                // A missing expression module: the kernel loads it and asks for the batch again.
                Err(NetlinkError::Refused { errno, .. }) if errno == libc::EAGAIN && replays < 3 => replays += 1,
                // Only a refusal pays for rendering the command it names.
                Err(NetlinkError::Refused { owner, reason, .. }) => {
                    let command = owner.map_or_else(|| "the batch".into(), |i| brief(&commands[i].text()));
                    return Err(KernelError::Refused { command, reason });
                }
                other => return Ok(other?),
            }
        }
    }
}

/// The commands as one nf_tables batch.
pub fn encode(commands: &[Command]) -> Result<Batch, KernelError> {
    let mut e = Encoder { batch: Batch::new(), next_set_id: 1 };
    for (i, c) in commands.iter().enumerate() {
        e.command(i, c)?;
    }
    Ok(e.batch)
}

struct Encoder {
    batch: Batch,
    next_set_id: u32,
}

const CREATE: i32 = libc::NLM_F_CREATE;
/// Elements per message: the largest (an IPv6 map element with its chain name) is under 100
/// bytes, and a message's element list must stay under 64 KiB.
const ELEMENTS_PER_MESSAGE: usize = 512;

impl Encoder {
    fn set_id(&mut self) -> u32 {
        self.next_set_id += 1;
        self.next_set_id
    }

    fn command(&mut self, what: usize, c: &Command) -> Result<(), KernelError> {
        match c {
            Command::ReplaceTable => {
                let table = |a: &mut Attrs| {
                    a.str(attr::TABLE_NAME, TABLE);
                };
                self.batch.msg(what, libc::NFT_MSG_NEWTABLE, CREATE, table);
                self.batch.msg(what, libc::NFT_MSG_DELTABLE, 0, table);
                self.batch.msg(what, libc::NFT_MSG_NEWTABLE, CREATE, table);
            }
            Command::AddSet { name, kind } => {
                let id = self.set_id();
                self.batch.msg(what, libc::NFT_MSG_NEWSET, CREATE, |a| set_attrs(a, name, *kind, id));
            }
            Command::Elements { set, kind, items, add } => {
                let mut elements = Vec::new();
                for item in items {
                    elements.extend(element(*kind, item).ok_or_else(|| KernelError::Element(item.clone()))?);
                }
                let kind_msg = if *add { libc::NFT_MSG_NEWSETELEM } else { libc::NFT_MSG_DELSETELEM };
                // An attribute's length is 16 bits: large sets take several messages.
                for chunk in elements.chunks(ELEMENTS_PER_MESSAGE) {
                    self.batch.msg(what, kind_msg, if *add { CREATE } else { 0 }, |a| {
                        a.str(attr::SET_ELEM_LIST_TABLE, TABLE).str(attr::SET_ELEM_LIST_SET, set);
                        write_elements(a, chunk);
                    });
                }
            }
            Command::AddChain { name, hook } => {
                self.batch.msg(what, libc::NFT_MSG_NEWCHAIN, CREATE, |a| {
                    a.str(attr::CHAIN_TABLE, TABLE).str(attr::CHAIN_NAME, name);
                    if let Some(hook) = hook {
                        let num = match hook {
                            Hook::Prerouting => libc::NF_INET_PRE_ROUTING,
                            Hook::Input => libc::NF_INET_LOCAL_IN,
                            Hook::Output => libc::NF_INET_LOCAL_OUT,
                            Hook::Postrouting => libc::NF_INET_POST_ROUTING,
                        };
                        a.nest(attr::CHAIN_HOOK, |h| {
                            h.u32(attr::HOOK_HOOKNUM, num as u32).u32(attr::HOOK_PRIORITY, 0);
                        });
                        a.u32(attr::CHAIN_POLICY, libc::NF_ACCEPT as u32).str(attr::CHAIN_TYPE, "filter");
                    }
                });
            }
            Command::AddRule { chain, rule } => self.rule(what, chain, rule)?,
            Command::FlushChain(chain) => self.batch.msg(what, libc::NFT_MSG_DELRULE, 0, |a| {
                a.str(attr::RULE_TABLE, TABLE).str(attr::RULE_CHAIN, chain);
            }),
            Command::DeleteChain(name) => self.batch.msg(what, libc::NFT_MSG_DELCHAIN, 0, |a| {
                a.str(attr::CHAIN_TABLE, TABLE).str(attr::CHAIN_NAME, name);
            }),
            Command::DeleteSet(name) => self.batch.msg(what, libc::NFT_MSG_DELSET, 0, |a| {
                a.str(attr::SET_TABLE, TABLE).str(attr::SET_NAME, name);
            }),
        }
        Ok(())
    }

    fn rule(&mut self, what: usize, chain: &str, text: &str) -> Result<(), KernelError> {
        let rule = bytecode::parse(text)?;
        let mut anon = Vec::new();
        for set in &rule.anonymous {
            let id = self.set_id();
            // The kernel numbers anonymous sets itself; the rule finds this one by its id.
            let name = "__set%d".to_string();
            self.batch.msg(what, libc::NFT_MSG_NEWSET, CREATE, |a| anon_set_attrs(a, &name, set, id));
            let mut elements: Vec<Element> = Vec::new();
            // As nft does: an interval set not starting at zero opens with an end at zero.
            if set.interval && set.elements.first().is_some_and(|(start, _)| start.iter().any(|b| *b != 0)) {
                elements.push(Element { key: vec![0; set.key_len as usize], end: true, jump: None });
            }
            elements.extend(
                set.elements.iter().flat_map(|(start, end)| interval(start.clone(), end.clone(), set.interval)),
            );
            self.batch.msg(what, libc::NFT_MSG_NEWSETELEM, CREATE, |a| {
                a.str(attr::SET_ELEM_LIST_TABLE, TABLE)
                    .str(attr::SET_ELEM_LIST_SET, &name)
                    .u32(attr::SET_ELEM_LIST_SET_ID, id);
                write_elements(a, &elements);
            });
            anon.push((name, id));
        }
        self.batch.msg(what, libc::NFT_MSG_NEWRULE, CREATE | libc::NLM_F_APPEND, |a| {
            a.str(attr::RULE_TABLE, TABLE).str(attr::RULE_CHAIN, chain);
            a.nest(attr::RULE_EXPRESSIONS, |list| {
                for e in &rule.exprs {
                    e.encode(list, &anon);
                }
            });
            if let Some(c) = &rule.comment {
                a.bytes(attr::RULE_USERDATA, &bytecode::comment_userdata(c));
            }
        });
        Ok(())
    }
}

/// A command as a refusal names it: the first 200 characters.
fn brief(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{} ...", &text[..at]),
        None => text.to_string(),
    }
}

fn set_attrs(a: &mut Attrs, name: &str, kind: SetKind, id: u32) {
    a.str(attr::SET_TABLE, TABLE).str(attr::SET_NAME, name);
    let (t, l) = match kind.family() {
        Family::V4 => (dtype::IPADDR, 4),
        Family::V6 => (dtype::IP6ADDR, 16),
    };
    let (flags, key_type, key_len) = match kind {
        SetKind::Addresses(_) => (libc::NFT_SET_INTERVAL, t, l),
        SetKind::AddressPorts(_) => (0, dtype::concat(&[t, dtype::INET_SERVICE]), l + 4),
        SetKind::AddressPairs(_) => (0, dtype::concat(&[t, t]), 2 * l),
        SetKind::Map(_) => (libc::NFT_SET_MAP, t, l),
        SetKind::Flows(_) => {
            let key = dtype::concat(&[t, t, dtype::INET_PROTOCOL, dtype::INET_SERVICE]);
            (libc::NFT_SET_EVAL | libc::NFT_SET_TIMEOUT, key, 2 * l + 8)
        }
    };
    a.u32(attr::SET_FLAGS, flags as u32).u32(attr::SET_KEY_TYPE, key_type).u32(attr::SET_KEY_LEN, key_len);
    if let SetKind::Map(_) = kind {
        a.u32(attr::SET_DATA_TYPE, libc::NFT_DATA_VERDICT).u32(attr::SET_DATA_LEN, 0);
    }
    if let SetKind::Flows(_) = kind {
        a.u64(attr::SET_TIMEOUT, 3_600_000);
        a.nest(attr::SET_DESC, |d| {
            d.u32(attr::SET_DESC_SIZE, crate::script::FLOW_CAPACITY as u32);
        });
    }
    a.u32(attr::SET_ID, id);
}

fn anon_set_attrs(a: &mut Attrs, name: &str, set: &AnonSet, id: u32) {
    let mut flags = libc::NFT_SET_ANONYMOUS | libc::NFT_SET_CONSTANT;
    if set.interval {
        flags |= libc::NFT_SET_INTERVAL;
    }
    a.str(attr::SET_TABLE, TABLE)
        .str(attr::SET_NAME, name)
        .u32(attr::SET_FLAGS, flags as u32)
        .u32(attr::SET_KEY_TYPE, set.key_type)
        .u32(attr::SET_KEY_LEN, set.key_len)
        .u32(attr::SET_ID, id);
    a.nest(attr::SET_DESC, |d| {
        d.u32(attr::SET_DESC_SIZE, set.elements.len() as u32);
    });
}

/// One kernel set element: key, interval-end flag, and for maps the chain to jump to.
struct Element {
    key: Vec<u8>,
    end: bool,
    jump: Option<String>,
}

fn write_elements(a: &mut Attrs, elements: &[Element]) {
    a.nest(attr::SET_ELEM_LIST_ELEMENTS, |list| {
        for el in elements {
            list.nest(attr::LIST_ELEM, |e| {
                e.nest(attr::SET_ELEM_KEY, |k| {
                    k.bytes(attr::DATA_VALUE, &el.key);
                });
                if el.end {
                    e.u32(attr::SET_ELEM_FLAGS, libc::NFT_SET_ELEM_INTERVAL_END as u32);
                }
                if let Some(chain) = &el.jump {
                    e.nest(attr::SET_ELEM_DATA, |d| {
                        d.nest(attr::DATA_VERDICT, |v| {
                            v.u32(attr::VERDICT_CODE, libc::NFT_JUMP as u32).str(attr::VERDICT_CHAIN, chain);
                        });
                    });
                }
            });
        }
    });
}

/// An interval as a start element and, unless it runs to the top, an end element.
fn interval(start: Vec<u8>, end: Option<Vec<u8>>, is_interval: bool) -> Vec<Element> {
    let mut out = vec![Element { key: start, end: false, jump: None }];
    if is_interval {
        out.extend(end.map(|key| Element { key, end: true, jump: None }));
    }
    out
}

/// The kernel elements of one item as `script` writes it.
fn element(kind: SetKind, item: &str) -> Option<Vec<Element>> {
    match kind {
        SetKind::Addresses(_) => {
            let net: IpNet = item.parse().or_else(|_| item.parse::<IpAddr>().map(IpNet::from)).ok()?;
            let end = next_address(&net.broadcast());
            Some(interval(bytecode::addr_bytes(&net.network()), end.map(|e| bytecode::addr_bytes(&e)), true))
        }
        SetKind::AddressPorts(_) => {
            let (ip, port) = item.split_once(" . ")?;
            let mut key = bytecode::addr_bytes(&ip.trim().parse().ok()?);
            key.extend_from_slice(&port.trim().parse::<u16>().ok()?.to_be_bytes());
            key.extend_from_slice(&[0, 0]);
            Some(vec![Element { key, end: false, jump: None }])
        }
        SetKind::AddressPairs(_) => {
            let (a, b) = item.split_once(" . ")?;
            let mut key = bytecode::addr_bytes(&a.trim().parse().ok()?);
            key.extend(bytecode::addr_bytes(&b.trim().parse().ok()?));
            Some(vec![Element { key, end: false, jump: None }])
        }
        SetKind::Map(_) => {
            let (ip, jump) = match item.split_once(" : jump ") {
                Some((ip, chain)) => (ip, Some(chain.trim().to_string())),
                None => (item, None),
            };
            Some(vec![Element { key: bytecode::addr_bytes(&ip.trim().parse().ok()?), end: false, jump }])
        }
        SetKind::Flows(_) => None,
    }
}

fn next_address(ip: &IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(a) => u32::from(*a).checked_add(1).map(|n| IpAddr::V4(n.into())),
        IpAddr::V6(a) => u128::from(*a).checked_add(1).map(|n| IpAddr::V6(n.into())),
    }
}
