//! What each command is asked to do, and the parsing of the network values in it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;

use crate::cert::San;
use crate::Error;

pub const DEFAULT_DIR: &str = "/etc/kubernetes";
pub const DEFAULT_CLUSTER_NAME: &str = "kubernetes";
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
pub const DEFAULT_DNS_DOMAIN: &str = "cluster.local";
pub const DEFAULT_PORT: u16 = 6443;

/// `kube-pki init`: the whole PKI and the component kubeconfigs.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub dir: PathBuf,
    /// The kubeconfigs' cluster name.
    pub cluster_name: String,
    /// This apiserver's address: a SAN of its certificate, of etcd's, and the server of the
    /// scheduler's and controller manager's kubeconfigs.
    pub advertise_address: IpAddr,
    pub bind_port: u16,
    /// More apiserver SANs, IP addresses or DNS names.
    pub cert_extra_sans: Vec<String>,
    /// The primary service range; its first address is the `kubernetes` Service's ClusterIP.
    pub service_cidr: Cidr,
    pub dns_domain: String,
    /// A shared endpoint for all apiservers (`host[:port]` or `https://host[:port]`): a SAN of the
    /// apiserver certificate and the server of admin.conf, kubelet.conf and kube-proxy.conf.
    /// Unset, those use the advertise address.
    pub control_plane_endpoint: Option<String>,
    /// This node: a SAN of the apiserver's and etcd's certificates, and kubelet.conf's identity.
    pub node_name: String,
    /// The node's addresses, for its kubelet serving certificate; empty means the advertise address.
    pub node_ips: Vec<IpAddr>,
    /// Reissue every leaf certificate, keeping the CAs and all keys.
    pub force: bool,
}

impl InitOptions {
    /// kubeadm's defaults for everything else.
    pub fn new(dir: impl Into<PathBuf>, advertise_address: IpAddr, node_name: impl Into<String>) -> Self {
        InitOptions {
            dir: dir.into(),
            cluster_name: DEFAULT_CLUSTER_NAME.into(),
            advertise_address,
            bind_port: DEFAULT_PORT,
            cert_extra_sans: Vec::new(),
            service_cidr: DEFAULT_SERVICE_CIDR.parse().expect("the default service CIDR parses"),
            dns_domain: DEFAULT_DNS_DOMAIN.into(),
            control_plane_endpoint: None,
            node_name: node_name.into(),
            node_ips: Vec::new(),
            force: false,
        }
    }

    /// The apiserver URL on this node: `https://<advertise address>:<port>`.
    pub fn local_endpoint(&self) -> Endpoint {
        Endpoint { host: self.advertise_address.to_string(), port: self.bind_port }
    }

    /// The URL clients outside the control plane use.
    pub fn cluster_endpoint(&self) -> Result<Endpoint, Error> {
        match &self.control_plane_endpoint {
            Some(endpoint) => Endpoint::parse(endpoint, self.bind_port)
                .map_err(|reason| Error::InvalidOption { option: "--control-plane-endpoint", reason }),
            None => Ok(self.local_endpoint()),
        }
    }

    pub(crate) fn node_ips(&self) -> Vec<IpAddr> {
        if self.node_ips.is_empty() {
            vec![self.advertise_address]
        } else {
            self.node_ips.clone()
        }
    }

    /// The extra SANs, each an IP address or a DNS name (a leading `*.` allowed).
    pub(crate) fn extra_sans(&self) -> Result<Vec<San>, Error> {
        self.cert_extra_sans
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| match San::parse(s.trim()) {
                San::Dns(name) => validate_dns_name(name.strip_prefix("*.").unwrap_or(&name))
                    .map(|()| San::Dns(name))
                    .map_err(|reason| Error::InvalidOption { option: "--apiserver-cert-extra-sans", reason }),
                ip => Ok(ip),
            })
            .collect()
    }

    /// Checks every option before anything is written.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        validate_node_name(&self.node_name)?;
        if self.cluster_name.is_empty() {
            return Err(Error::InvalidOption { option: "--cluster-name", reason: "must not be empty".into() });
        }
        validate_dns_name(&self.dns_domain)
            .map_err(|reason| Error::InvalidOption { option: "--service-dns-domain", reason })?;
        self.service_cidr.first_host().map_err(|reason| Error::InvalidOption { option: "--service-cidr", reason })?;
        self.extra_sans()?;
        self.cluster_endpoint()?;
        Ok(())
    }
}

/// `kube-pki node`: another node's kubelet client kubeconfig and serving certificate.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub dir: PathBuf,
    pub node_name: String,
    /// SANs of the serving certificate, besides the node name.
    pub node_ips: Vec<IpAddr>,
    /// Unset: admin.conf's.
    pub server: Option<String>,
    /// Unset: admin.conf's, else `kubernetes`.
    pub cluster_name: Option<String>,
    /// Unset: `<dir>/kubelet-<node>.conf`.
    pub out: Option<PathBuf>,
    /// Reissue the node's certificates even if they fit.
    pub force: bool,
}

impl NodeOptions {
    pub fn new(dir: impl Into<PathBuf>, node_name: impl Into<String>) -> Self {
        NodeOptions {
            dir: dir.into(),
            node_name: node_name.into(),
            node_ips: Vec::new(),
            server: None,
            cluster_name: None,
            out: None,
            force: false,
        }
    }
}

/// `kube-pki kubeconfig`: a user's client-certificate kubeconfig.
#[derive(Clone, Debug)]
pub struct UserOptions {
    pub user: String,
    pub groups: Vec<String>,
    /// Unset: admin.conf's.
    pub server: Option<String>,
    /// Unset: admin.conf's, else `kubernetes`.
    pub cluster_name: Option<String>,
}

impl UserOptions {
    pub fn new(user: impl Into<String>, groups: impl IntoIterator<Item = impl Into<String>>) -> Self {
        UserOptions {
            user: user.into(),
            groups: groups.into_iter().map(Into::into).collect(),
            server: None,
            cluster_name: None,
        }
    }
}

/// An IP range such as `10.96.0.0/12`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The range's first usable address: `10.96.0.1` for `10.96.0.0/12`.
    pub fn first_host(&self) -> Result<IpAddr, String> {
        match self.addr {
            IpAddr::V4(addr) if self.prefix < 31 => {
                let network = u32::from(addr) & (u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0));
                Ok(Ipv4Addr::from(network + 1).into())
            }
            IpAddr::V6(addr) if self.prefix < 127 => {
                let network = u128::from(addr) & (u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0));
                Ok(Ipv6Addr::from(network + 1).into())
            }
            _ => Err(format!("{self} has no room for services")),
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| format!("{s:?} is not address/prefix"))?;
        let addr: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| format!("{prefix:?} is not 0..={max}"))?;
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An apiserver address: a host (IP address or DNS name) and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `host`, `host:port`, `[v6]:port` or any of those after `https://`, as kubeadm's
    /// `--control-plane-endpoint` takes them.
    pub fn parse(s: &str, default_port: u16) -> Result<Self, String> {
        let rest = match s.split_once("://") {
            Some(("https", rest)) => rest,
            Some((scheme, _)) => return Err(format!("{s:?}: the apiserver only serves https, not {scheme}")),
            None => s,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(format!("{s:?}: a path is not allowed"));
        }
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| format!("{s:?}: unclosed '['"))?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| format!("{s:?}: junk after ']'"))?),
            };
            host.parse::<Ipv6Addr>().map_err(|_| format!("{s:?}: {host:?} is not an IPv6 address"))?;
            (host, port)
        } else if rest.parse::<Ipv6Addr>().is_ok() {
            (rest, None)
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        let port = match port {
            None => default_port,
            Some(port) => port.parse().ok().filter(|p| *p != 0).ok_or_else(|| format!("{s:?}: bad port {port:?}"))?,
        };
        let host = host.to_ascii_lowercase();
        if host.parse::<IpAddr>().is_err() {
            validate_dns_name(&host).map_err(|reason| format!("{s:?}: {reason}"))?;
        }
        Ok(Endpoint { host, port })
    }

    /// `https://host:port`, an IPv6 host in brackets.
    pub fn url(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("https://[{v6}]:{}", self.port),
            _ => format!("https://{}:{}", self.host, self.port),
        }
    }

    pub(crate) fn san(&self) -> San {
        San::parse(&self.host)
    }
}

/// A node name is a lowercase RFC 1123 subdomain, as Node names are; it also names files,
/// so nothing path-like gets through.
pub(crate) fn validate_node_name(name: &str) -> Result<(), Error> {
    validate_dns_name(name).map_err(|reason| Error::InvalidOption { option: "--node-name", reason })
}

/// A lowercase RFC 1123 subdomain: dot-separated labels of `a-z`, `0-9` and inner `-`.
pub(crate) fn validate_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?} must be 1 to 253 characters"));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!(
            "{name:?} is not a lowercase RFC 1123 subdomain (labels of a-z, 0-9 and '-', joined by '.')"
        ));
    }
    Ok(())
}

/// The host's name, lowercased, as kubeadm defaults `--node-name`.
pub fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_ascii_lowercase())
        .find(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_host_of_a_range_is_the_kubernetes_service_ip() {
        let first = |s: &str| s.parse::<Cidr>().unwrap().first_host();
        assert_eq!(first("10.96.0.0/12"), Ok("10.96.0.1".parse().unwrap()));
        assert_eq!(first("10.100.7.9/16"), Ok("10.100.0.1".parse().unwrap()));
        assert_eq!(first("fd00::/108"), Ok("fd00::1".parse().unwrap()));
        assert_eq!(first("0.0.0.0/0"), Ok("0.0.0.1".parse().unwrap()));
        assert!(first("10.0.0.1/32").is_err());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("nope/8".parse::<Cidr>().is_err());
    }

    #[test]
    fn endpoints_parse_as_kubeadm_takes_them() {
        let parse = |s: &str| Endpoint::parse(s, 6443).map(|e| e.url());
        assert_eq!(parse("https://10.0.0.5:6443").unwrap(), "https://10.0.0.5:6443");
        assert_eq!(parse("10.0.0.5").unwrap(), "https://10.0.0.5:6443");
        assert_eq!(parse("LB.example.com:443/").unwrap(), "https://lb.example.com:443");
        assert_eq!(parse("[fd00::5]:7443").unwrap(), "https://[fd00::5]:7443");
        assert_eq!(parse("fd00::5").unwrap(), "https://[fd00::5]:6443");
        assert_eq!(parse("https://[::1]").unwrap(), "https://[::1]:6443");
        assert!(parse("http://10.0.0.5:6443").is_err());
        assert!(parse("10.0.0.5:0").is_err());
        assert!(parse("10.0.0.5:http").is_err());
        assert!(parse("https://h/api").is_err());
        assert!(parse("bad_host:6443").is_err());
    }

    #[test]
    fn node_names_are_lowercase_subdomains() {
        assert!(validate_dns_name("node-1.example").is_ok());
        for bad in ["", "Node1", "../etc", "a/b", "-a", "a-", "a..b", "a_b"] {
            assert!(validate_dns_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn extra_sans_split_into_ips_and_names() {
        let mut opts = InitOptions::new("/x", "10.0.0.5".parse().unwrap(), "node1");
        opts.cert_extra_sans = vec!["host1".into(), "1.2.3.4".into(), "*.api.example".into()];
        assert_eq!(
            opts.extra_sans().unwrap(),
            vec![San::Dns("host1".into()), San::Ip("1.2.3.4".parse().unwrap()), San::Dns("*.api.example".into())]
        );
        opts.cert_extra_sans = vec!["bad name".into()];
        assert!(opts.extra_sans().is_err());
    }
}
