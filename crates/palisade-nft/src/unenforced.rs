//! What the enforcer leaves out of the ruleset, and says so: rules of a ClusterNetworkPolicy's
//! `domainNames` peer (`docs/cnp-spec.md` §9). They match the addresses a name resolves to,
//! which only DNS interception could follow; the table has none, so such a rule (Accept only)
//! accepts nothing in the kernel, and the lower-precedence rules the API expects after it decide.

use palisade_core::cluster::Cluster;
use palisade_core::policy::Direction;
use palisade_core::rule::Rule;

/// Whether the enforcer leaves `rule` out: it was lowered from a `domainNames` peer.
pub fn left_out(rule: &Rule) -> bool {
    !rule.origin.domain_names().is_empty()
}

/// One warning per written rule left out, naming policy, direction, rule and names:
/// `ClusterNetworkPolicy allow-api egress rule [0] "to-api": domainNames api.example.com left
/// out of the ruleset (no DNS interception): it accepts nothing in the kernel`.
pub fn warnings(cluster: &Cluster) -> Vec<String> {
    let mut out = Vec::new();
    for pol in &cluster.policies {
        for dir in [Direction::Ingress, Direction::Egress] {
            let mut seen = Vec::new();
            for rule in pol.rules(dir).into_iter().flatten().filter(|r| left_out(r)) {
                let o = &rule.origin;
                if seen.contains(&o.rule) {
                    continue;
                }
                seen.push(o.rule);
                let name = o.written.name.as_deref().map(|n| format!(" {n:?}")).unwrap_or_default();
                out.push(format!(
                    "{} {} {} rule [{}]{name}: domainNames {} left out of the ruleset (no DNS interception): it accepts nothing in the kernel",
                    pol.kind.as_str(),
                    cluster.policy_name(pol),
                    match dir {
                        Direction::Ingress => "ingress",
                        Direction::Egress => "egress",
                    },
                    o.rule,
                    o.domain_names().join(", ")
                ));
            }
        }
    }
    out
}
