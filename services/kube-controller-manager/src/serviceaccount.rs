//! Per-namespace defaults: the `default` ServiceAccount (upstream's
//! serviceaccount controller) and the `kube-root-ca.crt` ConfigMap holding
//! the cluster CA under `ca.crt` (the root CA certificate publisher).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::informer::{Change, Factory};
use crate::queue::WorkQueue;
use crate::util;

pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
const DESCRIPTION: &str = "kubernetes.io/description";
const DESCRIPTION_TEXT: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

#[derive(Debug, thiserror::Error)]
#[error("{action} in namespace {namespace}: {source}")]
pub struct Error {
    action: &'static str,
    namespace: String,
    #[source]
    source: kube::Error,
}

fn active(namespaces: &Store<Namespace>, name: &str) -> bool {
    namespaces.get(&ObjectRef::new(name)).is_some_and(|n| {
        n.metadata.deletion_timestamp.is_none()
            && n.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
    })
}

/// Enqueues every namespace as it appears or changes.
fn on_namespace(factory: &Factory, queue: &WorkQueue) {
    let q = queue.clone();
    factory.namespaces().add_handler(move |c| {
        if let Change::Upsert { new, .. } = c {
            q.add(util::key_of(&new.metadata));
        }
    });
}

pub struct ServiceAccountController {
    client: kube::Client,
    namespaces: Store<Namespace>,
    accounts: Store<ServiceAccount>,
    queue: WorkQueue,
}

impl ServiceAccountController {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue) -> Arc<Self> {
        on_namespace(factory, &queue);
        let sa = factory.service_accounts();
        let q = queue.clone();
        sa.add_handler(move |c| {
            if let Change::Deleted(sa) = c {
                if sa.metadata.name.as_deref() == Some("default") {
                    q.add(sa.metadata.namespace.clone().unwrap_or_default());
                }
            }
        });
        Arc::new(ServiceAccountController {
            client,
            namespaces: factory.namespaces().store(),
            accounts: sa.store(),
            queue,
        })
    }

    pub fn run(self: &Arc<Self>, workers: usize) {
        let me = self.clone();
        self.queue.run_workers(workers, move |ns| {
            let me = me.clone();
            async move { me.sync(&ns).await }
        });
    }

    async fn sync(&self, ns: &str) -> Result<Option<Duration>, Error> {
        if !active(&self.namespaces, ns) || self.accounts.get(&ObjectRef::new("default").within(ns)).is_some() {
            return Ok(None);
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta { name: Some("default".into()), ..Default::default() },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => Ok(None),
            // Already there, or the namespace is going away.
            Err(e) if matches!(util::api_code(&e), Some(409 | 403 | 404)) => Ok(None),
            Err(source) => Err(Error { action: "creating the default service account", namespace: ns.into(), source }),
        }
    }
}

pub struct RootCaPublisher {
    client: kube::Client,
    ca: String,
    namespaces: Store<Namespace>,
    config_maps: Store<ConfigMap>,
    queue: WorkQueue,
}

impl RootCaPublisher {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue, ca: String) -> Arc<Self> {
        on_namespace(factory, &queue);
        let cms = factory.config_maps();
        let q = queue.clone();
        cms.add_handler(move |c| {
            let cm = match c {
                Change::Upsert { new, .. } => new,
                Change::Deleted(old) => old,
            };
            if cm.metadata.name.as_deref() == Some(ROOT_CA_CONFIGMAP) {
                q.add(cm.metadata.namespace.clone().unwrap_or_default());
            }
        });
        Arc::new(RootCaPublisher {
            client,
            ca,
            namespaces: factory.namespaces().store(),
            config_maps: cms.store(),
            queue,
        })
    }

    pub fn run(self: &Arc<Self>, workers: usize) {
        let me = self.clone();
        self.queue.run_workers(workers, move |ns| {
            let me = me.clone();
            async move { me.sync(&ns).await }
        });
    }

    async fn sync(&self, ns: &str) -> Result<Option<Duration>, Error> {
        if !active(&self.namespaces, ns) {
            return Ok(None);
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let data = BTreeMap::from([("ca.crt".to_string(), self.ca.clone())]);
        let err = |action| move |source| Error { action, namespace: ns.to_string(), source };
        match self.config_maps.get(&ObjectRef::new(ROOT_CA_CONFIGMAP).within(ns)) {
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(ROOT_CA_CONFIGMAP.into()),
                        annotations: Some(BTreeMap::from([(DESCRIPTION.to_string(), DESCRIPTION_TEXT.to_string())])),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &cm).await {
                    Ok(_) => Ok(None),
                    Err(e) if matches!(util::api_code(&e), Some(409 | 403 | 404)) => Ok(None),
                    Err(e) => Err(err("publishing the root CA")(e)),
                }
            }
            Some(cm) if cm.data.as_ref() != Some(&data) || cm.binary_data.is_some() => {
                let mut fixed = (*cm).clone();
                fixed.data = Some(data);
                fixed.binary_data = None;
                match api.replace(ROOT_CA_CONFIGMAP, &PostParams::default(), &fixed).await {
                    Ok(_) => Ok(None),
                    Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => Ok(Some(Duration::from_millis(100))),
                    Err(e) => Err(err("restoring the root CA")(e)),
                }
            }
            Some(_) => Ok(None),
        }
    }
}
