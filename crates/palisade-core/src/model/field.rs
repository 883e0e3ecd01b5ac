//! Field paths (`spec.ingress[0].from[1].ipBlock.cidr`) and the problems found at them.
//!
//! The core never sees files: it reports problems against field paths, and a [`Locate`]
//! supplied by the loader turns a path into a file position.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path into an object, printed the way the API server prints it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        FieldPath(v)
    }
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        FieldPath(v)
    }
    /// Parses what Display prints: `a.b[2].c[some.key]`.
    pub fn parse(s: &str) -> Self {
        let mut p = FieldPath::root();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').unwrap_or(r.len());
                let inner = &r[..end];
                p = match inner.parse() {
                    Ok(i) => p.index(i),
                    Err(_) => p.key(inner),
                };
                rest = r.get(end + 1..).unwrap_or("");
            } else {
                let r = rest.strip_prefix('.').unwrap_or(rest);
                let end = r.find(['.', '[']).unwrap_or(r.len());
                if end > 0 {
                    p = p.key(&r[..end]);
                }
                rest = &r[end..];
            }
        }
        p
    }
    pub fn join(&self, other: &FieldPath) -> Self {
        let mut v = self.0.clone();
        v.extend(other.0.iter().cloned());
        FieldPath(v)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            match s {
                // Map keys such as label keys may contain dots: print them as `[key]`.
                Seg::Key(k) if k.contains(['.', '[', ']']) || k.is_empty() => write!(f, "[{k}]")?,
                Seg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        if first {
            f.write_str("<object>")?;
        }
        Ok(())
    }
}

/// A position in a source file (1-based line and column, 0-based byte offset).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
    #[serde(skip)]
    pub offset: usize,
    #[serde(skip)]
    pub len: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Maps a field path of one object to where it was written.
pub trait Locate: Send + Sync {
    /// The position of `path`, or of its nearest existing ancestor.
    fn locate(&self, path: &FieldPath) -> Option<Location>;
    /// The position of the value at `path` itself, also when it is a mapping or a list
    /// ([`Locate::locate`] shows such a value's key); by default the same as `locate`.
    fn locate_value(&self, path: &FieldPath) -> Option<Location> {
        self.locate(path)
    }
}

/// A locator that shows values, never keys: problems about a value's contents (a list too
/// long, a mapping with two fields) point at the value.
pub struct AtValues<'a>(pub &'a dyn Locate);
impl Locate for AtValues<'_> {
    fn locate(&self, path: &FieldPath) -> Option<Location> {
        self.0.locate_value(path)
    }
}

/// A locator for objects that were not read from a file (generated, tests).
pub struct Nowhere;
impl Locate for Nowhere {
    fn locate(&self, _: &FieldPath) -> Option<Location> {
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// Something wrong (or suspicious) with an input object.
#[derive(Clone, Debug)]
pub struct Problem {
    pub severity: Severity,
    /// `Kind namespace/name`, for messages.
    pub object: String,
    pub path: FieldPath,
    pub message: String,
    pub help: Option<String>,
    pub location: Option<Location>,
}

/// Collects problems for one object, resolving their locations as they arrive.
pub struct Problems<'a> {
    pub object: String,
    pub locate: &'a dyn Locate,
    pub base: FieldPath,
    pub list: Vec<Problem>,
}

impl<'a> Problems<'a> {
    pub fn new(object: String, locate: &'a dyn Locate) -> Self {
        Problems { object, locate, base: FieldPath::root(), list: Vec::new() }
    }
    fn push(&mut self, severity: Severity, path: &FieldPath, message: String, help: Option<String>) {
        let full = self.base.join(path);
        let location = self.locate.locate(&full);
        self.list.push(Problem { severity, object: self.object.clone(), path: full, message, help, location });
    }
    /// An error at `path`: what is wrong (a sentence, or a typed error), and what is allowed.
    pub fn error(&mut self, path: &FieldPath, message: impl std::fmt::Display, help: impl Into<String>) {
        let help = help.into();
        self.push(Severity::Error, path, message.to_string(), (!help.is_empty()).then_some(help));
    }
    pub fn warn(&mut self, path: &FieldPath, message: impl std::fmt::Display, help: impl Into<String>) {
        let help = help.into();
        self.push(Severity::Warning, path, message.to_string(), (!help.is_empty()).then_some(help));
    }
    /// An error at character `at` inside the string value `text` of `path` (a selector, say):
    /// the column points into the value when it was written on one line.
    pub fn error_in(
        &mut self,
        path: &FieldPath,
        text: &str,
        at: usize,
        message: impl std::fmt::Display,
        help: impl Into<String>,
    ) {
        let before = self.list.len();
        self.error(path, message, help);
        let Some(loc) = self.list[before].location.as_mut() else { return };
        let quote = match loc.len {
            n if n == text.len() => 0,
            n if n == text.len() + 2 => 1,
            _ => return,
        };
        let byte_at: usize = text.chars().take(at).map(char::len_utf8).sum();
        loc.column += quote + at;
        loc.offset += quote + byte_at;
        loc.len = 1;
    }
    pub fn has_errors(&self) -> bool {
        self.list.iter().any(|p| p.severity == Severity::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn paths_print_like_the_api_server() {
        let p = FieldPath::root().key("spec").key("ingress").index(0).key("from").index(2);
        assert_eq!(p.to_string(), "spec.ingress[0].from[2]");
        assert_eq!(FieldPath::parse("spec.ingress[0].from[2]"), p);
        let q = FieldPath::root().key("matchLabels").key("kubernetes.io/metadata.name");
        assert_eq!(q.to_string(), "matchLabels[kubernetes.io/metadata.name]");
        assert_eq!(FieldPath::parse(&q.to_string()), q);
    }
}
