//! Calico NetworkPolicy and GlobalNetworkPolicy (staged or not): validated like Calico's API
//! server and compiled to the engine's policy.

use palisade_core::cluster::NsId;
use palisade_core::cluster::{StagedAction, TierId, DEFAULT_TIER};
use palisade_core::expr::{self, Expr};
use palisade_core::field::{FieldPath, Problems};
use palisade_core::policy::{Direction, Policy, PolicyKind, Rule};

use super::resource::{self, PolicySpec};
use super::rule::compile_rule;
use super::selector::opt_selector;

fn root() -> FieldPath {
    FieldPath::root()
}

/// What a policy resource needs besides its spec.
pub struct PolicyContext<'a> {
    pub kind: PolicyKind,
    pub name: &'a str,
    pub namespace: Option<(NsId, &'a str)>,
    pub staged: bool,
}

/// Compiles a Calico NetworkPolicy or GlobalNetworkPolicy (staged or not).
/// `tier_id` resolves a tier name, `None` when no such tier exists.
pub fn compile_policy(
    spec: Option<&PolicySpec>,
    ctx: &PolicyContext,
    tier_id: &dyn Fn(&str) -> Option<TierId>,
    problems: &mut Problems,
) -> Policy {
    let spec_path = root().key("spec");
    let spec = spec.cloned().unwrap_or_default();
    let tier_name = spec.tier.clone().unwrap_or_else(|| "default".into());
    let tier = tier_id(&tier_name).unwrap_or_else(|| {
        problems.error(
            &spec_path.key("tier"),
            format!("tier {tier_name:?} does not exist"),
            "create the Tier (projectcalico.org/v3 Tier) first, or leave spec.tier out for the default tier",
        );
        DEFAULT_TIER
    });
    check_global_only_fields(&spec, ctx, &spec_path, problems);
    check_staged_action(&spec, ctx.staged, &spec_path, problems);
    let subject = subject(&spec, ctx, &spec_path, problems);
    let (ingress_on, egress_on) = types(&spec, &spec_path, problems);
    let ns_name = ctx.namespace.map(|(_, n)| n);
    let rules = |dir: Direction, list: &Option<Vec<resource::Rule>>, problems: &mut Problems| -> Vec<Rule> {
        list.iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| compile_rule(r, i, ns_name, &spec_path.key(dir.field()).index(i), problems))
            .collect()
    };
    let ingress = rules(Direction::Ingress, &spec.ingress, problems);
    let egress = rules(Direction::Egress, &spec.egress, problems);
    Policy {
        kind: ctx.kind,
        namespace: ctx.namespace.map(|(id, _)| id),
        name: ctx.name.to_string(),
        tier,
        order: spec.order,
        subject,
        ingress: ingress_on.then_some(ingress),
        egress: egress_on.then_some(egress),
        location: problems.locate.locate(&root()),
    }
}

fn check_global_only_fields(spec: &PolicySpec, ctx: &PolicyContext, path: &FieldPath, problems: &mut Problems) {
    if ctx.kind == PolicyKind::CalicoGlobal {
        for (set, field) in [(spec.do_not_track, "doNotTrack"), (spec.pre_dnat, "preDNAT")] {
            if set == Some(true) {
                problems.warn(
                    &path.key(field),
                    format!("{field} policies act on host endpoints outside connection tracking/before DNAT; Palisade decides them as ordinary policy"),
                    "check such host-endpoint policies on the node itself",
                );
            }
        }
        return;
    }
    let fields = [
        (spec.namespace_selector.is_some(), "namespaceSelector"),
        (spec.do_not_track.is_some(), "doNotTrack"),
        (spec.pre_dnat.is_some(), "preDNAT"),
        (spec.apply_on_forward.is_some(), "applyOnForward"),
    ];
    for (present, field) in fields {
        if present {
            problems.error(
                &path.key(field),
                format!("{field} is a GlobalNetworkPolicy field; a namespaced NetworkPolicy has none"),
                "remove it, or make this a GlobalNetworkPolicy",
            );
        }
    }
}

fn check_staged_action(spec: &PolicySpec, staged: bool, path: &FieldPath, problems: &mut Problems) {
    match (&spec.staged_action, staged) {
        (None, _) => {}
        (Some(_), false) => problems.error(
            &path.key("stagedAction"),
            "stagedAction belongs to staged policies only",
            "remove it, or use StagedNetworkPolicy/StagedGlobalNetworkPolicy",
        ),
        (Some(a), true) if staged_action(Some(a)).is_none() => problems.error(
            &path.key("stagedAction"),
            format!("unknown stagedAction {a:?}"),
            "stagedAction is Set (the default), Delete, Learn or Ignore",
        ),
        _ => {}
    }
}

/// `Some(None)`: Learn/Ignore, which change nothing that would be enforced.
pub fn staged_action(a: Option<&String>) -> Option<Option<StagedAction>> {
    match a.map(String::as_str) {
        None | Some("Set") => Some(Some(StagedAction::Set)),
        Some("Delete") => Some(Some(StagedAction::Delete)),
        Some("Learn" | "Ignore") => Some(None),
        Some(_) => None,
    }
}

/// The endpoints a policy selects, as one expression over endpoint labels.
fn subject(spec: &PolicySpec, ctx: &PolicyContext, path: &FieldPath, problems: &mut Problems) -> Expr {
    let mut parts = Vec::new();
    if let Some((_, ns)) = ctx.namespace {
        parts.push(Expr::Eq(expr::NAMESPACE_LABEL.into(), ns.into()));
    }
    if let Some(e) = opt_selector(spec.selector.as_ref(), &path.key("selector"), problems) {
        parts.push(e);
    }
    if ctx.kind == PolicyKind::CalicoGlobal {
        if let Some(e) = opt_selector(spec.namespace_selector.as_ref(), &path.key("namespaceSelector"), problems) {
            parts.push(e.namespace_scope());
        }
    }
    let sa_path = path.key("serviceAccountSelector");
    if let Some(e) = opt_selector(spec.service_account_selector.as_ref(), &sa_path, problems) {
        parts.push(e.prefixed(expr::SERVICE_ACCOUNT_PREFIX));
    }
    Expr::and(parts)
}

/// `types`, defaulted as Calico does: Ingress unless there are only egress rules, Egress
/// when there are egress rules.
fn types(spec: &PolicySpec, path: &FieldPath, problems: &mut Problems) -> (bool, bool) {
    let has_in = spec.ingress.as_ref().is_some_and(|r| !r.is_empty());
    let has_eg = spec.egress.as_ref().is_some_and(|r| !r.is_empty());
    let Some(types) = spec.types.as_ref().filter(|t| !t.is_empty()) else {
        return (has_in || !has_eg, has_eg);
    };
    let (mut ingress, mut egress) = (false, false);
    for (i, t) in types.iter().enumerate() {
        match t.as_str() {
            "Ingress" => ingress = true,
            "Egress" => egress = true,
            other => problems.error(
                &path.key("types").index(i),
                format!("unknown policy type {other:?}"),
                "types lists Ingress, Egress or both (case-sensitive)",
            ),
        }
    }
    for (has, on, dir) in [(has_in, ingress, "ingress"), (has_eg, egress, "egress")] {
        if has && !on {
            problems.error(
                &path.key(dir),
                format!("{dir} rules are given but types does not include {}", capitalize(dir)),
                "add the direction to types, or remove the rules: Calico rejects this policy",
            );
        }
    }
    (ingress, egress)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}
