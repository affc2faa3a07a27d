//! The horizontal pod autoscaler (upstream's `horizontalpodautoscaling`
//! controller, autoscaling/v2 semantics). Every sync period, per HPA: read the
//! target's `scale` subresource, compute a replica count per metric from
//! metrics.k8s.io (Resource and ContainerResource metrics; Pods, Object and
//! External metrics from custom.metrics.k8s.io / external.metrics.k8s.io,
//! reported as failures when those APIs are not served), take the largest,
//! stabilize and rate-limit it (`behavior`, or the downscale stabilization
//! window when unset), clamp it to min/max, write the scale and the status.
//!
//! The arithmetic (upstream's replica calculator, stabilization and scaling
//! policies) lives in pure functions at the bottom of this file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apimachinery::selector::label::LabelSelector as Selector;
use component_base::events::{object_ref, EventType, Recorder};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, CrossVersionObjectReference, ExternalMetricStatus, HPAScalingRules,
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus, MetricIdentifier,
    MetricSpec, MetricStatus, MetricTarget, MetricValueStatus, ObjectMetricStatus, PodsMetricStatus,
    ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::runtime::reflector::Store;
use serde::Deserialize;

use crate::informer::{Change, Factory, Informer};
use crate::queue::WorkQueue;
use crate::util;

/// Upstream's scaleUpLimitFactor and scaleUpLimitMinimum (scaling without `behavior`).
const SCALE_UP_LIMIT_FACTOR: f64 = 2.0;
const SCALE_UP_LIMIT_MINIMUM: f64 = 4.0;

/// The controller's flags.
#[derive(Clone, Debug)]
pub struct Config {
    pub sync_period: Duration,
    pub tolerance: f64,
    pub cpu_initialization_period: Duration,
    pub initial_readiness_delay: Duration,
    pub downscale_stabilization: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sync_period: Duration::from_secs(15),
            tolerance: 0.1,
            cpu_initialization_period: Duration::from_secs(300),
            initial_readiness_delay: Duration::from_secs(30),
            downscale_stabilization: Duration::from_secs(300),
        }
    }
}

/// Why a sync could not complete (it is retried at the next sync period).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to query scale subresource for {target}: {message}")]
    GetScale { target: String, message: String },
    #[error("failed to compute desired number of replicas based on listed metrics for {target}: {message}")]
    ComputeMetrics { target: String, message: String },
    #[error("failed to rescale {target}: {source}")]
    Rescale {
        target: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the status of {hpa}: {source}")]
    UpdateStatus {
        hpa: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Metrics(String),
}

/// What one HPA's recent history holds: recommendations for stabilization,
/// scale events for the rate policies.
#[derive(Default)]
struct History {
    recommendations: Vec<Recommendation>,
    scale_up: Vec<ScaleEvent>,
    scale_down: Vec<ScaleEvent>,
    /// Bumped on every sync: only the latest scheduled re-sync runs.
    epoch: u64,
}

pub struct HorizontalController {
    client: kube::Client,
    hpas: Arc<Informer<HorizontalPodAutoscaler>>,
    hpa_store: Store<HorizontalPodAutoscaler>,
    pods: Store<Pod>,
    queue: WorkQueue,
    recorder: Recorder,
    config: Config,
    history: Mutex<HashMap<String, History>>,
    /// Each HPA's target pod selector, as last read from its scale (upstream's hpaSelectors).
    selectors: Mutex<HashMap<String, Selector>>,
    /// apiVersion/kind → resource, from discovery (upstream's RESTMapper).
    mappings: tokio::sync::Mutex<HashMap<(String, String), ApiResource>>,
}

impl HorizontalController {
    /// The HPA informer is the controller's own, outside the factory: the
    /// controller-manager's other loops never wait for it to sync.
    pub fn register(
        factory: &Factory,
        informer_client: kube::Client,
        client: kube::Client,
        queue: WorkQueue,
        config: Config,
    ) -> Arc<Self> {
        let hpas = Informer::new(Api::<HorizontalPodAutoscaler>::all(informer_client));
        let this = Arc::new(HorizontalController {
            recorder: Recorder::new(client.clone(), "horizontal-pod-autoscaler", None),
            client,
            hpa_store: hpas.store(),
            hpas: hpas.clone(),
            pods: factory.pods().store(),
            queue,
            config,
            history: Mutex::new(HashMap::new()),
            selectors: Mutex::new(HashMap::new()),
            mappings: Default::default(),
        });
        let me = Arc::downgrade(&this);
        hpas.add_handler(move |c| {
            let Some(me) = me.upgrade() else { return };
            match c {
                // New HPAs and spec changes sync now; status writes (ours) do not.
                Change::Upsert { old, new } => {
                    let changed = old.as_ref().is_none_or(|o| o.spec != new.spec || o.metadata.uid != new.metadata.uid);
                    if changed {
                        me.queue.add(util::key_of(&new.metadata));
                    }
                }
                Change::Deleted(h) => {
                    let key = util::key_of(&h.metadata);
                    me.lock_history().remove(&key);
                    me.selectors.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                }
            }
        });
        this
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, HashMap<String, History>> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn run(self: &Arc<Self>, workers: usize) {
        self.hpas.start();
        let me = self.clone();
        self.queue.run_workers(workers, move |key| {
            let me = me.clone();
            async move {
                if let Err(e) = me.sync(&key).await {
                    tracing::warn!(hpa = %key, "{e}");
                }
                me.schedule(&key);
                Ok::<_, Error>(None)
            }
        });
    }

    /// Upstream re-queues every HPA once per sync period, whatever happened.
    fn schedule(self: &Arc<Self>, key: &str) {
        if self.hpa_store.get(&ref_of(key)).is_none() {
            self.lock_history().remove(key);
            return;
        }
        let epoch = {
            let mut h = self.lock_history();
            let e = h.entry(key.to_string()).or_default();
            e.epoch += 1;
            e.epoch
        };
        let me = Arc::downgrade(self);
        let key = key.to_string();
        let period = self.config.sync_period;
        tokio::spawn(async move {
            tokio::time::sleep(period).await;
            let Some(me) = me.upgrade() else { return };
            let current = me.lock_history().get(&key).map(|h| h.epoch);
            if current == Some(epoch) {
                me.queue.add(key);
            }
        });
    }

    async fn sync(&self, key: &str) -> Result<(), Error> {
        let Some(hpa) = self.hpa_store.get(&ref_of(key)) else {
            self.lock_history().remove(key);
            return Ok(());
        };
        let mut hpa = (*hpa).clone();
        let original = hpa.status.clone();
        let ns = hpa.metadata.namespace.clone().unwrap_or_default();
        let spec = hpa.spec.clone().unwrap_or_default();
        let target = &spec.scale_target_ref;
        let reference = format!("{}/{}/{}", target.kind, ns, target.name);
        let mut status = hpa.status.clone().unwrap_or_default();
        let mut conds = Conditions(status.conditions.take().unwrap_or_default());

        let (scale_api, mut scale) = match self.get_scale(&ns, target).await {
            Ok(v) => v,
            Err(message) => {
                self.event(&hpa, EventType::Warning, "FailedGetScale", &message);
                conds.set(
                    "AbleToScale",
                    "False",
                    "FailedGetScale",
                    format!("the HPA controller was unable to get the target's current scale: {message}"),
                );
                status.conditions = Some(conds.0);
                self.update_status(&mut hpa, original, status).await?;
                return Err(Error::GetScale { target: reference, message });
            }
        };
        conds.set(
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale".into(),
        );
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let now = Timestamp::now();
        {
            let mut h = self.lock_history();
            let e = h.entry(key.to_string()).or_default();
            if e.recommendations.is_empty() {
                e.recommendations.push(Recommendation { replicas: current, at: now });
            }
        }

        let min = spec.min_replicas.unwrap_or(1);
        let max = spec.max_replicas;
        let mut metric_statuses: Vec<MetricStatus> = Vec::new();
        let mut desired = 0;
        let mut reason = String::new();
        let mut deferred: Option<Error> = None;
        let rescale = if current == 0 && min != 0 {
            conds.set(
                "ScalingActive",
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero".into(),
            );
            false
        } else if current > max {
            reason = "Current number of replicas above Spec.MaxReplicas".into();
            desired = max;
            true
        } else if current < min {
            reason = "Current number of replicas below Spec.MinReplicas".into();
            desired = min;
            true
        } else {
            let computed = self.compute_replicas_for_metrics(&hpa, &ns, &scale, &spec.metrics, &mut conds).await;
            metric_statuses = computed.statuses;
            let Some((proposal, metric)) = computed.proposal else {
                let message = computed.error.unwrap_or_default();
                status.current_replicas = Some(current);
                status.current_metrics = (!metric_statuses.is_empty()).then_some(metric_statuses);
                status.conditions = Some(conds.0);
                self.update_status(&mut hpa, original, status).await?;
                self.event(&hpa, EventType::Warning, "FailedComputeMetricsReplicas", &message);
                return Err(Error::ComputeMetrics { target: reference, message });
            };
            deferred = computed.error.map(Error::Metrics);
            let mut rescale_metric = String::new();
            if proposal > desired {
                desired = proposal;
                rescale_metric = metric;
            }
            if desired > current {
                reason = format!("{rescale_metric} above target");
            }
            if desired < current {
                reason = "All metrics below target".into();
            }
            let mut h = self.lock_history();
            let history = h.entry(key.to_string()).or_default();
            desired = match &spec.behavior {
                None => normalize_without_behavior(
                    &mut history.recommendations,
                    current,
                    desired,
                    min,
                    max,
                    self.config.downscale_stabilization,
                    now,
                    &mut conds,
                ),
                Some(b) => {
                    let (up, down) = behavior_rules(Some(b), self.config.downscale_stabilization);
                    normalize_with_behavior(history, &up, &down, current, desired, min, max, now, &mut conds)
                }
            };
            desired != current
        };

        if rescale {
            if let Some(s) = scale.spec.as_mut() {
                s.replicas = Some(desired);
            } else {
                scale.spec = Some(k8s_openapi::api::autoscaling::v1::ScaleSpec { replicas: Some(desired) });
            }
            if let Err(e) = scale_api.replace_scale(&target.name, &PostParams::default(), &scale).await {
                let message = api_message(&e);
                self.event(
                    &hpa,
                    EventType::Warning,
                    "FailedRescale",
                    &format!("New size: {desired}; reason: {reason}; error: {message}"),
                );
                conds.set(
                    "AbleToScale",
                    "False",
                    "FailedUpdateScale",
                    format!("the HPA controller was unable to update the target scale: {message}"),
                );
                status.current_replicas = Some(current);
                status.current_metrics = (!metric_statuses.is_empty()).then_some(metric_statuses);
                status.conditions = Some(conds.0);
                self.update_status(&mut hpa, original, status).await?;
                return Err(Error::Rescale { target: reference, source: e });
            }
            conds.set(
                "AbleToScale",
                "True",
                "SucceededRescale",
                format!("the HPA controller was able to update the target scale to {desired}"),
            );
            self.event(&hpa, EventType::Normal, "SuccessfulRescale", &format!("New size: {desired}; reason: {reason}"));
            if let Some(b) = &spec.behavior {
                let (up, down) = behavior_rules(Some(b), self.config.downscale_stabilization);
                let mut h = self.lock_history();
                let history = h.entry(key.to_string()).or_default();
                store_scale_event(history, &up, &down, current, desired, now);
            }
            tracing::info!(hpa = %key, %reference, old = current, new = desired, %reason, "successfully rescaled");
        } else {
            desired = current;
        }

        status.current_replicas = Some(current);
        status.desired_replicas = desired;
        status.current_metrics = (!metric_statuses.is_empty()).then_some(metric_statuses);
        status.conditions = Some(conds.0);
        if rescale {
            status.last_scale_time = Some(Time(Timestamp::now()));
        }
        self.update_status(&mut hpa, original, status).await?;
        deferred.map_or(Ok(()), Err)
    }

    fn event(&self, hpa: &HorizontalPodAutoscaler, kind: EventType, reason: &str, message: &str) {
        self.recorder.event(object_ref(hpa), kind, reason, message);
    }

    async fn update_status(
        &self,
        hpa: &mut HorizontalPodAutoscaler,
        original: Option<HorizontalPodAutoscalerStatus>,
        mut status: HorizontalPodAutoscalerStatus,
    ) -> Result<(), Error> {
        status.observed_generation = hpa.metadata.generation;
        if original.as_ref() == Some(&status) {
            return Ok(());
        }
        hpa.status = Some(status);
        let ns = hpa.metadata.namespace.clone().unwrap_or_default();
        let name = hpa.metadata.name.clone().unwrap_or_default();
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.replace_status(&name, &PostParams::default(), &*hpa).await {
            self.event(hpa, EventType::Warning, "FailedUpdateStatus", &api_message(&e));
            return Err(Error::UpdateStatus { hpa: format!("{ns}/{name}"), source: e });
        }
        Ok(())
    }

    /// The resource behind an apiVersion and kind, from discovery (cached).
    async fn resource_for(&self, api_version: &str, kind: &str) -> Result<ApiResource, String> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(r) = self.mappings.lock().await.get(&key) {
            return Ok(r.clone());
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        if version.is_empty() || api_version.matches('/').count() > 1 {
            return Err(format!(
                "invalid API version in scale target reference: unexpected GroupVersion string: {api_version}"
            ));
        }
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, _) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| format!("unable to determine resource for scale target reference: {}", api_message(&e)))?;
        self.mappings.lock().await.insert(key, resource.clone());
        Ok(resource)
    }

    async fn get_scale(
        &self,
        ns: &str,
        target: &CrossVersionObjectReference,
    ) -> Result<(Api<DynamicObject>, Scale), String> {
        let api_version = target.api_version.clone().unwrap_or_default();
        let resource = self.resource_for(&api_version, &target.kind).await?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &resource);
        match api.get_scale(&target.name).await {
            Ok(scale) => Ok((api, scale)),
            Err(e) => {
                if util::api_code(&e) == Some(404) {
                    // The kind may have moved (a CRD replaced): look it up again next time.
                    self.mappings.lock().await.remove(&(api_version, target.kind.clone()));
                }
                Err(api_message(&e))
            }
        }
    }

    async fn compute_replicas_for_metrics(
        &self,
        hpa: &HorizontalPodAutoscaler,
        ns: &str,
        scale: &Scale,
        specs: &Option<Vec<MetricSpec>>,
        conds: &mut Conditions,
    ) -> Computed {
        let selector_str = scale.status.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
        let mut out = Computed::default();
        if selector_str.is_empty() {
            self.event(hpa, EventType::Warning, "SelectorRequired", "selector is required");
            conds.set(
                "ScalingActive",
                "False",
                "InvalidSelector",
                "the HPA target's scale is missing a selector".into(),
            );
            out.error = Some("selector is required".into());
            return out;
        }
        let selector = match Selector::parse(&selector_str) {
            Ok(s) => s,
            Err(e) => {
                let message = format!("couldn't convert selector into a corresponding internal selector object: {e}");
                self.event(hpa, EventType::Warning, "InvalidSelector", &message);
                conds.set("ScalingActive", "False", "InvalidSelector", message.clone());
                out.error = Some(message);
                return out;
            }
        };
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns) && selector.matches(&util::labels(&p.metadata)))
            .collect();
        // Pods two HPAs select would be scaled by both: upstream refuses.
        let key = util::key_of(&hpa.metadata);
        let selecting = {
            let mut selectors = self.selectors.lock().unwrap_or_else(|e| e.into_inner());
            selectors.insert(key, selector.clone());
            hpas_selecting(&selectors, ns, &pods)
        };
        if selecting.len() > 1 {
            let message =
                format!("pods by selector {selector_str} are controlled by multiple HPAs: [{}]", selecting.join(" "));
            self.event(hpa, EventType::Warning, "AmbiguousSelector", &message);
            conds.set("ScalingActive", "False", "AmbiguousSelector", message.clone());
            out.error = Some(message);
            return out;
        }
        let default_metrics;
        let specs: &[MetricSpec] = match specs.as_deref() {
            Some(s) if !s.is_empty() => s,
            // The apiserver defaults an HPA without metrics to 80% cpu utilization.
            _ => {
                default_metrics = vec![default_cpu_metric()];
                &default_metrics
            }
        };
        let spec_replicas = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let status_replicas = scale.status.as_ref().map(|s| s.replicas).unwrap_or(0);
        let ctx = MetricContext { ns, selector: &selector_str, pods: &pods, spec_replicas, status_replicas };

        let mut invalid = 0;
        let mut first_invalid: Option<(Cond, String)> = None;
        let mut best: Option<(i32, String)> = None;
        for spec in specs {
            let mut status = MetricStatus { type_: spec.type_.clone(), ..Default::default() };
            match self.compute_replicas_for_metric(hpa, spec, &ctx, &mut status).await {
                Ok((replicas, name)) => {
                    if best.as_ref().is_none_or(|(r, _)| *r == 0 || replicas > *r) {
                        best = Some((replicas, name));
                    }
                }
                Err((cond, err)) => {
                    if first_invalid.is_none() {
                        first_invalid = Some((cond, err));
                    }
                    invalid += 1;
                }
            }
            out.statuses.push(status);
        }
        let error = first_invalid
            .as_ref()
            .map(|(_, e)| format!("invalid metrics ({invalid} invalid out of {}), first error is: {e}", specs.len()));
        let proposal = best.as_ref().map(|(r, _)| *r).unwrap_or(0);
        if invalid >= specs.len() || (invalid > 0 && proposal < spec_replicas) {
            if let Some((c, _)) = first_invalid {
                conds.set(&c.type_, &c.status, &c.reason, c.message);
            }
            out.error = error;
            return out;
        }
        let (replicas, metric) = best.unwrap_or_default();
        conds.set(
            "ScalingActive",
            "True",
            "ValidMetricFound",
            format!("the HPA was able to successfully calculate a replica count from {metric}"),
        );
        out.proposal = Some((replicas, metric));
        out.error = error;
        out
    }

    /// One metric's proposal and the name it is reported under, or the
    /// ScalingActive=False condition and error upstream reports.
    async fn compute_replicas_for_metric(
        &self,
        hpa: &HorizontalPodAutoscaler,
        spec: &MetricSpec,
        ctx: &MetricContext<'_>,
        status: &mut MetricStatus,
    ) -> Result<(i32, String), (Cond, String)> {
        let fail = |reason: &str, err: String| {
            self.event(hpa, EventType::Warning, reason, &err);
            Err((
                Cond {
                    type_: "ScalingActive".into(),
                    status: "False".into(),
                    reason: reason.into(),
                    message: format!("the HPA was unable to compute the replica count: {err}"),
                },
                err,
            ))
        };
        match spec.type_.as_str() {
            "Resource" => {
                let Some(r) = &spec.resource else {
                    return fail("FailedGetResourceMetric", "resource metric source without a resource".into());
                };
                match self.resource_metric(ctx, &r.name, None, &r.target, false).await {
                    Ok((replicas, current, name)) => {
                        status.resource = Some(ResourceMetricStatus { name: r.name.clone(), current });
                        Ok((replicas, name))
                    }
                    Err(e) => {
                        fail("FailedGetResourceMetric", format!("failed to get {} resource metric value: {e}", r.name))
                    }
                }
            }
            "ContainerResource" => {
                let Some(r) = &spec.container_resource else {
                    return fail(
                        "FailedGetContainerResourceMetric",
                        "container resource metric source without a container resource".into(),
                    );
                };
                match self.resource_metric(ctx, &r.name, Some(&r.container), &r.target, true).await {
                    Ok((replicas, current, name)) => {
                        status.container_resource = Some(ContainerResourceMetricStatus {
                            name: r.name.clone(),
                            container: r.container.clone(),
                            current,
                        });
                        Ok((replicas, name))
                    }
                    Err(e) => fail(
                        "FailedGetContainerResourceMetric",
                        format!("failed to get {} container metric value: {e}", r.container),
                    ),
                }
            }
            "Pods" => {
                let Some(p) = &spec.pods else {
                    return fail("FailedGetPodsMetric", "pods metric source without a metric".into());
                };
                let target = p.target.average_value.as_ref().map(milli).unwrap_or(0);
                match self.pods_metric(ctx, &p.metric, target).await {
                    Ok((replicas, usage)) => {
                        status.pods = Some(PodsMetricStatus {
                            metric: p.metric.clone(),
                            current: MetricValueStatus { average_value: Some(quantity(usage)), ..Default::default() },
                        });
                        Ok((replicas, format!("pods metric {}", p.metric.name)))
                    }
                    Err(e) => fail("FailedGetPodsMetric", format!("failed to get pods metric value: {e}")),
                }
            }
            "Object" => {
                let Some(o) = &spec.object else {
                    return fail("FailedGetObjectMetric", "object metric source without an object".into());
                };
                match self.object_metric(ctx, o).await {
                    Ok((replicas, current)) => {
                        status.object = Some(ObjectMetricStatus {
                            described_object: o.described_object.clone(),
                            metric: o.metric.clone(),
                            current,
                        });
                        Ok((replicas, format!("{} metric {}", o.described_object.kind, o.metric.name)))
                    }
                    Err(e) => fail("FailedGetObjectMetric", format!("failed to get object metric value: {e}")),
                }
            }
            "External" => {
                let Some(x) = &spec.external else {
                    return fail("FailedGetExternalMetric", "external metric source without a metric".into());
                };
                match self.external_metric(ctx, &x.metric, &x.target).await {
                    Ok((replicas, current)) => {
                        status.external = Some(ExternalMetricStatus { metric: x.metric.clone(), current });
                        Ok((replicas, format!("external metric {}", x.metric.name)))
                    }
                    Err(e) => fail(
                        "FailedGetExternalMetric",
                        format!("failed to get {} external metric value: {e}", x.metric.name),
                    ),
                }
            }
            other => fail("InvalidMetricSourceType", format!("unknown metric source type {other:?}")),
        }
    }

    /// A Resource or ContainerResource metric: (replicas, current value, metric name).
    async fn resource_metric(
        &self,
        ctx: &MetricContext<'_>,
        resource: &str,
        container: Option<&str>,
        target: &MetricTarget,
        is_container: bool,
    ) -> Result<(i32, MetricValueStatus, String), String> {
        let params = self.calc_params();
        if let Some(avg) = &target.average_value {
            let metrics = self.pod_resource_metrics(ctx, resource, container).await.map_err(|e| {
                format!("failed to get {resource} usage: unable to get metrics for resource {resource}: {e}")
            })?;
            let (replicas, usage) =
                plain_metric_replicas(metrics, ctx.spec_replicas, milli(avg), ctx.pods, Some(resource), &params)
                    .map_err(|e| format!("failed to get {resource} usage: {e}"))?;
            let current = MetricValueStatus { average_value: Some(quantity(usage)), ..Default::default() };
            return Ok((replicas, current, format!("{resource} resource")));
        }
        let Some(utilization) = target.average_utilization else {
            return Err("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into());
        };
        let metrics = self.pod_resource_metrics(ctx, resource, container).await.map_err(|e| {
            format!("failed to get {resource} utilization: unable to get metrics for resource {resource}: {e}")
        })?;
        let r = resource_replicas(ctx.spec_replicas, utilization, resource, container, ctx.pods, metrics, &params)
            .map_err(|e| format!("failed to get {resource} utilization: {e}"))?;
        let current = MetricValueStatus {
            average_utilization: Some(r.utilization),
            average_value: Some(quantity(r.raw)),
            ..Default::default()
        };
        let name = if is_container {
            format!("{resource} container resource utilization (percentage of request)")
        } else {
            format!("{resource} resource utilization (percentage of request)")
        };
        Ok((r.replicas, current, name))
    }

    fn calc_params(&self) -> CalcParams {
        CalcParams {
            tolerance: self.config.tolerance,
            cpu_initialization_period: self.config.cpu_initialization_period,
            initial_readiness_delay: self.config.initial_readiness_delay,
            now: Timestamp::now(),
        }
    }

    /// A GET of `path` with `query` (name, value) pairs, decoded as `T`.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, String> {
        let mut url = path.to_string();
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            url.push_str(&urlencode(v));
        }
        let req = http::Request::get(url).body(Vec::new()).map_err(|e| e.to_string())?;
        self.client.request::<T>(req).await.map_err(|e| api_message(&e))
    }

    /// PodMetrics of the selected pods from metrics.k8s.io, per pod (or one container).
    async fn pod_resource_metrics(
        &self,
        ctx: &MetricContext<'_>,
        resource: &str,
        container: Option<&str>,
    ) -> Result<PodMetricsInfo, String> {
        let path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{}/pods", ctx.ns);
        let list: PodMetricsList = self
            .get_json(&path, &[("labelSelector", ctx.selector.to_string())])
            .await
            .map_err(|e| format!("unable to fetch metrics from resource metrics API: {e}"))?;
        if list.items.is_empty() {
            return Err("no metrics returned from resource metrics API".into());
        }
        match container {
            Some(c) => {
                container_metrics(&list.items, resource, c).map_err(|e| format!("failed to get container metrics: {e}"))
            }
            None => Ok(pod_metrics(&list.items, resource)),
        }
    }

    /// Values from custom.metrics.k8s.io or external.metrics.k8s.io (`api` names which, for messages).
    async fn custom_metric_values(
        &self,
        path: &str,
        query: &[(&str, String)],
        api: &str,
    ) -> Result<Vec<CustomMetricValue>, String> {
        let list: CustomMetricValueList =
            self.get_json(path, query).await.map_err(|e| format!("unable to fetch metrics from {api} API: {e}"))?;
        if list.items.is_empty() {
            return Err(format!("no metrics returned from {api} API"));
        }
        Ok(list.items)
    }

    async fn pods_metric(
        &self,
        ctx: &MetricContext<'_>,
        metric: &MetricIdentifier,
        target: i64,
    ) -> Result<(i32, i64), String> {
        let path = format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/{}/pods/*/{}", ctx.ns, metric.name);
        let mut query = vec![("labelSelector", ctx.selector.to_string())];
        if let Some(s) = &metric.selector {
            query.push(("metricLabelSelector", util::selector(Some(s)).to_string()));
        }
        let values = self
            .custom_metric_values(&path, &query, "custom metrics")
            .await
            .map_err(|e| format!("unable to get metric {}: {e}", metric.name))?;
        let metrics: PodMetricsInfo = values
            .iter()
            .map(|v| {
                let name = v.described_object.name.clone();
                (name, PodMetric { value: milli(&v.value), timestamp: v.timestamp.0, window: window(v.window_seconds) })
            })
            .collect();
        plain_metric_replicas(metrics, ctx.spec_replicas, target, ctx.pods, None, &self.calc_params())
            .map_err(|e| e.to_string())
    }

    async fn object_metric(
        &self,
        ctx: &MetricContext<'_>,
        o: &k8s_openapi::api::autoscaling::v2::ObjectMetricSource,
    ) -> Result<(i32, MetricValueStatus), String> {
        let obj = &o.described_object;
        let err = |e: String| {
            format!("unable to get metric {}: {} on {} {}/{}", o.metric.name, e, obj.kind, ctx.ns, obj.name)
        };
        let resource = self.resource_for(obj.api_version.as_deref().unwrap_or("v1"), &obj.kind).await.map_err(err)?;
        let group_resource = if resource.group.is_empty() {
            resource.plural.clone()
        } else {
            format!("{}.{}", resource.plural, resource.group)
        };
        let path = format!(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{}/{group_resource}/{}/{}",
            ctx.ns, obj.name, o.metric.name
        );
        let mut query = Vec::new();
        if let Some(s) = &o.metric.selector {
            query.push(("metricLabelSelector", util::selector(Some(s)).to_string()));
        }
        let values = self.custom_metric_values(&path, &query, "custom metrics").await.map_err(err)?;
        let usage = values.first().map(|v| milli(&v.value)).unwrap_or(0);
        let tolerance = self.config.tolerance;
        match (&o.target.value, &o.target.average_value) {
            (Some(v), _) if o.target.type_ == "Value" => {
                let ratio = usage as f64 / milli(v) as f64;
                let replicas = usage_ratio_replicas(ctx.spec_replicas, ratio, tolerance, ctx.pods)?;
                Ok((replicas, MetricValueStatus { value: Some(quantity(usage)), ..Default::default() }))
            }
            (_, Some(avg)) if o.target.type_ == "AverageValue" => {
                let (replicas, per_pod) = per_pod_replicas(ctx.status_replicas, usage, milli(avg), tolerance);
                Ok((replicas, MetricValueStatus { average_value: Some(quantity(per_pod)), ..Default::default() }))
            }
            _ => Err("invalid object metric source: neither a value target nor an average value target was set".into()),
        }
    }

    async fn external_metric(
        &self,
        ctx: &MetricContext<'_>,
        metric: &MetricIdentifier,
        target: &MetricTarget,
    ) -> Result<(i32, MetricValueStatus), String> {
        let mut query = Vec::new();
        if let Some(s) = &metric.selector {
            query.push(("labelSelector", util::selector(Some(s)).to_string()));
        }
        let path = format!("/apis/external.metrics.k8s.io/v1beta1/namespaces/{}/{}", ctx.ns, metric.name);
        let values = self
            .custom_metric_values(&path, &query, "external metrics")
            .await
            .map_err(|e| format!("unable to get external metric {}/{}: {e}", ctx.ns, metric.name))?;
        let usage: i64 = values.iter().map(|v| milli(&v.value)).sum();
        let tolerance = self.config.tolerance;
        match (&target.value, &target.average_value) {
            (_, Some(avg)) => {
                let (replicas, per_pod) = per_pod_replicas(ctx.status_replicas, usage, milli(avg), tolerance);
                Ok((replicas, MetricValueStatus { average_value: Some(quantity(per_pod)), ..Default::default() }))
            }
            (Some(v), None) => {
                let ratio = usage as f64 / milli(v) as f64;
                let replicas = usage_ratio_replicas(ctx.spec_replicas, ratio, tolerance, ctx.pods)?;
                Ok((replicas, MetricValueStatus { value: Some(quantity(usage)), ..Default::default() }))
            }
            (None, None) => {
                Err("invalid external metric source: neither a value target nor an average value target was set".into())
            }
        }
    }
}

/// The HPAs (keys, sorted) of namespace `ns` whose selector picks any of `pods`.
fn hpas_selecting(selectors: &HashMap<String, Selector>, ns: &str, pods: &[Arc<Pod>]) -> Vec<String> {
    let mut keys: Vec<String> = selectors
        .iter()
        .filter(|(key, _)| util::split_key(key).0 == ns)
        .filter(|(_, sel)| pods.iter().any(|p| sel.matches(&util::labels(&p.metadata))))
        .map(|(key, _)| key.clone())
        .collect();
    keys.sort();
    keys
}

fn ref_of(key: &str) -> kube::runtime::reflector::ObjectRef<HorizontalPodAutoscaler> {
    let (ns, name) = util::split_key(key);
    kube::runtime::reflector::ObjectRef::new(name).within(ns)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The Status message of an API error, or the error itself.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

fn default_cpu_metric() -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(k8s_openapi::api::autoscaling::v2::ResourceMetricSource {
            name: "cpu".into(),
            target: MetricTarget { type_: "Utilization".into(), average_utilization: Some(80), ..Default::default() },
        }),
        ..Default::default()
    }
}

struct MetricContext<'a> {
    ns: &'a str,
    selector: &'a str,
    pods: &'a [Arc<Pod>],
    spec_replicas: i32,
    status_replicas: i32,
}

#[derive(Default)]
struct Computed {
    /// The largest valid proposal and its metric's name; None when the metrics cannot be used.
    proposal: Option<(i32, String)>,
    statuses: Vec<MetricStatus>,
    error: Option<String>,
}

struct Cond {
    type_: String,
    status: String,
    reason: String,
    message: String,
}

/// The HPA's conditions, set as upstream's setCondition does (in place, the
/// transition time moving only when the status changes).
pub struct Conditions(pub Vec<HorizontalPodAutoscalerCondition>);

impl Conditions {
    pub fn set(&mut self, type_: &str, status: &str, reason: &str, message: String) {
        let i = match self.0.iter().position(|c| c.type_ == type_) {
            Some(i) => i,
            None => {
                self.0.push(HorizontalPodAutoscalerCondition { type_: type_.into(), ..Default::default() });
                self.0.len() - 1
            }
        };
        let c = &mut self.0[i];
        if c.status != status {
            c.last_transition_time = Some(Time(Timestamp::now()));
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message);
    }

    pub fn get(&self, type_: &str) -> Option<&HorizontalPodAutoscalerCondition> {
        self.0.iter().find(|c| c.type_ == type_)
    }
}

// === metrics.k8s.io and custom metrics wire types ===

#[derive(Deserialize, Debug, Clone)]
pub struct PodMetricsList {
    #[serde(default)]
    pub items: Vec<PodMetricsItem>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct PodMetricsItem {
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    pub timestamp: Time,
    /// A duration string (`15s`, `1m0.5s`).
    #[serde(default)]
    pub window: String,
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct ContainerMetrics {
    pub name: String,
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

#[derive(Deserialize, Debug)]
struct CustomMetricValueList {
    #[serde(default)]
    items: Vec<CustomMetricValue>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct CustomMetricValue {
    #[serde(default)]
    described_object: DescribedObject,
    timestamp: Time,
    #[serde(default)]
    window_seconds: Option<i64>,
    value: Quantity,
}

#[derive(Deserialize, Debug, Default)]
struct DescribedObject {
    #[serde(default)]
    name: String,
}

fn window(seconds: Option<i64>) -> Duration {
    Duration::from_secs(seconds.unwrap_or(0).max(0) as u64)
}

fn metric_of(m: &PodMetricsItem, value: i64) -> PodMetric {
    PodMetric {
        value,
        timestamp: m.timestamp.0,
        window: apimachinery::duration::parse(&m.window).unwrap_or(Duration::ZERO),
    }
}

/// Upstream's getPodMetrics: a pod's containers summed; a pod missing the resource in any container has none.
pub fn pod_metrics(items: &[PodMetricsItem], resource: &str) -> PodMetricsInfo {
    let mut out = PodMetricsInfo::new();
    for m in items {
        if m.containers.is_empty() {
            continue;
        }
        let mut sum = 0i64;
        let mut missing = false;
        for c in &m.containers {
            match c.usage.get(resource) {
                Some(q) => sum += milli(q),
                None => {
                    missing = true;
                    break;
                }
            }
        }
        if !missing {
            out.insert(m.metadata.name.clone().unwrap_or_default(), metric_of(m, sum));
        }
    }
    out
}

/// Upstream's getContainerMetrics: one named container per pod; a pod without it is an error.
pub fn container_metrics(items: &[PodMetricsItem], resource: &str, container: &str) -> Result<PodMetricsInfo, String> {
    let mut out = PodMetricsInfo::new();
    for m in items {
        let Some(c) = m.containers.iter().find(|c| c.name == container) else {
            return Err(format!(
                "container {container} not present in metrics for pod {}/{}",
                m.metadata.namespace.as_deref().unwrap_or_default(),
                m.metadata.name.as_deref().unwrap_or_default()
            ));
        };
        if let Some(q) = c.usage.get(resource) {
            out.insert(m.metadata.name.clone().unwrap_or_default(), metric_of(m, milli(q)));
        }
    }
    Ok(out)
}

// === the pure arithmetic: upstream's replica calculator ===

fn milli(q: &Quantity) -> i64 {
    apimachinery::quantity::parse_milli(&q.0).map(|v| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64).unwrap_or(0)
}

/// resource.NewMilliQuantity(v, DecimalSI) as text: `250m`, `1`, `5M`.
pub fn quantity(m: i64) -> Quantity {
    if m % 1000 != 0 {
        return Quantity(format!("{m}m"));
    }
    let mut v = m / 1000;
    let mut suffix = "";
    for s in ["k", "M", "G", "T", "P", "E"] {
        if v != 0 && v % 1000 == 0 {
            v /= 1000;
            suffix = s;
        } else {
            break;
        }
    }
    Quantity(format!("{v}{suffix}"))
}

/// One pod's metric: milli-units, when sampled and over which window.
#[derive(Clone, Debug, PartialEq)]
pub struct PodMetric {
    pub value: i64,
    pub timestamp: Timestamp,
    pub window: Duration,
}

pub type PodMetricsInfo = HashMap<String, PodMetric>;

#[derive(Clone, Debug)]
pub struct CalcParams {
    pub tolerance: f64,
    pub cpu_initialization_period: Duration,
    pub initial_readiness_delay: Duration,
    pub now: Timestamp,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CalcError {
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoMetrics,
    #[error("missing request for {resource} in container {container} of Pod {pod}")]
    MissingRequest { resource: String, container: String, pod: String },
    #[error("no metrics returned matched known pods")]
    NoMatchingMetrics,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Groups {
    pub ready: usize,
    pub unready: HashSet<String>,
    pub missing: HashSet<String>,
    pub ignored: HashSet<String>,
}

fn sd(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// Upstream's groupPods: deleted and failed pods are ignored; pending ones
/// unready; pods without a metric missing; for cpu, pods not ready (or whose
/// sample predates a full window since turning ready, during the
/// initialization period) unready.
pub fn group_pods(pods: &[Arc<Pod>], metrics: &PodMetricsInfo, resource: Option<&str>, p: &CalcParams) -> Groups {
    let mut g = Groups::default();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if pod.metadata.deletion_timestamp.is_some() || phase == Some("Failed") {
            g.ignored.insert(name);
            continue;
        }
        if phase == Some("Pending") {
            g.unready.insert(name);
            continue;
        }
        let Some(metric) = metrics.get(&name) else {
            g.missing.insert(name);
            continue;
        };
        if resource == Some("cpu") {
            let cond = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
            let start = pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            let unready = match (cond, start) {
                (Some(cond), Some(start)) => {
                    let transition = cond.last_transition_time.as_ref().map(|t| t.0).unwrap_or(start);
                    if start + sd(p.cpu_initialization_period) > p.now {
                        cond.status == "False" || metric.timestamp < transition + sd(metric.window)
                    } else {
                        cond.status == "False" && start + sd(p.initial_readiness_delay) > transition
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.insert(name);
                continue;
            }
        }
        g.ready += 1;
    }
    g
}

/// Upstream's calculatePodRequests: the summed requests of each pod's
/// containers (or the one named), restartable init containers included.
pub fn pod_requests(
    pods: &[Arc<Pod>],
    container: Option<&str>,
    resource: &str,
) -> Result<HashMap<String, i64>, CalcError> {
    let mut out = HashMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(spec) = &pod.spec else {
            out.insert(name, 0);
            continue;
        };
        let sidecars = spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let mut sum = 0i64;
        for c in spec.containers.iter().chain(sidecars) {
            if container.is_some_and(|n| n != c.name) {
                continue;
            }
            match c.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get(resource)) {
                Some(q) => sum += milli(q),
                None => {
                    return Err(CalcError::MissingRequest {
                        resource: resource.into(),
                        container: c.name.clone(),
                        pod: name,
                    })
                }
            }
        }
        out.insert(name, sum);
    }
    Ok(out)
}

/// Upstream's GetResourceUtilizationRatio: (usage/target ratio, utilization %, average raw usage).
pub fn utilization_ratio(
    metrics: &PodMetricsInfo,
    requests: &HashMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), CalcError> {
    let (mut total, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (pod, m) in metrics {
        let Some(r) = requests.get(pod) else { continue };
        total += m.value;
        requested += r;
        n += 1;
    }
    if requested == 0 {
        return Err(CalcError::NoMatchingMetrics);
    }
    let utilization = (total * 100 / requested) as i32;
    Ok((f64::from(utilization) / f64::from(target), utilization, total / n))
}

#[derive(Debug, PartialEq, Eq)]
pub struct ResourceProposal {
    pub replicas: i32,
    pub utilization: i32,
    pub raw: i64,
}

/// Upstream's GetResourceReplicas (a Utilization target): ready pods' usage
/// against their requests; when pods lack metrics or cpu pods are unready,
/// the conservative recomputation (missing: 0% on scale-up, 100% (or the
/// target, if higher) on scale-down; unready: 0% on scale-up) that never
/// flips the direction.
pub fn resource_replicas(
    current: i32,
    target: i32,
    resource: &str,
    container: Option<&str>,
    pods: &[Arc<Pod>],
    mut metrics: PodMetricsInfo,
    p: &CalcParams,
) -> Result<ResourceProposal, CalcError> {
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let g = group_pods(pods, &metrics, Some(resource), p);
    for pod in g.ignored.iter().chain(&g.unready) {
        metrics.remove(pod);
    }
    if metrics.is_empty() {
        return Err(CalcError::NoMetrics);
    }
    let requests = pod_requests(pods, container, resource)?;
    let (ratio, utilization, raw) = utilization_ratio(&metrics, &requests, target)?;
    let keep = ResourceProposal { replicas: current, utilization, raw };
    let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if (1.0 - ratio).abs() <= p.tolerance {
            return Ok(keep);
        }
        return Ok(ResourceProposal { replicas: (ratio * g.ready as f64).ceil() as i32, utilization, raw });
    }
    let filler = |value| PodMetric { value, timestamp: p.now, window: Duration::ZERO };
    if ratio < 1.0 {
        let fallback = i64::from(target.max(100));
        for pod in &g.missing {
            metrics.insert(pod.clone(), filler(requests.get(pod).copied().unwrap_or(0) * fallback / 100));
        }
    } else if ratio > 1.0 {
        for pod in &g.missing {
            metrics.insert(pod.clone(), filler(0));
        }
    }
    if scale_up_with_unready {
        for pod in &g.unready {
            metrics.insert(pod.clone(), filler(0));
        }
    }
    let (new_ratio, _, _) = utilization_ratio(&metrics, &requests, target)?;
    if (1.0 - new_ratio).abs() <= p.tolerance || (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0) {
        return Ok(keep);
    }
    let replicas = (new_ratio * metrics.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(keep);
    }
    Ok(ResourceProposal { replicas, utilization, raw })
}

/// Upstream's calcPlainMetricReplicas (AverageValue targets and Pods
/// metrics): (replicas, average usage). Missing pods count as the target on
/// a scale-down and 0 on a scale-up.
pub fn plain_metric_replicas(
    mut metrics: PodMetricsInfo,
    current: i32,
    target: i64,
    pods: &[Arc<Pod>],
    resource: Option<&str>,
    p: &CalcParams,
) -> Result<(i32, i64), CalcError> {
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let g = group_pods(pods, &metrics, resource, p);
    for pod in g.ignored.iter().chain(&g.unready) {
        metrics.remove(pod);
    }
    if metrics.is_empty() {
        return Err(CalcError::NoMetrics);
    }
    let usage_ratio = |m: &PodMetricsInfo| {
        let usage = m.values().map(|v| v.value).sum::<i64>() / m.len() as i64;
        (usage as f64 / target as f64, usage)
    };
    let (ratio, usage) = usage_ratio(&metrics);
    let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if (1.0 - ratio).abs() <= p.tolerance {
            return Ok((current, usage));
        }
        return Ok(((ratio * g.ready as f64).ceil() as i32, usage));
    }
    let filler = |value| PodMetric { value, timestamp: p.now, window: Duration::ZERO };
    for pod in &g.missing {
        metrics.insert(pod.clone(), filler(if ratio < 1.0 { target } else { 0 }));
    }
    if scale_up_with_unready {
        for pod in &g.unready {
            metrics.insert(pod.clone(), filler(0));
        }
    }
    let (new_ratio, _) = usage_ratio(&metrics);
    if (1.0 - new_ratio).abs() <= p.tolerance || (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0) {
        return Ok((current, usage));
    }
    let replicas = (new_ratio * metrics.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok((current, usage));
    }
    Ok((replicas, usage))
}

/// Upstream's getUsageRatioReplicaCount (Object and External Value targets).
fn usage_ratio_replicas(current: i32, ratio: f64, tolerance: f64, pods: &[Arc<Pod>]) -> Result<i32, String> {
    if current == 0 {
        return Ok(ratio.ceil() as i32);
    }
    if (1.0 - ratio).abs() <= tolerance {
        return Ok(current);
    }
    if pods.is_empty() {
        return Err(format!("unable to calculate ready pods: {}", CalcError::NoPods));
    }
    let ready = pods
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && util::is_ready(p))
        .count();
    Ok((ratio * ready as f64).ceil() as i32)
}

/// Upstream's per-pod (AverageValue) Object and External calculation: (replicas, usage per pod).
pub fn per_pod_replicas(status_replicas: i32, usage: i64, target: i64, tolerance: f64) -> (i32, i64) {
    let mut replicas = status_replicas;
    let ratio = usage as f64 / (target as f64 * f64::from(status_replicas));
    if (1.0 - ratio).abs() > tolerance {
        replicas = (usage as f64 / target as f64).ceil() as i32;
    }
    let per_pod = if status_replicas > 0 { (usage as f64 / f64::from(status_replicas)).ceil() as i64 } else { usage };
    (replicas, per_pod)
}

// === the pure arithmetic: stabilization and scaling policies ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recommendation {
    pub replicas: i32,
    pub at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleEvent {
    pub change: i32,
    pub at: Timestamp,
    pub outdated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub value: i32,
    pub period_seconds: i32,
}

/// One direction's scaling rules with upstream's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub stabilization_window_seconds: i32,
    pub select: SelectPolicy,
    pub policies: Vec<Policy>,
}

fn rules_from(r: Option<&HPAScalingRules>, window: i32, default_policies: Vec<Policy>) -> Rules {
    let policies: Vec<Policy> = r
        .and_then(|r| r.policies.as_ref())
        .filter(|p| !p.is_empty())
        .map(|ps| {
            ps.iter()
                .map(|p| Policy {
                    kind: if p.type_ == "Pods" { PolicyKind::Pods } else { PolicyKind::Percent },
                    value: p.value,
                    period_seconds: p.period_seconds,
                })
                .collect()
        })
        .unwrap_or(default_policies);
    Rules {
        stabilization_window_seconds: r.and_then(|r| r.stabilization_window_seconds).unwrap_or(window),
        select: match r.and_then(|r| r.select_policy.as_deref()) {
            Some("Min") => SelectPolicy::Min,
            Some("Disabled") => SelectPolicy::Disabled,
            _ => SelectPolicy::Max,
        },
        policies,
    }
}

/// The scale-up and scale-down rules of `behavior` with upstream's defaults:
/// up: no stabilization, max of 4 pods or 100% per 15s; down: the
/// `--horizontal-pod-autoscaler-downscale-stabilization` window, 100% per 15s.
pub fn behavior_rules(
    b: Option<&k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior>,
    downscale_stabilization: Duration,
) -> (Rules, Rules) {
    let up = rules_from(
        b.and_then(|b| b.scale_up.as_ref()),
        0,
        vec![
            Policy { kind: PolicyKind::Pods, value: 4, period_seconds: 15 },
            Policy { kind: PolicyKind::Percent, value: 100, period_seconds: 15 },
        ],
    );
    let down = rules_from(
        b.and_then(|b| b.scale_down.as_ref()),
        downscale_stabilization.as_secs().min(i32::MAX as u64) as i32,
        vec![Policy { kind: PolicyKind::Percent, value: 100, period_seconds: 15 }],
    );
    (up, down)
}

/// Upstream's stabilizeRecommendation (no `behavior`): the highest
/// recommendation of the window; records `desired`, reusing an expired slot.
pub fn stabilize(recs: &mut Vec<Recommendation>, desired: i32, window: Duration, now: Timestamp) -> i32 {
    let cutoff = now - sd(window);
    let mut max = desired;
    let mut old = None;
    for (i, r) in recs.iter().enumerate() {
        if r.at < cutoff {
            old = Some(i);
        } else if r.replicas > max {
            max = r.replicas;
        }
    }
    let rec = Recommendation { replicas: desired, at: now };
    match old {
        Some(i) => recs[i] = rec,
        None => recs.push(rec),
    }
    max
}

/// Upstream's convertDesiredReplicasWithRules: min/max and the 2x-or-4 scale-up limit.
pub fn convert_with_rules(current: i32, desired: i32, min: i32, max: i32) -> (i32, &'static str, &'static str) {
    let scale_up_limit = (SCALE_UP_LIMIT_FACTOR * f64::from(current)).max(SCALE_UP_LIMIT_MINIMUM) as i32;
    let (maximum, reason, message) = if max > scale_up_limit {
        (scale_up_limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
    } else {
        (max, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
    };
    if desired < min {
        return (min, "TooFewReplicas", "the desired replica count is less than the minimum replica count");
    }
    if desired > maximum {
        return (maximum, reason, message);
    }
    (desired, "DesiredWithinRange", "the desired count is within the acceptable range")
}

#[allow(clippy::too_many_arguments)]
fn normalize_without_behavior(
    recs: &mut Vec<Recommendation>,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    window: Duration,
    now: Timestamp,
    conds: &mut Conditions,
) -> i32 {
    let stabilized = stabilize(recs, desired, window, now);
    if stabilized != desired {
        conds.set(
            "AbleToScale",
            "True",
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation".into(),
        );
    } else {
        conds.set("AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size".into());
    }
    let (out, reason, message) = convert_with_rules(current, stabilized, min, max);
    conds.set("ScalingLimited", if out == stabilized { "False" } else { "True" }, reason, message.into());
    out
}

/// Upstream's stabilizeRecommendationWithBehaviors: the current count moved
/// no further than the lowest recommendation of the scale-up window and the
/// highest of the scale-down window. Records `desired`.
pub fn stabilize_with_behavior(
    recs: &mut Vec<Recommendation>,
    current: i32,
    desired: i32,
    up: &Rules,
    down: &Rules,
    now: Timestamp,
) -> (i32, &'static str, &'static str) {
    let up_cutoff = now - SignedDuration::from_secs(i64::from(up.stabilization_window_seconds));
    let down_cutoff = now - SignedDuration::from_secs(i64::from(down.stabilization_window_seconds));
    let (mut up_rec, mut down_rec) = (desired, desired);
    let mut old = None;
    for (i, r) in recs.iter().enumerate() {
        if r.at > up_cutoff {
            up_rec = up_rec.min(r.replicas);
        }
        if r.at > down_cutoff {
            down_rec = down_rec.max(r.replicas);
        }
        if r.at < up_cutoff && r.at < down_cutoff {
            old = Some(i);
        }
    }
    let recommendation = current.max(up_rec).min(down_rec);
    let rec = Recommendation { replicas: desired, at: now };
    match old {
        Some(i) => recs[i] = rec,
        None => recs.push(rec),
    }
    if desired >= current {
        (
            recommendation,
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    } else {
        (
            recommendation,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    }
}

fn change_in_period(period_seconds: i32, events: &[ScaleEvent], now: Timestamp) -> i32 {
    let cutoff = now - SignedDuration::from_secs(i64::from(period_seconds));
    events.iter().filter(|e| e.at > cutoff).map(|e| e.change).sum()
}

/// Upstream's calculateScaleUpLimitWithScalingRules.
pub fn scale_up_limit(
    current: i32,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    rules: &Rules,
    now: Timestamp,
) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i32::MAX, std::cmp::min),
        SelectPolicy::Max => (i32::MIN, std::cmp::max),
    };
    for p in &rules.policies {
        let start = current - change_in_period(p.period_seconds, up_events, now)
            + change_in_period(p.period_seconds, down_events, now);
        let proposed = match p.kind {
            PolicyKind::Pods => start + p.value,
            PolicyKind::Percent => (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32,
        };
        result = pick(result, proposed);
    }
    result
}

/// Upstream's calculateScaleDownLimitWithBehaviors.
pub fn scale_down_limit(
    current: i32,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    rules: &Rules,
    now: Timestamp,
) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i32::MIN, std::cmp::max),
        SelectPolicy::Max => (i32::MAX, std::cmp::min),
    };
    for p in &rules.policies {
        let start = current - change_in_period(p.period_seconds, up_events, now)
            + change_in_period(p.period_seconds, down_events, now);
        let proposed = match p.kind {
            PolicyKind::Pods => start - p.value,
            PolicyKind::Percent => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
        };
        result = pick(result, proposed);
    }
    result
}

/// Upstream's convertDesiredReplicasWithBehaviorRate.
#[allow(clippy::too_many_arguments)]
pub fn convert_with_behavior_rate(
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    up: &Rules,
    down: &Rules,
    now: Timestamp,
) -> (i32, &'static str, &'static str) {
    if desired > current {
        let limit = scale_up_limit(current, up_events, down_events, up, now).max(current);
        let (maximum, reason, message) = if max > limit {
            (limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
        } else {
            (max, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
        };
        if desired > maximum {
            return (maximum, reason, message);
        }
    } else if desired < current {
        let limit = scale_down_limit(current, up_events, down_events, down, now).min(current);
        let (minimum, reason, message) = if min < limit {
            (limit, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate")
        } else {
            (min, "TooFewReplicas", "the desired replica count is less than the minimum replica count")
        };
        if desired < minimum {
            return (minimum, reason, message);
        }
    }
    (desired, "DesiredWithinRange", "the desired count is within the acceptable range")
}

#[allow(clippy::too_many_arguments)]
fn normalize_with_behavior(
    history: &mut History,
    up: &Rules,
    down: &Rules,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: Timestamp,
    conds: &mut Conditions,
) -> i32 {
    let (stabilized, reason, message) =
        stabilize_with_behavior(&mut history.recommendations, current, desired, up, down, now);
    if stabilized != desired {
        conds.set("AbleToScale", "True", reason, message.into());
    } else {
        conds.set("AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size".into());
    }
    let (out, reason, message) = convert_with_behavior_rate(
        current,
        stabilized,
        min,
        max,
        &history.scale_up,
        &history.scale_down,
        up,
        down,
        now,
    );
    conds.set("ScalingLimited", if out == stabilized { "False" } else { "True" }, reason, message.into());
    out
}

/// Upstream's storeScaleEvent: the change goes into the slot of an event
/// older than the direction's longest policy period, or is appended.
fn store_scale_event(history: &mut History, up: &Rules, down: &Rules, prev: i32, new: i32, now: Timestamp) {
    let (events, rules, change) =
        if new > prev { (&mut history.scale_up, up, new - prev) } else { (&mut history.scale_down, down, prev - new) };
    record_scale_event(events, rules, change, now);
}

pub fn record_scale_event(events: &mut Vec<ScaleEvent>, rules: &Rules, change: i32, now: Timestamp) {
    let longest = rules.policies.iter().map(|p| p.period_seconds).max().unwrap_or(0);
    let cutoff = now - SignedDuration::from_secs(i64::from(longest));
    for e in events.iter_mut() {
        if e.at < cutoff {
            e.outdated = true;
        }
    }
    let event = ScaleEvent { change, at: now, outdated: false };
    match events.iter_mut().find(|e| e.outdated) {
        Some(slot) => *slot = event,
        None => events.push(event),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    fn ago(secs: i64) -> Timestamp {
        now() - SignedDuration::from_secs(secs)
    }

    fn params() -> CalcParams {
        CalcParams {
            tolerance: 0.1,
            cpu_initialization_period: Duration::from_secs(300),
            initial_readiness_delay: Duration::from_secs(30),
            now: now(),
        }
    }

    /// A Running pod, started `started` seconds ago, Ready (since `ready_for` seconds) or not, requesting `cpu` milli.
    fn pod(name: &str, cpu: i64, started: i64, ready: Option<i64>) -> Arc<Pod> {
        let mut requests = BTreeMap::new();
        requests.insert("cpu".to_string(), Quantity(format!("{cpu}m")));
        let conditions = vec![PodCondition {
            type_: "Ready".into(),
            status: if ready.is_some() { "True" } else { "False" }.into(),
            last_transition_time: Some(Time(ago(ready.unwrap_or(started)))),
            ..Default::default()
        }];
        Arc::new(Pod {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some("ns".into()), ..Default::default() },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements { requests: Some(requests), ..Default::default() }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                start_time: Some(Time(ago(started))),
                conditions: Some(conditions),
                ..Default::default()
            }),
        })
    }

    fn metrics(values: &[(&str, i64)]) -> PodMetricsInfo {
        values
            .iter()
            .map(|(n, v)| (n.to_string(), PodMetric { value: *v, timestamp: now(), window: Duration::from_secs(15) }))
            .collect()
    }

    #[test]
    fn utilization_above_target_scales_up_proportionally() {
        // Three pods requesting 1 cpu each, using 900m on average, target 50%: 3 * 90/50 = 5.4 → 6.
        let pods = vec![pod("a", 1000, 600, Some(600)), pod("b", 1000, 600, Some(600)), pod("c", 1000, 600, Some(600))];
        let m = metrics(&[("a", 900), ("b", 900), ("c", 900)]);
        let r = resource_replicas(3, 50, "cpu", None, &pods, m, &params()).unwrap();
        assert_eq!(r, ResourceProposal { replicas: 6, utilization: 90, raw: 900 });
    }

    #[test]
    fn within_tolerance_keeps_the_current_count() {
        let pods = vec![pod("a", 1000, 600, Some(600)), pod("b", 1000, 600, Some(600))];
        let m = metrics(&[("a", 540), ("b", 540)]);
        let r = resource_replicas(2, 50, "cpu", None, &pods, m, &params()).unwrap();
        assert_eq!(r.replicas, 2);
        assert_eq!(r.utilization, 54);
    }

    #[test]
    fn missing_metrics_count_as_zero_on_scale_up_and_full_on_scale_down() {
        // Scale up: a (100%) and b missing (0%) → 50% average, target 40% → ceil(1.25*2) = 3.
        let pods = vec![pod("a", 100, 600, Some(600)), pod("b", 100, 600, Some(600))];
        let r = resource_replicas(2, 40, "cpu", None, &pods, metrics(&[("a", 100)]), &params()).unwrap();
        assert_eq!(r.replicas, 3);
        assert_eq!(r.utilization, 100, "the reported utilization is the measured pods'");
        // Scale down: a uses 10%, b missing counts as 100% → 55% against 50%: within tolerance, no change.
        let r = resource_replicas(2, 50, "cpu", None, &pods, metrics(&[("a", 10)]), &params()).unwrap();
        assert_eq!(r.replicas, 2);
        // Scale down with three pods: 10% + 2 missing at 100% = 70% against 90% → ceil(0.777*3) = 3: no change;
        // against a target of 200 the missing count as 200% and the direction would flip: no change either.
        let pods3 = vec![pod("a", 100, 600, Some(600)), pod("b", 100, 600, Some(600)), pod("c", 100, 600, Some(600))];
        let r = resource_replicas(3, 200, "cpu", None, &pods3, metrics(&[("a", 10)]), &params()).unwrap();
        assert_eq!(r.replicas, 3);
    }

    #[test]
    fn unready_cpu_pods_are_ignored_for_scale_up_and_pending_counts_as_zero() {
        // b is not ready (never was): on a scale-up it counts as 0%; a alone at 200% vs 50%.
        let pods = vec![pod("a", 100, 600, Some(600)), pod("b", 100, 10, None)];
        let r = resource_replicas(2, 50, "cpu", None, &pods, metrics(&[("a", 200), ("b", 200)]), &params()).unwrap();
        // (200 + 0) / 200 = 100% → ratio 2 → ceil(2 * 2) = 4.
        assert_eq!(r.replicas, 4);
        assert_eq!(r.utilization, 200);
        // A pod within the initialization period whose sample predates a full window since readiness is unready too.
        let fresh = pod("c", 100, 20, Some(5));
        let g = group_pods(&[fresh], &metrics(&[("c", 100)]), Some("cpu"), &params());
        assert!(g.unready.contains("c"));
        // Memory ignores readiness.
        let fresh = pod("c", 100, 20, Some(5));
        let g = group_pods(&[fresh], &metrics(&[("c", 100)]), Some("memory"), &params());
        assert_eq!(g.ready, 1);
    }

    #[test]
    fn no_metrics_at_all_is_an_error_and_missing_requests_too() {
        let pods = vec![pod("a", 100, 600, Some(600))];
        assert_eq!(
            resource_replicas(1, 50, "cpu", None, &pods, PodMetricsInfo::new(), &params()),
            Err(CalcError::NoMetrics)
        );
        assert_eq!(resource_replicas(1, 50, "cpu", None, &[], metrics(&[("a", 1)]), &params()), Err(CalcError::NoPods));
        assert!(matches!(
            resource_replicas(1, 50, "memory", None, &pods, metrics(&[("a", 1)]), &params()),
            Err(CalcError::MissingRequest { .. })
        ));
    }

    #[test]
    fn average_value_targets_divide_usage_by_the_target() {
        let pods = vec![pod("a", 100, 600, Some(600)), pod("b", 100, 600, Some(600))];
        // 300m average against 100m → ceil(3 * 2) = 6.
        let (r, usage) =
            plain_metric_replicas(metrics(&[("a", 200), ("b", 400)]), 2, 100, &pods, Some("cpu"), &params()).unwrap();
        assert_eq!((r, usage), (6, 300));
        // 20m average against 100m → ceil(0.2 * 2) = 1.
        let (r, _) =
            plain_metric_replicas(metrics(&[("a", 20), ("b", 20)]), 2, 100, &pods, Some("cpu"), &params()).unwrap();
        assert_eq!(r, 1);
    }

    #[test]
    fn per_pod_object_metrics() {
        assert_eq!(per_pod_replicas(2, 1000, 100, 0.1), (10, 500));
        assert_eq!(per_pod_replicas(2, 210, 100, 0.1), (2, 105));
    }

    #[test]
    fn without_behavior_scale_down_takes_the_highest_recommendation_of_the_window() {
        let mut recs = vec![
            Recommendation { replicas: 5, at: ago(400) },
            Recommendation { replicas: 4, at: ago(100) },
            Recommendation { replicas: 3, at: ago(10) },
        ];
        assert_eq!(stabilize(&mut recs, 2, Duration::from_secs(300), now()), 4);
        // The expired sample's slot was reused.
        assert_eq!(recs.len(), 3);
        assert!(recs.contains(&Recommendation { replicas: 2, at: now() }));
        assert_eq!(stabilize(&mut recs, 6, Duration::from_secs(300), now()), 6);
    }

    #[test]
    fn rules_clamp_to_min_max_and_limit_the_scale_up_rate() {
        assert_eq!(convert_with_rules(2, 1, 3, 10).1, "TooFewReplicas");
        assert_eq!(convert_with_rules(2, 1, 3, 10).0, 3);
        assert_eq!(
            convert_with_rules(3, 20, 1, 5),
            (5, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
        );
        assert_eq!(convert_with_rules(1, 20, 1, 100).0, 4);
        assert_eq!(
            convert_with_rules(10, 50, 1, 100),
            (20, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
        );
        assert_eq!(convert_with_rules(3, 3, 1, 10).1, "DesiredWithinRange");
    }

    #[test]
    fn behavior_defaults_follow_upstream() {
        let (up, down) = behavior_rules(None, Duration::from_secs(300));
        assert_eq!(up.stabilization_window_seconds, 0);
        assert_eq!(up.select, SelectPolicy::Max);
        assert_eq!(up.policies.len(), 2);
        assert_eq!(down.stabilization_window_seconds, 300);
        assert_eq!(down.policies, vec![Policy { kind: PolicyKind::Percent, value: 100, period_seconds: 15 }]);
        let b = k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior {
            scale_down: Some(HPAScalingRules {
                stabilization_window_seconds: Some(0),
                select_policy: Some("Disabled".into()),
                ..Default::default()
            }),
            scale_up: None,
        };
        let (_, down) = behavior_rules(Some(&b), Duration::from_secs(300));
        assert_eq!(down.stabilization_window_seconds, 0);
        assert_eq!(down.select, SelectPolicy::Disabled);
        assert_eq!(down.policies.len(), 1);
    }

    #[test]
    fn behavior_stabilization_uses_both_windows() {
        let (mut up, down) = behavior_rules(None, Duration::from_secs(60));
        up.stabilization_window_seconds = 30;
        let mut recs = vec![Recommendation { replicas: 8, at: ago(50) }, Recommendation { replicas: 4, at: ago(20) }];
        // Scale-up to 10 from 5: the lowest of the up window (4) is below current: stays at 5.
        let (r, reason, _) = stabilize_with_behavior(&mut recs, 5, 10, &up, &down, now());
        assert_eq!((r, reason), (5, "ScaleUpStabilized"));
        // Scale-down to 2 from 5: the highest of the down window (10, just recorded) holds it at 5.
        let (r, reason, _) = stabilize_with_behavior(&mut recs, 5, 2, &up, &down, now());
        assert_eq!((r, reason), (5, "ScaleDownStabilized"));
        // With no windows the recommendation passes through.
        let zero = Rules { stabilization_window_seconds: 0, ..down.clone() };
        let mut recs = vec![Recommendation { replicas: 9, at: ago(5) }];
        let up0 = Rules { stabilization_window_seconds: 0, ..up.clone() };
        assert_eq!(stabilize_with_behavior(&mut recs, 5, 2, &up0, &zero, now()).0, 2);
    }

    #[test]
    fn scaling_policies_limit_the_rate_over_their_periods() {
        let (up, down) = behavior_rules(None, Duration::ZERO);
        // From 1: max(1 + 4, 1 * 2) = 5.
        assert_eq!(scale_up_limit(1, &[], &[], &up, now()), 5);
        // From 10: max(14, 20) = 20.
        assert_eq!(scale_up_limit(10, &[], &[], &up, now()), 20);
        // 6 were added 10s ago (within 15s): the period started at 4 → max(8, 8) = 8.
        let events = [ScaleEvent { change: 6, at: ago(10), outdated: false }];
        assert_eq!(scale_up_limit(10, &events, &[], &up, now()), 8);
        let (r, reason, _) = convert_with_behavior_rate(10, 30, 1, 50, &events, &[], &up, &down, now());
        assert_eq!((r, reason), (10, "ScaleUpLimit"), "no further scale-up until the events age out");
        // Scale-down 100% per 15s: down to the minimum.
        let (r, reason, _) = convert_with_behavior_rate(10, 0, 1, 50, &[], &[], &up, &down, now());
        assert_eq!((r, reason), (1, "TooFewReplicas"));
        // One pod per 60s, Min select of (1 pod, 50%): the smaller change.
        let slow = Rules {
            stabilization_window_seconds: 0,
            select: SelectPolicy::Min,
            policies: vec![
                Policy { kind: PolicyKind::Pods, value: 1, period_seconds: 60 },
                Policy { kind: PolicyKind::Percent, value: 50, period_seconds: 60 },
            ],
        };
        assert_eq!(scale_down_limit(10, &[], &[], &slow, now()), 9);
        let (r, reason, _) = convert_with_behavior_rate(10, 2, 1, 50, &[], &[], &up, &slow, now());
        assert_eq!((r, reason), (9, "ScaleDownLimit"));
        let disabled = Rules { select: SelectPolicy::Disabled, ..slow };
        assert_eq!(convert_with_behavior_rate(10, 2, 1, 50, &[], &[], &up, &disabled, now()).0, 10);
    }

    #[test]
    fn scale_events_reuse_outdated_slots() {
        let (up, _) = behavior_rules(None, Duration::ZERO);
        let mut events = vec![ScaleEvent { change: 2, at: ago(100), outdated: false }];
        record_scale_event(&mut events, &up, 3, now());
        assert_eq!(events, vec![ScaleEvent { change: 3, at: now(), outdated: false }]);
        record_scale_event(&mut events, &up, 1, now());
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn pod_metrics_sum_containers_and_skip_incomplete_pods() {
        let item = |name: &str, containers: Vec<(&str, Option<&str>)>| PodMetricsItem {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some("ns".into()), ..Default::default() },
            timestamp: Time(now()),
            window: "15.5s".into(),
            containers: containers
                .into_iter()
                .map(|(n, cpu)| ContainerMetrics {
                    name: n.into(),
                    usage: cpu.map(|c| [("cpu".to_string(), Quantity(c.into()))].into()).unwrap_or_default(),
                })
                .collect(),
        };
        let items = vec![
            item("a", vec![("x", Some("100m")), ("y", Some("250m"))]),
            item("b", vec![("x", Some("1")), ("y", None)]),
            item("c", vec![]),
        ];
        let m = pod_metrics(&items, "cpu");
        assert_eq!(m.len(), 1);
        assert_eq!(m["a"].value, 350);
        assert_eq!(m["a"].window, Duration::from_millis(15500));
        let m = container_metrics(&items[..2], "cpu", "x").unwrap();
        assert_eq!((m["a"].value, m["b"].value), (100, 1000));
        assert!(container_metrics(&items, "cpu", "x").is_err());
    }

    #[test]
    fn pods_selected_by_two_hpas_are_ambiguous() {
        let mut selectors = HashMap::new();
        selectors.insert("ns/a".to_string(), Selector::parse("app=web").unwrap());
        selectors.insert("ns/b".to_string(), Selector::parse("app in (web, db)").unwrap());
        selectors.insert("other/c".to_string(), Selector::parse("app=web").unwrap());
        selectors.insert("ns/d".to_string(), Selector::parse("app=db").unwrap());
        let mut web = (*pod("w", 100, 1, Some(1))).clone();
        web.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        assert_eq!(hpas_selecting(&selectors, "ns", &[Arc::new(web)]), vec!["ns/a", "ns/b"]);
        assert!(hpas_selecting(&selectors, "ns", &[]).is_empty());
    }

    #[test]
    fn quantities_format_as_decimal_si() {
        assert_eq!(quantity(250).0, "250m");
        assert_eq!(quantity(2000).0, "2");
        assert_eq!(quantity(5_000_000_000).0, "5M");
        assert_eq!(quantity(0).0, "0");
    }

    #[test]
    fn conditions_move_their_transition_time_only_on_status_changes() {
        let mut c = Conditions(Vec::new());
        c.set("AbleToScale", "True", "SucceededGetScale", "m".into());
        let t = c.get("AbleToScale").unwrap().last_transition_time.clone();
        c.set("AbleToScale", "True", "ReadyForNewScale", "m2".into());
        assert_eq!(c.get("AbleToScale").unwrap().last_transition_time, t);
        assert_eq!(c.get("AbleToScale").unwrap().reason.as_deref(), Some("ReadyForNewScale"));
        c.set("ScalingActive", "False", "ScalingDisabled", "m".into());
        assert_eq!(c.0.len(), 2);
    }
}
