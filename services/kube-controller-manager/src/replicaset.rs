//! The ReplicaSet controller: keeps `spec.replicas` active pods matching the
//! selector, owned through a controller reference; adopts matching orphans,
//! releases pods that stopped matching, creates in slow-start batches and
//! deletes the least valuable pods first, gated on expectations.
//!
//! The same controller keeps core/v1 ReplicationControllers (upstream's
//! replication manager, which adapts RCs to the ReplicaSet controller): it is
//! generic over [`Replicated`], which both kinds implement.

use std::cmp::Ordering;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use apimachinery::selector::label::LabelSelector as Selector;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController, ReplicationControllerCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use component_base::events::{object_ref, EventType, Recorder};

use crate::informer::{Change, Factory, Informer};
use crate::queue::WorkQueue;
use crate::util::{self, Expectations};

/// The replica counts a controller reports in its owner's status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaStatus {
    pub replicas: i32,
    pub fully_labeled: i32,
    pub ready: i32,
    pub available: i32,
    pub observed_generation: Option<i64>,
    /// The `ReplicaFailure` condition: (reason, message) while creating or deleting pods fails.
    pub failure: Option<(String, String)>,
}

pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Reads the ReplicaFailure condition (the RS and RC condition types share their fields).
macro_rules! failure_of {
    ($conditions:expr) => {
        $conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
            .map(|c| (c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
    };
}

/// Sets or removes the ReplicaFailure condition, keeping its transition time while it holds.
macro_rules! set_failure {
    ($conditions:expr, $cond:ident, $failure:expr) => {{
        let conditions = $conditions.get_or_insert_with(Vec::new);
        match $failure {
            None => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
            Some((reason, message)) => {
                let same = conditions.iter().any(|c| {
                    c.type_ == REPLICA_FAILURE
                        && c.reason.as_deref() == Some(reason.as_str())
                        && c.message.as_deref() == Some(message.as_str())
                });
                if !same {
                    conditions.retain(|c| c.type_ != REPLICA_FAILURE);
                    conditions.push($cond {
                        type_: REPLICA_FAILURE.into(),
                        status: "True".into(),
                        reason: Some(reason),
                        message: Some(message),
                        last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                            jiff::Timestamp::now(),
                        )),
                    });
                }
            }
        }
        if conditions.is_empty() {
            $conditions = None;
        }
    }};
}

/// What the controller needs of the object it keeps replicas for.
pub trait Replicated:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The component events are recorded as.
    const COMPONENT: &'static str;
    /// The shared informer over this kind.
    fn informer(factory: &Factory) -> Arc<Informer<Self>>;
    /// `spec.replicas`, 1 when unset.
    fn replicas(&self) -> i32;
    /// The pods it selects; an empty selector selects nothing here.
    fn selector(&self) -> Selector;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn min_ready_seconds(&self) -> i32;
    fn replica_status(&self) -> ReplicaStatus;
    fn set_replica_status(&mut self, status: ReplicaStatus);
}

impl Replicated for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";

    fn informer(factory: &Factory) -> Arc<Informer<Self>> {
        factory.replicasets()
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn selector(&self) -> Selector {
        util::selector(self.spec.as_ref().map(|s| &s.selector))
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn replica_status(&self) -> ReplicaStatus {
        let s = self.status.clone().unwrap_or_default();
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled: s.fully_labeled_replicas.unwrap_or(0),
            ready: s.ready_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation,
            failure: failure_of!(s.conditions),
        }
    }
    fn set_replica_status(&mut self, r: ReplicaStatus) {
        let st = self.status.get_or_insert_with(Default::default);
        st.replicas = r.replicas;
        st.fully_labeled_replicas = Some(r.fully_labeled);
        st.ready_replicas = Some(r.ready);
        st.available_replicas = Some(r.available);
        st.observed_generation = r.observed_generation;
        set_failure!(st.conditions, ReplicaSetCondition, r.failure);
    }
}

impl Replicated for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";

    fn informer(factory: &Factory) -> Arc<Informer<Self>> {
        factory.replication_controllers()
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    /// Equality-based: every key of `spec.selector` with its value.
    fn selector(&self) -> Selector {
        let Some(map) = self.spec.as_ref().and_then(|s| s.selector.as_ref()) else { return Selector::nothing() };
        Selector::from_set(map.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap_or_else(|e| {
            tracing::warn!("invalid replication controller selector: {e}");
            Selector::nothing()
        })
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn replica_status(&self) -> ReplicaStatus {
        let s = self.status.clone().unwrap_or_default();
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled: s.fully_labeled_replicas.unwrap_or(0),
            ready: s.ready_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation,
            failure: failure_of!(s.conditions),
        }
    }
    fn set_replica_status(&mut self, r: ReplicaStatus) {
        let st = self.status.get_or_insert_with(Default::default);
        st.replicas = r.replicas;
        st.fully_labeled_replicas = Some(r.fully_labeled);
        st.ready_replicas = Some(r.ready);
        st.available_replicas = Some(r.available);
        st.observed_generation = r.observed_generation;
        set_failure!(st.conditions, ReplicationControllerCondition, r.failure);
    }
}

/// Upstream's replication manager: the ReplicaSet controller over ReplicationControllers.
pub type ReplicationManager = ReplicaSetController<ReplicationController>;

/// At most this many creations or deletions per sync (upstream's burstReplicas).
const BURST_REPLICAS: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {key}: {source}")]
    Api {
        action: &'static str,
        key: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// What the apiserver said, as upstream puts it in the ReplicaFailure condition.
    pub fn api_message(&self) -> String {
        match self {
            Error::Api { source: kube::Error::Api(s), .. } => s.message.clone(),
            Error::Api { source, .. } => source.to_string(),
        }
    }
}

fn api_err(action: &'static str, key: &str) -> impl FnOnce(kube::Error) -> Error {
    let key = key.to_string();
    move |source| Error::Api { action, key, source }
}

pub struct ReplicaSetController<K: Replicated = ReplicaSet> {
    client: kube::Client,
    recorder: Recorder,
    rs: Store<K>,
    pods: Store<Pod>,
    expectations: Arc<Expectations>,
    queue: WorkQueue,
}

/// The owner (of kind K) of `meta` through its controllerRef, from the cache.
fn resolve_owner<K: Replicated>(rs: &Store<K>, meta: &ObjectMeta) -> Option<Arc<K>> {
    let r = util::controller_ref(meta)?;
    if r.kind != K::kind(&()) {
        return None;
    }
    let owner = rs.get(&ObjectRef::new(&r.name).within(meta.namespace.as_deref().unwrap_or_default()))?;
    (owner.meta().uid.as_deref() == Some(r.uid.as_str())).then_some(owner)
}

/// Owners in the pod's namespace whose selector matches it.
fn matching<K: Replicated>(rs: &Store<K>, pod: &Pod) -> Vec<Arc<K>> {
    let labels = util::labels(&pod.metadata);
    rs.state()
        .into_iter()
        .filter(|r| r.meta().namespace == pod.metadata.namespace)
        .filter(|r| {
            let sel = r.selector();
            !sel.is_empty() && sel.matches(&labels)
        })
        .collect()
}

impl<K: Replicated> ReplicaSetController<K> {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue) -> Arc<Self> {
        let rs_inf = K::informer(factory);
        let pod_inf = factory.pods();
        let this = Arc::new(ReplicaSetController {
            recorder: Recorder::new(client.clone(), K::COMPONENT, None),
            client,
            rs: rs_inf.store(),
            pods: pod_inf.store(),
            expectations: Default::default(),
            queue,
        });
        let q = this.queue.clone();
        rs_inf.add_handler(move |c| match c {
            Change::Upsert { new, .. } => q.add(util::key_of(new.meta())),
            Change::Deleted(old) => q.add(util::key_of(old.meta())),
        });
        let me = this.clone();
        pod_inf.add_handler(move |c| me.on_pod(c));
        this
    }

    fn on_pod(&self, change: &Change<Pod>) {
        match change {
            Change::Upsert { old, new } => {
                let new_owner = resolve_owner(&self.rs, &new.metadata);
                if let Some(owner) = &new_owner {
                    let key = util::key_of(owner.meta());
                    if old.is_none() {
                        self.expectations.creation_observed(&key);
                    }
                    if new.metadata.deletion_timestamp.is_some()
                        && old.as_ref().is_none_or(|o| o.metadata.deletion_timestamp.is_none())
                    {
                        self.expectations.deletion_observed(&key, &util::key_of(&new.metadata));
                    }
                    self.queue.add(key.clone());
                    // A pod turning ready makes it available minReadySeconds later.
                    let min_ready = owner.min_ready_seconds();
                    if min_ready > 0 && util::is_ready(new) && !old.as_ref().is_some_and(|o| util::is_ready(o)) {
                        self.queue.add_after(key, Duration::from_secs(min_ready as u64 + 1));
                    }
                }
                if let Some(old) = old {
                    if let Some(old_owner) = resolve_owner(&self.rs, &old.metadata) {
                        if new_owner.as_ref().map(|o| &o.meta().uid) != Some(&old_owner.meta().uid) {
                            self.queue.add(util::key_of(old_owner.meta()));
                        }
                    }
                }
                let labels_changed = old.as_ref().is_none_or(|o| o.metadata.labels != new.metadata.labels);
                if util::controller_ref(&new.metadata).is_none() && labels_changed {
                    for r in matching(&self.rs, new) {
                        self.queue.add(util::key_of(r.meta()));
                    }
                }
            }
            Change::Deleted(pod) => {
                if let Some(owner) = resolve_owner(&self.rs, &pod.metadata) {
                    let key = util::key_of(owner.meta());
                    self.expectations.deletion_observed(&key, &util::key_of(&pod.metadata));
                    self.queue.add(key);
                }
            }
        }
    }

    fn event(&self, rs: &K, kind: EventType, reason: &str, message: &str) {
        self.recorder.event(object_ref(rs), kind, reason, message);
    }

    pub fn run(self: &Arc<Self>, workers: usize) {
        let me = self.clone();
        self.queue.run_workers(workers, move |key| {
            let me = me.clone();
            async move { me.sync(&key).await }
        });
    }

    pub async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = util::split_key(key);
        let Some(rs) = self.rs.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let sel = rs.selector();
        let needs_sync = self.expectations.satisfied(key);
        let uid = rs.meta().uid.clone().unwrap_or_default();
        let deleting = rs.meta().deletion_timestamp.is_some();
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);

        // Claim: keep ours that match, adopt matching orphans, release the rest.
        let mut owned = Vec::new();
        let mut can_adopt: Option<bool> = None;
        for pod in self.pods.state().into_iter().filter(|p| p.metadata.namespace.as_deref() == Some(ns)) {
            if !util::is_active(&pod) {
                continue;
            }
            let matches = !sel.is_empty() && sel.matches(&util::labels(&pod.metadata));
            match util::controller_ref(&pod.metadata) {
                Some(r) if r.uid != uid => {}
                Some(_) if matches || deleting => owned.push(pod),
                Some(_) => self.release(&pod_api, &pod, &uid).await?,
                None if !matches || deleting => {}
                None => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.can_adopt(ns, name, &uid).await?);
                    }
                    if can_adopt == Some(true) && self.adopt(&pod_api, &pod, &rs).await? {
                        owned.push(pod);
                    }
                }
            }
        }

        let mut manage_err = None;
        if needs_sync && !deleting {
            // Deleted pods no longer count, so status never overstates what is left.
            match self.manage_replicas(key, &rs, &owned, &pod_api).await {
                Ok(deleted) => owned.retain(|p| !deleted.contains(&util::key_of(&p.metadata))),
                Err(e) => manage_err = Some(e),
            }
        }
        // Upstream's calculateStatus: a failed create or delete shows as the ReplicaFailure
        // condition (with the apiserver's message) until a sync manages the replicas again.
        let failure = manage_err.as_ref().map(|e| {
            let reason = if owned.len() < rs.replicas().max(0) as usize { "FailedCreate" } else { "FailedDelete" };
            (reason.to_string(), e.api_message())
        });
        self.update_status(&rs, &owned, failure).await?;
        if let Some(e) = manage_err {
            return Err(e);
        }

        let min_ready = rs.min_ready_seconds();
        let ready = owned.iter().filter(|p| util::is_ready(p)).count();
        let now = jiff::Timestamp::now();
        let available = owned.iter().filter(|p| util::is_available(p, min_ready, now)).count();
        if min_ready > 0 && ready != available {
            return Ok(Some(Duration::from_secs(min_ready as u64)));
        }
        Ok(None)
    }

    /// Upstream re-reads the owner before adopting so a deleted or recreated one adopts nothing.
    async fn can_adopt(&self, ns: &str, name: &str, uid: &str) -> Result<bool, Error> {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let fresh = api.get_opt(name).await.map_err(api_err("get", name))?;
        Ok(fresh.is_some_and(|f| f.meta().uid.as_deref() == Some(uid) && f.meta().deletion_timestamp.is_none()))
    }

    async fn adopt(&self, api: &Api<Pod>, pod: &Pod, rs: &K) -> Result<bool, Error> {
        let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
        refs.push(util::new_controller_ref(rs));
        let patch = json!({"metadata": {"ownerReferences": refs, "uid": pod.metadata.uid, "resourceVersion": pod.metadata.resource_version}});
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(util::api_code(&e), Some(404 | 409 | 422)) => Ok(false),
            Err(e) => Err(api_err("adopting pod", name)(e)),
        }
    }

    async fn release(&self, api: &Api<Pod>, pod: &Pod, uid: &str) -> Result<(), Error> {
        let refs: Vec<_> = pod.metadata.owner_references.iter().flatten().filter(|r| r.uid != uid).cloned().collect();
        let patch = json!({"metadata": {"ownerReferences": refs, "uid": pod.metadata.uid, "resourceVersion": pod.metadata.resource_version}});
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(util::api_code(&e), Some(404 | 409 | 422)) => Ok(()),
            Err(e) => Err(api_err("releasing pod", name)(e)),
        }
    }

    async fn manage_replicas(
        &self,
        key: &str,
        rs: &K,
        pods: &[Arc<Pod>],
        api: &Api<Pod>,
    ) -> Result<Vec<String>, Error> {
        let want = rs.replicas().max(0) as usize;
        if pods.len() < want {
            let diff = (want - pods.len()).min(BURST_REPLICAS);
            self.expectations.expect(key, diff as i64, []);
            let pod = pod_from_template(rs);
            let mut remaining = diff;
            let mut batch = 1;
            let mut first_err = None;
            let pp = PostParams::default();
            while remaining > 0 {
                let n = batch.min(remaining);
                let results = join_all((0..n).map(|_| api.create(&pp, &pod))).await;
                let mut failed = Vec::new();
                for r in results {
                    match r {
                        Ok(p) => self.event(
                            rs,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {}", p.metadata.name.unwrap_or_default()),
                        ),
                        Err(e) => {
                            self.event(rs, EventType::Warning, "FailedCreate", &format!("Error creating: {e}"));
                            failed.push(e);
                        }
                    }
                }
                remaining -= n;
                if !failed.is_empty() {
                    // Neither the failed creations nor the skipped ones will be observed.
                    self.expectations.lowered(key, (failed.len() + remaining) as i64);
                    first_err = failed.into_iter().next();
                    break;
                }
                batch *= 2;
            }
            if let Some(e) = first_err {
                return Err(api_err("creating pods for", key)(e));
            }
        } else if pods.len() > want {
            let diff = (pods.len() - want).min(BURST_REPLICAS);
            let mut ranked: Vec<&Arc<Pod>> = pods.iter().collect();
            ranked.sort_by(|a, b| deletion_order(a, b));
            let victims: Vec<&Arc<Pod>> = ranked.into_iter().take(diff).collect();
            self.expectations.expect(key, 0, victims.iter().map(|p| util::key_of(&p.metadata)));
            let results = join_all(victims.iter().map(|p| async move {
                let name = p.metadata.name.clone().unwrap_or_default();
                (*p, api.delete(&name, &DeleteParams::default()).await)
            }))
            .await;
            let mut first_err = None;
            let mut deleted = Vec::new();
            for (p, r) in results {
                match r {
                    Ok(_) => {
                        self.event(
                            rs,
                            EventType::Normal,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {}", p.metadata.name.as_deref().unwrap_or_default()),
                        );
                        deleted.push(util::key_of(&p.metadata));
                    }
                    Err(e) => {
                        self.expectations.deletion_observed(key, &util::key_of(&p.metadata));
                        if util::api_code(&e) != Some(404) && first_err.is_none() {
                            first_err = Some(e);
                        }
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(api_err("deleting pods of", key)(e));
            }
            return Ok(deleted);
        }
        Ok(Vec::new())
    }

    async fn update_status(&self, rs: &K, pods: &[Arc<Pod>], failure: Option<(String, String)>) -> Result<(), Error> {
        let template_labels =
            rs.template().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
        let min_ready = rs.min_ready_seconds();
        let now = jiff::Timestamp::now();
        let fully_labeled = pods
            .iter()
            .filter(|p| {
                let l = util::labels(&p.metadata);
                template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
            })
            .count() as i32;
        let status = ReplicaStatus {
            replicas: pods.len() as i32,
            fully_labeled,
            ready: pods.iter().filter(|p| util::is_ready(p)).count() as i32,
            available: pods.iter().filter(|p| util::is_available(p, min_ready, now)).count() as i32,
            observed_generation: rs.meta().generation,
            failure,
        };
        if rs.replica_status() == status {
            return Ok(());
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), rs.meta().namespace.as_deref().unwrap_or_default());
        let name = rs.meta().name.as_deref().unwrap_or_default();
        // An update, not a patch: the controller roles may only update <kind>/status.
        let mut updated = rs.clone();
        updated.set_replica_status(status);
        match api.replace_status(name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(()),
            Err(e) if util::api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(api_err("updating status of", name)(e)),
        }
    }
}

/// A pod for the owner's template, owned by it.
pub fn pod_from_template<K: Replicated>(rs: &K) -> Pod {
    let template = rs.template().cloned().unwrap_or_default();
    let tm = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.meta().name.as_deref().unwrap_or_default())),
            namespace: rs.meta().namespace.clone(),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![util::new_controller_ref(rs)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn phase_rank(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1,
    }
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|c| c.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// Upstream's ActivePods ordering: the pod to delete first sorts first.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let assigned = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| util::is_ready(a).cmp(&util::is_ready(b)))
        // Both ready: the more recently ready goes first.
        .then_with(|| match (util::ready_since(a).flatten(), util::ready_since(b).flatten()) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| {
            let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(b).cmp(&t(a))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: Option<&str>, phase: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_replication_controller_selects_by_equality_and_an_empty_selector_selects_nothing() {
        let rc: ReplicationController =
            serde_json::from_value(json!({"spec": {"selector": {"app": "a", "tier": "web"}}})).unwrap();
        let sel = rc.selector();
        let labels = |l: &[(&str, &str)]| {
            l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>()
        };
        assert!(sel.matches(&labels(&[("app", "a"), ("tier", "web"), ("x", "y")])));
        assert!(!sel.matches(&labels(&[("app", "a")])));
        let empty: ReplicationController = serde_json::from_value(json!({"spec": {}})).unwrap();
        assert!(empty.selector().is_empty() || empty.selector().selects_nothing());
        assert_eq!(rc.replicas(), 1);
    }

    #[test]
    fn unassigned_pending_and_unready_pods_are_deleted_first() {
        let mut pods = [
            pod(Some("n"), "Running", true),
            pod(Some("n"), "Running", false),
            pod(Some("n"), "Pending", false),
            pod(None, "Pending", false),
        ];
        pods.sort_by(deletion_order);
        assert!(pods[0].spec.as_ref().unwrap().node_name.is_none());
        assert_eq!(pods[1].status.as_ref().unwrap().phase.as_deref(), Some("Pending"));
        assert!(!util::is_ready(&pods[2]));
        assert!(util::is_ready(&pods[3]));
    }
}
