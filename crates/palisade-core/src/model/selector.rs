//! Kubernetes label selectors as data: requirements, matched and printed (kubectl's notation).

use std::collections::BTreeSet;
use std::fmt;

use crate::model::label::Labels;

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
