//! batch/v1 strategies: Job defaults and generated selectors, CronJob defaults.

use std::collections::BTreeMap;

use apimachinery::status::{FieldError, FieldErrors};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::core::{default_pod_spec, validate_pod_spec};
use crate::registry::strategy::KindStrategy;

const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const LEGACY_CONTROLLER_UID: &str = "controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const LEGACY_JOB_NAME: &str = "job-name";

fn default_job_spec(spec: &mut JobSpec) {
    spec.parallelism.get_or_insert(1);
    if spec.completions.is_none() && spec.parallelism == Some(1) {
        spec.completions = Some(1);
    }
    // Upstream: with per-index back-off the job-wide limit is effectively off.
    let backoff_limit = if spec.backoff_limit_per_index.is_some() { i32::MAX } else { 6 };
    spec.backoff_limit.get_or_insert(backoff_limit);
    spec.completion_mode.get_or_insert_with(|| "NonIndexed".into());
    spec.suspend.get_or_insert(false);
    spec.manual_selector.get_or_insert(false);
    // Upstream: a pod failure policy needs to see each pod end, so replacements wait for it.
    let replacement = if spec.pod_failure_policy.is_some() { "Failed" } else { "TerminatingOrFailed" };
    spec.pod_replacement_policy.get_or_insert_with(|| replacement.into());
    if let Some(t) = &mut spec.template.spec {
        default_pod_spec(t);
    }
}

fn validate_job_spec(spec: &JobSpec, path: &str) -> FieldErrors {
    let mut errs = Vec::new();
    for (field, value) in
        [("parallelism", spec.parallelism), ("completions", spec.completions), ("backoffLimit", spec.backoff_limit)]
    {
        if let Some(v) = value {
            if v < 0 {
                errs.push(FieldError::invalid_json(
                    format!("{path}.{field}"),
                    &serde_json::json!(v),
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    if let Some(mode) = &spec.completion_mode {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(FieldError::not_supported(format!("{path}.completionMode"), mode, &["NonIndexed", "Indexed"]));
        }
        if mode == "Indexed" && spec.completions.is_none() {
            errs.push(FieldError::required(format!("{path}.completions"), "when completion mode is Indexed"));
        }
    }
    match &spec.template.spec {
        Some(pod) => {
            errs.extend(validate_pod_spec(pod, &format!("{path}.template.spec")));
            match pod.restart_policy.as_deref() {
                Some("OnFailure") | Some("Never") => {}
                other => errs.push(FieldError::not_supported(
                    format!("{path}.template.spec.restartPolicy"),
                    other.unwrap_or(""),
                    &["OnFailure", "Never"],
                )),
            }
        }
        None => errs.push(FieldError::required(format!("{path}.template.spec"), "")),
    }
    errs
}

// === impl JobStrategy ===

pub struct JobStrategy;

impl KindStrategy for JobStrategy {
    type Object = Job;

    fn default(&self, job: &mut Job) {
        if let Some(spec) = &mut job.spec {
            // A pod template without restartPolicy defaults to Always, which a
            // Job rejects; upstream leaves it for validation to report.
            default_job_spec(spec);
        }
    }

    fn prepare_for_create(&self, job: &mut Job) {
        job.status = None;
        let (Some(spec), Some(uid), Some(name)) = (&mut job.spec, job.metadata.uid.clone(), job.metadata.name.clone())
        else {
            return;
        };
        // Upstream generates the selector from the Job's uid unless
        // manualSelector is set, and labels the template to match.
        if spec.manual_selector != Some(true) {
            spec.selector = Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(CONTROLLER_UID.to_string(), uid.clone())])),
                ..Default::default()
            });
            let labels =
                spec.template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(Default::default);
            labels.insert(CONTROLLER_UID.into(), uid.clone());
            labels.insert(LEGACY_CONTROLLER_UID.into(), uid);
            labels.insert(JOB_NAME.into(), name.clone());
            labels.insert(LEGACY_JOB_NAME.into(), name);
        }
    }

    fn validate(&self, job: &Job) -> FieldErrors {
        match &job.spec {
            Some(spec) => {
                let mut errs = validate_job_spec(spec, "spec");
                if spec.manual_selector == Some(true) && spec.selector.is_none() {
                    errs.push(FieldError::required("spec.selector", ""));
                }
                errs
            }
            None => vec![FieldError::required("spec", "")],
        }
    }

    fn validate_update(&self, new: &Job, old: &Job) -> FieldErrors {
        let (Some(n), Some(o)) = (&new.spec, &old.spec) else { return Vec::new() };
        let mut errs = Vec::new();
        if n.selector != o.selector {
            errs.push(FieldError::invalid("spec.selector", "", "field is immutable"));
        }
        if n.completions != o.completions && n.completion_mode.as_deref() != Some("Indexed") {
            errs.push(FieldError::invalid(
                "spec.completions",
                n.completions.map(|c| c.to_string()).unwrap_or_default(),
                "field is immutable",
            ));
        }
        if n.completion_mode != o.completion_mode {
            errs.push(FieldError::invalid(
                "spec.completionMode",
                n.completion_mode.clone().unwrap_or_default(),
                "field is immutable",
            ));
        }
        // The pod template may change only while the Job is suspended (for
        // scheduling directives); everything else is fixed.
        if n.template != o.template && o.suspend != Some(true) {
            errs.push(FieldError::invalid("spec.template", "", "field is immutable"));
        }
        errs
    }
}

// === impl CronJobStrategy ===

pub struct CronJobStrategy;

impl KindStrategy for CronJobStrategy {
    type Object = CronJob;

    fn default(&self, cj: &mut CronJob) {
        let Some(spec) = &mut cj.spec else { return };
        spec.concurrency_policy.get_or_insert_with(|| "Allow".into());
        spec.suspend.get_or_insert(false);
        spec.successful_jobs_history_limit.get_or_insert(3);
        spec.failed_jobs_history_limit.get_or_insert(1);
        if let Some(job) = &mut spec.job_template.spec {
            default_job_spec(job);
        }
    }

    fn prepare_for_create(&self, cj: &mut CronJob) {
        cj.status = None;
    }

    fn validate(&self, cj: &CronJob) -> FieldErrors {
        let Some(spec) = &cj.spec else { return vec![FieldError::required("spec", "")] };
        let mut errs = Vec::new();
        let fields = spec.schedule.split_whitespace().count();
        let macro_ok = spec.schedule.starts_with('@');
        if spec.schedule.trim().is_empty() {
            errs.push(FieldError::required("spec.schedule", ""));
        } else if !macro_ok
            && fields != 5
            && !spec.schedule.starts_with("TZ=")
            && !spec.schedule.starts_with("CRON_TZ=")
        {
            errs.push(FieldError::invalid(
                "spec.schedule",
                &spec.schedule,
                format!("expected exactly 5 fields, found {fields}: {}", spec.schedule),
            ));
        }
        if let Some(p) = &spec.concurrency_policy {
            if !["Allow", "Forbid", "Replace"].contains(&p.as_str()) {
                errs.push(FieldError::not_supported("spec.concurrencyPolicy", p, &["Allow", "Forbid", "Replace"]));
            }
        }
        if let Some(job) = &spec.job_template.spec {
            errs.extend(validate_job_spec(job, "spec.jobTemplate.spec"));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}},
        }))
        .unwrap()
    }

    #[test]
    fn jobs_get_upstream_defaults_and_a_generated_selector() {
        let s = JobStrategy;
        let mut j = job();
        s.default(&mut j);
        s.prepare_for_create(&mut j);
        let spec = j.spec.as_ref().unwrap();
        assert_eq!((spec.parallelism, spec.completions, spec.backoff_limit), (Some(1), Some(1), Some(6)));
        let sel = spec.selector.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert_eq!(sel[CONTROLLER_UID], "u-1");
        let labels = spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        assert_eq!(labels[JOB_NAME], "pi");
        assert!(s.validate(&j).is_empty(), "{:?}", s.validate(&j));
        assert_eq!(spec.pod_replacement_policy.as_deref(), Some("TerminatingOrFailed"));
    }

    #[test]
    fn per_index_backoff_and_pod_failure_policies_change_the_defaults() {
        let mut j = job();
        let spec = j.spec.as_mut().unwrap();
        spec.backoff_limit_per_index = Some(1);
        spec.completion_mode = Some("Indexed".into());
        spec.pod_failure_policy = Some(Default::default());
        JobStrategy.default(&mut j);
        let spec = j.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(i32::MAX));
        assert_eq!(spec.pod_replacement_policy.as_deref(), Some("Failed"));
    }

    #[test]
    fn jobs_must_not_restart_always() {
        let mut j = job();
        j.spec.as_mut().unwrap().template.spec.as_mut().unwrap().restart_policy = Some("Always".into());
        let errs = JobStrategy.validate(&j);
        assert!(errs.iter().any(|e| e.field == "spec.template.spec.restartPolicy"), "{errs:?}");
    }
}
