//! Policies of every API as the engine sees them: a subject, a tier and order, and ordered
//! ingress and egress rules with actions.

use std::fmt;

use serde::Serialize;

use crate::model::expr::Expr;
use crate::model::field::Location;
use crate::model::id::{indexed_by, NsId, PolicyId, TierId};
pub use crate::model::rule::{Action, Rule};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum PolicyKind {
    #[serde(rename = "NetworkPolicy")]
    Kubernetes,
    #[serde(rename = "projectcalico.org/v3 NetworkPolicy")]
    Calico,
    #[serde(rename = "projectcalico.org/v3 GlobalNetworkPolicy")]
    CalicoGlobal,
    /// policy.networking.k8s.io/v1alpha2, in the Admin or Baseline tier.
    #[serde(rename = "ClusterNetworkPolicy")]
    ClusterNetworkPolicy,
    /// policy.networking.k8s.io/v1alpha1, the Admin tier.
    #[serde(rename = "AdminNetworkPolicy")]
    AdminNetworkPolicy,
    /// policy.networking.k8s.io/v1alpha1, the Baseline tier.
    #[serde(rename = "BaselineAdminNetworkPolicy")]
    BaselineAdminNetworkPolicy,
}

impl PolicyKind {
    /// Whether it is one of sig-network's cluster-scoped kinds (policy.networking.k8s.io),
    /// which sit in the Admin and Baseline tiers.
    pub fn is_cluster_network_policy(self) -> bool {
        matches!(
            self,
            PolicyKind::ClusterNetworkPolicy | PolicyKind::AdminNetworkPolicy | PolicyKind::BaselineAdminNetworkPolicy
        )
    }
    /// The kind's name as its API writes it (`NetworkPolicy`, `GlobalNetworkPolicy`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Kubernetes | PolicyKind::Calico => "NetworkPolicy",
            PolicyKind::CalicoGlobal => "GlobalNetworkPolicy",
            PolicyKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            PolicyKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            PolicyKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
        }
    }
}

/// A compiled policy of any kind. `ingress`/`egress` is `Some` exactly when the policy
/// applies in that direction (after policyTypes/types defaulting); its rules are lowered to
/// the one rule language, several rules per written rule where the API lists peers.
#[derive(Clone, Debug)]
pub struct Policy {
    pub kind: PolicyKind,
    /// `None` for cluster-wide (global) policies.
    pub namespace: Option<NsId>,
    pub name: String,
    pub tier: TierId,
    /// Position in the tier; `None` sorts last.
    pub order: Option<f64>,
    /// The endpoints it applies to: one expression over endpoint labels, pseudo-labels
    /// included, that holds the namespace scope (namespaced kinds), the pod or endpoint
    /// selector, namespaceSelector and serviceAccountSelector.
    pub subject: Expr,
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
    pub location: Option<Location>,
}

indexed_by! { PolicyId => Policy; }

/// Kubernetes NetworkPolicies sit in Calico's default tier at this order.
pub const KUBERNETES_ORDER: f64 = 1000.0;

impl Policy {
    pub fn rules(&self, dir: Direction) -> Option<&Vec<Rule>> {
        match dir {
            Direction::Ingress => self.ingress.as_ref(),
            Direction::Egress => self.egress.as_ref(),
        }
    }
    /// The rules of one direction grouped by the written rule they came from, in order.
    pub fn written_rules(&self, dir: Direction) -> impl Iterator<Item = &[Rule]> {
        self.rules(dir).map(|r| r.as_slice()).unwrap_or_default().chunk_by(|a, b| a.origin.rule == b.origin.rule)
    }
    /// The name Felix breaks order ties with (Kubernetes policies carry `knp.default.`).
    /// ClusterNetworkPolicies take Felix 3.32's key `<name>/<namespace>/<kind>`
    /// (`felix/calc/policy_sorter.go` PolKVLess): `ab-c` comes before `ab`.
    pub fn sort_name(&self, namespace: Option<&str>) -> String {
        let name = match self.kind {
            PolicyKind::Kubernetes => format!("knp.default.{}", self.name),
            PolicyKind::ClusterNetworkPolicy => format!("{}//KubernetesClusterNetworkPolicy", self.name),
            PolicyKind::AdminNetworkPolicy | PolicyKind::BaselineAdminNetworkPolicy => {
                format!("{}//{}", self.name, self.kind.as_str())
            }
            _ => self.name.clone(),
        };
        match namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        }
    }
}
