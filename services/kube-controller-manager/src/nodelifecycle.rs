//! Node lifecycle: a node whose Lease in `kube-node-lease` (or Ready
//! heartbeat) has not been renewed for `--node-monitor-grace-period` gets
//! its conditions set to Unknown and the `node.kubernetes.io/unreachable`
//! NoExecute taint (`not-ready` when the kubelet reports Ready=False); the
//! taints go once it is Ready again. Pods on nodes with NoExecute taints
//! they do not tolerate are evicted, after their tolerationSeconds if set.
//!
//! As upstream's taint-based eviction, the NoExecute taints (which evict) are
//! rate limited per zone (`topology.kubernetes.io/region` + `zone`): a zone is
//! Normal, PartiallyDisrupted (more than 2 nodes and at least
//! `--unhealthy-zone-threshold` of them not Ready) or FullyDisrupted (none
//! Ready). Normal and fully disrupted zones taint at `--node-eviction-rate`
//! nodes/s; partially disrupted ones at `--secondary-node-eviction-rate` if the
//! zone has more than `--large-cluster-size-threshold` nodes, else not at all.
//! When every zone is fully disrupted the problem is more likely the control
//! plane's than the nodes': nothing is tainted and NoExecute taints come off.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use component_base::events::{object_ref, EventType, Recorder};

use crate::informer::Factory;
use crate::util;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// The flags the controller acts on.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--node-monitor-grace-period`
    pub grace: Duration,
    /// `--node-monitor-period`
    pub period: Duration,
    /// `--node-eviction-rate`: nodes tainted per second in a healthy zone.
    pub eviction_rate: f64,
    /// `--secondary-node-eviction-rate`: the same in a partially disrupted large zone.
    pub secondary_eviction_rate: f64,
    /// `--unhealthy-zone-threshold`: the share of not Ready nodes that makes a zone unhealthy.
    pub unhealthy_zone_threshold: f64,
    /// `--large-cluster-size-threshold`: above it, a partially disrupted zone still taints (slowly).
    pub large_cluster_size_threshold: usize,
}

/// Upstream's zone states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// Upstream's ComputeZoneState over the Ready statuses of a zone's nodes.
pub fn zone_state(ready: &[bool], unhealthy_threshold: f64) -> ZoneState {
    let ready_nodes = ready.iter().filter(|r| **r).count();
    let not_ready = ready.len() - ready_nodes;
    if ready_nodes == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / ready.len() as f64 >= unhealthy_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// Upstream's zone key: region and zone labels (current or legacy beta ones).
pub fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let get = |a: &str, b: &str| labels.get(a).or_else(|| labels.get(b)).cloned().unwrap_or_default();
    let region = get("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region");
    let zone = get("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\0:{zone}")
    }
}

/// A token bucket with burst 1 (client-go's, as upstream builds it); 0 qps never accepts.
#[derive(Debug)]
pub struct TokenBucket {
    qps: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(qps: f64) -> Self {
        TokenBucket { qps, tokens: 1.0, last: Instant::now() }
    }

    pub fn try_accept(&mut self) -> bool {
        if self.qps <= 0.0 {
            return false;
        }
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.qps).min(1.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A zone's NoExecute tainter: the nodes waiting for their taint, in order, and its limiter.
struct Tainter {
    queue: VecDeque<String>,
    limiter: TokenBucket,
    state: Option<ZoneState>,
}

#[derive(Default)]
struct Zones {
    tainters: BTreeMap<String, Tainter>,
    all_disrupted: bool,
}

pub struct NodeLifecycleController {
    client: kube::Client,
    recorder: Recorder,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    config: Config,
    /// Per node: the last heartbeat seen and when (on this clock) it was seen to change.
    probes: Mutex<HashMap<String, (String, Instant)>>,
    zones: Mutex<Zones>,
}

fn ready_condition(n: &Node) -> Option<&NodeCondition> {
    n.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// The unreachable or not-ready taint the node's Ready condition calls for.
fn wanted_taint(node: &Node) -> Option<&'static str> {
    match ready_condition(node).map(|c| c.status.as_str()) {
        Some("Unknown") => Some(UNREACHABLE),
        Some("False") => Some(NOT_READY),
        _ => None,
    }
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == key && t.effect == effect))
}

/// Upstream's toleration matching for one taint.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    match t.operator.as_deref() {
        Some("Exists") => t.key.as_deref().is_none_or(|k| k.is_empty() || k == taint.key),
        _ => {
            t.key.as_deref() == Some(taint.key.as_str())
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

/// When the pod must go from a node with these NoExecute taints: None if never.
pub fn eviction_time(pod: &Pod, taints: &[Taint]) -> Option<jiff::Timestamp> {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let mut at: Option<jiff::Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or_else(jiff::Timestamp::now);
        let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(jiff::Timestamp::UNIX_EPOCH);
        }
        // Tolerated forever unless every matching toleration is bounded; the shortest bound wins.
        if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            continue;
        }
        let secs = matching.iter().filter_map(|t| t.toleration_seconds).min().unwrap_or(0).max(0);
        let when = added + jiff::SignedDuration::from_secs(secs);
        at = Some(at.map_or(when, |a| a.min(when)));
    }
    at
}

impl NodeLifecycleController {
    pub fn register(factory: &Factory, client: kube::Client, config: Config) -> Arc<Self> {
        Arc::new(NodeLifecycleController {
            recorder: Recorder::new(client.clone(), "node-controller", None),
            client,
            nodes: factory.nodes().store(),
            leases: factory.leases().store(),
            pods: factory.pods().store(),
            config,
            probes: Mutex::new(HashMap::new()),
            zones: Mutex::new(Zones::default()),
        })
    }

    pub fn run(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut monitor = tokio::time::interval(me.config.period);
            // Upstream's NodeEvictionPeriod: how often the rate-limited taint queues are worked.
            let mut tainting = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = monitor.tick() => {
                        let mut ready: BTreeMap<String, Vec<bool>> = BTreeMap::new();
                        for node in me.nodes.state() {
                            match me.monitor(&node).await {
                                Ok(is_ready) => ready.entry(zone_key(&node)).or_default().push(is_ready),
                                Err(e) => tracing::warn!(node = ?node.metadata.name, "node lifecycle: {e}"),
                            }
                        }
                        if let Err(e) = me.handle_disruption(ready).await {
                            tracing::warn!("node lifecycle: {e}");
                        }
                        if let Err(e) = me.evict().await {
                            tracing::warn!("taint eviction: {e}");
                        }
                    }
                    _ = tainting.tick() => {
                        if let Err(e) = me.taint_pass().await {
                            tracing::warn!("node lifecycle: {e}");
                        }
                    }
                }
            }
        });
    }

    fn zones(&self) -> std::sync::MutexGuard<'_, Zones> {
        self.zones.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the node for its NoExecute taint (once) in its zone's tainter.
    fn queue_for_taint(&self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let rate = self.config.eviction_rate;
        let mut zones = self.zones();
        let t = zones.tainters.entry(zone_key(node)).or_insert_with(|| Tainter {
            queue: VecDeque::new(),
            limiter: TokenBucket::new(rate),
            state: None,
        });
        if !t.queue.contains(&name) {
            t.queue.push_back(name);
        }
    }

    fn unqueue(&self, node: &Node) {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if let Some(t) = self.zones().tainters.get_mut(&zone_key(node)) {
            t.queue.retain(|n| n != name);
        }
    }

    /// Upstream's handleDisruption: zone states from this pass's Ready statuses set
    /// each zone's tainting rate; with every zone fully disrupted nothing is tainted
    /// and the NoExecute taints come off every node.
    async fn handle_disruption(&self, ready: BTreeMap<String, Vec<bool>>) -> Result<(), kube::Error> {
        let states: BTreeMap<String, ZoneState> =
            ready.iter().map(|(z, r)| (z.clone(), zone_state(r, self.config.unhealthy_zone_threshold))).collect();
        let all_disrupted = !states.is_empty() && states.values().all(|s| *s == ZoneState::FullDisruption);
        {
            let mut zones = self.zones();
            let was = zones.all_disrupted;
            if all_disrupted != was {
                if all_disrupted {
                    tracing::warn!("every node is not Ready: entering master disruption mode, no NoExecute taints");
                } else {
                    tracing::info!("some nodes are Ready again: leaving master disruption mode");
                }
            }
            zones.all_disrupted = all_disrupted;
            for (zone, state) in &states {
                let size = ready.get(zone).map_or(0, Vec::len);
                let rate = if all_disrupted {
                    0.0
                } else {
                    match state {
                        ZoneState::Normal | ZoneState::FullDisruption => self.config.eviction_rate,
                        ZoneState::PartialDisruption if size > self.config.large_cluster_size_threshold => {
                            self.config.secondary_eviction_rate
                        }
                        ZoneState::PartialDisruption => 0.0,
                    }
                };
                let t = zones.tainters.entry(zone.clone()).or_insert_with(|| Tainter {
                    queue: VecDeque::new(),
                    limiter: TokenBucket::new(rate),
                    state: None,
                });
                let effective = if all_disrupted { None } else { Some(*state) };
                if t.state != effective || (t.limiter.qps - rate).abs() > f64::EPSILON {
                    if t.state.is_some() && t.state != effective {
                        tracing::info!(zone = %zone.replace('\0', ""), ?state, rate, "zone changed state");
                    }
                    t.limiter = TokenBucket::new(rate);
                    t.state = effective;
                }
            }
            zones.tainters.retain(|z, _| states.contains_key(z));
            if !all_disrupted {
                return Ok(());
            }
            for t in zones.tainters.values_mut() {
                t.queue.clear();
            }
        }
        for node in self.nodes.state() {
            self.set_no_execute(&node, None).await?;
        }
        Ok(())
    }

    /// Upstream's doNoExecuteTaintingPass: each zone taints the nodes it queued as its limiter allows.
    async fn taint_pass(&self) -> Result<(), kube::Error> {
        let mut todo: Vec<String> = Vec::new();
        {
            let mut zones = self.zones();
            for t in zones.tainters.values_mut() {
                while let Some(name) = t.queue.front().cloned() {
                    let still_needed = self
                        .nodes
                        .get(&ObjectRef::new(&name))
                        .is_some_and(|n| wanted_taint(&n).is_some_and(|k| !has_taint(&n, k, "NoExecute")));
                    if !still_needed {
                        t.queue.pop_front();
                        continue;
                    }
                    if !t.limiter.try_accept() {
                        break;
                    }
                    t.queue.pop_front();
                    todo.push(name);
                }
            }
        }
        let api: Api<Node> = Api::all(self.client.clone());
        for name in todo {
            // The limiter let this node through: taint what the apiserver has now, not a
            // cache that may lag this controller's own writes.
            let node = match api.get(&name).await {
                Ok(n) => n,
                Err(e) if util::api_code(&e) == Some(404) => continue,
                Err(e) => return Err(e),
            };
            let want = wanted_taint(&node);
            if want.is_some() {
                tracing::info!(node = %name, taint = ?want, "adding the NoExecute taint (rate limited per zone)");
                self.set_no_execute(&node, want).await?;
            }
        }
        Ok(())
    }

    /// Makes the node's unreachable/not-ready NoExecute taint `want` (None: neither).
    async fn set_no_execute(&self, node: &Node, want: Option<&str>) -> Result<(), kube::Error> {
        let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let mut next: Vec<Taint> = taints
            .iter()
            .filter(|t| {
                !(t.effect == "NoExecute"
                    && (t.key == UNREACHABLE || t.key == NOT_READY)
                    && Some(t.key.as_str()) != want)
            })
            .cloned()
            .collect();
        if let Some(key) = want {
            if !next.iter().any(|t| t.key == key && t.effect == "NoExecute") {
                next.push(Taint {
                    key: key.into(),
                    effect: "NoExecute".into(),
                    time_added: Some(Time(jiff::Timestamp::now())),
                    value: None,
                });
            }
        }
        self.write_taints(node, &taints, next).await
    }

    async fn write_taints(&self, node: &Node, taints: &[Taint], next: Vec<Taint>) -> Result<(), kube::Error> {
        if next == taints {
            return Ok(());
        }
        let name = node.metadata.name.clone().unwrap_or_default();
        tracing::info!(node = %name, ?next, "updating node taints");
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": next}});
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether the node's heartbeat has been seen to change within the grace period.
    fn healthy(&self, node: &Node) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        let lease = self.leases.get(&ObjectRef::new(&name).within("kube-node-lease"));
        let renew =
            lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0.to_string())).unwrap_or_default();
        let heartbeat = ready_condition(node)
            .and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0.to_string()))
            .unwrap_or_default();
        let seen = format!("{renew}|{heartbeat}");
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        let entry = probes.entry(name).or_insert_with(|| (seen.clone(), Instant::now()));
        if entry.0 != seen {
            *entry = (seen, Instant::now());
        }
        entry.1.elapsed() < self.config.grace
    }

    /// Checks one node's heartbeat; returns whether it counts as Ready for its zone.
    async fn monitor(&self, node: &Node) -> Result<bool, kube::Error> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let api: Api<Node> = Api::all(self.client.clone());
        let healthy = self.healthy(node);
        let ready = ready_condition(node).map(|c| c.status.clone());
        if !healthy && ready.as_deref() != Some("Unknown") {
            let now = Time(jiff::Timestamp::now());
            let mut conds = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            if conds.is_empty() {
                conds.push(NodeCondition { type_: "Ready".into(), ..Default::default() });
            }
            for c in conds.iter_mut() {
                if matches!(c.type_.as_str(), "Ready" | "MemoryPressure" | "DiskPressure" | "PIDPressure")
                    && c.status != "Unknown"
                {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(now.clone());
                }
            }
            tracing::info!(node = %name, "node stopped renewing its lease; marking it Unknown");
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": conds}})))
                .await?;
            self.mark_pods_not_ready(&name).await?;
            return Ok(false);
        }
        // The NoSchedule taints follow the Ready condition at once; the NoExecute
        // ones (which evict) are swapped at once but added through the zone's limiter.
        let want = wanted_taint(node);
        let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let mut next: Vec<Taint> = taints
            .iter()
            .filter(|t| {
                let ours = t.key == UNREACHABLE || t.key == NOT_READY;
                let stale = ours && Some(t.key.as_str()) != want;
                // A NoExecute taint of the other kind is swapped, never dropped for nothing.
                !(stale && (t.effect == "NoSchedule" || want.is_none()))
            })
            .cloned()
            .collect();
        if let Some(key) = want {
            if !next.iter().any(|t| t.key == key && t.effect == "NoSchedule") {
                next.push(Taint { key: key.into(), effect: "NoSchedule".into(), time_added: None, value: None });
            }
            let other_no_execute = next
                .iter()
                .any(|t| t.effect == "NoExecute" && (t.key == UNREACHABLE || t.key == NOT_READY) && t.key != key);
            if other_no_execute {
                for t in
                    next.iter_mut().filter(|t| t.effect == "NoExecute" && (t.key == UNREACHABLE || t.key == NOT_READY))
                {
                    t.key = key.into();
                    t.time_added = Some(Time(jiff::Timestamp::now()));
                }
            } else if !has_taint(node, key, "NoExecute") {
                self.queue_for_taint(node);
            }
        } else {
            self.unqueue(node);
        }
        self.write_taints(node, &taints, next).await?;
        Ok(ready.as_deref() == Some("True"))
    }

    /// Upstream's MarkPodsNotReady: the pods of an unreachable node stop being Ready
    /// (so they leave Service endpoints) until the kubelet reports again.
    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), kube::Error> {
        let now = Time(jiff::Timestamp::now());
        for pod in self.pods.state() {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) || util::is_terminal(&pod) {
                continue;
            }
            let mut conds = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            let Some(ready) = conds.iter_mut().find(|c| c.type_ == "Ready" && c.status == "True") else { continue };
            ready.status = "False".into();
            ready.reason = Some("NodeNotReady".into());
            ready.message = Some("Node is not ready".into());
            ready.last_transition_time = Some(now.clone());
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let patch = json!({"status": {"conditions": conds}});
            match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => self.recorder.event(
                    object_ref(pod.as_ref()),
                    EventType::Warning,
                    "NodeNotReady",
                    "Node is not ready",
                ),
                Err(e) if util::api_code(&e) == Some(404) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Deletes pods on NoExecute-tainted nodes whose tolerations have run out.
    async fn evict(&self) -> Result<(), kube::Error> {
        let mut tainted: HashMap<String, Vec<Taint>> = HashMap::new();
        for n in self.nodes.state() {
            let taints: Vec<Taint> = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.effect == "NoExecute")
                .collect();
            if !taints.is_empty() {
                tainted.insert(n.metadata.name.clone().unwrap_or_default(), taints);
            }
        }
        if tainted.is_empty() {
            return Ok(());
        }
        let now = jiff::Timestamp::now();
        for pod in self.pods.state() {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else { continue };
            let Some(taints) = tainted.get(node) else { continue };
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if eviction_time(&pod, taints).is_some_and(|at| at <= now) {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                tracing::info!(pod = %format!("{ns}/{name}"), %node, "evicting pod from a NoExecute-tainted node");
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => self.recorder.event(
                        object_ref(pod.as_ref()),
                        EventType::Normal,
                        "TaintManagerEviction",
                        &format!("Marking for deletion Pod {ns}/{name}"),
                    ),
                    Err(e) if util::api_code(&e) == Some(404) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}}),
        )
        .unwrap()
    }

    #[test]
    fn untolerated_taints_evict_now_and_bounded_tolerations_later() {
        let added = jiff::Timestamp::from_second(1_000).unwrap();
        let taint =
            Taint { key: UNREACHABLE.into(), effect: "NoExecute".into(), time_added: Some(Time(added)), value: None };
        assert_eq!(eviction_time(&pod(json!([])), std::slice::from_ref(&taint)), Some(jiff::Timestamp::UNIX_EPOCH));
        let bounded =
            pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]));
        assert_eq!(
            eviction_time(&bounded, std::slice::from_ref(&taint)),
            Some(jiff::Timestamp::from_second(1_005).unwrap())
        );
        let forever = pod(json!([{"operator": "Exists"}]));
        assert_eq!(eviction_time(&forever, &[taint]), None);
    }

    #[test]
    fn zone_states_follow_upstream_thresholds() {
        assert_eq!(zone_state(&[false, false], 0.55), ZoneState::FullDisruption);
        assert_eq!(zone_state(&[true, false, false], 0.55), ZoneState::Normal, "two not ready never disrupt");
        assert_eq!(zone_state(&[true, true, true, false, false, false], 0.55), ZoneState::Normal);
        assert_eq!(zone_state(&[true, true, false, false, false, false], 0.55), ZoneState::PartialDisruption);
        assert_eq!(zone_state(&[], 0.55), ZoneState::Normal);
    }

    #[test]
    fn the_token_bucket_allows_a_burst_of_one_then_the_rate() {
        let mut b = TokenBucket::new(20.0);
        assert!(b.try_accept());
        assert!(!b.try_accept());
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.try_accept());
        assert!(!TokenBucket::new(0.0).try_accept());
    }
}
