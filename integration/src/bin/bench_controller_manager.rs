//! kube-controller-manager benchmark: real etcd and apiserver, the real
//! controller-manager binary with every controller on. A Deployment is
//! scaled from 0 to `REPLICAS` (default 3000, or the first argument); prints
//! the time until all its pods exist, pods/s, and the controller-manager's
//! RSS (current and peak).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use integration::ControlPlane;
use serde_json::json;

const DEFAULT_REPLICAS: i64 = 3_000;

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn wait<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    integration::eventually(limit, &mut check).with_context(|| format!("timed out waiting for {what}"))
}

fn main() -> Result<()> {
    let replicas: i64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(DEFAULT_REPLICAS);
    let cp = ControlPlane::start()?;
    let api = &cp.apiserver;
    let mut kcm = Command::new(integration::binary("kube-controller-manager"))
        .arg(format!("--kubeconfig={}", api.kubeconfig.display()))
        .args(["--leader-elect=false", "--secure-port=0"])
        .env("RUST_LOG", std::env::var("COMPONENT_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .spawn()
        .context("starting kube-controller-manager")?;
    let pid = kcm.id();
    let result = run(&cp, replicas, pid);
    let _ = kcm.kill();
    let _ = kcm.wait();
    result
}

fn run(cp: &ControlPlane, replicas: i64, pid: u32) -> Result<()> {
    let api = &cp.apiserver;
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "bench"}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    });
    let (code, body) = api.json("POST", "/apis/apps/v1/namespaces/default/deployments", Some(&deployment));
    if code != 201 {
        bail!("creating the deployment: {code} {body}");
    }
    let rs_path = "/apis/apps/v1/namespaces/default/replicasets?labelSelector=app%3Dbench";
    wait(Duration::from_secs(60), "the ReplicaSet", || {
        let (_, list) = api.json("GET", rs_path, None);
        list["items"].as_array().is_some_and(|a| a.len() == 1).then_some(())
    })?;
    std::thread::sleep(Duration::from_secs(1));
    let (idle_rss, _) = rss_kib(pid);

    let start = Instant::now();
    let (code, body) = api.json(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/bench",
        Some(&json!({"spec": {"replicas": replicas}})),
    );
    if code != 200 {
        bail!("scaling the deployment: {code} {body}");
    }
    let mut peak_rss = 0;
    wait(Duration::from_secs(600), "every pod", || {
        peak_rss = peak_rss.max(rss_kib(pid).0);
        let (_, list) = api.json("GET", rs_path, None);
        let observed = list["items"][0]["status"]["replicas"].as_i64().unwrap_or(0);
        (observed >= replicas).then_some(())
    })?;
    let elapsed = start.elapsed();
    let (_, pods) = api.json("GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Dbench", None);
    let count = pods["items"].as_array().map(|a| a.len()).unwrap_or(0);
    let (rss, hwm) = rss_kib(pid);
    println!("kube-controller-manager: Deployment scaled 0 -> {replicas}");
    println!("  pods existing:     {count}");
    println!("  time:              {:.2}s", elapsed.as_secs_f64());
    println!("  throughput:        {:.0} pods/s", count as f64 / elapsed.as_secs_f64());
    println!("  RSS idle:          {} MiB", idle_rss / 1024);
    println!(
        "  RSS after:         {} MiB (peak sampled {} MiB, high-water {} MiB)",
        rss / 1024,
        peak_rss / 1024,
        hwm / 1024
    );
    if count as i64 != replicas {
        bail!("expected {replicas} pods, found {count}");
    }
    Ok(())
}
