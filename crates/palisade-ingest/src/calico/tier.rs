//! Calico Tier: an order and a default action (Deny, or Pass to the next tier).

use palisade_core::cluster::{
    Tier, DEFAULT_TIER_ORDER, KUBE_ADMIN_ORDER, KUBE_ADMIN_TIER, KUBE_BASELINE_ORDER, KUBE_BASELINE_TIER,
};
use palisade_core::field::{FieldPath, Problems};

use super::resource;

fn root() -> FieldPath {
    FieldPath::root()
}

/// A Tier: its order (the default tier's is fixed) and what its end does (Deny, or Pass).
pub fn compile_tier(name: &str, spec: Option<&resource::TierSpec>, problems: &mut Problems) -> Tier {
    let spec = spec.cloned().unwrap_or_default();
    let pass_at_end = match spec.default_action.as_deref() {
        None | Some("Deny") => false,
        Some("Pass") => true,
        Some(other) => {
            problems.error(
                &root().key("spec").key("defaultAction"),
                format!("unknown defaultAction {other:?}"),
                "a tier's defaultAction is Deny (the default) or Pass",
            );
            false
        }
    };
    let mut order = spec.order;
    if name == "default" {
        if spec.order.is_some_and(|o| o != DEFAULT_TIER_ORDER) {
            problems.warn(
                &root().key("spec").key("order"),
                "Calico fixes the default tier's order at 1000000; this order is not used",
                "leave the default tier's order unset",
            );
        }
        order = Some(DEFAULT_TIER_ORDER);
    }
    Tier { name: name.to_string(), order, pass_at_end, location: problems.locate.locate(&root()) }
}

/// Calico 3.32's fixed tiers of the cluster network policies: `kube-admin` order 1000 and
/// `kube-baseline` order 10000000, both defaultAction Pass (`tier.go` CEL, `validator.go`).
pub fn check_kube_tier(tier: &Tier, problems: &mut Problems) {
    let (which, order) = match tier.name.as_str() {
        KUBE_ADMIN_TIER => ("Admin", KUBE_ADMIN_ORDER),
        KUBE_BASELINE_TIER => ("Baseline", KUBE_BASELINE_ORDER),
        _ => return,
    };
    let help = "leave the tier out: Calico creates it with these settings";
    if tier.order != Some(order) {
        problems.error(
            &root().key("spec").key("order"),
            format!("tier {} holds the {which} ClusterNetworkPolicies: its order must be {order}", tier.name),
            help,
        );
    }
    if !tier.pass_at_end {
        problems.error(
            &root().key("spec").key("defaultAction"),
            format!("tier {} holds the {which} ClusterNetworkPolicies: its defaultAction must be Pass", tier.name),
            help,
        );
    }
}
