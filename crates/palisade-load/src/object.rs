//! Objects that come as JSON values (from an API server), not as files: decoded and validated
//! by the same code as manifests ([`crate::manifest::decode_json`]); their problems name the
//! object (`Kind ns/name`) and the field path, and carry no file position.

use palisade_ingest::BuildOptions;

use crate::manifest::Loaded;
use crate::source::Source;

/// Builds the cluster from objects decoded elsewhere (files and API objects together), as
/// [`crate::load_sources`] does for files: any error anywhere means no cluster.
pub fn load_decoded(sources: Vec<Source>, decoded: Loaded, opts: &BuildOptions) -> crate::Load {
    crate::assemble(sources, decoded, opts)
}

impl Loaded {
    /// Appends another batch of decoded objects, problems and ignored kinds.
    pub fn extend(&mut self, other: Loaded) {
        self.inputs.extend(other.inputs);
        self.problems.extend(other.problems);
        for (k, n) in other.ignored {
            *self.ignored.entry(k).or_insert(0) += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::manifest::decode_json;

    #[test]
    fn api_objects_decode_like_files_and_name_object_and_path() {
        let ok = decode_json(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "x"}}));
        assert_eq!(ok.inputs.len(), 1);
        assert!(ok.problems.is_empty());
        let bad = decode_json(&json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "x"},
            "spec": {"podSelector": {}, "ingress": [{"prots": []}]},
        }));
        assert_eq!(bad.problems.len(), 1, "{:?}", bad.problems);
        let p = &bad.problems[0];
        assert_eq!((p.object.as_str(), p.path.to_string().as_str()), ("NetworkPolicy x/p", "spec.ingress[0].prots"));
        assert!(p.location.is_none());
        let ignored =
            decode_json(&json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "c"}}));
        assert_eq!(ignored.ignored.len(), 1);
        let cnp = decode_json(
            &json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy", "metadata": {"name": "c"}}),
        );
        assert_eq!((cnp.inputs.len(), cnp.ignored.len()), (1, 0), "ClusterNetworkPolicy is read");
    }

    #[test]
    fn json_types_are_kept_as_the_api_server_sent_them() {
        // A number where a string belongs is an error, not retyped as a plain YAML scalar would be.
        let bad = decode_json(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "labels": {"a": 1}}}),
        );
        assert!(bad.has_errors());
    }
}
