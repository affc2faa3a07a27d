//! The Deployment controller: one ReplicaSet per pod template (named and
//! labelled by the template's hash), rolled by the RollingUpdate or Recreate
//! strategy, with upstream's revision annotations (so `kubectl rollout
//! status|history|undo|restart|pause|resume` work), proportional scaling,
//! the Available and Progressing conditions and revision history cleanup.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use component_base::events::{object_ref, EventType, Recorder};

use crate::informer::{Change, Factory};
use crate::queue::WorkQueue;
use crate::util;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const HASH_LABEL: &str = "pod-template-hash";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {name}: {source}")]
    Api {
        action: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("hash collision for the new ReplicaSet {0}; collisionCount bumped")]
    Collision(String),
}

fn api_err(action: &'static str, name: &str) -> impl FnOnce(kube::Error) -> Error {
    let name = name.to_string();
    move |source| Error::Api { action, name, source }
}

pub struct DeploymentController {
    client: kube::Client,
    recorder: Recorder,
    deployments: Store<Deployment>,
    rs: Store<ReplicaSet>,
    pods: Store<Pod>,
    queue: WorkQueue,
}

fn owner_deployment(d: &Store<Deployment>, meta: &ObjectMeta) -> Option<Arc<Deployment>> {
    let r = util::controller_ref(meta)?;
    if r.kind != "Deployment" {
        return None;
    }
    let owner = d.get(&ObjectRef::new(&r.name).within(meta.namespace.as_deref().unwrap_or_default()))?;
    (owner.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(owner)
}

impl DeploymentController {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue) -> Arc<Self> {
        let d_inf = factory.deployments();
        let rs_inf = factory.replicasets();
        let pod_inf = factory.pods();
        let this = Arc::new(DeploymentController {
            recorder: Recorder::new(client.clone(), "deployment-controller", None),
            client,
            deployments: d_inf.store(),
            rs: rs_inf.store(),
            pods: pod_inf.store(),
            queue,
        });
        let q = this.queue.clone();
        d_inf.add_handler(move |c| match c {
            Change::Upsert { new, .. } => q.add(util::key_of(&new.metadata)),
            Change::Deleted(old) => q.add(util::key_of(&old.metadata)),
        });
        let me = this.clone();
        rs_inf.add_handler(move |c| {
            let (old, new) = match c {
                Change::Upsert { old, new } => (old.clone(), new.clone()),
                Change::Deleted(rs) => (None, rs.clone()),
            };
            for rs in old.iter().chain(Some(&new)) {
                if let Some(d) = owner_deployment(&me.deployments, &rs.metadata) {
                    me.queue.add(util::key_of(&d.metadata));
                }
            }
            if util::controller_ref(&new.metadata).is_none() {
                let labels = util::labels(&new.metadata);
                for d in me.deployments.state() {
                    if d.metadata.namespace == new.metadata.namespace {
                        let sel = util::selector(d.spec.as_ref().map(|s| &s.selector));
                        if !sel.is_empty() && sel.matches(&labels) {
                            me.queue.add(util::key_of(&d.metadata));
                        }
                    }
                }
            }
        });
        // Recreate waits for old pods to be gone.
        let me = this.clone();
        pod_inf.add_handler(move |c| {
            if let Change::Deleted(pod) = c {
                let Some(r) = util::controller_ref(&pod.metadata) else { return };
                let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
                if let Some(rs) = me.rs.get(&ObjectRef::new(&r.name).within(ns)) {
                    if let Some(d) = owner_deployment(&me.deployments, &rs.metadata) {
                        me.queue.add(util::key_of(&d.metadata));
                    }
                }
            }
        });
        this
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
        let Some(d) = self.deployments.get(&ObjectRef::new(name).within(ns)) else { return Ok(None) };
        let mut d = (*d).clone();
        let sel = util::selector(d.spec.as_ref().map(|s| &s.selector));
        if sel.is_empty() {
            tracing::warn!(deployment = key, "selector is empty; nothing to do");
            return Ok(None);
        }
        let mut s = Sync { c: self, rs_api: Api::namespaced(self.client.clone(), ns), rss: Vec::new() };
        s.rss = s.claim(&d, &sel).await?;
        if d.metadata.deletion_timestamp.is_some() {
            return s.sync_status(&mut d).await;
        }
        let spec = d.spec.clone().unwrap_or_default();
        if spec.paused == Some(true) || s.is_scaling_event(&d) {
            return s.sync_scale(&mut d).await;
        }
        if spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate") {
            s.rollout_recreate(&mut d).await
        } else {
            s.rollout_rolling(&mut d).await
        }
    }
}

/// One sync of one Deployment, with its ReplicaSets kept current as it writes them.
struct Sync<'a> {
    c: &'a DeploymentController,
    rs_api: Api<ReplicaSet>,
    rss: Vec<ReplicaSet>,
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn d_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

pub fn revision(meta: &ObjectMeta) -> i64 {
    meta.annotations.as_ref().and_then(|a| a.get(REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn created(rs: &ReplicaSet) -> (Option<jiff::Timestamp>, String) {
    (rs.metadata.creation_timestamp.as_ref().map(|t| t.0), rs.metadata.name.clone().unwrap_or_default())
}

fn rolling(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()) != Some("Recreate")
}

fn resolve(v: Option<&IntOrString>, total: i32, round_up: bool, default: &str) -> i32 {
    let default = IntOrString::String(default.into());
    match v.unwrap_or(&default) {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let exact = pct * f64::from(total) / 100.0;
            (if round_up { exact.ceil() } else { exact.floor() }) as i32
        }
    }
}

/// (maxSurge, maxUnavailable) resolved against replicas; never both zero.
pub fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    if !rolling(d) {
        return (0, 0);
    }
    let ru = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let n = d_replicas(d);
    let surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), n, true, "25%");
    let unavailable = resolve(ru.and_then(|r| r.max_unavailable.as_ref()), n, false, "25%");
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable.min(n))
}

/// fnv32a over the template's JSON and the collision count, in upstream's
/// consonant-and-digit alphabet (so it never spells words).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x01000193);
        }
    };
    feed(prune(serde_json::to_value(template).unwrap_or_default()).to_string().as_bytes());
    if let Some(c) = collision_count {
        feed(&c.to_le_bytes());
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string().bytes().map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char).collect()
}

fn without_hash(t: &PodTemplateSpec) -> serde_json::Value {
    let mut t = t.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(HASH_LABEL);
    }
    prune(serde_json::to_value(t).unwrap_or_default())
}

/// Drops nulls, empty objects and empty arrays, as Go's omitempty serialization
/// would: `resources: {}` and no resources are the same template.
fn prune(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, prune(v)))
                .filter(|(_, v)| {
                    !(v.is_null()
                        || v.as_object().is_some_and(|o| o.is_empty())
                        || v.as_array().is_some_and(|a| a.is_empty()))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(prune).collect()),
        v => v,
    }
}

pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// The deployment's annotations that belong on its ReplicaSets too.
fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| {
            ![LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO]
                .contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn condition(status: &DeploymentStatus, type_: &str) -> Option<DeploymentCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_).cloned()
}

/// Upstream's SetDeploymentCondition: no change when status and reason are the same.
fn set_condition(status: &mut DeploymentStatus, type_: &str, st: &str, reason: &str, message: String, force: bool) {
    let now = Time(jiff::Timestamp::now());
    let old = condition(status, type_);
    if let Some(old) = &old {
        if old.status == st && old.reason.as_deref() == Some(reason) && !force {
            return;
        }
    }
    let transition = match &old {
        Some(o) if o.status == st => o.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    let conds = status.conditions.get_or_insert_with(Vec::new);
    conds.retain(|c| c.type_ != type_);
    conds.push(DeploymentCondition {
        type_: type_.into(),
        status: st.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now),
        last_transition_time: transition,
    });
}

impl Sync<'_> {
    /// Adopts matching orphan ReplicaSets, releases ours that stopped matching.
    async fn claim(
        &self,
        d: &Deployment,
        sel: &apimachinery::selector::label::LabelSelector,
    ) -> Result<Vec<ReplicaSet>, Error> {
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let mut out = Vec::new();
        for rs in self.c.rs.state() {
            if rs.metadata.namespace != d.metadata.namespace {
                continue;
            }
            let matches = sel.matches(&util::labels(&rs.metadata));
            let name = rs.metadata.name.clone().unwrap_or_default();
            match util::controller_ref(&rs.metadata) {
                Some(r) if r.uid != uid => {}
                Some(_) if matches || deleting => out.push((*rs).clone()),
                Some(_) => {
                    let refs: Vec<_> =
                        rs.metadata.owner_references.iter().flatten().filter(|r| r.uid != uid).cloned().collect();
                    let patch = json!({"metadata": {"ownerReferences": refs, "uid": rs.metadata.uid}});
                    match self.rs_api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                        Ok(_) => {}
                        Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => {}
                        Err(e) => return Err(api_err("releasing replicaset", &name)(e)),
                    }
                }
                None if !matches || deleting || rs.metadata.deletion_timestamp.is_some() => {}
                None => {
                    let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(util::new_controller_ref(d));
                    let patch = json!({"metadata": {"ownerReferences": refs, "uid": rs.metadata.uid}});
                    match self.rs_api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                        Ok(adopted) => out.push(adopted),
                        Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => {}
                        Err(e) => return Err(api_err("adopting replicaset", &name)(e)),
                    }
                }
            }
        }
        out.sort_by_key(created);
        Ok(out)
    }

    fn new_rs(&self, d: &Deployment) -> Option<usize> {
        let template = d.spec.as_ref().map(|s| &s.template)?;
        self.rss.iter().position(|rs| {
            rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, template))
        })
    }

    fn old_indices(&self, new: Option<usize>) -> Vec<usize> {
        (0..self.rss.len()).filter(|i| Some(*i) != new).collect()
    }

    fn is_scaling_event(&self, d: &Deployment) -> bool {
        let want = d_replicas(d).to_string();
        self.rss.iter().filter(|rs| replicas(rs) > 0).any(|rs| {
            rs.metadata.annotations.as_ref().and_then(|a| a.get(DESIRED_REPLICAS)).is_some_and(|v| *v != want)
        })
    }

    /// Sets replicas and the desired/max annotations; returns whether replicas changed.
    async fn scale(&mut self, i: usize, d: &Deployment, to: i32) -> Result<bool, Error> {
        let rs = &self.rss[i];
        let (surge, _) = surge_and_unavailable(d);
        let desired = d_replicas(d).to_string();
        let max = (d_replicas(d) + surge).to_string();
        let ann = rs.metadata.annotations.clone().unwrap_or_default();
        let changed = replicas(rs) != to;
        if !changed && ann.get(DESIRED_REPLICAS) == Some(&desired) && ann.get(MAX_REPLICAS) == Some(&max) {
            return Ok(false);
        }
        let name = rs.metadata.name.clone().unwrap_or_default();
        let patch = json!({
            "metadata": {"resourceVersion": rs.metadata.resource_version, "annotations": {DESIRED_REPLICAS: desired, MAX_REPLICAS: max}},
            "spec": {"replicas": to},
        });
        let updated = self
            .rs_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(api_err("scaling replicaset", &name))?;
        tracing::info!(replicaset = %name, replicas = to, "scaled");
        if changed {
            let from = replicas(&self.rss[i]);
            let dir = if to > from { "up" } else { "down" };
            let msg = format!("Scaled {dir} replica set {name} from {from} to {to}");
            self.c.recorder.event(object_ref(d), EventType::Normal, "ScalingReplicaSet", &msg);
        }
        self.rss[i] = updated;
        Ok(changed)
    }

    /// Finds (or creates) the ReplicaSet for the current template and keeps
    /// its revision at one above every old one.
    async fn get_new_rs(&mut self, d: &mut Deployment, create: bool) -> Result<Option<usize>, Error> {
        let existing = self.new_rs(d);
        let max_old = self.old_indices(existing).iter().map(|i| revision(&self.rss[*i].metadata)).max().unwrap_or(0);
        let new_revision = (max_old + 1).to_string();
        let d_name = d.metadata.name.clone().unwrap_or_default();
        if let Some(i) = existing {
            let rs = &self.rss[i];
            let mut ann = rs.metadata.annotations.clone().unwrap_or_default();
            let old_rev = revision(&rs.metadata);
            let mut changed = false;
            if old_rev < max_old + 1 {
                if old_rev > 0 {
                    let hist =
                        ann.get(REVISION_HISTORY).map(|h| format!("{h},{old_rev}")).unwrap_or(old_rev.to_string());
                    ann.insert(REVISION_HISTORY.into(), hist);
                }
                ann.insert(REVISION.into(), new_revision.clone());
                changed = true;
            }
            for (k, v) in copied_annotations(d) {
                if ann.get(&k) != Some(&v) {
                    ann.insert(k, v);
                    changed = true;
                }
            }
            let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if changed || min_ready.unwrap_or(0) != rs_min_ready.unwrap_or(0) {
                let name = rs.metadata.name.clone().unwrap_or_default();
                let patch = json!({
                    "metadata": {"resourceVersion": rs.metadata.resource_version, "annotations": ann},
                    "spec": {"minReadySeconds": min_ready.unwrap_or(0)},
                });
                self.rss[i] = self
                    .rs_api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(api_err("updating replicaset", &name))?;
            }
            self.set_deployment_revision(d, &revision(&self.rss[i].metadata).to_string()).await?;
            let rs_name = self.rss[i].metadata.name.clone().unwrap_or_default();
            let status = d.status.get_or_insert_with(Default::default);
            if condition(status, "Progressing").is_none() {
                set_condition(
                    status,
                    "Progressing",
                    "True",
                    "FoundNewReplicaSet",
                    format!("Found new replica set \"{rs_name}\""),
                    false,
                );
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        let spec = d.spec.clone().unwrap_or_default();
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collision);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector.match_labels.get_or_insert_with(Default::default).insert(HASH_LABEL.into(), hash.clone());
        let mut ann = copied_annotations(d);
        ann.insert(REVISION.into(), new_revision.clone());
        let (surge, _) = surge_and_unavailable(d);
        ann.insert(DESIRED_REPLICAS.into(), d_replicas(d).to_string());
        ann.insert(MAX_REPLICAS.into(), (d_replicas(d) + surge).to_string());
        let name = format!("{d_name}-{hash}");
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: d.metadata.namespace.clone(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(ann),
                owner_references: Some(vec![util::new_controller_ref(&*d)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let want = self.new_rs_replicas(d, &rs);
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(want);
        }
        let created = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(rs) => rs,
            Err(e) if util::api_code(&e) == Some(409) => {
                let found = self.rs_api.get(&name).await.map_err(api_err("getting replicaset", &name))?;
                let ours =
                    util::controller_ref(&found.metadata).is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                let same = found
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &spec.template));
                if ours && same {
                    found
                } else {
                    let status = d.status.get_or_insert_with(Default::default);
                    status.collision_count = Some(collision.unwrap_or(0) + 1);
                    self.write_status(d).await?;
                    return Err(Error::Collision(name));
                }
            }
            Err(e) => return Err(api_err("creating replicaset", &name)(e)),
        };
        tracing::info!(deployment = %d_name, replicaset = %name, replicas = want, "created new replica set");
        let status = d.status.get_or_insert_with(Default::default);
        set_condition(
            status,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            format!("Created new replica set \"{name}\""),
            true,
        );
        self.set_deployment_revision(d, &new_revision).await?;
        self.rss.push(created);
        Ok(Some(self.rss.len() - 1))
    }

    async fn set_deployment_revision(&self, d: &mut Deployment, rev: &str) -> Result<(), Error> {
        if d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).map(String::as_str) == Some(rev) {
            return Ok(());
        }
        let api: Api<Deployment> =
            Api::namespaced(self.c.client.clone(), d.metadata.namespace.as_deref().unwrap_or_default());
        let name = d.metadata.name.clone().unwrap_or_default();
        // An update, not a patch: the deployment-controller role may only update deployments.
        let mut annotated = d.clone();
        annotated.metadata.annotations.get_or_insert_with(Default::default).insert(REVISION.into(), rev.into());
        let updated = api
            .replace(&name, &PostParams::default(), &annotated)
            .await
            .map_err(api_err("annotating deployment", &name))?;
        d.metadata = updated.metadata;
        Ok(())
    }

    /// Upstream's NewRSNewReplicas.
    fn new_rs_replicas(&self, d: &Deployment, new: &ReplicaSet) -> i32 {
        let want = d_replicas(d);
        if !rolling(d) {
            return want;
        }
        let (surge, _) = surge_and_unavailable(d);
        let current: i32 =
            self.rss.iter().filter(|r| r.metadata.name != new.metadata.name).map(replicas).sum::<i32>() + replicas(new);
        let max_total = want + surge;
        if current >= max_total {
            return replicas(new);
        }
        (max_total - current).min(want - replicas(new)) + replicas(new)
    }

    async fn rollout_rolling(&mut self, d: &mut Deployment) -> Result<Option<Duration>, Error> {
        let Some(new) = self.get_new_rs(d, true).await? else { return Ok(None) };
        let want = d_replicas(d);
        // Scale up the new ReplicaSet.
        let n = replicas(&self.rss[new]);
        if n != want {
            let to = if n > want { want } else { self.new_rs_replicas(d, &self.rss[new]) };
            if self.scale(new, d, to).await? {
                return self.sync_status(d).await;
            }
        }
        if self.reconcile_old(d, new).await? {
            return self.sync_status(d).await;
        }
        if self.complete(d, Some(new)) {
            self.cleanup(d, Some(new)).await?;
        }
        self.sync_status(d).await
    }

    /// Scales old ReplicaSets down as far as maxUnavailable allows.
    async fn reconcile_old(&mut self, d: &Deployment, new: usize) -> Result<bool, Error> {
        let old = self.old_indices(Some(new));
        let old_count: i32 = old.iter().map(|i| replicas(&self.rss[*i])).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all: i32 = self.rss.iter().map(replicas).sum();
        let (_, max_unavailable) = surge_and_unavailable(d);
        let min_available = d_replicas(d) - max_unavailable;
        let new_rs = &self.rss[new];
        let new_unavailable = (replicas(new_rs) - available(new_rs)).max(0);
        let max_scaled_down = all - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let mut scaled = false;
        // First the unhealthy replicas of old ReplicaSets, oldest first.
        let mut total = 0;
        for &i in &old {
            if total >= max_scaled_down {
                break;
            }
            let rs = &self.rss[i];
            let unhealthy = replicas(rs) - available(rs).min(replicas(rs));
            if replicas(rs) == 0 || unhealthy <= 0 {
                continue;
            }
            let down = (max_scaled_down - total).min(unhealthy);
            let to = replicas(rs) - down;
            total += down;
            scaled |= self.scale(i, d, to).await?;
        }
        // Then healthy ones, never below minAvailable available pods.
        let available_now: i32 = self.rss.iter().map(|rs| available(rs).min(replicas(rs))).sum();
        if available_now > min_available {
            let mut remaining = available_now - min_available;
            for &i in &old {
                if remaining <= 0 {
                    break;
                }
                let n = replicas(&self.rss[i]);
                if n == 0 {
                    continue;
                }
                let down = n.min(remaining);
                remaining -= down;
                scaled |= self.scale(i, d, n - down).await?;
            }
        }
        Ok(scaled)
    }

    async fn rollout_recreate(&mut self, d: &mut Deployment) -> Result<Option<Duration>, Error> {
        let mut new = self.get_new_rs(d, false).await?;
        let mut scaled = false;
        for i in self.old_indices(new) {
            if replicas(&self.rss[i]) > 0 {
                scaled |= self.scale(i, d, 0).await?;
            }
        }
        if scaled {
            return self.sync_status(d).await;
        }
        // Wait until no pod of an old ReplicaSet is left running.
        let old_uids: Vec<String> =
            self.old_indices(new).iter().filter_map(|i| self.rss[*i].metadata.uid.clone()).collect();
        let ns = d.metadata.namespace.clone();
        let old_pods = self.c.pods.state().into_iter().any(|p| {
            p.metadata.namespace == ns
                && !util::is_terminal(&p)
                && util::controller_ref(&p.metadata).is_some_and(|r| old_uids.contains(&r.uid))
        });
        if old_pods {
            return self.sync_status(d).await;
        }
        if new.is_none() {
            new = self.get_new_rs(d, true).await?;
        }
        if let Some(i) = new {
            if self.scale(i, d, d_replicas(d)).await? {
                return self.sync_status(d).await;
            }
        }
        if self.complete(d, new) {
            self.cleanup(d, new).await?;
        }
        self.sync_status(d).await
    }

    /// Paused or a scaling event: only resize, proportionally when rolling.
    async fn sync_scale(&mut self, d: &mut Deployment) -> Result<Option<Duration>, Error> {
        let new = self.get_new_rs(d, false).await?;
        let want = d_replicas(d);
        let active: Vec<usize> = (0..self.rss.len()).filter(|i| replicas(&self.rss[*i]) > 0).collect();
        let target = match active.len() {
            0 => new.or_else(|| (!self.rss.is_empty()).then(|| self.rss.len() - 1)),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = target {
            self.scale(i, d, want).await?;
        } else if let Some(n) = new.filter(|n| replicas(&self.rss[*n]) == want && available(&self.rss[*n]) >= want) {
            for i in self.old_indices(Some(n)) {
                self.scale(i, d, 0).await?;
            }
        } else if rolling(d) {
            let (surge, _) = surge_and_unavailable(d);
            let allowed = if want > 0 { want + surge } else { 0 };
            let total: i32 = self.rss.iter().map(replicas).sum();
            let to_add = allowed - total;
            if to_add != 0 && total > 0 {
                // Largest first (newest on ties) when adding, smallest-oldest last when removing.
                let mut order: Vec<usize> = active.clone();
                order.sort_by(|a, b| {
                    replicas(&self.rss[*b])
                        .cmp(&replicas(&self.rss[*a]))
                        .then(created(&self.rss[*b]).cmp(&created(&self.rss[*a])))
                });
                let mut sizes: Vec<(usize, i32)> = Vec::new();
                let mut added = 0;
                for &i in &order {
                    let n = replicas(&self.rss[i]);
                    let mut share = (f64::from(n) * f64::from(to_add) / f64::from(total)).round() as i32;
                    if (to_add > 0 && added + share > to_add) || (to_add < 0 && added + share < to_add) {
                        share = to_add - added;
                    }
                    added += share;
                    sizes.push((i, (n + share).max(0)));
                }
                if let Some(first) = sizes.first_mut() {
                    first.1 = (first.1 + to_add - added).max(0);
                }
                for (i, n) in sizes {
                    self.scale(i, d, n).await?;
                }
            }
        }
        if d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            self.cleanup(d, new).await?;
        }
        self.sync_status(d).await
    }

    fn complete(&self, d: &Deployment, new: Option<usize>) -> bool {
        let want = d_replicas(d);
        let Some(n) = new else { return false };
        let rs = &self.rss[n];
        let st = rs.status.clone().unwrap_or_default();
        let total: i32 = self.rss.iter().map(|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0)).sum();
        st.replicas == want && total == want && available(rs) >= want
    }

    /// Deletes the oldest idle ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&mut self, d: &Deployment, new: Option<usize>) -> Result<(), Error> {
        let limit = d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10).max(0) as usize;
        let mut idle: Vec<&ReplicaSet> = self
            .old_indices(new)
            .into_iter()
            .map(|i| &self.rss[i])
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        if idle.len() <= limit {
            return Ok(());
        }
        idle.sort_by_key(|rs| (revision(&rs.metadata), created(rs)));
        let excess = idle.len() - limit;
        for rs in idle.into_iter().take(excess) {
            if replicas(rs) != 0 || rs.status.as_ref().is_some_and(|s| s.replicas != 0) {
                continue;
            }
            let name = rs.metadata.name.clone().unwrap_or_default();
            match self.rs_api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(replicaset = %name, "deleted old replica set beyond the revision history limit")
                }
                Err(e) if util::api_code(&e) == Some(404) => {}
                Err(e) => return Err(api_err("deleting replicaset", &name)(e)),
            }
        }
        Ok(())
    }

    /// Computes status and conditions (Available, Progressing with the deadline) and writes them if changed.
    async fn sync_status(&mut self, d: &mut Deployment) -> Result<Option<Duration>, Error> {
        let new = self.new_rs(d);
        let want = d_replicas(d);
        let (_, max_unavailable) = surge_and_unavailable(d);
        let old = d.status.clone().unwrap_or_default();
        let mut st = old.clone();
        let sum = |f: &dyn Fn(&ReplicaSet) -> i32| self.rss.iter().map(f).sum::<i32>();
        let total_spec = sum(&replicas);
        let avail = sum(&available);
        st.replicas = Some(sum(&|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0)));
        st.updated_replicas =
            Some(new.map(|i| self.rss[i].status.as_ref().map(|s| s.replicas).unwrap_or(0)).unwrap_or(0));
        st.ready_replicas = Some(sum(&|r| r.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)));
        st.available_replicas = Some(avail);
        st.unavailable_replicas = Some((total_spec - avail).max(0));
        st.observed_generation = d.metadata.generation;
        if avail >= want - max_unavailable {
            set_condition(
                &mut st,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                false,
            );
        } else {
            set_condition(
                &mut st,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                false,
            );
        }
        // Upstream's getReplicaFailures: the new ReplicaSet's ReplicaFailure, else an old one's.
        let failure_of = |rs: &ReplicaSet| {
            rs.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "ReplicaFailure").cloned()
        };
        let failure = new.and_then(|i| failure_of(&self.rss[i])).or_else(|| self.rss.iter().find_map(failure_of));
        match failure {
            Some(c) => {
                let conds = st.conditions.get_or_insert_with(Vec::new);
                conds.retain(|x| x.type_ != "ReplicaFailure");
                conds.push(DeploymentCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    last_update_time: c.last_transition_time.clone(),
                    last_transition_time: c.last_transition_time,
                });
            }
            None => {
                if let Some(conds) = st.conditions.as_mut() {
                    conds.retain(|x| x.type_ != "ReplicaFailure");
                }
            }
        }
        let spec = d.spec.clone().unwrap_or_default();
        let rs_name = new.and_then(|i| self.rss[i].metadata.name.clone()).unwrap_or_default();
        let mut requeue = None;
        let progressing = condition(&st, "Progressing");
        if spec.paused == Some(true) {
            set_condition(&mut st, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into(), false);
        } else if progressing.as_ref().and_then(|c| c.reason.as_deref()) == Some("DeploymentPaused") {
            set_condition(
                &mut st,
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
                false,
            );
        } else if let Some(deadline) = spec.progress_deadline_seconds {
            let complete = self.complete(d, new) && d.metadata.generation <= st.observed_generation;
            let moved = st.updated_replicas > old.updated_replicas
                || st.ready_replicas > old.ready_replicas
                || st.available_replicas > old.available_replicas
                || st.replicas.unwrap_or(0) - st.updated_replicas.unwrap_or(0)
                    < old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
            let timed_out = progressing
                .as_ref()
                .filter(|c| c.status == "True")
                .and_then(|c| c.last_update_time.as_ref())
                .is_some_and(|t| t.0 + jiff::SignedDuration::from_secs(i64::from(deadline)) < jiff::Timestamp::now());
            if complete {
                set_condition(
                    &mut st,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                    false,
                );
            } else if moved && new.is_some() {
                set_condition(
                    &mut st,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    format!("ReplicaSet \"{rs_name}\" is progressing."),
                    true,
                );
            } else if timed_out {
                set_condition(
                    &mut st,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                    false,
                );
            }
            if !complete {
                if let Some(t) =
                    condition(&st, "Progressing").filter(|c| c.status == "True").and_then(|c| c.last_update_time)
                {
                    let left = (t.0 + jiff::SignedDuration::from_secs(i64::from(deadline)))
                        .duration_since(jiff::Timestamp::now());
                    requeue = Some(Duration::try_from(left).unwrap_or_default() + Duration::from_secs(1));
                }
            }
        }
        if normalized(&st) != normalized(&old) {
            d.status = Some(st);
            self.write_status(d).await?;
        }
        // minReadySeconds: availability changes without a watch event on the deployment.
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        if min_ready > 0 && avail < want {
            requeue = Some(requeue.map_or(Duration::from_secs(min_ready as u64), |r: Duration| {
                r.min(Duration::from_secs(min_ready as u64))
            }));
        }
        Ok(requeue)
    }

    async fn write_status(&self, d: &Deployment) -> Result<(), Error> {
        let api: Api<Deployment> =
            Api::namespaced(self.c.client.clone(), d.metadata.namespace.as_deref().unwrap_or_default());
        let name = d.metadata.name.clone().unwrap_or_default();
        match api.replace_status(&name, &PostParams::default(), d).await {
            Ok(_) => Ok(()),
            Err(e) if util::api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(api_err("updating deployment status", &name)(e)),
        }
    }
}

/// Status without condition timestamps, to tell real changes from none.
fn normalized(s: &DeploymentStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(conds) = v.get_mut("conditions").and_then(|c| c.as_array_mut()) {
        for c in conds.iter_mut() {
            if let Some(o) = c.as_object_mut() {
                o.remove("lastUpdateTime");
                o.remove("lastTransitionTime");
            }
        }
        conds.sort_by_key(|c| c["type"].as_str().unwrap_or_default().to_string());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i32, surge: serde_json::Value, unavailable: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"a": "b"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}},
            },
        }))
        .unwrap()
    }

    #[test]
    fn surge_rounds_up_and_unavailable_rounds_down() {
        assert_eq!(surge_and_unavailable(&deployment(5, json!("25%"), json!("25%"))), (2, 1));
        assert_eq!(surge_and_unavailable(&deployment(3, json!(0), json!(0))), (0, 1));
        assert_eq!(surge_and_unavailable(&deployment(10, json!(3), json!("50%"))), (3, 5));
    }

    #[test]
    fn template_hash_ignores_nothing_but_is_stable_and_word_free() {
        let d = deployment(1, json!(1), json!(1));
        let t = d.spec.unwrap().template;
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&t, None));
        assert_ne!(h, template_hash(&t, Some(1)));
        assert!(h.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)));
        let mut with_label = t.clone();
        with_label.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(HASH_LABEL.into(), h);
        assert!(equal_ignore_hash(&t, &with_label));
    }
}
