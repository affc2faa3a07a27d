//! Pod status: computed from the runtime's truth (what the pod worker saw)
//! and sent to the apiserver by one writer that coalesces updates per pod, so
//! a burst of changes costs one patch per pod and no status is ever older
//! than the last one computed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP,
    Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::Notify;

/// One container as the worker saw it in the runtime, latest instance first.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub name: String,
    pub image: String,
    pub latest: Option<Instance>,
    pub previous: Option<Instance>,
    /// Why the container is waiting, when the worker holds it back (CrashLoopBackOff, ErrImagePull...).
    pub waiting: Option<(String, String)>,
    pub ready: bool,
    pub started: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Instance {
    pub id: String,
    pub image_ref: String,
    pub attempt: u32,
    pub state: InstanceState,
    pub started_at: Option<Time>,
    pub finished_at: Option<Time>,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InstanceState {
    #[default]
    Created,
    Running,
    Exited,
    Unknown,
}

fn terminated(i: &Instance) -> ContainerStateTerminated {
    ContainerStateTerminated {
        container_id: Some(format!("containerd://{}", i.id)),
        exit_code: i.exit_code,
        reason: Some(if !i.reason.is_empty() && i.reason != "Completed" && i.reason != "Error" {
            i.reason.clone()
        } else if i.exit_code == 0 {
            "Completed".into()
        } else {
            "Error".into()
        }),
        message: Some(i.message.clone()).filter(|m| !m.is_empty()),
        started_at: i.started_at.clone(),
        finished_at: i.finished_at.clone(),
        signal: None,
    }
}

fn waiting(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: Some(message.to_string()).filter(|m| !m.is_empty()),
        }),
        ..Default::default()
    }
}

pub fn container_status(o: &Observed) -> ContainerStatus {
    let (state, last) = match (&o.latest, &o.waiting) {
        (Some(l), Some((reason, message))) if l.state == InstanceState::Exited => {
            (waiting(reason, message), Some(ContainerState { terminated: Some(terminated(l)), ..Default::default() }))
        }
        (Some(l), _) => {
            let last = o
                .previous
                .as_ref()
                .filter(|p| p.state == InstanceState::Exited)
                .map(|p| ContainerState { terminated: Some(terminated(p)), ..Default::default() });
            let state = match l.state {
                InstanceState::Running => ContainerState {
                    running: Some(ContainerStateRunning { started_at: l.started_at.clone() }),
                    ..Default::default()
                },
                InstanceState::Exited => ContainerState { terminated: Some(terminated(l)), ..Default::default() },
                InstanceState::Created | InstanceState::Unknown => waiting("ContainerCreating", ""),
            };
            (state, last)
        }
        (None, Some((reason, message))) => (waiting(reason, message), None),
        (None, None) => (waiting("ContainerCreating", ""), None),
    };
    ContainerStatus {
        name: o.name.clone(),
        image: o.image.clone(),
        image_id: o.latest.as_ref().map(|l| l.image_ref.clone()).unwrap_or_default(),
        container_id: o.latest.as_ref().map(|l| format!("containerd://{}", l.id)),
        ready: o.ready,
        started: Some(o.started),
        restart_count: o.latest.as_ref().map(|l| l.attempt as i32).unwrap_or(0),
        state: Some(state),
        last_state: last.or(Some(ContainerState::default())),
        ..Default::default()
    }
}

/// Upstream's `getPhase` over the regular containers, given the init containers' outcome.
pub fn phase(policy: &str, init_done: bool, init_failed: bool, containers: &[ContainerStatus]) -> &'static str {
    if init_failed {
        return "Failed";
    }
    if !init_done {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in containers {
        let s = c.state.as_ref();
        if s.and_then(|s| s.running.as_ref()).is_some() {
            running += 1;
        } else if let Some(t) = s.and_then(|s| s.terminated.as_ref()) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s.and_then(|s| s.waiting.as_ref()).is_some() {
            if c.last_state.as_ref().and_then(|l| l.terminated.as_ref()).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            waiting += 1;
        }
    }
    let failed = stopped - succeeded;
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match policy {
            "Always" => "Running",
            "OnFailure" if failed > 0 => "Running",
            _ if failed > 0 => "Failed",
            _ => "Succeeded",
        }
    } else {
        "Pending"
    }
}

pub fn condition(
    old: Option<&PodStatus>,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let previous = old.and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == type_));
    let transition = previous.filter(|p| p.status == status).and_then(|p| p.last_transition_time.clone());
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: if ok { None } else { reason.map(str::to_string) },
        message: if ok { None } else { message },
        last_transition_time: Some(transition.unwrap_or_else(|| Time(jiff::Timestamp::now()))),
        last_probe_time: None,
        observed_generation: None,
    }
}

pub fn pod_ips(ip: &str) -> (Option<String>, Option<Vec<PodIP>>) {
    if ip.is_empty() {
        (None, None)
    } else {
        (Some(ip.into()), Some(vec![PodIP { ip: ip.into() }]))
    }
}

pub fn host_ips(ip: &str) -> Option<Vec<HostIP>> {
    Some(vec![HostIP { ip: ip.into() }])
}

struct Pending {
    namespace: String,
    name: String,
    uid: String,
    status: PodStatus,
}

/// Sends computed statuses to the apiserver.
pub struct StatusManager {
    client: kube::Client,
    pending: Mutex<HashMap<String, Pending>>,
    /// The last status sent per pod uid, to skip patches that change nothing.
    sent: Mutex<HashMap<String, serde_json::Value>>,
    notify: Notify,
    /// Static pods report on their mirror pods: static pod uid → mirror pod uid.
    mirrors: Mutex<HashMap<String, String>>,
}

impl StatusManager {
    pub fn new(client: kube::Client) -> Arc<StatusManager> {
        let m = Arc::new(StatusManager {
            client,
            pending: Mutex::new(HashMap::new()),
            sent: Mutex::new(HashMap::new()),
            notify: Notify::new(),
            mirrors: Mutex::new(HashMap::new()),
        });
        tokio::spawn(m.clone().run());
        m
    }

    pub fn set(&self, pod: &Pod, status: PodStatus) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let value = serde_json::to_value(&status).unwrap_or_default();
        if self.sent.lock().unwrap_or_else(|e| e.into_inner()).get(&uid) == Some(&value) {
            return;
        }
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(
            uid.clone(),
            Pending {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid,
                status,
            },
        );
        self.notify.notify_one();
    }

    /// Where a static pod's status goes: its mirror pod (a new one has no status: send again).
    pub fn set_mirror(&self, static_uid: &str, mirror_uid: Option<&str>) {
        let mut mirrors = self.mirrors.lock().unwrap_or_else(|e| e.into_inner());
        match mirror_uid {
            Some(m) => mirrors.insert(static_uid.to_string(), m.to_string()),
            None => mirrors.remove(static_uid),
        };
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).remove(static_uid);
    }

    pub fn forget(&self, uid: &str) {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
    }

    async fn run(self: Arc<Self>) {
        use futures::StreamExt;
        loop {
            self.notify.notified().await;
            let batch: Vec<Pending> =
                self.pending.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, p)| p).collect();
            futures::stream::iter(batch)
                .for_each_concurrent(8, |p| {
                    let this = self.clone();
                    async move { this.send(p).await }
                })
                .await;
        }
    }

    async fn send(&self, p: Pending) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &p.namespace);
        let value = serde_json::to_value(&p.status).unwrap_or_default();
        // A merge patch with the uid as precondition: a recreated pod of the same name is left alone.
        let guard = self.mirrors.lock().unwrap_or_else(|e| e.into_inner()).get(&p.uid).cloned();
        let patch = serde_json::json!({"metadata": {"uid": guard.as_ref().unwrap_or(&p.uid)}, "status": value});
        match api.patch_status(&p.name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => {
                self.sent.lock().unwrap_or_else(|e| e.into_inner()).insert(p.uid, value);
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 || s.code == 422 => {}
            Err(e) => {
                tracing::warn!(pod = %format!("{}/{}", p.namespace, p.name), "updating pod status: {e}");
                // Retry with the newest status on the next change or resync.
            }
        }
    }
}
