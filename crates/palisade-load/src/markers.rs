//! Document markers read as kubectl reads them, before the YAML parser sees the stream.
//!
//! kubectl cuts a YAML stream into documents at every line that starts with `---`
//! (apimachinery's `YAMLReader`), allowing only blanks and a comment after it ("invalid Yaml
//! document separator"), and hands each piece to go-yaml, which reads its first document only.
//! So after a document end marker `...` everything up to the next `---` line is ignored by
//! kubectl, where a YAML 1.2 parser reads it as another document. Palisade refuses both rather
//! than read a policy the cluster never gets (or miss one it does).

use crate::tree::{ParseError, Pos};

/// Checks every line that starts with `---` or is a `...` marker; the first offending line is
/// the error, positioned at its content.
pub fn check(text: &str) -> Result<(), ParseError> {
    let mut after_end: Option<usize> = None;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let at = |col: usize| Pos { line: i + 1, column: line[..col].chars().count() + 1, offset: offset + col };
        if let Some(rest) = line.strip_prefix("---") {
            let content = rest.len() - rest.trim_start().len();
            if !rest.trim().is_empty() && !rest.trim_start().starts_with('#') {
                return Err(ParseError {
                    pos: at(3 + content),
                    message: "kubectl allows only a comment after the document separator --- (invalid Yaml document separator): put the content on the next line".into(),
                });
            }
            after_end = None;
        } else if is_end_marker(line) {
            after_end.get_or_insert(i + 1);
        } else if let Some(end_line) = after_end {
            let content = line.len() - line.trim_start().len();
            if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
                return Err(ParseError {
                    pos: at(content),
                    message: format!("kubectl ignores everything after the document end marker ... (line {end_line}) up to the next --- line: start a new document with ---, or remove it"),
                });
            }
        }
        offset += line.len();
    }
    Ok(())
}

/// `...` followed by the end of the line, a blank or a comment (YAML's document end marker).
fn is_end_marker(line: &str) -> bool {
    line.strip_prefix("...").is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails(text: &str) -> Option<(usize, usize, String)> {
        check(text).err().map(|e| (e.pos.line, e.pos.column, e.message))
    }

    #[test]
    fn markers_follow_kubectl() {
        for ok in [
            "a: 1\n",
            "a: 1\n...\n",
            "a: 1\n... # end\n\n# note\n--- # next\nb: 2\n...\n...\n",
            "a: 1\r\n...\r\n---\r\nb: 2\r\n",
            "a: |\n  ...\n  --- x\n",
            "a: ...x\n....\n",
        ] {
            assert_eq!(fails(ok), None, "{ok:?}");
        }
        for (text, line, column, what) in [
            ("a: 1\n...\nb: 2\n", 3, 1, "document end marker ... (line 2)"),
            ("...\na: 1\n", 2, 1, "(line 1)"),
            ("a: 1\n...\n# c\n  b: 2\n---\n", 4, 3, "up to the next ---"),
            ("a: 1\n--- {b: 2}\n", 2, 5, "invalid Yaml document separator"),
            ("a: 1\n---b\n", 2, 4, "only a comment"),
            ("é: 1\n...\n\tb\n", 3, 2, "ignores everything"),
        ] {
            let (l, c, m) = fails(text).unwrap_or_else(|| panic!("{text:?} passed"));
            assert_eq!((l, c), (line, column), "{text:?}: {m}");
            assert!(m.contains(what), "{text:?}: {m}");
        }
    }
}
