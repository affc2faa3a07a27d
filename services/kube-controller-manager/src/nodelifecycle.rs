//! Node lifecycle: a node whose Lease in `kube-node-lease` (or Ready
//! heartbeat) has not been renewed for `--node-monitor-grace-period` gets
//! its conditions set to Unknown and the `node.kubernetes.io/unreachable`
//! NoExecute taint (`not-ready` when the kubelet reports Ready=False); the
//! taints go once it is Ready again. Pods on nodes with NoExecute taints
//! they do not tolerate are evicted, after their tolerationSeconds if set.

use std::collections::HashMap;
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

pub struct NodeLifecycleController {
    client: kube::Client,
    recorder: Recorder,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    grace: Duration,
    period: Duration,
    /// Per node: the last heartbeat seen and when (on this clock) it was seen to change.
    probes: Mutex<HashMap<String, (String, Instant)>>,
}

fn ready_condition(n: &Node) -> Option<&NodeCondition> {
    n.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
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
    pub fn register(factory: &Factory, client: kube::Client, grace: Duration, period: Duration) -> Arc<Self> {
        Arc::new(NodeLifecycleController {
            recorder: Recorder::new(client.clone(), "node-controller", None),
            client,
            nodes: factory.nodes().store(),
            leases: factory.leases().store(),
            pods: factory.pods().store(),
            grace,
            period,
            probes: Mutex::new(HashMap::new()),
        })
    }

    pub fn run(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.period);
            loop {
                tick.tick().await;
                for node in me.nodes.state() {
                    if let Err(e) = me.monitor(&node).await {
                        tracing::warn!(node = ?node.metadata.name, "node lifecycle: {e}");
                    }
                }
                if let Err(e) = me.evict().await {
                    tracing::warn!("taint eviction: {e}");
                }
            }
        });
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
        entry.1.elapsed() < self.grace
    }

    async fn monitor(&self, node: &Node) -> Result<(), kube::Error> {
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
            return Ok(());
        }
        // The taints follow the Ready condition.
        let want: Option<&str> = match ready.as_deref() {
            Some("Unknown") => Some(UNREACHABLE),
            Some("False") => Some(NOT_READY),
            _ => None,
        };
        let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let mut next: Vec<Taint> = taints
            .iter()
            .filter(|t| !((t.key == UNREACHABLE || t.key == NOT_READY) && Some(t.key.as_str()) != want))
            .cloned()
            .collect();
        if let Some(key) = want {
            for effect in ["NoExecute", "NoSchedule"] {
                if !next.iter().any(|t| t.key == key && t.effect == effect) {
                    next.push(Taint {
                        key: key.into(),
                        effect: effect.into(),
                        time_added: (effect == "NoExecute").then(|| Time(jiff::Timestamp::now())),
                        value: None,
                    });
                }
            }
        }
        if next != taints {
            tracing::info!(node = %name, taint = ?want, "updating node taints");
            let patch =
                json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": next}});
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {}
                Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
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
}
