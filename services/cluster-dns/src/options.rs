//! Command-line flags, upstream-style: the client's `--kubeconfig`/`--master`,
//! `--cluster-domain`, `--dns-port`, and `--bind-address`/`--secure-port` of
//! component-base (one bind address for DNS and the health endpoint).

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "cluster-dns",
    version = "v1.33.0+rustkube",
    about = "The cluster DNS add-on: Services and EndpointSlices as DNS records (the Kubernetes DNS schema), other names forwarded.",
    long_about = "The cluster DNS add-on: Services and EndpointSlices as DNS records (the Kubernetes DNS \
                  schema), other names forwarded to the upstream resolvers. DNS is served over UDP and TCP \
                  on --bind-address:--dns-port; /healthz, /readyz and /metrics over HTTPS on \
                  --bind-address:--secure-port once the caches are synced."
)]
pub struct Options {
    #[command(flatten)]
    pub client: component_base::ClientFlags,
    #[command(flatten)]
    pub serving: component_base::serving::ServingFlags,
    /// The cluster's DNS domain.
    #[arg(long = "cluster-domain", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The DNS port (UDP and TCP).
    #[arg(long = "dns-port", default_value_t = 53)]
    pub dns_port: u16,
    /// Upstream resolvers for names outside the cluster (comma-separated `ip` or `ip:port`); default: the nameservers of --resolv-conf.
    #[arg(long = "upstream", value_delimiter = ',')]
    pub upstream: Vec<String>,
    /// Where the upstream resolvers are read from when --upstream is not given.
    #[arg(long = "resolv-conf", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// The TTL of the cluster's records, in seconds.
    #[arg(long = "ttl", default_value_t = 5)]
    pub ttl: u32,
    /// Log verbosity.
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
}

/// The HTTPS port of /healthz and /metrics when --secure-port is not given.
pub const DEFAULT_SECURE_PORT: u16 = 8443;

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("--upstream {0:?} is not an IP address or IP:port")]
    Upstream(String),
    #[error("--cluster-domain {0:?} is not a DNS name")]
    Domain(String),
    #[error("--bind-address {0:?} is not an IP address")]
    BindAddress(String),
}

impl Options {
    /// The upstream resolvers: --upstream, or the nameservers of --resolv-conf.
    pub fn upstreams(&self) -> Result<Vec<SocketAddr>, OptionsError> {
        if !self.upstream.is_empty() {
            return self
                .upstream
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| crate::server::parse_server(s).ok_or_else(|| OptionsError::Upstream(s.clone())))
                .collect();
        }
        match std::fs::read_to_string(&self.resolv_conf) {
            Ok(text) => Ok(crate::server::resolv_conf_servers(&text)),
            Err(e) => {
                tracing::warn!(path = %self.resolv_conf.display(), error = %e, "no upstream resolvers");
                Ok(Vec::new())
            }
        }
    }

    pub fn domain(&self) -> Result<String, OptionsError> {
        let d = self.cluster_domain.trim_end_matches('.').to_lowercase();
        if d.is_empty() || crate::server::query_name(&d).is_none() {
            return Err(OptionsError::Domain(self.cluster_domain.clone()));
        }
        Ok(d)
    }

    /// Where DNS is served.
    pub fn dns_address(&self) -> Result<SocketAddr, OptionsError> {
        let ip: std::net::IpAddr = self
            .serving
            .bind_address
            .parse()
            .map_err(|_| OptionsError::BindAddress(self.serving.bind_address.clone()))?;
        Ok(SocketAddr::new(ip, self.dns_port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_and_unknown_flags() {
        let o = Options::parse_from(["cluster-dns"]);
        assert_eq!(o.cluster_domain, "cluster.local");
        assert_eq!(o.dns_address().unwrap(), "0.0.0.0:53".parse().unwrap());
        let e = Options::try_parse_from(["cluster-dns", "--no-such-flag"]).unwrap_err().to_string();
        assert!(e.contains("--no-such-flag"), "{e}");
        let o = Options::parse_from([
            "cluster-dns",
            "--upstream=127.0.0.1:5353,::1",
            "--bind-address=127.0.0.1",
            "--dns-port=1053",
            "--cluster-domain=Example.Test.",
        ]);
        assert_eq!(o.upstreams().unwrap(), ["127.0.0.1:5353".parse().unwrap(), "[::1]:53".parse().unwrap()]);
        assert_eq!(o.dns_address().unwrap(), "127.0.0.1:1053".parse().unwrap());
        assert_eq!(o.domain().unwrap(), "example.test");
        assert!(Options::parse_from(["cluster-dns", "--upstream=dns.example"]).upstreams().is_err());
    }

    #[test]
    fn upstreams_from_resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "search x\nnameserver 192.0.2.53\noptions ndots:2\n").unwrap();
        let o = Options::parse_from(["cluster-dns", &format!("--resolv-conf={}", path.display())]);
        assert_eq!(o.upstreams().unwrap(), ["192.0.2.53:53".parse().unwrap()]);
    }
}
