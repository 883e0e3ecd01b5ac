//! Domain names of `domainNames` peers: the CRD's pattern, and matching a name against one
//! (network-policy-api `clusternetworkpolicy_types.go` DomainName: exact names, or `*.` as a
//! whole first label standing for one or more labels).

/// Whether `s` matches the CRD's pattern
/// `^(\*\.)?([a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$`
/// (its `A-z` also admits `` [\]^_` `` as a label's first character).
pub fn valid_pattern(s: &str) -> bool {
    let s = s.strip_prefix("*.").unwrap_or(s);
    let s = s.strip_suffix('.').unwrap_or(s);
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2 && labels.iter().all(|l| valid_label(l))
}

fn valid_label(l: &str) -> bool {
    let b = l.as_bytes();
    let first_ok = |c: u8| c.is_ascii_alphanumeric() || (b'A'..=b'z').contains(&c);
    let last_ok = |c: u8| c.is_ascii_alphanumeric();
    let mid_ok = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    match b {
        [] => false,
        [c] => first_ok(*c),
        [f, mid @ .., l] => first_ok(*f) && last_ok(*l) && mid.iter().all(|&c| mid_ok(c)),
    }
}

/// Whether DNS name `name` is one `pattern` selects: case-insensitive, one trailing dot
/// ignored on either; `*.example.com` matches `a.example.com` and `a.b.example.com`, not
/// `example.com`.
pub fn matches(pattern: &str, name: &str) -> bool {
    let norm = |s: &str| s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let (pattern, name) = (norm(pattern), norm(name));
    match pattern.strip_prefix("*.") {
        Some(suffix) => name.len() > suffix.len() + 1 && name.ends_with(&format!(".{suffix}")),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_takes_names_and_whole_label_wildcards() {
        for ok in ["example.com", "api.example.com.", "*.example.com", "a_b.example.com", "^x.example.com"] {
            assert!(valid_pattern(ok), "{ok}");
        }
        for bad in ["*example.com", "www.*.example.com", "localhost", "-api.example.com", "*", "a-.example.com"] {
            assert!(!valid_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn a_wildcard_stands_for_one_or_more_labels() {
        assert!(matches("*.svc.example.org", "a.svc.example.org"));
        assert!(matches("*.svc.example.org", "deep.a.svc.example.org."));
        assert!(!matches("*.svc.example.org", "svc.example.org"));
        assert!(matches("API.example.com", "api.example.com."));
        assert!(!matches("api.example.com", "example.com"));
    }
}
