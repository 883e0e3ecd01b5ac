//! `cluster:` as an input: the live cluster that `--kubeconfig`/`--context` (or kubectl's
//! defaults: `KUBECONFIG`, `~/.kube/config`, the current context) names, read once with
//! palisade-kube. Files given beside it are applied over it: a file's object replaces the
//! cluster's object of the same kind, namespace and name, as `kubectl apply` would.

use std::collections::HashSet;
use std::path::PathBuf;

use palisade_ingest::Input;
use palisade_kube::{SourceError, Target};
use palisade_load::manifest::Loaded;

/// The path that stands for the live cluster.
pub const CLUSTER: &str = "cluster:";

/// Which cluster `cluster:` means.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClusterArgs {
    /// Kubeconfig for `cluster:` (and for no paths at all); default: KUBECONFIG, else ~/.kube/config.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context for `cluster:`; default: the current context.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

impl ClusterArgs {
    fn target(&self) -> Target {
        Target { kubeconfig: self.kubeconfig.clone(), context: self.context.clone() }
    }

    /// How messages name the cluster.
    fn shown(&self) -> String {
        match (&self.context, &self.kubeconfig) {
            (Some(c), _) => format!("context {c}"),
            (None, Some(k)) => format!("the current context of {}", k.display()),
            (None, None) => "the current kubeconfig context".into(),
        }
    }
}

/// Splits the paths into files and whether the cluster is read: when `cluster:` is among them,
/// or when there are no paths at all (as kubectl reads the current context).
pub fn split(paths: &[PathBuf]) -> (Vec<PathBuf>, bool) {
    let files: Vec<PathBuf> = paths.iter().filter(|p| p.as_os_str() != CLUSTER).cloned().collect();
    let cluster = paths.is_empty() || files.len() < paths.len();
    (files, cluster)
}

/// Why the cluster was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot start the Kubernetes client: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("no paths given and {0}")]
    NoKubeconfig(#[source] SourceError),
    #[error("cluster ({cluster}): {source}")]
    Cluster { cluster: String, source: SourceError },
}

/// Reads every kind Palisade uses from the cluster, once.
pub fn read(args: &ClusterArgs) -> Result<Loaded, ReadError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ReadError::Runtime)?;
    let target = args.target();
    let result: Result<Loaded, SourceError> = runtime.block_on(async {
        let client = target.client().await?;
        palisade_kube::read::read(&client).await
    });
    result.map_err(|e| match e {
        SourceError::NoKubeconfig => ReadError::NoKubeconfig(e),
        source => ReadError::Cluster { cluster: args.shown(), source },
    })
}

/// `(kind, namespace, name)` of an input, for replacing the cluster's object by a file's; a
/// namespaced object without namespace is in `default_namespace` (`-n`).
fn identity(input: &Input, default_namespace: Option<&str>) -> (&'static str, Option<String>, Option<String>) {
    let meta = input.object.metadata();
    let namespace = match &meta.namespace {
        None if input.object.is_namespaced() => default_namespace.map(String::from),
        ns => ns.clone(),
    };
    (input.object.kind(), namespace, meta.name.clone())
}

/// The cluster's objects with the files' applied over them (`-n` places the files' objects
/// that name no namespace, as `kubectl apply -n` would).
pub fn apply_files(mut cluster: Loaded, files: Loaded, default_namespace: Option<&str>) -> Loaded {
    let replaced: HashSet<_> = files.inputs.iter().map(|i| identity(i, default_namespace)).collect();
    cluster.inputs.retain(|i| !replaced.contains(&identity(i, None)));
    cluster.extend(files);
    cluster
}
