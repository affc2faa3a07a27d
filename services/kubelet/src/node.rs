//! The node: registration with capacity, addresses and node info; the Lease
//! heartbeat in `kube-node-lease`; status conditions, patched when they
//! change or every `--node-status-report-frequency`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerImage, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::cri::Runtime;

pub const KUBELET_VERSION: &str = "v1.33.0+rustkube";
/// Upstream's default hard eviction threshold for memory.available.
const EVICTION_HARD_MEMORY: i128 = 100 * 1024 * 1024;

/// What the node offers, measured once at start.
#[derive(Clone, Debug)]
pub struct Machine {
    pub cpus: i128,
    pub memory_bytes: i128,
    pub storage_bytes: i128,
    pub info: NodeSystemInfo,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

impl Machine {
    pub fn detect(root_dir: &std::path::Path, runtime_version: &str) -> Machine {
        let cpus = std::thread::available_parallelism().map(|n| n.get() as i128).unwrap_or(1);
        let memory_kib: i128 = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        let _ = std::fs::create_dir_all(root_dir);
        let storage_bytes = std::process::Command::new("df")
            .args(["-B1", "--output=size"])
            .arg(root_dir)
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()))
            .unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
            .unwrap_or_else(|| "Linux".into());
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        Machine {
            cpus,
            memory_bytes: memory_kib * 1024,
            storage_bytes,
            info: NodeSystemInfo {
                architecture: arch.into(),
                boot_id: read("/proc/sys/kernel/random/boot_id"),
                container_runtime_version: runtime_version.into(),
                kernel_version: read("/proc/sys/kernel/osrelease"),
                kube_proxy_version: KUBELET_VERSION.into(),
                kubelet_version: KUBELET_VERSION.into(),
                machine_id: read("/etc/machine-id"),
                operating_system: "linux".into(),
                os_image,
                system_uuid: read("/sys/class/dmi/id/product_uuid"),
                swap: None,
            },
        }
    }
}

/// Capacity and allocatable (capacity minus reservations and the eviction threshold).
pub fn resources(
    m: &Machine,
    max_pods: u32,
    reserved: &[(String, String)],
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let mut capacity: BTreeMap<String, i128> = BTreeMap::new();
    capacity.insert("cpu".into(), m.cpus * 1000);
    capacity.insert("memory".into(), m.memory_bytes * 1000);
    capacity.insert("ephemeral-storage".into(), m.storage_bytes * 1000);
    capacity.insert("pods".into(), i128::from(max_pods) * 1000);
    capacity.insert("hugepages-2Mi".into(), 0);
    capacity.insert("hugepages-1Gi".into(), 0);
    let mut allocatable = capacity.clone();
    for (name, value) in reserved {
        if let (Some(a), Ok(v)) = (allocatable.get_mut(name), apimachinery::quantity::parse_milli(value)) {
            *a = (*a - v).max(0);
        }
    }
    if let Some(mem) = allocatable.get_mut("memory") {
        *mem = (*mem - EVICTION_HARD_MEMORY * 1000).max(0);
    }
    let q = |map: BTreeMap<String, i128>| {
        map.into_iter()
            .map(|(k, v)| {
                let text = if k == "cpu" { apimachinery::quantity::format_milli(v) } else { (v / 1000).to_string() };
                (k, Quantity(text))
            })
            .collect()
    };
    (q(capacity), q(allocatable))
}

/// Extended resources (device plugins): name → (capacity, allocatable) counts.
pub type Extended = BTreeMap<String, (i64, i64)>;

/// Reports and keeps the node alive.
pub struct NodeAgent {
    pub client: kube::Client,
    pub name: String,
    pub runtime: Runtime,
    pub machine: Machine,
    pub addresses: Vec<NodeAddress>,
    pub capacity: BTreeMap<String, Quantity>,
    pub allocatable: BTreeMap<String, Quantity>,
    /// Added to capacity and allocatable; a change is reported at once.
    pub extended: tokio::sync::watch::Receiver<Extended>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub port: u16,
    pub lease_duration_seconds: i32,
    pub status_update_frequency: Duration,
    pub status_report_frequency: Duration,
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

impl NodeAgent {
    /// Creates the Node, or adopts an existing one of that name.
    pub async fn register(&self) -> anyhow::Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let node = Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(self.labels.clone()),
                annotations: Some(
                    [("volumes.kubernetes.io/controller-managed-attach-detach".into(), "true".into())].into(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec { taints: Some(self.taints.clone()).filter(|t| !t.is_empty()), ..Default::default() }),
            status: Some(self.status(None, Vec::new()).await),
        };
        loop {
            match api.create(&PostParams::default(), &node).await {
                Ok(_) => {
                    tracing::info!(node = %self.name, "registered the node");
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    tracing::info!(node = %self.name, "the node exists; taking it over");
                    let patch = serde_json::json!({"metadata": {"labels": self.labels}});
                    api.patch(&self.name, &PatchParams::default(), &Patch::Merge(patch)).await?;
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(node = %self.name, "registering the node: {e}; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    async fn runtime_ready(&self) -> Result<(), String> {
        match self.runtime.status().await {
            Ok(s) => {
                let conditions = s.status.map(|s| s.conditions).unwrap_or_default();
                let not_ready: Vec<String> = conditions
                    .iter()
                    .filter(|c| !c.status)
                    .map(|c| format!("{}=false reason:{} message:{}", c.r#type, c.reason, c.message))
                    .collect();
                if not_ready.is_empty() {
                    Ok(())
                } else {
                    Err(format!("container runtime network not ready: {}", not_ready.join(", ")))
                }
            }
            Err(e) => Err(format!("container runtime is down: {e}")),
        }
    }

    async fn images(&self) -> Vec<ContainerImage> {
        let mut images: Vec<ContainerImage> = self
            .runtime
            .list_images()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|i| {
                let mut names = i.repo_tags.clone();
                names.extend(i.repo_digests.clone());
                ContainerImage { names: Some(names), size_bytes: Some(i.size as i64) }
            })
            .collect();
        images.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
        images.truncate(50);
        images
    }

    /// The node's status now; conditions keep their transition time while unchanged.
    async fn status(&self, previous: Option<&NodeStatus>, images: Vec<ContainerImage>) -> NodeStatus {
        let ready = self.runtime_ready().await;
        let t = now();
        let condition = |type_: &str, status: &str, reason: &str, message: &str| {
            let old = previous.and_then(|p| p.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == type_));
            let transition = old.filter(|o| o.status == status).and_then(|o| o.last_transition_time.clone());
            NodeCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_heartbeat_time: Some(t.clone()),
                last_transition_time: Some(transition.unwrap_or_else(|| t.clone())),
            }
        };
        let ready_condition = match &ready {
            Ok(()) => condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            Err(msg) => condition("Ready", "False", "KubeletNotReady", msg),
        };
        let (mut capacity, mut allocatable) = (self.capacity.clone(), self.allocatable.clone());
        for (name, (c, a)) in self.extended.borrow().iter() {
            capacity.insert(name.clone(), Quantity(c.to_string()));
            allocatable.insert(name.clone(), Quantity(a.to_string()));
        }
        NodeStatus {
            capacity: Some(capacity),
            allocatable: Some(allocatable),
            addresses: Some(self.addresses.clone()),
            conditions: Some(vec![
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                ready_condition,
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint { port: i32::from(self.port) }),
            }),
            node_info: Some(self.machine.info.clone()),
            images: Some(images),
            ..Default::default()
        }
    }

    /// Keeps the Lease renewed every quarter of its duration, for ever.
    pub async fn lease_loop(&self) {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let interval = Duration::from_secs((self.lease_duration_seconds as u64 / 4).max(1));
        let nodes: Api<Node> = Api::all(self.client.clone());
        loop {
            if let Err(e) = self.renew_lease(&api, &nodes).await {
                tracing::warn!(node = %self.name, "renewing the node lease: {e}");
            }
            tokio::time::sleep(interval).await;
        }
    }

    async fn renew_lease(&self, api: &Api<Lease>, nodes: &Api<Node>) -> Result<(), kube::Error> {
        let t = MicroTime(jiff::Timestamp::now());
        match api.get_opt(&self.name).await? {
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                spec.renew_time = Some(t);
                spec.holder_identity = Some(self.name.clone());
                spec.lease_duration_seconds = Some(self.lease_duration_seconds);
                api.replace(&self.name, &PostParams::default(), &lease).await?;
            }
            None => {
                let owner = nodes.get(&self.name).await?;
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        owner_references: Some(vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: self.name.clone(),
                            uid: owner.metadata.uid.unwrap_or_default(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.name.clone()),
                        lease_duration_seconds: Some(self.lease_duration_seconds),
                        renew_time: Some(t),
                        ..Default::default()
                    }),
                };
                api.create(&PostParams::default(), &lease).await?;
            }
        }
        Ok(())
    }

    /// Computes the status every update period; patches it when it changed or the report period passed.
    pub async fn status_loop(&self) {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut last_sent: Option<(serde_json::Value, Instant)> = None;
        let mut images_at: Option<(Vec<ContainerImage>, Instant)> = None;
        let mut extended = self.extended.clone();
        loop {
            let current = api.get_status(&self.name).await.ok().and_then(|n| n.status);
            if images_at.as_ref().is_none_or(|(_, at)| at.elapsed() > Duration::from_secs(60)) {
                images_at = Some((self.images().await, Instant::now()));
            }
            let images = images_at.as_ref().map(|(i, _)| i.clone()).unwrap_or_default();
            let status = self.status(current.as_ref(), images).await;
            // What matters for "changed": everything but heartbeat times.
            let mut fingerprint = serde_json::to_value(&status).unwrap_or_default();
            if let Some(conds) = fingerprint.get_mut("conditions").and_then(|c| c.as_array_mut()) {
                for c in conds {
                    if let Some(o) = c.as_object_mut() {
                        o.remove("lastHeartbeatTime");
                    }
                }
            }
            let due = match &last_sent {
                None => true,
                Some((fp, at)) => *fp != fingerprint || at.elapsed() >= self.status_report_frequency,
            };
            if due {
                let patch = serde_json::json!({ "status": status });
                match api.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(patch)).await {
                    Ok(_) => last_sent = Some((fingerprint, Instant::now())),
                    Err(e) => tracing::warn!(node = %self.name, "updating node status: {e}"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.status_update_frequency) => {}
                _ = extended.changed() => {}
            }
        }
    }
}
