//! Policy peers: pods chosen by selectors, or IP blocks.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::selector::Selector;

/// Index of a namespace in the cluster.
pub type NsId = usize;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NamespaceScope {
    /// No namespaceSelector: the policy's own namespace.
    Own(NsId),
    /// namespaceSelector given: every namespace it selects.
    Matching(Selector),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IpBlock {
    pub cidr: IpNet,
    pub except: Vec<IpNet>,
}

impl IpBlock {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(&ip) && !self.except.iter().any(|e| e.contains(&ip))
    }
    /// The `except` entry that removes `ip`, if any.
    pub fn excepted_by(&self, ip: IpAddr) -> Option<&IpNet> {
        self.except.iter().find(|e| e.contains(&ip))
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cidr)?;
        if !self.except.is_empty() {
            let ex: Vec<String> = self.except.iter().map(|e| e.to_string()).collect();
            write!(f, " except {}", ex.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// podSelector and/or namespaceSelector (both in one peer: AND).
    Pods {
        namespaces: NamespaceScope,
        pods: Selector,
    },
    IpBlock(IpBlock),
}
