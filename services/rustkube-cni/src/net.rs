//! Links, addresses, routes and nftables, driven through `ip`, `nsenter` and `nft`.
//!
//! Commands inside a pod's network namespace run as `nsenter --net=<path> ip ...`
//! (iproute2's `-n` only takes names under /var/run/netns, CNI gives a path).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::config::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Failed { command: String, status: String, stderr: String },
    #[error("netns {0} does not exist")]
    NoNetns(PathBuf),
    #[error("interface {ifname} already exists in netns {netns}")]
    IfnameTaken { ifname: String, netns: PathBuf },
    #[error("unexpected output of {command}: {detail}")]
    Output { command: String, detail: String },
    #[error("writing {path}: {source}")]
    Sysctl {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Check(String),
}

/// Where a command runs: the host's network namespace or a pod's.
#[derive(Clone, Copy, Debug)]
pub enum Ns<'a> {
    Host,
    Pod(&'a Path),
}

fn run(ns: Ns<'_>, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetError> {
    let mut cmd = match ns {
        Ns::Host => Command::new(program),
        Ns::Pod(path) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", path.display())).arg(program);
            c
        }
    };
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let command = match ns {
        Ns::Host => format!("{program} {}", args.join(" ")),
        Ns::Pod(path) => format!("nsenter --net={} {program} {}", path.display(), args.join(" ")),
    };
    let spawn_err = |source| NetError::Spawn { command: command.clone(), source };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(NetError::Failed {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(ns: Ns<'_>, args: &[&str]) -> Result<String, NetError> {
    run(ns, "ip", args, None)
}

/// `ip -j link show dev <name>`, or None when there is no such link.
fn link(ns: Ns<'_>, name: &str) -> Result<Option<Value>, NetError> {
    match ip(ns, &["-j", "link", "show", "dev", name]) {
        Ok(out) => first_json(&out, "ip link show").map(Some),
        Err(NetError::Failed { stderr, .. }) if stderr.contains("does not exist") || stderr.contains("Cannot find") => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn first_json(out: &str, command: &str) -> Result<Value, NetError> {
    let parsed: Value = serde_json::from_str(out)
        .map_err(|e| NetError::Output { command: command.to_string(), detail: e.to_string() })?;
    parsed
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .ok_or_else(|| NetError::Output { command: command.to_string(), detail: "empty list".to_string() })
}

pub fn link_exists(ns: Ns<'_>, name: &str) -> Result<bool, NetError> {
    Ok(link(ns, name)?.is_some())
}

/// The link's MAC address (empty if it has none).
pub fn mac(ns: Ns<'_>, name: &str) -> Result<String, NetError> {
    let link = link(ns, name)?.ok_or_else(|| NetError::Check(format!("link {name} does not exist")))?;
    Ok(link.get("address").and_then(Value::as_str).unwrap_or_default().to_string())
}

/// The bridge exists, is up and carries the gateway address. Safe to race.
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, subnet: &Ipv4Net, mtu: Option<u32>) -> Result<(), NetError> {
    if !link_exists(Ns::Host, name)? {
        let mtu_s = mtu.map(|m| m.to_string());
        let mut args = vec!["link", "add", "name", name];
        if let Some(m) = &mtu_s {
            args.extend(["mtu", m.as_str()]);
        }
        args.extend(["type", "bridge"]);
        if let Err(e) = ip(Ns::Host, &args) {
            // Another ADD may have created it meanwhile.
            if !link_exists(Ns::Host, name)? {
                return Err(e);
            }
        }
    }
    let addr = format!("{gateway}/{}", subnet.prefix());
    ip(Ns::Host, &["addr", "replace", &addr, "dev", name])?;
    ip(Ns::Host, &["link", "set", "dev", name, "up"])?;
    Ok(())
}

pub fn enable_ip_forward() -> Result<(), NetError> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(PATH).map(|v| v.trim() == "1").unwrap_or(false) {
        return Ok(());
    }
    std::fs::write(PATH, "1").map_err(|source| NetError::Sysctl { path: PATH, source })
}

/// What `add_veth` sets up.
pub struct Veth<'a> {
    pub host: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    pub bridge: &'a str,
    pub address: Ipv4Addr,
    pub subnet: &'a Ipv4Net,
    pub gateway: Ipv4Addr,
    pub mtu: Option<u32>,
    pub hairpin: bool,
}

/// Creates the veth pair: `host` on the bridge, the peer in the pod as `ifname`
/// with the pod's address and a default route via the gateway.
/// Returns (host MAC, container MAC).
pub fn add_veth(v: &Veth<'_>) -> Result<(String, String), NetError> {
    if !v.netns.exists() {
        return Err(NetError::NoNetns(v.netns.to_path_buf()));
    }
    let pod = Ns::Pod(v.netns);
    // A host end left by an earlier, failed ADD of the same container goes first.
    delete_link(Ns::Host, v.host)?;
    if link_exists(pod, v.ifname)? {
        return Err(NetError::IfnameTaken { ifname: v.ifname.to_string(), netns: v.netns.to_path_buf() });
    }
    // The peer is created with a temporary name in the host and renamed inside the pod,
    // so it never clashes with a host link called like `ifname`.
    let peer = format!("rkp{}", &v.host[3.min(v.host.len())..]);
    let netns = v.netns.to_string_lossy();
    let mtu_s = v.mtu.map(|m| m.to_string());
    let mut args = vec!["link", "add", "name", v.host];
    if let Some(m) = &mtu_s {
        args.extend(["mtu", m.as_str()]);
    }
    args.extend(["type", "veth", "peer", "name", &peer]);
    if let Some(m) = &mtu_s {
        args.extend(["mtu", m.as_str()]);
    }
    ip(Ns::Host, &args)?;
    let result = (|| {
        ip(Ns::Host, &["link", "set", "dev", &peer, "netns", &netns])?;
        ip(pod, &["link", "set", "dev", &peer, "name", v.ifname])?;
        let addr = format!("{}/{}", v.address, v.subnet.prefix());
        ip(pod, &["addr", "add", &addr, "dev", v.ifname])?;
        ip(pod, &["link", "set", "dev", v.ifname, "up"])?;
        ip(pod, &["route", "replace", "default", "via", &v.gateway.to_string(), "dev", v.ifname])?;
        ip(Ns::Host, &["link", "set", "dev", v.host, "master", v.bridge])?;
        if v.hairpin {
            ip(Ns::Host, &["link", "set", "dev", v.host, "type", "bridge_slave", "hairpin", "on"])?;
        }
        ip(Ns::Host, &["link", "set", "dev", v.host, "up"])?;
        Ok((mac(Ns::Host, v.host)?, mac(pod, v.ifname)?))
    })();
    if result.is_err() {
        let _ = delete_link(Ns::Host, v.host);
    }
    result
}

/// Deletes a link; one that does not exist is fine.
pub fn delete_link(ns: Ns<'_>, name: &str) -> Result<(), NetError> {
    match ip(ns, &["link", "del", "dev", name]) {
        Ok(_) => Ok(()),
        Err(NetError::Failed { stderr, .. }) if stderr.contains("does not exist") || stderr.contains("Cannot find") => {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The IPv4 addresses (with prefix) on a link.
pub fn addresses(ns: Ns<'_>, name: &str) -> Result<Vec<String>, NetError> {
    let out = ip(ns, &["-j", "-4", "addr", "show", "dev", name])?;
    let link = first_json(&out, "ip addr show")?;
    Ok(link
        .get("addr_info")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| Some(format!("{}/{}", a.get("local")?.as_str()?, a.get("prefixlen")?.as_u64()?)))
        .collect())
}

/// The name of the bridge a link is enslaved to, if any.
pub fn master(name: &str) -> Result<Option<String>, NetError> {
    Ok(link(Ns::Host, name)?.and_then(|l| l.get("master").and_then(Value::as_str).map(str::to_string)))
}

/// The nftables script that makes `table` masquerade traffic from `subnet` to
/// anything outside `cluster`. Applied in one transaction; it replaces the
/// chain's rules, so running it again (or concurrently) changes nothing.
pub fn masquerade_script(table: &str, subnet: &Ipv4Net, cluster: &Ipv4Net) -> String {
    format!(
        "table ip {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t}}\n\
         }}\n\
         flush chain ip {table} postrouting\n\
         add rule ip {table} postrouting ip saddr {subnet} ip daddr != {cluster} masquerade comment \"rustkube-cni: pods leaving the cluster network\"\n"
    )
}

pub fn ensure_masquerade(table: &str, subnet: &Ipv4Net, cluster: &Ipv4Net) -> Result<(), NetError> {
    let script = masquerade_script(table, subnet, cluster);
    run(Ns::Host, "nft", &["-f", "-"], Some(&script)).map(|_| ())
}

/// Deletes the plugin's table (for cleanup by whoever owns the node); a missing table is fine.
pub fn delete_table(table: &str) -> Result<(), NetError> {
    match run(Ns::Host, "nft", &["delete", "table", "ip", table], None) {
        Ok(_) => Ok(()),
        Err(NetError::Failed { stderr, .. }) if stderr.contains("No such file") => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masquerade_excludes_the_cluster_network() {
        let s = masquerade_script("rustkube-cni", &"10.244.3.0/24".parse().unwrap(), &"10.244.0.0/16".parse().unwrap());
        assert!(s.contains("table ip rustkube-cni {"));
        assert!(s.contains("type nat hook postrouting priority srcnat;"));
        assert!(s.contains("flush chain ip rustkube-cni postrouting\n"));
        assert!(s.contains("ip saddr 10.244.3.0/24 ip daddr != 10.244.0.0/16 masquerade"));
    }
}
