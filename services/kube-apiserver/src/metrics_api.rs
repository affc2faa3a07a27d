//! The resource metrics API (`metrics.k8s.io/v1beta1`), served in-process
//! with metrics-server's shape so `kubectl top` and the HorizontalPodAutoscaler
//! work unchanged: `NodeMetrics` (`nodes`, cluster-scoped) and `PodMetrics`
//! (`pods`, namespaced), verbs get and list.
//!
//! As metrics-server does, a scrape loop reads every Ready node's kubelet
//! `/metrics/resource` (Prometheus text) once per resolution (15 s; the
//! `RUSTKUBE_METRIC_RESOLUTION` environment variable, a Go duration, changes
//! it) and keeps the last two points of every node and container: CPU is the
//! rate between them (cumulative core-seconds over the kubelet's sample
//! timestamps), memory the last working set. Something with a single point
//! has no metrics yet (404 for a get, left out of a list). The loop starts
//! with the first request to this API, so a server nobody asks costs nothing.
//!
//! Kubelets are reached as for logs and exec: the node's preferred address and
//! `daemonEndpoints.kubeletEndpoint.Port`, with `--kubelet-client-certificate`
//! and `--kubelet-certificate-authority`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use apimachinery::selector::{field::FieldSelector, label::LabelSelector};
use apimachinery::status::{ApiError, Qualified};
use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};

use crate::endpoints::negotiation::{self, Output};
use crate::endpoints::request::RequestInfo;
use crate::endpoints::streaming::KubeletClient;
use crate::endpoints::{error_response, value_response, ApiServer, Body};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";
/// metrics-server's `--metric-resolution` default.
const DEFAULT_RESOLUTION: Duration = Duration::from_secs(15);
/// A container started at least this long ago (and less than a resolution) counts from its
/// start with zero CPU, as metrics-server does, so a new pod has metrics after one scrape.
const FRESH_CONTAINER_MIN: Duration = Duration::from_secs(10);
/// The largest `/metrics/resource` body read.
const MAX_BODY: usize = 16 << 20;
/// At most this many kubelets are scraped at once.
const CONCURRENT_SCRAPES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum MetricsApiError {
    #[error("RUSTKUBE_METRIC_RESOLUTION: {0}")]
    Resolution(#[from] apimachinery::duration::DurationError),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("line {line}: {what}")]
    Syntax { line: usize, what: &'static str },
}

#[derive(Debug, thiserror::Error)]
enum ScrapeError {
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("timed out")]
    Timeout,
    #[error("kubelet answered {0}")]
    Status(u16),
    #[error("reading the body: {0}")]
    Body(String),
    #[error("the body exceeds {MAX_BODY} bytes")]
    TooLarge,
    #[error("parsing: {0}")]
    Parse(#[from] ParseError),
}

// === Prometheus text ===

/// One sample: metric name, labels, value, timestamp (ms since the epoch) if given.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// Parses the Prometheus text exposition format (0.0.4): comments and blank lines skipped.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line_no = i + 1;
        let err = |what| ParseError::Syntax { line: line_no, what };
        let name_end = line.find(|c: char| c == '{' || c.is_whitespace()).ok_or_else(|| err("no value"))?;
        let name = &line[..name_end];
        if name.is_empty() {
            return Err(err("no metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            let end;
            loop {
                while chars.peek().is_some_and(|(_, c)| c.is_whitespace() || *c == ',') {
                    chars.next();
                }
                match chars.peek() {
                    Some((j, '}')) => {
                        end = *j + 1;
                        break;
                    }
                    None => return Err(err("unterminated labels")),
                    _ => {}
                }
                let mut key = String::new();
                loop {
                    match chars.next() {
                        Some((_, '=')) => break,
                        Some((_, c)) if c.is_alphanumeric() || c == '_' => key.push(c),
                        Some((_, c)) if c.is_whitespace() => {}
                        _ => return Err(err("bad label name")),
                    }
                }
                while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(err("label value not quoted"));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c)) => value.push(c),
                            None => return Err(err("unterminated label value")),
                        },
                        Some((_, c)) => value.push(c),
                        None => return Err(err("unterminated label value")),
                    }
                }
                labels.insert(key, value);
            }
            rest = &after[end..];
        }
        let mut fields = rest.split_whitespace();
        let value = match fields.next().ok_or_else(|| err("no value"))? {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse::<f64>().map_err(|_| err("bad value"))?,
        };
        let timestamp_ms = match fields.next() {
            Some(t) => Some(t.parse::<i64>().map_err(|_| err("bad timestamp"))?),
            None => None,
        };
        out.push(Sample { name: name.to_string(), labels, value, timestamp_ms });
    }
    Ok(out)
}

// === points and rates ===

/// One measurement of a node or container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Point {
    /// When it was measured (ms since the epoch).
    pub timestamp_ms: i64,
    /// When the container started (ms), if known.
    pub start_ms: Option<i64>,
    /// Cumulative CPU in nanocore-seconds.
    pub cpu_nanos: u64,
    /// Working set in bytes.
    pub memory_bytes: u64,
}

/// What one kubelet scrape gives.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub nodes: HashMap<String, Point>,
    /// (namespace, pod) → container → point.
    pub pods: HashMap<(String, String), BTreeMap<String, Point>>,
}

fn nanos(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        (seconds * 1e9).round() as u64
    } else {
        0
    }
}

fn bytes_of(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v as u64
    } else {
        0
    }
}

/// Turns a kubelet's `/metrics/resource` samples into points; `now_ms` stands in for a
/// missing timestamp. Containers need both CPU and memory; the node too.
pub fn decode(node: &str, samples: &[Sample], now_ms: i64) -> Batch {
    #[derive(Default)]
    struct Partial {
        cpu: Option<(u64, i64)>,
        memory: Option<u64>,
        start_ms: Option<i64>,
    }
    let mut node_point = Partial::default();
    let mut containers: HashMap<(String, String, String), Partial> = HashMap::new();
    for s in samples {
        let ts = s.timestamp_ms.unwrap_or(now_ms);
        let container_key = || -> Option<(String, String, String)> {
            Some((s.labels.get("namespace")?.clone(), s.labels.get("pod")?.clone(), s.labels.get("container")?.clone()))
        };
        match s.name.as_str() {
            "node_cpu_usage_seconds_total" => node_point.cpu = Some((nanos(s.value), ts)),
            "node_memory_working_set_bytes" => node_point.memory = Some(bytes_of(s.value)),
            "container_cpu_usage_seconds_total" => {
                if let Some(k) = container_key() {
                    containers.entry(k).or_default().cpu = Some((nanos(s.value), ts));
                }
            }
            "container_memory_working_set_bytes" => {
                if let Some(k) = container_key() {
                    containers.entry(k).or_default().memory = Some(bytes_of(s.value));
                }
            }
            "container_start_time_seconds" => {
                if let Some(k) = container_key() {
                    if s.value.is_finite() && s.value > 0.0 {
                        containers.entry(k).or_default().start_ms = Some((s.value * 1000.0).round() as i64);
                    }
                }
            }
            _ => {}
        }
    }
    let mut batch = Batch::default();
    if let (Some((cpu, ts)), Some(memory)) = (node_point.cpu, node_point.memory) {
        batch
            .nodes
            .insert(node.to_string(), Point { timestamp_ms: ts, start_ms: None, cpu_nanos: cpu, memory_bytes: memory });
    }
    for ((ns, pod, container), p) in containers {
        if let (Some((cpu, ts)), Some(memory)) = (p.cpu, p.memory) {
            batch.pods.entry((ns, pod)).or_default().insert(
                container,
                Point { timestamp_ms: ts, start_ms: p.start_ms, cpu_nanos: cpu, memory_bytes: memory },
            );
        }
    }
    batch
}

/// Usage between two points of the same node or container: (nanocores, bytes, timestamp ms,
/// window ms); `None` when the points cannot give a rate (no time between them, a restart).
pub fn usage(last: &Point, prev: &Point) -> Option<(u64, u64, i64, i64)> {
    let window = last.timestamp_ms - prev.timestamp_ms;
    if window <= 0 || last.cpu_nanos < prev.cpu_nanos {
        return None;
    }
    if let (Some(l), Some(p)) = (last.start_ms, prev.start_ms) {
        if l < p {
            return None;
        }
    }
    let rate = (last.cpu_nanos - prev.cpu_nanos) as f64 * 1000.0 / window as f64;
    Some((rate as u64, last.memory_bytes, last.timestamp_ms, window))
}

/// The last two points of everything, as metrics-server's storage keeps them.
#[derive(Debug, Default)]
pub struct Storage {
    last_nodes: HashMap<String, Point>,
    prev_nodes: HashMap<String, Point>,
    last_pods: HashMap<(String, String), BTreeMap<String, Point>>,
    prev_pods: HashMap<(String, String), BTreeMap<String, Point>>,
}

/// A node's or pod's usage, ready to serve.
#[derive(Clone, Debug, PartialEq)]
pub struct Usage {
    pub timestamp_ms: i64,
    pub window_ms: i64,
    /// (container name, nanocores, bytes); one unnamed entry for a node.
    pub containers: Vec<(String, u64, u64)>,
}

impl Storage {
    /// Replaces the stored points with `batch`, keeping as previous point what can still give a
    /// rate with the new one (metrics-server's `Store`).
    pub fn store(&mut self, batch: Batch, resolution: Duration) {
        let mut prev_nodes = HashMap::new();
        for (name, new) in &batch.nodes {
            if let Some(last) = self.last_nodes.get(name) {
                if new.timestamp_ms > last.timestamp_ms {
                    prev_nodes.insert(name.clone(), *last);
                } else if let Some(prev) = self.prev_nodes.get(name).filter(|p| p.timestamp_ms < new.timestamp_ms) {
                    prev_nodes.insert(name.clone(), *prev);
                }
            }
        }
        let resolution_ms = resolution.as_millis() as i64;
        let fresh_ms = FRESH_CONTAINER_MIN.as_millis() as i64;
        let mut prev_pods = HashMap::new();
        for (pod, containers) in &batch.pods {
            let mut prev_containers = BTreeMap::new();
            for (name, new) in containers {
                let since_start = new.start_ms.map(|s| new.timestamp_ms - s);
                if since_start.is_some_and(|d| d > 0 && d < resolution_ms && d >= fresh_ms) {
                    let start = new.start_ms.unwrap_or(new.timestamp_ms);
                    prev_containers.insert(name.clone(), Point { timestamp_ms: start, cpu_nanos: 0, ..*new });
                    continue;
                }
                let Some(last) = self.last_pods.get(pod).and_then(|c| c.get(name)) else { continue };
                // A container that started after the stored point is a new one.
                if new.start_ms.is_some_and(|s| s >= last.timestamp_ms) {
                    continue;
                }
                if new.timestamp_ms > last.timestamp_ms {
                    prev_containers.insert(name.clone(), *last);
                } else if let Some(prev) =
                    self.prev_pods.get(pod).and_then(|c| c.get(name)).filter(|p| p.timestamp_ms < new.timestamp_ms)
                {
                    prev_containers.insert(name.clone(), *prev);
                }
            }
            if !prev_containers.is_empty() {
                prev_pods.insert(pod.clone(), prev_containers);
            }
        }
        self.last_nodes = batch.nodes;
        self.prev_nodes = prev_nodes;
        self.last_pods = batch.pods;
        self.prev_pods = prev_pods;
    }

    pub fn node(&self, name: &str) -> Option<Usage> {
        let (cpu, memory, ts, window) = usage(self.last_nodes.get(name)?, self.prev_nodes.get(name)?)?;
        Some(Usage { timestamp_ms: ts, window_ms: window, containers: vec![(String::new(), cpu, memory)] })
    }

    /// A pod's usage when every container it reported has two points (the window of the
    /// earliest measurement, as metrics-server).
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Usage> {
        let key = (namespace.to_string(), name.to_string());
        let last = self.last_pods.get(&key)?;
        let prev = self.prev_pods.get(&key)?;
        let mut out = Usage { timestamp_ms: 0, window_ms: 0, containers: Vec::new() };
        for (container, l) in last {
            let p = prev.get(container)?;
            let Some((cpu, memory, ts, window)) = usage(l, p) else { continue };
            out.containers.push((container.clone(), cpu, memory));
            if out.timestamp_ms == 0 || ts < out.timestamp_ms {
                out.timestamp_ms = ts;
                out.window_ms = window;
            }
        }
        Some(out)
    }
}

// === quantities and durations as Go prints them ===

const DECIMAL_SUFFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];

/// An integer scaled by 10^`exp3`·3 in canonical DecimalSI form (`exp3` from -3, nano, up).
fn decimal_canonical(mut value: u64, mut exp3: i32) -> String {
    if value == 0 {
        return "0".into();
    }
    while value.is_multiple_of(1000) && exp3 < 6 {
        value /= 1000;
        exp3 += 1;
    }
    let suffix = match exp3 {
        -3 => "n",
        -2 => "u",
        -1 => "m",
        e => DECIMAL_SUFFIXES[e as usize],
    };
    format!("{value}{suffix}")
}

/// CPU in nanocores as metrics-server prints it (`123456789n`, `250m`, `2`).
pub fn format_cpu(nanocores: u64) -> String {
    decimal_canonical(nanocores, -3)
}

/// Bytes as a BinarySI quantity (`4567Ki`, `1536`; below 1024 in decimal form, as Go does).
pub fn format_memory(bytes: u64) -> String {
    if bytes < 1024 {
        return decimal_canonical(bytes, 0);
    }
    let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let (mut v, mut i) = (bytes, 0);
    while v.is_multiple_of(1024) && i < suffixes.len() - 1 {
        v /= 1024;
        i += 1;
    }
    format!("{v}{}", suffixes[i])
}

/// Go's `time.Duration.String` for a millisecond duration (`15s`, `15.004s`, `1m0.5s`, `900ms`).
pub fn format_window(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, (ms / 60_000) % 60, (ms / 1000) % 60, ms % 1000);
    let mut secs = s.to_string();
    if frac != 0 {
        let f = format!("{frac:03}");
        secs.push('.');
        secs.push_str(f.trim_end_matches('0'));
    }
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, _) => format!("{m}m{secs}s"),
        _ => format!("{h}h{m}m{secs}s"),
    }
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_second(ms.div_euclid(1000))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

// === the scrape loop ===

/// The metrics API's state: the stored points and the scrape interval. Kubelets
/// are reached through the server's [`crate::endpoints::streaming::KubeletClient`].
pub struct MetricsApi {
    resolution: Duration,
    storage: Mutex<Storage>,
    started: AtomicBool,
}

impl MetricsApi {
    /// The resolution from `RUSTKUBE_METRIC_RESOLUTION` (default 15s).
    pub fn new() -> Result<MetricsApi, MetricsApiError> {
        let resolution = match std::env::var("RUSTKUBE_METRIC_RESOLUTION") {
            Ok(v) if !v.is_empty() => apimachinery::duration::parse(&v)?.max(Duration::from_millis(500)),
            _ => DEFAULT_RESOLUTION,
        };
        Ok(MetricsApi { resolution, storage: Mutex::new(Storage::default()), started: AtomicBool::new(false) })
    }

    /// Starts the scrape loop once; it ends with the server.
    fn ensure_started(server: &Arc<ApiServer>) {
        if server.resource_metrics.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(server);
        tracing::info!(resolution = ?server.resource_metrics.resolution, "resource metrics: scraping kubelets");
        tokio::spawn(scrape_loop(weak));
    }
}

async fn scrape_loop(server: Weak<ApiServer>) {
    loop {
        let Some(s) = server.upgrade() else { return };
        let resolution = s.resource_metrics.resolution;
        let started = tokio::time::Instant::now();
        let batch = scrape_all(&s).await;
        s.resource_metrics.storage.lock().unwrap_or_else(|e| e.into_inner()).store(batch, resolution);
        drop(s);
        tokio::time::sleep_until(started + resolution).await;
    }
}

fn is_ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn objects(server: &ApiServer, plural: &str, namespace: Option<&str>) -> Vec<Value> {
    let Some(d) = server.resources.lookup("", "v1", plural) else { return Vec::new() };
    let prefix = d.key_prefix(&server.store.root, namespace);
    server.store.cache(d).snapshot(&prefix).0.iter().map(|o| o.value()).collect()
}

fn object(server: &ApiServer, plural: &str, namespace: &str, name: &str) -> Option<Value> {
    let d = server.resources.lookup("", "v1", plural)?;
    Some(server.store.cache(d).get(&d.key(&server.store.root, namespace, name))?.value())
}

async fn scrape_all(server: &ApiServer) -> Batch {
    let api = &server.resource_metrics;
    let timeout = api.resolution.mul_f64(0.9).max(Duration::from_secs(1)).min(Duration::from_secs(10));
    let targets: Vec<(String, (String, u16))> = objects(server, "nodes", None)
        .iter()
        .filter(|n| is_ready(n))
        .filter_map(|n| {
            let name = n["metadata"]["name"].as_str()?.to_string();
            let addr = server.kubelet.address(n);
            if addr.is_none() {
                tracing::debug!(node = %name, "resource metrics: no preferred address");
            }
            Some((name, addr?))
        })
        .collect();
    let scrapes = targets.into_iter().map(|(name, addr)| async move {
        let r = tokio::time::timeout(timeout, scrape_node(&server.kubelet, &addr)).await;
        (name, r.unwrap_or(Err(ScrapeError::Timeout)))
    });
    let mut batch = Batch::default();
    let results: Vec<_> = futures::stream::iter(scrapes).buffer_unordered(CONCURRENT_SCRAPES).collect().await;
    for (name, result) in results {
        match result {
            Ok(text) => match parse_prometheus(&text) {
                Ok(samples) => {
                    let b = decode(&name, &samples, jiff::Timestamp::now().as_millisecond());
                    batch.nodes.extend(b.nodes);
                    batch.pods.extend(b.pods);
                }
                Err(e) => tracing::warn!(node = %name, error = %ScrapeError::from(e), "resource metrics scrape"),
            },
            Err(e) => tracing::warn!(node = %name, error = %e, "resource metrics scrape"),
        }
    }
    batch
}

async fn scrape_node(kubelet: &KubeletClient, addr: &(String, u16)) -> Result<String, ScrapeError> {
    let target = format!("{}:{}", addr.0, addr.1);
    let host = if addr.0.contains(':') { format!("[{}]:{}", addr.0, addr.1) } else { target.clone() };
    let req = Request::get("/metrics/resource")
        .header(http::header::HOST, host)
        .header(http::header::ACCEPT, "text/plain;version=0.0.4")
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| ScrapeError::Connect(target.clone(), e.to_string()))?;
    let resp = kubelet.send(addr, req).await.map_err(|e| ScrapeError::Connect(target.clone(), e.message))?;
    if resp.status() != StatusCode::OK {
        return Err(ScrapeError::Status(resp.status().as_u16()));
    }
    let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ScrapeError::TooLarge
            } else {
                ScrapeError::Body(e.to_string())
            }
        })?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

// === serving ===

/// Whether `info` addresses this API.
pub fn serves(info: &RequestInfo) -> bool {
    info.group == GROUP
}

fn not_found_path() -> ApiError {
    ApiError::new(404, "NotFound", "the server could not find the requested resource")
}

fn metadata(obj: &Value, namespaced: bool, now: &str) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), obj["metadata"]["name"].clone());
    if namespaced {
        m.insert("namespace".into(), obj["metadata"]["namespace"].clone());
    }
    m.insert("creationTimestamp".into(), json!(now));
    if let Some(labels) = obj["metadata"]["labels"].as_object().filter(|l| !l.is_empty()) {
        m.insert("labels".into(), Value::Object(labels.clone()));
    }
    Value::Object(m)
}

fn usage_json(cpu: u64, memory: u64) -> Value {
    json!({"cpu": format_cpu(cpu), "memory": format_memory(memory)})
}

fn pod_metrics(pod: &Value, u: &Usage, now: &str) -> Value {
    let containers: Vec<Value> =
        u.containers.iter().map(|(name, cpu, mem)| json!({"name": name, "usage": usage_json(*cpu, *mem)})).collect();
    json!({
        "metadata": metadata(pod, true, now),
        "timestamp": rfc3339(u.timestamp_ms),
        "window": format_window(u.window_ms),
        "containers": containers,
    })
}

fn node_metrics(node: &Value, u: &Usage, now: &str) -> Value {
    let (cpu, mem) = u.containers.first().map(|(_, c, m)| (*c, *m)).unwrap_or_default();
    json!({
        "metadata": metadata(node, false, now),
        "timestamp": rfc3339(u.timestamp_ms),
        "window": format_window(u.window_ms),
        "usage": usage_json(cpu, mem),
    })
}

/// metrics-server's Table: Name, the usage names in order (summed over containers), Window.
/// `items` are (object, nanocores, bytes).
fn table(items: &[(Value, u64, u64)], include: &str) -> Value {
    let columns = json!([
        {"name": "Name", "type": "string", "format": "name", "description": "Name of the resource", "priority": 0},
        {"name": "cpu", "type": "string", "format": "quantity", "description": "", "priority": 0},
        {"name": "memory", "type": "string", "format": "quantity", "description": "", "priority": 0},
        {"name": "Window", "type": "string", "format": "duration", "description": "", "priority": 0},
    ]);
    let rows: Vec<Value> = items
        .iter()
        .map(|(item, cpu, mem)| {
            let mut row =
                json!({"cells": [item["metadata"]["name"], format_cpu(*cpu), format_memory(*mem), item["window"]]});
            match include {
                "None" => {}
                "Object" => row["object"] = item.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": item["metadata"],
                    })
                }
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": columns, "rows": rows})
}

fn selectors(
    query: &HashMap<String, String>,
    namespaced: bool,
) -> Result<(Option<LabelSelector>, Option<FieldSelector>), ApiError> {
    let labels = match query.get("labelSelector").map(String::as_str).unwrap_or("") {
        "" => None,
        s => Some(
            LabelSelector::parse(s).map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        ),
    };
    let fields = match query.get("fieldSelector").map(String::as_str).unwrap_or("") {
        "" => None,
        s => {
            let f = FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
            for field in f.field_names() {
                if field != "metadata.name" && !(namespaced && field == "metadata.namespace") {
                    return Err(ApiError::bad_request(format!("field label not supported: {field}")));
                }
            }
            Some(f)
        }
    };
    Ok((labels, fields))
}

fn selected(obj: &Value, labels: &Option<LabelSelector>, fields: &Option<FieldSelector>) -> bool {
    if labels.as_ref().is_some_and(|l| !l.matches_object(obj)) {
        return false;
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = obj["metadata"]["namespace"].as_str().unwrap_or_default();
    fields.as_ref().is_none_or(|f| f.matches_fields(&[("metadata.name", name), ("metadata.namespace", namespace)]))
}

/// Serves a `metrics.k8s.io` request (already authorized).
pub fn handle(server: &Arc<ApiServer>, req: &Request<hyper::body::Incoming>, info: &RequestInfo) -> Response<Body> {
    match serve(server, req, info) {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

fn serve(
    server: &Arc<ApiServer>,
    req: &Request<hyper::body::Incoming>,
    info: &RequestInfo,
) -> Result<Response<Body>, ApiError> {
    let namespaced = match info.resource.as_str() {
        "pods" => true,
        "nodes" => false,
        _ => return Err(not_found_path()),
    };
    if info.version != VERSION || info.subresource.is_some() || (!namespaced && info.namespace.is_some()) {
        return Err(not_found_path());
    }
    let kind = if namespaced { "PodMetrics" } else { "NodeMetrics" };
    let qualified = Qualified::new(GROUP, if namespaced { "podmetrics" } else { "nodemetrics" });
    if !matches!(info.verb, "get" | "list") {
        return Err(ApiError::method_not_supported(&qualified, info.verb));
    }
    MetricsApi::ensure_started(server);
    let query = crate::endpoints::request::parse_query(req.uri().query());
    let accept = req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
    let output = negotiation::output(accept);
    let include = query.get("includeObject").map(String::as_str).unwrap_or("Metadata");
    let now = rfc3339(jiff::Timestamp::now().as_millisecond());
    let storage = server.resource_metrics.storage.lock().unwrap_or_else(|e| e.into_inner());
    let plural = if namespaced { "pods" } else { "nodes" };
    let metrics_of = |obj: &Value| -> Option<(Value, u64, u64)> {
        let name = obj["metadata"]["name"].as_str()?;
        let u =
            if namespaced { storage.pod(obj["metadata"]["namespace"].as_str()?, name)? } else { storage.node(name)? };
        let cpu = u.containers.iter().map(|c| c.1).sum();
        let mem = u.containers.iter().map(|c| c.2).sum();
        let v = if namespaced { pod_metrics(obj, &u, &now) } else { node_metrics(obj, &u, &now) };
        Some((v, cpu, mem))
    };
    if let Some(name) = &info.name {
        let ns = info.namespace.as_deref().unwrap_or_default();
        let obj =
            object(server, plural, ns, name).ok_or_else(|| ApiError::not_found(&Qualified::new("", plural), name))?;
        let shown = if namespaced { format!("{ns}/{name}") } else { name.clone() };
        let (mut item, cpu, mem) = metrics_of(&obj).ok_or_else(|| ApiError::not_found(&qualified, &shown))?;
        if output == Output::Table {
            return Ok(value_response(StatusCode::OK, &table(&[(item, cpu, mem)], include)));
        }
        let mut full = json!({"kind": kind, "apiVersion": GROUP_VERSION});
        if let (Some(f), Some(i)) = (full.as_object_mut(), item.as_object_mut()) {
            f.append(i);
        }
        return Ok(respond(output, &full));
    }
    let (labels, fields) = selectors(&query, namespaced)?;
    let items: Vec<(Value, u64, u64)> = objects(server, plural, info.namespace.as_deref())
        .iter()
        .filter(|o| selected(o, &labels, &fields))
        .filter_map(metrics_of)
        .collect();
    if output == Output::Table {
        return Ok(value_response(StatusCode::OK, &table(&items, include)));
    }
    let items: Vec<Value> = items.into_iter().map(|i| i.0).collect();
    Ok(respond(
        output,
        &json!({"kind": format!("{kind}List"), "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}),
    ))
}

/// JSON, or YAML when asked (protobuf clients get JSON, which client-go decodes as well).
fn respond(output: Output, v: &Value) -> Response<Body> {
    if output == Output::Yaml {
        if let Ok(text) = serde_yaml::to_string(v) {
            let mut r = Response::new(Body::full(Bytes::from(text)));
            r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/yaml"));
            return r;
        }
    }
    value_response(StatusCode::OK, v)
}

// === discovery ===

/// The resources as (plural, singular, kind, namespaced). No singular name, as metrics-server
/// gives none for pods: clients then derive it from the kind, so `kubectl get podmetrics` and
/// `kubectl get nodemetrics` resolve.
const RESOURCES: [(&str, &str, &str, bool); 2] =
    [("nodes", "", "NodeMetrics", false), ("pods", "", "PodMetrics", true)];

/// The group in `/apis` (`APIGroup`, without kind).
pub fn api_group() -> Value {
    let v = json!({"groupVersion": GROUP_VERSION, "version": VERSION});
    json!({"name": GROUP, "versions": [v.clone()], "preferredVersion": v})
}

/// The group in aggregated discovery (`APIGroupDiscovery`).
pub fn aggregated_group() -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|(plural, singular, kind, namespaced)| {
            json!({
                "resource": plural,
                "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
                "scope": if *namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": singular,
                "verbs": ["get", "list"],
            })
        })
        .collect();
    json!({"metadata": {"name": GROUP, "creationTimestamp": null}, "versions": [{"version": VERSION, "resources": resources, "freshness": "Current"}]})
}

/// `/apis/metrics.k8s.io` and `/apis/metrics.k8s.io/v1beta1`.
pub fn discovery(path: &str) -> Option<Response<Body>> {
    match path.trim_matches('/') {
        "apis/metrics.k8s.io" => {
            let mut g = api_group();
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            Some(value_response(StatusCode::OK, &g))
        }
        "apis/metrics.k8s.io/v1beta1" => {
            let resources: Vec<Value> = RESOURCES
                .iter()
                .map(|(plural, singular, kind, namespaced)| {
                    json!({"name": plural, "singularName": singular, "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]})
                })
                .collect();
            Some(value_response(
                StatusCode::OK,
                &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": resources}),
            ))
        }
        _ => None,
    }
}

// === OpenAPI ===

const DEF_PREFIX: &str = "io.k8s.metrics.pkg.apis.metrics.v1beta1";

/// The OpenAPI v3 document of `apis/metrics.k8s.io/v1beta1` (metrics-server's definitions), so
/// `kubectl explain podmetrics` works.
pub fn openapi_document(info_version: &str) -> Value {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, Status};
    let mut g = schemars::generate::SchemaSettings::openapi3().into_generator();
    g.subschema_for::<ObjectMeta>();
    g.subschema_for::<ListMeta>();
    g.subschema_for::<Quantity>();
    g.subschema_for::<Status>();
    let mut schemas = g.take_definitions(true);
    let reference = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let def = |kind: &str| format!("{DEF_PREFIX}.{kind}");
    let meta = "io.k8s.apimachinery.pkg.apis.meta.v1";
    let type_meta = json!({
        "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
        "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
    });
    let usage = json!({
        "type": "object",
        "description": "The memory usage is the memory working set.",
        "additionalProperties": reference("io.k8s.apimachinery.pkg.api.resource.Quantity"),
    });
    let timestamp = json!({"type": "string", "format": "date-time", "description": "The following fields define time interval from which metrics were collected from the interval [Timestamp-Window, Timestamp]."});
    let window = json!({"type": "string", "description": "The time window the usage was measured over."});
    let gvk = |kind: &str| json!([{"group": GROUP, "version": VERSION, "kind": kind}]);
    let object = |description: &str, kind: &str, mut props: Map<String, Value>, required: Value| {
        if let Value::Object(t) = type_meta.clone() {
            props.extend(t);
        }
        props.insert("metadata".into(), json!({"allOf": [reference(&format!("{meta}.ObjectMeta"))], "default": {}, "description": "Standard object's metadata."}));
        json!({"type": "object", "description": description, "required": required, "properties": props, "x-kubernetes-group-version-kind": gvk(kind)})
    };
    let list = |kind: &str, item: &str| {
        let mut props: Map<String, Value> = match type_meta.clone() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        props.insert("items".into(), json!({"type": "array", "description": "List of metrics.", "items": {"allOf": [reference(&def(item))], "default": {}}}));
        props.insert("metadata".into(), json!({"allOf": [reference(&format!("{meta}.ListMeta"))], "default": {}, "description": "Standard list metadata."}));
        json!({"type": "object", "description": format!("{kind} is a list of {item}."), "required": ["items"], "properties": props, "x-kubernetes-group-version-kind": gvk(kind)})
    };
    let mut props = Map::new();
    props.insert("name".into(), json!({"type": "string", "default": "", "description": "Container name corresponding to the one from pod.spec.containers."}));
    props.insert("usage".into(), usage.clone());
    schemas.insert(
        def("ContainerMetrics"),
        json!({"type": "object", "description": "ContainerMetrics sets resource usage metrics of a container.", "required": ["name", "usage"], "properties": props}),
    );
    let mut props = Map::new();
    props.insert("timestamp".into(), timestamp.clone());
    props.insert("window".into(), window.clone());
    props.insert("usage".into(), usage);
    schemas.insert(
        def("NodeMetrics"),
        object(
            "NodeMetrics sets resource usage metrics of a node.",
            "NodeMetrics",
            props,
            json!(["timestamp", "window", "usage"]),
        ),
    );
    let mut props = Map::new();
    props.insert("timestamp".into(), timestamp);
    props.insert("window".into(), window);
    props.insert("containers".into(), json!({"type": "array", "description": "Metrics for all containers are collected within the same time window.", "items": {"allOf": [reference(&def("ContainerMetrics"))], "default": {}}, "x-kubernetes-list-type": "atomic"}));
    schemas.insert(
        def("PodMetrics"),
        object(
            "PodMetrics sets resource usage metrics of a pod.",
            "PodMetrics",
            props,
            json!(["timestamp", "window", "containers"]),
        ),
    );
    schemas.insert(def("NodeMetricsList"), list("NodeMetricsList", "NodeMetrics"));
    schemas.insert(def("PodMetricsList"), list("PodMetricsList", "PodMetrics"));
    let op = |action: &str, kind: &str, schema: &str| {
        json!({
            "operationId": format!("{action}MetricsV1beta1{kind}"),
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference(&def(schema))}}}},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": {"group": GROUP, "version": VERSION, "kind": kind},
        })
    };
    let param = |name: &str, location: &str| json!({"name": name, "in": location, "required": location == "path", "schema": {"type": "string", "uniqueItems": true}});
    let selectors = json!([param("labelSelector", "query"), param("fieldSelector", "query")]);
    let base = format!("/apis/{GROUP_VERSION}");
    let paths = json!({
        format!("{base}/nodes"): {"get": op("list", "NodeMetrics", "NodeMetricsList"), "parameters": selectors},
        format!("{base}/nodes/{{name}}"): {"get": op("get", "NodeMetrics", "NodeMetrics"), "parameters": [param("name", "path")]},
        format!("{base}/pods"): {"get": op("list", "PodMetrics", "PodMetricsList"), "parameters": selectors},
        format!("{base}/namespaces/{{namespace}}/pods"): {"get": op("list", "PodMetrics", "PodMetricsList"), "parameters": [param("namespace", "path"), param("labelSelector", "query"), param("fieldSelector", "query")]},
        format!("{base}/namespaces/{{namespace}}/pods/{{name}}"): {"get": op("get", "PodMetrics", "PodMetrics"), "parameters": [param("namespace", "path"), param("name", "path")]},
    });
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": info_version},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBELET_TEXT: &str = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="busy",namespace="default",pod="p"} 12.5 1700000010000
container_cpu_usage_seconds_total{container="c\"q",namespace="ns",pod="q"} 0.25 1700000010000
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="busy",namespace="default",pod="p"} 4.6768128e+06 1700000010000
container_memory_working_set_bytes{container="c\"q",namespace="ns",pod="q"} 1536 1700000010000
container_start_time_seconds{container="busy",namespace="default",pod="p"} 1.7e+09
node_cpu_usage_seconds_total 1234.5 1700000010000
node_memory_working_set_bytes 1.073741824e+09 1700000010000
scrape_error 0
"#;

    #[test]
    fn prometheus_text_parses_names_labels_values_and_timestamps() {
        let s = parse_prometheus(KUBELET_TEXT).unwrap();
        assert_eq!(s.len(), 8);
        assert_eq!(s[0].name, "container_cpu_usage_seconds_total");
        assert_eq!(s[0].labels["pod"], "p");
        assert_eq!(s[0].value, 12.5);
        assert_eq!(s[0].timestamp_ms, Some(1_700_000_010_000));
        assert_eq!(s[1].labels["container"], "c\"q");
        assert_eq!(s[2].value, 4_676_812.8);
        assert_eq!(s[4].timestamp_ms, None);
        assert_eq!(s[7].name, "scrape_error");
        assert!(s[7].labels.is_empty());
        assert!(parse_prometheus("x{a=\"1\" 2").is_err());
        assert!(parse_prometheus("x{a=1} 2").is_err());
        assert!(parse_prometheus("x{a=\"1\"} y").is_err());
        assert!(parse_prometheus("x 1 notatime").is_err());
    }

    #[test]
    fn decode_builds_node_and_container_points() {
        let b = decode("n1", &parse_prometheus(KUBELET_TEXT).unwrap(), 0);
        let n = b.nodes["n1"];
        assert_eq!((n.cpu_nanos, n.memory_bytes, n.timestamp_ms), (1_234_500_000_000, 1 << 30, 1_700_000_010_000));
        let p = b.pods[&("default".to_string(), "p".to_string())]["busy"];
        assert_eq!((p.cpu_nanos, p.memory_bytes, p.start_ms), (12_500_000_000, 4_676_812, Some(1_700_000_000_000)));
        assert_eq!(b.pods[&("ns".to_string(), "q".to_string())]["c\"q"].memory_bytes, 1536);
    }

    fn point(ts: i64, cpu_secs: f64, mem: u64) -> Point {
        Point { timestamp_ms: ts, start_ms: Some(0), cpu_nanos: nanos(cpu_secs), memory_bytes: mem }
    }

    fn batch(ts: i64, node_cpu: f64, busy_cpu: f64) -> Batch {
        let mut b = Batch::default();
        b.nodes.insert("n1".into(), point(ts, node_cpu, 1 << 30));
        let mut containers = BTreeMap::new();
        containers.insert("busy".to_string(), point(ts, busy_cpu, 4096));
        containers.insert("side".to_string(), point(ts, 1.0, 2048));
        b.pods.insert(("default".into(), "p".into()), containers);
        b
    }

    #[test]
    fn rates_need_two_points_and_divide_by_the_kubelets_timestamps() {
        let mut s = Storage::default();
        let res = Duration::from_secs(15);
        s.store(batch(100_000, 10.0, 5.0), res);
        assert_eq!(s.node("n1"), None, "one point gives no rate");
        assert_eq!(s.pod("default", "p"), None);
        // 15.5 s later: the node used 7.75 core-seconds (half a core), busy 15.5 (one core).
        s.store(batch(115_500, 17.75, 20.5), res);
        let n = s.node("n1").unwrap();
        assert_eq!((n.timestamp_ms, n.window_ms), (115_500, 15_500));
        assert_eq!(n.containers, vec![(String::new(), 500_000_000, 1 << 30)]);
        let p = s.pod("default", "p").unwrap();
        assert_eq!(p.containers, vec![("busy".to_string(), 1_000_000_000, 4096), ("side".to_string(), 0, 2048)]);
        assert_eq!(format_window(p.window_ms), "15.5s");
        // The same point again (the kubelet's stats did not move): the previous one is kept.
        s.store(batch(115_500, 17.75, 20.5), res);
        assert_eq!(s.node("n1").unwrap().containers[0].1, 500_000_000);
        // A pod that disappears from a scrape has no metrics any more.
        let mut b = batch(130_000, 20.0, 30.0);
        b.pods.clear();
        s.store(b, res);
        assert_eq!(s.pod("default", "p"), None);
        assert!(s.node("n1").is_some());
    }

    #[test]
    fn restarts_and_counter_resets_give_no_rate() {
        let mut s = Storage::default();
        let res = Duration::from_secs(15);
        s.store(batch(100_000, 10.0, 5.0), res);
        // The counter went down: a restarted node or container.
        s.store(batch(115_000, 1.0, 1.0), res);
        assert_eq!(s.node("n1"), None);
        // A container started after the last point (5 s ago: too recent to count from its start)
        // is a new one: no previous point.
        let mut b = batch(130_000, 2.0, 2.0);
        for c in b.pods.values_mut().flat_map(|c| c.values_mut()) {
            c.start_ms = Some(125_000);
        }
        s.store(b, res);
        assert_eq!(s.pod("default", "p"), None);
        assert!(usage(&point(1, 1.0, 0), &point(1, 0.0, 0)).is_none(), "no window");
    }

    #[test]
    fn a_fresh_container_counts_from_its_start() {
        let mut s = Storage::default();
        let mut b = Batch::default();
        // Started 12 s before the point (>= 10 s and < the 15 s resolution): 3 core-seconds → 250m.
        let p =
            Point { timestamp_ms: 112_000, start_ms: Some(100_000), cpu_nanos: 3_000_000_000, memory_bytes: 1 << 20 };
        b.pods.insert(("default".into(), "new".into()), [("c".to_string(), p)].into());
        s.store(b, Duration::from_secs(15));
        let u = s.pod("default", "new").unwrap();
        assert_eq!(u.containers, vec![("c".to_string(), 250_000_000, 1 << 20)]);
        assert_eq!(u.window_ms, 12_000);
    }

    #[test]
    fn the_openapi_document_describes_both_kinds_with_their_group_version_kind() {
        let doc = openapi_document("v");
        let schemas = &doc["components"]["schemas"];
        let pod = &schemas["io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics"];
        assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "PodMetrics");
        assert_eq!(pod["required"], json!(["timestamp", "window", "containers"]));
        // Every reference resolves inside the document.
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(schemas.get(name).is_some(), "{name} is referenced but not defined");
        }
        assert!(doc["paths"]["/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}"]["get"].is_object());
    }

    #[test]
    fn quantities_and_windows_print_as_go_does() {
        assert_eq!(format_cpu(0), "0");
        assert_eq!(format_cpu(123_456_789), "123456789n");
        assert_eq!(format_cpu(250_000_000), "250m");
        assert_eq!(format_cpu(2_000_000_000), "2");
        assert_eq!(format_cpu(1_500), "1500n");
        assert_eq!(format_cpu(3_000), "3u");
        assert_eq!(format_memory(4567 * 1024), "4567Ki");
        assert_eq!(format_memory(1 << 30), "1Gi");
        assert_eq!(format_memory(1536), "1536");
        assert_eq!(format_memory(1000), "1k");
        assert_eq!(format_memory(0), "0");
        assert_eq!(format_window(15_000), "15s");
        assert_eq!(format_window(15_004), "15.004s");
        assert_eq!(format_window(60_500), "1m0.5s");
        assert_eq!(format_window(900), "900ms");
        assert_eq!(rfc3339(1_700_000_010_999), "2023-11-14T22:13:30Z");
    }

    #[test]
    fn pod_metrics_have_metrics_servers_shape_and_tables_sum_containers() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}, "uid": "u"}});
        let u = Usage {
            timestamp_ms: 1_700_000_010_000,
            window_ms: 15_004,
            containers: vec![("a".into(), 250_000_000, 1 << 20), ("b".into(), 500_000_001, 1 << 20)],
        };
        let v = pod_metrics(&pod, &u, "2023-11-14T22:13:31Z");
        assert_eq!(
            v,
            json!({
                "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}, "creationTimestamp": "2023-11-14T22:13:31Z"},
                "timestamp": "2023-11-14T22:13:30Z",
                "window": "15.004s",
                "containers": [
                    {"name": "a", "usage": {"cpu": "250m", "memory": "1Mi"}},
                    {"name": "b", "usage": {"cpu": "500000001n", "memory": "1Mi"}},
                ],
            })
        );
        let t = table(&[(v, 750_000_001, 2 << 20)], "None");
        assert_eq!(t["rows"][0]["cells"], json!(["p", "750000001n", "2Mi", "15.004s"]));
        assert!(t["rows"][0].get("object").is_none());
        let node = json!({"metadata": {"name": "n1"}, "window": "15s", "usage": {"cpu": "2", "memory": "1Gi"}});
        let t = table(&[(node, 2_000_000_000, 1 << 30)], "Metadata");
        assert_eq!(t["rows"][0]["cells"], json!(["n1", "2", "1Gi", "15s"]));
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "n1");
    }
}
