//! Liveness, readiness and startup probes: one task per probe of each
//! running container instance, with upstream's timing fields, of kinds exec
//! (CRI ExecSync), httpGet, tcpSocket and grpc (grpc.health.v1). A result
//! change wakes the pod's worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cri::Runtime;

/// The gRPC health protocol (grpc.health.v1) the grpc probes speak, for
/// whoever serves it to test them.
pub use tonic_health;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

type Key = (String, String, Kind);

#[derive(Clone, Debug)]
struct Entry {
    container_id: String,
    success: bool,
    task: Arc<tokio::task::JoinHandle<()>>,
}

/// What the worker is told about probe results.
pub type Wake = Arc<dyn Fn(&str) + Send + Sync>;

pub struct ProbeManager {
    runtime: Runtime,
    entries: Mutex<HashMap<Key, Entry>>,
    wake: Mutex<Option<Wake>>,
}

impl ProbeManager {
    pub fn new(runtime: Runtime) -> Arc<ProbeManager> {
        Arc::new(ProbeManager { runtime, entries: Mutex::new(HashMap::new()), wake: Mutex::new(None) })
    }

    pub fn set_wake(&self, wake: Wake) {
        *self.wake.lock().unwrap_or_else(|e| e.into_inner()) = Some(wake);
    }

    fn probe_of(c: &Container, kind: Kind) -> Option<&Probe> {
        match kind {
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
            Kind::Startup => c.startup_probe.as_ref(),
        }
    }

    /// Starts the probes of a running container instance (once per instance).
    pub fn ensure(self: &Arc<Self>, uid: &str, c: &Container, container_id: &str, host: &str) {
        for kind in [Kind::Startup, Kind::Liveness, Kind::Readiness] {
            let Some(probe) = Self::probe_of(c, kind).cloned() else { continue };
            let key = (uid.to_string(), c.name.clone(), kind);
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if entries.get(&key).is_some_and(|e| e.container_id == container_id) {
                continue;
            }
            if let Some(old) = entries.remove(&key) {
                old.task.abort();
            }
            let initial = kind == Kind::Liveness;
            let this = self.clone();
            let (k, id, h, container) = (key.clone(), container_id.to_string(), host.to_string(), c.clone());
            let task = tokio::spawn(async move { this.run(k, id, h, container, probe).await });
            entries
                .insert(key, Entry { container_id: container_id.to_string(), success: initial, task: Arc::new(task) });
        }
    }

    /// The result for the container instance; `None` when it has no such probe.
    pub fn result(&self, uid: &str, name: &str, kind: Kind, container_id: &str) -> Option<bool> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = entries.get(&(uid.to_string(), name.to_string(), kind))?;
        Some(e.container_id == container_id && e.success)
    }

    pub fn remove_pod(&self, uid: &str) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, e| {
            let keep = k.0 != uid;
            if !keep {
                e.task.abort();
            }
            keep
        });
    }

    fn record(&self, key: &Key, container_id: &str, success: bool) {
        let changed = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            match entries.get_mut(key) {
                Some(e) if e.container_id == container_id && e.success != success => {
                    e.success = success;
                    true
                }
                _ => false,
            }
        };
        if changed {
            if let Some(wake) = self.wake.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                wake(&key.0);
            }
        }
    }

    async fn run(self: Arc<Self>, key: Key, container_id: String, host: String, c: Container, p: Probe) {
        let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
        let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
        let success_threshold = p.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = p.failure_threshold.unwrap_or(3).max(1);
        tokio::time::sleep(Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64)).await;
        let (mut successes, mut failures) = (0, 0);
        let mut current: Option<bool> = None;
        loop {
            // Liveness and readiness wait for the startup probe to succeed.
            if key.2 != Kind::Startup && self.result(&key.0, &key.1, Kind::Startup, &container_id) == Some(false) {
                tokio::time::sleep(period).await;
                continue;
            }
            let ok: bool = tokio::time::timeout(timeout, self.probe_once(&container_id, &host, &c, &p, timeout))
                .await
                .unwrap_or_default();
            if ok {
                successes += 1;
                failures = 0;
            } else {
                failures += 1;
                successes = 0;
            }
            let decided = if successes >= success_threshold {
                Some(true)
            } else if failures >= failure_threshold {
                Some(false)
            } else {
                None
            };
            if let Some(d) = decided {
                if current != Some(d) {
                    tracing::debug!(pod = %key.0, container = %key.1, kind = ?key.2, success = d, "probe result");
                    current = Some(d);
                    self.record(&key, &container_id, d);
                }
                if d && key.2 == Kind::Startup {
                    return;
                }
            }
            tokio::time::sleep(period).await;
        }
    }

    async fn probe_once(&self, container_id: &str, host: &str, c: &Container, p: &Probe, timeout: Duration) -> bool {
        if let Some(exec) = &p.exec {
            let cmd = exec.command.clone().unwrap_or_default();
            return match self.runtime.exec_sync(container_id, cmd, timeout.as_secs() as i64).await {
                Ok(r) => r.exit_code == 0,
                Err(_) => false,
            };
        }
        if let Some(http) = &p.http_get {
            let Some(port) = resolve_port(&http.port, c) else { return false };
            let host = http.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| host.to_string());
            let headers: Vec<(String, String)> =
                http.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
            if http.scheme.as_deref() == Some("HTTPS") {
                // Upstream skips verification for probes; a TCP connect stands in for the handshake here.
                return tokio::net::TcpStream::connect((host.as_str(), port)).await.is_ok();
            }
            return http_get(&host, port, http.path.as_deref().unwrap_or("/"), &headers)
                .await
                .is_some_and(|code| (200..400).contains(&code));
        }
        if let Some(tcp) = &p.tcp_socket {
            let Some(port) = resolve_port(&tcp.port, c) else { return false };
            let host = tcp.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| host.to_string());
            return tokio::net::TcpStream::connect((host.as_str(), port)).await.is_ok();
        }
        if let Some(grpc) = &p.grpc {
            return grpc_check(host, grpc.port as u16, grpc.service.clone().unwrap_or_default()).await;
        }
        false
    }
}

/// A numeric port, or a named container port.
pub fn resolve_port(port: &IntOrString, c: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => name.parse().ok().or_else(|| {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
        }),
    }
}

/// One HTTP/1.1 GET; the status code.
pub async fn http_get(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 1024];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut buf[read..]).await.ok()?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let head = String::from_utf8_lossy(&buf[..read]);
    head.split_whitespace().nth(1)?.parse().ok()
}

async fn grpc_check(host: &str, port: u16, service: String) -> bool {
    // An IPv6 pod address needs brackets in the URI.
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{authority}")) else { return false };
    let Ok(channel) = endpoint.connect().await else { return false };
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    match client.check(tonic_health::pb::HealthCheckRequest { service }).await {
        Ok(r) => r.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
        Err(_) => false,
    }
}
