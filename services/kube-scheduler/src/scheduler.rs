//! The scheduling loop: pop the most important pending pod, filter and score
//! nodes against the cache, assume the pod onto the best node and bind it in
//! the background; on failure record why (condition and event), try
//! preemption, and park the pod in the queue until something changes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use component_base::events::{object_ref, EventType, Recorder};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::{CSINode, StorageClass};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::Semaphore;

use crate::cache::{Cache, PodInfo};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::plugins::{Profile, Unfit};
use crate::preemption::{self, Outcome};
use crate::queue::{pod_key, SchedulingQueue};

/// Bindings in flight at once; beyond this the loop waits (back-pressure on the apiserver).
const MAX_BINDINGS_IN_FLIGHT: usize = 256;

pub struct Scheduler {
    client: kube::Client,
    cache: Mutex<Cache>,
    queue: SchedulingQueue,
    profiles: HashMap<String, Profile>,
    percentage_of_nodes_to_score: u32,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    next_start: AtomicUsize,
    bindings: Arc<Semaphore>,
}

/// Why no node fits, as upstream's `FitError`.
struct FitError {
    nodes: usize,
    statuses: HashMap<String, Unfit>,
    /// The same reason for every node (PreFilter rejected the pod).
    prefilter: Option<Unfit>,
}

impl FitError {
    /// Whether pod (anti-)affinity or topology spreading kept the pod out of a
    /// node: then a pod bound or relabelled elsewhere may make it fit.
    fn waits_for_pods(&self) -> bool {
        use crate::plugins::{interpod, spread};
        const REASONS: [&str; 4] = [
            interpod::REASON_AFFINITY,
            interpod::REASON_ANTI_AFFINITY,
            interpod::REASON_EXISTING_ANTI_AFFINITY,
            spread::REASON_SPREAD,
        ];
        self.statuses
            .values()
            .chain(self.prefilter.as_ref())
            .any(|u| u.reasons.iter().any(|r| REASONS.contains(&r.as_str())))
    }

    fn message(&self, preemption: Option<&str>) -> String {
        if self.nodes == 0 {
            return "no nodes available to schedule pods".into();
        }
        // A PreFilter rejection is the same for every node and is given without counts.
        let reasons = match &self.prefilter {
            Some(u) => u.reasons.join(", "),
            None => {
                let mut counts: HashMap<&str, usize> = HashMap::new();
                for unfit in self.statuses.values() {
                    for r in &unfit.reasons {
                        *counts.entry(r).or_default() += 1;
                    }
                }
                let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
                parts.sort();
                parts.join(", ")
            }
        };
        let mut msg = format!("0/{} nodes are available: {reasons}.", self.nodes);
        if let Some(p) = preemption {
            msg.push_str(" preemption: ");
            msg.push_str(p);
        }
        msg
    }
}

fn preemption_message(nodes: usize, reasons: &HashMap<String, usize>) -> String {
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!("0/{nodes} nodes are available: {}.", parts.join(", "))
}

/// upstream's `numFeasibleNodesToFind`: all nodes below 100, else an adaptive share (at least 100).
pub fn feasible_nodes_to_find(nodes: usize, percentage: u32) -> usize {
    if nodes < 100 || percentage >= 100 {
        return nodes;
    }
    let pct = if percentage == 0 { 50usize.saturating_sub(nodes / 125).max(5) } else { percentage as usize };
    (nodes * pct / 100).max(100)
}

impl Scheduler {
    pub fn new(client: kube::Client, settings: &Settings, metrics: Arc<Metrics>) -> Arc<Scheduler> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string());
        Arc::new(Scheduler {
            recorder: Recorder::new(client.clone(), "default-scheduler", host),
            client,
            cache: Mutex::new(Cache::default()),
            queue: SchedulingQueue::new(
                settings.initial_backoff,
                settings.max_backoff,
                settings.max_in_unschedulable_pods,
            ),
            profiles: settings.profiles.iter().map(|p| (p.scheduler_name.clone(), p.clone())).collect(),
            percentage_of_nodes_to_score: settings.percentage_of_nodes_to_score,
            metrics,
            next_start: AtomicUsize::new(0),
            bindings: Arc::new(Semaphore::new(MAX_BINDINGS_IN_FLIGHT)),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches nodes, pods and PDBs, then schedules until the process ends.
    pub async fn run(self: Arc<Self>) -> anyhow::Result<()> {
        let (nodes_synced_tx, nodes_synced) = tokio::sync::oneshot::channel();
        let (pods_synced_tx, pods_synced) = tokio::sync::oneshot::channel();
        // Like upstream, no pod is scheduled before every informer has listed
        // (a budget missed at startup would let preemption ignore it).
        let (mirrored_tx, mirrored): (Vec<_>, Vec<_>) = (0..5).map(|_| tokio::sync::oneshot::channel()).unzip();
        let mut mirrored_tx = mirrored_tx.into_iter().map(Some);
        let mut next = || mirrored_tx.next().flatten();
        let watches = futures::future::try_join5(
            self.clone().watch_nodes(nodes_synced_tx),
            self.clone().watch_pods(pods_synced_tx),
            self.clone().mirror::<PodDisruptionBudget>(|c| &mut c.pdbs, next()),
            self.clone().mirror::<PersistentVolumeClaim>(|c| &mut c.volumes.claims, next()),
            futures::future::try_join3(
                self.clone().mirror::<PersistentVolume>(|c| &mut c.volumes.volumes, next()),
                self.clone().mirror::<StorageClass>(|c| &mut c.volumes.classes, next()),
                self.clone().mirror::<CSINode>(|c| &mut c.volumes.csinodes, next()),
            ),
        );
        let scheduling = async {
            let _ = nodes_synced.await;
            let _ = pods_synced.await;
            for synced in mirrored {
                let _ = synced.await;
            }
            tracing::info!("caches synced; scheduling");
            let flusher = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    flusher.queue.flush();
                    flusher.metrics.set_pending(flusher.queue.depths());
                }
            });
            loop {
                let pod = self.queue.pop().await;
                self.clone().schedule_one(pod).await;
            }
        };
        tokio::select! {
            r = watches => r.map(|_| ()),
            r = scheduling => r,
        }
    }

    async fn watch_nodes(self: Arc<Self>, synced: tokio::sync::oneshot::Sender<()>) -> anyhow::Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
        let mut synced = Some(synced);
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(event) = stream.try_next().await? {
            match event {
                Event::Init => seen.clear(),
                Event::InitApply(node) => {
                    seen.insert(node.metadata.name.clone().unwrap_or_default());
                    self.node_changed(node);
                }
                Event::InitDone => {
                    let gone: Vec<String> = {
                        let cache = self.cache();
                        cache.node_names().iter().filter(|n| !seen.contains(*n)).cloned().collect()
                    };
                    for name in gone {
                        self.cache().remove_node(&name);
                    }
                    self.queue.move_all_to_active();
                    if let Some(tx) = synced.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Apply(node) => self.node_changed(node),
                Event::Delete(node) => self.cache().remove_node(node.metadata.name.as_deref().unwrap_or("")),
            }
        }
        Ok(())
    }

    fn node_changed(&self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let changed = {
            let mut cache = self.cache();
            let before = cache.node(&name).and_then(|n| n.node.as_ref()).map(|n| scheduling_view(n));
            let after = scheduling_view(&node);
            cache.set_node(Arc::new(node));
            before.as_ref() != Some(&after)
        };
        if changed {
            self.queue.move_all_to_active();
        }
    }

    async fn watch_pods(self: Arc<Self>, synced: tokio::sync::oneshot::Sender<()>) -> anyhow::Result<()> {
        let api: Api<Pod> = Api::all(self.client.clone());
        let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
        let mut synced = Some(synced);
        let mut seen: HashSet<String> = HashSet::new();
        let mut seen_pending: HashSet<String> = HashSet::new();
        while let Some(event) = stream.try_next().await? {
            match event {
                Event::Init => {
                    seen.clear();
                    seen_pending.clear();
                }
                Event::InitApply(pod) => {
                    seen.insert(pod.metadata.uid.clone().unwrap_or_default());
                    seen_pending.insert(pod_key(&pod));
                    self.pod_changed(pod);
                }
                Event::InitDone => {
                    self.cache().retain_pods(|uid| seen.contains(uid));
                    self.queue.retain(|key| seen_pending.contains(key));
                    if let Some(tx) = synced.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Apply(pod) => self.pod_changed(pod),
                Event::Delete(pod) => {
                    self.queue.delete(&pod_key(&pod));
                    let removed = self.cache().remove_pod(pod.metadata.uid.as_deref().unwrap_or(""));
                    if removed.is_some() {
                        self.queue.move_all_to_active();
                    }
                }
            }
        }
        Ok(())
    }

    fn pod_changed(&self, pod: Pod) {
        let pod = crate::cache::trim_pod(pod);
        let key = pod_key(&pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let node = spec.and_then(|s| s.node_name.as_deref()).unwrap_or("");
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        let terminal = phase == "Succeeded" || phase == "Failed";
        if !node.is_empty() {
            self.queue.delete(&key);
            if terminal {
                if self.cache().remove_pod(&uid).is_some() {
                    self.queue.move_all_to_active();
                }
            } else {
                // upstream's AssignedPodAdd (new to the cache, or only assumed so far)
                // and AssignedPodUpdate (labels changed) can satisfy pod affinity or spreading.
                let added_or_relabelled = {
                    let mut cache = self.cache();
                    let before = if cache.is_assumed(&uid) { None } else { cache.pod(&uid).cloned() };
                    let relevant = before.is_none_or(|b| b.pod.metadata.labels != pod.metadata.labels);
                    cache.set_bound_pod(Arc::new(pod));
                    relevant
                };
                if added_or_relabelled {
                    self.queue.move_pod_waiters_to_active();
                }
            }
            return;
        }
        let ours =
            self.profiles.contains_key(spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or("default-scheduler"));
        let gated = spec.and_then(|s| s.scheduling_gates.as_ref()).is_some_and(|g| !g.is_empty());
        if !ours || terminal || pod.metadata.deletion_timestamp.is_some() || gated {
            self.queue.delete(&key);
            return;
        }
        if self.cache().is_assumed(&uid) {
            return;
        }
        self.queue.add_or_update(Arc::new(pod));
    }

    /// Mirrors a kind into a map of the cache (keyed namespace/name) and
    /// retries unschedulable pods when it changes (a PDB, claim, volume, class or
    /// CSINode), signalling `synced` after the first complete list.
    async fn mirror<K>(
        self: Arc<Self>,
        field: fn(&mut Cache) -> &mut HashMap<String, Arc<K>>,
        mut synced: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> anyhow::Result<()>
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
        let mut relisted: HashMap<String, Arc<K>> = HashMap::new();
        while let Some(event) = stream.try_next().await? {
            let key = |o: &K| object_key(o.meta());
            // Only a change of the mirrored set retries pods: a relist still going changes nothing.
            let changed = {
                let mut cache = self.cache();
                let map = field(&mut cache);
                match event {
                    Event::Init => {
                        relisted.clear();
                        false
                    }
                    Event::InitApply(o) => {
                        relisted.insert(key(&o), Arc::new(o));
                        false
                    }
                    Event::InitDone => {
                        *map = std::mem::take(&mut relisted);
                        if let Some(tx) = synced.take() {
                            let _ = tx.send(());
                        }
                        true
                    }
                    Event::Apply(o) => {
                        map.insert(key(&o), Arc::new(o));
                        true
                    }
                    Event::Delete(o) => map.remove(&key(&o)).is_some(),
                }
            };
            if changed {
                self.queue.move_all_to_active();
            }
        }
        Ok(())
    }

    /// One scheduling attempt.
    async fn schedule_one(self: Arc<Self>, pod: Arc<Pod>) {
        let start = Instant::now();
        let key = pod_key(&pod);
        let profile_name =
            pod.spec.as_ref().and_then(|s| s.scheduler_name.clone()).unwrap_or_else(|| "default-scheduler".into());
        let Some(profile) = self.profiles.get(&profile_name) else {
            self.queue.delete(&key);
            return;
        };
        let info = Arc::new(PodInfo::new(pod.clone()));
        let decision = {
            let mut cache = self.cache();
            match self.find_node(profile, &info, &cache) {
                Ok(node) => {
                    cache.assume(info.clone(), &node);
                    Ok(node)
                }
                Err(fit) => {
                    let pdbs: Vec<Arc<PodDisruptionBudget>> = cache.pdbs.values().cloned().collect();
                    let outcome = if fit.prefilter.is_some() {
                        Outcome::NoCandidate([(preemption::NOT_HELPFUL.to_string(), fit.nodes)].into())
                    } else {
                        preemption::find(profile, &info, &cache, &fit.statuses, &pdbs)
                    };
                    Err((fit, outcome))
                }
            }
        };
        match decision {
            Ok(node) => {
                // The pod stays in flight in the queue until the binding ends.
                let permit = self.bindings.clone().acquire_owned().await;
                let this = self.clone();
                tokio::spawn(async move {
                    this.bind(info, node, &profile_name, start).await;
                    drop(permit);
                });
            }
            Err((fit, outcome)) => {
                let (preemption_msg, nominate) = match outcome {
                    Outcome::Preempt(c) => (None, Some(c)),
                    Outcome::NotEligible(reason) => (reason, None),
                    Outcome::NoCandidate(reasons) => (Some(preemption_message(fit.nodes, &reasons)), None),
                };
                let message = fit.message(preemption_msg.as_deref());
                self.queue.unschedulable(&key, fit.waits_for_pods());
                self.metrics.attempt(&profile_name, "unschedulable", start.elapsed());
                tracing::debug!(pod = %key, "{message}");
                let this = self.clone();
                tokio::spawn(async move { this.record_failure(&pod, &message, nominate).await });
            }
        }
    }

    fn find_node(&self, profile: &Profile, pod: &PodInfo, cache: &Cache) -> Result<String, FitError> {
        let names = cache.node_names();
        let n = names.len();
        let mut fit = FitError { nodes: n, statuses: HashMap::new(), prefilter: None };
        if n == 0 {
            return Err(fit);
        }
        let state = match profile.prepare(pod, cache) {
            Ok(s) => s,
            Err(u) => {
                fit.prefilter = Some(u);
                return Err(fit);
            }
        };
        let percentage = profile.percentage_of_nodes_to_score.unwrap_or(self.percentage_of_nodes_to_score);
        let wanted = feasible_nodes_to_find(n, percentage);
        let start = self.next_start.load(Ordering::Relaxed) % n;
        let mut feasible = Vec::with_capacity(wanted.min(n));
        let mut processed = 0;
        for i in 0..n {
            processed = i + 1;
            let Some(node) = cache.node(&names[(start + i) % n]) else { continue };
            match profile.filter(&state, node) {
                Ok(()) => {
                    feasible.push(node);
                    if feasible.len() >= wanted {
                        break;
                    }
                }
                Err(u) => {
                    fit.statuses.insert(node.name.clone(), u);
                }
            }
        }
        self.next_start.store((start + processed) % n, Ordering::Relaxed);
        match feasible.len() {
            0 => Err(fit),
            1 => Ok(feasible[0].name.clone()),
            _ => {
                let scores = profile.score(&state, &feasible, cache);
                Ok(select_host(&feasible.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), &scores))
            }
        }
    }

    async fn bind(&self, info: Arc<PodInfo>, node: String, profile: &str, start: Instant) {
        let name = info.pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &info.namespace);
        let binding = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": info.namespace, "uid": info.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        match api.create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding).await {
            Ok(_) => {
                self.queue.done(&info.key());
                self.metrics.attempt(profile, "scheduled", start.elapsed());
                tracing::debug!(pod = %info.key(), %node, "bound");
                self.recorder.event(
                    object_ref(info.pod.as_ref()),
                    EventType::Normal,
                    "Scheduled",
                    &format!("Successfully assigned {} to {node}", info.key()),
                );
            }
            Err(e) => {
                // A failed binding forgets the assumption: the node's room is free again,
                // which may let unschedulable pods fit (upstream moves them as on AssignedPodDelete).
                self.cache().forget(&info.uid);
                self.queue.move_all_to_active();
                self.metrics.attempt(profile, "error", start.elapsed());
                match &e {
                    // Gone, or bound by someone else: the watch tells the rest.
                    kube::Error::Api(s) if s.code == 404 || s.code == 409 => self.queue.done(&info.key()),
                    _ => {
                        tracing::warn!(pod = %info.key(), %node, "binding failed: {e}");
                        // Back to the queue with its attempts counted: it waits out its backoff.
                        self.queue.error(&info.key());
                        self.recorder.event(
                            object_ref(info.pod.as_ref()),
                            EventType::Warning,
                            "FailedScheduling",
                            &format!("Binding rejected: {e}"),
                        );
                    }
                }
            }
        }
    }

    /// Sets `PodScheduled=False` with the reason, emits `FailedScheduling`,
    /// and carries out a preemption: victims deleted, the node nominated.
    async fn record_failure(&self, pod: &Pod, message: &str, preemption: Option<preemption::Candidate>) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        self.recorder.event(object_ref(pod), EventType::Warning, "FailedScheduling", message);
        let nominated = preemption.as_ref().map(|c| c.node.clone());
        if let Some(c) = &preemption {
            self.metrics.preemption(c.victims.len());
            for victim in &c.victims {
                let vapi: Api<Pod> = Api::namespaced(self.client.clone(), &victim.namespace);
                let vname = victim.pod.metadata.name.clone().unwrap_or_default();
                let condition = serde_json::json!({"status": {"conditions": [{
                    "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                    "message": format!("default-scheduler: preempting to accommodate a higher priority pod"),
                    "lastTransitionTime": jiff::Timestamp::now().to_string(),
                }]}});
                let _ = vapi.patch_status(&vname, &PatchParams::default(), &Patch::Strategic(condition)).await;
                match vapi.delete(&vname, &DeleteParams::default()).await {
                    Ok(_) => self.recorder.event(
                        object_ref(victim.pod.as_ref()),
                        EventType::Normal,
                        "Preempted",
                        &format!("Preempted by pod {} on node {}", pod.metadata.uid.as_deref().unwrap_or(""), c.node),
                    ),
                    Err(e) => tracing::warn!(victim = %victim.key(), "deleting a preemption victim: {e}"),
                }
            }
        }
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let unchanged = current.is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message))
            && nominated.is_none();
        if unchanged {
            return;
        }
        let mut status = serde_json::json!({"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
            "lastProbeTime": null, "lastTransitionTime": jiff::Timestamp::now().to_string(),
        }]});
        if let Some(node) = nominated {
            status["nominatedNodeName"] = serde_json::Value::String(node);
        }
        let patch = serde_json::json!({ "status": status });
        if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch)).await {
            tracing::debug!(pod = %format!("{namespace}/{name}"), "updating the PodScheduled condition: {e}");
        }
    }
}

/// `namespace/name`, or `name` for cluster-scoped objects.
fn object_key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    match meta.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or("")),
        None => meta.name.clone().unwrap_or_default(),
    }
}

/// What about a node matters for placement; heartbeats alone do not requeue anything.
fn scheduling_view(node: &Node) -> serde_json::Value {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone());
    serde_json::json!({
        "labels": node.metadata.labels,
        "taints": node.spec.as_ref().and_then(|s| s.taints.clone()),
        "unschedulable": node.spec.as_ref().and_then(|s| s.unschedulable),
        "allocatable": node.status.as_ref().and_then(|s| s.allocatable.clone()),
        "images": node.status.as_ref().and_then(|s| s.images.as_ref()).map(|i| i.len()),
        "ready": ready,
    })
}

/// The highest score wins; ties are broken at random (reservoir sampling), as upstream does.
fn select_host(names: &[&str], scores: &[i64]) -> String {
    let mut best = 0;
    let mut ties = 0u64;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(1)
        | 1;
    for i in 0..names.len() {
        if i == 0 || scores[i] > scores[best] {
            best = i;
            ties = 1;
        } else if scores[i] == scores[best] {
            ties += 1;
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if seed.is_multiple_of(ties) {
                best = i;
            }
        }
    }
    names[best].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_share_of_nodes() {
        assert_eq!(feasible_nodes_to_find(50, 0), 50);
        assert_eq!(feasible_nodes_to_find(1000, 0), 420);
        assert_eq!(feasible_nodes_to_find(5000, 0), 500);
        assert_eq!(feasible_nodes_to_find(200, 10), 100);
        assert_eq!(feasible_nodes_to_find(1000, 100), 1000);
    }

    #[test]
    fn fit_error_message_matches_upstream() {
        let mut statuses = HashMap::new();
        statuses.insert("a".to_string(), Unfit::resolvable("Insufficient cpu"));
        statuses.insert("b".to_string(), Unfit::unresolvable(crate::plugins::node::REASON_AFFINITY));
        statuses.insert("c".to_string(), Unfit::unresolvable(crate::plugins::node::REASON_AFFINITY));
        let fit = FitError { nodes: 3, statuses, prefilter: None };
        assert_eq!(
            fit.message(None),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
        );
    }

    #[test]
    fn ties_pick_one_of_the_best() {
        let names = ["a", "b", "c"];
        for _ in 0..20 {
            let h = select_host(&names, &[5, 9, 9]);
            assert!(h == "b" || h == "c");
        }
    }
}
