//! Calico's selector language: `app == "web" && !has(debug) || tier in {"a", "b"}`.
//!
//! Tokens and precedence follow libcalico-go: `!` binds tightest, then `&&`, then `||`;
//! strings are single- or double-quoted without escapes; an empty selector is `all()`.
//! `global()` is true wherever it is evaluated on labels; in a namespaceSelector it is
//! rewritten to "not namespaced" ([`Expr::namespace_scope`]), as Calico does.

use std::collections::BTreeSet;
use std::fmt;

use crate::model::label::LabelLookup;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expr {
    All,
    Global,
    Has(String),
    Eq(String, String),
    Ne(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// A parse error: what was expected, at which character of the selector (0-based).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} at column {column}", column = .offset + 1)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

pub use crate::model::label::{
    NAMESPACE_LABEL, NAMESPACE_PREFIX, NAME_LABEL, ORCHESTRATOR_LABEL, SERVICE_ACCOUNT_LABEL, SERVICE_ACCOUNT_PREFIX,
};

impl Expr {
    pub fn parse(s: &str) -> Result<Expr, ParseError> {
        let tokens = tokenize(s)?;
        let mut p = Parser { tokens, pos: 0 };
        if p.peek().kind == Tok::Eof {
            return Ok(Expr::All);
        }
        let e = p.or()?;
        let t = p.peek();
        if t.kind != Tok::Eof {
            return Err(ParseError { offset: t.offset, message: format!("unexpected {} after the selector", t.kind) });
        }
        Ok(e)
    }

    /// Whether labels (a map, or an endpoint's labels as Calico sees them) satisfy this selector.
    pub fn matches<L: LabelLookup + ?Sized>(&self, labels: &L) -> bool {
        let get = |k: &str| labels.label(k);
        match self {
            Expr::All | Expr::Global => true,
            Expr::Has(k) => get(k).is_some(),
            Expr::Eq(k, v) => get(k) == Some(v.as_str()),
            Expr::Ne(k, v) => get(k) != Some(v.as_str()),
            Expr::In(k, set) => get(k).is_some_and(|v| set.contains(v)),
            Expr::NotIn(k, set) => get(k).is_none_or(|v| !set.contains(v)),
            Expr::Contains(k, s) => get(k).is_some_and(|v| v.contains(s.as_str())),
            Expr::StartsWith(k, s) => get(k).is_some_and(|v| v.starts_with(s.as_str())),
            Expr::EndsWith(k, s) => get(k).is_some_and(|v| v.ends_with(s.as_str())),
            Expr::Not(e) => !e.matches(labels),
            Expr::And(es) => es.iter().all(|e| e.matches(labels)),
            Expr::Or(es) => es.iter().any(|e| e.matches(labels)),
        }
    }

    pub fn and(parts: impl IntoIterator<Item = Expr>) -> Expr {
        let mut out = Vec::new();
        for p in parts {
            match p {
                Expr::All => {}
                Expr::And(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        match out.len() {
            0 => Expr::All,
            1 => out.pop().expect("one"),
            _ => Expr::And(out),
        }
    }

    /// Rewrites label keys with `prefix`, as Calico does for namespace (`pcns.`) and
    /// service-account (`pcsa.`) selectors evaluated on endpoints.
    pub fn prefixed(&self, prefix: &str) -> Expr {
        let p = |k: &String| format!("{prefix}{k}");
        match self {
            Expr::All => Expr::All,
            Expr::Global => Expr::Global,
            Expr::Has(k) => Expr::Has(p(k)),
            Expr::Eq(k, v) => Expr::Eq(p(k), v.clone()),
            Expr::Ne(k, v) => Expr::Ne(p(k), v.clone()),
            Expr::In(k, s) => Expr::In(p(k), s.clone()),
            Expr::NotIn(k, s) => Expr::NotIn(p(k), s.clone()),
            Expr::Contains(k, v) => Expr::Contains(p(k), v.clone()),
            Expr::StartsWith(k, v) => Expr::StartsWith(p(k), v.clone()),
            Expr::EndsWith(k, v) => Expr::EndsWith(p(k), v.clone()),
            Expr::Not(e) => Expr::Not(Box::new(e.prefixed(prefix))),
            Expr::And(es) => Expr::And(es.iter().map(|e| e.prefixed(prefix)).collect()),
            Expr::Or(es) => Expr::Or(es.iter().map(|e| e.prefixed(prefix)).collect()),
        }
    }

    /// A namespaceSelector as an endpoint selector: namespace labels become `pcns.` labels,
    /// `all()` means "any namespaced endpoint" and `global()` "any non-namespaced one".
    pub fn namespace_scope(&self) -> Expr {
        fn fix(e: Expr) -> Expr {
            match e {
                Expr::All => Expr::Has(NAMESPACE_LABEL.into()),
                Expr::Global => Expr::Not(Box::new(Expr::Has(NAMESPACE_LABEL.into()))),
                Expr::Not(e) => Expr::Not(Box::new(fix(*e))),
                Expr::And(es) => Expr::And(es.into_iter().map(fix).collect()),
                Expr::Or(es) => Expr::Or(es.into_iter().map(fix).collect()),
                other => other,
            }
        }
        fix(self.prefixed(NAMESPACE_PREFIX))
    }

    /// Every label key the expression reads.
    pub fn keys(&self, out: &mut BTreeSet<String>) {
        match self {
            Expr::All | Expr::Global => {}
            Expr::Has(k)
            | Expr::Eq(k, _)
            | Expr::Ne(k, _)
            | Expr::In(k, _)
            | Expr::NotIn(k, _)
            | Expr::Contains(k, _)
            | Expr::StartsWith(k, _)
            | Expr::EndsWith(k, _) => {
                out.insert(k.clone());
            }
            Expr::Not(e) => e.keys(out),
            Expr::And(es) | Expr::Or(es) => es.iter().for_each(|e| e.keys(out)),
        }
    }
}

fn quote(s: &str) -> String {
    if s.contains('"') {
        format!("'{s}'")
    } else {
        format!("\"{s}\"")
    }
}

fn set(s: &BTreeSet<String>) -> String {
    let items: Vec<String> = s.iter().map(|v| quote(v)).collect();
    format!("{{{}}}", items.join(", "))
}

impl Expr {
    fn write(&self, f: &mut fmt::Formatter<'_>, parent: u8) -> fmt::Result {
        // Precedence: 1 = ||, 2 = &&, 3 = operand.
        match self {
            Expr::All => f.write_str("all()"),
            Expr::Global => f.write_str("global()"),
            Expr::Has(k) => write!(f, "has({k})"),
            Expr::Eq(k, v) => write!(f, "{k} == {}", quote(v)),
            Expr::Ne(k, v) => write!(f, "{k} != {}", quote(v)),
            Expr::In(k, s) => write!(f, "{k} in {}", set(s)),
            Expr::NotIn(k, s) => write!(f, "{k} not in {}", set(s)),
            Expr::Contains(k, v) => write!(f, "{k} contains {}", quote(v)),
            Expr::StartsWith(k, v) => write!(f, "{k} starts with {}", quote(v)),
            Expr::EndsWith(k, v) => write!(f, "{k} ends with {}", quote(v)),
            Expr::Not(e) => match **e {
                Expr::And(_) | Expr::Or(_) => {
                    f.write_str("!(")?;
                    e.write(f, 0)?;
                    f.write_str(")")
                }
                Expr::Has(_) | Expr::All | Expr::Global | Expr::Not(_) => {
                    f.write_str("!")?;
                    e.write(f, 3)
                }
                _ => {
                    f.write_str("!(")?;
                    e.write(f, 0)?;
                    f.write_str(")")
                }
            },
            Expr::And(es) | Expr::Or(es) => {
                let (me, sep) = if matches!(self, Expr::And(_)) { (2, " && ") } else { (1, " || ") };
                let paren = parent > me;
                if paren {
                    f.write_str("(")?;
                }
                for (i, e) in es.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    e.write(f, me + 1)?;
                }
                if paren {
                    f.write_str(")")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, 0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Label(String),
    Str(String),
    LBrace,
    RBrace,
    Comma,
    Eq,
    Ne,
    In,
    NotIn,
    Not,
    Contains,
    StartsWith,
    EndsWith,
    All,
    Global,
    Has(String),
    LParen,
    RParen,
    And,
    Or,
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Label(l) => write!(f, "label {l}"),
            Tok::Str(s) => write!(f, "string {}", quote(s)),
            Tok::Eof => f.write_str("end of selector"),
            Tok::LBrace => f.write_str("'{'"),
            Tok::RBrace => f.write_str("'}'"),
            Tok::Comma => f.write_str("','"),
            Tok::Eq => f.write_str("'=='"),
            Tok::Ne => f.write_str("'!='"),
            Tok::In => f.write_str("'in'"),
            Tok::NotIn => f.write_str("'not in'"),
            Tok::Not => f.write_str("'!'"),
            Tok::Contains => f.write_str("'contains'"),
            Tok::StartsWith => f.write_str("'starts with'"),
            Tok::EndsWith => f.write_str("'ends with'"),
            Tok::All => f.write_str("all()"),
            Tok::Global => f.write_str("global()"),
            Tok::Has(k) => write!(f, "has({k})"),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::And => f.write_str("'&&'"),
            Tok::Or => f.write_str("'||'"),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: Tok,
    offset: usize,
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

fn label_len(s: &str) -> usize {
    s.find(|c: char| !is_label_char(c)).unwrap_or(s.len())
}

/// The longest label name a Calico selector may hold: Calico's tokenizer rejects a longer one
/// as "label too long" (`MaxLabelLength`, libcalico-go/lib/selector/tokenizer).
pub const MAX_LABEL_LENGTH: usize = 512;

/// A label name of `n` characters at `offset`, or Calico's refusal of a longer one.
fn label_fits(n: usize, offset: usize) -> Result<(), ParseError> {
    if n > MAX_LABEL_LENGTH {
        return err(offset, format!("label name too long: {n} characters, Calico allows at most {MAX_LABEL_LENGTH}"));
    }
    Ok(())
}

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { offset, message: message.into() })
}

/// Character offset of byte offset `b` in `s` (columns count characters).
fn chars_before(s: &str, b: usize) -> usize {
    s[..b].chars().count()
}

fn tokenize(input: &str) -> Result<Vec<Token>, ParseError> {
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    let at = |b: usize| chars_before(input, b);
    loop {
        let rest = &input[i..];
        let trimmed = rest.trim_start_matches([' ', '\t']);
        i += rest.len() - trimmed.len();
        let rest = trimmed;
        let start = i;
        let Some(c) = rest.chars().next() else {
            out.push(Token { kind: Tok::Eof, offset: at(i) });
            return Ok(out);
        };
        let after_label = matches!(out.last(), Some(Token { kind: Tok::Label(_), .. }));
        let two = |s: &str| rest.starts_with(s);
        let (kind, len) = match c {
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            '{' => (Tok::LBrace, 1),
            '}' => (Tok::RBrace, 1),
            ',' => (Tok::Comma, 1),
            '"' | '\'' => match rest[1..].find(c) {
                Some(end) => (Tok::Str(rest[1..1 + end].to_string()), end + 2),
                None => return err(at(start), format!("unterminated string: no closing {c}")),
            },
            '=' if two("==") => (Tok::Eq, 2),
            '=' => return err(at(start), "expected '==' (a single '=' is not an operator)"),
            '!' if two("!=") => (Tok::Ne, 2),
            '!' => (Tok::Not, 1),
            '&' if two("&&") => (Tok::And, 2),
            '&' => return err(at(start), "expected '&&'"),
            '|' if two("||") => (Tok::Or, 2),
            '|' => return err(at(start), "expected '||'"),
            _ if after_label => operator_word(rest).ok_or_else(|| ParseError {
                offset: at(start),
                message: "expected an operator after the label: ==, !=, in, not in, contains, starts with, ends with"
                    .into(),
            })?,
            _ => match function_call(rest, at(start))? {
                Some(t) => t,
                None => {
                    let n = label_len(rest);
                    if n == 0 {
                        return err(at(start), format!("unexpected character {c:?}"));
                    }
                    label_fits(n, at(start))?;
                    (Tok::Label(rest[..n].to_string()), n)
                }
            },
        };
        out.push(Token { kind, offset: at(start) });
        i += len;
    }
}

/// `contains`, `starts with`, `ends with`, `in`, `not in` after a label.
fn operator_word(rest: &str) -> Option<(Tok, usize)> {
    let ws = |s: &str| s.len() - s.trim_start_matches([' ', '\t']).len();
    let word = |w: &str| rest.strip_prefix(w).map(|r| (r, w.len()));
    if let Some((_, n)) = word("contains") {
        return Some((Tok::Contains, n));
    }
    for (first, tok) in [("starts", Tok::StartsWith), ("ends", Tok::EndsWith)] {
        if let Some((r, n)) = word(first) {
            let w = ws(r);
            return r[w..].starts_with("with").then_some((tok, n + w + 4));
        }
    }
    if let Some((r, n)) = word("not") {
        let w = ws(r);
        return r[w..].starts_with("in").then_some((Tok::NotIn, n + w + 2));
    }
    word("in").map(|(_, n)| (Tok::In, n))
}

/// `has(label)`, `all()`, `global()`.
fn function_call(rest: &str, offset: usize) -> Result<Option<(Tok, usize)>, ParseError> {
    let ws = |s: &str| s.len() - s.trim_start_matches([' ', '\t']).len();
    if let Some(r) = rest.strip_prefix("has(") {
        let w1 = ws(r);
        let n = label_len(&r[w1..]);
        if n == 0 {
            return err(offset + 4 + w1, "expected a label name inside has(...)");
        }
        label_fits(n, offset + 4 + w1)?;
        let after = &r[w1 + n..];
        let w2 = ws(after);
        if !after[w2..].starts_with(')') {
            return err(offset + 4 + w1 + n + w2, "expected ')' to close has(");
        }
        return Ok(Some((Tok::Has(r[w1..w1 + n].to_string()), 4 + w1 + n + w2 + 1)));
    }
    for (name, tok) in [("all(", Tok::All), ("global(", Tok::Global)] {
        if let Some(r) = rest.strip_prefix(name) {
            let w = ws(r);
            if !r[w..].starts_with(')') {
                return err(offset + name.len() + w, format!("expected ')' after {name}"));
            }
            return Ok(Some((tok, name.len() + w + 1)));
        }
    }
    Ok(None)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }
    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn or(&mut self) -> Result<Expr, ParseError> {
        self.chain(Tok::Or, Parser::and, Expr::Or)
    }
    fn and(&mut self) -> Result<Expr, ParseError> {
        self.chain(Tok::And, Parser::operation, Expr::And)
    }
    /// One or more `next` separated by `op`; several become `wrap(parts)`.
    fn chain(
        &mut self,
        op: Tok,
        next: fn(&mut Parser) -> Result<Expr, ParseError>,
        wrap: fn(Vec<Expr>) -> Expr,
    ) -> Result<Expr, ParseError> {
        let mut parts = vec![next(self)?];
        while self.peek().kind == op {
            self.next();
            parts.push(next(self)?);
        }
        Ok(if parts.len() == 1 { parts.pop().expect("one") } else { wrap(parts) })
    }
    fn operation(&mut self) -> Result<Expr, ParseError> {
        let mut negated = false;
        while self.peek().kind == Tok::Not {
            self.next();
            negated = !negated;
        }
        let t = self.next();
        let e = match t.kind {
            Tok::Has(k) => Expr::Has(k),
            Tok::All => Expr::All,
            Tok::Global => Expr::Global,
            Tok::LParen => {
                let e = self.or()?;
                let close = self.next();
                if close.kind != Tok::RParen {
                    return err(close.offset, format!("expected ')' but found {}", close.kind));
                }
                e
            }
            Tok::Label(k) => self.comparison(k)?,
            other => {
                return err(
                    t.offset,
                    format!("expected a label, has(...), all(), global(), '!' or '(' but found {other}"),
                )
            }
        };
        Ok(if negated { Expr::Not(Box::new(e)) } else { e })
    }
    fn comparison(&mut self, key: String) -> Result<Expr, ParseError> {
        let op = self.next();
        match op.kind {
            Tok::Eq | Tok::Ne | Tok::Contains | Tok::StartsWith | Tok::EndsWith => {
                let v = self.string()?;
                Ok(match op.kind {
                    Tok::Eq => Expr::Eq(key, v),
                    Tok::Ne => Expr::Ne(key, v),
                    Tok::Contains => Expr::Contains(key, v),
                    Tok::StartsWith => Expr::StartsWith(key, v),
                    _ => Expr::EndsWith(key, v),
                })
            }
            Tok::In | Tok::NotIn => {
                let values = self.set()?;
                Ok(if op.kind == Tok::In { Expr::In(key, values) } else { Expr::NotIn(key, values) })
            }
            other => err(op.offset, format!("expected an operator after label {key} but found {other}")),
        }
    }
    fn string(&mut self) -> Result<String, ParseError> {
        let t = self.next();
        match t.kind {
            Tok::Str(s) => Ok(s),
            other => err(t.offset, format!("expected a quoted string but found {other}")),
        }
    }
    fn set(&mut self) -> Result<BTreeSet<String>, ParseError> {
        let open = self.next();
        if open.kind != Tok::LBrace {
            return err(open.offset, format!("expected a set literal {{\"a\", \"b\"}} but found {}", open.kind));
        }
        let mut values = BTreeSet::new();
        while let Tok::Str(s) = &self.peek().kind {
            values.insert(s.clone());
            self.next();
            if self.peek().kind != Tok::Comma {
                break;
            }
            self.next();
        }
        let close = self.next();
        if close.kind != Tok::RBrace {
            return err(close.offset, format!("expected '}}' to close the set but found {}", close.kind));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let e = Expr::parse("a == 'x' || b == 'y' && !has(c)").unwrap();
        assert_eq!(e.to_string(), "a == \"x\" || b == \"y\" && !has(c)");
        assert!(matches!(e, Expr::Or(_)));
        let e = Expr::parse("(a == 'x' || b == 'y') && c == 'z'").unwrap();
        assert_eq!(e.to_string(), "(a == \"x\" || b == \"y\") && c == \"z\"");
    }

    #[test]
    fn label_names_longer_than_calico_allows_are_rejected() {
        let fits = "a".repeat(MAX_LABEL_LENGTH);
        assert!(Expr::parse(&format!("{fits} == 'x'")).is_ok());
        assert!(Expr::parse(&format!("has({fits})")).is_ok());
        let long = "a".repeat(MAX_LABEL_LENGTH + 1);
        for (text, column) in [(format!("{long} == 'x'"), 0), (format!("app == 'x' && has( {long})"), 19)] {
            let e = Expr::parse(&text).unwrap_err();
            assert_eq!(e.offset, column, "{text}");
            assert!(
                e.message.contains("label name too long: 513 characters, Calico allows at most 512"),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn empty_is_all_and_errors_have_columns() {
        assert_eq!(Expr::parse("  ").unwrap(), Expr::All);
        let e = Expr::parse("app = 'x'").unwrap_err();
        assert_eq!(e.offset, 4);
        let e = Expr::parse("app == 'x' &&").unwrap_err();
        assert_eq!(e.offset, 13);
    }
}
