//! Kubernetes label selectors (`matchLabels`, `matchExpressions`): validated like the API
//! server and compiled.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use palisade_core::field::{FieldPath, Problems};
use palisade_core::selector::{Op, Requirement, Selector};

use crate::names::{check_label_key, check_label_value};

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
    use palisade_core::selector::Selector;

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
