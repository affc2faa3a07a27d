//! `rustkube-bridge`, the project's CNI plugin.
//!
//! ADD puts a pod on the node's bridge: the bridge (created on first use,
//! with the subnet's gateway address), a veth pair whose container end is
//! moved into the pod's netns with the pod's address and a default route via
//! the gateway, IP forwarding, and masquerade for traffic leaving the cluster
//! network (an nftables table of the plugin's own). Addresses come from an
//! IPAM of its own: one file per address in a data directory, created with
//! `O_EXCL`, so concurrent ADDs never share an address and allocations
//! survive restarts. DEL undoes all of it and never fails on what is already
//! gone. Links, addresses and routes are set through rtnetlink in-process (a
//! socket opened inside the pod's netns for its side); `nft` runs only when an
//! nfnetlink read finds the masquerade rule missing, so a steady-state ADD
//! spawns no process.
//!
//! Network configuration (the plugin's keys besides `cniVersion`, `name`, `type`, `dns`):
//!
//! | key | meaning | default |
//! | --- | --- | --- |
//! | `subnet` (or `podCIDR`) | this node's pod subnet, IPv4 CIDR; its first address is the gateway | required |
//! | `bridge` | bridge name | `rkbr0` |
//! | `clusterCIDR` | the whole cluster network; traffic from `subnet` to elsewhere is masqueraded | none: no masquerade |
//! | `dataDir` | where allocations live | `/var/lib/cni/rustkube/<name>` |
//! | `nftTable` | the `ip` family nftables table the plugin owns | `rustkube-cni` |
//! | `mtu` | MTU of the bridge and veths | kernel default |
//! | `hairpinMode` | hairpin on the host veth (a pod reaching itself through a service) | `true` |
//!
//! A node's conflist (the binary installed in the CNI bin dir as `rustkube-bridge`;
//! containerd adds loopback itself; portmap after it serves hostPorts):
//!
//! ```json
//! {
//!   "cniVersion": "1.0.0",
//!   "name": "rustkube",
//!   "plugins": [
//!     { "type": "rustkube-bridge", "bridge": "rkbr0", "subnet": "10.244.1.0/24", "clusterCIDR": "10.244.0.0/16" },
//!     { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true }
//!   ]
//! }
//! ```
//!
//! Routes to other nodes' pod subnets are not the plugin's job (the node agent adds them).

#![forbid(unsafe_code)]

pub mod config;
pub mod ipam;
pub mod net;
pub mod nft;
pub mod plugin;

pub use config::{Ipv4Net, PluginConfig};
pub use plugin::Error;
