//! The API server's rules for object names, label keys and label values.

use thiserror::Error;

/// Why a name, label key or label value is refused; the message is the API server's.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} must be no more than 63 characters")]
    TooLong { what: &'static str },
    #[error("{what} {value:?} must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")]
    Alphabet { what: &'static str, value: String },
    #[error("{0:?} must be 1 to 253 characters")]
    SubdomainLength(String),
    #[error("{0:?} must be a lowercase RFC 1123 subdomain: lowercase alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character")]
    Subdomain(String),
    #[error("{0:?} must be a lowercase RFC 1035 label: at most 63 lowercase alphanumeric characters or '-', starting with a letter and ending with an alphanumeric character")]
    Dns1035Label(String),
    #[error("{0:?} must be a lowercase RFC 1123 label: at most 63 lowercase alphanumeric characters or '-', starting and ending with an alphanumeric character")]
    Dns1123Label(String),
    #[error("label key {0:?}: the prefix before '/' must not be empty")]
    EmptyPrefix(String),
    #[error("label key {key:?}: prefix {problem}")]
    Prefix { key: String, problem: Box<NameError> },
    #[error("label key {key:?}: {problem}")]
    KeyName { key: String, problem: Box<NameError> },
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
fn check_name_part(s: &str, what: &'static str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { what });
    }
    if s.len() > 63 {
        return Err(NameError::TooLong { what });
    }
    let ok_chars = s.chars().all(|c| is_alnum(c) || c == '-' || c == '_' || c == '.');
    let ok_ends = s.starts_with(is_alnum) && s.ends_with(is_alnum);
    if !ok_chars || !ok_ends {
        return Err(NameError::Alphabet { what, value: s.to_string() });
    }
    Ok(())
}

/// RFC 1123 subdomain: lowercase alphanumerics, '-' and '.', at most 253 characters.
pub fn check_dns_subdomain(s: &str) -> Result<(), NameError> {
    if s.is_empty() || s.len() > 253 {
        return Err(NameError::SubdomainLength(s.to_string()));
    }
    for part in s.split('.') {
        check_dns_label(part).map_err(|_| NameError::Subdomain(s.to_string()))?;
    }
    Ok(())
}

/// RFC 1035 label (Service names, `NameIsDNS1035Label`): an RFC 1123 label that starts with a
/// letter.
pub fn check_dns1035_label(s: &str) -> Result<(), NameError> {
    match check_dns_label(s) {
        Ok(()) if s.starts_with(|c: char| c.is_ascii_lowercase()) => Ok(()),
        _ => Err(NameError::Dns1035Label(s.to_string())),
    }
}

/// RFC 1123 label: lowercase alphanumerics and '-', at most 63 characters.
pub fn check_dns_label(s: &str) -> Result<(), NameError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(NameError::Dns1123Label(s.to_string()))
    }
}

/// A label key: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters.
pub fn check_label_key(key: &str) -> Result<(), NameError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Err(NameError::EmptyPrefix(key.to_string()));
        }
        check_dns_subdomain(p).map_err(|e| NameError::Prefix { key: key.to_string(), problem: Box::new(e) })?;
    }
    check_name_part(name, "label key name")
        .map_err(|e| NameError::KeyName { key: key.to_string(), problem: Box::new(e) })
}

/// A label value: empty, or at most 63 characters of the name alphabet.
pub fn check_label_value(value: &str) -> Result<(), NameError> {
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
    fn messages_are_the_api_servers() {
        let e = check_label_key("UPPER.io/x").unwrap_err();
        assert_eq!(e.to_string(), "label key \"UPPER.io/x\": prefix \"UPPER.io\" must be a lowercase RFC 1123 subdomain: lowercase alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character");
        assert_eq!(check_label_value("x-").unwrap_err().to_string(), "label value \"x-\" must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
        assert_eq!(check_dns1035_label("1a").unwrap_err(), NameError::Dns1035Label("1a".into()));
    }
    #[test]
    fn label_values() {
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("true").is_ok());
        assert!(check_label_value("a b").is_err());
        assert!(check_label_value("x-").is_err());
    }
}
