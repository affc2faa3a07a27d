//! From the API's pod and container specs to the CRI's sandbox and container
//! configs: metadata and recovery labels, DNS, port mappings, QoS cgroups,
//! resources, security context, mounts and environment.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::Api;

use crate::fieldpath;
use crate::labels;

/// Settings the configs need from the kubelet.
pub struct Settings {
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub resolv_conf: String,
    pub allocatable: BTreeMap<String, Quantity>,
}

pub fn pod_uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else { return "BestEffort" };
    let all: Vec<&Container> = spec.containers.iter().chain(spec.init_containers.iter().flatten()).collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let req = c.resources.as_ref().and_then(|r| r.requests.clone()).unwrap_or_default();
        let lim = c.resources.as_ref().and_then(|r| r.limits.clone()).unwrap_or_default();
        if !req.is_empty() || !lim.is_empty() {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let l = lim.get(r).map(|q| apimachinery::quantity::parse_milli(&q.0).unwrap_or(0));
            let q = req.get(r).map(|q| apimachinery::quantity::parse_milli(&q.0).unwrap_or(0)).or(l);
            if l.is_none() || l != q || l == Some(0) {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The pod's cgroup under the QoS hierarchy (cgroupfs layout).
pub fn cgroup_parent(pod: &Pod) -> String {
    let uid = pod_uid(pod);
    match qos_class(pod) {
        "Guaranteed" => format!("/kubepods/pod{uid}"),
        "Burstable" => format!("/kubepods/burstable/pod{uid}"),
        _ => format!("/kubepods/besteffort/pod{uid}"),
    }
}

/// The pod cgroup's values as upstream's `ResourceConfigForPod` has them:
/// cpu shares from the pod's cpu requests; a cpu quota and a memory limit
/// only when every container declares that limit (always for Guaranteed);
/// BestEffort pods get the minimum shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodCgroup {
    pub cpu_shares: u64,
    /// `(quota, period)` in microseconds.
    pub cpu_quota: Option<(i64, i64)>,
    pub memory_limit: Option<i64>,
}

const MIN_SHARES: u64 = 2;
const CPU_PERIOD: i64 = 100_000;

/// A pod's total of one resource as upstream sums it: the regular containers'
/// sum or the largest init container's, whichever is more; `None` when a
/// container leaves it undeclared.
fn pod_total(pod: &Pod, resource: &str, limits: bool) -> (i64, bool) {
    let Some(spec) = pod.spec.as_ref() else { return (0, false) };
    let value = |c: &Container| {
        let r = c.resources.as_ref();
        let lim = r.and_then(|r| r.limits.as_ref()).and_then(|l| l.get(resource));
        let q = if limits { lim } else { r.and_then(|r| r.requests.as_ref()).and_then(|l| l.get(resource)).or(lim) };
        q.map(|q| milli(Some(q)))
    };
    let mut declared = true;
    let mut sum: i64 = 0;
    for c in &spec.containers {
        match value(c) {
            Some(v) => sum = sum.saturating_add(v),
            None => declared = false,
        }
    }
    let mut init_max: i64 = 0;
    for c in spec.init_containers.iter().flatten() {
        match value(c) {
            Some(v) => init_max = init_max.max(v),
            None => declared = false,
        }
    }
    (sum.max(init_max), declared)
}

pub fn pod_cgroup(pod: &Pod) -> PodCgroup {
    let class = qos_class(pod);
    if class == "BestEffort" {
        return PodCgroup { cpu_shares: MIN_SHARES, cpu_quota: None, memory_limit: None };
    }
    let (cpu_request, _) = pod_total(pod, "cpu", false);
    let (cpu_limit, cpu_declared) = pod_total(pod, "cpu", true);
    let (memory_limit, memory_declared) = pod_total(pod, "memory", true);
    let shares = if cpu_request <= 0 { MIN_SHARES } else { ((cpu_request as u64) * 1024 / 1000).max(MIN_SHARES) };
    let guaranteed = class == "Guaranteed";
    PodCgroup {
        cpu_shares: shares,
        cpu_quota: (guaranteed || cpu_declared && cpu_limit > 0)
            .then(|| ((cpu_limit * CPU_PERIOD / 1000).max(1000), CPU_PERIOD)),
        memory_limit: (guaranteed || memory_declared && memory_limit > 0).then_some(memory_limit / 1000),
    }
}

const CGROUP_FS: &str = "/sys/fs/cgroup";

fn cgroup_v2() -> bool {
    Path::new(CGROUP_FS).join("cgroup.controllers").exists()
}

/// Creates the pod's cgroup (cgroupfs layout, under its QoS class) with its
/// pod-level limits before the sandbox starts, as upstream's pod container
/// manager does: then the pod as a whole never exceeds them.
pub fn ensure_pod_cgroup(pod: &Pod) -> std::io::Result<()> {
    let parent = cgroup_parent(pod);
    let relative = parent.trim_start_matches('/');
    let config = pod_cgroup(pod);
    if cgroup_v2() {
        // Each ancestor hands the cpu and memory controllers down.
        let mut dir = PathBuf::from(CGROUP_FS);
        for part in relative.split('/') {
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory");
            dir.push(part);
            std::fs::create_dir_all(&dir)?;
        }
        // cgroup v2's weight from v1 shares, as runc converts them.
        let weight = 1 + ((config.cpu_shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
        std::fs::write(dir.join("cpu.weight"), weight.to_string())?;
        let max = match config.cpu_quota {
            Some((quota, period)) => format!("{quota} {period}"),
            None => format!("max {CPU_PERIOD}"),
        };
        std::fs::write(dir.join("cpu.max"), max)?;
        let memory = config.memory_limit.map(|m| m.to_string()).unwrap_or_else(|| "max".into());
        std::fs::write(dir.join("memory.max"), memory)?;
        return Ok(());
    }
    let cpu = Path::new(CGROUP_FS).join("cpu").join(relative);
    std::fs::create_dir_all(&cpu)?;
    std::fs::write(cpu.join("cpu.shares"), config.cpu_shares.to_string())?;
    let (quota, period) = config.cpu_quota.unwrap_or((-1, CPU_PERIOD));
    std::fs::write(cpu.join("cpu.cfs_period_us"), period.to_string())?;
    std::fs::write(cpu.join("cpu.cfs_quota_us"), quota.to_string())?;
    let memory = Path::new(CGROUP_FS).join("memory").join(relative);
    std::fs::create_dir_all(&memory)?;
    std::fs::write(memory.join("memory.limit_in_bytes"), config.memory_limit.unwrap_or(-1).to_string())?;
    Ok(())
}

/// Removes the pod's cgroup from every hierarchy once its containers are
/// gone (the runtime removed theirs; a busy cgroup stays and is retried on
/// the next teardown).
pub fn remove_pod_cgroup(uid: &str) {
    // By uid alone (a pod that is gone has no spec to tell its QoS class): each class's place.
    for relative in
        [format!("kubepods/pod{uid}"), format!("kubepods/burstable/pod{uid}"), format!("kubepods/besteffort/pod{uid}")]
    {
        remove_cgroup(&relative);
    }
}

fn remove_cgroup(relative: &str) {
    let hierarchies: Vec<PathBuf> = if cgroup_v2() {
        vec![PathBuf::from(CGROUP_FS)]
    } else {
        std::fs::read_dir(CGROUP_FS)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    };
    for h in hierarchies {
        let dir = h.join(relative);
        if !dir.exists() {
            continue;
        }
        // Leftover child cgroups (containers the runtime did not clean) go first.
        let children: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        for c in children {
            let _ = std::fs::remove_dir(c);
        }
        if let Err(e) = std::fs::remove_dir(&dir) {
            tracing::debug!(cgroup = %dir.display(), "removing the pod cgroup: {e}");
        }
    }
}

pub fn log_directory(pod: &Pod) -> PathBuf {
    PathBuf::from("/var/log/pods").join(format!(
        "{}_{}_{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or(""),
        pod_uid(pod)
    ))
}

fn host_namespace(pod: &Pod) -> cri::NamespaceOption {
    let spec = pod.spec.as_ref();
    let mode = |host: Option<bool>, default: cri::NamespaceMode| {
        if host.unwrap_or(false) {
            cri::NamespaceMode::Node as i32
        } else {
            default as i32
        }
    };
    cri::NamespaceOption {
        network: mode(spec.and_then(|s| s.host_network), cri::NamespaceMode::Pod),
        pid: mode(
            spec.and_then(|s| s.host_pid),
            if spec.and_then(|s| s.share_process_namespace).unwrap_or(false) {
                cri::NamespaceMode::Pod
            } else {
                cri::NamespaceMode::Container
            },
        ),
        ipc: mode(spec.and_then(|s| s.host_ipc), cri::NamespaceMode::Pod),
        ..Default::default()
    }
}

fn dns_config(pod: &Pod, s: &Settings) -> cri::DnsConfig {
    let spec = pod.spec.as_ref();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
    let host = std::fs::read_to_string(&s.resolv_conf).unwrap_or_default();
    let host_servers: Vec<String> =
        host.lines().filter_map(|l| l.strip_prefix("nameserver")).map(|v| v.trim().to_string()).collect();
    let host_searches: Vec<String> = host
        .lines()
        .filter_map(|l| l.strip_prefix("search"))
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let cluster_first = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    } && !s.cluster_dns.is_empty();
    let mut config = if cluster_first {
        let d = &s.cluster_domain;
        let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
        searches.extend(host_searches);
        cri::DnsConfig { servers: s.cluster_dns.clone(), searches, options: vec!["ndots:5".into()] }
    } else if policy == "None" {
        cri::DnsConfig::default()
    } else {
        cri::DnsConfig { servers: host_servers, searches: host_searches, options: Vec::new() }
    };
    if let Some(custom) = spec.and_then(|s| s.dns_config.as_ref()) {
        config.servers.extend(custom.nameservers.clone().unwrap_or_default());
        config.searches.extend(custom.searches.clone().unwrap_or_default());
        for o in custom.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            config.options.retain(|x| x.split(':').next() != Some(name.as_str()));
            config.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    config
}

pub fn sandbox_config(pod: &Pod, attempt: u32, s: &Settings) -> cri::PodSandboxConfig {
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let uid = pod_uid(pod);
    // A hostNetwork pod shares the node's UTS namespace: no hostname of its own
    // (runc refuses to set one there), as upstream leaves it empty.
    let hostname = if spec.and_then(|s| s.host_network).unwrap_or(false) {
        String::new()
    } else {
        spec.and_then(|s| s.hostname.clone()).unwrap_or_else(|| name.chars().take(63).collect())
    };
    let port_mappings = spec
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| cri::PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => cri::Protocol::Udp as i32,
                Some("SCTP") => cri::Protocol::Sctp as i32,
                _ => cri::Protocol::Tcp as i32,
            },
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let psc = spec.and_then(|s| s.security_context.as_ref());
    // containerd refuses a privileged container in an unprivileged sandbox,
    // so the sandbox is privileged when any container is (as upstream).
    let privileged = spec
        .into_iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .any(|c| c.security_context.as_ref().and_then(|s| s.privileged).unwrap_or(false));
    let mut labels: HashMap<String, String> = pod.metadata.labels.clone().unwrap_or_default().into_iter().collect();
    labels.insert(labels::POD_NAME.into(), name.clone());
    labels.insert(labels::POD_NAMESPACE.into(), namespace.clone());
    labels.insert(labels::POD_UID.into(), uid.clone());
    labels.insert(labels::KUBELET_MANAGED.into(), "true".into());
    let annotations: HashMap<String, String> =
        pod.metadata.annotations.clone().unwrap_or_default().into_iter().collect();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata { name, uid, namespace, attempt }),
        hostname,
        log_directory: log_directory(pod).display().to_string(),
        dns_config: Some(dns_config(pod, s)),
        port_mappings,
        labels,
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(pod),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(host_namespace(pod)),
                run_as_user: psc.and_then(|p| p.run_as_user).map(|value| cri::Int64Value { value }),
                run_as_group: psc.and_then(|p| p.run_as_group).map(|value| cri::Int64Value { value }),
                supplemental_groups: supplemental_groups(pod),
                privileged,
                ..Default::default()
            }),
            sysctls: psc
                .and_then(|p| p.sysctls.as_ref())
                .map(|s| s.iter().map(|x| (x.name.clone(), x.value.clone())).collect())
                .unwrap_or_default(),
            ..Default::default()
        }),
        windows: None,
    }
}

/// A stable hash of a container's spec: a changed spec restarts the container.
pub fn container_hash(c: &Container) -> String {
    let text = serde_json::to_string(c).unwrap_or_default();
    // FNV-1a: stable across kubelet builds, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:x}")
}

fn milli(q: Option<&Quantity>) -> i64 {
    q.and_then(|q| apimachinery::quantity::parse_milli(&q.0).ok()).unwrap_or(0).clamp(0, i64::MAX as i128) as i64
}

fn linux_resources(c: &Container) -> cri::LinuxContainerResources {
    let res = c.resources.as_ref();
    let requests = res.and_then(|r| r.requests.as_ref());
    let limits = res.and_then(|r| r.limits.as_ref());
    let cpu_request = milli(requests.and_then(|r| r.get("cpu")).or(limits.and_then(|l| l.get("cpu"))));
    let cpu_limit = milli(limits.and_then(|l| l.get("cpu")));
    let memory_limit = milli(limits.and_then(|l| l.get("memory"))) / 1000;
    cri::LinuxContainerResources {
        cpu_shares: if cpu_request == 0 { 2 } else { (cpu_request * 1024 / 1000).max(2) },
        cpu_period: if cpu_limit > 0 { 100_000 } else { 0 },
        cpu_quota: if cpu_limit > 0 { (cpu_limit * 100_000 / 1000).max(1000) } else { 0 },
        memory_limit_in_bytes: memory_limit,
        ..Default::default()
    }
}

/// The pod's `supplementalGroups` plus its `fsGroup`, which upstream's
/// kubelet adds so that every container can use the volumes owned by it.
fn supplemental_groups(pod: &Pod) -> Vec<i64> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let mut groups = psc.and_then(|p| p.supplemental_groups.clone()).unwrap_or_default();
    if let Some(fs_group) = psc.and_then(|p| p.fs_group) {
        if !groups.contains(&fs_group) {
            groups.push(fs_group);
        }
    }
    groups
}

/// The pod's `fsGroup`: volumes the kubelet makes are group-owned by it.
pub fn fs_group(pod: &Pod) -> Option<i64> {
    pod.spec.as_ref().and_then(|s| s.security_context.as_ref()).and_then(|p| p.fs_group)
}

/// The pod's memory limit in bytes as upstream's pod cgroup has it: the sum
/// of the containers' limits (or the largest init container's, if more),
/// `None` when a container has no memory limit.
pub fn pod_memory_limit(pod: &Pod) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &Container| {
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .map(|q| milli(Some(q)) / 1000)
    };
    let mut sum: i64 = 0;
    for c in &spec.containers {
        sum = sum.saturating_add(limit(c)?);
    }
    let mut init_max: i64 = 0;
    for c in spec.init_containers.iter().flatten() {
        init_max = init_max.max(limit(c)?);
    }
    Some(sum.max(init_max))
}

/// The machine's memory in bytes (MemTotal), what upstream scales OOM scores by.
fn machine_memory() -> i64 {
    static TOTAL: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *TOTAL.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or(0)
    })
}

const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;

/// The container's oom_score_adj as upstream's kubelet computes it: critical
/// (static or system-critical priority) and Guaranteed pods -997, BestEffort
/// 1000, Burstable by the share of the machine's memory it requests, kept
/// within 3..=999 so that it ranks between the two.
fn oom_score_adj(pod: &Pod, c: &Container, memory_capacity: i64) -> i64 {
    let static_pod = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubernetes.io/config.source"))
        .is_some_and(|s| s != "api");
    let critical = static_pod || pod.spec.as_ref().and_then(|s| s.priority).is_some_and(|p| p >= 2_000_000_000);
    if critical {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match qos_class(pod) {
        "Guaranteed" => GUARANTEED_OOM_SCORE_ADJ,
        "BestEffort" => BEST_EFFORT_OOM_SCORE_ADJ,
        _ => {
            let res = c.resources.as_ref();
            let request = res
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("memory"))
                .or(res.and_then(|r| r.limits.as_ref()).and_then(|l| l.get("memory")));
            let request = milli(request) / 1000;
            let adj = if memory_capacity > 0 {
                1000 - (1000i128 * i128::from(request) / i128::from(memory_capacity)) as i64
            } else {
                1000
            };
            if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
                1000 + GUARANTEED_OOM_SCORE_ADJ
            } else if adj == BEST_EFFORT_OOM_SCORE_ADJ {
                adj - 1
            } else {
                adj
            }
        }
    }
}

fn security_context(pod: &Pod, c: &Container) -> cri::LinuxContainerSecurityContext {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    // procMount Unmasked (or a privileged container) lifts the default masks.
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let default_proc_mount = !privileged && sc.and_then(|s| s.proc_mount.as_deref()) != Some("Unmasked");
    cri::LinuxContainerSecurityContext {
        capabilities: caps.map(|c| cri::Capability {
            add_capabilities: c.add.clone().unwrap_or_default(),
            drop_capabilities: c.drop.clone().unwrap_or_default(),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(host_namespace(pod)),
        run_as_user: sc
            .and_then(|s| s.run_as_user)
            .or(psc.and_then(|p| p.run_as_user))
            .map(|value| cri::Int64Value { value }),
        run_as_group: sc
            .and_then(|s| s.run_as_group)
            .or(psc.and_then(|p| p.run_as_group))
            .map(|value| cri::Int64Value { value }),
        readonly_rootfs: sc.and_then(|s| s.read_only_root_filesystem).unwrap_or(false),
        supplemental_groups: supplemental_groups(pod),
        no_new_privs: sc.and_then(|s| s.allow_privilege_escalation).map(|a| !a).unwrap_or(false),
        // Sent explicitly as upstream does: containerd masks nothing when they are missing.
        masked_paths: if default_proc_mount {
            DEFAULT_MASKED_PATHS.iter().map(|p| p.to_string()).collect()
        } else {
            Vec::new()
        },
        readonly_paths: if default_proc_mount {
            DEFAULT_READONLY_PATHS.iter().map(|p| p.to_string()).collect()
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

/// What an unprivileged container may not see of /proc and /sys (upstream's defaults).
const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// What an unprivileged container sees read-only (upstream's defaults).
const DEFAULT_READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Expands `$(VAR)` references as upstream does (`$$` escapes).
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match env.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&format!("$({name})")),
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container's environment: `envFrom` then `env`, with `valueFrom`
/// resolved through the apiserver and `$(VAR)` expanded, then the service
/// variables (see service_env.rs). An error is a `CreateContainerConfigError`.
pub async fn resolve_env(
    client: &kube::Client,
    pod: &Pod,
    c: &Container,
    pod_ip: &str,
    host_ip: &str,
    s: &Settings,
    service_env: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut order: Vec<String> = Vec::new();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let set = |k: String, v: String, order: &mut Vec<String>, env: &mut BTreeMap<String, String>| {
        if !env.contains_key(&k) {
            order.push(k.clone());
        }
        env.insert(k, v);
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match cms.get_opt(&r.name).await.map_err(|e| e.to_string())? {
                Some(cm) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        set(format!("{prefix}{k}"), v, &mut order, &mut env);
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match secrets.get_opt(&r.name).await.map_err(|e| e.to_string())? {
                Some(sec) => {
                    for (k, v) in sec.data.unwrap_or_default() {
                        set(format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into_owned(), &mut order, &mut env);
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = match &e.value_from {
            None => {
                // `$(VAR)` sees the declared variables first, then the services'.
                let mut visible = service_env.clone();
                visible.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
                expand(e.value.as_deref().unwrap_or(""), &visible)
            }
            Some(from) => {
                if let Some(f) = &from.field_ref {
                    fieldpath::field_value(pod, &f.field_path, pod_ip, host_ip)?
                } else if let Some(r) = &from.resource_field_ref {
                    let target = match r.container_name.as_deref() {
                        Some(n) if !n.is_empty() => pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.containers.iter().find(|x| x.name == n))
                            .ok_or_else(|| format!("container {n:?} not found"))?,
                        _ => c,
                    };
                    fieldpath::resource_value(
                        target,
                        &r.resource,
                        r.divisor.as_ref().map(|d| d.0.as_str()),
                        &s.allocatable,
                    )?
                } else if let Some(r) = &from.config_map_key_ref {
                    let cm = cms.get_opt(&r.name).await.map_err(|e| e.to_string())?;
                    match cm.and_then(|cm| cm.data.and_then(|d| d.get(&r.key).cloned())) {
                        Some(v) => v,
                        None if r.optional.unwrap_or(false) => continue,
                        None => return Err(format!("couldn't find key {} in ConfigMap {ns}/{}", r.key, r.name)),
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let sec = secrets.get_opt(&r.name).await.map_err(|e| e.to_string())?;
                    match sec.and_then(|s| s.data.and_then(|d| d.get(&r.key).cloned())) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if r.optional.unwrap_or(false) => continue,
                        None => return Err(format!("couldn't find key {} in Secret {ns}/{}", r.key, r.name)),
                    }
                } else {
                    String::new()
                }
            }
        };
        set(e.name.clone(), value, &mut order, &mut env);
    }
    // Declared variables in order, then the service variables none of them shadows.
    let mut out: Vec<(String, String)> =
        order.into_iter().filter_map(|k| env.get(&k).map(|v| (k, v.clone()))).collect();
    out.extend(service_env.iter().filter(|(k, _)| !env.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())));
    Ok(out)
}

/// Everything a container config needs besides the pod.
pub struct ContainerInputs<'a> {
    pub restart_count: u32,
    pub volumes: &'a HashMap<String, PathBuf>,
    pub env: Vec<(String, String)>,
    pub pod_dir: &'a Path,
    pub container_type: &'static str,
}

pub fn container_config(pod: &Pod, c: &Container, inputs: ContainerInputs<'_>) -> Result<cri::ContainerConfig, String> {
    let env_map: BTreeMap<String, String> = inputs.env.iter().cloned().collect();
    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let host = inputs.volumes.get(&m.name).ok_or_else(|| format!("volume {:?} not found", m.name))?;
        let host = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                if Path::new(sub).components().any(|c| matches!(c, std::path::Component::ParentDir))
                    || sub.starts_with('/')
                {
                    return Err(format!("invalid subPath {sub:?}"));
                }
                let p = host.join(sub);
                if !p.exists() {
                    std::fs::create_dir_all(&p).map_err(|e| format!("subPath {sub:?}: {e}"))?;
                }
                p
            }
            None => host.clone(),
        };
        mounts.push(cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: m.read_only.unwrap_or(false),
            propagation: match m.mount_propagation.as_deref() {
                Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer as i32,
                Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional as i32,
                _ => cri::MountPropagation::PropagationPrivate as i32,
            },
            ..Default::default()
        });
    }
    // /etc/hosts managed by the kubelet, and the termination message file.
    let hosts = inputs.pod_dir.join("etc-hosts");
    let has = |mounts: &[cri::Mount], p: &str| mounts.iter().any(|m| m.container_path == p);
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    if hosts.exists() && !has(&mounts, "/etc/hosts") && !host_network {
        mounts.push(cri::Mount {
            container_path: "/etc/hosts".into(),
            host_path: hosts.display().to_string(),
            ..Default::default()
        });
    }
    let termination_path = c.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into());
    let term_dir = inputs.pod_dir.join("containers").join(&c.name);
    std::fs::create_dir_all(&term_dir).map_err(|e| format!("termination log dir: {e}"))?;
    let term_file = term_dir.join(format!("termination-{}", inputs.restart_count));
    std::fs::write(&term_file, b"").map_err(|e| format!("termination log: {e}"))?;
    if !has(&mounts, &termination_path) {
        mounts.push(cri::Mount {
            container_path: termination_path.clone(),
            host_path: term_file.display().to_string(),
            ..Default::default()
        });
    }
    let uid = pod_uid(pod);
    let mut labels: HashMap<String, String> = HashMap::new();
    labels.insert(labels::POD_NAME.into(), pod.metadata.name.clone().unwrap_or_default());
    labels.insert(labels::POD_NAMESPACE.into(), pod.metadata.namespace.clone().unwrap_or_default());
    labels.insert(labels::POD_UID.into(), uid);
    labels.insert(labels::CONTAINER_NAME.into(), c.name.clone());
    labels.insert(labels::CONTAINER_TYPE.into(), inputs.container_type.into());
    let mut annotations: HashMap<String, String> = HashMap::new();
    annotations.insert(labels::RESTART_COUNT.into(), inputs.restart_count.to_string());
    annotations.insert(labels::CONTAINER_HASH.into(), container_hash(c));
    annotations.insert(labels::TERMINATION_MESSAGE_PATH.into(), term_file.display().to_string());
    annotations.insert(
        labels::TERMINATION_MESSAGE_POLICY.into(),
        c.termination_message_policy.clone().unwrap_or_else(|| "File".into()),
    );
    let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
    annotations.insert(labels::GRACE_PERIOD.into(), grace.to_string());
    Ok(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: c.name.clone(), attempt: inputs.restart_count }),
        image: Some(cri::ImageSpec { image: c.image.clone().unwrap_or_default(), ..Default::default() }),
        command: c.command.iter().flatten().map(|a| expand(a, &env_map)).collect(),
        args: c.args.iter().flatten().map(|a| expand(a, &env_map)).collect(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: inputs.env.into_iter().map(|(key, value)| cri::KeyValue { key, value }).collect(),
        mounts,
        labels,
        annotations,
        log_path: format!("{}/{}.log", c.name, inputs.restart_count),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                oom_score_adj: oom_score_adj(pod, c, machine_memory()),
                ..linux_resources(c)
            }),
            security_context: Some(security_context(pod, c)),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variable_references() {
        let env: BTreeMap<String, String> = [("A".to_string(), "x".to_string())].into();
        assert_eq!(expand("$(A)-$(B)-$$(A)", &env), "x-$(B)-$(A)");
    }

    #[test]
    fn qos_classes() {
        let pod = |res: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"spec": {"containers": [{"name": "c", "resources": res}]}}))
                .unwrap()
        };
        assert_eq!(qos_class(&pod(serde_json::json!({}))), "BestEffort");
        assert_eq!(qos_class(&pod(serde_json::json!({"limits": {"cpu": "1", "memory": "1Gi"}}))), "Guaranteed");
        assert_eq!(qos_class(&pod(serde_json::json!({"requests": {"cpu": "1"}}))), "Burstable");
    }

    #[test]
    fn oom_score_adjustments_rank_qos_classes() {
        let pod = |res: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"spec": {"containers": [{"name": "c", "resources": res}]}}))
                .unwrap()
        };
        let gib: i64 = 1 << 30;
        let score = |p: &Pod| oom_score_adj(p, &p.spec.as_ref().unwrap().containers[0], 4 * gib);
        assert_eq!(score(&pod(serde_json::json!({"limits": {"cpu": "1", "memory": "1Gi"}}))), -997);
        assert_eq!(score(&pod(serde_json::json!({}))), 1000);
        assert_eq!(score(&pod(serde_json::json!({"requests": {"memory": "1Gi"}}))), 750);
        assert_eq!(score(&pod(serde_json::json!({"requests": {"cpu": "1"}}))), 999);
        assert_eq!(score(&pod(serde_json::json!({"requests": {"memory": "4Gi"}}))), 3);
    }

    #[test]
    fn pod_cgroup_values_follow_upstream() {
        let pod = |containers: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"spec": {"containers": containers}})).unwrap()
        };
        let res = |r: serde_json::Value| serde_json::json!({"name": "c", "resources": r});
        let guaranteed = pod(serde_json::json!([
            res(serde_json::json!({"limits": {"cpu": "500m", "memory": "64Mi"}})),
            res(serde_json::json!({"limits": {"cpu": "250m", "memory": "32Mi"}})),
        ]));
        assert_eq!(
            pod_cgroup(&guaranteed),
            PodCgroup { cpu_shares: 768, cpu_quota: Some((75_000, 100_000)), memory_limit: Some(96 << 20) }
        );
        // One container without a memory limit: no pod memory limit; cpu limits all declared.
        let burstable = pod(serde_json::json!([
            res(serde_json::json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "200m", "memory": "64Mi"}})),
            res(serde_json::json!({"limits": {"cpu": "100m"}})),
        ]));
        assert_eq!(
            pod_cgroup(&burstable),
            PodCgroup { cpu_shares: 204, cpu_quota: Some((30_000, 100_000)), memory_limit: None }
        );
        let best_effort = pod(serde_json::json!([res(serde_json::json!({}))]));
        assert_eq!(pod_cgroup(&best_effort), PodCgroup { cpu_shares: 2, cpu_quota: None, memory_limit: None });
    }
}
