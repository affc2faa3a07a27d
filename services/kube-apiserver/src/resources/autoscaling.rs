//! autoscaling: HorizontalPodAutoscaler stored as autoscaling/v2 (upstream's
//! defaulting and validation), and autoscaling/v1 served by conversion with
//! upstream's round-trip annotations so nothing v2-only is lost.

use apimachinery::status::{ApiError, FieldError, FieldErrors};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler, MetricIdentifier,
    MetricSpec, MetricTarget, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{json, Map, Value};

use crate::registry::strategy::KindStrategy;
use crate::registry::{Conversion, Normalized};

/// `autoscaling.DefaultCPUUtilization`.
const DEFAULT_CPU_UTILIZATION: i32 = 80;
/// Largest scaling policy period, in seconds.
const MAX_PERIOD_SECONDS: i32 = 1800;
/// Largest stabilization window, in seconds.
const MAX_STABILIZATION_WINDOW_SECONDS: i32 = 3600;

/// Upstream's annotations that carry v2-only content through autoscaling/v1.
pub const METRIC_SPECS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
pub const METRIC_STATUSES_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";
const ROUND_TRIP_ANNOTATIONS: [&str; 4] =
    [METRIC_SPECS_ANNOTATION, METRIC_STATUSES_ANNOTATION, CONDITIONS_ANNOTATION, BEHAVIOR_ANNOTATION];

// === defaulting ===

fn policy(type_: &str, value: i32, period_seconds: i32) -> HPAScalingPolicy {
    HPAScalingPolicy { type_: type_.into(), value, period_seconds }
}

/// Upstream's scale-up defaults: no stabilization, the larger of 4 pods or
/// 100% per 15 s.
fn default_scale_up() -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some("Max".into()),
        policies: Some(vec![policy("Pods", 4, 15), policy("Percent", 100, 15)]),
        tolerance: None,
    }
}

/// Upstream's scale-down defaults: 100% per 15 s; the stabilization window
/// stays unset so the controller's --horizontal-pod-autoscaler-downscale-stabilization applies.
fn default_scale_down() -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: None,
        select_policy: Some("Max".into()),
        policies: Some(vec![policy("Percent", 100, 15)]),
        tolerance: None,
    }
}

/// Fills the unset fields of `rules` from `defaults` (or takes the defaults).
fn merge_rules(rules: Option<HPAScalingRules>, defaults: HPAScalingRules) -> HPAScalingRules {
    let Some(r) = rules else { return defaults };
    HPAScalingRules {
        stabilization_window_seconds: r.stabilization_window_seconds.or(defaults.stabilization_window_seconds),
        select_policy: r.select_policy.or(defaults.select_policy),
        policies: r.policies.or(defaults.policies),
        tolerance: r.tolerance.or(defaults.tolerance),
    }
}

fn cpu_utilization_metric(utilization: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: "cpu".into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(utilization),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }
}

/// `SetDefaults_HorizontalPodAutoscaler` of autoscaling/v2.
pub fn default_hpa(hpa: &mut HorizontalPodAutoscaler) {
    // The round-trip annotations only mean something at autoscaling/v1.
    if let Some(a) = hpa.metadata.annotations.as_mut() {
        for k in ROUND_TRIP_ANNOTATIONS {
            a.remove(k);
        }
    }
    let spec = hpa.spec.get_or_insert_with(Default::default);
    spec.min_replicas.get_or_insert(1);
    if spec.metrics.as_ref().is_none_or(|m| m.is_empty()) {
        spec.metrics = Some(vec![cpu_utilization_metric(DEFAULT_CPU_UTILIZATION)]);
    }
    if let Some(b) = spec.behavior.as_mut() {
        b.scale_up = Some(merge_rules(b.scale_up.take(), default_scale_up()));
        b.scale_down = Some(merge_rules(b.scale_down.take(), default_scale_down()));
    }
}

// === validation ===

/// `IsValidPathSegmentName`.
fn path_segment_errors(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    if v == "." || v == ".." {
        out.push(format!("may not be '{v}'"));
        return out;
    }
    for bad in ["/", "%"] {
        if v.contains(bad) {
            out.push(format!("may not contain '{bad}'"));
        }
    }
    out
}

fn validate_reference(r: &CrossVersionObjectReference, path: &str) -> FieldErrors {
    let mut errs = Vec::new();
    for (field, value) in [("kind", &r.kind), ("name", &r.name)] {
        let p = format!("{path}.{field}");
        if value.is_empty() {
            errs.push(FieldError::required(p, ""));
        } else {
            for msg in path_segment_errors(value) {
                errs.push(FieldError::invalid(p.clone(), value, msg));
            }
        }
    }
    errs
}

/// Whether a quantity is positive (an unparsable one is not).
fn positive(q: &Quantity) -> bool {
    apimachinery::quantity::parse_milli(&q.0).is_ok_and(|m| m > 0)
}

fn validate_target(t: &MetricTarget, path: &str) -> FieldErrors {
    let mut errs = Vec::new();
    if t.type_.is_empty() {
        errs.push(FieldError::required(format!("{path}.type"), "must specify a metric target type"));
    }
    if !matches!(t.type_.as_str(), "Utilization" | "Value" | "AverageValue") {
        errs.push(FieldError::invalid(
            format!("{path}.type"),
            &t.type_,
            "must be either Utilization, Value, or AverageValue",
        ));
    }
    if let Some(v) = t.value.as_ref().filter(|v| !positive(v)) {
        errs.push(FieldError::invalid(format!("{path}.value"), &v.0, "must be positive"));
    }
    if let Some(v) = t.average_value.as_ref().filter(|v| !positive(v)) {
        errs.push(FieldError::invalid(format!("{path}.averageValue"), &v.0, "must be positive"));
    }
    if let Some(u) = t.average_utilization.filter(|u| *u < 1) {
        errs.push(FieldError::invalid_json(format!("{path}.averageUtilization"), &json!(u), "must be greater than 0"));
    }
    errs
}

fn validate_identifier(id: &MetricIdentifier, path: &str) -> FieldErrors {
    let p = format!("{path}.name");
    if id.name.is_empty() {
        return vec![FieldError::required(p, "must specify a metric name")];
    }
    path_segment_errors(&id.name).into_iter().map(|m| FieldError::invalid(p.clone(), &id.name, m)).collect()
}

/// Resource and ContainerResource targets: a utilization or an average value, not both.
fn validate_resource_target(t: &MetricTarget, path: &str) -> FieldErrors {
    let mut errs = validate_target(t, &format!("{path}.target"));
    if t.average_utilization.is_none() && t.average_value.is_none() {
        errs.push(FieldError::required(
            format!("{path}.target.averageUtilization"),
            "must set either a target raw value or a target utilization",
        ));
    }
    if t.average_utilization.is_some() && t.average_value.is_some() {
        errs.push(FieldError::forbidden(
            format!("{path}.target.averageValue"),
            "may not set both a target raw value and a target utilization",
        ));
    }
    errs
}

const METRIC_SOURCE_TYPES: [&str; 5] = ["ContainerResource", "External", "Object", "Pods", "Resource"];

fn validate_metric(m: &MetricSpec, path: &str) -> FieldErrors {
    let mut errs = Vec::new();
    if m.type_.is_empty() {
        errs.push(FieldError::required(format!("{path}.type"), "must specify a metric source type"));
    }
    if !METRIC_SOURCE_TYPES.contains(&m.type_.as_str()) {
        errs.push(FieldError::not_supported(format!("{path}.type"), &m.type_, &METRIC_SOURCE_TYPES));
    }
    // Only the first source present is validated in depth, as upstream.
    let mut present: Vec<&'static str> = Vec::new();
    if let Some(o) = &m.object {
        present.push("object");
        let p = format!("{path}.object");
        errs.extend(validate_reference(&o.described_object, &format!("{p}.describedObject")));
        errs.extend(validate_identifier(&o.metric, &format!("{p}.metric")));
        errs.extend(validate_target(&o.target, &format!("{p}.target")));
        if o.target.value.is_none() && o.target.average_value.is_none() {
            errs.push(FieldError::required(
                format!("{p}.target.averageValue"),
                "must set either a target value or averageValue",
            ));
        }
    }
    if let Some(e) = &m.external {
        present.push("external");
        if present.len() == 1 {
            let p = format!("{path}.external");
            errs.extend(validate_identifier(&e.metric, &format!("{p}.metric")));
            errs.extend(validate_target(&e.target, &format!("{p}.target")));
            if e.target.value.is_none() && e.target.average_value.is_none() {
                errs.push(FieldError::required(
                    format!("{p}.target.averageValue"),
                    "must set either a target value for metric or a per-pod target",
                ));
            }
            if e.target.value.is_some() && e.target.average_value.is_some() {
                errs.push(FieldError::forbidden(
                    format!("{p}.target.value"),
                    "may not set both a target value for metric and a per-pod target",
                ));
            }
        }
    }
    if let Some(pods) = &m.pods {
        present.push("pods");
        if present.len() == 1 {
            let p = format!("{path}.pods");
            errs.extend(validate_identifier(&pods.metric, &format!("{p}.metric")));
            errs.extend(validate_target(&pods.target, &format!("{p}.target")));
            if pods.target.average_value.is_none() {
                errs.push(FieldError::required(
                    format!("{p}.target.averageValue"),
                    "must specify a positive target averageValue",
                ));
            }
        }
    }
    if let Some(r) = &m.resource {
        present.push("resource");
        if present.len() == 1 {
            let p = format!("{path}.resource");
            if r.name.is_empty() {
                errs.push(FieldError::required(format!("{p}.name"), "must specify a resource name"));
            }
            errs.extend(validate_resource_target(&r.target, &p));
        }
    }
    if let Some(c) = &m.container_resource {
        present.push("containerResource");
        if present.len() == 1 {
            let p = format!("{path}.containerResource");
            if c.name.is_empty() {
                errs.push(FieldError::required(format!("{p}.name"), "must specify a resource name"));
            }
            if c.container.is_empty() {
                errs.push(FieldError::required(format!("{p}.container"), "must specify a container"));
            } else {
                for msg in apimachinery::validation::is_dns1123_label(&c.container) {
                    errs.push(FieldError::invalid(format!("{p}.container"), &c.container, msg));
                }
            }
            errs.extend(validate_resource_target(&c.target, &p));
        }
    }
    let expected = match m.type_.as_str() {
        "Object" => Some("object"),
        "Pods" => Some("pods"),
        "Resource" => Some("resource"),
        "External" => Some("external"),
        "ContainerResource" => Some("containerResource"),
        _ => None,
    };
    if let Some(field) = expected {
        if !present.contains(&field) {
            errs.push(FieldError::required(
                format!("{path}.{field}"),
                "must populate information for the given metric source",
            ));
        }
    }
    if present.len() != 1 {
        for typ in present.iter().filter(|t| Some(**t) != expected) {
            errs.push(FieldError::forbidden(format!("{path}.{typ}"), "must populate the given metric source only"));
        }
    }
    errs
}

fn validate_rules(rules: &HPAScalingRules, path: &str) -> FieldErrors {
    let mut errs = Vec::new();
    if let Some(w) = rules.stabilization_window_seconds {
        let p = format!("{path}.stabilizationWindowSeconds");
        if w < 0 {
            errs.push(FieldError::invalid_json(p.clone(), &json!(w), "must be greater than or equal to zero"));
        }
        if w > MAX_STABILIZATION_WINDOW_SECONDS {
            errs.push(FieldError::invalid_json(
                p,
                &json!(w),
                format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"),
            ));
        }
    }
    if let Some(s) = rules.select_policy.as_deref().filter(|s| !matches!(*s, "Max" | "Min" | "Disabled")) {
        errs.push(FieldError::not_supported(format!("{path}.selectPolicy"), s, &["Disabled", "Max", "Min"]));
    }
    let policies = rules.policies.as_deref().unwrap_or_default();
    if policies.is_empty() {
        errs.push(FieldError::required(format!("{path}.policies"), "must specify at least one Policy"));
    }
    for (i, p) in policies.iter().enumerate() {
        let pp = format!("{path}.policies[{i}]");
        if p.type_ != "Pods" && p.type_ != "Percent" {
            errs.push(FieldError::not_supported(format!("{pp}.type"), &p.type_, &["Percent", "Pods"]));
        }
        if p.value <= 0 {
            errs.push(FieldError::invalid_json(format!("{pp}.value"), &json!(p.value), "must be greater than zero"));
        }
        if p.period_seconds <= 0 {
            errs.push(FieldError::invalid_json(
                format!("{pp}.periodSeconds"),
                &json!(p.period_seconds),
                "must be greater than zero",
            ));
        }
        if p.period_seconds > MAX_PERIOD_SECONDS {
            errs.push(FieldError::invalid_json(
                format!("{pp}.periodSeconds"),
                &json!(p.period_seconds),
                format!("must be less than or equal to {MAX_PERIOD_SECONDS}"),
            ));
        }
    }
    errs
}

/// `validateHorizontalPodAutoscalerSpec`; `min_lower_bound` is 1 unless the
/// object already scaled to zero (HPAScaleToZero is alpha and off).
fn validate_spec(hpa: &HorizontalPodAutoscaler, min_lower_bound: i32) -> FieldErrors {
    let Some(spec) = &hpa.spec else {
        return vec![FieldError::required("spec", "")];
    };
    let mut errs = Vec::new();
    if let Some(min) = spec.min_replicas.filter(|m| *m < min_lower_bound) {
        errs.push(FieldError::invalid_json(
            "spec.minReplicas",
            &json!(min),
            format!("must be greater than or equal to {min_lower_bound}"),
        ));
    }
    if spec.max_replicas < 1 {
        errs.push(FieldError::invalid_json("spec.maxReplicas", &json!(spec.max_replicas), "must be greater than 0"));
    }
    if spec.min_replicas.is_some_and(|min| spec.max_replicas < min) {
        errs.push(FieldError::invalid_json(
            "spec.maxReplicas",
            &json!(spec.max_replicas),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    errs.extend(validate_reference(&spec.scale_target_ref, "spec.scaleTargetRef"));
    let metrics = spec.metrics.as_deref().unwrap_or_default();
    for (i, m) in metrics.iter().enumerate() {
        errs.extend(validate_metric(m, &format!("spec.metrics[{i}]")));
    }
    if spec.min_replicas == Some(0) && !metrics.iter().any(|m| m.type_ == "Object" || m.type_ == "External") {
        errs.push(FieldError::forbidden(
            "spec.metrics",
            "must specify at least one Object or External metric to support scaling to zero replicas",
        ));
    }
    if let Some(b) = &spec.behavior {
        if let Some(up) = &b.scale_up {
            errs.extend(validate_rules(up, "spec.behavior.scaleUp"));
        }
        if let Some(down) = &b.scale_down {
            errs.extend(validate_rules(down, "spec.behavior.scaleDown"));
        }
    }
    errs
}

fn validate_status(hpa: &HorizontalPodAutoscaler) -> FieldErrors {
    let mut errs = Vec::new();
    if let Some(s) = &hpa.status {
        for (field, v) in
            [("currentReplicas", s.current_replicas.unwrap_or(0)), ("desiredReplicas", s.desired_replicas)]
        {
            if v < 0 {
                errs.push(FieldError::invalid_json(
                    format!("status.{field}"),
                    &json!(v),
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    errs
}

// === autoscaling/v1 conversion ===

/// autoscaling/v1 served from the autoscaling/v2 storage version.
pub const V1_CONVERSION: Conversion =
    Conversion { storage_version: "v2", to_storage: v1_to_v2, from_storage: v2_to_v1 };

fn is_zero(q: &Value) -> bool {
    q.as_str().is_some_and(|s| apimachinery::quantity::parse_milli(s).is_ok_and(|m| m == 0))
}

/// Builds a JSON object from the entries whose value is present.
fn obj(entries: &[(&str, Option<&Value>)]) -> Value {
    let mut m = Map::new();
    for (k, v) in entries {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            m.insert((*k).to_string(), v.clone());
        }
    }
    Value::Object(m)
}

/// A quantity the v1 type holds by value: "0" when unset.
fn zero_if_unset(v: Option<&Value>) -> Value {
    v.filter(|v| !v.is_null()).cloned().unwrap_or_else(|| json!("0"))
}

/// A v1 by-value quantity back into a v2 optional one: a zero the v1 type
/// filled in stays unset when `other` carries the value instead.
fn unless_filled_zero<'a>(v: Option<&'a Value>, other: Option<&Value>) -> Option<&'a Value> {
    v.filter(|v| !(is_zero(v) && other.is_some_and(|o| !o.is_null())))
}

/// One v2 MetricSpec in the autoscaling/v1 annotation's (v2beta1) shape.
fn metric_spec_to_v1(m: &Value) -> Value {
    let t = m["type"].clone();
    match m["type"].as_str().unwrap_or_default() {
        "Object" => {
            let o = &m["object"];
            json!({"type": t, "object": obj(&[
                ("target", o.get("describedObject")),
                ("metricName", o["metric"].get("name")),
                ("targetValue", Some(&zero_if_unset(o["target"].get("value")))),
                ("selector", o["metric"].get("selector")),
                ("averageValue", o["target"].get("averageValue")),
            ])})
        }
        "Pods" => {
            let p = &m["pods"];
            json!({"type": t, "pods": obj(&[
                ("metricName", p["metric"].get("name")),
                ("targetAverageValue", Some(&zero_if_unset(p["target"].get("averageValue")))),
                ("selector", p["metric"].get("selector")),
            ])})
        }
        source @ ("Resource" | "ContainerResource") => {
            let key = if source == "Resource" { "resource" } else { "containerResource" };
            let r = &m[key];
            json!({"type": t, key: obj(&[
                ("name", r.get("name")),
                ("container", r.get("container")),
                ("targetAverageUtilization", r["target"].get("averageUtilization")),
                ("targetAverageValue", r["target"].get("averageValue")),
            ])})
        }
        "External" => {
            let e = &m["external"];
            json!({"type": t, "external": obj(&[
                ("metricName", e["metric"].get("name")),
                ("metricSelector", e["metric"].get("selector")),
                ("targetValue", e["target"].get("value")),
                ("targetAverageValue", e["target"].get("averageValue")),
            ])})
        }
        _ => m.clone(),
    }
}

/// One annotation (v2beta1-shaped) MetricSpec back into v2.
fn metric_spec_from_v1(m: &Value) -> Value {
    let t = m["type"].clone();
    let metric = |name: Option<&Value>, selector: Option<&Value>| obj(&[("name", name), ("selector", selector)]);
    match m["type"].as_str().unwrap_or_default() {
        "Object" => {
            let o = &m["object"];
            let average = o.get("averageValue").filter(|v| !v.is_null());
            let kind = if average.is_some() { "AverageValue" } else { "Value" };
            json!({"type": t, "object": {
                "describedObject": o["target"],
                "metric": metric(o.get("metricName"), o.get("selector")),
                "target": obj(&[("type", Some(&json!(kind))), ("value", unless_filled_zero(o.get("targetValue"), average)), ("averageValue", average)]),
            }})
        }
        "Pods" => {
            let p = &m["pods"];
            json!({"type": t, "pods": {
                "metric": metric(p.get("metricName"), p.get("selector")),
                "target": obj(&[("type", Some(&json!("AverageValue"))), ("averageValue", p.get("targetAverageValue"))]),
            }})
        }
        source @ ("Resource" | "ContainerResource") => {
            let key = if source == "Resource" { "resource" } else { "containerResource" };
            let r = &m[key];
            let utilization = r.get("targetAverageUtilization").filter(|v| !v.is_null());
            let kind = if utilization.is_some() { "Utilization" } else { "AverageValue" };
            json!({"type": t, key: obj(&[
                ("name", r.get("name")),
                ("container", r.get("container")),
                ("target", Some(&obj(&[("type", Some(&json!(kind))), ("averageUtilization", utilization), ("averageValue", r.get("targetAverageValue"))]))),
            ])})
        }
        "External" => {
            let e = &m["external"];
            let value = e.get("targetValue").filter(|v| !v.is_null());
            let kind = if value.is_some() { "Value" } else { "AverageValue" };
            json!({"type": t, "external": {
                "metric": metric(e.get("metricName"), e.get("metricSelector")),
                "target": obj(&[("type", Some(&json!(kind))), ("value", value), ("averageValue", e.get("targetAverageValue"))]),
            }})
        }
        _ => m.clone(),
    }
}

/// One v2 MetricStatus in the annotation's (v2beta1) shape.
fn metric_status_to_v1(m: &Value) -> Value {
    let t = m["type"].clone();
    match m["type"].as_str().unwrap_or_default() {
        "Object" => {
            let o = &m["object"];
            json!({"type": t, "object": obj(&[
                ("target", o.get("describedObject")),
                ("metricName", o["metric"].get("name")),
                ("currentValue", Some(&zero_if_unset(o["current"].get("value")))),
                ("selector", o["metric"].get("selector")),
                ("averageValue", o["current"].get("averageValue")),
            ])})
        }
        "Pods" => {
            let p = &m["pods"];
            json!({"type": t, "pods": obj(&[
                ("metricName", p["metric"].get("name")),
                ("currentAverageValue", Some(&zero_if_unset(p["current"].get("averageValue")))),
                ("selector", p["metric"].get("selector")),
            ])})
        }
        source @ ("Resource" | "ContainerResource") => {
            let key = if source == "Resource" { "resource" } else { "containerResource" };
            let r = &m[key];
            json!({"type": t, key: obj(&[
                ("name", r.get("name")),
                ("container", r.get("container")),
                ("currentAverageUtilization", r["current"].get("averageUtilization")),
                ("currentAverageValue", Some(&zero_if_unset(r["current"].get("averageValue")))),
            ])})
        }
        "External" => {
            let e = &m["external"];
            json!({"type": t, "external": obj(&[
                ("metricName", e["metric"].get("name")),
                ("metricSelector", e["metric"].get("selector")),
                ("currentValue", Some(&zero_if_unset(e["current"].get("value")))),
                ("currentAverageValue", e["current"].get("averageValue")),
            ])})
        }
        _ => m.clone(),
    }
}

/// One annotation (v2beta1-shaped) MetricStatus back into v2.
fn metric_status_from_v1(m: &Value) -> Value {
    let t = m["type"].clone();
    let metric = |name: Option<&Value>, selector: Option<&Value>| obj(&[("name", name), ("selector", selector)]);
    match m["type"].as_str().unwrap_or_default() {
        "Object" => {
            let o = &m["object"];
            let average = o.get("averageValue");
            json!({"type": t, "object": {
                "describedObject": o["target"],
                "metric": metric(o.get("metricName"), o.get("selector")),
                "current": obj(&[("value", unless_filled_zero(o.get("currentValue"), average)), ("averageValue", average)]),
            }})
        }
        "Pods" => {
            let p = &m["pods"];
            json!({"type": t, "pods": {
                "metric": metric(p.get("metricName"), p.get("selector")),
                "current": obj(&[("averageValue", p.get("currentAverageValue"))]),
            }})
        }
        source @ ("Resource" | "ContainerResource") => {
            let key = if source == "Resource" { "resource" } else { "containerResource" };
            let r = &m[key];
            let utilization = r.get("currentAverageUtilization");
            json!({"type": t, key: obj(&[
                ("name", r.get("name")),
                ("container", r.get("container")),
                ("current", Some(&obj(&[("averageValue", unless_filled_zero(r.get("currentAverageValue"), utilization)), ("averageUtilization", utilization)]))),
            ])})
        }
        "External" => {
            let e = &m["external"];
            let average = e.get("currentAverageValue");
            json!({"type": t, "external": {
                "metric": metric(e.get("metricName"), e.get("metricSelector")),
                "current": obj(&[("value", unless_filled_zero(e.get("currentValue"), average)), ("averageValue", average)]),
            }})
        }
        _ => m.clone(),
    }
}

/// Scaling rules in the behavior annotation's shape: upstream marshals its
/// internal type, whose fields have no JSON tags (Go field names, nulls kept).
fn rules_to_annotation(r: &Value) -> Value {
    if r.is_null() {
        return Value::Null;
    }
    let policies: Option<Vec<Value>> = r["policies"].as_array().map(|ps| {
        ps.iter()
            .map(|p| json!({"Type": p["type"], "Value": p["value"], "PeriodSeconds": p["periodSeconds"]}))
            .collect()
    });
    json!({
        "StabilizationWindowSeconds": r["stabilizationWindowSeconds"],
        "SelectPolicy": r["selectPolicy"],
        "Policies": policies,
        "Tolerance": r["tolerance"],
    })
}

fn rules_from_annotation(r: &Value) -> Value {
    if !r.is_object() {
        return Value::Null;
    }
    let policies: Option<Vec<Value>> = r["Policies"].as_array().map(|ps| {
        ps.iter()
            .map(|p| json!({"type": p["Type"], "value": p["Value"], "periodSeconds": p["PeriodSeconds"]}))
            .collect()
    });
    let policies = policies.map(Value::from);
    obj(&[
        ("stabilizationWindowSeconds", r.get("StabilizationWindowSeconds")),
        ("selectPolicy", r.get("SelectPolicy")),
        ("policies", policies.as_ref()),
        ("tolerance", r.get("Tolerance")),
    ])
}

fn is_cpu_resource(m: &Value) -> bool {
    m["type"] == "Resource" && m["resource"]["name"] == "cpu"
}

/// A stored autoscaling/v2 object as autoscaling/v1: the CPU utilization
/// target and current value as v1's fields, everything else in upstream's
/// annotations.
pub fn v2_to_v1(v2: &Value) -> Value {
    let spec = &v2["spec"];
    let status = &v2["status"];
    let metrics = spec["metrics"].as_array().map(Vec::as_slice).unwrap_or_default();
    let target_cpu = metrics
        .iter()
        .find(|m| is_cpu_resource(m))
        .and_then(|m| m["resource"]["target"].get("averageUtilization"))
        .filter(|v| !v.is_null());
    let other_metrics: Vec<Value> = metrics
        .iter()
        .filter(|m| !is_cpu_resource(m) || m["resource"]["target"]["averageUtilization"].is_null())
        .map(metric_spec_to_v1)
        .collect();
    let current_metrics = status["currentMetrics"].as_array().map(Vec::as_slice).unwrap_or_default();
    let current_cpu = current_metrics
        .iter()
        .filter(|m| is_cpu_resource(m))
        .filter_map(|m| m["resource"]["current"].get("averageUtilization").filter(|v| !v.is_null()))
        .next_back();
    let conditions = status["conditions"].as_array().map(Vec::as_slice).unwrap_or_default();

    let mut metadata = v2.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut extra: Vec<(&str, String)> = Vec::new();
    if !other_metrics.is_empty() {
        extra.push((METRIC_SPECS_ANNOTATION, Value::from(other_metrics).to_string()));
    }
    if !current_metrics.is_empty() {
        let v1: Vec<Value> = current_metrics.iter().map(metric_status_to_v1).collect();
        extra.push((METRIC_STATUSES_ANNOTATION, Value::from(v1).to_string()));
    }
    if !conditions.is_empty() {
        extra.push((CONDITIONS_ANNOTATION, Value::from(conditions.to_vec()).to_string()));
    }
    if let Some(b) = spec.get("behavior").filter(|b| b.is_object()) {
        let internal =
            json!({"ScaleUp": rules_to_annotation(&b["scaleUp"]), "ScaleDown": rules_to_annotation(&b["scaleDown"])});
        extra.push((BEHAVIOR_ANNOTATION, internal.to_string()));
    }
    if !extra.is_empty() {
        if let Value::Object(m) = &mut metadata {
            let annotations = m.entry("annotations").or_insert_with(|| json!({}));
            if !annotations.is_object() {
                *annotations = json!({});
            }
            if let Value::Object(a) = annotations {
                for (k, v) in extra {
                    a.insert(k.to_string(), Value::String(v));
                }
            }
        }
    }
    let mut out = json!({
        "kind": "HorizontalPodAutoscaler",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": obj(&[
            ("scaleTargetRef", spec.get("scaleTargetRef")),
            ("minReplicas", spec.get("minReplicas")),
            ("maxReplicas", Some(spec.get("maxReplicas").unwrap_or(&json!(0)))),
            ("targetCPUUtilizationPercentage", target_cpu),
        ]),
    });
    if status.is_object() {
        out["status"] = obj(&[
            ("observedGeneration", status.get("observedGeneration")),
            ("lastScaleTime", status.get("lastScaleTime")),
            ("currentReplicas", Some(status.get("currentReplicas").unwrap_or(&json!(0)))),
            ("desiredReplicas", Some(status.get("desiredReplicas").unwrap_or(&json!(0)))),
            ("currentCPUUtilizationPercentage", current_cpu),
        ]);
    }
    out
}

/// Parses a round-trip annotation's JSON (upstream fails the conversion on bad JSON).
fn annotation_json(key: &str, text: &str) -> Result<Value, ApiError> {
    serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("decoding the {key} annotation of autoscaling/v1: {e}")))
}

/// An autoscaling/v1 request object as autoscaling/v2: the CPU utilization
/// target as a Resource metric, the round-trip annotations turned back into
/// the fields they carry (and removed).
pub fn v1_to_v2(input: Value) -> Result<Normalized, ApiError> {
    let typed: k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler = serde_json::from_value(input.clone())
        .map_err(|e| ApiError::bad_request(format!("error decoding object: {e}")))?;
    let v1 = serde_json::to_value(&typed).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut unknown_fields = Vec::new();
    unknown_fields_of(&input, &v1, &mut unknown_fields);
    let spec = &v1["spec"];
    let status = &v1["status"];
    let mut metadata = v1.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut annotations: Map<String, Value> = metadata["annotations"].as_object().cloned().unwrap_or_default();
    let mut take = |key: &str| -> Result<Option<Value>, ApiError> {
        match annotations.remove(key) {
            Some(Value::String(text)) => annotation_json(key, &text).map(Some),
            _ => Ok(None),
        }
    };
    let other_metrics = take(METRIC_SPECS_ANNOTATION)?;
    let current_metrics = take(METRIC_STATUSES_ANNOTATION)?;
    let conditions = take(CONDITIONS_ANNOTATION)?;
    let behavior = take(BEHAVIOR_ANNOTATION)?;

    let mut metrics: Vec<Value> = other_metrics
        .as_ref()
        .and_then(Value::as_array)
        .map(|a| a.iter().map(metric_spec_from_v1).collect())
        .unwrap_or_default();
    if let Some(cpu) = spec.get("targetCPUUtilizationPercentage").and_then(Value::as_i64) {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}}));
    }
    if metrics.is_empty() {
        metrics.push(serde_json::to_value(cpu_utilization_metric(DEFAULT_CPU_UTILIZATION)).unwrap_or_default());
    }
    let behavior = behavior.filter(Value::is_object).map(|b| {
        obj(&[
            ("scaleUp", Some(&rules_from_annotation(&b["ScaleUp"]))),
            ("scaleDown", Some(&rules_from_annotation(&b["ScaleDown"]))),
        ])
    });
    if let Value::Object(m) = &mut metadata {
        if annotations.is_empty() {
            m.remove("annotations");
        } else {
            m.insert("annotations".into(), Value::Object(annotations));
        }
    }
    let mut out = json!({
        "kind": "HorizontalPodAutoscaler",
        "apiVersion": "autoscaling/v2",
        "metadata": metadata,
        "spec": obj(&[
            ("scaleTargetRef", spec.get("scaleTargetRef")),
            ("minReplicas", spec.get("minReplicas")),
            ("maxReplicas", spec.get("maxReplicas")),
            ("metrics", Some(&Value::from(metrics))),
            ("behavior", behavior.as_ref()),
        ]),
    });
    if status.is_object() {
        let current: Option<Value> = match &current_metrics {
            Some(Value::Array(a)) => Some(a.iter().map(metric_status_from_v1).collect()),
            _ => status.get("currentCPUUtilizationPercentage").and_then(Value::as_i64).map(
                |u| json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u}}}]),
            ),
        };
        out["status"] = obj(&[
            ("observedGeneration", status.get("observedGeneration")),
            ("lastScaleTime", status.get("lastScaleTime")),
            ("currentReplicas", status.get("currentReplicas")),
            ("desiredReplicas", status.get("desiredReplicas")),
            ("currentMetrics", current.as_ref()),
            ("conditions", conditions.as_ref()),
        ]);
    }
    Ok(Normalized { object: out, unknown_fields })
}

fn unknown_fields_of(input: &Value, known: &Value, out: &mut Vec<String>) {
    crate::registry::strategy::unknown_fields(input, known, "", out);
}

// === impl HorizontalPodAutoscalerStrategy ===

pub struct HorizontalPodAutoscalerStrategy;

impl KindStrategy for HorizontalPodAutoscalerStrategy {
    type Object = HorizontalPodAutoscaler;

    fn default(&self, hpa: &mut HorizontalPodAutoscaler) {
        default_hpa(hpa);
    }

    fn prepare_for_create(&self, hpa: &mut HorizontalPodAutoscaler) {
        hpa.status = None;
    }

    fn validate(&self, hpa: &HorizontalPodAutoscaler) -> FieldErrors {
        let mut errs = validate_spec(hpa, 1);
        errs.extend(validate_status(hpa));
        errs
    }

    fn validate_update(&self, _new: &HorizontalPodAutoscaler, _old: &HorizontalPodAutoscaler) -> FieldErrors {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa(v: Value) -> HorizontalPodAutoscaler {
        serde_json::from_value(v).unwrap()
    }

    fn paths(errs: &FieldErrors) -> Vec<String> {
        errs.iter().map(|e| e.message()).collect()
    }

    #[test]
    fn defaults_follow_upstream_v2() {
        let mut h = hpa(json!({"metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                     "behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}}}));
        default_hpa(&mut h);
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["spec"]["minReplicas"], 1);
        assert_eq!(
            v["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])
        );
        assert_eq!(
            v["spec"]["behavior"]["scaleUp"],
            json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]})
        );
        // Given fields stay; the scale-down window stays unset (the controller's flag applies).
        assert_eq!(
            v["spec"]["behavior"]["scaleDown"],
            json!({"selectPolicy": "Max", "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]})
        );
        // No behavior: none is made up.
        let mut h = hpa(json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5}}));
        default_hpa(&mut h);
        assert!(h.spec.unwrap().behavior.is_none());
    }

    #[test]
    fn validation_reports_upstream_paths_and_messages() {
        let h = hpa(json!({"spec": {"scaleTargetRef": {"kind": "", "name": "a/b"}, "minReplicas": 0, "maxReplicas": 0,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}},
                {"type": "Pods", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                {"type": "Bogus"}
            ],
            "behavior": {"scaleUp": {"stabilizationWindowSeconds": 4000, "selectPolicy": "Most", "policies": []},
                         "scaleDown": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 1801}]}}}}));
        let got = paths(&HorizontalPodAutoscalerStrategy.validate(&h));
        for want in [
            "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
            "spec.maxReplicas: Invalid value: 0: must be greater than 0",
            "spec.scaleTargetRef.kind: Required value",
            "spec.scaleTargetRef.name: Invalid value: \"a/b\": may not contain '/'",
            "spec.metrics[0].resource.target.averageUtilization: Required value: must set either a target raw value or a target utilization",
            "spec.metrics[1].pods: Required value: must populate information for the given metric source",
            "spec.metrics[2].type: Unsupported value: \"Bogus\": supported values: \"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\"",
            "spec.metrics: Forbidden: must specify at least one Object or External metric to support scaling to zero replicas",
            "spec.behavior.scaleUp.stabilizationWindowSeconds: Invalid value: 4000: must be less than or equal to 3600",
            "spec.behavior.scaleUp.selectPolicy: Unsupported value: \"Most\": supported values: \"Disabled\", \"Max\", \"Min\"",
            "spec.behavior.scaleUp.policies: Required value: must specify at least one Policy",
            "spec.behavior.scaleDown.policies[0].value: Invalid value: 0: must be greater than zero",
            "spec.behavior.scaleDown.policies[0].periodSeconds: Invalid value: 1801: must be less than or equal to 1800",
        ] {
            assert!(got.iter().any(|g| g == want), "missing {want:?} in {got:#?}");
        }
        let ok = hpa(
            json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 3,
            "metrics": [{"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}]}}),
        );
        assert_eq!(paths(&HorizontalPodAutoscalerStrategy.validate(&ok)), Vec::<String>::new());
        let both = hpa(
            json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 1, "minReplicas": 2}}),
        );
        assert_eq!(
            paths(&HorizontalPodAutoscalerStrategy.validate(&both)),
            ["spec.maxReplicas: Invalid value: 1: must be greater than or equal to `minReplicas`"]
        );
    }

    fn full_v2() -> Value {
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"keep": "me"}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                    {"type": "Object", "object": {"describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"},
                        "metric": {"name": "hits"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                    {"type": "External", "external": {"metric": {"name": "queue", "selector": {"matchLabels": {"q": "a"}}},
                        "target": {"type": "Value", "value": "30"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}
                ],
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]},
                    "scaleDown": {"selectPolicy": "Min", "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}]}
                }
            },
            "status": {
                "currentReplicas": 3,
                "desiredReplicas": 4,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "80Mi"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45, "averageValue": "45m"}}}
                ],
                "conditions": [{"type": "AbleToScale", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "ReadyForNewScale", "message": "ok"}]
            }
        })
    }

    #[test]
    fn v2_to_v1_and_back_loses_nothing() {
        let v2 = full_v2();
        let v1 = v2_to_v1(&v2);
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 45);
        let a = &v1["metadata"]["annotations"];
        assert_eq!(a["keep"], "me");
        let metrics: Value = serde_json::from_str(a[METRIC_SPECS_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(
            metrics[0],
            json!({"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}})
        );
        assert_eq!(metrics[1], json!({"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "1k"}}));
        assert_eq!(metrics.as_array().unwrap().len(), 4, "the cpu utilization target is v1's own field");
        let behavior: Value = serde_json::from_str(a[BEHAVIOR_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(
            behavior["ScaleDown"],
            json!({"StabilizationWindowSeconds": null, "SelectPolicy": "Min", "Policies": [{"Type": "Percent", "Value": 10, "PeriodSeconds": 60}], "Tolerance": null})
        );
        assert!(a[CONDITIONS_ANNOTATION].as_str().unwrap().contains("ReadyForNewScale"));
        assert!(a[METRIC_STATUSES_ANNOTATION].as_str().unwrap().contains("\"currentAverageValue\":\"80Mi\""));

        let back = v1_to_v2(v1).unwrap();
        assert!(back.unknown_fields.is_empty(), "{:?}", back.unknown_fields);
        assert_eq!(back.object, v2);
    }

    #[test]
    fn plain_v1_objects_convert_as_upstream() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5, "targetCPUUtilizationPercentage": 60, "bogus": 1}});
        let n = v1_to_v2(v1).unwrap();
        assert_eq!(n.unknown_fields, ["spec.bogus"]);
        assert_eq!(n.object["apiVersion"], "autoscaling/v2");
        assert_eq!(
            n.object["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}])
        );
        assert!(n.object["metadata"].get("annotations").is_none());
        // No target: the v1 implicit default, 80% CPU.
        let v1 = json!({"metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5}});
        let n = v1_to_v2(v1).unwrap();
        assert_eq!(n.object["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 80);
        // A v2 object cannot carry the round-trip annotations into storage.
        let mut h =
            hpa(json!({"metadata": {"name": "web", "annotations": {METRIC_SPECS_ANNOTATION: "[]", "other": "x"}},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5}}));
        default_hpa(&mut h);
        assert_eq!(h.metadata.annotations.unwrap().keys().collect::<Vec<_>>(), ["other"]);
        // Bad annotation JSON fails the conversion.
        let v1 =
            json!({"metadata": {"name": "web", "annotations": {BEHAVIOR_ANNOTATION: "{"}}, "spec": {"maxReplicas": 1}});
        assert_eq!(v1_to_v2(v1).unwrap_err().code, 400);
    }
}
