//! The namespace controller: when a namespace is being deleted, deletes every
//! namespaced resource in it (all the apiserver serves, discovered each
//! time, not a fixed list) and, once nothing is left, removes the
//! `kubernetes` finalizer through the namespaces/finalize subresource.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::informer::{Change, Factory};
use crate::queue::WorkQueue;
use crate::util;

const FINALIZER: &str = "kubernetes";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("discovery: {0}")]
    Discovery(#[source] kube::Error),
    #[error("{action} {resource} in {namespace}: {source}")]
    Api {
        action: &'static str,
        resource: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

pub struct NamespaceController {
    client: kube::Client,
    namespaces: Store<Namespace>,
    queue: WorkQueue,
}

impl NamespaceController {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue) -> Arc<Self> {
        let inf = factory.namespaces();
        let this = Arc::new(NamespaceController { client, namespaces: inf.store(), queue });
        let q = this.queue.clone();
        inf.add_handler(move |c| {
            if let Change::Upsert { new, .. } = c {
                if new.metadata.deletion_timestamp.is_some() {
                    q.add(util::key_of(&new.metadata));
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

    pub async fn sync(&self, name: &str) -> Result<Option<Duration>, Error> {
        let Some(ns) = self.namespaces.get(&ObjectRef::new(name)) else { return Ok(None) };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(None);
        }
        let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
        if !finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(None);
        }
        let remaining = self.delete_all_content(name).await?;
        if remaining > 0 {
            tracing::info!(namespace = name, remaining, "namespace content still being deleted");
            return Ok(Some(Duration::from_secs(1)));
        }
        let mut finalized = (*ns).clone();
        if let Some(spec) = finalized.spec.as_mut() {
            spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.replace_subresource("finalize", name, &PostParams::default(), &finalized).await {
            Ok(_) => {
                tracing::info!(namespace = name, "namespace emptied and finalized");
                Ok(None)
            }
            Err(e) if util::api_code(&e) == Some(404) => Ok(None),
            Err(source) => {
                Err(Error::Api { action: "finalizing", resource: "namespace".into(), namespace: name.into(), source })
            }
        }
    }

    /// Deletes everything namespaced in `ns`; returns how many objects are left.
    async fn delete_all_content(&self, ns: &str) -> Result<usize, Error> {
        let discovery = Discovery::new(self.client.clone()).run().await.map_err(Error::Discovery)?;
        let mut remaining = 0;
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                if caps.scope != Scope::Namespaced
                    || ar.plural.contains('/')
                    || !caps.supports_operation(verbs::LIST)
                    || !caps.supports_operation(verbs::DELETE)
                {
                    continue;
                }
                let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
                let err = |action: &'static str| {
                    let resource = ar.plural.clone();
                    move |source| Error::Api { action, resource, namespace: ns.to_string(), source }
                };
                let items = api.list(&ListParams::default()).await.map_err(err("listing"))?.items;
                if items.is_empty() {
                    continue;
                }
                let dp = DeleteParams::background();
                if caps.supports_operation(verbs::DELETE_COLLECTION) {
                    match api.delete_collection(&dp, &ListParams::default()).await {
                        Ok(_) => {}
                        Err(e) if util::api_code(&e) == Some(404) => {}
                        Err(e) => return Err(err("deleting collection of")(e)),
                    }
                } else {
                    for item in items.iter().filter(|i| i.metadata.deletion_timestamp.is_none()) {
                        let name = item.metadata.name.clone().unwrap_or_default();
                        match api.delete(&name, &dp).await {
                            Ok(_) => {}
                            Err(e) if util::api_code(&e) == Some(404) => {}
                            Err(e) => return Err(err("deleting")(e)),
                        }
                    }
                }
                remaining += api.list(&ListParams::default()).await.map_err(err("listing"))?.items.len();
            }
        }
        Ok(remaining)
    }
}
