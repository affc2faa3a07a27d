//! Streaming benchmark: real etcd, apiserver, kubelet and containerd, stock
//! kubectl 1.33. Prints the throughput of `kubectl cp` of 100 MiB in and
//! out, of a 100 MiB HTTP download through `kubectl port-forward`, and the
//! latency of `kubectl exec -- true` against the same command run directly
//! through the CRI (ExecSync). Run through `scripts/bench-streaming.sh`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use integration::containerd::{Containerd, ContainerdOptions, TEST_IMAGE};
use integration::{free_port, kubectl_path, ControlPlane};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::json;

const MIB: usize = 100;
const EXECS: usize = 20;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn rate(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64().max(1e-9)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cp = ControlPlane::start()?;
    let containerd = Containerd::start(ContainerdOptions::default())?;
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
    let kc = cp.apiserver.token_kubeconfig("system:node:n1", "node1-token")?;
    let args = [
        "--hostname-override=n1".to_string(),
        format!("--container-runtime-endpoint=unix://{}", containerd.socket().display()),
        format!("--root-dir={}", root.path().display()),
        format!("--port={}", free_port()),
        format!("--healthz-port={}", free_port()),
        "--node-ip=127.0.0.1".to_string(),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let kubelet = cp.apiserver.start_component("kubelet", &kc, &refs)?;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = json!({"metadata": {"name": "bench"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never"}]}});
    let start = Instant::now();
    loop {
        let ready = nodes.get_opt("n1").await.ok().flatten().is_some();
        if ready && pods.get_opt("bench").await?.is_none() {
            pods.create(&PostParams::default(), &serde_json::from_value(pod.clone())?).await?;
        }
        let running = pods.get_opt("bench").await.ok().flatten().and_then(|p| p.status?.phase);
        if running.as_deref() == Some("Running") {
            break;
        }
        if start.elapsed() > Duration::from_secs(90) {
            bail!("the pod did not start:\n{}", kubelet.log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kubectl = |args: &[&str]| -> Result<std::process::Output> {
        let o = Command::new(kubectl_path("1.33"))
            .arg(format!("--kubeconfig={}", cp.apiserver.kubeconfig.display()))
            .args(args)
            .env("HOME", cp.apiserver.dir.path())
            .stdin(Stdio::null())
            .output()?;
        if !o.status.success() {
            bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(o)
    };
    println!("streaming benchmark (kubectl 1.33, apiserver → kubelet → containerd on one host)");

    // kubectl cp of 100 MiB in and out.
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("big.bin");
    let data: Vec<u8> =
        (0..MIB * 1024 * 1024).map(|i| (i as u32).wrapping_mul(2654435761).rotate_left(7) as u8).collect();
    std::fs::write(&src, &data)?;
    let t = Instant::now();
    kubectl(&["cp", &src.display().to_string(), "bench:/www/big.bin"])?;
    let cp_in = t.elapsed();
    let back = dir.path().join("back.bin");
    let t = Instant::now();
    kubectl(&["cp", "bench:/www/big.bin", &back.display().to_string()])?;
    let cp_out = t.elapsed();
    if std::fs::read(&back)? != data {
        bail!("kubectl cp: the copy differs");
    }
    println!("  kubectl cp {MIB} MiB in:  {:.2}s, {:.1} MiB/s", cp_in.as_secs_f64(), rate(data.len(), cp_in));
    println!("  kubectl cp {MIB} MiB out: {:.2}s, {:.1} MiB/s", cp_out.as_secs_f64(), rate(data.len(), cp_out));

    // The same file over HTTP through port-forward (busybox httpd serves /www).
    let port = free_port();
    let mut pf = Command::new(kubectl_path("1.33"))
        .arg(format!("--kubeconfig={}", cp.apiserver.kubeconfig.display()))
        .args(["port-forward", "pod/bench", &format!("{port}:80")])
        .env("HOME", cp.apiserver.dir.path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("port-forward.log"))?)
        .spawn()?;
    let mut lines = BufReader::new(pf.stdout.take().context("port-forward stdout")?).lines();
    if !lines.next().and_then(|l| l.ok()).is_some_and(|l| l.contains("Forwarding from")) {
        bail!("port-forward did not start");
    }
    // kubectl writes a line per connection: its stdout must stay open (or SIGPIPE ends it).
    std::thread::spawn(move || lines.for_each(drop));
    let url = format!("http://127.0.0.1:{port}/big.bin");
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let o = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", &url])
            .output()?;
        let report = String::from_utf8_lossy(&o.stdout).into_owned();
        let size: usize = report.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        if size != data.len() {
            let log = std::fs::read_to_string(dir.path().join("port-forward.log")).unwrap_or_default();
            bail!(
                "port-forward download: {report} {}\nkubectl port-forward: {log}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        runs.push(t.elapsed());
    }
    let _ = pf.kill();
    let _ = pf.wait();
    runs.sort();
    let rates: Vec<String> = runs.iter().map(|d| format!("{:.0}", rate(data.len(), *d))).collect();
    println!(
        "  port-forward HTTP download {MIB} MiB: median {:.2}s, {:.1} MiB/s (5 runs, MiB/s fastest first: {})",
        runs[2].as_secs_f64(),
        rate(data.len(), runs[2]),
        rates.join(", ")
    );

    // exec latency: kubectl exec through everything vs. ExecSync straight to the runtime.
    let mut via_kubectl = Vec::new();
    for _ in 0..EXECS {
        let t = Instant::now();
        kubectl(&["exec", "bench", "--", "true"])?;
        via_kubectl.push(t.elapsed());
    }
    let channel = containerd.cri_channel().await?;
    let mut rt = k8s_cri::v1::runtime_service_client::RuntimeServiceClient::new(channel);
    let filter = k8s_cri::v1::ContainerFilter {
        label_selector: [("io.kubernetes.pod.name".to_string(), "bench".to_string())].into(),
        ..Default::default()
    };
    let containers =
        rt.list_containers(k8s_cri::v1::ListContainersRequest { filter: Some(filter) }).await?.into_inner().containers;
    let id = containers.first().context("the bench container")?.id.clone();
    let mut direct = Vec::new();
    for _ in 0..EXECS {
        let t = Instant::now();
        let req = k8s_cri::v1::ExecSyncRequest { container_id: id.clone(), cmd: vec!["true".into()], timeout: 10 };
        rt.exec_sync(req).await?;
        direct.push(t.elapsed());
    }
    let (k, d) = (median(via_kubectl), median(direct));
    println!(
        "  exec `true` (median of {EXECS}): kubectl {:.1} ms, CRI ExecSync {:.1} ms, added {:.1} ms",
        k.as_secs_f64() * 1000.0,
        d.as_secs_f64() * 1000.0,
        (k.saturating_sub(d)).as_secs_f64() * 1000.0
    );
    // A baseline for the kubectl process itself: a GET of the pod.
    let t = Instant::now();
    for _ in 0..EXECS {
        kubectl(&["get", "pod", "bench", "-o", "name"])?;
    }
    println!("  (kubectl get pod, for scale: {:.1} ms each)", t.elapsed().as_secs_f64() * 1000.0 / EXECS as f64);
    drop(kubelet);
    Ok(())
}
