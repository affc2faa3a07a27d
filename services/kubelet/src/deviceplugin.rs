//! Device plugins (deviceplugin v1beta1): the kubelet's Registration service
//! on `<root-dir>/device-plugins/kubelet.sock`, and the manager that, for each
//! registered plugin, dials the plugin's socket back, follows its device list
//! (ListAndWatch) to advertise the extended resource in the node's capacity
//! and allocatable, and at container creation picks devices, calls Allocate
//! and applies what the plugin returns (envs, mounts, device nodes,
//! annotations, CDI devices) to the CRI container config. Assignments are
//! kept per pod and container for the PodResources API.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::node::Extended;

/// The generated deviceplugin v1beta1 stubs (proto/deviceplugin/v1beta1/api.proto).
#[allow(clippy::all, clippy::pedantic)]
pub mod api {
    tonic::include_proto!("v1beta1");
}

use api::device_plugin_client::DevicePluginClient;

pub const VERSION: &str = "v1beta1";
pub const KUBELET_SOCKET: &str = "kubelet.sock";
pub const HEALTHY: &str = "Healthy";

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("binding {path}: {source}")]
    Bind { path: PathBuf, source: std::io::Error },
    #[error("serving gRPC on {path}: {source}")]
    Serve { path: PathBuf, source: tonic::transport::Error },
    #[error("dialing device plugin {endpoint}: {source}")]
    Dial { endpoint: String, source: tonic::transport::Error },
    #[error("device plugin for {resource}: {source}")]
    Rpc { resource: String, source: tonic::Status },
    #[error("requested {requested} of {resource}, but only {available} are available")]
    Insufficient { resource: String, requested: usize, available: usize },
    #[error("device plugin for {resource} returned no allocation for the container")]
    EmptyAllocation { resource: String },
}

/// A unix listener for a gRPC server, replacing a stale socket file.
pub fn listen(path: &Path) -> Result<tokio_stream::wrappers::UnixListenerStream, DeviceError> {
    let bind = |source| DeviceError::Bind { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(bind)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind(e)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(bind)?;
    Ok(tokio_stream::wrappers::UnixListenerStream::new(listener))
}

/// A gRPC channel over a unix socket.
pub async fn dial(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    Endpoint::from_static("http://[::]:50051")
        .connect_timeout(Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
}

struct Plugin {
    /// Bumped on every registration, so an old stream's end does not touch a newer plugin.
    generation: u64,
    client: DevicePluginClient<Channel>,
    options: api::DevicePluginOptions,
    /// Device ID → healthy.
    devices: BTreeMap<String, bool>,
}

/// Devices per resource assigned to each container: pod uid → container → resource → device IDs.
pub type Assignments = HashMap<String, BTreeMap<String, BTreeMap<String, Vec<String>>>>;

#[derive(Default)]
struct State {
    plugins: HashMap<String, Plugin>,
    assigned: Assignments,
    generation: u64,
}

/// The kubelet's side of the device plugins.
pub struct DeviceManager {
    dir: PathBuf,
    state: Mutex<State>,
    extended: watch::Sender<Extended>,
}

impl DeviceManager {
    pub fn new(root_dir: &Path) -> Arc<DeviceManager> {
        let (extended, _) = watch::channel(Extended::new());
        Arc::new(DeviceManager { dir: root_dir.join("device-plugins"), state: Mutex::default(), extended })
    }

    /// The extended resources for the node's status: name → (capacity, allocatable).
    pub fn extended(&self) -> watch::Receiver<Extended> {
        self.extended.subscribe()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join(KUBELET_SOCKET)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, st: &State) {
        let map: Extended = st
            .plugins
            .iter()
            .map(|(name, p)| {
                let healthy = p.devices.values().filter(|h| **h).count() as i64;
                (name.clone(), (p.devices.len() as i64, healthy))
            })
            .collect();
        self.extended.send_if_modified(|old| {
            if *old == map {
                false
            } else {
                *old = map;
                true
            }
        });
    }

    /// Serves the Registration service until the kubelet exits.
    pub async fn serve(self: Arc<Self>) -> Result<(), DeviceError> {
        let path = self.socket();
        let incoming = listen(&path)?;
        tracing::info!(socket = %path.display(), "device plugin registration listening");
        tonic::transport::Server::builder()
            .add_service(api::registration_server::RegistrationServer::new(Registration { manager: self }))
            .serve_with_incoming(incoming)
            .await
            .map_err(|source| DeviceError::Serve { path, source })
    }

    /// Dials a newly registered plugin and follows its devices until its stream ends.
    async fn follow(self: Arc<Self>, req: api::RegisterRequest) {
        let resource = req.resource_name.clone();
        let endpoint = self.dir.join(&req.endpoint);
        let result = self.clone().follow_inner(&req, &endpoint).await;
        if let Err(e) = result {
            tracing::warn!(resource = %resource, endpoint = %endpoint.display(), "device plugin: {e}");
        }
    }

    async fn follow_inner(self: Arc<Self>, req: &api::RegisterRequest, endpoint: &Path) -> Result<(), DeviceError> {
        let resource = req.resource_name.clone();
        let rpc = |source| DeviceError::Rpc { resource: resource.clone(), source };
        let channel = dial(endpoint)
            .await
            .map_err(|source| DeviceError::Dial { endpoint: endpoint.display().to_string(), source })?;
        let mut client = DevicePluginClient::new(channel);
        let options = client.get_device_plugin_options(api::Empty {}).await.map_err(rpc)?.into_inner();
        let mut stream = client.list_and_watch(api::Empty {}).await.map_err(rpc)?.into_inner();
        let generation = {
            let mut st = self.lock();
            st.generation += 1;
            let generation = st.generation;
            st.plugins.insert(
                resource.clone(),
                Plugin { generation, client: client.clone(), options, devices: BTreeMap::new() },
            );
            self.publish(&st);
            generation
        };
        tracing::info!(resource = %resource, endpoint = %endpoint.display(), "device plugin registered");
        let end = loop {
            match stream.message().await {
                Ok(Some(list)) => {
                    let mut st = self.lock();
                    let Some(p) = st.plugins.get_mut(&resource).filter(|p| p.generation == generation) else {
                        return Ok(());
                    };
                    p.devices = list.devices.into_iter().map(|d| (d.id, d.health == HEALTHY)).collect();
                    tracing::info!(
                        resource = %resource,
                        devices = p.devices.len(),
                        healthy = p.devices.values().filter(|h| **h).count(),
                        "device plugin devices"
                    );
                    self.publish(&st);
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        // The plugin is gone: its devices stay in capacity but none is allocatable until it registers again.
        let mut st = self.lock();
        if let Some(p) = st.plugins.get_mut(&resource).filter(|p| p.generation == generation) {
            p.devices.values_mut().for_each(|h| *h = false);
            self.publish(&st);
        }
        match end {
            Some(e) => Err(rpc(e)),
            None => {
                tracing::info!(resource = %resource, "device plugin stream ended");
                Ok(())
            }
        }
    }

    /// Devices for a container: picks (or reuses) devices for each plugin resource the container
    /// requests, calls Allocate and applies the response to the CRI config.
    pub async fn allocate(
        &self,
        pod: &Pod,
        c: &Container,
        config: &mut cri::ContainerConfig,
    ) -> Result<(), DeviceError> {
        let uid = crate::containers::pod_uid(pod);
        for (resource, count) in self.requests(c) {
            let (ids, mut client, options) = self.reserve(&uid, &c.name, &resource, count)?;
            let rpc = |source| DeviceError::Rpc { resource: resource.clone(), source };
            let req = api::AllocateRequest {
                container_requests: vec![api::ContainerAllocateRequest { devices_ids: ids.clone() }],
            };
            let response = match client.allocate(req).await {
                Ok(r) => r.into_inner(),
                Err(e) => {
                    self.unreserve(&uid, &c.name, &resource);
                    return Err(rpc(e));
                }
            };
            let Some(resp) = response.container_responses.into_iter().next() else {
                self.unreserve(&uid, &c.name, &resource);
                return Err(DeviceError::EmptyAllocation { resource });
            };
            if options.pre_start_required {
                client
                    .pre_start_container(api::PreStartContainerRequest { devices_ids: ids.clone() })
                    .await
                    .map_err(rpc)?;
            }
            apply(config, resp);
            tracing::info!(pod = %crate::pods::pod_name(pod), container = %c.name, resource = %resource, devices = ?ids, "allocated devices");
        }
        Ok(())
    }

    /// The plugin resources a container asks for (extended resources are set as limits).
    fn requests(&self, c: &Container) -> Vec<(String, usize)> {
        let st = self.lock();
        let res = c.resources.as_ref();
        let limits = res.and_then(|r| r.limits.clone()).unwrap_or_default();
        let requests = res.and_then(|r| r.requests.clone()).unwrap_or_default();
        let names: BTreeSet<&String> = limits.keys().chain(requests.keys()).collect();
        names
            .into_iter()
            .filter(|n| st.plugins.contains_key(*n))
            .filter_map(|n| {
                let q = limits.get(n).or(requests.get(n))?;
                let count = apimachinery::quantity::parse_milli(&q.0).ok()? / 1000;
                (count > 0).then(|| (n.clone(), count as usize))
            })
            .collect()
    }

    fn reserve(
        &self,
        uid: &str,
        container: &str,
        resource: &str,
        count: usize,
    ) -> Result<(Vec<String>, DevicePluginClient<Channel>, api::DevicePluginOptions), DeviceError> {
        let mut st = self.lock();
        let existing = st.assigned.get(uid).and_then(|m| m.get(container)).and_then(|m| m.get(resource)).cloned();
        let in_use: BTreeSet<String> =
            st.assigned.values().flat_map(|m| m.values()).filter_map(|m| m.get(resource)).flatten().cloned().collect();
        let plugin = st.plugins.get(resource).ok_or_else(|| DeviceError::Insufficient {
            resource: resource.into(),
            requested: count,
            available: 0,
        })?;
        let ids = match existing {
            // A restarted container keeps its devices.
            Some(ids) if ids.len() == count => ids,
            _ => {
                let free: Vec<String> = plugin
                    .devices
                    .iter()
                    .filter(|(id, h)| **h && !in_use.contains(*id))
                    .map(|(id, _)| id.clone())
                    .collect();
                if free.len() < count {
                    return Err(DeviceError::Insufficient {
                        resource: resource.into(),
                        requested: count,
                        available: free.len(),
                    });
                }
                free.into_iter().take(count).collect()
            }
        };
        let out = (ids.clone(), plugin.client.clone(), plugin.options);
        st.assigned.entry(uid.into()).or_default().entry(container.into()).or_default().insert(resource.into(), ids);
        Ok(out)
    }

    fn unreserve(&self, uid: &str, container: &str, resource: &str) {
        let mut st = self.lock();
        if let Some(m) = st.assigned.get_mut(uid).and_then(|m| m.get_mut(container)) {
            m.remove(resource);
        }
    }

    /// Frees the devices of a pod that is gone.
    pub fn release(&self, uid: &str) {
        self.lock().assigned.remove(uid);
    }

    /// Who holds which devices.
    pub fn assignments(&self) -> Assignments {
        self.lock().assigned.clone()
    }

    /// The healthy devices per resource.
    pub fn allocatable(&self) -> BTreeMap<String, Vec<String>> {
        self.lock()
            .plugins
            .iter()
            .map(|(name, p)| (name.clone(), p.devices.iter().filter(|(_, h)| **h).map(|(id, _)| id.clone()).collect()))
            .collect()
    }
}

/// What the plugin says the container needs, onto its CRI config.
fn apply(config: &mut cri::ContainerConfig, resp: api::ContainerAllocateResponse) {
    let mut envs: BTreeMap<String, String> = resp.envs.into_iter().collect();
    for kv in &mut config.envs {
        if let Some(v) = envs.remove(&kv.key) {
            kv.value = v;
        }
    }
    config.envs.extend(envs.into_iter().map(|(key, value)| cri::KeyValue { key, value }));
    for m in resp.mounts {
        config.mounts.retain(|x| x.container_path != m.container_path);
        config.mounts.push(cri::Mount {
            container_path: m.container_path,
            host_path: m.host_path,
            readonly: m.read_only,
            ..Default::default()
        });
    }
    config.devices.extend(resp.devices.into_iter().map(|d| cri::Device {
        container_path: d.container_path,
        host_path: d.host_path,
        permissions: d.permissions,
    }));
    config.annotations.extend(resp.annotations);
    config.cdi_devices.extend(resp.cdi_devices.into_iter().map(|d| cri::CdiDevice { name: d.name }));
}

/// The Registration service.
struct Registration {
    manager: Arc<DeviceManager>,
}

fn valid_resource_name(name: &str) -> bool {
    match name.split_once('/') {
        Some((domain, rest)) => {
            !domain.is_empty()
                && !rest.is_empty()
                && !rest.contains('/')
                && domain != "kubernetes.io"
                && !domain.ends_with(".kubernetes.io")
                && domain != "requests.kubernetes.io"
        }
        None => false,
    }
}

#[tonic::async_trait]
impl api::registration_server::Registration for Registration {
    async fn register(
        &self,
        request: tonic::Request<api::RegisterRequest>,
    ) -> Result<tonic::Response<api::Empty>, tonic::Status> {
        let req = request.into_inner();
        if req.version != VERSION {
            return Err(tonic::Status::invalid_argument(format!(
                "the kubelet supports device plugin API {VERSION}, not {:?}",
                req.version
            )));
        }
        if !valid_resource_name(&req.resource_name) {
            return Err(tonic::Status::invalid_argument(format!(
                "invalid extended resource name {:?}",
                req.resource_name
            )));
        }
        if req.endpoint.is_empty() || req.endpoint.contains('/') || req.endpoint == KUBELET_SOCKET {
            return Err(tonic::Status::invalid_argument(format!("invalid endpoint {:?}", req.endpoint)));
        }
        tracing::info!(resource = %req.resource_name, endpoint = %req.endpoint, "device plugin registering");
        tokio::spawn(self.manager.clone().follow(req));
        Ok(tonic::Response::new(api::Empty {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_resource_names() {
        assert!(valid_resource_name("example.com/foo"));
        assert!(!valid_resource_name("foo"));
        assert!(!valid_resource_name("kubernetes.io/foo"));
        assert!(!valid_resource_name("example.com/a/b"));
    }

    #[test]
    fn allocation_lands_in_the_container_config() {
        let mut config = cri::ContainerConfig {
            envs: vec![cri::KeyValue { key: "A".into(), value: "old".into() }],
            ..Default::default()
        };
        let resp = api::ContainerAllocateResponse {
            envs: [("A".to_string(), "new".to_string()), ("B".to_string(), "b".to_string())].into(),
            mounts: vec![api::Mount { container_path: "/dev/x".into(), host_path: "/tmp/x".into(), read_only: true }],
            devices: vec![api::DeviceSpec {
                container_path: "/dev/w".into(),
                host_path: "/dev/null".into(),
                permissions: "rw".into(),
            }],
            ..Default::default()
        };
        apply(&mut config, resp);
        let envs: Vec<(String, String)> = config.envs.iter().map(|k| (k.key.clone(), k.value.clone())).collect();
        assert_eq!(envs, vec![("A".into(), "new".into()), ("B".into(), "b".into())]);
        assert!(config.mounts[0].readonly);
        assert_eq!(config.devices[0].permissions, "rw");
    }
}
