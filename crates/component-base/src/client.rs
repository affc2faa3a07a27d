//! The client every component reaches the apiserver with.

use std::path::PathBuf;

use anyhow::Context;

/// Upstream's client flags. QPS and burst are accepted for compatibility;
/// this client does not throttle itself (the apiserver's own limits apply).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientFlags {
    /// Path to a kubeconfig file with the apiserver's address and credentials.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The apiserver's address; overrides the kubeconfig's.
    #[arg(long)]
    pub master: Option<String>,
    /// Accepted for compatibility (no client-side throttling here).
    #[arg(long = "kube-api-qps")]
    pub kube_api_qps: Option<f32>,
    /// Accepted for compatibility (no client-side throttling here).
    #[arg(long = "kube-api-burst")]
    pub kube_api_burst: Option<u32>,
    /// Accepted for compatibility; requests use JSON.
    #[arg(long = "kube-api-content-type")]
    pub kube_api_content_type: Option<String>,
}

impl ClientFlags {
    /// The client configuration from `--kubeconfig` (or `KUBECONFIG`, or
    /// in-cluster), with `--master` applied and no read timeout (watches
    /// stay open); for components that build more than one client from it.
    pub async fn config(&self) -> anyhow::Result<kube::Config> {
        let mut config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading --kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                    .await
                    .with_context(|| format!("loading --kubeconfig {}", path.display()))?
            }
            None => kube::Config::infer().await.context("no --kubeconfig given and none could be inferred")?,
        };
        if let Some(master) = &self.master {
            config.cluster_url = master.parse().with_context(|| format!("--master {master:?}"))?;
        }
        config.read_timeout = None;
        Ok(config)
    }

    /// A client from [`ClientFlags::config`].
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        kube::Client::try_from(self.config().await?).context("building the API client")
    }
}
