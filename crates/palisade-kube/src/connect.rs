//! A client for the cluster a kubeconfig names (`--kubeconfig`, `--context`, else `KUBECONFIG`
//! or `~/.kube/config` and its current context, as kubectl does), or the in-cluster
//! ServiceAccount's (the agent's default). TLS is rustls.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::SourceError;

/// Which kubeconfig and context to use; both `None` means kubectl's defaults.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

/// The kubeconfig files kubectl would read: `$KUBECONFIG` (a `:`-separated list) or
/// `~/.kube/config`, those that exist.
pub fn default_kubeconfigs() -> Vec<PathBuf> {
    let listed: Vec<PathBuf> = match std::env::var_os("KUBECONFIG") {
        Some(v) if !v.is_empty() => std::env::split_paths(&v).collect(),
        _ => std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube").join("config")).into_iter().collect(),
    };
    listed.into_iter().filter(|p| p.is_file()).collect()
}

impl Target {
    /// Whether a cluster was asked for explicitly.
    pub fn explicit(&self) -> bool {
        self.kubeconfig.is_some() || self.context.is_some()
    }

    /// The client configuration.
    pub async fn config(&self) -> Result<Config, SourceError> {
        let options = KubeConfigOptions { context: self.context.clone(), ..Default::default() };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path)
                    .map_err(|source| SourceError::Kubeconfig { path: path.display().to_string(), source })?;
                Config::from_custom_kubeconfig(kc, &options).await
            }
            None => {
                if default_kubeconfigs().is_empty() {
                    return Err(SourceError::NoKubeconfig);
                }
                Config::from_kubeconfig(&options).await
            }
        };
        let shown =
            self.kubeconfig.as_ref().map_or_else(|| "KUBECONFIG or ~/.kube/config".into(), |p| p.display().to_string());
        config.map_err(|source| SourceError::Kubeconfig { path: shown, source })
    }

    /// A client for the target cluster.
    pub async fn client(&self) -> Result<Client, SourceError> {
        Client::try_from(self.config().await?).map_err(SourceError::Client)
    }
}

/// The in-cluster client (the Pod's ServiceAccount token and CA).
pub fn in_cluster() -> Result<Client, SourceError> {
    let config = Config::incluster().map_err(|e| SourceError::InCluster(e.to_string()))?;
    Client::try_from(config).map_err(SourceError::Client)
}
