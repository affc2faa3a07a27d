//! Command-line flags with upstream's names, and `--config`
//! (a KubeProxyConfiguration, kubeproxy.config.k8s.io/v1alpha1) read with
//! figment; flags given on the command line win over the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::Format;
use serde::Deserialize;

#[derive(clap::Parser, Debug, Clone)]
#[command(name = "kube-proxy", version = "v1.33.0+rustkube", about = "Programs nftables for Services.")]
pub struct Options {
    /// A KubeProxyConfiguration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub client: component_base::ClientFlags,
    /// The node's name, instead of the hostname.
    #[arg(long = "hostname-override")]
    pub hostname_override: Option<String>,
    /// The cluster's pod network (comma-separated IPv4 CIDRs): clients outside it are masqueraded to ClusterIPs.
    #[arg(long = "cluster-cidr")]
    pub cluster_cidr: Option<String>,
    /// iptables or nftables; only nftables is implemented.
    #[arg(long = "proxy-mode")]
    pub proxy_mode: Option<String>,
    /// CIDRs of the node addresses NodePorts open on (comma-separated), or "primary" (the node's InternalIPs, the default).
    #[arg(long = "nodeport-addresses")]
    pub nodeport_addresses: Option<String>,
    /// The least time between two syncs (changes within it are batched).
    #[arg(long = "min-sync-period", value_parser = component_base::duration_flag)]
    pub min_sync_period: Option<Duration>,
    /// The period of the full resync.
    #[arg(long = "sync-period", value_parser = component_base::duration_flag)]
    pub sync_period: Option<Duration>,
    /// Where /healthz is served over plain HTTP (empty disables it).
    #[arg(long = "healthz-bind-address")]
    pub healthz_bind_address: Option<String>,
    /// Where /metrics is served over plain HTTP (empty disables it).
    #[arg(long = "metrics-bind-address")]
    pub metrics_bind_address: Option<String>,
    /// Remove the proxy's rules and exit.
    #[arg(long)]
    pub cleanup: bool,
    /// Log verbosity.
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
    /// The nftables table (ip family) the proxy owns; not an upstream flag (tests run several proxies).
    #[arg(long = "nftables-table", hide = true, default_value = "kube-proxy")]
    pub table: String,
    /// Run nft and conntrack in this named network namespace; not an upstream flag (tests).
    #[arg(long = "netns", hide = true)]
    pub netns: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {message}")]
    Decode { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The parts of KubeProxyConfiguration this proxy reads; other fields are accepted and ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeProxyConfiguration {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub client_connection: Option<ClientConnection>,
    pub hostname_override: Option<String>,
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<String>,
    pub mode: Option<String>,
    pub node_port_addresses: Option<Vec<String>>,
    pub healthz_bind_address: Option<String>,
    pub metrics_bind_address: Option<String>,
    pub nftables: Option<SyncSettings>,
    pub sync_period: Option<String>,
    pub min_sync_period: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConnection {
    pub kubeconfig: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncSettings {
    pub sync_period: Option<String>,
    pub min_sync_period: Option<String>,
}

/// Everything the proxy runs with, flags and file merged.
#[derive(Debug, Clone)]
pub struct Settings {
    pub hostname: String,
    pub cluster_cidrs: Vec<String>,
    /// `None`: the node's InternalIPs; else CIDRs.
    pub nodeport_cidrs: Option<Vec<String>>,
    pub min_sync_period: Duration,
    pub sync_period: Duration,
    pub healthz: Option<String>,
    pub metrics: Option<String>,
}

fn duration(field: &str, v: &str) -> Result<Duration, ConfigError> {
    component_base::duration_flag(v).map_err(|e| ConfigError::Invalid(format!("{field}: {e}")))
}

fn split(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

pub fn read_config(path: &Path) -> Result<KubeProxyConfiguration, ConfigError> {
    figment::Figment::from(figment::providers::Yaml::file_exact(path))
        .extract()
        .map_err(|e| ConfigError::Decode { path: path.display().to_string(), message: e.to_string() })
}

impl Options {
    /// Merges the flags over the configuration file and upstream's defaults.
    pub fn settings(&mut self) -> Result<Settings, ConfigError> {
        let file = match &self.config {
            Some(p) => read_config(p)?,
            None => KubeProxyConfiguration::default(),
        };
        if let Some(kind) = &file.kind {
            if kind != "KubeProxyConfiguration" {
                return Err(ConfigError::Invalid(format!("kind {kind:?}, want KubeProxyConfiguration")));
            }
        }
        if self.client.kubeconfig.is_none() {
            self.client.kubeconfig = file
                .client_connection
                .as_ref()
                .and_then(|c| c.kubeconfig.clone())
                .filter(|k| !k.is_empty())
                .map(PathBuf::from);
        }
        let mode = self.proxy_mode.clone().or(file.mode.clone()).unwrap_or_default();
        match mode.as_str() {
            "" | "nftables" => {}
            "iptables" | "ipvs" => {
                return Err(ConfigError::Invalid(format!("--proxy-mode={mode} is not implemented here; use nftables")))
            }
            other => return Err(ConfigError::Invalid(format!("unknown --proxy-mode {other:?}"))),
        }
        let hostname = self
            .hostname_override
            .clone()
            .or(file.hostname_override.clone())
            .filter(|h| !h.is_empty())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
            .unwrap_or_default()
            .to_lowercase();
        let cluster_cidrs =
            self.cluster_cidr.clone().or(file.cluster_cidr.clone()).map(|c| split(&c)).unwrap_or_default();
        for c in &cluster_cidrs {
            if parse_cidr(c).is_none() {
                return Err(ConfigError::Invalid(format!("--cluster-cidr {c:?} is not an IPv4 CIDR")));
            }
        }
        let nodeport = self.nodeport_addresses.as_deref().map(split).or(file.node_port_addresses.clone());
        let nodeport_cidrs = match nodeport {
            None => None,
            Some(v) if v.is_empty() || v == ["primary"] => None,
            Some(v) => {
                for c in &v {
                    if parse_cidr(c).is_none() {
                        return Err(ConfigError::Invalid(format!("--nodeport-addresses {c:?} is not an IPv4 CIDR")));
                    }
                }
                Some(v)
            }
        };
        let nft = file.nftables.unwrap_or_default();
        let sync_period = match (self.sync_period, nft.sync_period.or(file.sync_period)) {
            (Some(d), _) => d,
            (None, Some(s)) => duration("syncPeriod", &s)?,
            (None, None) => Duration::from_secs(30),
        };
        let min_sync_period = match (self.min_sync_period, nft.min_sync_period.or(file.min_sync_period)) {
            (Some(d), _) => d,
            (None, Some(s)) => duration("minSyncPeriod", &s)?,
            (None, None) => Duration::from_secs(1),
        };
        let healthz =
            self.healthz_bind_address.clone().or(file.healthz_bind_address).unwrap_or_else(|| "0.0.0.0:10256".into());
        let metrics =
            self.metrics_bind_address.clone().or(file.metrics_bind_address).unwrap_or_else(|| "127.0.0.1:10249".into());
        Ok(Settings {
            hostname,
            cluster_cidrs,
            nodeport_cidrs,
            min_sync_period,
            sync_period,
            healthz: (!healthz.is_empty()).then_some(healthz),
            metrics: (!metrics.is_empty()).then_some(metrics),
        })
    }
}

/// `a.b.c.d/n` (or a bare address, /32) as network and prefix length.
pub fn parse_cidr(s: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/').unwrap_or((s, "32"));
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((ip.parse().ok()?, len))
}

pub fn cidr_contains(cidr: &str, ip: std::net::Ipv4Addr) -> bool {
    let Some((net, len)) = parse_cidr(cidr) else { return false };
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(net) & mask == u32::from(ip) & mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_win_over_the_file_and_unknown_flags_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\nclusterCIDR: 10.244.0.0/16\nnftables:\n  syncPeriod: 1m\n  minSyncPeriod: 2s\n",
        )
        .unwrap();
        let mut o = Options::parse_from([
            "kube-proxy",
            "--config",
            path.to_str().unwrap(),
            "--min-sync-period=0s",
            "--hostname-override=N1",
        ]);
        let s = o.settings().unwrap();
        assert_eq!(s.cluster_cidrs, ["10.244.0.0/16"]);
        assert_eq!(s.sync_period, Duration::from_secs(60));
        assert_eq!(s.min_sync_period, Duration::ZERO);
        assert_eq!(s.hostname, "n1");
        assert_eq!(s.healthz.as_deref(), Some("0.0.0.0:10256"));
        assert!(Options::try_parse_from(["kube-proxy", "--no-such-flag"]).is_err());
        let mut o = Options::parse_from(["kube-proxy", "--proxy-mode=iptables"]);
        assert!(o.settings().is_err());
    }

    #[test]
    fn cidrs_contain_their_addresses() {
        assert!(cidr_contains("10.244.0.0/16", "10.244.3.4".parse().unwrap()));
        assert!(!cidr_contains("10.244.0.0/16", "10.245.0.1".parse().unwrap()));
        assert!(cidr_contains("127.0.0.1/32", "127.0.0.1".parse().unwrap()));
    }
}
