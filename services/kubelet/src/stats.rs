//! Resource usage, from the runtime's `ListContainerStats` and the node's
//! /proc: the Summary API (`/stats/summary`, upstream's JSON shape), the
//! resource metrics endpoint (`/metrics/resource`, what metrics-server
//! scrapes) and the kubelet's own metrics (`/metrics`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_cri::v1 as cri_v1;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::cri::{CriError, Runtime};
use crate::labels;

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("listing container stats: {0}")]
    Runtime(#[from] CriError),
    #[error("encoding metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

#[derive(Serialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: String,
    pub usage_nano_cores: u64,
    pub usage_core_nano_seconds: u64,
}

#[derive(Serialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    pub usage_bytes: u64,
    pub working_set_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_faults: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major_page_faults: Option<u64>,
}

#[derive(Serialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    pub used_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_free: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
}

#[derive(Serialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    pub start_time: String,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub fs: FsStats,
}

#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRef {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[derive(Serialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    pub start_time: String,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<FsStats>,
}

#[derive(Serialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodRef,
    pub start_time: String,
    pub containers: Vec<ContainerStats>,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
}

/// The Summary API's answer.
#[derive(Serialize, Clone, Debug, Default)]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

fn rfc3339(nanos: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(nanos)).map(|t| t.to_string()).unwrap_or_default()
}

fn now_nanos() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

fn value(v: &Option<cri_v1::UInt64Value>) -> u64 {
    v.as_ref().map(|v| v.value).unwrap_or(0)
}

/// Cumulative CPU of the whole node in nanoseconds (busy time across all CPUs), and the boot time.
fn proc_stat() -> (u64, i64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // USER_HZ is 100 on every Linux the kubelet targets.
    const NANOS_PER_TICK: u64 = 10_000_000;
    let mut busy = 0;
    let mut boot = 0;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let v: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal (guest time is already in user).
                let total: u64 = v.iter().take(8).sum();
                let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                busy = total.saturating_sub(idle) * NANOS_PER_TICK;
            }
            Some("btime") => boot = fields.next().and_then(|f| f.parse::<i64>().ok()).unwrap_or(0) * 1_000_000_000,
            _ => {}
        }
    }
    (busy, boot)
}

fn meminfo() -> HashMap<String, u64> {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once(':')?;
            let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some((k.to_string(), kib * 1024))
        })
        .collect()
}

/// CPU rate over the interval between two cumulative samples.
fn nano_cores(prev: Option<(i64, u64)>, now: (i64, u64)) -> u64 {
    match prev {
        Some((t0, u0)) if now.0 > t0 && now.1 >= u0 => {
            ((now.1 - u0) as u128 * 1_000_000_000 / (now.0 - t0) as u128).min(u64::MAX as u128) as u64
        }
        _ => 0,
    }
}

/// Samples the runtime and the node.
pub struct StatsProvider {
    runtime: Runtime,
    node_name: String,
    root_dir: PathBuf,
    /// The previous cumulative CPU sample per container id (and "" for the node), for rates
    /// where the runtime gives none.
    cpu_samples: Mutex<HashMap<String, (i64, u64)>>,
}

impl StatsProvider {
    pub fn new(runtime: Runtime, node_name: String, root_dir: PathBuf) -> Arc<StatsProvider> {
        Arc::new(StatsProvider { runtime, node_name, root_dir, cpu_samples: Mutex::new(HashMap::new()) })
    }

    fn rate(&self, key: &str, now: (i64, u64)) -> u64 {
        let mut samples = self.cpu_samples.lock().unwrap_or_else(|e| e.into_inner());
        let prev = samples.insert(key.to_string(), now);
        nano_cores(prev, now)
    }

    fn node(&self) -> NodeStats {
        let t = now_nanos();
        let time = rfc3339(t);
        let (busy, boot) = proc_stat();
        let mem = meminfo();
        let total = mem.get("MemTotal").copied().unwrap_or(0);
        let available = mem.get("MemAvailable").copied().unwrap_or(0);
        let free = mem.get("MemFree").copied().unwrap_or(0);
        let fs = rustix::fs::statvfs(&self.root_dir).ok();
        NodeStats {
            node_name: self.node_name.clone(),
            start_time: rfc3339(boot),
            cpu: CpuStats {
                time: time.clone(),
                usage_nano_cores: self.rate("", (t, busy)),
                usage_core_nano_seconds: busy,
            },
            memory: MemoryStats {
                time: time.clone(),
                available_bytes: Some(available),
                usage_bytes: total.saturating_sub(free),
                working_set_bytes: total.saturating_sub(available),
                ..Default::default()
            },
            fs: match fs {
                Some(s) => FsStats {
                    time,
                    available_bytes: Some(s.f_bavail * s.f_frsize),
                    capacity_bytes: Some(s.f_blocks * s.f_frsize),
                    used_bytes: s.f_blocks.saturating_sub(s.f_bfree) * s.f_frsize,
                    inodes_free: Some(s.f_ffree),
                    inodes: Some(s.f_files),
                    inodes_used: Some(s.f_files.saturating_sub(s.f_ffree)),
                },
                None => FsStats { time, ..Default::default() },
            },
        }
    }

    /// Node and per-pod, per-container usage of the running containers.
    pub async fn summary(&self) -> Result<Summary, StatsError> {
        let node = self.node();
        let running: HashMap<String, cri_v1::Container> = self
            .runtime
            .list_containers()
            .await?
            .into_iter()
            .filter(|c| c.state == cri_v1::ContainerState::ContainerRunning as i32)
            .map(|c| (c.id.clone(), c))
            .collect();
        let stats = self.runtime.list_container_stats().await?;
        let mut pods: BTreeMap<PodRef, PodStats> = BTreeMap::new();
        let mut live = vec![String::new()];
        for s in stats {
            let Some(attrs) = s.attributes.as_ref() else { continue };
            let Some(c) = running.get(&attrs.id) else { continue };
            let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
            let pod_ref = PodRef {
                name: label(labels::POD_NAME),
                namespace: label(labels::POD_NAMESPACE),
                uid: label(labels::POD_UID),
            };
            if pod_ref.uid.is_empty() {
                continue;
            }
            live.push(attrs.id.clone());
            let cpu = s.cpu.as_ref().map(|u| {
                let t = if u.timestamp > 0 { u.timestamp } else { now_nanos() };
                let cumulative = value(&u.usage_core_nano_seconds);
                let ours = self.rate(&attrs.id, (t, cumulative));
                CpuStats {
                    time: rfc3339(t),
                    usage_nano_cores: u.usage_nano_cores.as_ref().map(|v| v.value).filter(|v| *v > 0).unwrap_or(ours),
                    usage_core_nano_seconds: cumulative,
                }
            });
            let memory = s.memory.as_ref().map(|m| MemoryStats {
                time: rfc3339(if m.timestamp > 0 { m.timestamp } else { now_nanos() }),
                available_bytes: m.available_bytes.as_ref().map(|v| v.value),
                usage_bytes: value(&m.usage_bytes),
                working_set_bytes: value(&m.working_set_bytes),
                rss_bytes: m.rss_bytes.as_ref().map(|v| v.value),
                page_faults: m.page_faults.as_ref().map(|v| v.value),
                major_page_faults: m.major_page_faults.as_ref().map(|v| v.value),
            });
            let rootfs = s.writable_layer.as_ref().map(|w| FsStats {
                time: rfc3339(w.timestamp),
                used_bytes: value(&w.used_bytes),
                inodes_used: w.inodes_used.as_ref().map(|v| v.value),
                ..Default::default()
            });
            let container = ContainerStats {
                name: c.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_else(|| label(labels::CONTAINER_NAME)),
                start_time: rfc3339(c.created_at),
                cpu: cpu.unwrap_or_default(),
                memory: memory.unwrap_or_default(),
                rootfs,
            };
            let pod = pods.entry(pod_ref.clone()).or_insert_with(|| PodStats {
                pod_ref,
                start_time: rfc3339(c.created_at),
                ..Default::default()
            });
            pod.cpu.time = container.cpu.time.clone();
            pod.cpu.usage_nano_cores += container.cpu.usage_nano_cores;
            pod.cpu.usage_core_nano_seconds += container.cpu.usage_core_nano_seconds;
            pod.memory.time = container.memory.time.clone();
            pod.memory.usage_bytes += container.memory.usage_bytes;
            pod.memory.working_set_bytes += container.memory.working_set_bytes;
            pod.containers.push(container);
        }
        self.cpu_samples.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| live.contains(k));
        let mut pods: Vec<PodStats> = pods.into_values().collect();
        for p in &mut pods {
            p.containers.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(Summary { node, pods })
    }

    /// `/metrics/resource`: Prometheus text with upstream's names; `scrape_error` is 1 when the
    /// runtime could not be read.
    pub async fn resource_metrics(&self) -> String {
        let (summary, error) = match self.summary().await {
            Ok(s) => (s, 0),
            Err(e) => {
                tracing::warn!("resource metrics: {e}");
                (Summary { node: self.node(), pods: Vec::new() }, 1)
            }
        };
        resource_text(&summary, error)
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn millis(time: &str) -> String {
    time.parse::<jiff::Timestamp>().map(|t| format!(" {}", t.as_millisecond())).unwrap_or_default()
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// The resource metrics in the Prometheus text format (0.0.4).
pub fn resource_text(s: &Summary, scrape_error: u8) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String, String)>| {
        out.push_str(&format!("# HELP {name} [STABLE] {help}\n# TYPE {name} {kind}\n"));
        for (labels, value, ts) in samples {
            out.push_str(&format!("{name}{labels} {value}{ts}\n"));
        }
    };
    let c_labels = |p: &PodStats, c: &ContainerStats| {
        format!(
            "{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}}",
            escape(&c.name),
            escape(&p.pod_ref.namespace),
            escape(&p.pod_ref.name)
        )
    };
    let p_labels = |p: &PodStats| {
        format!("{{namespace=\"{}\",pod=\"{}\"}}", escape(&p.pod_ref.namespace), escape(&p.pod_ref.name))
    };
    let containers = || s.pods.iter().flat_map(|p| p.containers.iter().map(move |c| (p, c)));
    family(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
        containers()
            .map(|(p, c)| (c_labels(p, c), seconds(c.cpu.usage_core_nano_seconds).to_string(), millis(&c.cpu.time)))
            .collect(),
    );
    family(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
        containers()
            .map(|(p, c)| (c_labels(p, c), c.memory.working_set_bytes.to_string(), millis(&c.memory.time)))
            .collect(),
    );
    family(
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds",
        containers()
            .filter_map(|(p, c)| {
                let t = c.start_time.parse::<jiff::Timestamp>().ok()?;
                Some((c_labels(p, c), (t.as_millisecond() as f64 / 1000.0).to_string(), String::new()))
            })
            .collect(),
    );
    family(
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
        vec![(String::new(), seconds(s.node.cpu.usage_core_nano_seconds).to_string(), millis(&s.node.cpu.time))],
    );
    family(
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
        vec![(String::new(), s.node.memory.working_set_bytes.to_string(), millis(&s.node.memory.time))],
    );
    family(
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
        s.pods
            .iter()
            .map(|p| (p_labels(p), seconds(p.cpu.usage_core_nano_seconds).to_string(), millis(&p.cpu.time)))
            .collect(),
    );
    family(
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
        s.pods.iter().map(|p| (p_labels(p), p.memory.working_set_bytes.to_string(), millis(&p.memory.time))).collect(),
    );
    family(
        "scrape_error",
        "gauge",
        "1 if there was an error while getting container metrics, 0 otherwise",
        vec![(String::new(), scrape_error.to_string(), String::new())],
    );
    out
}

/// The kubelet's own metrics (`/metrics`).
pub struct KubeletMetrics {
    registry: Registry,
    running_pods: Gauge,
    running_containers: Family<Vec<(String, String)>, Gauge>,
    pod_start_duration: Histogram,
}

impl KubeletMetrics {
    pub fn new(node_name: &str, runtime: &Runtime) -> Arc<KubeletMetrics> {
        let mut registry = Registry::default();
        runtime.ops.register(&mut registry);
        let node: Family<Vec<(String, String)>, Gauge> = Family::default();
        node.get_or_create(&vec![("node".to_string(), node_name.to_string())]).set(1);
        registry.register("kubelet_node_name", "The node's name. The count is always 1.", node);
        let running_pods = Gauge::default();
        registry.register(
            "kubelet_running_pods",
            "Number of pods that have a running pod sandbox",
            running_pods.clone(),
        );
        let running_containers = Family::default();
        registry.register(
            "kubelet_running_containers",
            "Number of containers currently running",
            running_containers.clone(),
        );
        // Upstream's buckets for this histogram.
        let buckets = [
            0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0,
            480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
        ];
        let pod_start_duration = Histogram::new(buckets);
        registry.register(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
            pod_start_duration.clone(),
        );
        Arc::new(KubeletMetrics { registry, running_pods, running_containers, pod_start_duration })
    }

    /// A pod went from first seen to running in `since.elapsed()`.
    pub fn pod_started(&self, since: Instant) {
        self.pod_start_duration.observe(since.elapsed().as_secs_f64());
    }

    /// Refreshes the gauges from the runtime and encodes everything.
    pub async fn render(&self, runtime: &Runtime) -> Result<String, StatsError> {
        let sandboxes = runtime.list_pod_sandboxes().await?;
        let ready = sandboxes.iter().filter(|s| s.state == cri_v1::PodSandboxState::SandboxReady as i32).count();
        self.running_pods.set(ready as i64);
        let containers = runtime.list_containers().await?;
        let mut by_state: BTreeMap<&str, i64> =
            ["created", "running", "exited", "unknown"].into_iter().map(|s| (s, 0)).collect();
        for c in &containers {
            let state = match cri_v1::ContainerState::try_from(c.state) {
                Ok(cri_v1::ContainerState::ContainerCreated) => "created",
                Ok(cri_v1::ContainerState::ContainerRunning) => "running",
                Ok(cri_v1::ContainerState::ContainerExited) => "exited",
                _ => "unknown",
            };
            *by_state.entry(state).or_default() += 1;
        }
        for (state, n) in by_state {
            self.running_containers.get_or_create(&vec![("container_state".to_string(), state.to_string())]).set(n);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rate_from_two_samples() {
        assert_eq!(nano_cores(None, (10, 10)), 0);
        // Half a core: 0.5 s of CPU over 1 s.
        assert_eq!(nano_cores(Some((0, 0)), (1_000_000_000, 500_000_000)), 500_000_000);
    }

    #[test]
    fn resource_metrics_use_upstreams_names_and_labels() {
        let s = Summary {
            node: NodeStats { node_name: "n1".into(), ..Default::default() },
            pods: vec![PodStats {
                pod_ref: PodRef { name: "p".into(), namespace: "ns".into(), uid: "u".into() },
                containers: vec![ContainerStats {
                    name: "c".into(),
                    memory: MemoryStats { working_set_bytes: 42, ..Default::default() },
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let text = resource_text(&s, 0);
        assert!(
            text.contains("container_memory_working_set_bytes{container=\"c\",namespace=\"ns\",pod=\"p\"} 42"),
            "{text}"
        );
        assert!(text.contains("# TYPE node_cpu_usage_seconds_total counter"));
        assert!(text.contains("scrape_error 0"));
    }
}
