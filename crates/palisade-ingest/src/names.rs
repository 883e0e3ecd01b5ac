//! The API server's rules for object names, label keys and label values.

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
fn check_name_part(s: &str, what: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if s.len() > 63 {
        return Err(format!("{what} must be no more than 63 characters"));
    }
    let ok_chars = s.chars().all(|c| is_alnum(c) || c == '-' || c == '_' || c == '.');
    let ok_ends = s.starts_with(is_alnum) && s.ends_with(is_alnum);
    if !ok_chars || !ok_ends {
        return Err(format!(
            "{what} {s:?} must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

/// RFC 1123 subdomain: lowercase alphanumerics, '-' and '.', at most 253 characters.
pub fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!("{s:?} must be 1 to 253 characters"));
    }
    for part in s.split('.') {
        check_dns_label(part).map_err(|_| {
            format!("{s:?} must be a lowercase RFC 1123 subdomain: lowercase alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character")
        })?;
    }
    Ok(())
}

/// RFC 1035 label (Service names, `NameIsDNS1035Label`): an RFC 1123 label that starts with a
/// letter.
pub fn check_dns1035_label(s: &str) -> Result<(), String> {
    match check_dns_label(s) {
        Ok(()) if s.starts_with(|c: char| c.is_ascii_lowercase()) => Ok(()),
        _ => Err(format!(
            "{s:?} must be a lowercase RFC 1035 label: at most 63 lowercase alphanumeric characters or '-', starting with a letter and ending with an alphanumeric character"
        )),
    }
}

/// RFC 1123 label: lowercase alphanumerics and '-', at most 63 characters.
pub fn check_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} must be a lowercase RFC 1123 label: at most 63 lowercase alphanumeric characters or '-', starting and ending with an alphanumeric character"
        ))
    }
}

/// A label key: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Err(format!("label key {key:?}: the prefix before '/' must not be empty"));
        }
        check_dns_subdomain(p).map_err(|e| format!("label key {key:?}: prefix {e}"))?;
    }
    check_name_part(name, "label key name").map_err(|e| format!("label key {key:?}: {e}"))
}

/// A label value: empty, or at most 63 characters of the name alphabet.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_name_part(value, "label value")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn label_keys() {
        assert!(check_label_key("app").is_ok());
        assert!(check_label_key("kubernetes.io/metadata.name").is_ok());
        assert!(check_label_key("networking/namespace").is_ok());
        assert!(check_label_key("-app").is_err());
        assert!(check_label_key("/app").is_err());
        assert!(check_label_key("Exa mple").is_err());
        assert!(check_label_key(&"a".repeat(64)).is_err());
        assert!(check_label_key("UPPER.io/x").is_err());
    }
    #[test]
    fn label_values() {
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("true").is_ok());
        assert!(check_label_value("a b").is_err());
        assert!(check_label_value("x-").is_err());
    }
}
