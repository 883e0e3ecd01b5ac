//! Plain YAML scalars resolved exactly as kubectl resolves them: go-yaml v2's `resolve`
//! (sigs.k8s.io/yaml decodes into `interface{}` with it), then sigs.k8s.io/yaml's conversion
//! of mapping keys to JSON strings.
//!
//! go-yaml v2 looks at the first byte: `+`, `-` and digits may start a number, `.` a float,
//! `yYnNtTfFoO~` only the YAML 1.1 words (booleans, nulls); anything else is a string. A number
//! loses every `_`, then is read by Go's `strconv.ParseInt(s, 0, 64)` (prefixes `0x`, `0b`,
//! `0o` in either case, a leading `0` for octal), else `ParseUint` (beyond i64: a `uint64`),
//! else as a float when it looks like one; a float out of range stays a string (`1e999`).
//! Keys are then written as JSON strings: integers and booleans as their text, floats as Go's
//! `FormatFloat(f, 'g', -1, 32)` (`1.10` is the key `1.1`, `1e6` the key `1e+06`); a null or
//! `uint64` key is refused ("unsupported map key").

use crate::tree::Kind;

/// go-yaml v2's resolution of a plain scalar (`Str` with an empty text for a string: the
/// caller keeps its own).
pub fn resolve_plain(s: &str) -> Kind {
    let Some(&first) = s.as_bytes().first() else { return Kind::Null };
    if let Some(kind) = word(s) {
        return kind;
    }
    let string = Kind::Str(Box::from(""));
    match first {
        b'.' => go_parse_float(s).map_or(string, Kind::Float),
        b'+' | b'-' | b'0'..=b'9' => number(s).unwrap_or(string),
        _ => string,
    }
}

/// go-yaml v2's table of words (its `resolveMap`).
fn word(s: &str) -> Option<Kind> {
    Some(match s {
        "~" | "null" | "Null" | "NULL" => Kind::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Kind::Bool(true),
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Kind::Bool(false),
        ".nan" | ".NaN" | ".NAN" => Kind::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Kind::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Kind::Float(f64::NEG_INFINITY),
        _ => return None,
    })
}

/// A scalar that starts with a sign or digit: int, uint64 or float, `_` ignored anywhere.
fn number(s: &str) -> Option<Kind> {
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    if let Some(i) = parse_int(&plain) {
        return Some(Kind::Int(i));
    }
    if let Some(u) = parse_uint(&plain) {
        return Some(Kind::Uint(u));
    }
    if yaml_style_float(&plain) {
        return plain.parse::<f64>().ok().filter(|f| f.is_finite()).map(Kind::Float);
    }
    None
}

/// Go's `strconv.ParseInt(s, 0, 64)` (after the `_` are gone).
fn parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = parse_uint(body)?;
    if neg {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)`: no sign; `0x`, `0b`, `0o` (any case) need a digit after
/// them, a leading `0` alone means octal.
fn parse_uint(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let (radix, digits) = match b {
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'x') => (16, &s[2..]),
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'b') => (2, &s[2..]),
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'o') => (8, &s[2..]),
        [b'0', ..] => (8, &s[1..]),
        [] => return None,
        _ => (10, s),
    };
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.bytes().all(|c| (c as char).is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// go-yaml v2's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn yaml_style_float(s: &str) -> bool {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let rest = if let Some(frac) = s.strip_prefix('.') {
        let n = digits(frac);
        if n == 0 {
            return false;
        }
        &frac[n..]
    } else {
        let n = digits(s);
        if n == 0 {
            return false;
        }
        match s[n..].strip_prefix('.') {
            Some(frac) => &frac[digits(frac)..],
            None => &s[n..],
        }
    };
    match rest.strip_prefix(['e', 'E']) {
        None => rest.is_empty(),
        Some(exp) => {
            let exp = exp.strip_prefix(['-', '+']).unwrap_or(exp);
            !exp.is_empty() && digits(exp) == exp.len()
        }
    }
}

/// Go's `strconv.ParseFloat(s, 64)` for a scalar that starts with `.` (go-yaml's `.` case):
/// digits with `_` only between digits, an optional exponent; out of range is an error.
fn go_parse_float(s: &str) -> Option<f64> {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let frac = mantissa.strip_prefix('.')?;
    if !frac.bytes().any(|c| c.is_ascii_digit()) || !frac.bytes().all(|c| c.is_ascii_digit() || c == b'_') {
        return None;
    }
    if let Some(exp) = exp {
        let e = exp.strip_prefix(['-', '+']).unwrap_or(exp);
        if !e.starts_with(|c: char| c.is_ascii_digit()) || !e.bytes().all(|c| c.is_ascii_digit() || c == b'_') {
            return None;
        }
    }
    // Go's underscoreOK: an `_` only right after a digit and right before one.
    let b = s.as_bytes();
    let bad = (0..b.len())
        .any(|i| b[i] == b'_' && !(i > 0 && b[i - 1].is_ascii_digit() && b.get(i + 1).is_some_and(u8::is_ascii_digit)));
    if bad {
        return None;
    }
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    plain.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Why a mapping key has no JSON form.
pub type KeyError = &'static str;

/// A resolved mapping key as sigs.k8s.io/yaml writes it into JSON (`None` for strings: the
/// caller keeps the text).
pub fn json_key(kind: &Kind) -> Result<Option<String>, KeyError> {
    Ok(Some(match kind {
        Kind::Str(_) => return Ok(None),
        Kind::Int(i) => i.to_string(),
        Kind::Bool(b) => b.to_string(),
        Kind::Float(f) => format_float_key(*f),
        Kind::Uint(_) => {
            return Err("a mapping key beyond 9223372036854775807 is refused by kubectl (unsupported map key of type uint64): quote it")
        }
        Kind::Null => return Err("a mapping key may not be null (kubectl: unsupported map key)"),
        _ => return Err("a mapping key must be a string, not a collection"),
    }))
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)` with go-yaml's names for the infinities and NaN:
/// the shortest digits of the float32, in exponent form when the exponent is below -4 or 6 and
/// above (at least two exponent digits).
pub fn format_float_key(f: f64) -> String {
    let x = f as f32;
    if x.is_nan() {
        return ".nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    let shortest = format!("{:e}", x.abs());
    let (mantissa, exp) = shortest.split_once('e').expect("LowerExp writes an exponent");
    let exp: i32 = exp.parse().expect("an integer exponent");
    let digits: Vec<u8> = mantissa.bytes().filter(|c| *c != b'.').collect();
    let sign = if x.is_sign_negative() { "-" } else { "" };
    let nd = digits.len() as i32;
    if !(-4..6).contains(&exp) {
        let mut out = format!("{sign}{}", digits[0] as char);
        if nd > 1 {
            out.push('.');
            out.extend(digits[1..].iter().map(|&d| d as char));
        }
        let e_sign = if exp < 0 { '-' } else { '+' };
        return format!("{out}e{e_sign}{:02}", exp.abs());
    }
    let dp = exp + 1;
    let digit = |i: i32| if (0..nd).contains(&i) { digits[i as usize] as char } else { '0' };
    let mut out = String::from(sign);
    if dp > 0 {
        out.extend((0..dp).map(digit));
    } else {
        out.push('0');
    }
    let frac = (nd - dp).max(0);
    if frac > 0 {
        out.push('.');
        out.extend((0..frac).map(|i| digit(dp + i)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What kubectl makes of a plain scalar as a value (`kubectl annotate --local -f FILE k=v
    /// -o json`, kubectl 1.32): the JSON it sends.
    const VALUES: &[(&str, &str)] = &[
        ("0X1F", "31"),
        ("0x1F", "31"),
        ("0B11111", "31"),
        ("0O17", "15"),
        ("0o17", "15"),
        ("017", "15"),
        ("08", "8.0"),
        ("012345678", "12345678.0"),
        ("00", "0"),
        ("-0", "0"),
        ("+0x1F", "31"),
        ("-0b101", "-5"),
        ("0x_1F", "31"),
        ("1_000", "1000"),
        ("1__0", "10"),
        ("1_", "1"),
        ("-_1", "-1"),
        ("9223372036854775807", "9223372036854775807"),
        ("-9223372036854775808", "-9223372036854775808"),
        ("9223372036854775808", "9223372036854775808"),
        ("0x8000000000000000", "9223372036854775808"),
        ("18446744073709551616", "1.8446744073709552e19"),
        ("-9223372036854775809", "-9.223372036854776e18"),
        ("1e999", "\"1e999\""),
        (".5e999", "\".5e999\""),
        ("1e-999", "0.0"),
        ("1_000.5", "1000.5"),
        ("1e5_0", "1e50"),
        ("1.", "1.0"),
        ("1.0", "1.0"),
        ("1E5", "100000.0"),
        ("+.5", "0.5"),
        (".5", "0.5"),
        (".1_5", "0.15"),
        ("._5", "\"._5\""),
        (".5_", "\".5_\""),
        (".1_e5", "\".1_e5\""),
        (".5e5_0", "5e49"),
        ("0x1p3", "\"0x1p3\""),
        ("0x", "\"0x\""),
        ("0o", "\"0o\""),
        ("0b2", "\"0b2\""),
        ("+", "\"+\""),
        ("-", "\"-\""),
        ("1:20", "\"1:20\""),
        ("2001-12-14", "\"2001-12-14\""),
        (".Nan", "\".Nan\""),
        ("-.nan", "\"-.nan\""),
        ("nan", "\"nan\""),
        ("yes", "true"),
        ("Off", "false"),
        ("yES", "\"yES\""),
        ("~", "null"),
        ("Null", "null"),
    ];

    fn shown(kind: &Kind, text: &str) -> String {
        match kind {
            Kind::Null => "null".into(),
            Kind::Bool(b) => b.to_string(),
            Kind::Int(i) => i.to_string(),
            Kind::Uint(u) => u.to_string(),
            Kind::Float(f) => format!("{f:?}"),
            Kind::Str(_) => format!("{text:?}"),
            _ => unreachable!(),
        }
    }

    #[test]
    fn plain_scalars_resolve_as_kubectl_resolves_them() {
        let wrong: Vec<String> = VALUES
            .iter()
            .filter_map(|(text, want)| {
                let got = shown(&resolve_plain(text), text);
                (got != *want).then(|| format!("{text}: {got}, kubectl {want}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// What kubectl makes of a plain scalar as a mapping key.
    const KEYS: &[(&str, Result<&str, &str>)] = &[
        ("0X1F", Ok("31")),
        ("0B11111", Ok("31")),
        ("0O17", Ok("15")),
        ("9223372036854775807", Ok("9223372036854775807")),
        ("9223372036854775808", Err("uint64")),
        ("0x8000000000000000", Err("uint64")),
        ("18446744073709551616", Ok("1.8446744e+19")),
        ("1.5", Ok("1.5")),
        ("1.10", Ok("1.1")),
        ("1e20", Ok("1e+20")),
        ("1e6", Ok("1e+06")),
        ("1000000", Ok("1000000")),
        ("1234567.0", Ok("1.234567e+06")),
        ("123456.0", Ok("123456")),
        ("100000.5", Ok("100000.5")),
        ("123456789.5", Ok("1.2345679e+08")),
        ("3.14159265358979", Ok("3.1415927")),
        ("0.000123", Ok("0.000123")),
        ("0.0001", Ok("0.0001")),
        ("0.00001", Ok("1e-05")),
        ("0.1e-4", Ok("1e-05")),
        ("-1.5e-7", Ok("-1.5e-07")),
        ("100.0", Ok("100")),
        ("1.0", Ok("1")),
        ("-0.0", Ok("-0")),
        ("1e-999", Ok("0")),
        ("08", Ok("8")),
        (".inf", Ok(".inf")),
        ("-.inf", Ok("-.inf")),
        (".nan", Ok(".nan")),
        ("1e999", Ok("1e999")),
        ("2001-12-14", Ok("2001-12-14")),
        ("y", Ok("true")),
        ("no", Ok("false")),
        ("~", Err("null")),
        ("null", Err("null")),
    ];

    #[test]
    fn mapping_keys_convert_as_kubectl_converts_them() {
        let wrong: Vec<String> = KEYS
            .iter()
            .filter_map(|(text, want)| {
                let got = json_key(&resolve_plain(text)).map(|k| k.unwrap_or_else(|| text.to_string()));
                let ok = match (&got, want) {
                    (Ok(g), Ok(w)) => g == w,
                    (Err(g), Err(w)) => g.contains(w),
                    _ => false,
                };
                (!ok).then(|| format!("{text}: {got:?}, kubectl {want:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
}
