//! The PersistentVolume binder: binds each pending claim to the smallest
//! available volume that satisfies it (storage class, access modes, volume
//! mode, capacity, selector), or asks the class's external provisioner for
//! one; keeps both phases; releases volumes whose claim is gone, applying
//! their reclaim policy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use component_base::events::{object_ref, EventType, Recorder};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::informer::{Change, Factory};
use crate::queue::WorkQueue;
use crate::util;

const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

#[derive(Debug, thiserror::Error)]
#[error("{action} {name}: {source}")]
pub struct Error {
    action: &'static str,
    name: String,
    #[source]
    source: kube::Error,
}

pub struct PersistentVolumeBinder {
    client: kube::Client,
    recorder: Recorder,
    volumes: Store<PersistentVolume>,
    claims: Store<PersistentVolumeClaim>,
    classes: Store<StorageClass>,
    queue: WorkQueue,
}

/// Queue keys: `pvc:<ns>/<name>` and `pv:<name>`.
fn claim_key(c: &PersistentVolumeClaim) -> String {
    format!("pvc:{}", util::key_of(&c.metadata))
}

fn quantity(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> i128 {
    q.and_then(|q| apimachinery::quantity::parse_milli(&q.0).ok()).unwrap_or(0)
}

fn class_of_claim(c: &PersistentVolumeClaim) -> String {
    c.spec.as_ref().and_then(|s| s.storage_class_name.clone()).unwrap_or_default()
}

fn class_of_volume(v: &PersistentVolume) -> String {
    v.spec.as_ref().and_then(|s| s.storage_class_name.clone()).unwrap_or_default()
}

fn phase_of_volume(v: &PersistentVolume) -> &str {
    v.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

fn claim_ref_matches(r: &ObjectReference, c: &PersistentVolumeClaim) -> bool {
    r.namespace == c.metadata.namespace
        && r.name == c.metadata.name
        && r.uid.as_ref().is_none_or(|u| Some(u) == c.metadata.uid.as_ref())
}

/// Whether `v` can serve `c`.
pub fn satisfies(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let (Some(vs), Some(cs)) = (v.spec.as_ref(), c.spec.as_ref()) else { return false };
    if class_of_volume(v) != class_of_claim(c) {
        return false;
    }
    let modes = vs.access_modes.clone().unwrap_or_default();
    if !cs.access_modes.iter().flatten().all(|m| modes.contains(m)) {
        return false;
    }
    let mode = |m: Option<&String>| m.cloned().unwrap_or_else(|| "Filesystem".into());
    if mode(vs.volume_mode.as_ref()) != mode(cs.volume_mode.as_ref()) {
        return false;
    }
    let wanted = quantity(cs.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")));
    let has = quantity(vs.capacity.as_ref().and_then(|c| c.get("storage")));
    if has < wanted {
        return false;
    }
    cs.selector.is_none() || util::selector(cs.selector.as_ref()).matches(&util::labels(&v.metadata))
}

impl PersistentVolumeBinder {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue) -> Arc<Self> {
        let volumes = factory.persistent_volumes();
        let claims = factory.persistent_volume_claims();
        let this = Arc::new(PersistentVolumeBinder {
            recorder: Recorder::new(client.clone(), "persistentvolume-controller", None),
            client,
            volumes: volumes.store(),
            claims: claims.store(),
            classes: factory.storage_classes().store(),
            queue,
        });
        let me = this.clone();
        volumes.add_handler(move |c| {
            let v = match c {
                Change::Upsert { new, .. } => new,
                Change::Deleted(old) => old,
            };
            me.queue.add(format!("pv:{}", v.metadata.name.as_deref().unwrap_or_default()));
            // A volume appearing or freed may satisfy a pending claim.
            for claim in me.claims.state() {
                if claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).is_none_or(|n| n.is_empty()) {
                    me.queue.add(claim_key(&claim));
                }
            }
        });
        let me = this.clone();
        claims.add_handler(move |c| {
            let claim = match c {
                Change::Upsert { new, .. } => new,
                Change::Deleted(old) => old,
            };
            me.queue.add(claim_key(claim));
            if let Some(v) = claim.spec.as_ref().and_then(|s| s.volume_name.clone()) {
                me.queue.add(format!("pv:{v}"));
            }
        });
        this
    }

    pub fn run(self: &Arc<Self>) {
        let me = self.clone();
        // One worker: binding decisions must not race each other for a volume.
        self.queue.run_workers(1, move |key| {
            let me = me.clone();
            async move {
                match key.split_once(':') {
                    Some(("pvc", k)) => me.sync_claim(k).await,
                    Some(("pv", k)) => me.sync_volume(k).await,
                    _ => Ok(None),
                }
            }
        });
    }

    async fn sync_claim(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = util::split_key(key);
        let Some(claim) = self.claims.get(&ObjectRef::new(name).within(ns)) else { return Ok(None) };
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = claim.spec.clone().unwrap_or_default();
        let vol_api: Api<PersistentVolume> = Api::all(self.client.clone());
        // Already bound (or pre-bound by the user to a named volume).
        if let Some(vname) = spec.volume_name.clone().filter(|n| !n.is_empty()) {
            let Some(volume) = self.volumes.get(&ObjectRef::new(&vname)) else {
                return self.set_claim_phase(&claim, "Lost", None).await;
            };
            match volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                Some(r) if claim_ref_matches(r, &claim) => {}
                Some(_) => return Ok(None),
                None => {
                    self.bind_volume(&vol_api, &volume, &claim).await?;
                }
            }
            return self.set_claim_phase(&claim, "Bound", Some(&volume)).await;
        }
        // A volume pre-bound to this claim wins; then the smallest that fits.
        let volumes = self.volumes.state();
        let prebound = volumes.iter().find(|v| {
            v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some_and(|r| claim_ref_matches(r, &claim))
                && satisfies(v, &claim)
        });
        let best = prebound.cloned().or_else(|| {
            let mut fits: Vec<&Arc<PersistentVolume>> = volumes
                .iter()
                .filter(|v| v.spec.as_ref().is_some_and(|s| s.claim_ref.is_none()))
                .filter(|v| phase_of_volume(v) == "Available" && v.metadata.deletion_timestamp.is_none())
                .filter(|v| satisfies(v, &claim))
                .collect();
            fits.sort_by_key(|v| {
                quantity(v.spec.as_ref().and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage")))
            });
            fits.first().map(|v| (*v).clone())
        });
        let class = self.classes.get(&ObjectRef::new(&class_of_claim(&claim)));
        let wait_for_consumer =
            class.as_ref().and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer");
        let selected = claim.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(SELECTED_NODE));
        if wait_for_consumer && !selected {
            return Ok(None);
        }
        match best {
            Some(volume) => {
                let bound = self.bind_volume(&vol_api, &volume, &claim).await?;
                let claim_api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
                let mut updated = (*claim).clone();
                updated.spec.get_or_insert_with(Default::default).volume_name = bound.metadata.name.clone();
                let ann = updated.metadata.annotations.get_or_insert_with(BTreeMap::new);
                ann.insert(BIND_COMPLETED.into(), "yes".into());
                ann.insert(BOUND_BY_CONTROLLER.into(), "yes".into());
                let updated = match claim_api.replace(name, &PostParams::default(), &updated).await {
                    Ok(c) => c,
                    Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => {
                        return Ok(Some(Duration::from_millis(100)))
                    }
                    Err(e) => return Err(Error { action: "binding claim", name: key.into(), source: e }),
                };
                self.set_claim_phase(&updated, "Bound", Some(&bound)).await
            }
            None => {
                let provisioner = class
                    .as_ref()
                    .map(|c| c.provisioner.clone())
                    .filter(|p| !p.is_empty() && p != "kubernetes.io/no-provisioner");
                match provisioner {
                    Some(p) => {
                        let has =
                            claim.metadata.annotations.as_ref().and_then(|a| a.get(STORAGE_PROVISIONER)) == Some(&p);
                        if !has {
                            let claim_api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
                            let mut updated = (*claim).clone();
                            let ann = updated.metadata.annotations.get_or_insert_with(BTreeMap::new);
                            ann.insert(STORAGE_PROVISIONER.into(), p.clone());
                            ann.insert(BETA_STORAGE_PROVISIONER.into(), p.clone());
                            match claim_api.replace(name, &PostParams::default(), &updated).await {
                                Ok(_) => {}
                                Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => {
                                    return Ok(Some(Duration::from_millis(100)))
                                }
                                Err(e) => {
                                    return Err(Error { action: "annotating claim", name: key.into(), source: e })
                                }
                            }
                            let msg = format!("Waiting for a volume to be created either by the external provisioner '{p}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.");
                            self.recorder.event(
                                object_ref(claim.as_ref()),
                                EventType::Normal,
                                "ExternalProvisioning",
                                &msg,
                            );
                        }
                    }
                    None if class_of_claim(&claim).is_empty() => self.recorder.event(
                        object_ref(claim.as_ref()),
                        EventType::Normal,
                        "FailedBinding",
                        "no persistent volumes available for this claim and no storage class is set",
                    ),
                    None => {}
                }
                self.set_claim_phase(&claim, "Pending", None).await
            }
        }
    }

    /// Points the volume's claimRef at the claim and marks it Bound.
    async fn bind_volume(
        &self,
        api: &Api<PersistentVolume>,
        volume: &PersistentVolume,
        claim: &PersistentVolumeClaim,
    ) -> Result<PersistentVolume, Error> {
        let name = volume.metadata.name.clone().unwrap_or_default();
        let err = |action| {
            let name = name.clone();
            move |source| Error { action, name, source }
        };
        let mut updated = volume.clone();
        let already = volume
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| claim_ref_matches(r, claim) && r.uid.is_some());
        if !already {
            updated.spec.get_or_insert_with(Default::default).claim_ref = Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.metadata.namespace.clone(),
                name: claim.metadata.name.clone(),
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
                field_path: None,
            });
            updated
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            updated = api.replace(&name, &PostParams::default(), &updated).await.map_err(err("binding volume"))?;
        }
        if phase_of_volume(&updated) != "Bound" {
            updated.status.get_or_insert_with(Default::default).phase = Some("Bound".into());
            updated = api
                .replace_status(&name, &PostParams::default(), &updated)
                .await
                .map_err(err("marking volume bound"))?;
        }
        Ok(updated)
    }

    async fn set_claim_phase(
        &self,
        claim: &PersistentVolumeClaim,
        phase: &str,
        volume: Option<&PersistentVolume>,
    ) -> Result<Option<Duration>, Error> {
        let mut updated = claim.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        let before = status.clone();
        status.phase = Some(phase.into());
        if let Some(v) = volume {
            let vs = v.spec.clone().unwrap_or_default();
            status.capacity = vs.capacity;
            status.access_modes = vs.access_modes;
        }
        if *status == before {
            return Ok(None);
        }
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), claim.metadata.namespace.as_deref().unwrap_or_default());
        let name = claim.metadata.name.clone().unwrap_or_default();
        match api.replace_status(&name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(None),
            Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => Ok(Some(Duration::from_millis(100))),
            Err(source) => Err(Error { action: "updating claim status", name, source }),
        }
    }

    async fn sync_volume(&self, name: &str) -> Result<Option<Duration>, Error> {
        let Some(volume) = self.volumes.get(&ObjectRef::new(name)) else { return Ok(None) };
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let spec = volume.spec.clone().unwrap_or_default();
        let set_phase = |phase: &'static str, message: Option<String>| {
            let api = api.clone();
            let mut updated = (*volume).clone();
            async move {
                let status = updated.status.get_or_insert_with(Default::default);
                if status.phase.as_deref() == Some(phase) {
                    return Ok(None);
                }
                status.phase = Some(phase.into());
                status.message = message;
                match api.replace_status(name, &PostParams::default(), &updated).await {
                    Ok(_) => Ok(None),
                    Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => Ok(Some(Duration::from_millis(100))),
                    Err(source) => Err(Error { action: "updating volume status", name: name.into(), source }),
                }
            }
        };
        let Some(claim_ref) = spec.claim_ref.clone() else { return set_phase("Available", None).await };
        let claim = self.claims.get(
            &ObjectRef::new(claim_ref.name.as_deref().unwrap_or_default())
                .within(claim_ref.namespace.as_deref().unwrap_or_default()),
        );
        let claim_alive = claim.as_ref().is_some_and(|c| claim_ref.uid.is_none() || c.metadata.uid == claim_ref.uid);
        if claim_alive {
            // Pre-bound volumes wait for their claim; bound ones stay Bound.
            let bound = claim.as_ref().and_then(|c| c.spec.as_ref()?.volume_name.clone()).as_deref() == Some(name);
            return if bound { set_phase("Bound", None).await } else { Ok(None) };
        }
        if claim_ref.uid.is_none() {
            // Pre-bound to a claim that does not exist yet.
            return set_phase("Available", None).await;
        }
        // The claim is gone: release, then reclaim.
        match spec.persistent_volume_reclaim_policy.as_deref().unwrap_or("Retain") {
            "Delete" if volume.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(PROVISIONED_BY)) => {
                // The external provisioner deletes Released volumes it made.
                set_phase("Released", None).await
            }
            "Delete" => {
                set_phase(
                    "Failed",
                    Some("error getting deleter volume plugin for volume: no deletable volume plugin matched".into()),
                )
                .await
            }
            "Recycle" => set_phase("Failed", Some("recycling is not supported".into())).await,
            _ => set_phase("Released", None).await,
        }
    }
}
