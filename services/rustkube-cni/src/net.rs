//! Links, addresses and routes over rtnetlink, in-process: no `ip` or `nsenter` per pod.
//!
//! A [`Rtnl`] is a synchronous NETLINK_ROUTE socket bound to one network
//! namespace: the host's, or a pod's. A socket stays in the namespace it was
//! created in, so [`Rtnl::in_netns`] creates its socket on a short-lived
//! thread that first `setns`es into the pod's netns file; the calling thread
//! never changes namespace. The veth's peer is created directly inside the pod
//! (IFLA_NET_NS_FD on the peer), under its final name.
//!
//! nftables (the masquerade rule) is still written with `nft -f`, but only
//! when a cheap nfnetlink read ([`crate::nft::rule_present`]) finds the rule
//! missing: a steady-state ADD spawns no process at all.

use std::fs::File;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};
use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};

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
    #[error("netlink ({ns}): {op}: {source}")]
    Netlink {
        ns: String,
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("netlink ({ns}): {op}: undecodable answer: {detail}")]
    Decode { ns: String, op: String, detail: String },
    #[error("netns {0} does not exist")]
    NoNetns(PathBuf),
    #[error("{path} is not a usable network namespace: {source}")]
    NotNetns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("interface {ifname} already exists in netns {netns}")]
    IfnameTaken { ifname: String, netns: PathBuf },
    #[error("writing {path}: {source}")]
    Sysctl {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Check(String),
}

impl NetError {
    /// The errno of a failed netlink request.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetError::Netlink { source, .. } => source.raw_os_error().map(Errno::from_raw),
            _ => None,
        }
    }
}

/// A pod's network namespace, held open (its fd is what the veth peer is moved with).
#[derive(Debug)]
pub struct Netns {
    path: PathBuf,
    file: File,
}

impl Netns {
    /// Opens the netns file CNI gives; a missing one is [`NetError::NoNetns`].
    pub fn open(path: &Path) -> Result<Self, NetError> {
        match File::open(path) {
            Ok(file) => Ok(Self { path: path.to_path_buf(), file }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(NetError::NoNetns(path.to_path_buf())),
            Err(source) => Err(NetError::NotNetns { path: path.to_path_buf(), source }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a link looks like, as far as the plugin cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    /// Lower-case, colon separated; empty if the link has no hardware address.
    pub mac: String,
    /// The index of the bridge (or other controller) it is enslaved to.
    pub master: Option<u32>,
    pub up: bool,
}

impl Link {
    fn from_message(msg: &LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            mac: String::new(),
            master: None,
            up: msg.header.flags.contains(LinkFlags::Up),
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::Address(bytes) => link.mac = format_mac(bytes),
                LinkAttribute::Controller(index) if *index != 0 => link.master = Some(*index),
                _ => {}
            }
        }
        link
    }
}

pub fn format_mac(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// A synchronous rtnetlink socket in one network namespace.
pub struct Rtnl {
    socket: Socket,
    seq: u32,
    /// "host" or the netns path, for error messages.
    ns: String,
}

impl Rtnl {
    /// A socket in the calling thread's (the host's) network namespace.
    pub fn host() -> Result<Self, NetError> {
        Self::open("host".to_string())
    }

    /// A socket in the pod's network namespace. It is created on a thread of
    /// its own that switches into the namespace first and ends right after,
    /// so no thread of the plugin ever has to switch back.
    pub fn in_netns(netns: &Netns) -> Result<Self, NetError> {
        let name = netns.path.display().to_string();
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(&netns.file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| NetError::NotNetns { path: netns.path.clone(), source: e.into() })?;
                Self::open(name.clone())
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetError::Netlink {
                    ns: name.clone(),
                    op: "opening a socket".to_string(),
                    source: io::Error::other("the thread entering the netns panicked"),
                })
            })
        })
    }

    fn open(ns: String) -> Result<Self, NetError> {
        let err = |source| NetError::Netlink { ns: ns.clone(), op: "opening a socket".to_string(), source };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(err)?;
        socket.bind_auto().map_err(err)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(err)?;
        Ok(Self { socket, seq: 0, ns })
    }

    /// Sends one request and collects its answers: up to the ACK (requests
    /// other than dumps always ask for one) or to the end of the dump. A NACK
    /// is an error carrying the kernel's errno.
    fn request(
        &mut self,
        op: impl Fn() -> String,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetError> {
        self.seq = self.seq.wrapping_add(1);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);

        let ns = &self.ns;
        let io_err = |source: io::Error| NetError::Netlink { ns: ns.clone(), op: op(), source };
        self.socket.send(&buf, 0).map_err(io_err)?;
        let mut replies = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(io_err)?;
            let mut offset = 0;
            while offset < data.len() {
                let reply: NetlinkMessage<RouteNetlinkMessage> = NetlinkMessage::deserialize(&data[offset..])
                    .map_err(|e| NetError::Decode { ns: ns.clone(), op: op(), detail: e.to_string() })?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == self.seq {
                    match reply.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                Some(code) => Err(io_err(io::Error::from_raw_os_error(-code.get()))),
                                None => Ok(replies),
                            }
                        }
                        NetlinkPayload::Done(done) => {
                            return match done.code {
                                0 => Ok(replies),
                                code => Err(io_err(io::Error::from_raw_os_error(-code))),
                            }
                        }
                        NetlinkPayload::InnerMessage(m) => replies.push(m),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
            }
        }
    }

    /// The link called `name`, or None.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, NetError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(|| format!("getting link {name}"), RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
                _ => None,
            })),
            Err(e) if e.errno() == Some(Errno::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn existing_link(&mut self, name: &str) -> Result<Link, NetError> {
        let ns = self.ns.clone();
        self.link(name)?.ok_or_else(|| NetError::Check(format!("link {name} does not exist ({ns})")))
    }

    /// Deletes a link by name; true if there was one.
    pub fn delete_link(&mut self, name: &str) -> Result<bool, NetError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(|| format!("deleting link {name}"), RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(Errno::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Changes an existing link (RTM_NEWLINK without NLM_F_CREATE, as `ip link set` does;
    /// RTM_SETLINK would ignore bridge-port data).
    fn change_link(&mut self, op: impl Fn() -> String, msg: LinkMessage) -> Result<(), NetError> {
        self.request(op, RouteNetlinkMessage::NewLink(msg), 0).map(drop)
    }

    pub fn set_up(&mut self, index: u32) -> Result<(), NetError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.change_link(|| format!("setting link {index} up"), msg)
    }

    pub fn set_master(&mut self, index: u32, master: u32) -> Result<(), NetError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Controller(master));
        self.change_link(|| format!("attaching link {index} to bridge {master}"), msg)
    }

    /// `ip link set dev <index> type bridge_slave hairpin on|off`.
    pub fn set_hairpin(&mut self, index: u32, on: bool) -> Result<(), NetError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(on)])),
        ]));
        self.change_link(|| format!("setting hairpin mode of link {index}"), msg)
    }

    /// A bridge, up. EEXIST when it exists already.
    pub fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> Result<(), NetError> {
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        self.request(|| format!("creating bridge {name}"), RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// A veth pair: `name` here, `peer_name` created directly in the namespace `peer_netns`.
    pub fn create_veth(
        &mut self,
        name: &str,
        peer_name: &str,
        peer_netns: &Netns,
        mtu: Option<u32>,
    ) -> Result<(), NetError> {
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName(peer_name.to_string()));
        peer.attributes.push(LinkAttribute::NetNsFd(peer_netns.file.as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(mtu) = mtu {
            peer.attributes.push(LinkAttribute::Mtu(mtu));
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            || format!("creating veth {name} with peer {peer_name} in {}", peer_netns.path.display()),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// The IPv4 addresses on a link, with their prefix lengths.
    pub fn ipv4_addresses(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, NetError> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let replies = self.request(
            || format!("listing addresses of link {index}"),
            RouteNetlinkMessage::GetAddress(msg),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => Some(a),
                _ => None,
            })
            .filter_map(|a| {
                let local = a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                });
                let address = a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                });
                local.or(address).map(|ip| (ip, a.header.prefix_len))
            })
            .collect())
    }

    /// Adds an IPv4 address with its broadcast (`ip addr add`, or `ip addr replace` when `replace`).
    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8, replace: bool) -> Result<(), NetError> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.header.scope = AddressScope::Universe;
        msg.attributes.push(AddressAttribute::Local(ip.into()));
        msg.attributes.push(AddressAttribute::Address(ip.into()));
        if let Some(net) = Ipv4Net::new(ip, prefix).filter(|n| n.prefix() <= 30) {
            msg.attributes.push(AddressAttribute::Broadcast(net.broadcast()));
        }
        let flags = NLM_F_CREATE | if replace { NLM_F_REPLACE } else { NLM_F_EXCL };
        self.request(|| format!("adding {ip}/{prefix} to link {index}"), RouteNetlinkMessage::NewAddress(msg), flags)
            .map(drop)
    }

    /// `ip route replace default via <gateway> dev <index>` in the main table.
    pub fn replace_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), NetError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 0;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.request(
            || format!("replacing the default route via {gateway} on link {index}"),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }
}

/// The bridge exists, is up and carries the gateway address; returns it. Safe to race.
pub fn ensure_bridge(
    host: &mut Rtnl,
    name: &str,
    gateway: Ipv4Addr,
    subnet: &Ipv4Net,
    mtu: Option<u32>,
) -> Result<Link, NetError> {
    let link = match host.link(name)? {
        Some(link) => link,
        None => {
            match host.create_bridge(name, mtu) {
                Ok(()) => {}
                // Another ADD created it meanwhile.
                Err(e) if e.errno() == Some(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
            host.existing_link(name)?
        }
    };
    if !host.ipv4_addresses(link.index)?.contains(&(gateway, subnet.prefix())) {
        host.add_address(link.index, gateway, subnet.prefix(), true)?;
    }
    if !link.up {
        host.set_up(link.index)?;
    }
    Ok(link)
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
    pub netns: &'a Netns,
    pub ifname: &'a str,
    pub bridge: u32,
    pub address: Ipv4Addr,
    pub subnet: &'a Ipv4Net,
    pub gateway: Ipv4Addr,
    pub mtu: Option<u32>,
    pub hairpin: bool,
}

/// Creates the veth pair: `host` on the bridge, the peer in the pod as `ifname`
/// with the pod's address and a default route via the gateway.
/// `host_nl` and `pod_nl` are sockets in the host's and the pod's namespace.
/// Returns (host MAC, container MAC).
pub fn add_veth(host_nl: &mut Rtnl, pod_nl: &mut Rtnl, v: &Veth<'_>) -> Result<(String, String), NetError> {
    let taken = || NetError::IfnameTaken { ifname: v.ifname.to_string(), netns: v.netns.path.clone() };
    // A host end left by an earlier, failed ADD of the same container goes first.
    host_nl.delete_link(v.host)?;
    if pod_nl.link(v.ifname)?.is_some() {
        return Err(taken());
    }
    match host_nl.create_veth(v.host, v.ifname, v.netns, v.mtu) {
        Ok(()) => {}
        Err(e) if e.errno() == Some(Errno::EEXIST) && pod_nl.link(v.ifname)?.is_some() => return Err(taken()),
        Err(e) => return Err(e),
    }
    let result = (|| {
        let peer = pod_nl.existing_link(v.ifname)?;
        pod_nl.add_address(peer.index, v.address, v.subnet.prefix(), false)?;
        pod_nl.set_up(peer.index)?;
        pod_nl.replace_default_route(peer.index, v.gateway)?;
        let host = host_nl.existing_link(v.host)?;
        host_nl.set_master(host.index, v.bridge)?;
        if v.hairpin {
            host_nl.set_hairpin(host.index, true)?;
        }
        host_nl.set_up(host.index)?;
        Ok((host.mac, peer.mac))
    })();
    if result.is_err() {
        let _ = host_nl.delete_link(v.host);
    }
    result
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetError> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let command = format!("{program} {}", args.join(" "));
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

/// The masquerade rule's comment: it names the subnet and the cluster network, so
/// finding it (see [`masquerade_present`]) tells the rule is the one this config wants.
pub fn masquerade_comment(subnet: &Ipv4Net, cluster: &Ipv4Net) -> String {
    format!("rustkube-cni: masquerade {subnet} leaving {cluster}")
}

/// The chain the masquerade rule lives in.
pub const MASQUERADE_CHAIN: &str = "postrouting";

/// The nftables script that makes `table` masquerade traffic from `subnet` to
/// anything outside `cluster`. Applied in one transaction; it replaces the
/// chain's rules, so running it again (or concurrently) changes nothing.
pub fn masquerade_script(table: &str, subnet: &Ipv4Net, cluster: &Ipv4Net) -> String {
    let comment = masquerade_comment(subnet, cluster);
    format!(
        "table ip {table} {{\n\
         \tchain {MASQUERADE_CHAIN} {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t}}\n\
         }}\n\
         flush chain ip {table} {MASQUERADE_CHAIN}\n\
         add rule ip {table} {MASQUERADE_CHAIN} ip saddr {subnet} ip daddr != {cluster} masquerade comment \"{comment}\"\n"
    )
}

/// Whether `table` holds exactly the masquerade rule [`masquerade_script`] writes
/// (the chain's only rule, carrying its comment). One nfnetlink dump, no process.
pub fn masquerade_present(table: &str, subnet: &Ipv4Net, cluster: &Ipv4Net) -> Result<bool, NetError> {
    let comment = masquerade_comment(subnet, cluster);
    let rules = crate::nft::rules(table, MASQUERADE_CHAIN)?;
    Ok(rules.len() == 1 && rules.iter().all(|r| crate::nft::contains(&r.userdata, comment.as_bytes())))
}

/// Applies [`masquerade_script`] with `nft -f -`.
pub fn ensure_masquerade(table: &str, subnet: &Ipv4Net, cluster: &Ipv4Net) -> Result<(), NetError> {
    let script = masquerade_script(table, subnet, cluster);
    run("nft", &["-f", "-"], Some(&script)).map(|_| ())
}

/// Deletes the plugin's table (for cleanup by whoever owns the node); a missing table is fine.
pub fn delete_table(table: &str) -> Result<(), NetError> {
    match run("nft", &["delete", "table", "ip", table], None) {
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
        assert!(s.contains("comment \"rustkube-cni: masquerade 10.244.3.0/24 leaving 10.244.0.0/16\""));
    }

    #[test]
    fn macs_are_colon_separated_lower_hex() {
        assert_eq!(format_mac(&[0x0a, 0xBC, 0, 1, 2, 0xff]), "0a:bc:00:01:02:ff");
        assert_eq!(format_mac(&[]), "");
    }
}
