//! The Container Runtime Interface client: `runtime.v1` RuntimeService and
//! ImageService over the runtime's unix socket (`--container-runtime-endpoint`).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1::{
    Container, ContainerConfig, ContainerState, ContainerStatus, PodSandbox, PodSandboxConfig, PodSandboxState,
    PodSandboxStatus,
};

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("connecting to the container runtime at {endpoint}: {source}")]
    Connect { endpoint: String, source: tonic::transport::Error },
    #[error("container runtime: {0}")]
    Rpc(#[from] tonic::Status),
}

impl CriError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, CriError::Rpc(s) if s.code() == tonic::Code::NotFound)
    }
}

pub type Result<T> = std::result::Result<T, CriError>;

/// Which standard streams a streaming request carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamIo {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Both CRI services on one connection.
#[derive(Clone)]
pub struct Runtime {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    pub ops: Arc<RuntimeOps>,
}

type OpLabels = Vec<(String, String)>;

/// Upstream's runtime operation metrics: how many CRI calls of each type, how
/// many failed, and how long they took.
pub struct RuntimeOps {
    pub total: Family<OpLabels, Counter>,
    pub errors: Family<OpLabels, Counter>,
    pub duration: Family<OpLabels, Histogram, fn() -> Histogram>,
}

impl RuntimeOps {
    fn new() -> RuntimeOps {
        // Upstream's buckets (metrics.DefBuckets plus its longer tail).
        fn histogram() -> Histogram {
            Histogram::new([
                0.005,
                0.0125,
                0.03125,
                0.078125,
                0.1953125,
                0.48828125,
                1.220703125,
                3.0517578125,
                7.62939453125,
                19.073486328125,
                47.6837158203125,
                119.20928955078125,
                298.0232238769531,
                745.0580596923828,
            ])
        }
        RuntimeOps {
            total: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(histogram),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kubelet_runtime_operations",
            "Cumulative number of runtime operations by operation type.",
            self.total.clone(),
        );
        registry.register(
            "kubelet_runtime_operations_errors",
            "Cumulative number of runtime operation errors by operation type.",
            self.errors.clone(),
        );
        registry.register(
            "kubelet_runtime_operations_duration_seconds",
            "Duration in seconds of runtime operations. Broken down by operation type.",
            self.duration.clone(),
        );
    }
}

/// `unix:///run/containerd/containerd.sock` or a bare path.
fn socket_path(endpoint: &str) -> String {
    endpoint.strip_prefix("unix://").unwrap_or(endpoint).to_string()
}

impl Runtime {
    pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Runtime> {
        let path = socket_path(endpoint);
        let channel = Endpoint::from_static("http://[::]:50051")
            .timeout(timeout)
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }))
            .await
            .map_err(|source| CriError::Connect { endpoint: endpoint.to_string(), source })?;
        let max = 16 * 1024 * 1024;
        Ok(Runtime {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(max),
            images: ImageServiceClient::new(channel).max_decoding_message_size(max),
            ops: Arc::new(RuntimeOps::new()),
        })
    }

    /// Runs one CRI call, counting and timing it by its upstream operation type.
    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl std::future::Future<Output = std::result::Result<T, tonic::Status>>,
    ) -> std::result::Result<T, tonic::Status> {
        let labels = vec![("operation_type".to_string(), op.to_string())];
        let start = std::time::Instant::now();
        let r = call.await;
        self.ops.total.get_or_create(&labels).inc();
        self.ops.duration.get_or_create(&labels).observe(start.elapsed().as_secs_f64());
        if r.is_err() {
            self.ops.errors.get_or_create(&labels).inc();
        }
        r
    }

    pub async fn version(&self) -> Result<cri::VersionResponse> {
        Ok(self
            .timed("version", self.runtime.clone().version(cri::VersionRequest { version: "v1".into() }))
            .await?
            .into_inner())
    }

    pub async fn status(&self) -> Result<cri::StatusResponse> {
        Ok(self.timed("status", self.runtime.clone().status(cri::StatusRequest { verbose: false })).await?.into_inner())
    }

    pub async fn run_pod_sandbox(&self, config: PodSandboxConfig) -> Result<String> {
        let req = cri::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
        Ok(self.timed("run_podsandbox", self.runtime.clone().run_pod_sandbox(req)).await?.into_inner().pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        self.timed(
            "stop_podsandbox",
            self.runtime.clone().stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.into() }),
        )
        .await?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        self.timed(
            "remove_podsandbox",
            self.runtime.clone().remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id.into() }),
        )
        .await?;
        Ok(())
    }

    pub async fn pod_sandbox_status(&self, id: &str) -> Result<Option<PodSandboxStatus>> {
        let req = cri::PodSandboxStatusRequest { pod_sandbox_id: id.into(), verbose: false };
        Ok(self.timed("podsandbox_status", self.runtime.clone().pod_sandbox_status(req)).await?.into_inner().status)
    }

    pub async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandbox>> {
        Ok(self
            .timed(
                "list_podsandbox",
                self.runtime.clone().list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
            )
            .await?
            .into_inner()
            .items)
    }

    /// The sandboxes of one pod (by the `io.kubernetes.pod.uid` label).
    pub async fn pod_sandboxes(&self, uid: &str) -> Result<Vec<PodSandbox>> {
        let filter = cri::PodSandboxFilter {
            label_selector: [(crate::labels::POD_UID.to_string(), uid.to_string())].into(),
            ..Default::default()
        };
        let req = cri::ListPodSandboxRequest { filter: Some(filter) };
        Ok(self.timed("list_podsandbox", self.runtime.clone().list_pod_sandbox(req)).await?.into_inner().items)
    }

    /// The containers of one pod, in any sandbox.
    pub async fn pod_containers(&self, uid: &str) -> Result<Vec<Container>> {
        let filter = cri::ContainerFilter {
            label_selector: [(crate::labels::POD_UID.to_string(), uid.to_string())].into(),
            ..Default::default()
        };
        let req = cri::ListContainersRequest { filter: Some(filter) };
        Ok(self.timed("list_containers", self.runtime.clone().list_containers(req)).await?.into_inner().containers)
    }

    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String> {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        Ok(self.timed("create_container", self.runtime.clone().create_container(req)).await?.into_inner().container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        self.timed(
            "start_container",
            self.runtime.clone().start_container(cri::StartContainerRequest { container_id: id.into() }),
        )
        .await?;
        Ok(())
    }

    pub async fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<()> {
        let req = cri::StopContainerRequest { container_id: id.into(), timeout: timeout_secs };
        self.timed("stop_container", self.runtime.clone().stop_container(req)).await?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        self.timed(
            "remove_container",
            self.runtime.clone().remove_container(cri::RemoveContainerRequest { container_id: id.into() }),
        )
        .await?;
        Ok(())
    }

    pub async fn list_containers(&self) -> Result<Vec<Container>> {
        Ok(self
            .runtime
            .clone()
            .list_containers(cri::ListContainersRequest { filter: None })
            .await?
            .into_inner()
            .containers)
    }

    pub async fn container_status(&self, id: &str) -> Result<Option<ContainerStatus>> {
        let req = cri::ContainerStatusRequest { container_id: id.into(), verbose: false };
        Ok(self.timed("container_status", self.runtime.clone().container_status(req)).await?.into_inner().status)
    }

    /// Runs a command in a container and waits for it (exec probes).
    pub async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout_secs: i64) -> Result<cri::ExecSyncResponse> {
        let req = cri::ExecSyncRequest { container_id: id.into(), cmd, timeout: timeout_secs };
        Ok(self.timed("exec_sync", self.runtime.clone().exec_sync(req)).await?.into_inner())
    }

    /// A URL on the runtime's streaming server that runs `cmd` in the container.
    pub async fn exec(&self, id: &str, cmd: Vec<String>, io: StreamIo) -> Result<String> {
        let req = cri::ExecRequest {
            container_id: id.into(),
            cmd,
            tty: io.tty,
            stdin: io.stdin,
            stdout: io.stdout,
            stderr: io.stderr,
        };
        Ok(self.timed("exec", self.runtime.clone().exec(req)).await?.into_inner().url)
    }

    /// A URL on the runtime's streaming server attached to the container's process.
    pub async fn attach(&self, id: &str, io: StreamIo) -> Result<String> {
        let req = cri::AttachRequest {
            container_id: id.into(),
            stdin: io.stdin,
            tty: io.tty,
            stdout: io.stdout,
            stderr: io.stderr,
        };
        Ok(self.timed("attach", self.runtime.clone().attach(req)).await?.into_inner().url)
    }

    /// A URL on the runtime's streaming server forwarding to ports of the sandbox.
    pub async fn port_forward(&self, sandbox_id: &str, ports: Vec<i32>) -> Result<String> {
        let req = cri::PortForwardRequest { pod_sandbox_id: sandbox_id.into(), port: ports };
        Ok(self.timed("port_forward", self.runtime.clone().port_forward(req)).await?.into_inner().url)
    }

    /// Asks the runtime to reopen the container's log file (after the kubelet rotated it).
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let req = cri::ReopenContainerLogRequest { container_id: id.into() };
        self.timed("reopen_container_log", self.runtime.clone().reopen_container_log(req)).await?;
        Ok(())
    }

    pub async fn list_container_stats(&self) -> Result<Vec<cri::ContainerStats>> {
        let req = cri::ListContainerStatsRequest { filter: None };
        Ok(self.timed("list_container_stats", self.runtime.clone().list_container_stats(req)).await?.into_inner().stats)
    }

    /// The image's ID if present.
    pub async fn image_status(&self, image: &str) -> Result<Option<cri::Image>> {
        let req = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec { image: image.into(), ..Default::default() }),
            verbose: false,
        };
        Ok(self.timed("image_status", self.images.clone().image_status(req)).await?.into_inner().image)
    }

    pub async fn pull_image(&self, image: &str, auth: Option<cri::AuthConfig>) -> Result<String> {
        let req = cri::PullImageRequest {
            image: Some(cri::ImageSpec { image: image.into(), ..Default::default() }),
            auth,
            sandbox_config: None,
        };
        Ok(self.timed("pull_image", self.images.clone().pull_image(req)).await?.into_inner().image_ref)
    }

    pub async fn list_images(&self) -> Result<Vec<cri::Image>> {
        Ok(self
            .timed("list_images", self.images.clone().list_images(cri::ListImagesRequest { filter: None }))
            .await?
            .into_inner()
            .images)
    }
}
