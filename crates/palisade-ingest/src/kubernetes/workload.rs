//! Workloads (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob): their pod
//! template stands for their pods when no Pod objects are given.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use palisade_core::field::FieldPath;

use crate::object::Object;

/// Whether an owner reference names an object of the input (its pods are then given too).
pub(crate) fn owned_by_present_object(
    meta: &ObjectMeta,
    ns: Option<&str>,
    present: &[(String, String, String)],
) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| present.iter().any(|(k, n, name)| *k == o.kind && Some(n.as_str()) == ns && *name == o.name))
}

/// A workload's pod selector and template.
pub(crate) fn workload_template(obj: &Object) -> Option<(Option<LabelSelector>, PodTemplateSpec)> {
    match obj {
        Object::Deployment(d) => d.spec.as_ref().map(|s| (Some(s.selector.clone()), s.template.clone())),
        Object::ReplicaSet(r) => r.spec.as_ref().and_then(|s| Some((Some(s.selector.clone()), s.template.clone()?))),
        Object::StatefulSet(s) => s.spec.as_ref().map(|s| (Some(s.selector.clone()), s.template.clone())),
        Object::DaemonSet(d) => d.spec.as_ref().map(|s| (Some(s.selector.clone()), s.template.clone())),
        Object::Job(j) => j.spec.as_ref().map(|s| (s.selector.clone(), s.template.clone())),
        Object::CronJob(c) => c.spec.as_ref().and_then(|s| {
            let job = s.job_template.spec.as_ref()?;
            Some((job.selector.clone(), job.template.clone()))
        }),
        _ => None,
    }
}

/// How many pods a workload runs: `replicas` (Deployment, ReplicaSet, StatefulSet; default 1),
/// `parallelism` (Job, CronJob's job template; default 1); `None` for a DaemonSet (one per
/// node). Negative counts are the API server's to reject; they count as none.
pub(crate) fn workload_replicas(obj: &Object) -> Option<u32> {
    let count = |n: Option<i32>| Some(u32::try_from(n.unwrap_or(1)).unwrap_or(0));
    match obj {
        Object::Deployment(d) => count(d.spec.as_ref().and_then(|s| s.replicas)),
        Object::ReplicaSet(r) => count(r.spec.as_ref().and_then(|s| s.replicas)),
        Object::StatefulSet(s) => count(s.spec.as_ref().and_then(|s| s.replicas)),
        Object::Job(j) => count(j.spec.as_ref().and_then(|s| s.parallelism)),
        Object::CronJob(c) => {
            count(c.spec.as_ref().and_then(|s| s.job_template.spec.as_ref()).and_then(|s| s.parallelism))
        }
        _ => None,
    }
}

/// Where a workload writes its pod template.
pub(crate) fn template_path(obj: &Object) -> FieldPath {
    match obj {
        Object::CronJob(_) => FieldPath::parse("spec.jobTemplate.spec.template"),
        _ => FieldPath::parse("spec.template"),
    }
}

/// Where a workload writes its pod selector.
pub(crate) fn selector_path(obj: &Object) -> FieldPath {
    match obj {
        Object::CronJob(_) => FieldPath::parse("spec.jobTemplate.spec.selector"),
        _ => FieldPath::parse("spec.selector"),
    }
}
