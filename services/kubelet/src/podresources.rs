//! The PodResources API (podresources v1) on `<root-dir>/pod-resources/kubelet.sock`:
//! which device-plugin devices each container of this kubelet's pods holds,
//! and which devices the node can hand out. CPU and memory pinning are not
//! managed by this kubelet (the `none` policies), so their lists stay empty.

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::deviceplugin::{self, Assignments, DeviceError, DeviceManager};
use crate::workers::PodWorkers;

/// The generated podresources v1 stubs (proto/podresources/v1/api.proto).
#[allow(clippy::all, clippy::pedantic)]
pub mod api {
    tonic::include_proto!("v1");
}

pub const SOCKET: &str = "pod-resources/kubelet.sock";

pub struct PodResourcesServer {
    pub workers: Arc<PodWorkers>,
    pub devices: Arc<DeviceManager>,
}

fn container_devices(assigned: Option<&std::collections::BTreeMap<String, Vec<String>>>) -> Vec<api::ContainerDevices> {
    assigned
        .into_iter()
        .flatten()
        .map(|(resource, ids)| api::ContainerDevices {
            resource_name: resource.clone(),
            device_ids: ids.clone(),
            topology: None,
        })
        .collect()
}

/// One pod's resources: every regular container, and init containers that hold devices.
fn pod_resources(pod: &Pod, assignments: &Assignments) -> api::PodResources {
    let uid = crate::containers::pod_uid(pod);
    let by_container = assignments.get(&uid);
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.iter().flatten().filter(|c| {
        c.restart_policy.as_deref() == Some("Always") || by_container.is_some_and(|m| m.contains_key(&c.name))
    });
    let containers = inits
        .chain(spec.containers.iter())
        .map(|c| api::ContainerResources {
            name: c.name.clone(),
            devices: container_devices(by_container.and_then(|m| m.get(&c.name))),
            ..Default::default()
        })
        .collect();
    api::PodResources {
        name: pod.metadata.name.clone().unwrap_or_default(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        containers,
    }
}

impl PodResourcesServer {
    /// Serves the API until the kubelet exits.
    pub async fn serve(self, root_dir: PathBuf) -> Result<(), DeviceError> {
        let path = root_dir.join(SOCKET);
        let incoming = deviceplugin::listen(&path)?;
        tracing::info!(socket = %path.display(), "pod resources API listening");
        tonic::transport::Server::builder()
            .add_service(api::pod_resources_lister_server::PodResourcesListerServer::new(self))
            .serve_with_incoming(incoming)
            .await
            .map_err(|source| DeviceError::Serve { path, source })
    }

    fn active_pods(&self) -> Vec<Arc<Pod>> {
        let mut pods = self.workers.pods();
        pods.retain(|p| p.metadata.deletion_timestamp.is_none());
        pods.sort_by_key(|p| crate::pods::pod_name(p));
        pods
    }
}

#[tonic::async_trait]
impl api::pod_resources_lister_server::PodResourcesLister for PodResourcesServer {
    async fn list(
        &self,
        _request: tonic::Request<api::ListPodResourcesRequest>,
    ) -> Result<tonic::Response<api::ListPodResourcesResponse>, tonic::Status> {
        let assignments = self.devices.assignments();
        let pod_resources = self.active_pods().iter().map(|p| pod_resources(p, &assignments)).collect();
        Ok(tonic::Response::new(api::ListPodResourcesResponse { pod_resources }))
    }

    async fn get_allocatable_resources(
        &self,
        _request: tonic::Request<api::AllocatableResourcesRequest>,
    ) -> Result<tonic::Response<api::AllocatableResourcesResponse>, tonic::Status> {
        let devices = self
            .devices
            .allocatable()
            .into_iter()
            .map(|(resource_name, device_ids)| api::ContainerDevices { resource_name, device_ids, topology: None })
            .collect();
        Ok(tonic::Response::new(api::AllocatableResourcesResponse { devices, ..Default::default() }))
    }

    async fn get(
        &self,
        request: tonic::Request<api::GetPodResourcesRequest>,
    ) -> Result<tonic::Response<api::GetPodResourcesResponse>, tonic::Status> {
        let req = request.into_inner();
        let pod = self
            .active_pods()
            .into_iter()
            .find(|p| {
                p.metadata.name.as_deref() == Some(req.pod_name.as_str())
                    && p.metadata.namespace.as_deref() == Some(req.pod_namespace.as_str())
            })
            .ok_or_else(|| {
                tonic::Status::not_found(format!("pod {} in namespace {} not found", req.pod_name, req.pod_namespace))
            })?;
        let assignments = self.devices.assignments();
        Ok(tonic::Response::new(api::GetPodResourcesResponse {
            pod_resources: Some(pod_resources(&pod, &assignments)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_list_their_devices() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}
        }))
        .unwrap();
        let mut assignments = Assignments::new();
        assignments
            .entry("u1".into())
            .or_default()
            .entry("b".into())
            .or_default()
            .insert("example.com/w".into(), vec!["w0".into()]);
        let r = pod_resources(&pod, &assignments);
        assert_eq!(r.containers.len(), 2);
        assert!(r.containers[0].devices.is_empty());
        assert_eq!(r.containers[1].devices[0].device_ids, vec!["w0".to_string()]);
    }
}
