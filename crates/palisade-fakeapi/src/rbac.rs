//! RBAC as the API server's authorizer applies a ClusterRole bound cluster-wide: a request is
//! allowed when one rule names its verb, API group and resource (or `*`). The role is read from
//! a manifest (Palisade's `deploy/`), so the code's requests and the shipped role cannot drift.
//! Source: Kubernetes "Using RBAC Authorization"; discovery paths are open to every
//! authenticated user through the built-in `system:discovery` role.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// The rules of one ClusterRole.
#[derive(Clone, Debug, Default)]
pub struct Rbac {
    pub role: String,
    pub rules: Vec<PolicyRule>,
}

#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    #[error("cannot parse the manifest: {0}")]
    Yaml(#[from] yaml_rust2::ScanError),
    #[error("ClusterRole {name}: {source}")]
    Decode { name: String, source: serde_json::Error },
    #[error("no ClusterRole named {0:?} in the manifest")]
    Missing(String),
}

/// Converts a yaml-rust2 document to JSON (manifests only hold maps, lists and scalars).
pub fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| (k.as_str().map(String::from).unwrap_or_else(|| format!("{k:?}")), to_json(v)))
                .collect(),
        ),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => r.parse::<f64>().map(Value::from).unwrap_or(Value::Null),
        Yaml::Boolean(b) => Value::Bool(*b),
        _ => Value::Null,
    }
}

/// Every document of a YAML stream, as JSON.
pub fn documents(text: &str) -> Result<Vec<Value>, RbacError> {
    Ok(YamlLoader::load_from_str(text)?.iter().map(to_json).filter(|v| !v.is_null()).collect())
}

impl Rbac {
    /// The ClusterRole `name` from a multi-document manifest.
    pub fn from_manifest(text: &str, name: &str) -> Result<Self, RbacError> {
        for doc in documents(text)? {
            if doc["kind"] == "ClusterRole" && doc["metadata"]["name"] == name {
                let role: ClusterRole =
                    serde_json::from_value(doc).map_err(|source| RbacError::Decode { name: name.into(), source })?;
                return Ok(Rbac { role: name.into(), rules: role.rules.unwrap_or_default() });
            }
        }
        Err(RbacError::Missing(name.into()))
    }

    /// Whether `verb` (`list`, `watch`, `get`, `create`, `patch`, ...) on `resource` (a plural,
    /// or `plural/subresource`) of `group` is allowed. A rule limited to `resourceNames` never
    /// allows list, watch or create (the API server cannot know the name in advance).
    pub fn allows(&self, verb: &str, group: &str, resource: &str) -> bool {
        let has = |list: &Option<Vec<String>>, want: &str| list.iter().flatten().any(|x| x == "*" || x == want);
        self.rules.iter().any(|r| {
            let named = r.resource_names.as_ref().is_some_and(|n| !n.is_empty());
            has(&r.verbs.clone().into(), verb)
                && has(&r.api_groups, group)
                && has(&r.resources, resource)
                && !(named && matches!(verb, "list" | "watch" | "create" | "deletecollection"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\nrules:\n- apiGroups: ['']\n  resources: [pods, namespaces]\n  verbs: [list, watch]\n- apiGroups: [events.k8s.io]\n  resources: [events]\n  verbs: [create]\n- apiGroups: ['']\n  resources: [secrets]\n  resourceNames: [one]\n  verbs: [get, list]\n";

    #[test]
    fn a_rule_must_name_verb_group_and_resource() {
        let rbac = Rbac::from_manifest(ROLE, "r").unwrap();
        assert!(rbac.allows("list", "", "pods"));
        assert!(rbac.allows("watch", "", "namespaces"));
        assert!(!rbac.allows("get", "", "pods"));
        assert!(!rbac.allows("list", "networking.k8s.io", "pods"));
        assert!(rbac.allows("create", "events.k8s.io", "events"));
        assert!(!rbac.allows("create", "", "events"));
        assert!(rbac.allows("get", "", "secrets"));
        assert!(!rbac.allows("list", "", "secrets"), "resourceNames never allows list");
        assert!(Rbac::from_manifest(ROLE, "other").is_err());
    }
}
