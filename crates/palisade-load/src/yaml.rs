//! YAML (and JSON) documents as trees that remember where every node was written.
//!
//! yaml-rust2's event parser gives each node its position; we build the tree ourselves, resolve
//! plain scalars as kubectl's YAML library does (YAML 1.1 booleans included), reject duplicate
//! keys, and convert to `serde_json::Value` for typed decoding.

use std::collections::HashMap;

use palisade_core::field::{FieldPath, Seg};
use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position: 1-based line and column, 0-based byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
    pub offset: usize,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Scalar { text: String, plain: bool, tag: Option<String> },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: Kind,
    pub pos: Pos,
    /// Length in bytes of the node's first token (for highlighting scalars).
    pub len: usize,
}

/// A syntax error, or a structural one (duplicate key).
#[derive(Clone, Debug)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Turns yaml-rust2 markers (char index, line, char column) into byte offsets. Markers arrive
/// nearly in order, so a cursor that moves forward keeps this linear even for one-line JSON.
struct Lines<'a> {
    text: &'a str,
    cursor: std::cell::Cell<(usize, usize)>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines { text, cursor: std::cell::Cell::new((0, 0)) }
    }
    fn byte_of_char(&self, char_index: usize) -> usize {
        let (mut ci, mut bi) = self.cursor.get();
        if char_index < ci {
            (ci, bi) = (0, 0);
        }
        for c in self.text[bi..].chars() {
            if ci == char_index {
                break;
            }
            ci += 1;
            bi += c.len_utf8();
        }
        self.cursor.set((ci, bi));
        bi
    }
    fn pos(&self, m: &Marker) -> Pos {
        Pos { line: m.line().max(1), column: m.col() + 1, offset: self.byte_of_char(m.index()) }
    }
}

enum Frame {
    Seq(Vec<Node>, Pos, usize),
    Map(Vec<(Node, Node)>, Option<Node>, Pos, usize),
}

struct Builder<'a> {
    lines: Lines<'a>,
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: HashMap<usize, Node>,
    error: Option<YamlError>,
}

impl Builder<'_> {
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(items, ..)) => items.push(node),
            Some(Frame::Map(entries, key, ..)) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if let Kind::Scalar { text, .. } = &k.kind {
                        let dup =
                            entries.iter().any(|(e, _)| matches!(&e.kind, Kind::Scalar { text: t, .. } if t == text));
                        if dup && self.error.is_none() {
                            self.error =
                                Some(YamlError { pos: k.pos, message: format!("duplicate key {text:?} in mapping") });
                        }
                    }
                    entries.push((k, node));
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = self.lines.pos(&mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let len = if style == TScalarStyle::Plain { text.len().max(1) } else { text.len() + 2 };
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                let node = Node { kind: Kind::Scalar { text, plain: style == TScalarStyle::Plain, tag }, pos, len };
                self.finish(node, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(Vec::new(), pos, anchor)),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map(Vec::new(), None, pos, anchor)),
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, pos, anchor)) = self.stack.pop() {
                    self.finish(Node { kind: Kind::Seq(items), pos, len: 1 }, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, _, pos, anchor)) = self.stack.pop() {
                    // A block mapping's start event is marked after its first key: point at the key.
                    let pos = entries.first().map(|(k, _)| k.pos).filter(|k| k.offset < pos.offset).unwrap_or(pos);
                    let len = entries.first().map(|(k, _)| k.len).unwrap_or(1);
                    self.finish(Node { kind: Kind::Map(entries), pos, len }, anchor);
                }
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node {
                    kind: Kind::Scalar { text: String::new(), plain: true, tag: None },
                    pos,
                    len: 1,
                });
                self.finish(node, 0);
            }
            _ => {}
        }
    }
}

/// Parses every document of a YAML or JSON stream. Empty documents are dropped.
pub fn parse(text: &str) -> Result<Vec<Node>, YamlError> {
    let mut b =
        Builder { lines: Lines::new(text), stack: Vec::new(), docs: Vec::new(), anchors: HashMap::new(), error: None };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut b, true) {
        let pos = b.lines.pos(e.marker());
        return Err(YamlError { pos, message: e.info().to_string() });
    }
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.docs.into_iter().filter(|d| !d.is_null()).collect())
}

impl Node {
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true, tag: None } if is_null_text(text))
    }

    /// Converts to JSON, resolving plain scalars to null, bool, int, float or string.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Scalar { text, plain, tag } => scalar(text, *plain, tag.as_deref()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => {
                let mut m = Map::new();
                for (k, v) in entries {
                    let key = match &k.kind {
                        Kind::Scalar { text, .. } => text.clone(),
                        _ => k.to_json().to_string(),
                    };
                    m.insert(key, v.to_json());
                }
                Value::Object(m)
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.kind, Kind::Scalar { text, .. } if text == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The key node of `key` in a mapping (for pointing at a field name).
    pub fn key_node(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.kind, Kind::Scalar { text, .. } if text == key))
                .map(|(k, _)| k),
            _ => None,
        }
    }

    /// The node at `path`, or the deepest ancestor that exists. A mapping value that is a
    /// collection is pointed at through its key, which is where a reader looks.
    pub fn locate(&self, path: &FieldPath) -> &Node {
        let mut node = self;
        let mut shown = self;
        for seg in &path.0 {
            let next = match (seg, &node.kind) {
                (Seg::Key(k), Kind::Map(_)) => node.get(k).map(|v| (v, node.key_node(k))),
                (Seg::Index(i), Kind::Seq(items)) => items.get(*i).map(|v| (v, None)),
                _ => None,
            };
            let Some((v, key)) = next else { break };
            shown = match (&v.kind, key) {
                (Kind::Scalar { .. }, _) => v,
                (_, Some(k)) => k,
                (_, None) => v,
            };
            node = v;
        }
        shown
    }
}

fn is_null_text(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

fn scalar(text: &str, plain: bool, tag: Option<&str>) -> Value {
    match tag {
        Some("!!str") => return Value::String(text.to_string()),
        Some("!!int") | Some("!!float") | Some("!!bool") | Some("!!null") => {}
        Some(_) | None if !plain => return Value::String(text.to_string()),
        _ => {}
    }
    if is_null_text(text) {
        return Value::Null;
    }
    // YAML 1.1 booleans, as sigs.k8s.io/yaml (go-yaml v2) resolves them.
    match text {
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => return Value::Bool(true),
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => {
            return Value::Bool(false)
        }
        _ => {}
    }
    if let Some(n) = parse_int(text) {
        return Value::Number(n.into());
    }
    if let Some(f) = parse_float(text) {
        if let Some(n) = Number::from_f64(f) {
            return Value::Number(n);
        }
    }
    Value::String(text.to_string())
}

fn parse_int(s: &str) -> Option<i64> {
    let t = s.replace('_', "");
    let (neg, digits) = match t.strip_prefix('-') {
        Some(r) => (true, r.to_string()),
        None => (false, t.strip_prefix('+').unwrap_or(&t).to_string()),
    };
    let v = if let Some(h) = digits.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = digits.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') && digits.chars().all(|c| c.is_ascii_digit()) {
        i64::from_str_radix(&digits, 8).ok()?
    } else if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

fn parse_float(s: &str) -> Option<f64> {
    let looks_numeric = s.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '.' || c == '-' || c == '+')
        && s.chars().any(|c| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+' | '_'));
    if looks_numeric {
        s.replace('_', "").parse().ok()
    } else {
        None
    }
}

/// Writes JSON values as YAML documents (`---` between them), for output meant to be applied.
pub fn emit(docs: &[serde_json::Value]) -> String {
    fn to_yaml(v: &serde_json::Value) -> yaml_rust2::Yaml {
        use yaml_rust2::Yaml;
        match v {
            serde_json::Value::Null => Yaml::Null,
            serde_json::Value::Bool(b) => Yaml::Boolean(*b),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Yaml::Integer(i),
                // Whole floats (Calico's order) print as integers, as people write them.
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => Yaml::Integer(f as i64),
                _ => Yaml::Real(n.to_string()),
            },
            serde_json::Value::String(s) => Yaml::String(s.clone()),
            serde_json::Value::Array(a) => Yaml::Array(a.iter().map(to_yaml).collect()),
            serde_json::Value::Object(m) => {
                Yaml::Hash(m.iter().map(|(k, v)| (Yaml::String(k.clone()), to_yaml(v))).collect())
            }
        }
    }
    let mut out = String::new();
    for d in docs {
        let mut text = String::new();
        let mut emitter = yaml_rust2::YamlEmitter::new(&mut text);
        emitter.dump(&to_yaml(d)).expect("writing to a String cannot fail");
        out.push_str(&text);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_point_at_values() {
        let docs = parse("a: 1\nspec:\n  ports:\n  - port: \"http\"\n").unwrap();
        let n = docs[0].locate(&FieldPath::parse("spec.ports[0].port"));
        assert_eq!((n.pos.line, n.pos.column), (4, 11));
        assert_eq!(docs[0].to_json()["spec"]["ports"][0]["port"], Value::String("http".into()));
    }

    #[test]
    fn scalars_resolve_like_kubectl() {
        let v = parse("a: 80\nb: \"80\"\nc: yes\nd: ~\ne: 1.5\nf: 0x10\n").unwrap()[0].to_json();
        assert_eq!(v["a"], 80);
        assert_eq!(v["b"], "80");
        assert_eq!(v["c"], true);
        assert!(v["d"].is_null());
        assert_eq!(v["e"], 1.5);
        assert_eq!(v["f"], 16);
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_have_positions() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos.line, 3);
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1);
    }

    #[test]
    fn multi_document_and_json() {
        let docs = parse("---\na: 1\n---\n---\n{\"b\": [1, 2]}\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].to_json()["b"][1], 2);
    }

    #[test]
    fn anchors_and_aliases() {
        let v = parse("x: &l {app: web}\ny: *l\n").unwrap()[0].to_json();
        assert_eq!(v["y"]["app"], "web");
    }
}
