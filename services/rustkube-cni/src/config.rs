//! The plugin's network configuration, read from the CNI config's own keys.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use cni_plugin::config::NetworkConfig;
use serde_json::Value;

/// The `type` this plugin answers to in a conflist.
pub const PLUGIN_TYPE: &str = "rustkube-bridge";
pub const DEFAULT_BRIDGE: &str = "rkbr0";
pub const DEFAULT_NFT_TABLE: &str = "rustkube-cni";
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/cni/rustkube";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing field {0:?}: the pod subnet, e.g. \"10.244.1.0/24\"")]
    MissingSubnet(&'static str),
    #[error("field {field:?}: expected {expected}, got {value}")]
    Invalid { field: &'static str, expected: &'static str, value: String },
}

/// An IPv4 network in CIDR form, stored normalised (host bits cleared).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    network: Ipv4Addr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error)]
#[error("not an IPv4 CIDR: {0:?}")]
pub struct CidrError(String);

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Self { network: Ipv4Addr::from(u32::from(addr) & mask(prefix)), prefix })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }

    /// The first usable address (the gateway), or None for /31 and /32.
    pub fn first_host(&self) -> Option<Ipv4Addr> {
        (self.prefix <= 30).then(|| Ipv4Addr::from(u32::from(self.network) + 1))
    }

    /// The usable host addresses: network and broadcast excluded.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let (first, last) = if self.prefix <= 30 {
            (u32::from(self.network) + 1, u32::from(self.broadcast()) - 1)
        } else {
            (1, 0) // empty
        };
        (first..=last).map(Ipv4Addr::from)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Ipv4Net {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrError(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        Self::new(addr, prefix).ok_or_else(err)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// What the plugin needs from a network configuration, validated.
#[derive(Clone, Debug)]
pub struct PluginConfig {
    /// The network's name (the conflist's `name`).
    pub name: String,
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub cluster_cidr: Option<Ipv4Net>,
    pub data_dir: PathBuf,
    pub nft_table: String,
    pub mtu: Option<u32>,
    pub hairpin: bool,
    /// Passed through to the result as given.
    pub dns: Value,
}

impl PluginConfig {
    pub fn from_network(config: &NetworkConfig) -> Result<Self, ConfigError> {
        let dns = config.dns.as_ref().and_then(|d| serde_json::to_value(d).ok()).unwrap_or(Value::Null);
        Self::from_fields(&config.name, &config.specific, dns)
    }

    /// Parses the plugin's keys (the config's fields beyond the standard ones).
    pub fn from_fields(name: &str, fields: &HashMap<String, Value>, dns: Value) -> Result<Self, ConfigError> {
        let string = |field: &'static str| -> Result<Option<String>, ConfigError> {
            match fields.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(ConfigError::Invalid { field, expected: "a string", value: other.to_string() }),
            }
        };
        let cidr = |field: &'static str, value: String| {
            value.parse::<Ipv4Net>().map_err(|_| ConfigError::Invalid { field, expected: "an IPv4 CIDR", value })
        };

        let (field, subnet) = match (string("subnet")?, string("podCIDR")?) {
            (Some(s), _) => ("subnet", s),
            (None, Some(s)) => ("podCIDR", s),
            (None, None) => return Err(ConfigError::MissingSubnet("subnet")),
        };
        let subnet = cidr(field, subnet)?;
        let gateway = subnet.first_host().ok_or_else(|| ConfigError::Invalid {
            field,
            expected: "a subnet of /30 or larger",
            value: subnet.to_string(),
        })?;
        let cluster_cidr = string("clusterCIDR")?.map(|s| cidr("clusterCIDR", s)).transpose()?;

        let bridge = string("bridge")?.unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
        if !valid_ifname(&bridge) {
            return Err(ConfigError::Invalid { field: "bridge", expected: "an interface name", value: bridge });
        }
        let nft_table = string("nftTable")?.unwrap_or_else(|| DEFAULT_NFT_TABLE.to_string());
        if !valid_nft_name(&nft_table) {
            return Err(ConfigError::Invalid { field: "nftTable", expected: "an nftables name", value: nft_table });
        }
        let data_dir = match string("dataDir")? {
            Some(dir) => PathBuf::from(dir),
            None if valid_path_component(name) => PathBuf::from(DEFAULT_DATA_ROOT).join(name),
            None => {
                return Err(ConfigError::Invalid {
                    field: "name",
                    expected: "a network name usable as a folder name (or set dataDir)",
                    value: name.to_string(),
                })
            }
        };
        let mtu = match fields.get("mtu") {
            None | Some(Value::Null) => None,
            Some(v) => {
                Some(v.as_u64().and_then(|m| u32::try_from(m).ok()).filter(|m| (576..=65535).contains(m)).ok_or_else(
                    || ConfigError::Invalid {
                        field: "mtu",
                        expected: "an MTU between 576 and 65535",
                        value: v.to_string(),
                    },
                )?)
            }
        };
        let hairpin = match fields.get("hairpinMode") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(ConfigError::Invalid { field: "hairpinMode", expected: "a bool", value: other.to_string() })
            }
        };
        Ok(Self {
            name: name.to_string(),
            bridge,
            subnet,
            gateway,
            cluster_cidr,
            data_dir,
            nft_table,
            mtu,
            hairpin,
            dns,
        })
    }
}

/// A Linux interface name: 1..=15 bytes, no '/', no whitespace, not "." or "..".
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

fn valid_nft_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn valid_path_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> HashMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn cidrs_are_normalised_and_know_their_hosts() {
        let net: Ipv4Net = "10.244.3.7/24".parse().unwrap();
        assert_eq!(net.to_string(), "10.244.3.0/24");
        assert_eq!(net.first_host(), Some(Ipv4Addr::new(10, 244, 3, 1)));
        assert_eq!(net.broadcast(), Ipv4Addr::new(10, 244, 3, 255));
        assert_eq!(net.hosts().count(), 254);
        assert!(net.contains(Ipv4Addr::new(10, 244, 3, 200)));
        assert!(!net.contains(Ipv4Addr::new(10, 244, 4, 1)));
        assert_eq!("10.0.0.0/31".parse::<Ipv4Net>().unwrap().hosts().count(), 0);
        assert!("10.0.0.0/33".parse::<Ipv4Net>().is_err());
        assert!("10.0.0.0".parse::<Ipv4Net>().is_err());
        assert!("fd00::/64".parse::<Ipv4Net>().is_err());
    }

    #[test]
    fn defaults_fill_what_the_config_leaves_out() {
        let c = PluginConfig::from_fields("k8s-pod-network", &fields(json!({"subnet": "10.244.1.0/24"})), Value::Null)
            .unwrap();
        assert_eq!(c.bridge, "rkbr0");
        assert_eq!(c.gateway, Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/cni/rustkube/k8s-pod-network"));
        assert_eq!(c.nft_table, "rustkube-cni");
        assert!(c.cluster_cidr.is_none());
        assert!(c.hairpin);
    }

    #[test]
    fn pod_cidr_is_an_alias_of_subnet() {
        let c = PluginConfig::from_fields(
            "n",
            &fields(json!({"podCIDR": "10.244.9.0/24", "clusterCIDR": "10.244.0.0/16", "bridge": "br-x", "mtu": 1450})),
            Value::Null,
        )
        .unwrap();
        assert_eq!(c.subnet.to_string(), "10.244.9.0/24");
        assert_eq!(c.cluster_cidr.map(|n| n.to_string()).as_deref(), Some("10.244.0.0/16"));
        assert_eq!(c.bridge, "br-x");
        assert_eq!(c.mtu, Some(1450));
    }

    #[test]
    fn bad_values_name_their_field() {
        let err = |v: Value| PluginConfig::from_fields("n", &fields(v), Value::Null).unwrap_err().to_string();
        assert!(err(json!({})).contains("subnet"));
        assert!(err(json!({"subnet": "10.244.1.0"})).contains("subnet"));
        assert!(err(json!({"subnet": "10.244.1.0/24", "bridge": "a-very-long-bridge-name"})).contains("bridge"));
        assert!(err(json!({"subnet": "10.244.1.0/24", "nftTable": "bad table"})).contains("nftTable"));
        assert!(err(json!({"subnet": "10.244.1.0/24", "clusterCIDR": 5})).contains("clusterCIDR"));
        assert!(err(json!({"subnet": "10.244.1.0/31"})).contains("/30"));
    }
}
