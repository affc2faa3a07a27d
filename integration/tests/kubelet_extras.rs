//! The kubelet's static pods, resource accounting and device plugins, with
//! real containerd (a private instance per test), real etcd and the real
//! apiserver: a manifest in --pod-manifest-path runs and is mirrored in the
//! API; /stats/summary and /metrics/resource report a running pod's usage;
//! a device plugin served by this test registers, its devices become node
//! capacity, a pod gets one through Allocate and PodResources reports it.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use futures::Stream;
use integration::containerd::{Containerd, ContainerdOptions, TEST_IMAGE};
use integration::node::{eventually_async as eventually, merge, tail, SingleNode};
use integration::{free_port, ControlPlane};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams};
use kubelet::deviceplugin::api as dp;
use kubelet::podresources::api as pr;
use serde_json::{json, Value};

struct Node1 {
    node: SingleNode,
    /// --pod-manifest-path.
    manifests: tempfile::TempDir,
}

impl std::ops::Deref for Node1 {
    type Target = SingleNode;
    fn deref(&self) -> &SingleNode {
        &self.node
    }
}

impl Node1 {
    async fn start() -> Node1 {
        let manifests = tempfile::tempdir().unwrap();
        let flag = format!("--pod-manifest-path={}", manifests.path().display());
        Node1 { node: SingleNode::start(&[&flag]).await, manifests }
    }

    fn manifests(&self) -> PathBuf {
        self.manifests.path().to_path_buf()
    }

    async fn pod(&self, name: &str, spec: Value) -> Pod {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 5,
                     "containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never"}]},
        });
        merge(&mut pod["spec"], spec);
        self.create_pod(pod).await
    }

    /// GET on the kubelet's HTTPS port.
    fn kubelet_get(&self, path: &str) -> String {
        let out = std::process::Command::new("curl")
            .args(["-sk", "--max-time", "5", &format!("https://127.0.0.1:{}{path}", self.port)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn running_tasks(containerd: &Containerd) -> usize {
    let out = containerd.ctr(&["-n", "k8s.io", "tasks", "ls"]).unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("RUNNING")).count()
}

fn phase(p: &Pod) -> String {
    p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default()
}

fn annotation(p: &Pod, key: &str) -> Option<String> {
    p.metadata.annotations.as_ref()?.get(key).cloned()
}

fn running(p: &Pod) -> bool {
    phase(p) == "Running"
        && p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| cs.iter().all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some())))
}

fn container_id(p: &Pod) -> Option<String> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()?.container_id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pod_runs_and_is_mirrored() {
    let n = Node1::start().await;
    let manifest = n.manifests().join("web.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\n  labels: {{app: web}}\nspec:\n  terminationGracePeriodSeconds: 3\n  containers:\n  - name: c\n    image: {TEST_IMAGE}\n    imagePullPolicy: Never\n"
        ),
    )
    .unwrap();
    // The mirror pod appears, owned by the node, and reports the static pod's Running status.
    let mirror = n
        .until("static-web-n1", "a Running mirror pod", |p| {
            annotation(p, "kubernetes.io/config.mirror").is_some() && running(p)
        })
        .await;
    let hash = annotation(&mirror, "kubernetes.io/config.hash").unwrap();
    assert_eq!(annotation(&mirror, "kubernetes.io/config.mirror").as_deref(), Some(hash.as_str()));
    assert_eq!(annotation(&mirror, "kubernetes.io/config.source").as_deref(), Some("file"));
    assert!(annotation(&mirror, "kubernetes.io/config.seen").is_some());
    assert_ne!(mirror.metadata.uid.as_deref(), Some(hash.as_str()), "the mirror has its own uid");
    let owner = mirror.metadata.owner_references.clone().unwrap_or_default();
    let node: Node = Api::<Node>::all(n.client.clone()).get("n1").await.unwrap();
    assert_eq!(owner.len(), 1, "{owner:?}");
    assert_eq!((owner[0].kind.as_str(), owner[0].name.as_str()), ("Node", "n1"));
    assert_eq!(owner[0].uid, node.metadata.uid.clone().unwrap());
    assert_eq!(owner[0].controller, Some(true));
    assert_eq!(mirror.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("n1"));
    let first_container = container_id(&mirror);

    // Deleting the mirror recreates it; the static pod itself keeps running.
    n.pods().delete("static-web-n1", &DeleteParams::default()).await.unwrap();
    let old_uid = mirror.metadata.uid.clone();
    let again = n
        .until("static-web-n1", "a recreated Running mirror pod", |p| {
            p.metadata.uid != old_uid && p.metadata.deletion_timestamp.is_none() && running(p)
        })
        .await;
    assert_eq!(container_id(&again), first_container, "the static pod was restarted");

    // Removing the manifest stops the pod and deletes its mirror.
    std::fs::remove_file(&manifest).unwrap();
    let gone = eventually(|| async { n.pods().get_opt("static-web-n1").await.ok()?.is_none().then_some(()) }).await;
    assert!(gone.is_some(), "the mirror pod was not deleted:\n{}", n.kubelet_log());
    let stopped = eventually(|| async { (running_tasks(&n.containerd) == 0).then_some(()) }).await;
    assert!(stopped.is_some(), "the static pod's containers still run:\n{}", n.kubelet_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_resource_metrics_report_running_containers() {
    let n = Node1::start().await;
    n.pod("web", json!({})).await;
    n.until("web", "Running", running).await;
    // containerd samples container stats periodically: wait for a non-zero working set.
    let summary = eventually(|| async {
        let v: Value = serde_json::from_str(&n.kubelet_get("/stats/summary")).ok()?;
        let pod = v["pods"].as_array()?.iter().find(|p| p["podRef"]["name"] == "web")?.clone();
        (pod["containers"][0]["memory"]["workingSetBytes"].as_u64()? > 0).then_some(v)
    })
    .await;
    let summary = summary
        .unwrap_or_else(|| panic!("no usage for web in {}\n{}", n.kubelet_get("/stats/summary"), n.kubelet_log()));
    assert_eq!(summary["node"]["nodeName"], "n1");
    assert!(summary["node"]["memory"]["workingSetBytes"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert!(summary["node"]["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert!(summary["node"]["fs"]["capacityBytes"].as_u64().unwrap_or(0) > 0, "{summary}");
    let pod = summary["pods"].as_array().unwrap().iter().find(|p| p["podRef"]["name"] == "web").unwrap();
    assert_eq!(pod["podRef"]["namespace"], "default");
    assert!(!pod["podRef"]["uid"].as_str().unwrap_or_default().is_empty());
    assert_eq!(pod["containers"][0]["name"], "c");
    assert!(pod["containers"][0]["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap_or(0) > 0, "{pod}");
    assert!(pod["memory"]["workingSetBytes"].as_u64().unwrap_or(0) > 0, "{pod}");

    let text = n.kubelet_get("/metrics/resource");
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("container_memory_working_set_bytes{container=\"c\",namespace=\"default\",pod=\"web\"}")
        })
        .unwrap_or_else(|| panic!("no working set for web/c in\n{text}"));
    let value: f64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    assert!(value > 0.0, "{line}");
    for name in [
        "node_cpu_usage_seconds_total ",
        "node_memory_working_set_bytes ",
        "container_cpu_usage_seconds_total{container=\"c\",namespace=\"default\",pod=\"web\"}",
        "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"}",
        "pod_memory_working_set_bytes{namespace=\"default\",pod=\"web\"}",
        "scrape_error 0",
    ] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing from\n{text}");
    }

    let metrics = n.kubelet_get("/metrics");
    assert!(metrics.lines().any(|l| l.starts_with("kubelet_running_pods ") && !l.ends_with(" 0")), "{metrics}");
    assert!(metrics.contains("kubelet_running_containers{container_state=\"running\"}"), "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("kubelet_pod_start_duration_seconds_count 1")), "{metrics}");
    // Every CRI call is counted and timed by its upstream operation type.
    let count = |op: &str| -> u64 {
        let prefix = format!("kubelet_runtime_operations_total{{operation_type=\"{op}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok()).unwrap_or(0)
    };
    assert_eq!(count("run_podsandbox"), 1, "{metrics}");
    assert!(count("create_container") >= 1 && count("start_container") >= 1, "{metrics}");
    assert!(metrics.contains("kubelet_runtime_operations_duration_seconds_bucket{"), "{metrics}");
}

/// A device plugin with two widgets whose Allocate hands out their IDs in an env var.
struct Widgets;

type DeviceStream = Pin<Box<dyn Stream<Item = Result<dp::ListAndWatchResponse, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl dp::device_plugin_server::DevicePlugin for Widgets {
    type ListAndWatchStream = DeviceStream;

    async fn get_device_plugin_options(
        &self,
        _: tonic::Request<dp::Empty>,
    ) -> Result<tonic::Response<dp::DevicePluginOptions>, tonic::Status> {
        Ok(tonic::Response::new(dp::DevicePluginOptions::default()))
    }

    async fn list_and_watch(
        &self,
        _: tonic::Request<dp::Empty>,
    ) -> Result<tonic::Response<Self::ListAndWatchStream>, tonic::Status> {
        let devices = (0..2)
            .map(|i| dp::Device { id: format!("widget-{i}"), health: "Healthy".into(), topology: None })
            .collect();
        // One list, then the stream stays open (devices stay healthy).
        let first = futures::stream::once(async move { Ok(dp::ListAndWatchResponse { devices }) });
        Ok(tonic::Response::new(Box::pin(futures::StreamExt::chain(first, futures::stream::pending()))))
    }

    async fn get_preferred_allocation(
        &self,
        _: tonic::Request<dp::PreferredAllocationRequest>,
    ) -> Result<tonic::Response<dp::PreferredAllocationResponse>, tonic::Status> {
        Ok(tonic::Response::new(dp::PreferredAllocationResponse::default()))
    }

    async fn allocate(
        &self,
        request: tonic::Request<dp::AllocateRequest>,
    ) -> Result<tonic::Response<dp::AllocateResponse>, tonic::Status> {
        let container_responses = request
            .into_inner()
            .container_requests
            .into_iter()
            .map(|r| dp::ContainerAllocateResponse {
                envs: [("WIDGET_DEVICES".to_string(), r.devices_ids.join(","))].into(),
                ..Default::default()
            })
            .collect();
        Ok(tonic::Response::new(dp::AllocateResponse { container_responses }))
    }

    async fn pre_start_container(
        &self,
        _: tonic::Request<dp::PreStartContainerRequest>,
    ) -> Result<tonic::Response<dp::PreStartContainerResponse>, tonic::Status> {
        Ok(tonic::Response::new(dp::PreStartContainerResponse {}))
    }
}

/// Serves the test plugin on `<dir>/widget.sock` and registers it with the kubelet.
async fn run_widget_plugin(dir: &Path) {
    let incoming = kubelet::deviceplugin::listen(&dir.join("widget.sock")).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(dp::device_plugin_server::DevicePluginServer::new(Widgets))
            .serve_with_incoming(incoming),
    );
    let channel = kubelet::deviceplugin::dial(&dir.join("kubelet.sock")).await.unwrap();
    let mut registration = dp::registration_client::RegistrationClient::new(channel);
    registration
        .register(dp::RegisterRequest {
            version: "v1beta1".into(),
            endpoint: "widget.sock".into(),
            resource_name: "example.com/widget".into(),
            options: Some(dp::DevicePluginOptions::default()),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_plugin_devices_are_capacity_allocated_and_reported() {
    let n = Node1::start().await;
    run_widget_plugin(&n.root.path().join("device-plugins")).await;
    let nodes: Api<Node> = Api::all(n.client.clone());
    let advertised = eventually(|| async {
        let status = nodes.get("n1").await.ok()?.status?;
        let cap = status.capacity?.get("example.com/widget")?.0.clone();
        let alloc = status.allocatable?.get("example.com/widget")?.0.clone();
        (cap == "2" && alloc == "2").then_some(())
    })
    .await;
    assert!(advertised.is_some(), "example.com/widget: 2 never appeared in the node's status:\n{}", n.kubelet_log());

    let res = json!({"limits": {"example.com/widget": "1"}, "requests": {"example.com/widget": "1"}});
    n.pod(
        "dev",
        json!({"containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never",
            "command": ["sh", "-c", "echo \"widgets=$WIDGET_DEVICES\"; sleep 3600"], "resources": res}]}),
    )
    .await;
    let pod = n.until("dev", "Running", running).await;
    let uid = pod.metadata.uid.clone().unwrap();
    let log = PathBuf::from("/var/log/pods").join(format!("default_dev_{uid}")).join("c").join("0.log");
    let env = eventually(|| async {
        let text = std::fs::read_to_string(&log).ok()?;
        let at = text.find("widgets=")?;
        Some(text[at + "widgets=".len()..].lines().next()?.trim().to_string())
    })
    .await;
    let device = env.unwrap_or_else(|| panic!("no WIDGET_DEVICES in {}\n{}", log.display(), n.kubelet_log()));
    assert!(device == "widget-0" || device == "widget-1", "{device:?}");

    let channel = kubelet::deviceplugin::dial(&n.root.path().join("pod-resources/kubelet.sock")).await.unwrap();
    let mut lister = pr::pod_resources_lister_client::PodResourcesListerClient::new(channel);
    let list = lister.list(pr::ListPodResourcesRequest {}).await.unwrap().into_inner();
    let dev = list.pod_resources.iter().find(|p| p.name == "dev" && p.namespace == "default").expect("dev listed");
    let c = dev.containers.iter().find(|c| c.name == "c").unwrap();
    assert_eq!(c.devices.len(), 1, "{c:?}");
    assert_eq!(c.devices[0].resource_name, "example.com/widget");
    assert_eq!(c.devices[0].device_ids, vec![device.clone()]);
    let one = lister
        .get(pr::GetPodResourcesRequest { pod_name: "dev".into(), pod_namespace: "default".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.pod_resources.unwrap().containers[0].devices[0].device_ids, vec![device]);
    let allocatable = lister.get_allocatable_resources(pr::AllocatableResourcesRequest {}).await.unwrap().into_inner();
    assert_eq!(allocatable.devices[0].device_ids.len(), 2, "{allocatable:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pods_run_without_the_apiserver() {
    let cp = ControlPlane::start().unwrap();
    let containerd = Containerd::start(ContainerdOptions::default()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let manifests = root.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "alone", "namespace": "kube-system"},
        "spec": {"containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never"}]}});
    std::fs::write(manifests.join("alone.json"), pod.to_string()).unwrap();
    // Nothing listens there: the kubelet never reaches an apiserver.
    let nowhere = format!("https://127.0.0.1:{}", free_port());
    let kubeconfig = cp.apiserver.token_kubeconfig_at("system:node:n1", "node1-token", &nowhere).unwrap();
    let args = [
        "--hostname-override=n1".to_string(),
        format!("--container-runtime-endpoint=unix://{}", containerd.socket().display()),
        format!("--root-dir={}", root.path().display()),
        format!("--port={}", free_port()),
        format!("--healthz-port={}", free_port()),
        "--node-ip=127.0.0.1".to_string(),
        format!("--pod-manifest-path={}", manifests.display()),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let kubelet = cp.apiserver.start_component("kubelet", &kubeconfig, &refs).unwrap();
    // The sandbox and the container run.
    let up = eventually(|| async { (running_tasks(&containerd) >= 2).then_some(()) }).await;
    assert!(up.is_some(), "the static pod did not start without the apiserver:\n{}", tail(&kubelet.log(), 40));
    let out = containerd.ctr(&["-n", "k8s.io", "containers", "ls"]).unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(listing.lines().count() >= 3, "{listing}");
}
