//! Policies of every API as the engine sees them: a subject, a tier and order, and ordered
//! ingress and egress rules with actions.

use std::fmt;

use serde::Serialize;

use crate::model::field::Location;
use crate::model::peer::{NsId, Peer};
use crate::model::port::RulePort;
use crate::model::selector::Selector;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn field(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
    pub fn peers_field(self) -> &'static str {
        match self {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field())
    }
}

/// What a matching rule does. Kubernetes rules only allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Action {
    Allow,
    Deny,
    /// Skip the rest of this tier; the next tier that selects the endpoint decides.
    Pass,
    /// Record and go on to the next rule.
    Log,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "Allow",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
            Action::Log => "Log",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's match conditions, in the language of the policy that wrote it.
#[derive(Clone, Debug)]
pub enum Match {
    /// `None` peers or ports means "all" (field empty or absent).
    Kubernetes {
        peers: Option<Vec<Peer>>,
        ports: Option<Vec<RulePort>>,
    },
    Calico(Box<crate::model::rule::CalicoRule>),
}

/// One ingress or egress rule: when it matches, its action decides.
#[derive(Clone, Debug)]
pub struct Rule {
    pub action: Action,
    pub matches: Match,
    pub location: Option<Location>,
}

impl Rule {
    pub fn kubernetes(peers: Option<Vec<Peer>>, ports: Option<Vec<RulePort>>, location: Option<Location>) -> Rule {
        Rule { action: Action::Allow, matches: Match::Kubernetes { peers, ports }, location }
    }
    pub fn uses_named_ports(&self) -> bool {
        match &self.matches {
            Match::Kubernetes { ports, .. } => ports.iter().flatten().any(RulePort::is_named),
            Match::Calico(c) => c.uses_named_ports(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum PolicyKind {
    #[serde(rename = "NetworkPolicy")]
    Kubernetes,
    #[serde(rename = "projectcalico.org/v3 NetworkPolicy")]
    Calico,
    #[serde(rename = "projectcalico.org/v3 GlobalNetworkPolicy")]
    CalicoGlobal,
}

/// Which endpoints a policy applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Kubernetes podSelector: pods of the policy's namespace.
    Pods(Selector),
    /// Calico: one expression over endpoint labels, pseudo-labels included, that already
    /// holds the namespace scope, namespaceSelector and serviceAccountSelector.
    Endpoints(crate::model::expr::Expr),
}

/// A compiled policy of any kind. `ingress`/`egress` is `Some` exactly when the policy
/// applies in that direction (after policyTypes/types defaulting).
#[derive(Clone, Debug)]
pub struct Policy {
    pub kind: PolicyKind,
    /// `None` for cluster-wide (global) policies.
    pub namespace: Option<NsId>,
    pub name: String,
    pub tier: usize,
    /// Position in the tier; `None` sorts last.
    pub order: Option<f64>,
    pub subject: Subject,
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
    pub location: Option<Location>,
}

/// Kubernetes NetworkPolicies sit in Calico's default tier at this order.
pub const KUBERNETES_ORDER: f64 = 1000.0;

impl Policy {
    pub fn rules(&self, dir: Direction) -> Option<&Vec<Rule>> {
        match dir {
            Direction::Ingress => self.ingress.as_ref(),
            Direction::Egress => self.egress.as_ref(),
        }
    }
    /// The name Felix breaks order ties with (Kubernetes policies carry `knp.default.`).
    pub fn sort_name(&self, namespace: Option<&str>) -> String {
        let name = match self.kind {
            PolicyKind::Kubernetes => format!("knp.default.{}", self.name),
            _ => self.name.clone(),
        };
        match namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        }
    }
}
