//! Manifest text before parsing: encodings (as kubectl reads files) and the characters no
//! manifest may hold.
//!
//! kubectl decodes a file through `unicode.BOMOverride(unicode.UTF8.NewDecoder())`: a leading
//! UTF-8 BOM is dropped, a UTF-16 file with a BOM is decoded, and bytes that are not UTF-8 become
//! U+FFFD. We read files the same way, then refuse (with `file:line:column`) what go-yaml's reader
//! refuses and what would make two YAML parsers read different documents: C0 controls other
//! than tab, LF and CR (a NUL would end the input of a C parser), DEL, C1 controls, the Unicode
//! line separators (YAML 1.1 parsers break lines there, YAML 1.2 ones do not), a BOM after the
//! start, the non-characters U+FFFE/U+FFFF, and U+FFFD (what invalid UTF-8 turned into).

/// Reads file bytes as kubectl does: BOM-aware, UTF-16 decoded, invalid UTF-8 as U+FFFD (which
/// [`check`] then refuses at its position).
pub fn decode_bytes(bytes: Vec<u8>) -> String {
    match bytes.as_slice() {
        [0xEF, 0xBB, 0xBF, rest @ ..] => utf8(rest.to_vec()),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        _ => utf8(bytes),
    }
}

fn utf8(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> String {
    let units = bytes.chunks(2).map(|c| if c.len() == 2 { unit([c[0], c[1]]) } else { 0xFFFD });
    char::decode_utf16(units).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
}

/// A character a manifest may not hold, at a byte offset of the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub offset: usize,
    pub message: String,
}

/// The first character a manifest may not hold. A BOM is allowed only as the very first
/// character (a caller that did not strip it, such as stdin read raw). One pass over the bytes.
pub fn check(text: &str) -> Result<(), Fault> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if (0x20..0x7F).contains(&b) || matches!(b, b'\n' | b'\t' | b'\r') {
            i += 1;
            continue;
        }
        if b < 0x80 {
            let mut message = format!("control character {} is not allowed", name(b.into()));
            if let (0, Some(order)) = (b, utf16_order(bytes)) {
                message = format!("{message}: the file looks like UTF-16 ({order}) without a byte order mark; save it as UTF-8 (iconv -f UTF-16{} -t UTF-8), or with a byte order mark", if order == "little-endian" { "LE" } else { "BE" });
            }
            return Err(Fault { offset: i, message });
        }
        let c = text[i..].chars().next().expect("a char starts here");
        let refused = match c {
            '\u{80}'..='\u{9F}' => Some("C1 control character"),
            '\u{2028}' | '\u{2029}' => {
                Some("Unicode line separator (YAML 1.1 parsers such as kubectl's break lines there, others do not)")
            }
            '\u{FEFF}' if i > 0 => Some("byte order mark inside the text (only the first character may be one)"),
            '\u{FFFE}' | '\u{FFFF}' => Some("non-character"),
            '\u{FFFD}' => Some("invalid UTF-8 (bytes that are not UTF-8 read as U+FFFD)"),
            _ => None,
        };
        if let Some(what) = refused {
            return Err(Fault { offset: i, message: format!("{what} {} is not allowed", name(c as u32)) });
        }
        i += c.len_utf8();
    }
    Ok(())
}

/// Whether the text is UTF-16 read as UTF-8 (no BOM told us otherwise): such a file is a
/// manifest in the wrong encoding, to be refused with that said, not set aside as foreign.
pub fn utf16_without_bom(text: &str) -> bool {
    utf16_order(text.as_bytes()).is_some()
}

/// Whether text reads as UTF-16 without a BOM: in its first pairs of bytes, nearly every pair
/// is one ASCII character and a NUL (`a\0:\0` little-endian, `\0a\0:` big-endian), as
/// manifests, which are mostly ASCII, look in UTF-16.
fn utf16_order(bytes: &[u8]) -> Option<&'static str> {
    let pairs: Vec<&[u8]> = bytes.chunks_exact(2).take(64).collect();
    let count = |f: fn(&[u8]) -> bool| pairs.iter().filter(|p| f(p)).count();
    let (le, be) = (count(|p| p[0] != 0 && p[1] == 0), count(|p| p[0] == 0 && p[1] != 0));
    let most = |n: usize| pairs.len() >= 2 && n * 4 >= pairs.len() * 3;
    match (most(le), most(be)) {
        (true, _) => Some("little-endian"),
        (_, true) => Some("big-endian"),
        _ => None,
    }
}

fn name(c: u32) -> String {
    match c {
        0 => "U+0000 (NUL)".into(),
        0x7F => "U+007F (DEL)".into(),
        _ => format!("U+{c:04X}"),
    }
}

/// 1-based line and column (in characters) of a byte offset. Linear in the offset: for
/// reporting one fault, not for every node.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_controls_with_their_offset() {
        assert_eq!(check("a: 1\nb: 2\t# ok\r\n"), Ok(()));
        for (text, at, what) in [
            ("a: 1\n# x\u{0}y\nb: 2\n", 8, "U+0000 (NUL)"),
            ("a: \u{1b}[31m\n", 3, "U+001B"),
            ("a: x\u{7f}\n", 4, "U+007F (DEL)"),
            ("a: é\u{85}\n", 5, "C1 control character U+0085"),
            ("a: b\u{2028}c: d\n", 4, "line separator"),
            ("a: 1\n\u{feff}b: 2\n", 5, "byte order mark"),
            ("a: \u{fffd}\n", 3, "invalid UTF-8"),
        ] {
            let f = check(text).unwrap_err();
            assert_eq!(f.offset, at, "{text:?}");
            assert!(f.message.contains(what), "{text:?}: {}", f.message);
        }
        assert_eq!(check("\u{feff}a: 1\n"), Ok(()));
    }

    #[test]
    fn utf16_without_a_bom_is_named() {
        let text = "apiVersion: v1\nkind: Namespace\n";
        let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        for (bytes, order, at) in [(le, "little-endian", 1), (be, "big-endian", 0)] {
            let decoded = decode_bytes(bytes);
            let f = check(&decoded).unwrap_err();
            assert_eq!(f.offset, at);
            assert!(
                f.message.contains(&format!("looks like UTF-16 ({order}) without a byte order mark")),
                "{}",
                f.message
            );
            assert!(f.message.contains("save it as UTF-8"), "{}", f.message);
        }
        // A NUL in UTF-8 text is only a NUL.
        let f = check("a: 1\n# x\u{0}y\nb: 2\n").unwrap_err();
        assert!(!f.message.contains("UTF-16"), "{}", f.message);
    }

    #[test]
    fn decodes_like_kubectl() {
        assert_eq!(decode_bytes(b"\xEF\xBB\xBFa: 1".to_vec()), "a: 1");
        assert_eq!(decode_bytes(vec![0xFF, 0xFE, b'a', 0, b':', 0, b' ', 0, b'1', 0]), "a: 1");
        assert_eq!(decode_bytes(vec![0xFE, 0xFF, 0, b'a', 0, b':', 0, b' ', 0, b'1']), "a: 1");
        let lossy = decode_bytes(b"a: 1\nb: \xff\n".to_vec());
        let f = check(&lossy).unwrap_err();
        assert_eq!(line_column(&lossy, f.offset), (2, 4));
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_column("a\néé x", 6), (2, 3));
    }
}
