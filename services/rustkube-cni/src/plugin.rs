//! ADD, DEL and CHECK, and the result and error JSON they answer with.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::config::{ConfigError, PluginConfig};
use crate::ipam::{IpamError, Owner, Store};
use crate::net::{self, NetError, Netns, Rtnl, Veth};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("CHECK failed: {0}")]
    Check(String),
}

impl Error {
    /// The CNI error code: the spec's well-known ones where they fit, 100+ for the plugin's own.
    pub fn code(&self) -> u32 {
        match self {
            Error::Config(_) => 7,                  // invalid network config
            Error::Ipam(IpamError::Io { .. }) => 5, // I/O failure
            Error::Ipam(IpamError::Exhausted { .. }) => 100,
            Error::Net(NetError::NoNetns(_) | NetError::NotNetns { .. }) => 5,
            Error::Net(_) => 101,
            Error::Check(_) => 102,
        }
    }

    pub fn msg(&self) -> &'static str {
        match self {
            Error::Config(_) => "invalid network configuration",
            Error::Ipam(IpamError::Exhausted { .. }) => "no free IP address",
            Error::Ipam(_) => "IPAM store failure",
            Error::Net(_) => "network setup failed",
            Error::Check(_) => "network check failed",
        }
    }

    /// The CNI error object printed on stdout.
    pub fn to_json(&self, cni_version: &str) -> Value {
        json!({ "cniVersion": cni_version, "code": self.code(), "msg": self.msg(), "details": self.to_string() })
    }
}

/// One invocation's inputs.
#[derive(Clone, Debug)]
pub struct Request {
    pub cni_version: String,
    pub container_id: String,
    pub ifname: String,
    pub netns: Option<PathBuf>,
    pub config: PluginConfig,
}

impl Request {
    fn owner(&self) -> Owner {
        Owner::new(self.container_id.clone(), self.ifname.clone())
    }
}

/// The host end of a container's veth: derived from the container and
/// interface, so DEL finds it without any state.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut hash: u32 = 0x811c_9dc5;
    for b in container_id.bytes().chain([b'/']).chain(ifname.bytes()) {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("rkv{hash:08x}")
}

pub fn add(req: &Request) -> Result<Value, Error> {
    let c = &req.config;
    let netns_path = req.netns.clone().ok_or_else(|| NetError::NoNetns(PathBuf::new()))?;
    // A pod whose netns is gone fails before anything is set up or allocated.
    let netns = Netns::open(&netns_path)?;
    let store = Store::open(&c.data_dir)?;

    let mut host = Rtnl::host()?;
    let bridge = net::ensure_bridge(&mut host, &c.bridge, c.gateway, &c.subnet, c.mtu)?;
    net::enable_ip_forward()?;
    if let Some(cluster) = &c.cluster_cidr {
        // The read costs one netlink round trip; `nft` runs only when the rule is missing
        // (first ADD on the node, or after the table was removed). A failed read falls back to writing.
        if !net::masquerade_present(&c.nft_table, &c.subnet, cluster).unwrap_or(false) {
            net::ensure_masquerade(&c.nft_table, &c.subnet, cluster)?;
        }
    }
    let mut pod = Rtnl::in_netns(&netns)?;

    let owner = req.owner();
    let address = store.allocate(&c.subnet, &[c.gateway], &owner)?;
    let host_name = host_veth_name(&req.container_id, &req.ifname);
    let veth = Veth {
        host: &host_name,
        netns: &netns,
        ifname: &req.ifname,
        bridge: bridge.index,
        address,
        subnet: &c.subnet,
        gateway: c.gateway,
        mtu: c.mtu,
        hairpin: c.hairpin,
    };
    let (host_mac, container_mac) = match net::add_veth(&mut host, &mut pod, &veth) {
        Ok(macs) => macs,
        Err(e) => {
            let _ = store.release(&owner);
            return Err(e.into());
        }
    };
    // Read again: a bridge takes the lowest MAC of its ports unless one was set.
    let bridge_mac = host.link(&c.bridge)?.map(|l| l.mac).unwrap_or(bridge.mac);
    Ok(result_json(
        &req.cni_version,
        &[
            Interface { name: &c.bridge, mac: &bridge_mac, sandbox: None },
            Interface { name: &host_name, mac: &host_mac, sandbox: None },
            Interface { name: &req.ifname, mac: &container_mac, sandbox: Some(&netns_path.to_string_lossy()) },
        ],
        address,
        c,
    ))
}

/// Undoes ADD. Whatever is already gone (netns, links, the allocation) is success.
pub fn del(req: &Request) -> Result<(), Error> {
    let c = &req.config;
    let mut host = Rtnl::host()?;
    let deleted = host.delete_link(&host_veth_name(&req.container_id, &req.ifname))?;
    if !deleted {
        // The pair normally goes with its host end; this catches a pod end whose host end was
        // renamed or removed alone. A netns that is gone or unusable has nothing left to delete.
        if let Some(netns) = req.netns.as_deref().and_then(|p| Netns::open(p).ok()) {
            if let Ok(mut pod) = Rtnl::in_netns(&netns) {
                let _ = pod.delete_link(&req.ifname);
            }
        }
    }
    Store::open(&c.data_dir)?.release(&req.owner())?;
    Ok(())
}

/// Verifies that what ADD set up is still there.
pub fn check(req: &Request) -> Result<(), Error> {
    let c = &req.config;
    let netns_path = req.netns.clone().ok_or_else(|| NetError::NoNetns(PathBuf::new()))?;
    let netns = Netns::open(&netns_path)?;
    let store = Store::open(&c.data_dir)?;
    let address = store
        .find(&req.owner())?
        .into_iter()
        .find(|ip| c.subnet.contains(*ip))
        .ok_or_else(|| Error::Check(format!("no address allocated to {} {}", req.container_id, req.ifname)))?;
    let mut pod = Rtnl::in_netns(&netns)?;
    let Some(peer) = pod.link(&req.ifname)? else {
        return Err(Error::Check(format!("{} does not exist in {}", req.ifname, netns_path.display())));
    };
    let have = pod.ipv4_addresses(peer.index)?;
    if !have.contains(&(address, c.subnet.prefix())) {
        let have: Vec<String> = have.iter().map(|(ip, prefix)| format!("{ip}/{prefix}")).collect();
        return Err(Error::Check(format!(
            "{} in {} has {have:?}, not {address}/{}",
            req.ifname,
            netns_path.display(),
            c.subnet.prefix()
        )));
    }
    let mut host = Rtnl::host()?;
    let Some(bridge) = host.link(&c.bridge)? else {
        return Err(Error::Check(format!("bridge {} does not exist", c.bridge)));
    };
    let host_name = host_veth_name(&req.container_id, &req.ifname);
    match host.link(&host_name)? {
        Some(link) if link.master == Some(bridge.index) => {}
        Some(link) => {
            return Err(Error::Check(format!(
                "{host_name} is attached to link {:?}, not to bridge {} ({})",
                link.master, c.bridge, bridge.index
            )))
        }
        None => return Err(Error::Check(format!("{host_name} does not exist"))),
    }
    if !host.ipv4_addresses(bridge.index)?.contains(&(c.gateway, c.subnet.prefix())) {
        return Err(Error::Check(format!(
            "bridge {} lacks the gateway address {}/{}",
            c.bridge,
            c.gateway,
            c.subnet.prefix()
        )));
    }
    if let Some(cluster) = &c.cluster_cidr {
        if !net::masquerade_present(&c.nft_table, &c.subnet, cluster)? {
            return Err(Error::Check(format!(
                "the masquerade rule for {} is missing from nftables table ip {} (the next ADD restores it)",
                c.subnet, c.nft_table
            )));
        }
    }
    Ok(())
}

pub struct Interface<'a> {
    pub name: &'a str,
    pub mac: &'a str,
    pub sandbox: Option<&'a str>,
}

/// The ADD result in the requested version's shape (0.4.0 lists carry `"version": "4"` per IP).
pub fn result_json(cni_version: &str, interfaces: &[Interface<'_>], address: Ipv4Addr, c: &PluginConfig) -> Value {
    let interfaces: Vec<Value> = interfaces
        .iter()
        .map(|i| {
            let mut v = json!({ "name": i.name, "mac": i.mac });
            if let Some(s) = i.sandbox {
                v["sandbox"] = json!(s);
            }
            v
        })
        .collect();
    let container_index = interfaces.len().saturating_sub(1);
    let mut ip = json!({
        "address": format!("{address}/{}", c.subnet.prefix()),
        "gateway": c.gateway.to_string(),
        "interface": container_index,
    });
    if cni_version.starts_with("0.") {
        ip["version"] = json!("4");
    }
    let dns = if c.dns.is_object() { c.dns.clone() } else { json!({}) };
    json!({
        "cniVersion": cni_version,
        "interfaces": interfaces,
        "ips": [ip],
        "routes": [{ "dst": "0.0.0.0/0", "gw": c.gateway.to_string() }],
        "dns": dns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config() -> PluginConfig {
        let fields: HashMap<String, Value> =
            serde_json::from_value(json!({"subnet": "10.244.7.0/24", "bridge": "rkbr7"})).unwrap();
        PluginConfig::from_fields("net", &fields, json!({"nameservers": ["10.96.0.10"]})).unwrap()
    }

    #[test]
    fn host_veth_names_are_stable_short_and_distinct() {
        let a = host_veth_name("abc", "eth0");
        assert_eq!(a, host_veth_name("abc", "eth0"));
        assert_ne!(a, host_veth_name("abc", "eth1"));
        assert_ne!(a, host_veth_name("abd", "eth0"));
        assert!(a.len() <= 15 && a.starts_with("rkv"));
    }

    #[test]
    fn results_follow_the_requested_version() {
        let ifs = [
            Interface { name: "rkbr7", mac: "aa:aa:aa:aa:aa:aa", sandbox: None },
            Interface { name: "rkv1", mac: "bb:bb:bb:bb:bb:bb", sandbox: None },
            Interface { name: "eth0", mac: "cc:cc:cc:cc:cc:cc", sandbox: Some("/var/run/netns/x") },
        ];
        let v1 = result_json("1.0.0", &ifs, Ipv4Addr::new(10, 244, 7, 2), &config());
        assert_eq!(v1["cniVersion"], "1.0.0");
        assert_eq!(v1["ips"][0], json!({"address": "10.244.7.2/24", "gateway": "10.244.7.1", "interface": 2}));
        assert_eq!(v1["interfaces"][2]["sandbox"], "/var/run/netns/x");
        assert_eq!(v1["routes"][0], json!({"dst": "0.0.0.0/0", "gw": "10.244.7.1"}));
        assert_eq!(v1["dns"]["nameservers"][0], "10.96.0.10");
        let v04 = result_json("0.4.0", &ifs, Ipv4Addr::new(10, 244, 7, 2), &config());
        assert_eq!(v04["ips"][0]["version"], "4");
    }

    #[test]
    fn errors_carry_cni_codes() {
        let e = Error::Ipam(IpamError::Exhausted {
            subnet: "10.0.0.0/30".parse().unwrap(),
            in_use: 1,
            dir: PathBuf::from("/d"),
        });
        let j = e.to_json("1.0.0");
        assert_eq!(j["code"], 100);
        assert!(j["details"].as_str().unwrap().contains("no free address"));
        assert_eq!(Error::Config(ConfigError::MissingSubnet("subnet")).code(), 7);
    }
}
