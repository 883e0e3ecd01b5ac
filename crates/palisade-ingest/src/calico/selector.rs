//! Calico's selector fields: parsed with the column of any error inside them.

use palisade_core::expr::Expr;
use palisade_core::field::{FieldPath, Problems};

const SELECTOR_HELP: &str = "Calico selectors: k == \"v\", k != \"v\", k in {\"a\", \"b\"}, k not in {...}, has(k), !has(k), k contains/starts with/ends with \"s\", all(), global(), combined with !, && and || and parentheses; strings in single or double quotes";

/// Parses a selector field, reporting the column of any error inside it.
pub fn selector(text: &str, path: &FieldPath, problems: &mut Problems) -> Option<Expr> {
    match Expr::parse(text) {
        Ok(e) => Some(e),
        Err(e) => {
            problems.error_in(path, text, e.offset, format!("invalid selector: {e}"), SELECTOR_HELP);
            None
        }
    }
}

/// An optional selector field; blank means none.
pub(crate) fn opt_selector(text: Option<&String>, path: &FieldPath, problems: &mut Problems) -> Option<Expr> {
    let text = text.filter(|t| !t.trim().is_empty())?;
    selector(text, path, problems)
}
