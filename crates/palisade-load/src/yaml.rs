//! YAML into positioned trees, as kubectl's YAML library reads it.
//!
//! yaml-rust2's event parser gives each node its position; we build the tree ourselves (one
//! pass, no recursion), resolve plain scalars as sigs.k8s.io/yaml (go-yaml v2, YAML 1.1
//! booleans included) does, convert keys as its YAML→JSON step does, and refuse what it refuses
//! or what could read differently there: duplicate keys, non-string keys, merge keys, recursive
//! anchors, unknown tags and nesting deeper than [`MAX_DEPTH`]. Aliases share the anchored
//! node; decoding bounds what they expand to.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::tree::{first_duplicate, Entry, Scratch};
pub use crate::tree::{Kind, Node, ParseError, Pos, Span, MAX_DEPTH};

/// Kept for callers that name the old error type.
pub type YamlError = ParseError;

/// Char index (yaml-rust2's markers count characters) to byte offset, in constant time:
/// identity for ASCII text, else from a checkpoint every 64 characters.
struct Offsets {
    checkpoints: Option<Vec<u32>>,
    text_len: usize,
}

impl Offsets {
    fn new(text: &str) -> Self {
        if text.is_ascii() {
            return Offsets { checkpoints: None, text_len: text.len() };
        }
        let mut cps = Vec::with_capacity(text.len() / 64 + 1);
        for (ci, (bi, _)) in text.char_indices().enumerate() {
            if ci % 64 == 0 {
                cps.push(bi as u32);
            }
        }
        Offsets { checkpoints: Some(cps), text_len: text.len() }
    }

    fn byte(&self, text: &str, char_index: usize) -> usize {
        let Some(cps) = &self.checkpoints else { return char_index.min(self.text_len) };
        let Some(&start) = cps.get(char_index / 64) else { return self.text_len };
        let skip = char_index % 64;
        text[start as usize..].char_indices().nth(skip).map_or(self.text_len, |(b, _)| start as usize + b)
    }
}

/// An open collection; its children so far are in the scratch buffers from `from` on.
enum Frame {
    Seq { from: usize, at: Span, anchor: usize },
    Map { from: usize, key: Option<(Box<str>, Span)>, at: Span, anchor: usize },
}

struct Builder<'a> {
    text: &'a str,
    offsets: Offsets,
    stack: Vec<Frame>,
    scratch: Scratch,
    docs: Vec<Node>,
    anchors: HashMap<usize, Arc<Node>>,
    open_anchors: HashSet<usize>,
}

fn err(at: Span, message: impl Into<String>) -> ParseError {
    ParseError { pos: at.pos(), message: message.into() }
}

impl Builder<'_> {
    fn span(&self, m: &Marker, len: usize) -> Span {
        Span {
            offset: self.offsets.byte(self.text, m.index()) as u32,
            line: m.line().max(1) as u32,
            column: (m.col() + 1) as u32,
            len: len as u32,
        }
    }

    fn finish(&mut self, mut node: Node, anchor: usize) -> Result<(), ParseError> {
        let is_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
        if matches!(node.kind, Kind::Float(f) if !f.is_finite()) && !is_key {
            // sigs.k8s.io/yaml's json.Marshal fails on them: kubectl refuses the document.
            return Err(err(node.at, "infinity and NaN have no JSON form: kubectl refuses them (json: unsupported value); quote the value if it is text"));
        }
        if anchor > 0 {
            let shared = Arc::new(node);
            self.open_anchors.remove(&anchor);
            self.anchors.insert(anchor, shared.clone());
            node = Node { at: shared.at, kind: Kind::Anchor(shared) };
        }
        match self.stack.last_mut() {
            None => {
                if !node.is_null() {
                    self.docs.push(node);
                }
            }
            Some(Frame::Seq { .. }) => self.scratch.items.push(node),
            Some(Frame::Map { key, .. }) => match key.take() {
                None => *key = Some(map_key(&node)?),
                Some((k, key_at)) => self.scratch.entries.push(Entry { key: k, key_at, value: node }),
            },
        }
        Ok(())
    }

    fn on_event(&mut self, ev: Event, mark: Marker) -> Result<(), ParseError> {
        if matches!(ev, Event::Scalar(..) | Event::Alias(_) | Event::SequenceStart(..) | Event::MappingStart(..)) {
            self.no_tab_after_dash(&mark)?;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain;
                let len = if plain { text.len().max(1) } else { text.len() + 2 };
                let at = self.span(&mark, len);
                let kind = scalar(text, plain, tag.as_ref()).map_err(|m| err(at, m.to_string()))?;
                self.finish(Node { kind, at }, anchor)
            }
            Event::SequenceStart(anchor, tag) => self.open(true, &mark, anchor, tag.as_ref()),
            Event::MappingStart(anchor, tag) => self.open(false, &mark, anchor, tag.as_ref()),
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq { from, at, anchor }) => {
                    let kind = self.scratch.seq(from);
                    self.finish(Node { kind, at }, anchor)
                }
                _ => Ok(()),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map { from, at, anchor, .. }) => {
                    let entries = self.scratch.map(from);
                    if let Some(dup) = first_duplicate(&entries) {
                        return Err(err(dup.key_at, format!("duplicate key {:?} in mapping", dup.key)));
                    }
                    // A block mapping's start event is marked after its first key: point at the key.
                    let at = entries.first().map(|e| e.key_at).filter(|k| k.offset < at.offset).unwrap_or(at);
                    self.finish(Node { kind: Kind::Map(entries), at }, anchor)
                }
                _ => Ok(()),
            },
            Event::Alias(id) => {
                let at = self.span(&mark, 1);
                match self.anchors.get(&id) {
                    Some(target) => {
                        let node = Node { kind: Kind::Alias(target.clone()), at };
                        self.finish(node, 0)
                    }
                    None if self.open_anchors.contains(&id) => {
                        Err(err(at, "an alias refers to the anchored collection that contains it"))
                    }
                    None => Err(err(at, "an alias refers to an unknown anchor")),
                }
            }
            Event::DocumentStart => {
                self.anchors.clear();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// go-yaml (kubectl) allows no tab after a block sequence's `-` (libyaml eats tabs only
    /// where no simple key may start); YAML 1.2 parsers read `-\tname: x` as an item. The
    /// error points at the tab.
    fn no_tab_after_dash(&self, mark: &Marker) -> Result<(), ParseError> {
        let b = self.text.as_bytes();
        let offset = self.offsets.byte(self.text, mark.index());
        let (mut i, mut tab) = (offset, None);
        while i > 0 && matches!(b[i - 1], b' ' | b'\t') {
            i -= 1;
            if b[i] == b'\t' {
                tab = Some(i);
            }
        }
        let Some(tab) = tab else { return Ok(()) };
        let dash = i > 0 && b[i - 1] == b'-' && (i == 1 || matches!(b[i - 2], b' ' | b'\n' | b'\r'));
        if !dash {
            return Ok(());
        }
        let pos = Pos { line: mark.line().max(1), column: mark.col() + 1 - (offset - tab), offset: tab };
        Err(ParseError {
            pos,
            message: "a tab after a list item's - : kubectl refuses it (found character that cannot start any token); indent with spaces".into(),
        })
    }

    fn open(&mut self, seq: bool, mark: &Marker, anchor: usize, tag: Option<&Tag>) -> Result<(), ParseError> {
        let at = self.span(mark, 1);
        if let Some(t) = tag {
            if core_tag(t) != Some(if seq { "seq" } else { "map" }) {
                return Err(err(at, format!("unsupported tag {}{}", t.handle, t.suffix)));
            }
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(err(at, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        if anchor > 0 {
            self.open_anchors.insert(anchor);
        }
        self.stack.push(if seq {
            Frame::Seq { from: self.scratch.items.len(), at, anchor }
        } else {
            Frame::Map { from: self.scratch.entries.len(), key: None, at, anchor }
        });
        Ok(())
    }
}

/// `str` for `!!str` (also spelt out as `tag:yaml.org,2002:str`); `None` for other tags.
fn core_tag(t: &Tag) -> Option<&str> {
    matches!(t.handle.as_str(), "!!" | "tag:yaml.org,2002:").then_some(t.suffix.as_str())
}

/// A mapping key as sigs.k8s.io/yaml's YAML→JSON step makes it (see [`crate::resolve`]):
/// strings as they are, numbers and booleans as their text (`on:` is the key "true", `0X1F:`
/// the key "31"); merge keys, null, uint64 and collection keys are refused.
fn map_key(node: &Node) -> Result<(Box<str>, Span), ParseError> {
    let key = match &node.kind {
        Kind::Str(s) if &**s == "<<" && node.at.len == 2 => {
            return Err(err(node.at, "merge keys (<<) are not supported: write the keys out"))
        }
        Kind::Str(s) => s.clone(),
        other => match crate::resolve::json_key(other) {
            Ok(k) => k.unwrap_or_default().into(),
            Err(why) => return Err(err(node.at, why)),
        },
    };
    Ok((key, node.at))
}

/// Parses every document of a YAML stream (or JSON read as YAML), its document markers as
/// kubectl reads them ([`crate::markers`]). Empty documents are dropped.
pub fn parse(text: &str) -> Result<Vec<Node>, ParseError> {
    crate::markers::check(text)?;
    let mut b = Builder {
        text,
        offsets: Offsets::new(text),
        stack: Vec::new(),
        scratch: Scratch::default(),
        docs: Vec::new(),
        anchors: HashMap::new(),
        open_anchors: HashSet::new(),
    };
    let mut parser = Parser::new_from_str(text);
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| {
            let m = e.marker();
            ParseError {
                pos: Pos { line: m.line().max(1), column: m.col() + 1, offset: b.offsets.byte(text, m.index()) },
                message: e.info().to_string(),
            }
        })?;
        if ev == Event::StreamEnd {
            break;
        }
        b.on_event(ev, mark)?;
    }
    Ok(b.docs)
}

/// A scalar whose tag asks for what it cannot be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum ScalarError {
    #[error("unsupported tag {0}")]
    Tag(String),
    #[error("cannot read {text:?} as !!{tag}")]
    NotOfTag { text: String, tag: String },
}

/// Resolves a scalar as go-yaml v2 does for an untyped target: explicit core tags first, quoted
/// scalars are strings, plain ones null, bool (YAML 1.1), int, float or string.
fn scalar(text: String, plain: bool, tag: Option<&Tag>) -> Result<Kind, ScalarError> {
    let tag = match tag {
        None => None,
        Some(t) => match core_tag(t) {
            Some(s @ ("str" | "int" | "float" | "bool" | "null")) => Some(s),
            _ => return Err(ScalarError::Tag(format!("{}{}", t.handle, t.suffix))),
        },
    };
    if tag == Some("str") || (tag.is_none() && !plain) {
        return Ok(Kind::Str(text.into_boxed_str()));
    }
    let kind = crate::resolve::resolve_plain(&text);
    match (tag, &kind) {
        (None, Kind::Str(_)) => Ok(Kind::Str(text.into_boxed_str())),
        (None, _)
        | (Some("int"), Kind::Int(_) | Kind::Uint(_))
        | (Some("bool"), Kind::Bool(_))
        | (Some("null"), Kind::Null) => Ok(kind),
        (Some("float"), Kind::Float(_)) => Ok(kind),
        (Some("float"), Kind::Int(i)) => Ok(Kind::Float(*i as f64)),
        (Some(tag), _) => Err(ScalarError::NotOfTag { text, tag: tag.to_string() }),
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
    use palisade_core::field::FieldPath;
    use serde_json::Value;

    #[test]
    fn positions_are_one_based_and_point_at_values() {
        let docs = parse("a: 1\nspec:\n  ports:\n  - port: \"http\"\n").unwrap();
        let n = docs[0].locate(&FieldPath::parse("spec.ports[0].port"));
        assert_eq!((n.line, n.column), (4, 11));
        assert_eq!(docs[0].to_json()["spec"]["ports"][0]["port"], Value::String("http".into()));
    }

    #[test]
    fn scalars_resolve_like_kubectl() {
        let v = parse("a: 80\nb: \"80\"\nc: yes\nd: ~\ne: 1.5\nf: 0x10\ng: !!str 5\nh: 0o17\ni: 1_000\nj: 017\n")
            .unwrap()[0]
            .to_json();
        assert_eq!(v["a"], 80);
        assert_eq!(v["b"], "80");
        assert_eq!(v["c"], true);
        assert!(v["d"].is_null());
        assert_eq!(v["e"], 1.5);
        assert_eq!(v["f"], 16);
        assert_eq!(v["g"], "5");
        assert_eq!(v["h"], 15);
        assert_eq!(v["i"], 1000);
        assert_eq!(v["j"], 15);
    }

    #[test]
    fn a_tab_after_a_dash_is_refused_as_kubectl_refuses_it() {
        for (text, line, column) in
            [("a:\n-\tname: x\n", 2, 2), ("a:\n  - \tb\n", 2, 5), ("- - \t\tx\n", 1, 5), ("-\t[1]\n", 1, 2)]
        {
            let e = parse(text).unwrap_err();
            assert_eq!((e.pos.line, e.pos.column), (line, column), "{text:?}: {}", e.message);
            assert!(e.message.contains("a tab after a list item's -"), "{text:?}: {}", e.message);
        }
        for ok in ["a:\n- name: x\n", "a: \"-\tb\"\n", "a: |\n  -\tb\n", "a: [-1,\t2]\n", "a: x-\t\n"] {
            assert!(parse(ok).is_ok(), "{ok:?}: {:?}", parse(ok).err());
        }
    }

    #[test]
    fn keys_convert_as_kubectl_does() {
        let v = parse("on: a\n1: b\n\"x\": c\n0X1F: d\n1.10: e\n\"0X1F\": f\n").unwrap()[0].to_json();
        assert_eq!(v["true"], "a");
        assert_eq!(v["1"], "b");
        assert_eq!(v["31"], "d");
        assert_eq!(v["1.1"], "e");
        assert_eq!(v["0X1F"], "f");
        // Two spellings of one key are a duplicate, as they are for kubectl.
        assert!(parse("31: a\n0x1f: b\n").unwrap_err().message.contains("duplicate key \"31\""));
        for (text, line, what) in [
            ("a: 1\n~: 2\n", 2, "null"),
            ("a:\n  9223372036854775808: x\n", 2, "uint64"),
            ("a: .inf\n", 1, "no JSON form"),
            ("a: [1, -.Inf]\n", 1, "no JSON form"),
            ("? [a]\n: 1\n", 1, "collection"),
            ("a: &b {x: 1}\nc:\n  <<: *b\n", 3, "merge keys"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.pos.line, line, "{text:?}");
            assert!(e.message.contains(what), "{text:?}: {}", e.message);
        }
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_have_positions() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!((e.pos.line, e.pos.column), (3, 1));
        let many: String = (0..100).map(|i| format!("k{i}: {i}\n")).collect::<String>() + "k7: x\n";
        assert_eq!(parse(&many).unwrap_err().pos.line, 101);
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
    fn anchors_and_aliases_share_nodes() {
        let docs = parse("x: &l {app: web}\nz: *l\n").unwrap();
        assert_eq!(docs[0].to_json()["z"]["app"], "web");
        assert!(matches!(docs[0].get("z").unwrap().kind, Kind::Alias(_)));
        let e = parse("a: &x\n  b: *x\n").unwrap_err();
        assert!(e.message.contains("contains it"), "{}", e.message);
    }

    #[test]
    fn depth_and_tags_are_bounded() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse(&deep).is_err());
        let deep_block: String = (0..200).map(|i| format!("{}k:\n", "  ".repeat(i))).collect();
        assert!(parse(&deep_block).unwrap_err().message.contains("nested deeper"));
        assert!(parse("a: !foo x\n").unwrap_err().message.contains("unsupported tag"));
        assert!(parse("a: !!int x\n").is_err());
    }

    #[test]
    fn offsets_are_bytes_also_after_wide_characters() {
        let text = format!("a: \"{}\"\nb: [x, y]\n", "é".repeat(100));
        let docs = parse(&text).unwrap();
        let at = docs[0].locate(&FieldPath::parse("b[1]"));
        assert_eq!(&text[at.offset as usize..at.offset as usize + 1], "y");
        assert_eq!((at.line, at.column), (2, 8));
    }
}
