//! API objects for unit tests, from JSON the way manifests write them:
//! `Objects::new().ns("shop", json!({})).pod("shop/web", json!({"app": "web"}), "10.0.0.1")`.

use std::sync::Arc;

use palisade_core::cluster::Cluster;
use palisade_core::field::{Nowhere, Problem};
use serde_json::{json, Value};

use crate::batch::build;
use crate::object::{BuildOptions, Input, Object};

fn meta(key: &str, labels: Value) -> Value {
    match key.split_once('/') {
        Some((ns, name)) => json!({"name": name, "namespace": ns, "labels": labels}),
        None => json!({"name": key, "labels": labels}),
    }
}

#[derive(Default)]
pub(crate) struct Objects {
    inputs: Vec<Input>,
}

impl Objects {
    pub(crate) fn new() -> Objects {
        Objects::default()
    }

    fn push(mut self, object: Object) -> Objects {
        self.inputs.push(Input { object, locate: Arc::new(Nowhere) });
        self
    }

    pub(crate) fn ns(self, name: &str, labels: Value) -> Objects {
        let ns = serde_json::from_value(json!({"metadata": meta(name, labels)})).expect("a Namespace");
        self.push(Object::Namespace(ns))
    }

    /// A running pod `namespace/name` with an address.
    pub(crate) fn pod(self, key: &str, labels: Value, ip: &str) -> Objects {
        let pod = json!({"metadata": meta(key, labels), "spec": {"containers": []}, "status": {"podIP": ip}});
        self.push(Object::Pod(serde_json::from_value(pod).expect("a Pod")))
    }

    /// A NetworkPolicy `namespace/name` with this spec.
    pub(crate) fn netpol(self, key: &str, spec: Value) -> Objects {
        let np = json!({"metadata": meta(key, json!({})), "spec": spec});
        self.push(Object::NetworkPolicy(serde_json::from_value(np).expect("a NetworkPolicy")))
    }

    /// Any object given as JSON, with its `kind` (Calico kinds by their v3 names).
    pub(crate) fn object(self, object: Object) -> Objects {
        self.push(object)
    }

    pub(crate) fn build(&self) -> Result<Cluster, Vec<Problem>> {
        build(&self.inputs, &BuildOptions::default())
    }
}
