//! Decoding policy.networking.k8s.io objects (ClusterNetworkPolicy v1alpha2,
//! AdminNetworkPolicy and BaselineAdminNetworkPolicy v1alpha1): strict like every policy, except
//! that unknown fields directly inside a peer are kept for the validator, which fails the rule
//! closed (the API's rule for a peer of a newer CRD) instead of refusing the object.

use palisade_core::field::{FieldPath, Seg};
use palisade_ingest::clusterpolicy::resource::{AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy};
use palisade_ingest::Object;

use crate::typed::{Loaded, Typed};

/// The API group of these kinds.
pub const GROUP: &str = "policy.networking.k8s.io/";

/// The apiVersion each kind is read at.
pub fn api_version_of(kind: &str) -> Option<&'static str> {
    match kind {
        "ClusterNetworkPolicy" => Some("policy.networking.k8s.io/v1alpha2"),
        "AdminNetworkPolicy" | "BaselineAdminNetworkPolicy" => Some("policy.networking.k8s.io/v1alpha1"),
        _ => None,
    }
}

/// `spec.ingress[i].from[j].FIELD` or `spec.egress[i].to[j].FIELD`.
fn is_peer_field(p: &FieldPath) -> bool {
    matches!(
        p.0.as_slice(),
        [Seg::Key(spec), Seg::Key(dir), Seg::Index(_), Seg::Key(peers), Seg::Index(_), Seg::Key(_)]
            if spec == "spec" && ((dir == "ingress" && peers == "from") || (dir == "egress" && peers == "to"))
    )
}

pub(crate) fn decode(cx: Typed, out: &mut Loaded) -> Option<Object> {
    match cx.kind() {
        "ClusterNetworkPolicy" => {
            cx.decode_keeping(out, is_peer_field).map(|(mut o, kept): (ClusterNetworkPolicy, _)| {
                o.unknown_peer_fields = kept;
                Object::ClusterNetworkPolicy(Box::new(o))
            })
        }
        "AdminNetworkPolicy" => cx.decode_keeping(out, is_peer_field).map(|(mut o, kept): (AdminNetworkPolicy, _)| {
            o.unknown_peer_fields = kept;
            Object::AdminNetworkPolicy(Box::new(o))
        }),
        _ => cx.decode_keeping(out, is_peer_field).map(|(mut o, kept): (BaselineAdminNetworkPolicy, _)| {
            o.unknown_peer_fields = kept;
            Object::BaselineAdminNetworkPolicy(Box::new(o))
        }),
    }
}
