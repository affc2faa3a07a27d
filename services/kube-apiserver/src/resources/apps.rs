//! apps/v1 strategies: defaulting, selector validation and immutability.

use apimachinery::status::{FieldError, FieldErrors};
use k8s_openapi::api::apps::v1::{
    DaemonSet, Deployment, DeploymentStrategy as DeploymentUpdateStrategy, ReplicaSet, RollingUpdateDeployment,
    StatefulSet,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::core::{default_pod_spec, validate_pod_spec};
use crate::registry::strategy::KindStrategy;

fn default_template(t: &mut PodTemplateSpec) {
    if let Some(spec) = &mut t.spec {
        default_pod_spec(spec);
    }
}

/// The selector must be non-empty, valid, and select the template's labels.
fn validate_selector_and_template(selector: &LabelSelector, template: &PodTemplateSpec) -> FieldErrors {
    let mut errs = Vec::new();
    let sel_json = serde_json::to_value(selector).unwrap_or_default();
    let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector.match_expressions.as_ref().is_none_or(|m| m.is_empty());
    if empty {
        errs.push(FieldError::invalid("spec.selector", "{}", "empty selector is invalid for deployment"));
        return errs;
    }
    match apimachinery::selector::label::LabelSelector::from_json(&sel_json) {
        Ok(sel) => {
            let labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
            if !sel.matches(&labels) {
                let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                errs.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    format!("map[{}]", shown.join(" ")),
                    "`selector` does not match template `labels`",
                ));
            }
        }
        Err(e) => errs.push(FieldError::invalid("spec.selector", "", e.to_string())),
    }
    match &template.spec {
        Some(spec) => errs.extend(validate_pod_spec(spec, "spec.template.spec")),
        None => errs.push(FieldError::required("spec.template.spec", "")),
    }
    errs
}

fn validate_replicas(replicas: Option<i32>) -> FieldErrors {
    match replicas {
        Some(r) if r < 0 => {
            vec![FieldError::invalid_json("spec.replicas", &serde_json::json!(r), "must be greater than or equal to 0")]
        }
        _ => Vec::new(),
    }
}

fn selector_immutable(new: &LabelSelector, old: &LabelSelector) -> FieldErrors {
    if new != old {
        let shown = serde_json::to_string(new).unwrap_or_default();
        return vec![FieldError::invalid("spec.selector", shown, "field is immutable")];
    }
    Vec::new()
}

// === impl DeploymentStrategy ===

pub struct DeploymentStrategy;

impl KindStrategy for DeploymentStrategy {
    type Object = Deployment;

    fn default(&self, d: &mut Deployment) {
        let Some(spec) = &mut d.spec else { return };
        spec.replicas.get_or_insert(1);
        spec.revision_history_limit.get_or_insert(10);
        spec.progress_deadline_seconds.get_or_insert(600);
        let strategy = spec.strategy.get_or_insert_with(DeploymentUpdateStrategy::default);
        let t = strategy.type_.get_or_insert_with(|| "RollingUpdate".into()).clone();
        if t == "RollingUpdate" {
            let ru = strategy.rolling_update.get_or_insert_with(RollingUpdateDeployment::default);
            ru.max_surge.get_or_insert(IntOrString::String("25%".into()));
            ru.max_unavailable.get_or_insert(IntOrString::String("25%".into()));
        }
        default_template(&mut spec.template);
    }

    fn prepare_for_create(&self, d: &mut Deployment) {
        d.status = None;
    }

    fn validate(&self, d: &Deployment) -> FieldErrors {
        let Some(spec) = &d.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let mut errs = validate_replicas(spec.replicas);
        errs.extend(validate_selector_and_template(&spec.selector, &spec.template));
        if let Some(s) = &spec.strategy {
            match s.type_.as_deref() {
                Some("RollingUpdate") | Some("Recreate") | None => {}
                Some(other) => {
                    errs.push(FieldError::not_supported("spec.strategy.type", other, &["Recreate", "RollingUpdate"]))
                }
            }
            if s.type_.as_deref() == Some("Recreate") && s.rolling_update.is_some() {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Deployment, old: &Deployment) -> FieldErrors {
        match (&new.spec, &old.spec) {
            (Some(n), Some(o)) => selector_immutable(&n.selector, &o.selector),
            _ => Vec::new(),
        }
    }
}

// === impl ReplicaSetStrategy ===

pub struct ReplicaSetStrategy;

impl KindStrategy for ReplicaSetStrategy {
    type Object = ReplicaSet;

    fn default(&self, rs: &mut ReplicaSet) {
        if let Some(spec) = &mut rs.spec {
            spec.replicas.get_or_insert(1);
            if let Some(t) = &mut spec.template {
                default_template(t);
            }
        }
    }

    fn prepare_for_create(&self, rs: &mut ReplicaSet) {
        rs.status = None;
    }

    fn validate(&self, rs: &ReplicaSet) -> FieldErrors {
        let Some(spec) = &rs.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let mut errs = validate_replicas(spec.replicas);
        match &spec.template {
            Some(t) => errs.extend(validate_selector_and_template(&spec.selector, t)),
            None => errs.push(FieldError::required("spec.template", "")),
        }
        errs
    }

    fn validate_update(&self, new: &ReplicaSet, old: &ReplicaSet) -> FieldErrors {
        match (&new.spec, &old.spec) {
            (Some(n), Some(o)) => selector_immutable(&n.selector, &o.selector),
            _ => Vec::new(),
        }
    }
}

// === impl StatefulSetStrategy ===

pub struct StatefulSetStrategy;

impl KindStrategy for StatefulSetStrategy {
    type Object = StatefulSet;

    fn default(&self, s: &mut StatefulSet) {
        if let Some(spec) = &mut s.spec {
            spec.replicas.get_or_insert(1);
            spec.pod_management_policy.get_or_insert_with(|| "OrderedReady".into());
            spec.revision_history_limit.get_or_insert(10);
            let strategy = spec.update_strategy.get_or_insert_with(Default::default);
            if strategy.type_.get_or_insert_with(|| "RollingUpdate".into()) == "RollingUpdate" {
                strategy.rolling_update.get_or_insert_with(Default::default).partition.get_or_insert(0);
            }
            default_template(&mut spec.template);
        }
    }

    fn prepare_for_create(&self, s: &mut StatefulSet) {
        s.status = None;
    }

    fn validate(&self, s: &StatefulSet) -> FieldErrors {
        let Some(spec) = &s.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let mut errs = validate_replicas(spec.replicas);
        errs.extend(validate_selector_and_template(&spec.selector, &spec.template));
        errs
    }

    fn validate_update(&self, new: &StatefulSet, old: &StatefulSet) -> FieldErrors {
        match (&new.spec, &old.spec) {
            (Some(n), Some(o)) => selector_immutable(&n.selector, &o.selector),
            _ => Vec::new(),
        }
    }
}

// === impl DaemonSetStrategy ===

pub struct DaemonSetStrategy;

impl KindStrategy for DaemonSetStrategy {
    type Object = DaemonSet;

    fn default(&self, ds: &mut DaemonSet) {
        if let Some(spec) = &mut ds.spec {
            spec.revision_history_limit.get_or_insert(10);
            let strategy = spec.update_strategy.get_or_insert_with(Default::default);
            if strategy.type_.get_or_insert_with(|| "RollingUpdate".into()) == "RollingUpdate" {
                let ru = strategy.rolling_update.get_or_insert_with(Default::default);
                ru.max_unavailable.get_or_insert(IntOrString::Int(1));
                ru.max_surge.get_or_insert(IntOrString::Int(0));
            }
            default_template(&mut spec.template);
        }
    }

    fn prepare_for_create(&self, ds: &mut DaemonSet) {
        ds.status = None;
    }

    fn validate(&self, ds: &DaemonSet) -> FieldErrors {
        let Some(spec) = &ds.spec else {
            return vec![FieldError::required("spec", "")];
        };
        validate_selector_and_template(&spec.selector, &spec.template)
    }

    fn validate_update(&self, new: &DaemonSet, old: &DaemonSet) -> FieldErrors {
        match (&new.spec, &old.spec) {
            (Some(n), Some(o)) => selector_immutable(&n.selector, &o.selector),
            _ => Vec::new(),
        }
    }
}
