//! sig-network's cluster-scoped policies (policy.networking.k8s.io): ClusterNetworkPolicy
//! v1alpha2 and AdminNetworkPolicy / BaselineAdminNetworkPolicy v1alpha1. [`resource`] holds
//! their types, [`validate`] checks them as the CRD schema and CEL do, [`lower`] turns them
//! into the one rule language in the Admin and Baseline tiers (`docs/cnp-spec.md`).

pub mod calico;
pub mod domain;
pub mod lower;
pub mod resource;
pub mod validate;

use palisade_core::cluster::Cluster;
use palisade_core::field::Problems;
use palisade_core::policy::Policy;

use crate::object::Object;
use lower::Tiers;
use validate::Api;

/// Validates one object of these kinds (problems go to `problems`).
fn checked(object: &Object, name: &str, problems: &mut Problems) -> Option<validate::Checked> {
    Some(match object {
        Object::ClusterNetworkPolicy(o) => validate::check_cnp(o, problems),
        Object::AdminNetworkPolicy(o) => {
            validate::check_anp(Api::Anp, name, o.spec.as_ref(), &o.unknown_peer_fields, problems)
        }
        Object::BaselineAdminNetworkPolicy(o) => {
            let spec = o.spec.as_ref().map(resource::AnpSpec::from);
            validate::check_anp(Api::Banp, name, spec.as_ref(), &o.unknown_peer_fields, problems)
        }
        _ => return None,
    })
}

/// One object of these kinds, already validated, as Calico 3.32's GlobalNetworkPolicy
/// ([`calico::to_calico`]) and whether Calico itself reads its API; `None` for other kinds.
pub fn to_calico(
    object: &Object,
    name: &str,
) -> Option<(Result<crate::calico::resource::GlobalNetworkPolicy, Vec<calico::Refused>>, bool)> {
    let mut problems = Problems::new(String::new(), &palisade_core::field::Nowhere);
    let c = checked(object, name, &mut problems)?;
    Some((calico::to_calico(&c, name), calico::read_by_calico(c.api)))
}

/// Validates one object of these kinds and lowers it; `None` for other kinds.
pub fn compile(
    object: &Object,
    name: &str,
    cluster: &Cluster,
    tiers: Tiers,
    problems: &mut Problems,
) -> Option<Policy> {
    let checked = checked(object, name, problems)?;
    Some(lower::lower(&checked, name, cluster, tiers, problems))
}

/// Whether the object is one of these kinds.
pub fn is_cluster_network_policy(object: &Object) -> bool {
    matches!(
        object,
        Object::ClusterNetworkPolicy(_) | Object::AdminNetworkPolicy(_) | Object::BaselineAdminNetworkPolicy(_)
    )
}
