//! Shared informers: one watch per resource feeding a reflector `Store` that
//! every controller reads, plus change handlers (client-go's event handlers)
//! that turn changes into work-queue keys. Handlers see the previous object,
//! which the controllers need (a pod's old labels, an old controllerRef).

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController,
    ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::runtime::reflector::{store::Writer, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use serde::de::DeserializeOwned;

/// One observed change.
pub enum Change<K> {
    /// Added (old is None) or modified.
    Upsert {
        old: Option<Arc<K>>,
        new: Arc<K>,
    },
    Deleted(Arc<K>),
}

type Handler<K> = Arc<dyn Fn(&Change<K>) + Send + Sync>;
type Source<K> = futures::stream::BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

pub struct Informer<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    source: Mutex<Option<Source<K>>>,
    dyntype: K::DynamicType,
    store: Store<K>,
    writer: Mutex<Option<Writer<K>>>,
    handlers: RwLock<Vec<Handler<K>>>,
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    pub fn new(api: Api<K>) -> Arc<Self> {
        Self::new_with(api, Default::default())
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    pub fn new_with(api: Api<K>, dyntype: K::DynamicType) -> Arc<Self> {
        Self::from_source(watcher(api, watcher::Config::default()).boxed(), dyntype)
    }

    /// An informer over any watch stream (e.g. a metadata-only one).
    pub fn from_source(source: Source<K>, dyntype: K::DynamicType) -> Arc<Self> {
        let writer = Writer::new(dyntype.clone());
        Arc::new(Informer {
            source: Mutex::new(Some(source)),
            store: writer.as_reader(),
            dyntype,
            writer: Mutex::new(Some(writer)),
            handlers: RwLock::new(Vec::new()),
        })
    }

    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Registers a handler; register before `start` to see the initial list.
    pub fn add_handler(&self, f: impl Fn(&Change<K>) + Send + Sync + 'static) {
        self.handlers.write().unwrap_or_else(|e| e.into_inner()).push(Arc::new(f));
    }

    /// Starts the watch (once; later calls do nothing).
    pub fn start(self: &Arc<Self>) {
        let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let Some(source) = self.source.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let this = self.clone();
        tokio::spawn(async move { this.run(writer, source).await });
    }

    async fn run(self: Arc<Self>, mut writer: Writer<K>, source: Source<K>) {
        let mut stream = source.default_backoff().boxed();
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(resource = %K::plural(&self.dyntype), "watch: {e}");
                    continue;
                }
            };
            let changes = match &event {
                watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                    let key = ObjectRef::from_obj_with(obj, self.dyntype.clone());
                    let old = self.store.get(&key);
                    vec![Change::Upsert { old, new: Arc::new(obj.clone()) }]
                }
                watcher::Event::Delete(obj) => vec![Change::Deleted(Arc::new(obj.clone()))],
                watcher::Event::Init => Vec::new(),
                watcher::Event::InitDone => Vec::new(),
            };
            // Objects gone during a relist get no Delete event: report them.
            let before: Option<Vec<Arc<K>>> = matches!(event, watcher::Event::InitDone).then(|| self.store.state());
            writer.apply_watcher_event(&event);
            let mut changes = changes;
            if let Some(before) = before {
                let now: HashSet<ObjectRef<K>> = self
                    .store
                    .state()
                    .iter()
                    .map(|o| ObjectRef::from_obj_with(o.as_ref(), self.dyntype.clone()))
                    .collect();
                for old in before {
                    if !now.contains(&ObjectRef::from_obj_with(old.as_ref(), self.dyntype.clone())) {
                        changes.push(Change::Deleted(old));
                    }
                }
            }
            let handlers: Vec<Handler<K>> = self.handlers.read().unwrap_or_else(|e| e.into_inner()).clone();
            for change in &changes {
                for h in &handlers {
                    h(change);
                }
            }
        }
    }

    pub async fn wait_synced(&self) {
        let _ = self.store.wait_until_ready().await;
    }
}

/// The shared informers, created on first use (client-go's SharedInformerFactory).
pub struct Factory {
    client: kube::Client,
    pub pods: OnceLock<Arc<Informer<Pod>>>,
    pub replicasets: OnceLock<Arc<Informer<ReplicaSet>>>,
    pub deployments: OnceLock<Arc<Informer<Deployment>>>,
    pub namespaces: OnceLock<Arc<Informer<Namespace>>>,
    pub nodes: OnceLock<Arc<Informer<Node>>>,
    pub services: OnceLock<Arc<Informer<Service>>>,
    pub service_accounts: OnceLock<Arc<Informer<ServiceAccount>>>,
    pub config_maps: OnceLock<Arc<Informer<ConfigMap>>>,
    pub endpoint_slices: OnceLock<Arc<Informer<EndpointSlice>>>,
    pub leases: OnceLock<Arc<Informer<Lease>>>,
    pub jobs: OnceLock<Arc<Informer<Job>>>,
    pub cron_jobs: OnceLock<Arc<Informer<CronJob>>>,
    pub pod_disruption_budgets: OnceLock<Arc<Informer<PodDisruptionBudget>>>,
    pub daemonsets: OnceLock<Arc<Informer<DaemonSet>>>,
    pub statefulsets: OnceLock<Arc<Informer<StatefulSet>>>,
    pub controller_revisions: OnceLock<Arc<Informer<ControllerRevision>>>,
    pub persistent_volume_claims: OnceLock<Arc<Informer<PersistentVolumeClaim>>>,
    pub endpoints: OnceLock<Arc<Informer<Endpoints>>>,
    pub persistent_volumes: OnceLock<Arc<Informer<PersistentVolume>>>,
    pub storage_classes: OnceLock<Arc<Informer<StorageClass>>>,
    pub cluster_roles: OnceLock<Arc<Informer<ClusterRole>>>,
    pub replication_controllers: OnceLock<Arc<Informer<ReplicationController>>>,
    pub resource_quotas: OnceLock<Arc<Informer<ResourceQuota>>>,
    pub secrets: OnceLock<Arc<Informer<Secret>>>,
}

/// The Factory's informer fields, once: `start` and `wait_synced` both walk them.
macro_rules! every_informer {
    ($m:ident) => {
        $m!(
            pods,
            replicasets,
            deployments,
            namespaces,
            nodes,
            services,
            service_accounts,
            config_maps,
            endpoint_slices,
            leases,
            jobs,
            cron_jobs,
            pod_disruption_budgets,
            daemonsets,
            statefulsets,
            controller_revisions,
            persistent_volume_claims,
            endpoints,
            persistent_volumes,
            storage_classes,
            cluster_roles,
            replication_controllers,
            resource_quotas,
            secrets
        )
    };
}

impl Factory {
    pub fn new(client: kube::Client) -> Factory {
        Factory {
            client,
            pods: OnceLock::new(),
            replicasets: OnceLock::new(),
            deployments: OnceLock::new(),
            namespaces: OnceLock::new(),
            nodes: OnceLock::new(),
            services: OnceLock::new(),
            service_accounts: OnceLock::new(),
            config_maps: OnceLock::new(),
            endpoint_slices: OnceLock::new(),
            leases: OnceLock::new(),
            jobs: OnceLock::new(),
            cron_jobs: OnceLock::new(),
            pod_disruption_budgets: OnceLock::new(),
            daemonsets: OnceLock::new(),
            statefulsets: OnceLock::new(),
            controller_revisions: OnceLock::new(),
            persistent_volume_claims: OnceLock::new(),
            endpoints: OnceLock::new(),
            persistent_volumes: OnceLock::new(),
            storage_classes: OnceLock::new(),
            cluster_roles: OnceLock::new(),
            replication_controllers: OnceLock::new(),
            resource_quotas: OnceLock::new(),
            secrets: OnceLock::new(),
        }
    }

    pub fn pods(&self) -> Arc<Informer<Pod>> {
        self.pods.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn replicasets(&self) -> Arc<Informer<ReplicaSet>> {
        self.replicasets.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn deployments(&self) -> Arc<Informer<Deployment>> {
        self.deployments.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn namespaces(&self) -> Arc<Informer<Namespace>> {
        self.namespaces.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn nodes(&self) -> Arc<Informer<Node>> {
        self.nodes.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn services(&self) -> Arc<Informer<Service>> {
        self.services.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn service_accounts(&self) -> Arc<Informer<ServiceAccount>> {
        self.service_accounts.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn config_maps(&self) -> Arc<Informer<ConfigMap>> {
        self.config_maps.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn endpoint_slices(&self) -> Arc<Informer<EndpointSlice>> {
        self.endpoint_slices.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn leases(&self) -> Arc<Informer<Lease>> {
        self.leases.get_or_init(|| Informer::new(Api::namespaced(self.client.clone(), "kube-node-lease"))).clone()
    }

    pub fn jobs(&self) -> Arc<Informer<Job>> {
        self.jobs.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn cron_jobs(&self) -> Arc<Informer<CronJob>> {
        self.cron_jobs.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }

    pub fn pod_disruption_budgets(&self) -> Arc<Informer<PodDisruptionBudget>> {
        self.pod_disruption_budgets.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }

    pub fn daemonsets(&self) -> Arc<Informer<DaemonSet>> {
        self.daemonsets.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn statefulsets(&self) -> Arc<Informer<StatefulSet>> {
        self.statefulsets.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn controller_revisions(&self) -> Arc<Informer<ControllerRevision>> {
        self.controller_revisions.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn persistent_volume_claims(&self) -> Arc<Informer<PersistentVolumeClaim>> {
        self.persistent_volume_claims.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }

    pub fn endpoints(&self) -> Arc<Informer<Endpoints>> {
        self.endpoints.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }

    pub fn persistent_volumes(&self) -> Arc<Informer<PersistentVolume>> {
        self.persistent_volumes.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn storage_classes(&self) -> Arc<Informer<StorageClass>> {
        self.storage_classes.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }

    pub fn cluster_roles(&self) -> Arc<Informer<ClusterRole>> {
        self.cluster_roles.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }

    pub fn replication_controllers(&self) -> Arc<Informer<ReplicationController>> {
        self.replication_controllers.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn resource_quotas(&self) -> Arc<Informer<ResourceQuota>> {
        self.resource_quotas.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }
    pub fn secrets(&self) -> Arc<Informer<Secret>> {
        self.secrets.get_or_init(|| Informer::new(Api::all(self.client.clone()))).clone()
    }

    /// Starts every informer created so far.
    pub fn start(&self) {
        macro_rules! start {
            ($($f:ident),*) => { $( if let Some(i) = self.$f.get() { i.start(); } )* };
        }
        every_informer!(start);
    }

    /// Waits until every informer created so far has listed once.
    pub async fn wait_synced(&self) {
        macro_rules! wait {
            ($($f:ident),*) => { $( if let Some(i) = self.$f.get() { i.wait_synced().await; } )* };
        }
        every_informer!(wait);
    }
}
