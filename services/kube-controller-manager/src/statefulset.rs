//! The StatefulSet controller: pods with stable names (`<set>-<ordinal>`),
//! hostnames and PersistentVolumeClaims, created in order and each only
//! after its predecessors are Running and Ready (OrderedReady) or all at once
//! (Parallel), removed from the highest ordinal down, and rolled from the
//! highest ordinal down to the partition, one ready pod at a time.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use component_base::events::{object_ref, EventType, Recorder};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::history::{self, REVISION_HASH};
use crate::informer::{Change, Factory};
use crate::queue::WorkQueue;
use crate::util;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

#[derive(Debug, thiserror::Error)]
#[error("{action} for statefulset {sts}: {source}")]
pub struct Error {
    action: &'static str,
    sts: String,
    #[source]
    source: kube::Error,
}

pub struct StatefulSetController {
    client: kube::Client,
    recorder: Recorder,
    sets: Store<StatefulSet>,
    pods: Store<Pod>,
    claims: Store<PersistentVolumeClaim>,
    revisions: Store<ControllerRevision>,
    queue: WorkQueue,
}

fn ordinal(set: &str, pod: &Pod) -> Option<i32> {
    pod.metadata.name.as_deref()?.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn revision_of(p: &Pod) -> Option<&str> {
    p.metadata.labels.as_ref()?.get(REVISION_HASH).map(String::as_str)
}

fn running_and_ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && util::is_ready(p)
}

fn claim_name(template: &PersistentVolumeClaim, set: &str, ord: i32) -> String {
    format!("{}-{set}-{ord}", template.metadata.name.as_deref().unwrap_or_default())
}

/// The pod for one ordinal at one revision.
fn pod_for(sts: &StatefulSet, ord: i32, revision: &ControllerRevision) -> Pod {
    let set = sts.metadata.name.clone().unwrap_or_default();
    let spec = sts.spec.clone().unwrap_or_default();
    let template = serde_json::from_value::<k8s_openapi::api::core::v1::PodTemplateSpec>(
        revision
            .data
            .as_ref()
            .and_then(|d| d.0.get("spec")?.get("template").cloned())
            .map(|mut t| {
                if let Some(o) = t.as_object_mut() {
                    o.remove("$patch");
                }
                t
            })
            .unwrap_or_default(),
    )
    .unwrap_or(spec.template.clone());
    let tm = template.metadata.unwrap_or_default();
    let name = format!("{set}-{ord}");
    let mut labels = tm.labels.unwrap_or_default();
    labels.insert(REVISION_HASH.into(), revision.metadata.name.clone().unwrap_or_default());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ord.to_string());
    let mut pod_spec = template.spec.unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    if let Some(svc) = spec.service_name.filter(|s| !s.is_empty()) {
        pod_spec.subdomain = Some(svc);
    }
    for claim in spec.volume_claim_templates.iter().flatten() {
        let vol_name = claim.metadata.name.clone().unwrap_or_default();
        let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
        volumes.retain(|v| v.name != vol_name);
        volumes.push(Volume {
            name: vol_name,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(claim, &set, ord),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: sts.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tm.annotations,
            owner_references: Some(vec![util::new_controller_ref(sts)]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

impl StatefulSetController {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue) -> Arc<Self> {
        let sets = factory.statefulsets();
        let pods = factory.pods();
        let q = queue.clone();
        sets.add_handler(move |c| {
            if let Change::Upsert { new, .. } = c {
                q.add(util::key_of(&new.metadata));
            }
        });
        let q = queue.clone();
        pods.add_handler(move |c| {
            let pod = match c {
                Change::Upsert { new, .. } => new,
                Change::Deleted(p) => p,
            };
            if let Some(r) = util::controller_ref(&pod.metadata).filter(|r| r.kind == "StatefulSet") {
                q.add(format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), r.name));
            }
        });
        Arc::new(StatefulSetController {
            recorder: Recorder::new(client.clone(), "statefulset-controller", None),
            client,
            sets: sets.store(),
            pods: pods.store(),
            claims: factory.persistent_volume_claims().store(),
            revisions: factory.controller_revisions().store(),
            queue,
        })
    }

    pub fn run(self: &Arc<Self>, workers: usize) {
        let me = self.clone();
        self.queue.run_workers(workers, move |key| {
            let me = me.clone();
            async move { me.sync(&key).await }
        });
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = util::split_key(key);
        let Some(sts) = self.sets.get(&ObjectRef::new(name).within(ns)) else { return Ok(None) };
        let err = |action| {
            let sts = key.to_string();
            move |source| Error { action, sts, source }
        };
        if sts.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let uid = sts.metadata.uid.clone().unwrap_or_default();
        let spec = sts.spec.clone().unwrap_or_default();
        let replicas = spec.replicas.unwrap_or(1).max(0);
        let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
        let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
        let on_delete = spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("OnDelete");
        let partition = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0);

        let rev_api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        let revisions = history::owned(&self.revisions.state(), ns, &uid);
        let update = history::ensure(
            &rev_api,
            sts.as_ref(),
            &revisions,
            &spec.template,
            sts.status.as_ref().and_then(|s| s.collision_count),
        )
        .await
        .map_err(err("recording a revision"))?;
        let update_name = update.metadata.name.clone().unwrap_or_default();
        let status = sts.status.clone().unwrap_or_default();
        let current_name = status.current_revision.clone().filter(|c| !c.is_empty()).unwrap_or(update_name.clone());
        let revisions = history::owned(&self.revisions.state(), ns, &uid);
        let current = revisions
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(current_name.as_str()))
            .map(|r| (**r).clone())
            .unwrap_or(update.clone());

        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter(|p| util::controller_ref(&p.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let by_ord = |ord: i32| pods.iter().find(|p| ordinal(name, p) == Some(ord)).cloned();
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);

        // Create or replace the pods of ordinals [start, start + replicas).
        let mut blocked = false;
        for ord in start..start + replicas {
            match by_ord(ord) {
                Some(p) if util::is_terminal(&p) && p.metadata.deletion_timestamp.is_none() => {
                    self.delete_pod(&pod_api, &sts, &p).await.map_err(err("deleting a failed pod"))?;
                    blocked = true;
                }
                Some(p) => {
                    if !parallel && (p.metadata.deletion_timestamp.is_some() || !running_and_ready(&p)) {
                        blocked = true;
                    }
                }
                None => {
                    // Pods below the partition keep the current revision.
                    let rev = if on_delete || ord < start + partition { &current } else { &update };
                    self.create_pod(&pod_api, &pvc_api, &sts, ord, rev).await.map_err(err("creating a pod"))?;
                    blocked = !parallel;
                }
            }
            if blocked && !parallel {
                break;
            }
        }

        // Condemned pods, highest ordinal first.
        let mut condemned: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| ordinal(name, p).is_some_and(|o| o < start || o >= start + replicas))
            .cloned()
            .collect();
        condemned.sort_by_key(|p| std::cmp::Reverse(ordinal(name, p)));
        if !blocked || parallel {
            for p in &condemned {
                if p.metadata.deletion_timestamp.is_some() {
                    if parallel {
                        continue;
                    }
                    blocked = true;
                    break;
                }
                self.delete_pod(&pod_api, &sts, p).await.map_err(err("deleting a condemned pod"))?;
                if !parallel {
                    blocked = true;
                    break;
                }
            }
        }

        // Rolling update: highest ordinal first, down to the partition, one at a time.
        let all_ready = (start..start + replicas).all(|o| by_ord(o).is_some_and(|p| running_and_ready(&p)));
        if !on_delete && !blocked && all_ready && condemned.is_empty() {
            for ord in (start + partition..start + replicas).rev() {
                if let Some(p) = by_ord(ord) {
                    if revision_of(&p) != Some(update_name.as_str()) {
                        self.delete_pod(&pod_api, &sts, &p).await.map_err(err("deleting a pod to update it"))?;
                        break;
                    }
                }
            }
        }

        // Status.
        let live: Vec<&Arc<Pod>> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = jiff::Timestamp::now();
        let updated = live.iter().filter(|p| revision_of(p) == Some(update_name.as_str())).count() as i32;
        let at_current = live.iter().filter(|p| revision_of(p) == Some(current_name.as_str())).count() as i32;
        let mut next = status.clone();
        next.replicas = live.len() as i32;
        next.ready_replicas = Some(live.iter().filter(|p| util::is_ready(p)).count() as i32);
        next.available_replicas = Some(live.iter().filter(|p| util::is_available(p, min_ready, now)).count() as i32);
        next.updated_replicas = Some(updated);
        next.current_replicas = Some(at_current);
        next.update_revision = Some(update_name.clone());
        next.current_revision = Some(current_name.clone());
        next.observed_generation = sts.metadata.generation;
        // Every pod at the update revision: it becomes the current one.
        if updated == replicas && live.len() as i32 == replicas {
            next.current_revision = Some(update_name.clone());
            next.current_replicas = Some(updated);
        }
        if Some(&next) != sts.status.as_ref() {
            let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
            let mut with_status = (*sts).clone();
            with_status.status = Some(next);
            match api.replace_status(name, &PostParams::default(), &with_status).await {
                Ok(_) => {}
                Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => return Ok(Some(Duration::from_millis(200))),
                Err(e) => return Err(err("updating status")(e)),
            }
        }
        let live_revisions: HashSet<String> = pods.iter().filter_map(|p| revision_of(p).map(String::from)).collect();
        history::truncate(
            &rev_api,
            &revisions,
            &live_revisions,
            &update_name,
            spec.revision_history_limit.unwrap_or(10),
        )
        .await
        .map_err(err("trimming history"))?;
        if min_ready > 0 {
            return Ok(Some(Duration::from_secs(min_ready as u64)));
        }
        Ok(None)
    }

    async fn create_pod(
        &self,
        pod_api: &Api<Pod>,
        pvc_api: &Api<PersistentVolumeClaim>,
        sts: &StatefulSet,
        ord: i32,
        rev: &ControllerRevision,
    ) -> Result<(), kube::Error> {
        let set = sts.metadata.name.clone().unwrap_or_default();
        let spec = sts.spec.clone().unwrap_or_default();
        let delete_with_set =
            spec.persistent_volume_claim_retention_policy.as_ref().and_then(|p| p.when_deleted.as_deref())
                == Some("Delete");
        for template in spec.volume_claim_templates.iter().flatten() {
            let claim = claim_name(template, &set, ord);
            let ns = sts.metadata.namespace.clone().unwrap_or_default();
            if self.claims.get(&ObjectRef::new(&claim).within(&ns)).is_some() {
                continue;
            }
            let pvc = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim),
                    namespace: Some(ns),
                    labels: spec.selector.match_labels.clone(),
                    owner_references: delete_with_set.then(|| vec![util::new_controller_ref(sts)]),
                    ..Default::default()
                },
                spec: template.spec.clone(),
                status: None,
            };
            match pvc_api.create(&PostParams::default(), &pvc).await {
                Ok(_) => {}
                Err(e) if util::api_code(&e) == Some(409) => {}
                Err(e) => return Err(e),
            }
        }
        let pod = pod_for(sts, ord, rev);
        match pod_api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                let msg = format!("create Pod {set}-{ord} in StatefulSet {set} successful");
                self.recorder.event(object_ref(sts), EventType::Normal, "SuccessfulCreate", &msg);
                Ok(())
            }
            Err(e) if util::api_code(&e) == Some(409) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn delete_pod(&self, api: &Api<Pod>, sts: &StatefulSet, pod: &Pod) -> Result<(), kube::Error> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                let set = sts.metadata.name.as_deref().unwrap_or_default();
                let msg = format!("delete Pod {name} in StatefulSet {set} successful");
                self.recorder.event(object_ref(sts), EventType::Normal, "SuccessfulDelete", &msg);
                Ok(())
            }
            Err(e) if util::api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
