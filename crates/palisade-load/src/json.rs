//! JSON into positioned trees: strict RFC 8259, as kubectl and the API server read it (no
//! comments, trailing commas, single quotes, NaN or Infinity; duplicate keys refused), one pass
//! over the bytes with the position of every node.
//!
//! kubectl reads a file as a JSON stream when its first non-space character is `{`
//! (`GuessJSONStream`), so [`is_json`] decides by content, not by file name.

use crate::tree::{first_duplicate, Entry, Kind, Node, ParseError, Scratch, Span, MAX_DEPTH};

/// Whether kubectl would read this text as a stream of JSON objects.
pub fn is_json(text: &str) -> bool {
    text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']).starts_with('{')
}

/// Parses a stream of JSON values (whitespace between them, as `json.Decoder` reads).
pub fn parse(text: &str) -> Result<Vec<Node>, ParseError> {
    let mut r = Reader { b: text.as_bytes(), i: 0, line: 1, line_start: 0, wide: 0, scratch: Scratch::default() };
    if text.starts_with('\u{feff}') {
        r.i = 3;
        r.wide = 2;
    }
    let mut docs = Vec::new();
    loop {
        r.skip_ws();
        if r.i >= r.b.len() {
            return Ok(docs);
        }
        docs.push(r.value(0)?);
    }
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
    line: u32,
    line_start: usize,
    /// UTF-8 continuation bytes since the line's start (columns count characters).
    wide: usize,
    scratch: Scratch,
}

impl Reader<'_> {
    fn span(&self, start: usize, wide_before: usize, len: usize) -> Span {
        Span {
            offset: start as u32,
            line: self.line,
            column: (start - self.line_start - wide_before + 1) as u32,
            len: len as u32,
        }
    }

    fn here(&self) -> Span {
        self.span(self.i, self.wide, 1)
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { pos: self.here().pos(), message: message.into() })
    }

    fn skip_ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b' ' | b'\t' | b'\r' => self.i += 1,
                b'\n' => {
                    self.i += 1;
                    self.line += 1;
                    self.line_start = self.i;
                    self.wide = 0;
                }
                _ => return,
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, ParseError> {
        let Some(&c) = self.b.get(self.i) else { return self.fail("unexpected end of JSON input") };
        match c {
            b'{' | b'[' if depth >= MAX_DEPTH => self.fail(format!("nested deeper than {MAX_DEPTH} levels")),
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => {
                let (s, at) = self.string()?;
                Ok(Node { kind: Kind::Str(s), at })
            }
            b't' => self.literal("true", Kind::Bool(true)),
            b'f' => self.literal("false", Kind::Bool(false)),
            b'n' => self.literal("null", Kind::Null),
            b'-' | b'0'..=b'9' => self.number(),
            b'\'' => self.fail("single quotes are not JSON: strings are written in double quotes"),
            b'/' | b'#' => self.fail("comments are not JSON"),
            b'N' | b'I' => self.fail("NaN and Infinity are not JSON numbers"),
            b'}' | b']' => self.fail("expected a value (a trailing comma is not JSON)"),
            _ => self.fail("expected a JSON value"),
        }
    }

    fn literal(&mut self, word: &str, kind: Kind) -> Result<Node, ParseError> {
        if !self.b[self.i..].starts_with(word.as_bytes()) {
            return self.fail(format!("invalid literal: expected {word}"));
        }
        let at = self.span(self.i, self.wide, word.len());
        self.i += word.len();
        Ok(Node { kind, at })
    }

    fn object(&mut self, depth: usize) -> Result<Node, ParseError> {
        let at = self.here();
        self.i += 1;
        let from = self.scratch.entries.len();
        self.skip_ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Node { kind: Kind::Map(Box::new([])), at });
        }
        loop {
            self.skip_ws();
            match self.b.get(self.i) {
                Some(b'"') => {}
                Some(b'}') => return self.fail("trailing comma before } is not JSON"),
                Some(b'\'') => return self.fail("single quotes are not JSON: keys are written in double quotes"),
                Some(b'/' | b'#') => return self.fail("comments are not JSON"),
                _ => return self.fail("expected a key in double quotes"),
            }
            let (key, key_at) = self.string()?;
            self.skip_ws();
            if self.b.get(self.i) != Some(&b':') {
                return self.fail("expected : after the key");
            }
            self.i += 1;
            self.skip_ws();
            let value = self.value(depth + 1)?;
            self.scratch.entries.push(Entry { key, key_at, value });
            self.skip_ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                Some(b'/' | b'#') => return self.fail("comments are not JSON"),
                _ => return self.fail("expected , or } in the object"),
            }
        }
        let entries = self.scratch.map(from);
        if let Some(dup) = first_duplicate(&entries) {
            return Err(ParseError {
                pos: dup.key_at.pos(),
                message: format!("duplicate key {:?} in mapping", dup.key),
            });
        }
        Ok(Node { kind: Kind::Map(entries), at })
    }

    fn array(&mut self, depth: usize) -> Result<Node, ParseError> {
        let at = self.here();
        self.i += 1;
        let from = self.scratch.items.len();
        self.skip_ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(Node { kind: Kind::Seq(Box::new([])), at });
        }
        loop {
            self.skip_ws();
            if self.b.get(self.i) == Some(&b']') {
                return self.fail("trailing comma before ] is not JSON");
            }
            let item = self.value(depth + 1)?;
            self.scratch.items.push(item);
            self.skip_ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Node { kind: self.scratch.seq(from), at });
                }
                Some(b'/' | b'#') => return self.fail("comments are not JSON"),
                _ => return self.fail("expected , or ] in the array"),
            }
        }
    }

    /// A string token; the reader stands on its opening quote.
    fn string(&mut self) -> Result<(Box<str>, Span), ParseError> {
        let (start, wide_before) = (self.i, self.wide);
        self.i += 1;
        let body = self.i;
        // Fast path: no escapes.
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' | b'\\' => break,
                0..=0x1F => return self.fail("control characters must be escaped in JSON strings"),
                0x80..=0xBF => {
                    self.wide += 1;
                    self.i += 1
                }
                _ => self.i += 1,
            }
        }
        let mut out: Vec<u8> = Vec::new();
        let mut from = body;
        loop {
            match self.b.get(self.i) {
                None => return self.fail("unterminated string"),
                Some(b'"') => break,
                Some(b'\\') => {
                    out.extend_from_slice(&self.b[from..self.i]);
                    self.escape(&mut out)?;
                    from = self.i;
                }
                Some(0..=0x1F) => return self.fail("control characters must be escaped in JSON strings"),
                Some(&c) => {
                    if (0x80..=0xBF).contains(&c) {
                        self.wide += 1;
                    }
                    self.i += 1;
                }
            }
        }
        let s = if out.is_empty() && from == body {
            std::str::from_utf8(&self.b[body..self.i]).expect("input is UTF-8").into()
        } else {
            out.extend_from_slice(&self.b[from..self.i]);
            String::from_utf8(out).expect("escapes write UTF-8").into_boxed_str()
        };
        self.i += 1;
        let len = self.i - start;
        Ok((s, self.span(start, wide_before, len)))
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), ParseError> {
        let Some(&c) = self.b.get(self.i + 1) else { return self.fail("unterminated string") };
        let simple = match c {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => return self.fail("invalid escape in a JSON string"),
        };
        if let Some(b) = simple {
            out.push(b);
            self.i += 2;
            return Ok(());
        }
        let hi = self.hex4(self.i + 2)?;
        self.i += 6;
        let ch = if (0xD800..0xDC00).contains(&hi) {
            if !self.b[self.i..].starts_with(b"\\u") {
                return self.fail("a lone surrogate is not a character");
            }
            let lo = self.hex4(self.i + 2)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return self.fail("a lone surrogate is not a character");
            }
            self.i += 6;
            char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
        } else {
            char::from_u32(hi)
        };
        let Some(ch) = ch else { return self.fail("a lone surrogate is not a character") };
        let mut buf = [0; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        Ok(())
    }

    fn hex4(&self, at: usize) -> Result<u32, ParseError> {
        let digits = self.b.get(at..at + 4).and_then(|d| std::str::from_utf8(d).ok());
        match digits.and_then(|d| u32::from_str_radix(d, 16).ok().filter(|_| d.bytes().all(|c| c.is_ascii_hexdigit())))
        {
            Some(v) => Ok(v),
            None => self.fail("invalid \\u escape in a JSON string"),
        }
    }

    fn number(&mut self) -> Result<Node, ParseError> {
        let start = self.i;
        let digits = |r: &mut Self| {
            let s = r.i;
            while r.b.get(r.i).is_some_and(u8::is_ascii_digit) {
                r.i += 1;
            }
            r.i - s
        };
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        let int_start = self.i;
        if digits(self) == 0 {
            return self.fail("invalid number");
        }
        if self.b[int_start] == b'0' && self.i - int_start > 1 {
            return Err(ParseError {
                pos: self.span(int_start, self.wide, 1).pos(),
                message: "leading zeros are not JSON".into(),
            });
        }
        let mut float = false;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            float = true;
            if digits(self) == 0 {
                return self.fail("invalid number: digits must follow the decimal point");
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            float = true;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return self.fail("invalid number: digits must follow the exponent");
            }
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).expect("ASCII");
        let at = self.span(start, self.wide, text.len());
        let kind = match (float, text.parse::<i64>()) {
            (false, Ok(i)) => Kind::Int(i),
            _ => Kind::Float(text.parse().expect("JSON number grammar is Rust's")),
        };
        Ok(Node { kind, at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails(text: &str) -> (usize, usize, String) {
        let e = parse(text).unwrap_err();
        (e.pos.line, e.pos.column, e.message)
    }

    #[test]
    fn reads_json_like_serde_json() {
        for text in [
            r#"{"a": [1, -2.5e3, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"], "b": {}}"#,
            r#"{"n": -1234567890123456789, "z": 0, "f": 0.5, "e": 1E+2, "g": -0.0e-1}"#,
            "{\"é\": \"ü\"}",
        ] {
            let ours = parse(text).unwrap()[0].to_json();
            let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(ours, theirs, "{text}");
        }
        assert_eq!(parse("{\"a\":1}\n{\"a\":2}{}").unwrap().len(), 3);
    }

    #[test]
    fn refuses_what_kubectl_refuses_with_positions() {
        for (text, line, col, what) in [
            ("{\"a\": 1,}", 1, 9, "trailing comma"),
            ("{\"a\": [1,]}", 1, 10, "trailing comma"),
            ("{\n  // c\n  \"a\": 1}", 2, 3, "comments"),
            ("{'a': 1}", 1, 2, "single quotes"),
            ("{\"a\": 'x'}", 1, 7, "single quotes"),
            ("{\"a\": NaN}", 1, 7, "NaN"),
            ("{\"a\": 01}", 1, 7, "leading zeros"),
            ("{\"a\": 1, \"a\": 2}", 1, 10, "duplicate key"),
            ("{\"a\": \"x\ty\"}", 1, 9, "control characters"),
            ("{\"é\": 1,\n \"a\": tru}", 2, 7, "expected true"),
            ("{\"a\": \"\\ud800\"}", 1, 14, "surrogate"),
            ("{\"a\": 1", 1, 8, "expected , or }"),
        ] {
            let (l, c, m) = fails(text);
            assert_eq!((l, c), (line, col), "{text:?}: {m}");
            assert!(m.contains(what), "{text:?}: {m}");
        }
        let deep = "{\"a\":".repeat(200) + "1" + &"}".repeat(200);
        assert!(fails(&deep).2.contains("nested deeper"));
    }

    #[test]
    fn positions_count_characters() {
        let docs = parse("{\"é\": \"ü\", \"b\": [10]}").unwrap();
        let b = docs[0].get("b").unwrap();
        assert_eq!((b.at.line, b.at.column, b.at.offset), (1, 17, 18));
        assert!(is_json("\n  {\"a\": 1}") && !is_json("a: {}") && !is_json("[{}]"));
    }
}
