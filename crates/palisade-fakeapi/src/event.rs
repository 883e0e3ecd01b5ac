//! The API server's checks on a new `events.k8s.io/v1` Event (Kubernetes
//! `pkg/apis/core/validation/events.go`, `ValidateEventCreate` for events.k8s.io/v1): required
//! fields, their bounds, and the Event placed in its object's namespace (`default` for
//! cluster-scoped objects). What a client writes the fake refuses as the API server would (422).

use serde_json::Value;

/// Why a new Event is invalid (the messages name the field as the API server does), if it is.
pub fn invalid(event: &Value, namespace: &str) -> Option<String> {
    let text = |f: &str| event[f].as_str().unwrap_or_default();
    let mut problems = Vec::new();
    for f in ["eventTime", "reportingController", "reportingInstance", "action", "reason"] {
        if text(f).is_empty() {
            problems.push(format!("{f}: Required value"));
        }
    }
    for (f, max) in [("reportingInstance", 128), ("action", 128), ("reason", 128), ("note", 1024)] {
        if text(f).len() > max {
            problems.push(format!("{f}: Too long: may not be more than {max} bytes"));
        }
    }
    let controller = text("reportingController");
    if !controller.is_empty() && !qualified(controller) {
        problems.push(format!("reportingController: Invalid value: {controller:?}: not a qualified name"));
    }
    if !matches!(text("type"), "Normal" | "Warning") {
        problems
            .push(format!("type: Unsupported value: {:?}: supported values: \"Normal\", \"Warning\"", text("type")));
    }
    let regarding = event["regarding"]["namespace"].as_str().unwrap_or_default();
    let expected = if regarding.is_empty() { "default" } else { regarding };
    if namespace != expected {
        problems.push(format!("metadata.namespace: Invalid value: {namespace:?}: does not match regarding.namespace"));
    }
    (!problems.is_empty()).then(|| problems.join(", "))
}

/// A Kubernetes qualified name: an optional DNS subdomain prefix and `/`, then a name of at
/// most 63 alphanumerics, `-`, `_` or `.`, starting and ending alphanumeric.
fn qualified(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let alnum_ends = |t: &str| {
        t.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && t.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && alnum_ends(name)
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.')
                .all(|l| alnum_ends(l) && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    });
    name_ok && prefix_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({"eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "palisade.dev/agent",
            "reportingInstance": "node-1", "action": "Enforce", "reason": "Refused", "type": "Warning",
            "regarding": {"kind": "NetworkPolicy", "namespace": "x", "name": "bad"}})
    }

    #[test]
    fn the_api_servers_checks() {
        assert_eq!(invalid(&event(), "x"), None);
        assert!(invalid(&event(), "default").unwrap().contains("metadata.namespace"));
        let mut cluster = event();
        cluster["regarding"] = json!({"kind": "Tier", "name": "t"});
        assert_eq!(invalid(&cluster, "default"), None);
        for (field, value, says) in [
            ("eventTime", Value::Null, "eventTime: Required"),
            ("action", Value::Null, "action: Required"),
            ("reportingController", "Palisade Agent".into(), "not a qualified name"),
            ("type", "Error".into(), "type: Unsupported"),
            ("note", "n".repeat(1025).into(), "note: Too long"),
        ] {
            let mut e = event();
            e[field] = value;
            let why = invalid(&e, "x").unwrap_or_default();
            assert!(why.contains(says), "{field}: {why}");
        }
    }
}
