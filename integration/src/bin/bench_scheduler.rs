//! kube-scheduler benchmark: real etcd, the real (release) apiserver and
//! scheduler, 1,000 Node objects (no kubelet) and 10,000 pods created as fast
//! as the apiserver takes them by 50 concurrent clients.
//!
//! Prints pods created per second, pods bound per second (first creation to
//! last binding), p50/p99/max time from a pod's creation to its binding as
//! seen by a watch, and the scheduler's RSS. Run through
//! `scripts/bench-scheduler.sh`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use integration::{rss_kib, ApiServer, Etcd};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

const NODES: usize = 1_000;
const PODS: usize = 10_000;
const CLIENTS: usize = 50;

fn node(i: usize) -> Result<Node> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": format!("node-{i:04}"), "labels": {
            "kubernetes.io/hostname": format!("node-{i:04}"),
            "topology.kubernetes.io/zone": format!("zone-{}", i % 10),
        }},
        "status": {
            "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }))?)
}

fn pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    }))?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> Result<()> {
    let etcd = Etcd::start()?;
    let apiserver = ApiServer::start(&etcd)?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&apiserver.kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;

    let nodes: Api<Node> = Api::all(client.clone());
    let started = Instant::now();
    futures::stream::iter(0..NODES)
        .map(|i| {
            let nodes = nodes.clone();
            async move { nodes.create(&PostParams::default(), &node(i)?).await.context("creating a node") }
        })
        .buffer_unordered(CLIENTS)
        .try_collect::<Vec<_>>()
        .await?;
    println!("{NODES} nodes created in {:.1}s", started.elapsed().as_secs_f64());

    let sched_kubeconfig = apiserver.token_kubeconfig("system:kube-scheduler", "scheduler-token")?;
    let scheduler = apiserver.start_component("kube-scheduler", &sched_kubeconfig, &["--secure-port=0"])?;
    let pid = scheduler.pid().context("scheduler pid")?;

    // Watch bindings: pod name → when its nodeName was first seen.
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    {
        let bound = bound.clone();
        let stream = watcher::watcher(pods.clone(), watcher::Config::default()).default_backoff().applied_objects();
        tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Ok(Some(p)) = stream.try_next().await {
                if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    bound.lock().map(|mut b| b.entry(name).or_insert_with(Instant::now).to_owned()).ok();
                }
            }
        });
    }
    // Warm up: the scheduler is leading and synced once a first pod is bound.
    pods.create(&PostParams::default(), &pod("warmup")?).await?;
    let warm = Instant::now();
    while !bound.lock().map(|b| b.contains_key("warmup")).unwrap_or(false) {
        if warm.elapsed() > Duration::from_secs(60) {
            bail!("the scheduler did not bind a first pod within 60s:\n{}", scheduler.log());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let idle_rss = rss_kib(pid).unwrap_or(0);

    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let start = Instant::now();
    futures::stream::iter(0..PODS)
        .map(|i| {
            let pods = pods.clone();
            let created = created.clone();
            async move {
                let name = format!("pod-{i:05}");
                pods.create(&PostParams::default(), &pod(&name)?).await.context("creating a pod")?;
                created.lock().map(|mut c| c.insert(name, Instant::now())).ok();
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CLIENTS)
        .try_collect::<Vec<_>>()
        .await?;
    let create_secs = start.elapsed().as_secs_f64();
    let mut peak_rss = rss_kib(pid).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        peak_rss = peak_rss.max(rss_kib(pid).unwrap_or(0));
        let n = bound.lock().map(|b| b.len()).unwrap_or(0);
        if n > PODS {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {} of {PODS} pods bound within 300s", n.saturating_sub(1));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (bound, created) =
        (bound.lock().map(|b| b.clone()).unwrap_or_default(), created.lock().map(|c| c.clone()).unwrap_or_default());
    let mut latencies: Vec<Duration> =
        created.iter().filter_map(|(name, c)| bound.get(name).map(|b| b.saturating_duration_since(*c))).collect();
    latencies.sort();
    let last_bind = created.keys().filter_map(|n| bound.get(n)).max().copied().unwrap_or(start);
    let bind_secs = last_bind.duration_since(start).as_secs_f64();
    println!("{PODS} pods onto {NODES} nodes, {CLIENTS} concurrent creators");
    println!("  created: {:.0} pods/s ({create_secs:.1}s)", PODS as f64 / create_secs);
    println!("  scheduled: {:.0} pods/s (first creation to last binding {bind_secs:.1}s)", PODS as f64 / bind_secs);
    println!(
        "  creation to binding: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    println!(
        "  scheduler RSS: {} MiB idle with {NODES} nodes, {} MiB peak, {} MiB after",
        idle_rss / 1024,
        peak_rss / 1024,
        rss_kib(pid).unwrap_or(0) / 1024
    );
    drop(scheduler);
    drop(apiserver);
    drop(etcd);
    Ok(())
}
