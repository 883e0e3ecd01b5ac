//! A source's documents: parsing them (characters checked, JSON or YAML as kubectl reads
//! them) and finding where a field of one object lies in them, for problems found later.

use std::sync::{Arc, OnceLock};

use palisade_core::field::{FieldPath, Locate, Location, Seg};

use crate::tree::{Node, ParseError, Span};
use crate::{json, text, yaml};

/// A source's documents, parsed again only when a position inside one is asked for (a problem
/// found after decoding): the trees are dropped once their objects are decoded.
pub struct Positions {
    pub(crate) text: Arc<str>,
    pub(crate) docs: OnceLock<Vec<Node>>,
}

impl Positions {
    fn doc(&self, i: usize) -> Option<&Node> {
        self.docs.get_or_init(|| parse_source(&self.text).unwrap_or_default()).get(i)
    }
}

/// Locates field paths inside one object of one document.
pub struct DocLocator {
    pub file: Arc<str>,
    pub(crate) positions: Arc<Positions>,
    /// Which (non-empty) document of the source.
    pub(crate) doc: usize,
    /// Path of the object inside its document (`items[3]` for a List item).
    pub base: FieldPath,
    /// Where the object starts: asked for every object, so kept.
    pub(crate) root: Span,
    /// Where each rule of `spec.ingress` and `spec.egress` starts: the build asks it of every
    /// valid policy (the model keeps each rule's place for traces), so it is taken while the
    /// tree is at hand; a valid load then never parses its text a second time.
    pub(crate) rules: RuleSpans,
}

/// The spans of `spec.ingress[i]` and `spec.egress[i]` as [`Node::locate`] shows them.
#[derive(Default)]
pub(crate) struct RuleSpans {
    ingress: Box<[Span]>,
    egress: Box<[Span]>,
}

impl RuleSpans {
    pub(crate) fn of(object: &Node) -> RuleSpans {
        let Some(spec) = object.get("spec") else { return RuleSpans::default() };
        let spans = |field: &str| -> Box<[Span]> {
            spec.get(field)
                .and_then(Node::items)
                .map_or_else(Box::default, |rules| rules.iter().map(|r| r.at).collect())
        };
        RuleSpans { ingress: spans("ingress"), egress: spans("egress") }
    }

    /// The span of `path` when it names one rule (`spec.ingress[2]`).
    fn get(&self, path: &FieldPath) -> Option<Span> {
        let [Seg::Key(spec), Seg::Key(field), Seg::Index(i)] = path.0.as_slice() else { return None };
        let rules = match (spec.as_str(), field.as_str()) {
            ("spec", "ingress") => &self.ingress,
            ("spec", "egress") => &self.egress,
            _ => return None,
        };
        rules.get(*i).copied()
    }
}

impl DocLocator {
    pub(crate) fn location(&self, at: Span) -> Location {
        Location {
            file: self.file.clone(),
            line: at.line as usize,
            column: at.column as usize,
            offset: at.offset as usize,
            len: at.len as usize,
        }
    }

    pub(crate) fn item(&self, i: usize, item: &Node) -> DocLocator {
        DocLocator {
            file: self.file.clone(),
            positions: self.positions.clone(),
            doc: self.doc,
            base: self.base.key("items").index(i),
            root: item.at,
            rules: RuleSpans::of(item),
        }
    }
}

impl Locate for DocLocator {
    fn locate(&self, path: &FieldPath) -> Option<Location> {
        if path.0.is_empty() {
            return Some(self.location(self.root));
        }
        if let Some(at) = self.rules.get(path) {
            return Some(self.location(at));
        }
        let at = self.positions.doc(self.doc).map_or(self.root, |d| d.locate(&self.base.join(path)));
        Some(self.location(at))
    }
    fn locate_value(&self, path: &FieldPath) -> Option<Location> {
        if path.0.is_empty() {
            return Some(self.location(self.root));
        }
        let (at, list) =
            self.positions.doc(self.doc).map_or((self.root, false), |d| d.locate_value(&self.base.join(path)));
        Some(self.location(if list { block_sequence_start(&self.positions.text, at) } else { at }))
    }
}

/// A block sequence starts at its first `-`, which the tree's span (the first item's
/// contents) leaves out: step back over the blanks to it, on the same line.
fn block_sequence_start(text: &str, at: Span) -> Span {
    let before = &text.as_bytes()[..(at.offset as usize).min(text.len())];
    let blanks = before.iter().rev().take_while(|&&b| b == b' ').count();
    match before.len().checked_sub(blanks + 1).map(|i| (i, before[i])) {
        Some((i, b'-')) if blanks > 0 && (at.column as usize) > blanks + 1 => {
            Span { offset: i as u32, column: at.column - blanks as u32 - 1, ..at }
        }
        _ => at,
    }
}

/// Why a source could not be parsed: the error, what was being read and what helps.
pub(crate) type Unparsed = (ParseError, &'static str, &'static str);

/// Checks the characters, then parses as kubectl would: a JSON stream when the text starts
/// with `{`, else YAML.
pub(crate) fn parse_source(src: &str) -> Result<Vec<Node>, Unparsed> {
    if let Err(f) = text::check(src) {
        let (line, column) = text::line_column(src, f.offset);
        let pos = crate::tree::Pos { line, column, offset: f.offset };
        let help = "manifests are UTF-8 text without control characters (kubectl refuses them too): remove it, or write it as an escape inside a double-quoted string if it is meant";
        return Err((ParseError { pos, message: f.message }, "text", help));
    }
    if json::is_json(src) {
        let help = "a file that starts with { is read as JSON, as kubectl reads it: strict JSON, without comments, trailing commas, single quotes or NaN";
        json::parse(src).map_err(|e| (e, "JSON", help))
    } else {
        yaml::parse(src).map_err(|e| (e, "YAML", "fix the YAML syntax; documents are separated by lines of ---"))
    }
}
