//! Object metadata and labels: names, namespaces and label syntax as the API server checks them.

use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use palisade_core::field::{FieldPath, Problems};
use palisade_core::label::Labels;

use crate::names::{check_dns1035_label, check_dns_label, check_dns_subdomain, check_label_key, check_label_value};
use crate::object::Item;

fn root() -> FieldPath {
    FieldPath::root()
}

/// Checks an object's name and namespace; `false` when the object cannot be used at all.
pub(crate) fn check_meta(item: &Item, meta: &ObjectMeta, p: &mut Problems) -> bool {
    let kind = item.input.object.kind();
    let name_path = root().key("metadata").key("name");
    if item.name.is_empty() {
        p.error(&name_path, format!("{kind} has no metadata.name"), "every object needs a name");
        return false;
    }
    // The API server's name rules per kind: Namespaces are RFC 1123 labels, Services RFC 1035
    // labels (they become DNS names), everything else RFC 1123 subdomains.
    let (check, help) = match kind {
        "Namespace" => (check_dns_label(&item.name), "namespace names are lowercase letters, digits and '-'"),
        "Service" => (
            check_dns1035_label(&item.name),
            "Service names are lowercase letters, digits and '-', starting with a letter (no '.')",
        ),
        _ => (check_dns_subdomain(&item.name), "names are lowercase letters, digits, '-' and '.'"),
    };
    if let Err(e) = check {
        p.error(&name_path, format!("invalid {kind} name: {e}"), help);
    }
    if item.input.object.is_namespaced() && item.namespace.is_none() {
        p.error(
            &root().key("metadata"),
            format!("{kind} {:?} has no metadata.namespace", item.name),
            "a namespaced object must say which namespace it is in: set metadata.namespace, or pass --namespace NS to place namespace-less objects (as kubectl apply -n NS does)",
        );
        return false;
    }
    if let Some(ns) = &item.namespace {
        if let Err(e) = check_dns_label(ns) {
            p.error(
                &root().key("metadata").key("namespace"),
                format!("invalid namespace: {e}"),
                "namespace names are RFC 1123 labels",
            );
            return false;
        }
    }
    if !item.input.object.is_namespaced() && meta.namespace.is_some() {
        p.warn(
            &root().key("metadata").key("namespace"),
            format!("{kind} is cluster-scoped; metadata.namespace is ignored"),
            "remove metadata.namespace",
        );
    }
    true
}

/// Checks `metadata.labels`.
pub(crate) fn check_labels(labels: &Labels, p: &mut Problems) {
    check_labels_at(labels, &root().key("metadata").key("labels"), p)
}

/// Checks labels written at `path` (a pod template's, say).
pub(crate) fn check_labels_at(labels: &Labels, path: &FieldPath, p: &mut Problems) {
    for (k, v) in labels {
        if let Err(e) = check_label_key(k) {
            p.error(&path.key(k), e, "label keys are [prefix/]name, name at most 63 characters [A-Za-z0-9_.-]");
        }
        if let Err(e) = check_label_value(v) {
            p.error(
                &path.key(k),
                e,
                "label values are empty or at most 63 characters [A-Za-z0-9_.-], starting and ending alphanumeric",
            );
        }
    }
}

/// An IP address field, or an error at `path`.
pub(crate) fn parse_ip(s: &str, path: &FieldPath, p: &mut Problems) -> Option<IpAddr> {
    match s.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            p.error(path, format!("invalid IP address {s:?}"), "an IPv4 (10.0.0.1) or IPv6 (fd00::1) address");
            None
        }
    }
}
