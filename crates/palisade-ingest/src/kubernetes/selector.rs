//! Kubernetes label selectors (`matchLabels`, `matchExpressions`): validated like the API
//! server, compiled, matched, printed in kubectl's notation, and lowered to the engine's
//! expression language.

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use palisade_core::expr::Expr;
use palisade_core::field::{FieldPath, Problems};
use palisade_core::label::Labels;

use crate::names::{check_label_key, check_label_value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One requirement; `matchLabels: {k: v}` compiles to `k In (v)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: BTreeSet<String>,
}

impl Requirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.key);
        match self.op {
            Op::In => v.is_some_and(|v| self.values.contains(v)),
            Op::NotIn => v.is_none_or(|v| !self.values.contains(v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
        }
    }
}

/// A compiled selector: all requirements must hold. No requirements selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

impl Selector {
    pub fn everything() -> Self {
        Selector::default()
    }
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
    /// The same selector in the expression language, which means the same on any labels
    /// (`NotIn` matches labels without the key, as `not in` does).
    pub fn to_expr(&self) -> Expr {
        Expr::and(self.requirements.iter().map(|r| match r.op {
            Op::In if r.values.len() == 1 => {
                Expr::Eq(r.key.clone(), r.values.iter().next().cloned().unwrap_or_default())
            }
            Op::In => Expr::In(r.key.clone(), r.values.clone()),
            Op::NotIn => Expr::NotIn(r.key.clone(), r.values.clone()),
            Op::Exists => Expr::Has(r.key.clone()),
            Op::DoesNotExist => Expr::Not(Box::new(Expr::Has(r.key.clone()))),
        }))
    }
    pub fn from_labels(labels: &Labels) -> Self {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement { key: k.clone(), op: Op::In, values: BTreeSet::from([v.clone()]) })
            .collect();
        Selector { requirements }.normalized()
    }
    /// Sorted and without repeats, so that equal selectors compare and hash equal.
    pub fn normalized(mut self) -> Self {
        self.requirements.sort();
        self.requirements.dedup();
        self
    }
}

impl fmt::Display for Selector {
    /// kubectl's notation: `app=web,tier in (a,b),!debug`; `<all>` for the empty selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.requirements.is_empty() {
            return f.write_str("<all>");
        }
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                let vals = || r.values.iter().cloned().collect::<Vec<_>>().join(",");
                match r.op {
                    Op::In if r.values.len() == 1 => format!("{}={}", r.key, vals()),
                    Op::In => format!("{} in ({})", r.key, vals()),
                    Op::NotIn => format!("{} notin ({})", r.key, vals()),
                    Op::Exists => r.key.clone(),
                    Op::DoesNotExist => format!("!{}", r.key),
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Validates and compiles a selector as the API server does; problems are reported at `path`.
pub fn compile(sel: &LabelSelector, path: &FieldPath, problems: &mut Problems) -> Selector {
    let mut requirements = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        let p = path.key("matchLabels").key(k);
        if let Err(e) = check_label_key(k) {
            problems.error(&p, e, LABEL_KEY_HELP);
        }
        if let Err(e) = check_label_value(v) {
            problems.error(&p, e, LABEL_VALUE_HELP);
        }
        requirements.push(Requirement { key: k.clone(), op: Op::In, values: BTreeSet::from([v.clone()]) });
    }
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let p = path.key("matchExpressions").index(i);
        if let Some(r) = compile_requirement(e, &p, problems) {
            requirements.push(r);
        }
    }
    Selector { requirements }.normalized()
}

const LABEL_KEY_HELP: &str =
    "a label key is an optional DNS subdomain prefix and '/', then a name of at most 63 characters [A-Za-z0-9_.-] starting and ending alphanumeric (e.g. 'app' or 'example.com/tier')";
const LABEL_VALUE_HELP: &str =
    "a label value is empty or at most 63 characters [A-Za-z0-9_.-] starting and ending alphanumeric";

fn compile_requirement(
    e: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement,
    p: &FieldPath,
    problems: &mut Problems,
) -> Option<Requirement> {
    if let Err(msg) = check_label_key(&e.key) {
        problems.error(&p.key("key"), msg, LABEL_KEY_HELP);
    }
    let values: Vec<String> = e.values.clone().unwrap_or_default();
    let op = match e.operator.as_str() {
        "In" => Op::In,
        "NotIn" => Op::NotIn,
        "Exists" => Op::Exists,
        "DoesNotExist" => Op::DoesNotExist,
        other => {
            problems.error(
                &p.key("operator"),
                format!("unknown operator {other:?}"),
                "the operator must be one of In, NotIn, Exists, DoesNotExist (case-sensitive)",
            );
            return None;
        }
    };
    match op {
        Op::In | Op::NotIn if values.is_empty() => problems.error(
            &p.key("values"),
            format!("operator {} needs at least one value", e.operator),
            "list the label values to compare with, e.g. values: [\"frontend\"]",
        ),
        Op::Exists | Op::DoesNotExist if !values.is_empty() => problems.error(
            &p.key("values"),
            format!("operator {} takes no values", e.operator),
            "remove `values`, or use In/NotIn to compare values",
        ),
        _ => {}
    }
    for (j, v) in values.iter().enumerate() {
        if let Err(msg) = check_label_value(v) {
            problems.error(&p.key("values").index(j), msg, LABEL_VALUE_HELP);
        }
    }
    Some(Requirement { key: e.key.clone(), op, values: values.into_iter().collect() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use palisade_core::field::Nowhere;
    use palisade_core::label::Labels;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|s| s.to_string()).collect()),
        }
    }
    fn compiled(sel: LabelSelector) -> (Selector, usize) {
        let mut p = Problems::new("test".into(), &Nowhere);
        let s = compile(&sel, &FieldPath::root(), &mut p);
        (s, p.list.len())
    }

    #[test]
    fn operators_follow_kubernetes_semantics() {
        let sel = LabelSelector {
            match_expressions: Some(vec![expr("tier", "NotIn", &["db"]), expr("debug", "DoesNotExist", &[])]),
            ..Default::default()
        };
        let (s, errs) = compiled(sel);
        assert_eq!(errs, 0);
        assert!(s.matches(&labels(&[])), "NotIn matches a pod without the key");
        assert!(s.matches(&labels(&[("tier", "web")])));
        assert!(!s.matches(&labels(&[("tier", "db")])));
        assert!(!s.matches(&labels(&[("debug", "")])));
        assert_eq!(s.to_string(), "!debug,tier notin (db)");
    }

    #[test]
    fn invalid_selectors_are_reported() {
        let bad = LabelSelector {
            match_expressions: Some(vec![
                expr("a", "in", &["x"]),
                expr("b", "In", &[]),
                expr("c", "Exists", &["x"]),
                expr("d", "In", &["no spaces"]),
            ]),
            ..Default::default()
        };
        assert_eq!(compiled(bad).1, 4);
    }
}
