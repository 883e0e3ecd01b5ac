//! Palisade's file adapter: reads manifests (YAML/JSON, files, directories, stdin) into the
//! engine's model and reports problems with file, line, column and field path.

#![forbid(unsafe_code)]

pub mod clusterpolicy;
pub mod crd;
pub mod decode;
pub mod diagnostic;
pub mod directory;
mod document;
pub mod foreign;
pub mod json;
pub mod kinds;
pub mod manifest;
pub mod markers;
pub mod object;
pub mod resolve;
pub mod source;
pub mod suggestion;
pub mod text;
pub mod tree;
mod typed;
pub mod watch;
pub mod yaml;

use std::path::PathBuf;

use palisade_core::cluster::Cluster;
use palisade_core::field::{Problem, Severity};
use palisade_ingest::store::Store;
use palisade_ingest::BuildOptions;

pub use source::Source;

/// The outcome of loading: a cluster (when there were no errors) and every problem found.
pub struct Load {
    pub sources: Vec<Source>,
    pub cluster: Option<Cluster>,
    pub problems: Vec<Problem>,
    pub ignored: std::collections::BTreeMap<String, usize>,
    /// The decoded objects, in input order (for commands that rewrite them).
    pub inputs: Vec<palisade_ingest::Input>,
}

impl Load {
    pub fn errors(&self) -> usize {
        self.problems.iter().filter(|p| p.severity == Severity::Error).count()
    }
}

/// Reads paths, decodes every object and builds the cluster. Any error anywhere means no cluster.
pub fn load_paths(paths: &[PathBuf], opts: &BuildOptions) -> Result<Load, source::ReadError> {
    let sources = source::read_paths(paths)?;
    Ok(load_sources(sources, opts))
}

pub fn load_sources(sources: Vec<Source>, opts: &BuildOptions) -> Load {
    let decoded = manifest::decode(&sources);
    assemble(sources, decoded, opts)
}

/// Builds the cluster from decoded objects; problems of decoding and building, sorted by place.
pub(crate) fn assemble(sources: Vec<Source>, mut decoded: manifest::Loaded, opts: &BuildOptions) -> Load {
    let mut problems = decoded.problems;
    problems.extend(crd::both_forms(&mut decoded.inputs));
    let decode_failed = problems.iter().any(|p| p.severity == Severity::Error);
    // A batch is "apply all, then finish": the same way in as the agent's changes.
    let (store, done) = Store::batch(decoded.inputs, opts.clone());
    if let Err(more) = done {
        problems.extend(more.0);
    }
    let (inputs, cluster) = store.into_parts();
    let cluster = cluster.and_then(|c| {
        problems.extend(c.warnings.iter().cloned());
        (!decode_failed).then_some(c)
    });
    problems.sort_by(|a, b| {
        let key = |p: &Problem| p.location.as_ref().map(|l| (l.file.clone(), l.line, l.column));
        key(a).cmp(&key(b))
    });
    Load { sources, cluster, problems, ignored: decoded.ignored, inputs }
}

/// Loads manifests given as text (tests, generated input).
pub fn load_str(name: &str, text: &str, opts: &BuildOptions) -> Load {
    load_sources(vec![Source { name: name.into(), text: text.into() }], opts)
}
