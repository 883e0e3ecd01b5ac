//! Discovery documents: `/api`, `/apis`, `/api/v1`, `/apis/<group>` and
//! `/apis/<group>/<version>`, listing only the served group versions (as an aggregated or
//! CRD-backed group appears only once installed).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::resource::{Groups, Resource};

/// The verbs discovery advertises for every resource.
const VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// `/api`: the core group's versions.
pub fn core_versions(addr: &str) -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}],
    })
}

fn groups_by_name(groups: &Groups) -> BTreeMap<String, Vec<String>> {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for gv in &groups.0 {
        if let Some((g, v)) = gv.split_once('/') {
            by.entry(g.to_string()).or_default().push(v.to_string());
        }
    }
    by
}

fn group_value(name: &str, versions: &[String]) -> Value {
    // Preferred: the most stable version (v1 > v1beta1 > v1alpha2 > v1alpha1), as the server orders them.
    let mut sorted = versions.to_vec();
    sorted.sort_by_key(|v| (!v.contains("alpha") && !v.contains("beta"), v.clone()));
    sorted.reverse();
    let gv = |v: &String| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    json!({
        "name": name,
        "versions": sorted.iter().map(gv).collect::<Vec<_>>(),
        "preferredVersion": gv(&sorted[0]),
    })
}

/// `/apis`: every served named group.
pub fn group_list(groups: &Groups) -> Value {
    let list: Vec<Value> = groups_by_name(groups).iter().map(|(n, vs)| group_value(n, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list})
}

/// `/apis/<group>`, when served.
pub fn group(groups: &Groups, name: &str) -> Option<Value> {
    let by = groups_by_name(groups);
    let mut v = group_value(name, by.get(name)?);
    v["kind"] = "APIGroup".into();
    v["apiVersion"] = "v1".into();
    Some(v)
}

/// `/api/v1` or `/apis/<group>/<version>`: the resources of one served group version.
pub fn resource_list(catalog: &[Resource], groups: &Groups, group_version: &str) -> Option<Value> {
    if !groups.0.contains(group_version) {
        return None;
    }
    let resources: Vec<Value> = catalog
        .iter()
        .filter(|r| r.api_version() == group_version)
        .map(|r| {
            json!({
                "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
                "kind": r.kind, "verbs": VERBS,
            })
        })
        .collect();
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
}
