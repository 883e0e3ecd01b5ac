//! What a request asks for: a discovery document or a verb on a resource (its group,
//! version, plural, namespace and name), with its query parameters.

use std::collections::BTreeMap;

use hyper::Method;

/// A request on a resource path (`/api/v1/namespaces/x/pods/a`,
/// `/apis/projectcalico.org/v3/tiers`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// A discovery document or a resource path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Version,
    CoreVersions,
    Groups,
    Group(String),
    Resources(String),
    Resource(Target),
}

/// Parses a path; `None` for paths the API server does not serve.
pub fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Some(Route::Version),
        ["api"] => return Some(Route::CoreVersions),
        ["apis"] => return Some(Route::Groups),
        ["api", v] => return Some(Route::Resources(v.to_string())),
        ["apis", g] => return Some(Route::Group(g.to_string())),
        ["apis", g, v] => return Some(Route::Resources(format!("{g}/{v}"))),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        ["namespaces", ns, plural, more @ ..] => (Some(ns.to_string()), *plural, more.first()),
        [plural, more @ ..] => (None, *plural, more.first()),
        [] => return None,
    };
    Some(Route::Resource(Target {
        group: group.to_string(),
        version: version.to_string(),
        plural: plural.to_string(),
        namespace,
        name: name.map(|n| n.to_string()),
    }))
}

/// The RBAC verb of a request on a resource.
pub fn verb(method: &Method, target: &Target, query: &BTreeMap<String, String>) -> &'static str {
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method.as_str(), target.name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// Query parameters, decoded.
pub fn query(q: Option<&str>) -> BTreeMap<String, String> {
    form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_group_version_resource_namespace_and_name() {
        let t = |g: &str, v: &str, p: &str, ns: Option<&str>, n: Option<&str>| {
            Some(Route::Resource(Target {
                group: g.into(),
                version: v.into(),
                plural: p.into(),
                namespace: ns.map(Into::into),
                name: n.map(Into::into),
            }))
        };
        assert_eq!(route("/api/v1/pods"), t("", "v1", "pods", None, None));
        assert_eq!(route("/api/v1/namespaces"), t("", "v1", "namespaces", None, None));
        assert_eq!(route("/api/v1/namespaces/x"), t("", "v1", "namespaces", None, Some("x")));
        assert_eq!(route("/api/v1/namespaces/x/pods/a"), t("", "v1", "pods", Some("x"), Some("a")));
        assert_eq!(route("/apis/projectcalico.org/v3/tiers"), t("projectcalico.org", "v3", "tiers", None, None));
        assert_eq!(route("/apis/events.k8s.io/v1"), Some(Route::Resources("events.k8s.io/v1".into())));
        assert_eq!(route("/apis"), Some(Route::Groups));
        assert_eq!(route("/healthz/x/y"), None);
    }
}
