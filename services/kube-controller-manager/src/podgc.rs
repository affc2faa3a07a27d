//! PodGC: every 20 seconds, deletes terminated pods beyond
//! `--terminated-pod-gc-threshold` (oldest first), pods bound to nodes that
//! no longer exist (after a 40 s quarantine and a fresh check), and
//! terminating pods that were never scheduled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use crate::informer::Factory;
use crate::util;

const CHECK_PERIOD: Duration = Duration::from_secs(20);
const QUARANTINE: Duration = Duration::from_secs(40);

pub struct PodGc {
    client: kube::Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    threshold: i32,
    /// Nodes seen missing, and since when.
    missing: Mutex<HashMap<String, Instant>>,
}

impl PodGc {
    pub fn register(factory: &Factory, client: kube::Client, threshold: i32) -> Arc<Self> {
        Arc::new(PodGc {
            client,
            pods: factory.pods().store(),
            nodes: factory.nodes().store(),
            threshold,
            missing: Mutex::new(HashMap::new()),
        })
    }

    pub fn run(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_PERIOD);
            loop {
                tick.tick().await;
                if let Err(e) = me.gc().await {
                    tracing::warn!("pod garbage collection: {e}");
                }
            }
        });
    }

    async fn gc(&self) -> Result<(), kube::Error> {
        let pods = self.pods.state();
        if self.threshold > 0 {
            let mut terminated: Vec<&Arc<Pod>> = pods.iter().filter(|p| util::is_terminal(p)).collect();
            let excess = terminated.len().saturating_sub(self.threshold as usize);
            if excess > 0 {
                terminated.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
                for p in terminated.into_iter().take(excess) {
                    self.force_delete(p, "terminated pod beyond the threshold").await?;
                }
            }
        }
        for p in &pods {
            let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty());
            match node {
                None if p.metadata.deletion_timestamp.is_some() => {
                    self.force_delete(p, "unscheduled terminating pod").await?;
                }
                Some(node) if self.nodes.get(&ObjectRef::new(node)).is_none() && self.node_gone(node).await? => {
                    self.mark_failed(p).await?;
                    self.force_delete(p, "pod bound to a node that no longer exists").await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// True once a node has been missing for the quarantine and the apiserver confirms it.
    async fn node_gone(&self, node: &str) -> Result<bool, kube::Error> {
        let since = *self
            .missing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(node.to_string())
            .or_insert_with(Instant::now);
        if since.elapsed() < QUARANTINE {
            return Ok(false);
        }
        let api: Api<Node> = Api::all(self.client.clone());
        let gone = api.get_opt(node).await?.is_none();
        if !gone {
            self.missing.lock().unwrap_or_else(|e| e.into_inner()).remove(node);
        }
        Ok(gone)
    }

    async fn mark_failed(&self, p: &Pod) -> Result<(), kube::Error> {
        if util::is_terminal(p) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), p.metadata.namespace.as_deref().unwrap_or_default());
        let now = jiff::Timestamp::now().to_string();
        let patch = json!({"status": {"phase": "Failed", "conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
            "message": "PodGC: node no longer exists", "lastTransitionTime": now,
        }]}});
        let name = p.metadata.name.as_deref().unwrap_or_default();
        match api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => Ok(()),
            Err(e) if util::api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn force_delete(&self, p: &Pod, why: &str) -> Result<(), kube::Error> {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        tracing::info!(pod = %format!("{ns}/{name}"), "deleting {why}");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        match api.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await {
            Ok(_) => Ok(()),
            Err(e) if util::api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
