//! `palisade convert`: Kubernetes NetworkPolicy ⇄ Calico NetworkPolicy; ClusterNetworkPolicy
//! (and ANP/BANP) → Calico GlobalNetworkPolicy in the kube-admin/kube-baseline tiers.

use palisade_ingest::calico::convert::{to_calico, to_kubernetes};
use palisade_ingest::Object;
use serde_json::Value;

use crate::input::InputArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Target: calico (lossless) or kubernetes (where expressible; the rest is named).
    #[arg(long, value_enum)]
    to: Target,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Target {
    Calico,
    Kubernetes,
}

/// Exit codes: 0 everything converted, 1 some policies could not be, 2 invalid input.
pub fn run(args: Args) -> u8 {
    // Only a fully valid input is converted: the same checks as every other command.
    let load = match crate::input::load_all(&args.input) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let mut docs: Vec<Value> = Vec::new();
    let mut refused = 0;
    for input in &load.inputs {
        let meta = input.object.metadata();
        let name = format!(
            "{}{}",
            meta.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(),
            meta.name.as_deref().unwrap_or("?")
        );
        let at = input.locate.locate(&Default::default()).map(|l| format!("{l}: ")).unwrap_or_default();
        match (&input.object, args.to) {
            (Object::NetworkPolicy(np), Target::Calico) => docs.push(json(&to_calico(np))),
            (Object::CalicoNetworkPolicy(p), Target::Kubernetes) => match to_kubernetes(p) {
                Ok(k) => {
                    let mut doc = serde_json::Map::new();
                    doc.insert("apiVersion".into(), "networking.k8s.io/v1".into());
                    doc.insert("kind".into(), "NetworkPolicy".into());
                    if let Value::Object(m) = json(&k) {
                        doc.extend(m);
                    }
                    docs.push(Value::Object(doc));
                }
                Err(reasons) => {
                    refused += 1;
                    eprintln!("not converted: {at}Calico NetworkPolicy {name}:");
                    for r in reasons {
                        eprintln!("  {}: {}", r.path, r.reason);
                    }
                }
            },
            (o, Target::Calico) if palisade_ingest::clusterpolicy::is_cluster_network_policy(o) => {
                let kind = o.kind();
                match palisade_ingest::clusterpolicy::to_calico(o, meta.name.as_deref().unwrap_or_default()) {
                    Some((Ok(gnp), read)) => {
                        if !read {
                            eprintln!("note: {at}{kind} {name}: Calico 3.32 does not read v1alpha1 objects; converted as their tier places them");
                        }
                        docs.push(json(&gnp));
                    }
                    Some((Err(reasons), _)) => {
                        refused += 1;
                        eprintln!("not converted: {at}{kind} {name}:");
                        for r in reasons {
                            eprintln!("  {}: {}", r.path, r.reason);
                        }
                    }
                    None => {}
                }
            }
            (Object::CalicoGlobalNetworkPolicy(_), Target::Kubernetes) => {
                refused += 1;
                eprintln!("not converted: {at}GlobalNetworkPolicy {name}: cluster-wide policies have no Kubernetes NetworkPolicy equivalent");
            }
            _ => {}
        }
    }
    crate::emit(&palisade_load::yaml::emit(&docs));
    eprintln!("converted {} polic{}; {refused} not converted", docs.len(), if docs.len() == 1 { "y" } else { "ies" });
    u8::from(refused > 0)
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    let mut v = serde_json::to_value(v).expect("serializable");
    prune(&mut v);
    v
}

/// Drops nulls and empty metadata maps so the output reads like a hand-written manifest.
fn prune(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(prune);
        }
        Value::Array(a) => a.iter_mut().for_each(prune),
        _ => {}
    }
}
