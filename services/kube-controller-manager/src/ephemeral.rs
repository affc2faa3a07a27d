//! The ephemeral volume controller: for each generic ephemeral volume of a
//! pod, creates the PersistentVolumeClaim `<pod>-<volume>` from its
//! template, owned by the pod (so it goes with the pod).

use std::sync::Arc;
use std::time::Duration;

use component_base::events::{object_ref, EventType, Recorder};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::informer::{Change, Factory};
use crate::queue::WorkQueue;
use crate::util;

#[derive(Debug, thiserror::Error)]
#[error("creating the ephemeral volume claim {claim}: {source}")]
pub struct Error {
    claim: String,
    #[source]
    source: kube::Error,
}

pub struct EphemeralVolumeController {
    client: kube::Client,
    recorder: Recorder,
    pods: Store<Pod>,
    claims: Store<PersistentVolumeClaim>,
    queue: WorkQueue,
}

fn has_ephemeral(p: &Pod) -> bool {
    p.spec.as_ref().and_then(|s| s.volumes.as_ref()).is_some_and(|v| v.iter().any(|v| v.ephemeral.is_some()))
}

impl EphemeralVolumeController {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue) -> Arc<Self> {
        let pods = factory.pods();
        let claims = factory.persistent_volume_claims();
        let q = queue.clone();
        pods.add_handler(move |c| {
            if let Change::Upsert { new, .. } = c {
                if has_ephemeral(new) && new.metadata.deletion_timestamp.is_none() {
                    q.add(util::key_of(&new.metadata));
                }
            }
        });
        let me_pods = pods.store();
        let q = queue.clone();
        claims.add_handler(move |c| {
            // A claim deleted under a running pod is made again.
            if let Change::Deleted(claim) = c {
                if let Some(r) = util::controller_ref(&claim.metadata).filter(|r| r.kind == "Pod") {
                    let ns = claim.metadata.namespace.clone().unwrap_or_default();
                    if me_pods.get(&ObjectRef::new(&r.name).within(&ns)).is_some() {
                        q.add(format!("{ns}/{}", r.name));
                    }
                }
            }
        });
        Arc::new(EphemeralVolumeController {
            recorder: Recorder::new(client.clone(), "ephemeral_volume", None),
            client,
            pods: pods.store(),
            claims: claims.store(),
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
        let Some(pod) = self.pods.get(&ObjectRef::new(name).within(ns)) else { return Ok(None) };
        if pod.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        for vol in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let Some(template) = vol.ephemeral.as_ref().and_then(|e| e.volume_claim_template.as_ref()) else {
                continue;
            };
            let claim_name = format!("{name}-{}", vol.name);
            if let Some(existing) = self.claims.get(&ObjectRef::new(&claim_name).within(ns)) {
                if util::controller_ref(&existing.metadata).is_none_or(|r| Some(&r.uid) != pod.metadata.uid.as_ref()) {
                    let msg = format!("PVC {ns}/{claim_name} was not created for pod {ns}/{name} (pod is not owner)");
                    self.recorder.event(object_ref(pod.as_ref()), EventType::Warning, "FailedBinding", &msg);
                }
                continue;
            }
            let tm = template.metadata.clone().unwrap_or_default();
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name.clone()),
                    namespace: Some(ns.to_string()),
                    labels: tm.labels,
                    annotations: tm.annotations,
                    owner_references: Some(vec![util::new_controller_ref(pod.as_ref())]),
                    ..Default::default()
                },
                spec: Some(template.spec.clone()),
                status: None,
            };
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => {}
                Err(e) if util::api_code(&e) == Some(409) => {}
                Err(source) => return Err(Error { claim: format!("{ns}/{claim_name}"), source }),
            }
        }
        Ok(None)
    }
}
