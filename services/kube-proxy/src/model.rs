//! What the proxy programs, independent of the API objects it came from: a
//! list of frontends (an address, protocol and port a client connects to)
//! each with the backends that may serve it and how it is treated.

use std::fmt;
use std::net::Ipv4Addr;

/// The transport protocols a Service port may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The protocol of a Service or EndpointSlice port (`None` is TCP, as the API defaults it).
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        })
    }
}

/// An address, protocol and port clients connect to: a ClusterIP, an
/// external or load-balancer IP, or a node address with a NodePort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrontendKey {
    pub ip: Ipv4Addr,
    pub protocol: Protocol,
    pub port: u16,
}

impl fmt::Display for FrontendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} . {} . {}", self.ip, self.protocol, self.port)
    }
}

/// An endpoint address and target port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} . {}", self.ip, self.port)
    }
}

/// When traffic to a frontend has its source rewritten to the node's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Masquerade {
    /// Never (externalTrafficPolicy: Local keeps the client address).
    Never,
    /// When the client is outside the cluster network (`--cluster-cidr`): ClusterIPs.
    OffCluster,
    /// Always: external traffic with externalTrafficPolicy: Cluster.
    Always,
}

/// What happens to a new connection to a frontend without backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NoEndpoints {
    /// The Service has no usable endpoint anywhere: refuse (ICMP port unreachable).
    Reject,
    /// The Service has endpoints, but none this traffic policy may use (Local policy, none here).
    Drop,
}

/// One frontend and how it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    pub key: FrontendKey,
    /// The backends a new connection is spread over uniformly; sorted, no duplicates.
    pub backends: Vec<Backend>,
    pub masquerade: Masquerade,
    /// ClientIP session affinity and its timeout in seconds.
    pub affinity_timeout: Option<u32>,
    pub no_endpoints: NoEndpoints,
    /// externalTrafficPolicy: Local frontends only (empty otherwise): the
    /// cluster-wide backends that traffic from the node itself or from pods
    /// (`--cluster-cidr`) is sent to, as upstream short-circuits it; sorted.
    pub cluster_backends: Vec<Backend>,
    /// `namespace/name:port` of the Service, for logs.
    pub service: String,
}

impl Frontend {
    /// The most backends one of its lookups spreads over (local or cluster-wide).
    pub fn largest(&self) -> usize {
        self.backends.len().max(self.cluster_backends.len())
    }
}
