//! kubelet benchmark: real etcd, apiserver and containerd, the release
//! kubelet, and 100 pods (image present) created at once on its node.
//! Prints p50/p99/max from creation to Running as seen by a watch, and the
//! kubelet's RSS. Run through `scripts/bench-kubelet.sh`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use integration::containerd::{Containerd, ContainerdOptions, TEST_IMAGE};
use integration::{free_port, rss_kib, ControlPlane};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

const PODS: usize = 100;

/// User plus system CPU seconds of a process so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// CPU seconds of every process whose command line mentions `needle` (containerd, its shims).
fn cpu_secs_matching(needle: &str) -> f64 {
    let mut total = 0.0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(needle) {
            total += cpu_secs(pid);
        }
    }
    total
}

/// The kinds of resident memory: heap and stacks, mapped files (the binary's text), shared memory.
fn rss_parts(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    format!("anon {} MiB, file {} MiB", kib("RssAnon:") / 1024, kib("RssFile:") / 1024)
}

/// The kubelet's `kubelet_runtime_operations_total` by operation, divided by the pods.
fn cri_calls_per_pod(port: u16) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "5", &format!("https://127.0.0.1:{port}/metrics")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut calls: Vec<(String, f64)> = out
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("kubelet_runtime_operations_total{operation_type=\"")?;
            let (op, value) = rest.split_once("\"} ")?;
            Some((op.to_string(), value.trim().parse::<f64>().ok()? / PODS as f64))
        })
        .collect();
    calls.sort_by(|a, b| b.1.total_cmp(&a.1));
    calls.iter().map(|(op, n)| format!("{op} {n:.1}")).collect::<Vec<_>>().join(", ")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> Result<()> {
    let cp = ControlPlane::start()?;
    // RUSTKUBE_BENCH_OCI_RUNTIME=/usr/bin/crun measures with crun instead of runc.
    let oci_runtime = std::env::var("RUSTKUBE_BENCH_OCI_RUNTIME").unwrap_or_else(|_| "runc".into());
    let containerd = Containerd::start(ContainerdOptions { oci_runtime: oci_runtime.clone(), ..Default::default() })?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&cp.apiserver.kubeconfig)?;
    let client = kube::Client::try_from(kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?)?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "bench"}}))?,
    )
    .await?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    sas.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "default"}}))?).await?;

    let root = tempfile::tempdir()?;
    let kubelet_port = free_port();
    let kc = cp.apiserver.token_kubeconfig("system:node:n1", "node1-token")?;
    let args = [
        "--hostname-override=n1".to_string(),
        format!("--container-runtime-endpoint=unix://{}", containerd.socket().display()),
        format!("--root-dir={}", root.path().display()),
        format!("--port={kubelet_port}"),
        format!("--healthz-port={}", free_port()),
        "--node-ip=127.0.0.1".to_string(),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let kubelet = cp.apiserver.start_component("kubelet", &kc, &refs)?;
    let pid = kubelet.pid().context("kubelet pid")?;
    let nodes: Api<Node> = Api::all(client.clone());
    let start = Instant::now();
    loop {
        let ready = nodes
            .get_opt("n1")
            .await?
            .and_then(|n| n.status?.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the node never became Ready:\n{}", kubelet.log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let idle_rss = rss_kib(pid).unwrap_or(0);

    let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    {
        let running = running.clone();
        let stream = watcher::watcher(pods.clone(), watcher::Config::default()).default_backoff().applied_objects();
        tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Ok(Some(p)) = stream.try_next().await {
                if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                    if let Ok(mut r) = running.lock() {
                        r.entry(p.metadata.name.clone().unwrap_or_default()).or_insert_with(Instant::now);
                    }
                }
            }
        });
    }
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let runtime_dir = containerd.dir().display().to_string();
    let (kubelet_cpu0, runtime_cpu0) = (cpu_secs(pid), cpu_secs_matching(&runtime_dir));
    let begin = Instant::now();
    futures::stream::iter(0..PODS)
        .map(|i| {
            let pods = pods.clone();
            let created = created.clone();
            async move {
                let name = format!("bench-{i:03}");
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "IfNotPresent",
                            "command": ["sleep", "3600"]}]},
                }))?;
                let sent = Instant::now();
                pods.create(&PostParams::default(), &pod).await.context("creating a pod")?;
                created.lock().map(|mut c| c.insert(name, sent)).ok();
                anyhow::Ok(())
            }
        })
        .buffer_unordered(PODS)
        .try_collect::<Vec<_>>()
        .await?;
    let mut peak = rss_kib(pid).unwrap_or(0);
    loop {
        peak = peak.max(rss_kib(pid).unwrap_or(0));
        if running.lock().map(|r| r.len()).unwrap_or(0) >= PODS {
            break;
        }
        if begin.elapsed() > Duration::from_secs(180) {
            bail!("only {} of {PODS} pods Running after 180s", running.lock().map(|r| r.len()).unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_running = begin.elapsed();
    let (kubelet_cpu, runtime_cpu) = (cpu_secs(pid) - kubelet_cpu0, cpu_secs_matching(&runtime_dir) - runtime_cpu0);
    let (running, created) =
        (running.lock().map(|r| r.clone()).unwrap_or_default(), created.lock().map(|c| c.clone()).unwrap_or_default());
    let mut latencies: Vec<Duration> =
        created.iter().filter_map(|(n, c)| running.get(n).map(|r| r.saturating_duration_since(*c))).collect();
    latencies.sort();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let steady = rss_kib(pid).unwrap_or(0);
    println!("{PODS} pods created at once on one node (image present, OCI runtime {oci_runtime})");
    println!(
        "  creation to Running: p50 {:.2}s, p99 {:.2}s, max {:.2}s; all Running after {:.2}s",
        percentile(&latencies, 0.5).as_secs_f64(),
        percentile(&latencies, 0.99).as_secs_f64(),
        latencies.last().copied().unwrap_or_default().as_secs_f64(),
        all_running.as_secs_f64()
    );
    println!(
        "  CPU while starting them: kubelet {kubelet_cpu:.1}s, containerd and its shims {runtime_cpu:.1}s (2 cores)"
    );
    println!(
        "  kubelet RSS: {} MiB idle, {} MiB peak, {} MiB with {PODS} pods running ({})",
        idle_rss / 1024,
        peak / 1024,
        steady / 1024,
        rss_parts(pid)
    );
    println!("  CRI calls per pod: {}", cri_calls_per_pod(kubelet_port));
    // Clean up the pods so containerd's teardown is quick.
    let _ = pods.delete_collection(&DeleteParams::default(), &Default::default()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !pods.list(&Default::default()).await.map(|l| l.items.is_empty()).unwrap_or(true)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(kubelet);
    // The floor: the same number of sandboxes and containers started straight
    // through the CRI on the same containerd and CNI config, with no kubelet.
    let floor = runtime_floor(&containerd).await?;
    let all = floor.last().copied().unwrap_or_default();
    println!(
        "  containerd alone ({PODS} sandboxes + containers through the CRI at once, no kubelet): p50 {:.2}s, p99 {:.2}s; all started after {:.2}s",
        percentile(&floor, 0.5).as_secs_f64(),
        percentile(&floor, 0.99).as_secs_f64(),
        all.as_secs_f64()
    );
    drop(containerd);
    Ok(())
}

/// Starts `PODS` sandboxes with one container each straight through the CRI,
/// all at once; the sorted times from request to a started container. Removes them after.
async fn runtime_floor(containerd: &Containerd) -> Result<Vec<Duration>> {
    use k8s_cri::v1 as cri;
    let channel = containerd.cri_channel().await?;
    let client = cri::runtime_service_client::RuntimeServiceClient::new(channel);
    let logs = tempfile::tempdir()?;
    let results = futures::stream::iter(0..PODS)
        .map(|i| {
            let mut client = client.clone();
            let log_dir = logs.path().join(format!("floor-{i}"));
            async move {
                let start = Instant::now();
                let uid = format!("floor-uid-{i}");
                let sandbox = cri::PodSandboxConfig {
                    metadata: Some(cri::PodSandboxMetadata {
                        name: format!("floor-{i}"),
                        uid: uid.clone(),
                        namespace: "default".into(),
                        attempt: 0,
                    }),
                    hostname: format!("floor-{i}"),
                    log_directory: log_dir.display().to_string(),
                    ..Default::default()
                };
                let id = client
                    .run_pod_sandbox(cri::RunPodSandboxRequest {
                        config: Some(sandbox.clone()),
                        runtime_handler: String::new(),
                    })
                    .await?
                    .into_inner()
                    .pod_sandbox_id;
                let container = cri::ContainerConfig {
                    metadata: Some(cri::ContainerMetadata { name: "c".into(), attempt: 0 }),
                    image: Some(cri::ImageSpec { image: TEST_IMAGE.into(), ..Default::default() }),
                    command: vec!["sleep".into(), "3600".into()],
                    log_path: "c/0.log".into(),
                    ..Default::default()
                };
                let cid = client
                    .create_container(cri::CreateContainerRequest {
                        pod_sandbox_id: id.clone(),
                        config: Some(container),
                        sandbox_config: Some(sandbox),
                    })
                    .await?
                    .into_inner()
                    .container_id;
                client.start_container(cri::StartContainerRequest { container_id: cid }).await?;
                anyhow::Ok((start.elapsed(), id))
            }
        })
        .buffer_unordered(PODS)
        .collect::<Vec<_>>()
        .await;
    let mut times = Vec::new();
    let mut ids = Vec::new();
    for r in results {
        let (t, id) = r?;
        times.push(t);
        ids.push(id);
    }
    times.sort();
    futures::stream::iter(ids)
        .map(|id| {
            let mut client = client.clone();
            async move {
                let _ = client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await;
                let _ = client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id }).await;
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    Ok(times)
}
