//! Pod sync: one pass of a pod worker that makes the runtime match the pod —
//! sandbox, volumes, init containers in order, containers with their restart
//! policy and back-off, probes — or tears the pod down when it is deleted,
//! and reports the status it saw.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use component_base::events::{object_ref, EventType, Recorder};
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Preconditions};

use crate::containers::{self, ContainerInputs, Settings};
use crate::cri::Runtime;
use crate::labels;
use crate::probes::{self, Kind, ProbeManager};
use crate::status::{self, Instance, InstanceState, Observed, StatusManager};
use crate::volumes::VolumeManager;

const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long has its back-off reset.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// Everything a pod worker needs.
pub struct Kubelet {
    pub client: kube::Client,
    pub runtime: Runtime,
    pub node_name: String,
    pub host_ip: String,
    pub volumes: VolumeManager,
    pub status: Arc<StatusManager>,
    pub probes: Arc<ProbeManager>,
    pub settings: Settings,
    pub sync_frequency: Duration,
    pub recorder: Recorder,
    pub pull_lock: tokio::sync::Mutex<()>,
    /// Bounds how many sandboxes start at once: a burst of pods then comes up
    /// first-come first-served instead of all finishing together.
    pub sandbox_starts: tokio::sync::Semaphore,
    pub serialize_pulls: bool,
    /// Device plugin devices for containers that request them.
    pub devices: Arc<crate::deviceplugin::DeviceManager>,
    pub metrics: Arc<crate::stats::KubeletMetrics>,
    /// The Services every container's environment names.
    pub service_env: crate::service_env::ServiceEnv,
}

/// What a worker remembers between passes.
#[derive(Default)]
pub struct PodState {
    /// Crash back-off per container: restarts so far and when the next may happen.
    backoff: HashMap<String, (u32, Instant)>,
    /// Image pull back-off per container, with the last pull's error.
    pull_backoff: HashMap<String, (u32, Instant, String)>,
    /// Why a container is held back.
    waiting: HashMap<String, (String, String)>,
    /// The pod reached Succeeded or Failed and will not run again.
    terminal: Option<&'static str>,
    start_time: Option<Time>,
    /// When the worker first saw the pod; taken once the pod runs (kubelet_pod_start_duration_seconds).
    first_seen: Option<Instant>,
    /// CRI statuses of this pod's running and exited containers, by id, with
    /// the state they were read in: while a container's listed state is the
    /// same its status is too (a running one's start time, an exited one's
    /// exit code), so a pass asks the runtime only about containers that changed.
    statuses: std::sync::Mutex<HashMap<String, (i32, cri::ContainerStatus)>>,
    /// The ready sandbox's id and pod IP: a sandbox keeps its address.
    sandbox_ip: Option<(String, String)>,
}

pub enum Outcome {
    /// Sync again after this long (or sooner on a change).
    Again(Duration),
    /// The pod is torn down; the worker ends.
    Finished,
}

fn millis_to_time(nanos: i64) -> Option<Time> {
    if nanos <= 0 {
        return None;
    }
    jiff::Timestamp::from_nanosecond(i128::from(nanos)).ok().map(Time)
}

fn grace_period(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or(pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .max(0)
}

fn next_backoff(entry: Option<&(u32, Instant)>) -> (u32, Duration) {
    let n = entry.map(|e| e.0).unwrap_or(0);
    let d = BACKOFF_INITIAL.saturating_mul(1u32 << n.min(10)).min(BACKOFF_MAX);
    (n + 1, d)
}

impl Kubelet {
    fn event(&self, pod: &Pod, kind: EventType, reason: &str, message: &str) {
        self.recorder.event(object_ref(pod), kind, reason, message);
    }

    /// One sync pass.
    pub async fn sync_pod(&self, pod: &Pod, st: &mut PodState, removed: bool) -> Outcome {
        let uid = containers::pod_uid(pod);
        if removed || pod.metadata.deletion_timestamp.is_some() {
            self.kill_pod(pod, grace_period(pod)).await;
            if !removed {
                let observed = self.observe(pod, st, None).await;
                let status = self.compute_status(pod, st, &observed, "", false);
                self.status.set(pod, status);
                self.finish_deletion(pod).await;
            }
            self.probes.remove_pod(&uid);
            containers::remove_pod_cgroup(&uid);
            self.volumes.teardown(&uid);
            self.status.forget(&uid);
            self.devices.release(&uid);
            return Outcome::Finished;
        }
        match self.sync_running(pod, st).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(pod = %pod_name(pod), "sync failed: {e}");
                Outcome::Again(Duration::from_secs(2))
            }
        }
    }

    async fn sync_running(&self, pod: &Pod, st: &mut PodState) -> anyhow::Result<Outcome> {
        let uid = containers::pod_uid(pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        if st.start_time.is_none() {
            st.first_seen = Some(Instant::now());
            st.start_time =
                pod.status.as_ref().and_then(|s| s.start_time.clone()).or(Some(Time(jiff::Timestamp::now())));
        }
        if st.terminal.is_some() {
            self.stop_sandboxes(&uid).await;
            let observed = self.observe(pod, st, None).await;
            let status = self.compute_status(pod, st, &observed, "", false);
            self.status.set(pod, status);
            return Ok(Outcome::Again(self.sync_frequency));
        }

        // The sandbox: the newest ready one, or a new one.
        let mut sandboxes = self.runtime.pod_sandboxes(&uid).await?;
        sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        let ready = sandboxes.iter().find(|s| s.state == cri::PodSandboxState::SandboxReady as i32).cloned();
        let attempt = sandboxes.iter().filter_map(|s| s.metadata.as_ref().map(|m| m.attempt + 1)).max().unwrap_or(0);
        let sandbox_config = containers::sandbox_config(pod, attempt, &self.settings);
        let sandbox_id = match ready {
            Some(s) => s.id,
            None => {
                // Containers of a dead sandbox cannot continue.
                for c in self.runtime.pod_containers(&uid).await? {
                    if c.state == cri::ContainerState::ContainerRunning as i32 {
                        let _ = self.runtime.stop_container(&c.id, 0).await;
                    }
                }
                let _ = std::fs::create_dir_all(containers::log_directory(pod));
                if let Err(e) = containers::ensure_pod_cgroup(pod) {
                    // The containers' own limits still hold; only the pod-wide ones are missing.
                    tracing::warn!(pod = %pod_name(pod), "pod cgroup {}: {e}", containers::cgroup_parent(pod));
                }
                let permit = self.sandbox_starts.acquire().await;
                let started = self.runtime.run_pod_sandbox(sandbox_config.clone()).await;
                drop(permit);
                match started {
                    Ok(id) => id,
                    Err(e) => {
                        self.event(
                            pod,
                            EventType::Warning,
                            "FailedCreatePodSandBox",
                            &format!("Failed to create pod sandbox: {e}"),
                        );
                        let observed = self.observe(pod, st, None).await;
                        let status = self.compute_status(pod, st, &observed, "", false);
                        self.status.set(pod, status);
                        return Ok(Outcome::Again(Duration::from_secs(5)));
                    }
                }
            }
        };
        let sandbox_config = match ready_config(&sandboxes, &sandbox_id) {
            Some(attempt) => containers::sandbox_config(pod, attempt, &self.settings),
            None => sandbox_config,
        };
        let pod_ip = match &st.sandbox_ip {
            Some((id, ip)) if *id == sandbox_id => ip.clone(),
            _ => {
                let ip = self
                    .runtime
                    .pod_sandbox_status(&sandbox_id)
                    .await?
                    .and_then(|s| s.network)
                    .map(|n| n.ip)
                    .unwrap_or_default();
                st.sandbox_ip = Some((sandbox_id.clone(), ip.clone()));
                ip
            }
        };
        let host_network = spec.host_network.unwrap_or(false);
        let pod_ip = if host_network { self.host_ip.clone() } else { pod_ip };
        self.write_etc_hosts(pod, &pod_ip);

        let node_memory = self
            .settings
            .allocatable
            .get("memory")
            .and_then(|q| apimachinery::quantity::parse_milli(&q.0).ok())
            .and_then(|m| i64::try_from(m / 1000).ok());
        let volumes = match self.volumes.setup(pod, &pod_ip, &self.host_ip, node_memory).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(pod = %pod_name(pod), "volume setup failed: {e}");
                self.event(pod, EventType::Warning, "FailedMount", &format!("MountVolume.SetUp failed: {e}"));
                let observed = self.observe(pod, st, Some(&sandbox_id)).await;
                let status = self.compute_status(pod, st, &observed, &pod_ip, true);
                self.status.set(pod, status);
                return Ok(Outcome::Again(Duration::from_secs(5)));
            }
        };

        let mut wake = self.sync_frequency;
        let probe_host = pod_ip.clone();
        // One container list for the pass; observing lists again only if the pass changed something.
        let listed = self.runtime.pod_containers(&uid).await?;
        let mut changed_runtime = false;
        // Init containers in order; sidecars (restartPolicy Always) start and keep running.
        let mut init_blocked = false;
        for c in spec.init_containers.iter().flatten() {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let latest = self.latest(st, &listed, &sandbox_id, &c.name).await;
            match latest.as_ref().map(|l| l.1) {
                None => {
                    let restarts = next_restart_count(&listed, &c.name);
                    changed_runtime = true;
                    self.start_container(pod, c, restarts, &sandbox_id, &sandbox_config, &volumes, &pod_ip, st, "init")
                        .await;
                    if !sidecar {
                        init_blocked = true;
                        wake = wake.min(Duration::from_secs(1));
                        break;
                    }
                }
                Some(InstanceState::Running) | Some(InstanceState::Created) => {
                    if !sidecar {
                        init_blocked = true;
                        break;
                    }
                }
                Some(InstanceState::Exited) | Some(InstanceState::Unknown) => {
                    let (id, _, exit_code, ran) = latest.clone().map(|l| (l.0, l.1, l.2, l.3)).unwrap_or_default();
                    if exit_code == 0 && !sidecar {
                        continue;
                    }
                    if policy == "Never" && !sidecar {
                        st.terminal = Some("Failed");
                        break;
                    }
                    let _ = id;
                    changed_runtime = true;
                    if let Some(d) = self
                        .restart_with_backoff(
                            pod,
                            c,
                            &uid,
                            &sandbox_id,
                            &sandbox_config,
                            &volumes,
                            &pod_ip,
                            st,
                            ran,
                            "init",
                        )
                        .await
                    {
                        wake = wake.min(d);
                    }
                    init_blocked = true;
                    break;
                }
            }
        }

        if !init_blocked && st.terminal.is_none() {
            for c in &spec.containers {
                let latest = self.latest(st, &listed, &sandbox_id, &c.name).await;
                match latest {
                    None => {
                        let restarts = next_restart_count(&listed, &c.name);
                        changed_runtime = true;
                        self.start_container(
                            pod,
                            c,
                            restarts,
                            &sandbox_id,
                            &sandbox_config,
                            &volumes,
                            &pod_ip,
                            st,
                            "container",
                        )
                        .await;
                        wake = wake.min(Duration::from_secs(1));
                    }
                    Some((id, InstanceState::Running, _, _, hash)) => {
                        self.probes.ensure(&uid, c, &id, &probe_host);
                        let changed = hash.as_deref().is_some_and(|h| h != containers::container_hash(c));
                        let live = self.probes.result(&uid, &c.name, Kind::Liveness, &id) != Some(false);
                        let started = self.probes.result(&uid, &c.name, Kind::Startup, &id) != Some(false);
                        if changed || !live {
                            let why = if changed {
                                format!("Container {} definition changed, will be restarted", c.name)
                            } else {
                                format!("Container {} failed liveness probe, will be restarted", c.name)
                            };
                            self.event(pod, EventType::Normal, "Killing", &why);
                            self.kill_container(pod, c, &id, grace_period(pod), &pod_ip).await;
                            changed_runtime = true;
                            wake = wake.min(Duration::from_millis(200));
                        }
                        let _ = started;
                    }
                    Some((_, InstanceState::Created, _, _, _)) => wake = wake.min(Duration::from_secs(1)),
                    Some((_, InstanceState::Exited | InstanceState::Unknown, exit_code, ran, _)) => {
                        let restart = policy == "Always" || (policy == "OnFailure" && exit_code != 0);
                        if restart {
                            changed_runtime = true;
                            if let Some(d) = self
                                .restart_with_backoff(
                                    pod,
                                    c,
                                    &uid,
                                    &sandbox_id,
                                    &sandbox_config,
                                    &volumes,
                                    &pod_ip,
                                    st,
                                    ran,
                                    "container",
                                )
                                .await
                            {
                                wake = wake.min(d);
                            }
                        } else {
                            st.waiting.remove(&c.name);
                        }
                    }
                }
            }
        }

        let listed = if changed_runtime { None } else { Some(listed) };
        let observed = self.observe_listed(pod, st, Some(&sandbox_id), listed).await;
        // A pod whose containers all ended for good is finished.
        if st.terminal.is_none() && policy != "Always" && !init_blocked {
            let all_done = observed.iter().filter(|o| !o.1).all(|(o, _)| {
                o.latest.as_ref().is_some_and(|l| l.state == InstanceState::Exited && o.waiting.is_none())
            });
            if all_done && !spec.containers.is_empty() {
                let failed =
                    observed.iter().filter(|o| !o.1).any(|(o, _)| o.latest.as_ref().is_some_and(|l| l.exit_code != 0));
                st.terminal = Some(if failed { "Failed" } else { "Succeeded" });
            }
        }
        let status = self.compute_status(pod, st, &observed, &pod_ip, true);
        if status.phase.as_deref() == Some("Running") {
            if let Some(seen) = st.first_seen.take() {
                self.metrics.pod_started(seen);
            }
        }
        self.status.set(pod, status);
        if st.terminal.is_some() {
            self.stop_sandboxes(&uid).await;
        }
        Ok(Outcome::Again(wake))
    }

    /// Restarts an exited container unless it is in back-off; returns when to look again.
    #[allow(clippy::too_many_arguments)]
    async fn restart_with_backoff(
        &self,
        pod: &Pod,
        c: &Container,
        uid: &str,
        sandbox_id: &str,
        sandbox_config: &cri::PodSandboxConfig,
        volumes: &HashMap<String, PathBuf>,
        pod_ip: &str,
        st: &mut PodState,
        ran: Duration,
        kind: &'static str,
    ) -> Option<Duration> {
        if ran >= BACKOFF_RESET {
            st.backoff.remove(&c.name);
        }
        let now = Instant::now();
        if let Some((_, until)) = st.backoff.get(&c.name) {
            if *until > now {
                let left = *until - now;
                let n = st.backoff.get(&c.name).map(|b| b.0).unwrap_or(1);
                let d = BACKOFF_INITIAL.saturating_mul(1u32 << n.saturating_sub(1).min(10)).min(BACKOFF_MAX);
                st.waiting.insert(
                    c.name.clone(),
                    (
                        "CrashLoopBackOff".into(),
                        format!(
                            "back-off {}s restarting failed container={} pod={}({uid})",
                            d.as_secs(),
                            c.name,
                            pod_name(pod).replace('/', "_")
                        ),
                    ),
                );
                return Some(left);
            }
        }
        let (n, d) = next_backoff(st.backoff.get(&c.name));
        st.backoff.insert(c.name.clone(), (n, now + d));
        if n > 1 {
            self.event(pod, EventType::Warning, "BackOff", "Back-off restarting failed container");
        }
        let restarts = self.restart_count(uid, &c.name).await;
        self.start_container(pod, c, restarts, sandbox_id, sandbox_config, volumes, pod_ip, st, kind).await;
        Some(Duration::from_secs(1))
    }

    /// The newest instance of a container in the sandbox: id, state, exit code, how long it ran, spec hash.
    async fn latest(
        &self,
        st: &PodState,
        listed: &[cri::Container],
        sandbox_id: &str,
        name: &str,
    ) -> Option<(String, InstanceState, i32, Duration, Option<String>)> {
        let c = listed
            .iter()
            .filter(|c| c.pod_sandbox_id == sandbox_id && c.metadata.as_ref().is_some_and(|m| m.name == name))
            .max_by_key(|c| (c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0), c.created_at))?;
        let status = self.status_of(st, c).await;
        let state = instance_state(c.state);
        let exit_code = status.as_ref().map(|s| s.exit_code).unwrap_or(0);
        let ran = status
            .as_ref()
            .filter(|s| s.finished_at > s.started_at && s.started_at > 0)
            .map(|s| Duration::from_nanos((s.finished_at - s.started_at) as u64))
            .unwrap_or_default();
        Some((c.id.clone(), state, exit_code, ran, c.annotations.get(labels::CONTAINER_HASH).cloned()))
    }

    /// A container's CRI status, from the pod's cache while its listed state is unchanged.
    async fn status_of(&self, st: &PodState, x: &cri::Container) -> Option<cri::ContainerStatus> {
        let settled = x.state == cri::ContainerState::ContainerRunning as i32
            || x.state == cri::ContainerState::ContainerExited as i32;
        if settled {
            let cache = st.statuses.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((state, s)) = cache.get(&x.id) {
                if *state == x.state {
                    return Some(s.clone());
                }
            }
        }
        let s = self.runtime.container_status(&x.id).await.ok().flatten()?;
        if settled && s.state == x.state {
            st.statuses.lock().unwrap_or_else(|e| e.into_inner()).insert(x.id.clone(), (x.state, s.clone()));
        }
        Some(s)
    }

    /// The next restart count: one more than the newest instance's, across sandboxes.
    async fn restart_count(&self, uid: &str, name: &str) -> u32 {
        next_restart_count(&self.runtime.pod_containers(uid).await.unwrap_or_default(), name)
    }

    /// Pulls if needed, resolves the environment, creates and starts one container.
    #[allow(clippy::too_many_arguments)]
    async fn start_container(
        &self,
        pod: &Pod,
        c: &Container,
        restart_count: u32,
        sandbox_id: &str,
        sandbox_config: &cri::PodSandboxConfig,
        volumes: &HashMap<String, PathBuf>,
        pod_ip: &str,
        st: &mut PodState,
        container_type: &'static str,
    ) {
        let image = c.image.clone().unwrap_or_default();
        tracing::debug!(pod = %pod_name(pod), container = %c.name, restart_count, "starting container");
        if let Err((reason, message)) = self.ensure_image(pod, c, &image, st).await {
            st.waiting.insert(c.name.clone(), (reason, message));
            return;
        }
        if let Err(e) = self.verify_run_as_non_root(pod, c, &image).await {
            self.event(pod, EventType::Warning, "Failed", &format!("Error: {e}"));
            st.waiting.insert(c.name.clone(), ("CreateContainerConfigError".into(), e));
            return;
        }
        let env = match self.service_env.for_pod(pod) {
            Ok(services) => {
                containers::resolve_env(&self.client, pod, c, pod_ip, &self.host_ip, &self.settings, &services).await
            }
            Err(e) => Err(e),
        };
        let env = match env {
            Ok(env) => env,
            Err(e) => {
                self.event(pod, EventType::Warning, "Failed", &format!("Error: {e}"));
                st.waiting.insert(c.name.clone(), ("CreateContainerConfigError".into(), e));
                return;
            }
        };
        let pod_dir = self.volumes.pod_dir(&containers::pod_uid(pod));
        let inputs = ContainerInputs { restart_count, volumes, env, pod_dir: &pod_dir, container_type };
        let mut config = match containers::container_config(pod, c, inputs) {
            Ok(cfg) => cfg,
            Err(e) => {
                st.waiting.insert(c.name.clone(), ("CreateContainerConfigError".into(), e));
                return;
            }
        };
        if let Err(e) = self.devices.allocate(pod, c, &mut config).await {
            self.event(pod, EventType::Warning, "UnexpectedAdmissionError", &format!("Allocate failed: {e}"));
            st.waiting.insert(c.name.clone(), ("UnexpectedAdmissionError".into(), e.to_string()));
            return;
        }
        tracing::debug!(pod = %pod_name(pod), container = %c.name, "creating container");
        let id = match self.runtime.create_container(sandbox_id, config, sandbox_config.clone()).await {
            Ok(id) => id,
            Err(e) => {
                self.event(pod, EventType::Warning, "Failed", &format!("Error: {e}"));
                st.waiting.insert(c.name.clone(), ("CreateContainerError".into(), e.to_string()));
                return;
            }
        };
        self.event(pod, EventType::Normal, "Created", &format!("Created container: {}", c.name));
        if let Err(e) = self.runtime.start_container(&id).await {
            self.event(pod, EventType::Warning, "Failed", &format!("Error: {e}"));
            st.waiting.insert(c.name.clone(), ("RunContainerError".into(), e.to_string()));
            return;
        }
        st.waiting.remove(&c.name);
        self.event(pod, EventType::Normal, "Started", &format!("Started container {}", c.name));
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            if let Err(e) = self.run_hook(hook, c, &id, pod_ip, 30).await {
                self.event(pod, EventType::Warning, "FailedPostStartHook", &e);
                let _ = self.runtime.stop_container(&id, grace_period(pod)).await;
            }
        }
    }

    /// Upstream's `runAsNonRoot` check: the effective user (the security
    /// context's, else the image's; an image without one runs as root) must
    /// be a non-zero uid.
    async fn verify_run_as_non_root(&self, pod: &Pod, c: &Container, image: &str) -> Result<(), String> {
        let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
        let sc = c.security_context.as_ref();
        let non_root = sc.and_then(|s| s.run_as_non_root).or(psc.and_then(|p| p.run_as_non_root)).unwrap_or(false);
        if !non_root {
            return Ok(());
        }
        let who = format!(
            "pod: \"{}_{}({})\", container: {}",
            pod.metadata.name.as_deref().unwrap_or(""),
            pod.metadata.namespace.as_deref().unwrap_or(""),
            containers::pod_uid(pod),
            c.name
        );
        if let Some(uid) = sc.and_then(|s| s.run_as_user).or(psc.and_then(|p| p.run_as_user)) {
            if uid == 0 {
                return Err(format!("container's runAsUser breaks non-root policy ({who})"));
            }
            return Ok(());
        }
        let status = self.runtime.image_status(image).await.map_err(|e| format!("image status of {image}: {e}"))?;
        let (uid, username) = match status {
            Some(i) => (i.uid.map(|u| u.value), i.username),
            None => (None, String::new()),
        };
        match (uid, username.as_str()) {
            (Some(0), _) | (None, "") => Err(format!("container has runAsNonRoot and image will run as root ({who})")),
            (None, name) => Err(format!(
                "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root ({who})"
            )),
            _ => Ok(()),
        }
    }

    async fn ensure_image(
        &self,
        pod: &Pod,
        c: &Container,
        image: &str,
        st: &mut PodState,
    ) -> Result<(), (String, String)> {
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| "IfNotPresent".into());
        let present = self.runtime.image_status(image).await.ok().flatten().is_some();
        if policy == "Never" {
            if present {
                return Ok(());
            }
            let msg = format!("Container image \"{image}\" is not present with pull policy of Never");
            self.event(pod, EventType::Warning, "ErrImageNeverPull", &msg);
            return Err(("ErrImageNeverPull".into(), msg));
        }
        if present && policy == "IfNotPresent" {
            return Ok(());
        }
        if let Some((_, until, last)) = st.pull_backoff.get(&c.name) {
            if *until > Instant::now() {
                // As upstream, the message carries the last pull's error.
                let msg = format!("Back-off pulling image \"{image}\": ErrImagePull: {last}");
                return Err(("ImagePullBackOff".into(), msg));
            }
        }
        self.event(pod, EventType::Normal, "Pulling", &format!("Pulling image \"{image}\""));
        let started = Instant::now();
        let credentials = self.pull_credentials(pod, image).await;
        let result = {
            let _guard = if self.serialize_pulls { Some(self.pull_lock.lock().await) } else { None };
            self.pull_with(image, credentials).await
        };
        match result {
            Ok(_) => {
                st.pull_backoff.remove(&c.name);
                self.event(
                    pod,
                    EventType::Normal,
                    "Pulled",
                    &format!("Successfully pulled image \"{image}\" in {:.3}s", started.elapsed().as_secs_f64()),
                );
                Ok(())
            }
            Err(e) => {
                let (n, d) = next_backoff(st.pull_backoff.get(&c.name).map(|(n, until, _)| (*n, *until)).as_ref());
                let msg = format!("Failed to pull image \"{image}\": {e}");
                st.pull_backoff.insert(c.name.clone(), (n, Instant::now() + d, msg.clone()));
                self.event(pod, EventType::Warning, "Failed", &msg);
                Err(("ErrImagePull".into(), msg))
            }
        }
    }

    /// Pulls with each matching credential in turn (as upstream: the first
    /// that works wins), or anonymously when none matches.
    async fn pull_with(&self, image: &str, credentials: Vec<cri::AuthConfig>) -> crate::cri::Result<String> {
        if credentials.is_empty() {
            return self.runtime.pull_image(image, None).await;
        }
        let mut last = None;
        for auth in credentials {
            match self.runtime.pull_image(image, Some(auth)).await {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) => Err(e),
            None => self.runtime.pull_image(image, None).await,
        }
    }

    /// Credentials from the pod's `imagePullSecrets` (types
    /// kubernetes.io/dockerconfigjson and kubernetes.io/dockercfg) that
    /// match the image, most specific first.
    async fn pull_credentials(&self, pod: &Pod, image: &str) -> Vec<cri::AuthConfig> {
        let secrets = pod.spec.as_ref().and_then(|s| s.image_pull_secrets.clone()).unwrap_or_default();
        if secrets.is_empty() {
            return Vec::new();
        }
        let api: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(self.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
        let mut entries = Vec::new();
        for r in secrets {
            let secret = match api.get_opt(&r.name).await {
                Ok(Some(s)) => s,
                Ok(None) => {
                    tracing::warn!(pod = %pod_name(pod), secret = %r.name, "image pull secret not found");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(pod = %pod_name(pod), secret = %r.name, "reading image pull secret: {e}");
                    continue;
                }
            };
            let data = secret.data.unwrap_or_default();
            if let Some(json) = data.get(".dockerconfigjson") {
                entries.extend(registry_auths(&json.0, true));
            } else if let Some(json) = data.get(".dockercfg") {
                entries.extend(registry_auths(&json.0, false));
            }
        }
        matching_credentials(entries, image)
    }

    async fn run_hook(
        &self,
        hook: &LifecycleHandler,
        c: &Container,
        id: &str,
        pod_ip: &str,
        timeout: i64,
    ) -> Result<(), String> {
        if let Some(exec) = &hook.exec {
            let r = self
                .runtime
                .exec_sync(id, exec.command.clone().unwrap_or_default(), timeout)
                .await
                .map_err(|e| e.to_string())?;
            if r.exit_code != 0 {
                return Err(format!("Exec lifecycle hook ({:?}) for Container {:?} failed - error: command exited with {}, message: {:?}", exec.command.clone().unwrap_or_default(), c.name, r.exit_code, String::from_utf8_lossy(&r.stderr)));
            }
            return Ok(());
        }
        if let Some(http) = &hook.http_get {
            let port = probes::resolve_port(&http.port, c).ok_or("unknown port")?;
            let host = http.host.clone().unwrap_or_else(|| pod_ip.to_string());
            return match probes::http_get(&host, port, http.path.as_deref().unwrap_or("/"), &[]).await {
                Some(code) if (200..400).contains(&code) => Ok(()),
                other => {
                    Err(format!("HTTP lifecycle hook ({:?}) for Container {:?} failed: {other:?}", http.path, c.name))
                }
            };
        }
        if let Some(sleep) = &hook.sleep {
            tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
        }
        Ok(())
    }

    /// preStop, then SIGTERM and SIGKILL after what is left of the grace period.
    async fn kill_container(&self, pod: &Pod, c: &Container, id: &str, grace: i64, pod_ip: &str) {
        let started = Instant::now();
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
            let hook_run = self.run_hook(hook, c, id, pod_ip, grace.max(1));
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(grace.max(1) as u64), hook_run).await {
                self.event(pod, EventType::Warning, "FailedPreStopHook", &e);
            }
        }
        let left = (grace - started.elapsed().as_secs() as i64).max(2);
        if let Err(e) = self.runtime.stop_container(id, left).await {
            if !e.is_not_found() {
                tracing::warn!(container = %id, "stopping: {e}");
            }
        }
    }

    /// Stops every container (in parallel, each with the grace period), then the sandboxes, and removes them.
    pub async fn kill_pod(&self, pod: &Pod, grace: i64) {
        let uid = containers::pod_uid(pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let running: Vec<cri::Container> = self
            .runtime
            .pod_containers(&uid)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
            .collect();
        let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        let kills = running.iter().map(|rc| {
            let name = rc.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
            let c = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .find(|c| c.name == name)
                .cloned()
                .unwrap_or_default();
            let pod_ip = pod_ip.clone();
            async move {
                if !c.name.is_empty() {
                    self.event(pod, EventType::Normal, "Killing", &format!("Stopping container {}", c.name));
                }
                self.kill_container(pod, &c, &rc.id, grace, &pod_ip).await
            }
        });
        futures::future::join_all(kills).await;
        self.stop_sandboxes(&uid).await;
    }

    async fn stop_sandboxes(&self, uid: &str) {
        for s in self.runtime.pod_sandboxes(uid).await.unwrap_or_default() {
            if s.state == cri::PodSandboxState::SandboxReady as i32 {
                if let Err(e) = self.runtime.stop_pod_sandbox(&s.id).await {
                    tracing::warn!(sandbox = %s.id, "stopping sandbox: {e}");
                }
            }
        }
    }

    /// Removes what the runtime still holds of a pod that is gone.
    pub async fn remove_pod_resources(&self, uid: &str) {
        for c in self.runtime.pod_containers(uid).await.unwrap_or_default() {
            let _ = self.runtime.stop_container(&c.id, 0).await;
            let _ = self.runtime.remove_container(&c.id).await;
        }
        for s in self.runtime.pod_sandboxes(uid).await.unwrap_or_default() {
            let _ = self.runtime.stop_pod_sandbox(&s.id).await;
            let _ = self.runtime.remove_pod_sandbox(&s.id).await;
        }
        containers::remove_pod_cgroup(uid);
    }

    /// Deletes the API object once everything of the pod's has stopped (the
    /// last step of graceful deletion), with the uid as precondition.
    async fn finish_deletion(&self, pod: &Pod) {
        let uid = containers::pod_uid(pod);
        self.remove_pod_resources(&uid).await;
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
            ..Default::default()
        };
        match api.delete(pod.metadata.name.as_deref().unwrap_or(""), &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %pod_name(pod), "deleting the pod object: {e}"),
        }
    }

    fn write_etc_hosts(&self, pod: &Pod, pod_ip: &str) {
        let dir = self.volumes.pod_dir(&containers::pod_uid(pod));
        let _ = std::fs::create_dir_all(&dir);
        let spec = pod.spec.as_ref();
        let hostname = spec.and_then(|s| s.hostname.clone()).or(pod.metadata.name.clone()).unwrap_or_default();
        let mut text = String::from("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n");
        if !pod_ip.is_empty() {
            let fqdn = spec
                .and_then(|s| s.subdomain.as_ref())
                .map(|sub| {
                    format!(
                        "{hostname}.{sub}.{}.svc.{}\t",
                        pod.metadata.namespace.as_deref().unwrap_or(""),
                        self.settings.cluster_domain
                    )
                })
                .unwrap_or_default();
            text.push_str(&format!("{pod_ip}\t{fqdn}{hostname}\n"));
        }
        for alias in spec.and_then(|s| s.host_aliases.as_ref()).into_iter().flatten() {
            text.push_str(&format!(
                "\n# Entries added by HostAliases.\n{}\t{}\n",
                alias.ip,
                alias.hostnames.clone().unwrap_or_default().join("\t")
            ));
        }
        let path = dir.join("etc-hosts");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            let _ = std::fs::write(path, text);
        }
    }

    /// What the runtime holds for each container of the pod (and whether it is an init container).
    async fn observe(&self, pod: &Pod, st: &PodState, sandbox_id: Option<&str>) -> Vec<(Observed, bool)> {
        self.observe_listed(pod, st, sandbox_id, None).await
    }

    /// `observe` over a container list the caller already has (`None`: list now).
    async fn observe_listed(
        &self,
        pod: &Pod,
        st: &PodState,
        sandbox_id: Option<&str>,
        listed: Option<Vec<cri::Container>>,
    ) -> Vec<(Observed, bool)> {
        let uid = containers::pod_uid(pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let all = match listed {
            Some(all) => all,
            None => self.runtime.pod_containers(&uid).await.unwrap_or_default(),
        };
        // Statuses of containers the runtime no longer has are forgotten.
        st.statuses.lock().unwrap_or_else(|e| e.into_inner()).retain(|id, _| all.iter().any(|c| c.id == *id));
        let mut out = Vec::new();
        let specs =
            spec.init_containers.iter().flatten().map(|c| (c, true)).chain(spec.containers.iter().map(|c| (c, false)));
        for (c, init) in specs {
            let mut instances: Vec<&cri::Container> =
                all.iter().filter(|x| x.metadata.as_ref().is_some_and(|m| m.name == c.name)).collect();
            instances.sort_by_key(|x| {
                std::cmp::Reverse((x.metadata.as_ref().map(|m| m.attempt).unwrap_or(0), x.created_at))
            });
            let mut latest = None;
            let mut previous = None;
            for (i, x) in instances.iter().take(2).enumerate() {
                let inst = self.instance(st, x).await;
                if i == 0 {
                    latest = inst;
                } else {
                    previous = inst;
                }
            }
            let id = latest.as_ref().map(|l| l.id.clone()).unwrap_or_default();
            let running = latest.as_ref().is_some_and(|l| l.state == InstanceState::Running);
            let in_sandbox = sandbox_id.is_none_or(|s| instances.first().is_some_and(|x| x.pod_sandbox_id == s));
            let started = running && self.probes.result(&uid, &c.name, Kind::Startup, &id) != Some(false);
            let ready = running
                && in_sandbox
                && started
                && self.probes.result(&uid, &c.name, Kind::Readiness, &id).unwrap_or(true);
            out.push((
                Observed {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    latest,
                    previous,
                    waiting: st.waiting.get(&c.name).cloned(),
                    ready,
                    started,
                },
                init,
            ));
        }
        out
    }

    async fn instance(&self, st: &PodState, x: &cri::Container) -> Option<Instance> {
        let s = self.status_of(st, x).await?;
        let mut message = s.message.clone();
        // The termination message file wins; FallbackToLogsOnError reads the log tail.
        if let Some(path) = x.annotations.get(labels::TERMINATION_MESSAGE_PATH) {
            if let Ok(text) = std::fs::read_to_string(path) {
                if !text.is_empty() {
                    message = text.chars().take(4096).collect();
                }
            }
        }
        if message.is_empty()
            && s.exit_code != 0
            && x.annotations.get(labels::TERMINATION_MESSAGE_POLICY).map(String::as_str)
                == Some("FallbackToLogsOnError")
        {
            message = crate::logs::tail_text(&s.log_path, 80);
        }
        Some(Instance {
            id: x.id.clone(),
            image_ref: s.image_ref.clone(),
            attempt: x.annotations.get(labels::RESTART_COUNT).and_then(|v| v.parse().ok()).unwrap_or(0),
            state: instance_state(s.state),
            started_at: millis_to_time(s.started_at),
            finished_at: millis_to_time(s.finished_at),
            exit_code: s.exit_code,
            reason: s.reason.clone(),
            message,
        })
    }

    fn compute_status(
        &self,
        pod: &Pod,
        st: &PodState,
        observed: &[(Observed, bool)],
        pod_ip: &str,
        sandbox_ready: bool,
    ) -> PodStatus {
        let old = pod.status.as_ref();
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        let init: Vec<k8s_openapi::api::core::v1::ContainerStatus> =
            observed.iter().filter(|o| o.1).map(|(o, _)| status::container_status(o)).collect();
        let regular: Vec<k8s_openapi::api::core::v1::ContainerStatus> =
            observed.iter().filter(|o| !o.1).map(|(o, _)| status::container_status(o)).collect();
        let init_done = spec.init_containers.iter().flatten().all(|c| {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            init.iter().find(|s| s.name == c.name).is_some_and(|s| {
                let state = s.state.as_ref();
                if sidecar {
                    state.and_then(|s| s.running.as_ref()).is_some()
                } else {
                    state.and_then(|s| s.terminated.as_ref()).is_some_and(|t| t.exit_code == 0)
                }
            })
        });
        let phase = match st.terminal {
            Some(p) => p,
            None => status::phase(&policy, init_done, false, &regular),
        };
        let terminal = matches!(phase, "Succeeded" | "Failed");
        let unready: Vec<String> = regular.iter().filter(|c| !c.ready).map(|c| c.name.clone()).collect();
        let uninit: Vec<String> = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| {
                !init.iter().find(|s| s.name == c.name).is_some_and(|s| {
                    s.state.as_ref().and_then(|x| x.terminated.as_ref()).is_some_and(|t| t.exit_code == 0)
                        || s.state.as_ref().and_then(|x| x.running.as_ref()).is_some()
                            && c.restart_policy.as_deref() == Some("Always")
                })
            })
            .map(|c| c.name.clone())
            .collect();
        let ready = unready.is_empty() && !terminal && init_done;
        let mut conditions = vec![
            status::condition(old, "PodReadyToStartContainers", sandbox_ready && !terminal, None, None),
            status::condition(
                old,
                "Initialized",
                init_done || terminal && uninit.is_empty(),
                Some("ContainersNotInitialized"),
                Some(format!("containers with incomplete status: [{}]", uninit.join(" "))),
            ),
            status::condition(
                old,
                "Ready",
                ready,
                Some(if terminal { "PodCompleted" } else { "ContainersNotReady" }),
                Some(format!("containers with unready status: [{}]", unready.join(" "))),
            ),
            status::condition(
                old,
                "ContainersReady",
                ready,
                Some(if terminal { "PodCompleted" } else { "ContainersNotReady" }),
                Some(format!("containers with unready status: [{}]", unready.join(" "))),
            ),
        ];
        if let Some(scheduled) =
            old.and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        {
            conditions.push(scheduled.clone());
        }
        let (pod_ip_field, pod_ips) = status::pod_ips(pod_ip);
        PodStatus {
            phase: Some(phase.into()),
            conditions: Some(conditions),
            host_ip: Some(self.host_ip.clone()),
            host_ips: status::host_ips(&self.host_ip),
            pod_ip: pod_ip_field.or(old.and_then(|s| s.pod_ip.clone())),
            pod_ips: pod_ips.or(old.and_then(|s| s.pod_ips.clone())),
            start_time: st.start_time.clone(),
            init_container_statuses: if init.is_empty() { None } else { Some(init) },
            container_statuses: Some(regular),
            qos_class: Some(containers::qos_class(pod).into()),
            ..Default::default()
        }
    }
}

fn ready_config(sandboxes: &[cri::PodSandbox], id: &str) -> Option<u32> {
    sandboxes.iter().find(|s| s.id == id).and_then(|s| s.metadata.as_ref()).map(|m| m.attempt)
}

/// The next restart count: one more than the newest instance's, across sandboxes.
fn next_restart_count(listed: &[cri::Container], name: &str) -> u32 {
    listed
        .iter()
        .filter(|c| c.metadata.as_ref().is_some_and(|m| m.name == name))
        .filter_map(|c| c.annotations.get(labels::RESTART_COUNT).and_then(|v| v.parse::<u32>().ok()))
        .max()
        .map(|n| n + 1)
        .unwrap_or(0)
}

fn instance_state(state: i32) -> InstanceState {
    match state {
        x if x == cri::ContainerState::ContainerRunning as i32 => InstanceState::Running,
        x if x == cri::ContainerState::ContainerExited as i32 => InstanceState::Exited,
        x if x == cri::ContainerState::ContainerCreated as i32 => InstanceState::Created,
        _ => InstanceState::Unknown,
    }
}

pub fn pod_name(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""))
}

/// The (registry key, credentials) pairs of a docker config: `{"auths": {...}}`
/// (.dockerconfigjson) or the bare map (.dockercfg). An entry's `auth` is
/// base64 of `user:password`.
fn registry_auths(data: &[u8], wrapped: bool) -> Vec<(String, cri::AuthConfig)> {
    let Ok(config) = serde_json::from_slice::<serde_json::Value>(data) else { return Vec::new() };
    let map = if wrapped { &config["auths"] } else { &config };
    let mut out = Vec::new();
    for (key, entry) in map.as_object().into_iter().flatten() {
        let mut username = entry["username"].as_str().unwrap_or("").to_string();
        let mut password = entry["password"].as_str().unwrap_or("").to_string();
        let auth = entry["auth"].as_str().unwrap_or("");
        if username.is_empty() && !auth.is_empty() {
            use base64::Engine;
            if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(auth) {
                if let Some((u, p)) = String::from_utf8_lossy(&decoded).split_once(':') {
                    username = u.to_string();
                    password = p.to_string();
                }
            }
        }
        // No server address: containerd would ignore credentials whose
        // address it cannot parse as a URL (a bare `host:port` key).
        out.push((
            key.clone(),
            cri::AuthConfig {
                username,
                password,
                identity_token: entry["identitytoken"].as_str().unwrap_or("").to_string(),
                registry_token: entry["registrytoken"].as_str().unwrap_or("").to_string(),
                ..Default::default()
            },
        ));
    }
    out
}

/// An image or registry key as (host, path): `docker.io` for Docker Hub.
fn registry_location(s: &str, is_key: bool) -> (String, String) {
    let s = s.trim_start_matches("https://").trim_start_matches("http://");
    let (first, rest) = match s.split_once('/') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    // An image's first component is a registry only if it looks like a host.
    let explicit_host =
        is_key || s.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let (host, mut path) =
        if explicit_host { (first.to_string(), rest.to_string()) } else { ("docker.io".to_string(), s.to_string()) };
    if !is_key && !explicit_host && !path.contains('/') {
        path = format!("library/{path}");
    }
    let host = match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_string(),
        _ => host,
    };
    path = path.trim_end_matches('/').to_string();
    if is_key {
        for v in ["v1", "v2"] {
            if path == v {
                path.clear();
            } else if let Some(p) = path.strip_prefix(&format!("{v}/")) {
                path = p.to_string();
            }
        }
    }
    (host, path)
}

/// `*` globbing within one DNS label, as upstream matches registry keys.
fn glob_label(pattern: &str, label: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == label,
        Some((prefix, rest)) => {
            let Some(tail) = label.strip_prefix(prefix) else { return false };
            (0..=tail.len()).filter(|i| tail.is_char_boundary(*i)).any(|i| glob_label(rest, &tail[i..]))
        }
    }
}

/// Whether a registry key (`host[:port][/path]`, host labels may be globs)
/// covers the image: same number of labels each matching, same port, and
/// the key's path a prefix of the image's.
fn registry_matches(key: &str, image: &str) -> bool {
    let (key_host, key_path) = registry_location(key, true);
    let (image_host, image_path) = registry_location(image, false);
    let split = |h: &str| match h.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => (h.to_string(), String::new()),
    };
    let ((kh, kp), (ih, ip)) = (split(&key_host), split(&image_host));
    if kp != ip {
        return false;
    }
    let (kl, il): (Vec<&str>, Vec<&str>) = (kh.split('.').collect(), ih.split('.').collect());
    if kl.len() != il.len() || !kl.iter().zip(&il).all(|(k, i)| glob_label(k, i)) {
        return false;
    }
    key_path.is_empty() || image_path == key_path || image_path.starts_with(&format!("{key_path}/"))
}

/// The credentials whose keys match the image, longest (most specific) key first.
fn matching_credentials(entries: Vec<(String, cri::AuthConfig)>, image: &str) -> Vec<cri::AuthConfig> {
    let repo = image.split('@').next().unwrap_or(image);
    let mut matched: Vec<(String, cri::AuthConfig)> =
        entries.into_iter().filter(|(key, _)| registry_matches(key, repo)).collect();
    matched.sort_by_key(|(key, _)| std::cmp::Reverse(key.len()));
    matched.into_iter().map(|(_, auth)| auth).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_keys_match_images_as_upstream() {
        assert!(registry_matches("127.0.0.1:5000", "127.0.0.1:5000/rustkube/testimage:latest"));
        assert!(registry_matches("http://127.0.0.1:5000", "127.0.0.1:5000/rustkube/testimage"));
        assert!(!registry_matches("127.0.0.1:5001", "127.0.0.1:5000/rustkube/testimage"));
        assert!(registry_matches("https://index.docker.io/v1/", "busybox"));
        assert!(registry_matches("docker.io", "library/busybox"));
        assert!(registry_matches("docker.io/library", "busybox:1.36"));
        assert!(!registry_matches("quay.io", "busybox"));
        assert!(registry_matches("*.example.com", "r.example.com/app"));
        assert!(!registry_matches("*.example.com", "a.b.example.com/app"));
        assert!(registry_matches("r.example.com/team", "r.example.com/team/app:1"));
        assert!(!registry_matches("r.example.com/team", "r.example.com/teammate/app"));
    }

    #[test]
    fn docker_configs_give_credentials() {
        let json = br#"{"auths": {"r.example.com": {"auth": "dXNlcjpwYXNz"}, "r.example.com/team": {"username": "t", "password": "p"}}}"#;
        let creds = matching_credentials(registry_auths(json, true), "r.example.com/team/app:1");
        let users: Vec<&str> = creds.iter().map(|c| c.username.as_str()).collect();
        assert_eq!(users, ["t", "user"]);
        assert_eq!(creds[1].password, "pass");
        let legacy = br#"{"r.example.com": {"auth": "dXNlcjpwYXNz"}}"#;
        assert_eq!(matching_credentials(registry_auths(legacy, false), "r.example.com/app").len(), 1);
        assert!(matching_credentials(registry_auths(json, true), "other.io/app").is_empty());
    }
}
