//! The ResourceQuota controller: recalculates `status.used` of every quota
//! from the objects of its namespace, on start, every
//! `--resource-quota-sync-period`, when a quota's `spec.hard` changes and
//! when an object's usage goes down or away (a pod turning Succeeded/Failed,
//! a deletion). The apiserver's quota admission charges creates against
//! `status.used`; this controller is the source of truth that frees what
//! admission cannot see (terminated pods) and corrects any drift.
//!
//! Usage follows upstream's evaluators: `pods` and the compute resources
//! (`requests.*`, `limits.*`, bare `cpu`/`memory`/`ephemeral-storage`) count
//! pods that are not terminal (nor past their deletion grace period), while
//! `count/pods` counts every pod in storage; `services.nodeports` and
//! `services.loadbalancers`; claims' `requests.storage`, also per storage
//! class; `count/<resource>.<group>` of any other resource is listed through
//! discovery at sync time. A quota's scopes (Terminating, NotTerminating,
//! BestEffort, NotBestEffort, PriorityClass, CrossNamespacePodAffinity, from
//! `spec.scopes` or `spec.scopeSelector`) narrow it to the pods they select.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use apimachinery::quantity::{format_milli, parse_milli};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;

use crate::informer::{Change, Factory, Informer};
use crate::queue::WorkQueue;
use crate::util;

/// Quota resource name → amount in milli-units.
pub type Usage = BTreeMap<String, i128>;

const ONE: i128 = 1000;
const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

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

/// The kinds this controller watches, and what each counts towards.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Pods,
    Services,
    ConfigMaps,
    Secrets,
    Claims,
    ReplicationControllers,
    Quotas,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Pods,
        Kind::Services,
        Kind::ConfigMaps,
        Kind::Secrets,
        Kind::Claims,
        Kind::ReplicationControllers,
        Kind::Quotas,
    ];

    fn plural(self) -> &'static str {
        match self {
            Kind::Pods => "pods",
            Kind::Services => "services",
            Kind::ConfigMaps => "configmaps",
            Kind::Secrets => "secrets",
            Kind::Claims => "persistentvolumeclaims",
            Kind::ReplicationControllers => "replicationcontrollers",
            Kind::Quotas => "resourcequotas",
        }
    }

    /// The watched kind a quota resource name is computed from, if any.
    fn of(resource: &str) -> Option<Kind> {
        let bare = resource.strip_prefix("count/").unwrap_or(resource);
        if let Some(k) = Kind::ALL.into_iter().find(|k| k.plural() == bare) {
            return Some(k);
        }
        if resource.starts_with("count/") {
            return None;
        }
        if resource == "requests.storage" || resource.contains(STORAGE_CLASS_SUFFIX) {
            return Some(Kind::Claims);
        }
        if resource.starts_with("services.") {
            return Some(Kind::Services);
        }
        if resource.starts_with("requests.")
            || resource.starts_with("limits.")
            || matches!(resource, "cpu" | "memory" | "ephemeral-storage")
        {
            return Some(Kind::Pods);
        }
        None
    }
}

fn milli(q: &Quantity) -> i128 {
    parse_milli(&q.0).unwrap_or(0)
}

/// Upstream's QuotaV1Pod: not terminal, and not past its deletion grace period.
fn pod_counts_for_compute(pod: &Pod, now: jiff::Timestamp) -> bool {
    if util::is_terminal(pod) {
        return false;
    }
    match (&pod.metadata.deletion_timestamp, pod.metadata.deletion_grace_period_seconds) {
        (Some(at), Some(grace)) => at.0 + jiff::SignedDuration::from_secs(grace) >= now,
        _ => true,
    }
}

/// Per resource name: the containers' sum, or the largest init container's if bigger.
fn pod_resources(pod: &Pod, limits: bool) -> BTreeMap<String, i128> {
    let Some(spec) = &pod.spec else { return BTreeMap::new() };
    let list = |c: &k8s_openapi::api::core::v1::Container| {
        let r = c.resources.as_ref();
        let m = if limits { r.and_then(|r| r.limits.as_ref()) } else { r.and_then(|r| r.requests.as_ref()) };
        m.cloned().unwrap_or_default()
    };
    let mut sum: BTreeMap<String, i128> = BTreeMap::new();
    for c in &spec.containers {
        for (k, q) in list(c) {
            *sum.entry(k).or_default() += milli(&q);
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, q) in list(c) {
            let v = milli(&q);
            let slot = sum.entry(k).or_default();
            *slot = (*slot).max(v);
        }
    }
    // Pod overhead (RuntimeClass) is charged on top, as upstream does.
    for (k, q) in spec.overhead.clone().unwrap_or_default() {
        *sum.entry(k).or_default() += milli(&q);
    }
    sum.retain(|_, v| *v > 0);
    sum
}

pub fn pod_usage(pod: &Pod, now: jiff::Timestamp) -> Usage {
    // Object counts track everything in storage, terminal pods included.
    let mut u = Usage::from([("count/pods".to_string(), ONE)]);
    if !pod_counts_for_compute(pod, now) {
        return u;
    }
    u.insert("pods".into(), ONE);
    for (r, v) in pod_resources(pod, false) {
        if matches!(r.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            u.insert(r.clone(), v);
        }
        u.insert(format!("requests.{r}"), v);
    }
    for (r, v) in pod_resources(pod, true) {
        u.insert(format!("limits.{r}"), v);
    }
    u
}

pub fn service_usage(svc: &Service) -> Usage {
    let mut u = Usage::from([("services".to_string(), ONE), ("count/services".to_string(), ONE)]);
    let spec = svc.spec.clone().unwrap_or_default();
    let ports = spec.ports.unwrap_or_default();
    let with_node_port = ports.iter().filter(|p| p.node_port.is_some()).count() as i128;
    match spec.type_.as_deref() {
        Some("NodePort") => {
            u.insert("services.nodeports".into(), ports.len() as i128 * ONE);
        }
        Some("LoadBalancer") => {
            // Without node port allocation only explicit node ports count.
            let n = if spec.allocate_load_balancer_node_ports == Some(false) {
                with_node_port
            } else {
                ports.len() as i128
            };
            u.insert("services.nodeports".into(), n * ONE);
            u.insert("services.loadbalancers".into(), ONE);
        }
        _ => {}
    }
    u
}

pub fn claim_usage(pvc: &PersistentVolumeClaim) -> Usage {
    let mut u =
        Usage::from([("persistentvolumeclaims".to_string(), ONE), ("count/persistentvolumeclaims".to_string(), ONE)]);
    let requested = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(milli)
        .unwrap_or(0);
    // An expansion in progress holds the larger of what is asked and what is allocated.
    let allocated = pvc
        .status
        .as_ref()
        .and_then(|s| s.allocated_resources.as_ref())
        .and_then(|r| r.get("storage"))
        .map(milli)
        .unwrap_or(0);
    let storage = requested.max(allocated);
    let class = pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone()).filter(|c| !c.is_empty());
    if let Some(class) = &class {
        u.insert(format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"), ONE);
    }
    if storage > 0 {
        u.insert("requests.storage".into(), storage);
        if let Some(class) = &class {
            u.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), storage);
        }
    }
    u
}

/// A quota's scopes, each as (scope name, operator, values): `spec.scopes`
/// (operator Exists) and `spec.scopeSelector.matchExpressions`.
fn quota_scopes(quota: &ResourceQuota) -> Vec<(String, String, Vec<String>)> {
    let spec = quota.spec.clone().unwrap_or_default();
    let mut out: Vec<_> = spec.scopes.unwrap_or_default().into_iter().map(|s| (s, "Exists".into(), vec![])).collect();
    for e in spec.scope_selector.and_then(|s| s.match_expressions).unwrap_or_default() {
        out.push((e.scope_name, e.operator, e.values.unwrap_or_default()));
    }
    out
}

/// Upstream's BestEffort QoS class: no container asks for or limits cpu or memory.
fn is_best_effort(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return true };
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).all(|c| {
        let r = c.resources.clone().unwrap_or_default();
        [r.requests, r.limits]
            .into_iter()
            .flatten()
            .all(|m| m.iter().all(|(k, q)| !matches!(k.as_str(), "cpu" | "memory") || milli(q) == 0))
    })
}

/// Whether a pod falls in every scope of a quota (upstream's pod evaluator).
fn pod_in_scopes(pod: &Pod, scopes: &[(String, String, Vec<String>)]) -> bool {
    let spec = pod.spec.clone().unwrap_or_default();
    scopes.iter().all(|(scope, op, values)| {
        let holds = match scope.as_str() {
            "Terminating" => spec.active_deadline_seconds.is_some_and(|s| s >= 0),
            "NotTerminating" => spec.active_deadline_seconds.is_none(),
            "BestEffort" => is_best_effort(pod),
            "NotBestEffort" => !is_best_effort(pod),
            "PriorityClass" => {
                let class = spec.priority_class_name.clone().unwrap_or_default();
                return match op.as_str() {
                    "In" => values.contains(&class),
                    "NotIn" => !values.contains(&class),
                    "Exists" => !class.is_empty(),
                    "DoesNotExist" => class.is_empty(),
                    _ => false,
                };
            }
            "CrossNamespacePodAffinity" => {
                let a = spec.affinity.clone().unwrap_or_default();
                let terms =
                    |required: Option<Vec<k8s_openapi::api::core::v1::PodAffinityTerm>>,
                     preferred: Option<Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                        required
                            .unwrap_or_default()
                            .into_iter()
                            .chain(preferred.unwrap_or_default().into_iter().map(|w| w.pod_affinity_term))
                            .collect::<Vec<_>>()
                    };
                let mut all = Vec::new();
                if let Some(x) = a.pod_affinity {
                    all.extend(terms(
                        x.required_during_scheduling_ignored_during_execution,
                        x.preferred_during_scheduling_ignored_during_execution,
                    ));
                }
                if let Some(x) = a.pod_anti_affinity {
                    all.extend(terms(
                        x.required_during_scheduling_ignored_during_execution,
                        x.preferred_during_scheduling_ignored_during_execution,
                    ));
                }
                all.iter()
                    .any(|t| t.namespace_selector.is_some() || t.namespaces.as_ref().is_some_and(|n| !n.is_empty()))
            }
            _ => false,
        };
        if op == "DoesNotExist" {
            !holds
        } else {
            holds
        }
    })
}

fn count_usage(plural: &str) -> Usage {
    Usage::from([(plural.to_string(), ONE), (format!("count/{plural}"), ONE)])
}

fn add(total: &mut Usage, u: Usage) {
    for (k, v) in u {
        *total.entry(k).or_default() += v;
    }
}

fn parse_list(m: Option<&BTreeMap<String, Quantity>>) -> Usage {
    m.map(|m| m.iter().map(|(k, q)| (k.clone(), milli(q))).collect()).unwrap_or_default()
}

fn to_quantities(u: &Usage) -> BTreeMap<String, Quantity> {
    u.iter().map(|(k, v)| (k.clone(), Quantity(format_milli(*v)))).collect()
}

pub struct ResourceQuotaController {
    client: kube::Client,
    quotas: Store<ResourceQuota>,
    pods: Store<Pod>,
    services: Store<Service>,
    config_maps: Store<ConfigMap>,
    secrets: Store<Secret>,
    claims: Store<PersistentVolumeClaim>,
    rcs: Store<ReplicationController>,
    queue: WorkQueue,
    resync: Duration,
}

impl ResourceQuotaController {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue, resync: Duration) -> Arc<Self> {
        let quota_inf = factory.resource_quotas();
        let this = Arc::new(ResourceQuotaController {
            client,
            quotas: quota_inf.store(),
            pods: factory.pods().store(),
            services: factory.services().store(),
            config_maps: factory.config_maps().store(),
            secrets: factory.secrets().store(),
            claims: factory.persistent_volume_claims().store(),
            rcs: factory.replication_controllers().store(),
            queue,
            resync,
        });
        let q = this.queue.clone();
        quota_inf.add_handler(move |c| match c {
            Change::Upsert { old: None, new } => q.add(util::key_of(&new.metadata)),
            Change::Upsert { old: Some(old), new } => {
                // Upstream syncs a quota whose hard limits changed or whose status lags them.
                let hard = |q: &ResourceQuota| parse_list(q.spec.as_ref().and_then(|s| s.hard.as_ref()));
                let status_hard = |q: &ResourceQuota| parse_list(q.status.as_ref().and_then(|s| s.hard.as_ref()));
                let used_keys = |q: &ResourceQuota| -> BTreeSet<String> {
                    parse_list(q.status.as_ref().and_then(|s| s.used.as_ref())).into_keys().collect()
                };
                let h = hard(new);
                if h != hard(old) || h != status_hard(new) || h.keys().any(|k| !used_keys(new).contains(k)) {
                    q.add(util::key_of(&new.metadata));
                }
            }
            Change::Deleted(_) => {}
        });
        let now = jiff::Timestamp::now;
        this.replenish_on(&factory.pods(), move |p: &Pod| pod_usage(p, now()));
        this.replenish_on(&factory.services(), service_usage);
        this.replenish_on(&factory.persistent_volume_claims(), claim_usage);
        this.replenish_on(&factory.config_maps(), |_: &ConfigMap| count_usage("configmaps"));
        this.replenish_on(&factory.secrets(), |_: &Secret| count_usage("secrets"));
        this.replenish_on(&factory.replication_controllers(), |_: &ReplicationController| {
            count_usage("replicationcontrollers")
        });
        this
    }

    /// Replenishment: a deletion, or an update that changes what an object
    /// counts for (a pod turning terminal), re-syncs its namespace's quotas.
    /// So does a creation, though admission charged it already: a sync that
    /// ran on caches which had not yet seen the object would otherwise leave
    /// `status.used` short of it until the next resync.
    fn replenish_on<K>(self: &Arc<Self>, inf: &Arc<Informer<K>>, usage: impl Fn(&K) -> Usage + Send + Sync + 'static)
    where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let me = Arc::downgrade(self);
        inf.add_handler(move |c| {
            let Some(me) = me.upgrade() else { return };
            let (obj, old) = match c {
                Change::Deleted(old) => (old, None),
                Change::Upsert { old: Some(old), new } => (new, Some(old)),
                Change::Upsert { old: None, new } => (new, None),
            };
            let quotas = me.quotas_in(obj.meta().namespace.as_deref().unwrap_or_default());
            if quotas.is_empty() || old.is_some_and(|old| usage(old) == usage(obj)) {
                return;
            }
            for key in quotas {
                me.queue.add(key);
            }
        });
    }

    fn quotas_in(&self, ns: &str) -> Vec<String> {
        self.quotas
            .state()
            .iter()
            .filter(|q| q.metadata.namespace.as_deref() == Some(ns))
            .map(|q| util::key_of(&q.metadata))
            .collect()
    }

    pub fn run(self: &Arc<Self>, workers: usize) {
        let me = self.clone();
        self.queue.run_workers(workers, move |key| {
            let me = me.clone();
            async move { me.sync(&key).await }
        });
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.resync);
            tick.tick().await;
            loop {
                tick.tick().await;
                for q in me.quotas.state() {
                    me.queue.add(util::key_of(&q.metadata));
                }
            }
        });
    }

    /// What the namespace's objects add up to, for the resources in `wanted`.
    pub async fn namespace_usage(&self, quota: &ResourceQuota, wanted: &BTreeSet<String>) -> Result<Usage, Error> {
        let ns = quota.metadata.namespace.as_deref().unwrap_or_default();
        let scopes = quota_scopes(quota);
        let mut kinds: BTreeSet<Kind> = wanted.iter().filter_map(|r| Kind::of(r)).collect();
        if !scopes.is_empty() {
            // Scopes only apply to pods: a scoped quota tracks nothing else.
            kinds.retain(|k| *k == Kind::Pods);
        }
        let mut total = Usage::new();
        let in_ns = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| m.namespace.as_deref() == Some(ns);
        let now = jiff::Timestamp::now();
        for kind in kinds {
            match kind {
                Kind::Pods => {
                    for p in self.pods.state().iter().filter(|p| in_ns(&p.metadata) && pod_in_scopes(p, &scopes)) {
                        add(&mut total, pod_usage(p, now));
                    }
                }
                Kind::Services => {
                    for s in self.services.state().iter().filter(|s| in_ns(&s.metadata)) {
                        add(&mut total, service_usage(s));
                    }
                }
                Kind::Claims => {
                    for c in self.claims.state().iter().filter(|c| in_ns(&c.metadata)) {
                        add(&mut total, claim_usage(c));
                    }
                }
                Kind::ConfigMaps => {
                    let n = self.config_maps.state().iter().filter(|o| in_ns(&o.metadata)).count();
                    add(&mut total, count_usage("configmaps").into_iter().map(|(k, v)| (k, v * n as i128)).collect());
                }
                Kind::Secrets => {
                    let n = self.secrets.state().iter().filter(|o| in_ns(&o.metadata)).count();
                    add(&mut total, count_usage("secrets").into_iter().map(|(k, v)| (k, v * n as i128)).collect());
                }
                Kind::ReplicationControllers => {
                    let n = self.rcs.state().iter().filter(|o| in_ns(&o.metadata)).count();
                    let u = count_usage("replicationcontrollers");
                    add(&mut total, u.into_iter().map(|(k, v)| (k, v * n as i128)).collect());
                }
                Kind::Quotas => {
                    let n = self.quotas.state().iter().filter(|o| in_ns(&o.metadata)).count();
                    add(
                        &mut total,
                        count_usage("resourcequotas").into_iter().map(|(k, v)| (k, v * n as i128)).collect(),
                    );
                }
            }
        }
        // Object counts of other resources: listed (metadata only) through discovery.
        for r in wanted.iter().filter(|r| r.starts_with("count/") && Kind::of(r).is_none() && scopes.is_empty()) {
            let n = self.count_objects(ns, &r["count/".len()..]).await?;
            total.insert(r.clone(), n * ONE);
        }
        Ok(total)
    }

    /// How many `<resource>.<group>` (or core `<resource>`) objects `ns` holds; 0 if the API is unknown.
    async fn count_objects(&self, ns: &str, resource: &str) -> Result<i128, Error> {
        let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
        let apigroup = match kube::discovery::group(&self.client, group).await {
            Ok(g) => g,
            Err(e) => {
                tracing::debug!(%resource, "quota: no such API group: {e}");
                return Ok(0);
            }
        };
        let Some((ar, _)) = apigroup.recommended_resources().into_iter().find(|(ar, _)| ar.plural == plural) else {
            return Ok(0);
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        let list = api.list_metadata(&ListParams::default()).await.map_err(|source| Error::Api {
            action: "listing",
            key: format!("{ns}/{resource}"),
            source,
        })?;
        Ok(list.items.len() as i128)
    }

    pub async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = util::split_key(key);
        let Some(quota) = self.quotas.get(&ObjectRef::new(name).within(ns)) else { return Ok(None) };
        let hard = parse_list(quota.spec.as_ref().and_then(|s| s.hard.as_ref()));
        let wanted: BTreeSet<String> = hard.keys().cloned().collect();
        let total = self.namespace_usage(&quota, &wanted).await?;
        let used: Usage = wanted.iter().map(|r| (r.clone(), total.get(r).copied().unwrap_or(0))).collect();
        let status = quota.status.clone().unwrap_or_default();
        if parse_list(status.hard.as_ref()) == hard && parse_list(status.used.as_ref()) == used {
            return Ok(None);
        }
        tracing::debug!(quota = %key, ?used, "recalculated quota usage");
        // An update pinned to the cached resourceVersion: a charge admission
        // made meanwhile is a conflict, and the sync runs again on fresh data.
        let mut updated = (*quota).clone();
        let st = updated.status.get_or_insert_with(Default::default);
        st.hard = Some(to_quantities(&hard));
        st.used = Some(to_quantities(&used));
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), ns);
        match api.replace_status(name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(None),
            Err(e) if util::api_code(&e) == Some(404) => Ok(None),
            Err(source) => Err(Error::Api { action: "updating status of", key: key.to_string(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pod_usage_sums_containers_takes_the_largest_init_container_and_frees_terminal_pods() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m"}}},
            ],
        }}));
        let now = jiff::Timestamp::now();
        let u = pod_usage(&p, now);
        assert_eq!(u["pods"], ONE);
        assert_eq!(u["count/pods"], ONE);
        assert_eq!(u["requests.cpu"], 2000);
        assert_eq!(u["cpu"], 2000);
        assert_eq!(u["requests.memory"], 64 * 1024 * 1024 * 1000);
        assert_eq!(u["limits.memory"], 128 * 1024 * 1024 * 1000);
        let mut done = p.clone();
        done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        let u = pod_usage(&done, now);
        assert_eq!(u.keys().collect::<Vec<_>>(), ["count/pods"]);
    }

    #[test]
    fn scopes_select_pods_by_deadline_qos_and_priority_class() {
        let best_effort = pod(json!({"spec": {"containers": [{"name": "a"}], "priorityClassName": "high"}}));
        let burstable = pod(json!({"spec": {"activeDeadlineSeconds": 30, "containers": [
            {"name": "a", "resources": {"requests": {"memory": "64Mi"}}}]}}));
        let scope = |s: &str| vec![(s.to_string(), "Exists".to_string(), vec![])];
        assert!(pod_in_scopes(&best_effort, &scope("BestEffort")));
        assert!(!pod_in_scopes(&burstable, &scope("BestEffort")));
        assert!(pod_in_scopes(&burstable, &scope("NotBestEffort")));
        assert!(pod_in_scopes(&burstable, &scope("Terminating")));
        assert!(pod_in_scopes(&best_effort, &scope("NotTerminating")));
        let high = vec![("PriorityClass".to_string(), "In".to_string(), vec!["high".to_string()])];
        assert!(pod_in_scopes(&best_effort, &high));
        assert!(!pod_in_scopes(&burstable, &high));
        assert!(pod_in_scopes(&burstable, &[]));
    }

    #[test]
    fn services_count_node_ports_and_load_balancers() {
        let svc: Service = serde_json::from_value(json!({"spec": {"type": "LoadBalancer", "ports": [
            {"port": 80, "nodePort": 30080}, {"port": 443, "nodePort": 30443}]}}))
        .unwrap();
        let u = service_usage(&svc);
        assert_eq!((u["services"], u["services.nodeports"], u["services.loadbalancers"]), (ONE, 2 * ONE, ONE));
        let plain: Service = serde_json::from_value(json!({"spec": {"ports": [{"port": 80}]}})).unwrap();
        assert!(!service_usage(&plain).contains_key("services.nodeports"));
    }

    #[test]
    fn claims_count_storage_overall_and_per_class() {
        let pvc: PersistentVolumeClaim = serde_json::from_value(
            json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}}),
        )
        .unwrap();
        let u = claim_usage(&pvc);
        let gi = 1024 * 1024 * 1024 * 1000;
        assert_eq!(u["requests.storage"], gi);
        assert_eq!(u["fast.storageclass.storage.k8s.io/requests.storage"], gi);
        assert_eq!(u["fast.storageclass.storage.k8s.io/persistentvolumeclaims"], ONE);
    }

    #[test]
    fn quota_resources_map_to_the_kinds_they_are_computed_from() {
        assert_eq!(Kind::of("pods"), Some(Kind::Pods));
        assert_eq!(Kind::of("count/pods"), Some(Kind::Pods));
        assert_eq!(Kind::of("requests.nvidia.com/gpu"), Some(Kind::Pods));
        assert_eq!(Kind::of("memory"), Some(Kind::Pods));
        assert_eq!(Kind::of("requests.storage"), Some(Kind::Claims));
        assert_eq!(Kind::of("gold.storageclass.storage.k8s.io/requests.storage"), Some(Kind::Claims));
        assert_eq!(Kind::of("services.nodeports"), Some(Kind::Services));
        assert_eq!(Kind::of("count/secrets"), Some(Kind::Secrets));
        assert_eq!(Kind::of("count/deployments.apps"), None);
    }
}
