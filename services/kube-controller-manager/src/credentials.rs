//! `--use-service-account-credentials`: each controller writes through a
//! client authenticated as its own ServiceAccount in kube-system (bound by
//! the bootstrap policy to its `system:controller:<name>` role), with a
//! TokenRequest token kept fresh in a file the client re-reads. Informers
//! keep using the controller-manager's own identity, as upstream does.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use crate::options::Options;

const TOKEN_SECONDS: i64 = 3600;

pub struct Credentials {
    root: kube::Client,
    /// The kubeconfig's connection settings; None unless per-controller credentials are on.
    base: Option<kube::Config>,
    dir: PathBuf,
}

impl Credentials {
    pub async fn new(options: &Options, root: kube::Client) -> anyhow::Result<Credentials> {
        let base = if options.use_service_account_credentials { Some(options.client.config().await?) } else { None };
        let dir = std::env::temp_dir().join(format!("kube-controller-manager-{}", std::process::id()));
        Ok(Credentials { root, base, dir })
    }

    /// The client `controller` writes with: its ServiceAccount's, or the root one.
    pub async fn client_for(&self, service_account: &str) -> anyhow::Result<kube::Client> {
        let Some(base) = &self.base else { return Ok(self.root.clone()) };
        let sas: Api<ServiceAccount> = Api::namespaced(self.root.clone(), "kube-system");
        let sa = ServiceAccount {
            metadata: ObjectMeta { name: Some(service_account.into()), ..Default::default() },
            ..Default::default()
        };
        match sas.create(&PostParams::default(), &sa).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e).with_context(|| format!("creating service account kube-system/{service_account}")),
        }
        // Tokens are credentials: only this user may read them.
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        let path = self.dir.join(service_account);
        let lifetime = write_token(&sas, service_account, &path).await?;
        // Renew at 80% of the token's life; the client re-reads the file.
        let (sas2, name, path2) = (sas.clone(), service_account.to_string(), path.clone());
        tokio::spawn(async move {
            let mut every = lifetime.mul_f64(0.8);
            loop {
                tokio::time::sleep(every).await;
                match write_token(&sas2, &name, &path2).await {
                    Ok(l) => every = l.mul_f64(0.8),
                    Err(e) => {
                        tracing::warn!(service_account = %name, "renewing the token: {e:#}");
                        every = Duration::from_secs(10);
                    }
                }
            }
        });
        let mut config = base.clone();
        config.auth_info =
            kube::config::AuthInfo { token_file: Some(path.display().to_string()), ..Default::default() };
        kube::Client::try_from(config).context("building a service account client")
    }
}

async fn write_token(sas: &Api<ServiceAccount>, name: &str, path: &PathBuf) -> anyhow::Result<Duration> {
    let request = TokenRequest {
        spec: TokenRequestSpec { expiration_seconds: Some(TOKEN_SECONDS), ..Default::default() },
        ..Default::default()
    };
    let response: TokenRequest = sas
        .create_subresource("token", name, &PostParams::default(), &request)
        .await
        .with_context(|| format!("requesting a token for kube-system/{name}"))?;
    let status = response.status.context("token request without status")?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    std::io::Write::write_all(&mut file, status.token.as_bytes())?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    let left = status.expiration_timestamp.0.duration_since(jiff::Timestamp::now());
    Ok(Duration::try_from(left).unwrap_or(Duration::from_secs(60)).max(Duration::from_secs(60)))
}
