//! A parsed document: values as kubectl's YAML→JSON step resolves them, each with where it was
//! written. YAML (`yaml`) and JSON (`json`) parse into it; `decode` reads typed objects from it.

use std::sync::Arc;

use palisade_core::field::{FieldPath, Seg};
use serde_json::{Map, Number, Value};

/// Where a node was written: 0-based byte offset, 1-based line and column (in characters), and
/// the length in bytes of its first token (for highlighting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub offset: u32,
    pub line: u32,
    pub column: u32,
    pub len: u32,
}

/// A position: 1-based line and column, 0-based byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
    pub offset: usize,
}

impl Span {
    pub fn pos(&self) -> Pos {
        Pos { line: self.line as usize, column: self.column as usize, offset: self.offset as usize }
    }
}

/// A value. Scalars are resolved (a plain YAML `80` is an `Int`, `"80"` a `Str`); an alias
/// shares the anchored node instead of copying it, so a document's size bounds its tree.
#[derive(Clone, Debug)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer beyond i64 (go-yaml resolves it to a `uint64`).
    Uint(u64),
    Float(f64),
    Str(Box<str>),
    Seq(Box<[Node]>),
    Map(Box<[Entry]>),
    /// An anchored node (`&a ...`), written here.
    Anchor(Arc<Node>),
    /// `*a`: the anchored node again. Decoding counts what aliases expand to.
    Alias(Arc<Node>),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: Kind,
    pub at: Span,
}

/// One mapping entry; keys are strings (YAML keys resolved as kubectl converts them).
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: Box<str>,
    pub key_at: Span,
    pub value: Node,
}

/// A syntax or structure error at a position.
#[derive(Clone, Debug)]
pub struct ParseError {
    pub pos: Pos,
    pub message: String,
}

/// Documents nested deeper than this are refused (serde_json's limit): no manifest comes close,
/// and recursive decoding must not exhaust the stack.
pub const MAX_DEPTH: usize = 128;

impl Node {
    /// The node an anchor or alias stands for.
    pub fn target(&self) -> &Node {
        match &self.kind {
            Kind::Anchor(n) | Kind::Alias(n) => n.target(),
            _ => self,
        }
    }

    pub fn pos(&self) -> Pos {
        self.at.pos()
    }

    pub fn is_null(&self) -> bool {
        matches!(self.target().kind, Kind::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.target().kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.target().kind {
            Kind::Map(e) => Some(e),
            _ => None,
        }
    }

    pub fn items(&self) -> Option<&[Node]> {
        match &self.target().kind {
            Kind::Seq(i) => Some(i),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries()?.iter().find(|e| &*e.key == key)
    }

    /// The node at `path`, or the deepest ancestor that exists, as the span to show: a mapping
    /// value that is a collection is pointed at through its key, which is where a reader looks.
    pub fn locate(&self, path: &FieldPath) -> Span {
        let mut node = self;
        let mut shown = self.at;
        for seg in &path.0 {
            let (next, key_at) = match seg {
                Seg::Key(k) => match node.entry(k) {
                    Some(e) => (&e.value, Some(e.key_at)),
                    None => break,
                },
                Seg::Index(i) => match node.items().and_then(|items| items.get(*i)) {
                    Some(v) => (v, None),
                    None => break,
                },
            };
            let collection = matches!(next.target().kind, Kind::Seq(_) | Kind::Map(_));
            shown = match key_at {
                Some(k) if collection => k,
                _ => next.at,
            };
            node = next;
        }
        shown
    }

    /// Like [`Node::locate`], but a mapping or list value shows where the value starts, not
    /// its key; also whether that value is a list (whose span is its first item's).
    pub fn locate_value(&self, path: &FieldPath) -> (Span, bool) {
        let mut node = self;
        for seg in &path.0 {
            let next = match seg {
                Seg::Key(k) => node.entry(k).map(|e| &e.value),
                Seg::Index(i) => node.items().and_then(|items| items.get(*i)),
            };
            match next {
                Some(n) => node = n,
                None => return (self.locate(path), false),
            }
        }
        (node.at, matches!(node.target().kind, Kind::Seq(_)))
    }

    /// Like [`Node::locate`], but a path that ends in a key shows the key (for unknown fields).
    pub fn locate_key(&self, path: &FieldPath) -> Span {
        let Some((Seg::Key(k), parent)) = path.0.split_last() else { return self.locate(path) };
        let parent = FieldPath(parent.to_vec());
        let mut node = self;
        for seg in &parent.0 {
            let next = match seg {
                Seg::Key(k) => node.get(k),
                Seg::Index(i) => node.items().and_then(|items| items.get(*i)),
            };
            match next {
                Some(n) => node = n,
                None => return self.locate(path),
            }
        }
        node.entry(k).map_or_else(|| self.locate(path), |e| e.key_at)
    }

    /// As JSON (tests and tools). Aliases are expanded: use it on trusted text only.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::Number((*i).into()),
            Kind::Uint(u) => Value::Number((*u).into()),
            Kind::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Kind::Str(s) => Value::String(s.to_string()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => {
                Value::Object(entries.iter().map(|e| (e.key.to_string(), e.value.to_json())).collect::<Map<_, _>>())
            }
            Kind::Anchor(n) | Kind::Alias(n) => n.to_json(),
        }
    }
}

/// Where parsers collect the children of open collections: one growing buffer for all levels,
/// so each finished collection is allocated once at its exact size.
#[derive(Default)]
pub struct Scratch {
    pub items: Vec<Node>,
    pub entries: Vec<Entry>,
}

impl Scratch {
    pub fn seq(&mut self, from: usize) -> Kind {
        Kind::Seq(self.items.drain(from..).collect())
    }
    pub fn map(&mut self, from: usize) -> Box<[Entry]> {
        self.entries.drain(from..).collect()
    }
}

/// Checks a mapping's keys for duplicates in linear time (small mappings by scanning, larger
/// ones with a hash set). Returns the first repeated entry.
pub fn first_duplicate(entries: &[Entry]) -> Option<&Entry> {
    if entries.len() <= 16 {
        return entries.iter().enumerate().find(|(i, e)| entries[..*i].iter().any(|p| p.key == e.key)).map(|(_, e)| e);
    }
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    entries.iter().find(|e| !seen.insert(&*e.key))
}
