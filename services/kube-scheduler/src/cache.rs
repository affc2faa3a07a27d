//! The scheduler's view of the cluster: every node with the pods bound or
//! assumed to it and what they use, built from the node and pod watches.
//! Assumed pods (chosen but not yet confirmed bound by the watch) count like
//! bound ones, so that the next pod does not wait for a binding round trip.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::resources::{node_allocatable, pod_requests, Resources};

/// A host port a container claims: protocol, host IP (empty for all) and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    pub fn conflicts(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || wildcard(&self.ip) || wildcard(&other.ip))
    }
}

/// What the scheduler keeps about one pod.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub uid: String,
    pub namespace: String,
    pub requests: Resources,
    pub non_zero: Resources,
    pub host_ports: Vec<HostPort>,
    pub priority: i32,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let (requests, non_zero) = pod_requests(&pod);
        let spec = pod.spec.as_ref();
        let host_ports = spec
            .into_iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.unwrap_or(0) > 0)
            .map(|p| HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ip: p.host_ip.clone().unwrap_or_default(),
                port: p.host_port.unwrap_or(0),
            })
            .collect();
        PodInfo {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            requests,
            non_zero,
            host_ports,
            pod,
        }
    }

    pub fn labels(&self) -> &std::collections::BTreeMap<String, String> {
        static EMPTY: std::sync::OnceLock<std::collections::BTreeMap<String, String>> = std::sync::OnceLock::new();
        self.pod.metadata.labels.as_ref().unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.pod.metadata.name.as_deref().unwrap_or(""))
    }

    pub fn is_terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// Whether the pod has required or preferred pod (anti-)affinity terms.
    pub fn has_pod_affinity(&self) -> bool {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
    }
}

/// One node and what is placed on it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub node: Option<Arc<Node>>,
    pub name: String,
    pub allocatable: Resources,
    pub requested: Resources,
    pub non_zero_requested: Resources,
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
    /// Image names (every tag and digest) on the node, with their sizes.
    pub images: HashMap<String, i64>,
}

impl NodeInfo {
    pub fn labels(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.node.as_ref().and_then(|n| n.metadata.labels.as_ref())
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels().and_then(|l| l.get(key)).map(String::as_str)
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero);
        self.used_ports.extend(pod.host_ports.iter().cloned());
        self.pods.push(pod);
    }

    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.uid == uid) else { return false };
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(&pod.non_zero);
        for port in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(j);
            }
        }
        true
    }

    fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = node_allocatable(&node);
        self.images.clear();
        for image in node.status.as_ref().and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in image.names.iter().flatten() {
                self.images.insert(normalize_image(name), image.size_bytes.unwrap_or(0));
            }
        }
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.node = Some(node);
    }
}

/// Keeps only what scheduling reads, so that tens of thousands of cached
/// pods stay small: identity, labels, owners and deletion state; the spec
/// with only its claims among the volumes and with containers reduced to image, ports and resources;
/// the status fields the queue and preemption look at.
pub fn trim_pod(mut pod: Pod) -> Pod {
    let meta = &mut pod.metadata;
    meta.annotations = None;
    meta.managed_fields = None;
    if let Some(spec) = pod.spec.as_mut() {
        // Only claims, generic ephemeral and inline CSI volumes matter to the volume filters.
        spec.volumes = spec.volumes.take().map(|vs| {
            vs.into_iter()
                .filter(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some() || v.csi.is_some())
                .map(|v| k8s_openapi::api::core::v1::Volume {
                    name: v.name,
                    persistent_volume_claim: v.persistent_volume_claim,
                    ephemeral: v.ephemeral.map(|_| Default::default()),
                    csi: v.csi.map(|c| k8s_openapi::api::core::v1::CSIVolumeSource {
                        driver: c.driver,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect()
        });
        for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
            *c = k8s_openapi::api::core::v1::Container {
                name: std::mem::take(&mut c.name),
                image: c.image.take(),
                ports: c.ports.take(),
                resources: c.resources.take(),
                restart_policy: c.restart_policy.take(),
                ..Default::default()
            };
        }
        spec.ephemeral_containers = None;
    }
    if let Some(status) = pod.status.as_mut() {
        *status = k8s_openapi::api::core::v1::PodStatus {
            phase: status.phase.take(),
            nominated_node_name: status.nominated_node_name.take(),
            conditions: status.conditions.take().map(|c| c.into_iter().filter(|c| c.type_ == "PodScheduled").collect()),
            ..Default::default()
        };
    }
    pod
}

/// `busybox` and `docker.io/library/busybox:latest` are one image.
pub fn normalize_image(name: &str) -> String {
    let mut n = name.to_string();
    let last = n.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !last.contains('@') {
        n.push_str(":latest");
    }
    let first = n.split('/').next().unwrap_or("");
    let has_registry = n.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if !has_registry {
        n = if n.contains('/') { format!("docker.io/{n}") } else { format!("docker.io/library/{n}") };
    }
    n
}

struct PodEntry {
    info: Arc<PodInfo>,
    node: String,
    assumed: bool,
}

/// Nodes and the pods placed on them.
#[derive(Default)]
pub struct Cache {
    nodes: HashMap<String, NodeInfo>,
    pods: HashMap<String, PodEntry>,
    /// Node names in a stable order, for rotating where a search starts.
    order: Vec<String>,
    /// Pods with required anti-affinity terms, which every placement must respect.
    anti_affinity_pods: HashSet<String>,
    /// Pods with any pod (anti-)affinity terms.
    affinity_pods: HashSet<String>,
    /// How many nodes hold each image, for image locality's spread.
    image_nodes: HashMap<String, usize>,
    /// Claims, volumes and storage classes, for the volume filters.
    pub volumes: crate::plugins::volume::VolumeIndex,
    /// PodDisruptionBudgets by namespace/name, for preemption.
    pub pdbs: HashMap<String, Arc<k8s_openapi::api::policy::v1::PodDisruptionBudget>>,
}

impl Cache {
    pub fn set_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let info = self.nodes.entry(name.clone()).or_default();
        if info.node.is_none() {
            self.order.push(name.clone());
        }
        for image in info.images.keys() {
            if let Some(n) = self.image_nodes.get_mut(image) {
                *n = n.saturating_sub(1);
            }
        }
        info.set_node(node);
        for image in info.images.keys() {
            *self.image_nodes.entry(image.clone()).or_default() += 1;
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(info) = self.nodes.get_mut(name) else { return };
        for image in info.images.keys() {
            if let Some(n) = self.image_nodes.get_mut(image) {
                *n = n.saturating_sub(1);
            }
        }
        self.order.retain(|n| n != name);
        if info.pods.is_empty() {
            self.nodes.remove(name);
        } else {
            // Pods stay accounted until they are deleted too.
            info.node = None;
            info.images.clear();
        }
    }

    /// Records a bound pod (from the watch), replacing an assumption for it.
    pub fn set_bound_pod(&mut self, pod: Arc<Pod>) {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let info = Arc::new(PodInfo::new(pod));
        self.remove_pod(&info.uid);
        self.insert(info, node, false);
    }

    /// Places a pod on a node before its binding is confirmed.
    pub fn assume(&mut self, info: Arc<PodInfo>, node: &str) {
        self.remove_pod(&info.uid);
        self.insert(info, node.to_string(), true);
    }

    /// Undoes an assumption (the binding failed). Confirmed pods stay.
    pub fn forget(&mut self, uid: &str) {
        if self.pods.get(uid).is_some_and(|p| p.assumed) {
            self.remove_pod(uid);
        }
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    fn insert(&mut self, info: Arc<PodInfo>, node: String, assumed: bool) {
        if info.has_pod_affinity() {
            self.affinity_pods.insert(info.uid.clone());
        }
        let anti = info
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .is_some_and(|a| {
                a.required_during_scheduling_ignored_during_execution.as_ref().is_some_and(|t| !t.is_empty())
            });
        if anti {
            self.anti_affinity_pods.insert(info.uid.clone());
        }
        self.nodes
            .entry(node.clone())
            .or_insert_with(|| NodeInfo { name: node.clone(), ..Default::default() })
            .add_pod(info.clone());
        self.pods.insert(info.uid.clone(), PodEntry { info, node, assumed });
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let entry = self.pods.remove(uid)?;
        self.anti_affinity_pods.remove(uid);
        self.affinity_pods.remove(uid);
        if let Some(info) = self.nodes.get_mut(&entry.node) {
            info.remove_pod(uid);
            if info.node.is_none() && info.pods.is_empty() {
                self.nodes.remove(&entry.node);
            }
        }
        Some(entry.info)
    }

    /// Drops pods a relist did not return (deleted while the watch was down).
    pub fn retain_pods(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let gone: Vec<String> = self.pods.keys().filter(|uid| !keep(uid)).cloned().collect();
        for uid in gone {
            self.remove_pod(&uid);
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name).filter(|n| n.node.is_some())
    }

    /// Nodes with a Node object, in a stable order.
    pub fn node_names(&self) -> &[String] {
        &self.order
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.order.iter().filter_map(|n| self.nodes.get(n))
    }

    pub fn node_count(&self) -> usize {
        self.order.len()
    }

    pub fn has_anti_affinity_pods(&self) -> bool {
        !self.anti_affinity_pods.is_empty()
    }

    pub fn has_affinity_pods(&self) -> bool {
        !self.affinity_pods.is_empty()
    }

    pub fn image_node_count(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }

    pub fn pod(&self, uid: &str) -> Option<&Arc<PodInfo>> {
        self.pods.get(uid).map(|p| &p.info)
    }

    pub fn pod_node(&self, uid: &str) -> Option<&str> {
        self.pods.get(uid).map(|p| p.node.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_are_normalized() {
        assert_eq!(normalize_image("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize_image("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(normalize_image("registry.local:5000/app"), "registry.local:5000/app:latest");
        assert_eq!(normalize_image("user/app:v1"), "docker.io/user/app:v1");
    }

    #[test]
    fn ports_conflict_on_wildcard_addresses() {
        let a = HostPort { protocol: "TCP".into(), ip: "".into(), port: 80 };
        let b = HostPort { protocol: "TCP".into(), ip: "10.0.0.1".into(), port: 80 };
        let c = HostPort { protocol: "UDP".into(), ip: "".into(), port: 80 };
        let d = HostPort { protocol: "TCP".into(), ip: "10.0.0.2".into(), port: 80 };
        assert!(a.conflicts(&b));
        assert!(!a.conflicts(&c));
        assert!(!b.conflicts(&d));
    }
}
