//! Runs nft scripts (`nft -f -`, one atomic transaction each) and conntrack.
//!
//! The text syntax is fed to the nft binary directly rather than through the
//! `nftables` crate's JSON: the generator's output is then exactly what
//! `nft list` prints and what an operator would type, it is cheap to build
//! for 100k elements, and there is no JSON layer to keep in step with nft's
//! schema.

use std::net::Ipv4Addr;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::model::Protocol;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("nft failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
}

/// How nft and conntrack are invoked: directly, or inside a named network
/// namespace (`ip netns exec NAME ...`, for tests).
#[derive(Debug, Clone, Default)]
pub struct Runner {
    pub netns: Option<String>,
}

impl Runner {
    fn command(&self, program: &str) -> tokio::process::Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = tokio::process::Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => tokio::process::Command::new(program),
        };
        cmd.kill_on_drop(true);
        cmd
    }

    /// Applies `script` as one transaction.
    pub async fn apply(&self, script: &str) -> Result<(), NftError> {
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| NftError::Spawn { program: "nft".into(), source })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .await
                .map_err(|source| NftError::Spawn { program: "nft".into(), source })?;
        }
        let out = child.wait_with_output().await.map_err(|source| NftError::Spawn { program: "nft".into(), source })?;
        if out.status.success() {
            return Ok(());
        }
        let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        stderr.truncate(4000);
        Err(NftError::Failed { status: out.status.to_string(), stderr })
    }

    /// `nft -j list map` of a map, as JSON text.
    pub async fn list_map(&self, table: &str, map: &str) -> Result<String, NftError> {
        let out = self
            .command("nft")
            .args(["-j", "list", "map", "ip", table, map])
            .output()
            .await
            .map_err(|source| NftError::Spawn { program: "nft".into(), source })?;
        if !out.status.success() {
            return Err(NftError::Failed {
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Deletes conntrack entries of `protocol` to `dst:port`, only those whose
    /// reply comes from `backend` when given. Nothing to delete is not an error.
    pub async fn conntrack_delete(&self, protocol: Protocol, dst: Ipv4Addr, port: u16, backend: Option<Ipv4Addr>) {
        let mut cmd = self.command("conntrack");
        cmd.args(["-D", "-p", &protocol.to_string(), "--orig-dst", &dst.to_string(), "--dport", &port.to_string()]);
        if let Some(b) = backend {
            cmd.args(["--reply-src", &b.to_string()]);
        }
        match cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "running conntrack"),
        }
    }
}
