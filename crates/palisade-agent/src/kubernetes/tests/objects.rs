//! A small universe of API objects of every kind the agent watches, for random event streams:
//! each kind has a few slots (a slot is one object key) and a few variants of each (labels,
//! selectors, actions). Some variants break the build on purpose (a pod in namespace `c`, which
//! never exists; a Calico policy in tier `t0` while the Tier is absent), and one does not
//! validate (a NetworkPolicy port of 70000), so the agent's refusal paths are in every stream.

use palisade_kube::kinds::KINDS;
use serde_json::{json, Value};

/// Object keys per kind.
pub const SLOTS: u8 = 3;
/// Versions per object key.
pub const VARIANTS: u8 = 4;

/// One of two label values, chosen by a variant.
fn pick(variant: u8, a: &'static str, b: &'static str) -> &'static str {
    if variant.is_multiple_of(2) {
        a
    } else {
        b
    }
}

/// A namespace of the two that exist (by slot).
fn namespace(slot: u8) -> &'static str {
    pick(slot, "a", "b")
}

fn meta(name: String, namespace: Option<&str>, labels: Value) -> Value {
    let mut m = json!({"name": name, "labels": labels});
    if let Some(ns) = namespace {
        m["namespace"] = ns.into();
    }
    m["uid"] = format!("uid-{}-{}", namespace.unwrap_or("-"), m["name"].as_str().unwrap_or_default()).into();
    m
}

/// The object of kind `KINDS[kind]` in `slot`, version `variant`.
pub fn object(kind: usize, slot: u8, variant: u8) -> Value {
    let k = &KINDS[kind];
    let team = pick(variant, "red", "blue");
    let app = pick(variant / 2, "web", "db");
    let (api_version, kind_name) = (k.api_version(), k.kind);
    let (metadata, spec_or_rest) = match (k.group, k.kind) {
        ("", "Namespace") => (meta(namespace(slot).into(), None, json!({"team": team})), json!({})),
        ("", "Pod") => {
            // Variant 3 moves the pod to namespace c, which is never created: it breaks the build.
            let ns = if variant == 3 { "c" } else { namespace(slot) };
            let spec = json!({"spec": {"nodeName": format!("node-{}", slot % 2), "serviceAccountName": "sa0",
                "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]},
                "status": {"podIP": format!("198.18.1.{}", slot + 1)}});
            (meta(format!("p{slot}"), Some(ns), json!({"app": app})), spec)
        }
        ("", "Node") => {
            let status =
                json!({"status": {"addresses": [{"type": "InternalIP", "address": format!("198.18.2.{}", slot + 1)}]}});
            (meta(format!("node-{slot}"), None, json!({"zone": team})), status)
        }
        ("", "ServiceAccount") => (meta(format!("sa{slot}"), Some(namespace(slot)), json!({"role": team})), json!({})),
        ("", "Service") => {
            let spec = json!({"spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 80}]}});
            (meta(format!("s{slot}"), Some(namespace(slot)), json!({})), spec)
        }
        ("discovery.k8s.io", _) => {
            let rest = json!({"addressType": "IPv4", "endpoints": [{"addresses": [format!("198.18.1.{}", variant + 1)]}],
                "ports": [{"port": 80, "protocol": "TCP"}]});
            (meta(format!("e{slot}"), Some(namespace(slot)), json!({})), rest)
        }
        ("networking.k8s.io", _) => {
            // Variant 3 does not validate (port 70000): the watch refuses it.
            let port = if variant == 3 { 70000 } else { 80 };
            let spec = json!({"spec": {"podSelector": {"matchLabels": {"app": app}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": team}}}],
                    "ports": [{"port": port, "protocol": "TCP"}]}]}});
            (meta(format!("np{slot}"), Some(namespace(slot)), json!({})), spec)
        }
        (_, "ClusterNetworkPolicy") => {
            let spec = json!({"spec": {"tier": pick(variant / 2, "Admin", "Baseline"), "priority": 10 + slot,
                "subject": {"namespaces": {"matchLabels": {"team": team}}},
                "ingress": [{"name": "r", "action": pick(variant, "Accept", "Deny"), "from": [{"namespaces": {}}]}]}});
            (meta(format!("cnp{slot}"), None, json!({})), spec)
        }
        (_, "AdminNetworkPolicy") => {
            let spec = json!({"spec": {"priority": 10 + slot, "subject": {"namespaces": {}},
                "ingress": [{"name": "r", "action": pick(variant / 2, "Allow", "Deny"),
                    "from": [{"namespaces": {"matchLabels": {"team": team}}}]}]}});
            (meta(format!("anp{slot}"), None, json!({})), spec)
        }
        (_, "BaselineAdminNetworkPolicy") => {
            // The only name a baseline policy may have.
            let spec = json!({"spec": {"subject": {"namespaces": {}},
                "ingress": [{"name": "r", "action": pick(variant / 2, "Allow", "Deny"),
                    "from": [{"namespaces": {"matchLabels": {"team": team}}}]}]}});
            (meta("default".into(), None, json!({})), spec)
        }
        (_, "Tier") => {
            (meta(format!("t{slot}"), None, json!({})), json!({"spec": {"order": 100 + u32::from(variant)}}))
        }
        (_, "NetworkPolicy" | "StagedNetworkPolicy") => {
            // Slot 1 lives in tier t0: without that Tier it breaks the build.
            let (name, tier) =
                if slot == 1 { (format!("t0.cp{slot}"), "t0") } else { (format!("cp{slot}"), "default") };
            let mut spec = json!({"tier": tier, "selector": format!("app == '{app}'"),
                "ingress": [{"action": pick(variant, "Allow", "Deny"), "source": {"selector": "all()"}}]});
            if k.kind == "StagedNetworkPolicy" {
                spec["stagedAction"] = "Set".into();
            }
            (meta(name, Some("a"), json!({})), json!({"spec": spec}))
        }
        (_, "GlobalNetworkPolicy" | "StagedGlobalNetworkPolicy") => {
            let mut spec = json!({"order": f64::from(variant), "selector": format!("app == '{app}'"),
                "ingress": [{"action": "Allow", "source": {"namespaceSelector": format!("team == '{team}'")}}]});
            if k.kind == "StagedGlobalNetworkPolicy" {
                spec["stagedAction"] = "Set".into();
            }
            (meta(format!("gp{slot}"), None, json!({})), json!({"spec": spec}))
        }
        (_, "StagedKubernetesNetworkPolicy") => {
            let spec = json!({"spec": {"stagedAction": "Set", "podSelector": {"matchLabels": {"app": app}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": team}}}]}]}});
            (meta(format!("sk{slot}"), Some(namespace(slot)), json!({})), spec)
        }
        (_, "NetworkSet") => {
            let spec = json!({"spec": {"nets": [format!("198.18.3.{}/32", variant + 1)]}});
            (meta(format!("ns{slot}"), Some(namespace(slot)), json!({"role": team})), spec)
        }
        (_, "GlobalNetworkSet") => {
            let spec = json!({"spec": {"nets": [format!("198.18.4.{}/32", variant + 1)]}});
            (meta(format!("gs{slot}"), None, json!({"role": team})), spec)
        }
        (_, "HostEndpoint") => {
            let spec = json!({"spec": {"node": format!("node-{}", slot % 2), "interfaceName": "eth0",
                "expectedIPs": [format!("198.18.2.{}", slot + 1)]}});
            (meta(format!("hep{slot}"), None, json!({"host": team})), spec)
        }
        other => panic!("no generator for {other:?}"),
    };
    let mut out = json!({"apiVersion": api_version, "kind": kind_name, "metadata": metadata});
    if let (Value::Object(o), Value::Object(rest)) = (&mut out, spec_or_rest) {
        o.extend(rest);
    }
    out
}
