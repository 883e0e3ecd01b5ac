//! Calico Tier: an order and a default action (Deny, or Pass to the next tier).

use palisade_core::cluster::{Tier, DEFAULT_TIER_ORDER};
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
