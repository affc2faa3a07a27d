//! The running proxy: reflectors on Services, EndpointSlices and its Node,
//! a sync loop (batched by `--min-sync-period`, a full rewrite every
//! `--sync-period`), and plain-HTTP /healthz and /metrics.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

use crate::convert::{Converter, NodeInfo};
use crate::nft::Runner;
use crate::options::{cidr_contains, Options, Settings};
use crate::ruleset::{self, TableConfig};
use crate::syncer::Syncer;

/// Sync metrics (upstream's names where they exist).
pub struct Metrics {
    pub sync_duration: Histogram,
    pub syncs: Family<Vec<(String, String)>, Counter>,
    pub elements: Gauge,
    pub chains: Gauge,
    pub last_sync: Gauge,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            sync_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            syncs: Family::default(),
            elements: Gauge::default(),
            chains: Gauge::default(),
            last_sync: Gauge::default(),
        };
        registry.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "Time to sync the proxy rules",
            m.sync_duration.clone(),
        );
        registry.register("kubeproxy_sync_proxy_rules", "Syncs by kind and result", m.syncs.clone());
        registry.register(
            "kubeproxy_sync_proxy_rules_nftables_elements",
            "Elements in the proxy's maps and sets",
            m.elements.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_nftables_chains",
            "Chains in the proxy's table",
            m.chains.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "Unix time of the last successful sync",
            m.last_sync.clone(),
        );
        m
    }
}

#[derive(Default)]
struct Health {
    last_sync: Option<(Instant, jiff::Timestamp)>,
}

pub async fn run(mut options: Options) -> anyhow::Result<()> {
    let settings = options.settings()?;
    let runner = Runner { netns: options.netns.clone() };
    if options.cleanup {
        runner.apply(&ruleset::cleanup_script(&options.table)).await.context("removing the table")?;
        tracing::info!(table = %options.table, "removed the proxy's table");
        return Ok(());
    }
    let client = options.client.client().await?;
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let registry = Arc::new(registry);
    let health = Arc::new(Mutex::new(Health::default()));
    let changed = Arc::new(Notify::new());

    let (services, w) = reflector::store::<Service>();
    spawn_reflector(Api::<Service>::all(client.clone()), watcher::Config::default(), w, changed.clone());
    let (slices, w) = reflector::store::<EndpointSlice>();
    spawn_reflector(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default(), w, changed.clone());
    let (nodes, w) = reflector::store::<Node>();
    let node_cfg = watcher::Config::default().fields(&format!("metadata.name={}", settings.hostname));
    spawn_reflector(Api::<Node>::all(client.clone()), node_cfg, w, changed.clone());

    for (addr, what) in [(settings.healthz.clone(), "healthz"), (settings.metrics.clone(), "metrics")] {
        let Some(addr) = addr else { continue };
        let listener =
            tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("listening on {addr} ({what})"))?;
        tracing::info!(%addr, what, "serving over HTTP");
        let (registry, health, sync_period) = (registry.clone(), health.clone(), settings.sync_period);
        tokio::spawn(serve_http(listener, registry, health, sync_period));
    }

    let cfg = TableConfig { name: options.table.clone(), cluster_cidrs: settings.cluster_cidrs.clone() };
    let mut syncer = Syncer::new(cfg, runner);
    let mut converter = Converter::default();
    for (store, what) in [
        (services.clone().wait_until_ready().await.is_ok(), "services"),
        (slices.clone().wait_until_ready().await.is_ok(), "endpointslices"),
    ] {
        if !store {
            anyhow::bail!("the {what} cache never became ready");
        }
    }
    tracing::info!(node = %settings.hostname, "caches ready; syncing");
    let mut last_full = Instant::now();
    let mut first = true;
    let shutdown = component_base::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let started = Instant::now();
        let resync = !first && last_full.elapsed() >= settings.sync_period;
        if resync {
            last_full = Instant::now();
        }
        sync_once(&mut syncer, &mut converter, &services, &slices, &nodes, &settings, resync, &metrics, &health).await;
        first = false;
        // Batch changes: at most one sync per --min-sync-period.
        let wait_min = settings.min_sync_period.saturating_sub(started.elapsed());
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(wait_min) => {}
        }
        let until_resync = settings.sync_period.saturating_sub(last_full.elapsed());
        tokio::select! {
            _ = &mut shutdown => break,
            _ = changed.notified() => {}
            _ = tokio::time::sleep(until_resync) => {}
        }
    }
    tracing::info!("shutting down (the rules stay; --cleanup removes them)");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn sync_once(
    syncer: &mut Syncer,
    converter: &mut Converter,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    nodes: &Store<Node>,
    settings: &Settings,
    resync: bool,
    metrics: &Metrics,
    health: &Mutex<Health>,
) {
    let node = node_info(nodes, settings).await;
    // Only the Services whose objects or slices changed are converted again.
    let (svcs, sls) = (services.state(), slices.state());
    let changes = converter.update(svcs.iter().map(|s| s.as_ref()), sls.iter().map(|s| s.as_ref()), &node);
    drop((svcs, sls));
    let hairpin = converter.local_ips();
    match syncer.sync_changes(changes, &hairpin, resync).await {
        Ok(stats) => {
            metrics.sync_duration.observe(stats.duration.as_secs_f64());
            metrics.elements.set(stats.elements as i64);
            metrics.chains.set(stats.chains as i64);
            metrics.last_sync.set(jiff::Timestamp::now().as_second());
            metrics
                .syncs
                .get_or_create(&vec![("kind".into(), stats.kind.as_str().into()), ("result".into(), "success".into())])
                .inc();
            if let Ok(mut h) = health.lock() {
                h.last_sync = Some((Instant::now(), jiff::Timestamp::now()));
            }
            tracing::debug!(kind = stats.kind.as_str(), elapsed = ?stats.duration, elements = stats.elements, "synced");
        }
        Err(e) => {
            metrics.syncs.get_or_create(&vec![("kind".into(), "any".into()), ("result".into(), "error".into())]).inc();
            tracing::error!(error = %e, "syncing the rules");
        }
    }
}

/// The node's name and NodePort addresses: its InternalIPs, or with
/// `--nodeport-addresses` CIDRs, its addresses (and the local interfaces')
/// within them.
async fn node_info(nodes: &Store<Node>, settings: &Settings) -> NodeInfo {
    let mut ips: Vec<Ipv4Addr> = Vec::new();
    let node_addrs: Vec<(String, Ipv4Addr)> = nodes
        .state()
        .iter()
        .flat_map(|n| n.status.as_ref().and_then(|s| s.addresses.clone()).unwrap_or_default())
        .filter_map(|a| Some((a.type_, a.address.parse().ok()?)))
        .collect();
    match &settings.nodeport_cidrs {
        None => ips.extend(node_addrs.iter().filter(|(t, _)| t == "InternalIP").map(|(_, ip)| *ip)),
        Some(cidrs) => {
            let mut candidates: Vec<Ipv4Addr> = node_addrs.iter().map(|(_, ip)| *ip).collect();
            candidates.extend(local_addresses().await);
            ips.extend(candidates.into_iter().filter(|ip| cidrs.iter().any(|c| cidr_contains(c, *ip))));
        }
    }
    ips.sort();
    ips.dedup();
    if ips.iter().any(Ipv4Addr::is_loopback) {
        allow_localhost_nodeports();
    }
    NodeInfo { name: settings.hostname.clone(), nodeport_ips: ips }
}

/// NodePorts on 127.0.0.1 (upstream's opt-in through `--nodeport-addresses`):
/// the kernel routes DNATed loopback traffic out only with `route_localnet`.
fn allow_localhost_nodeports() {
    let path = "/proc/sys/net/ipv4/conf/all/route_localnet";
    if std::fs::read_to_string(path).map(|v| v.trim() == "1").unwrap_or(false) {
        return;
    }
    match std::fs::write(path, "1") {
        Ok(()) => tracing::info!("set net.ipv4.conf.all.route_localnet=1 for NodePorts on 127.0.0.1"),
        Err(e) => tracing::warn!("setting route_localnet for NodePorts on 127.0.0.1: {e}"),
    }
}

/// IPv4 addresses of the local interfaces (`ip -j -4 addr`).
async fn local_addresses() -> Vec<Ipv4Addr> {
    let Ok(out) = tokio::process::Command::new("ip").args(["-j", "-4", "addr", "show"]).output().await else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else { return Vec::new() };
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l.get("addr_info").and_then(|a| a.as_array()).cloned().unwrap_or_default())
        .filter_map(|a| a.get("local")?.as_str()?.parse().ok())
        .collect()
}

fn spawn_reflector<K>(api: Api<K>, cfg: watcher::Config, writer: reflector::store::Writer<K>, changed: Arc<Notify>)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let stream = watcher(api, cfg).default_backoff().reflect(writer);
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                Err(e) => tracing::warn!(error = %e, "watch failed; retrying"),
            }
        }
    });
}

async fn serve_http(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    health: Arc<Mutex<Health>>,
    period: Duration,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (registry, health) = (registry.clone(), health.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (status, ctype, body) = respond(req.uri().path(), &registry, &health, period);
                async move {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", ctype)
                            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                            .unwrap_or_default(),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(path: &str, registry: &Registry, health: &Mutex<Health>, period: Duration) -> (u16, &'static str, String) {
    match path {
        "/healthz" | "/livez" => {
            let last = health.lock().ok().and_then(|h| h.last_sync);
            let now = jiff::Timestamp::now();
            // Healthy once synced, as long as syncs keep coming (upstream: within twice the sync period).
            let (ok, last_updated) = match last {
                Some((at, ts)) => (at.elapsed() <= period * 2 + Duration::from_secs(5), ts.to_string()),
                None => (false, String::new()),
            };
            let body = serde_json::json!({"lastUpdated": last_updated, "currentTime": now.to_string()}).to_string();
            (if ok { 200 } else { 503 }, "application/json", body)
        }
        "/metrics" => {
            let mut out = String::new();
            match prometheus_client::encoding::text::encode(&mut out, registry) {
                Ok(()) => (200, "application/openmetrics-text; version=1.0.0; charset=utf-8", out),
                Err(_) => (500, "text/plain", "encoding metrics failed\n".into()),
            }
        }
        _ => (404, "text/plain", "not found\n".into()),
    }
}
