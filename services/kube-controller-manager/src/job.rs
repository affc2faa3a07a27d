//! The Job controller: runs pods until `completions` succeed (NonIndexed or
//! Indexed), `parallelism` at a time, with exponential back-off after
//! failures, `backoffLimit`, `activeDeadlineSeconds` and `suspend`. Pods
//! carry the `batch.kubernetes.io/job-tracking` finalizer so each finished
//! pod is counted exactly once (through status.uncountedTerminatedPods)
//! before it may go away.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use component_base::events::{object_ref, EventType, Recorder};
use futures::future::join_all;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use crate::informer::{Change, Factory};
use crate::queue::WorkQueue;
use crate::util::{self, Expectations};

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

#[derive(Debug, thiserror::Error)]
#[error("{action} for job {job}: {source}")]
pub struct Error {
    action: &'static str,
    job: String,
    #[source]
    source: kube::Error,
}

pub struct JobController {
    client: kube::Client,
    recorder: Recorder,
    jobs: Store<Job>,
    pods: Store<Pod>,
    expectations: Expectations,
    /// When each job last saw a new pod failure (for the back-off).
    last_failure: Mutex<HashMap<String, Instant>>,
    queue: WorkQueue,
}

fn has_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

pub fn finished(job: &Job) -> bool {
    has_condition(job, "Complete") || has_condition(job, "Failed")
}

fn set_condition(status: &mut JobStatus, type_: &str, st: &str, reason: &str, message: &str) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if conds.iter().any(|c| c.type_ == type_ && c.status == st && c.reason.as_deref() == Some(reason)) {
        return;
    }
    let now = Time(jiff::Timestamp::now());
    conds.retain(|c| c.type_ != type_);
    conds.push(JobCondition {
        type_: type_.into(),
        status: st.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now),
    });
}

fn index_of(pod: &Pod) -> Option<i32> {
    pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?.parse().ok()
}

/// `0-2,4` from a set of indexes.
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    out.join(",")
}

pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    set.extend(a..=b);
                }
            }
            None => set.extend(part.parse::<i32>().ok()),
        }
    }
    set
}

impl JobController {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue) -> Arc<Self> {
        let jobs = factory.jobs();
        let pods = factory.pods();
        let this = Arc::new(JobController {
            recorder: Recorder::new(client.clone(), "job-controller", None),
            client,
            jobs: jobs.store(),
            pods: pods.store(),
            expectations: Expectations::default(),
            last_failure: Mutex::new(HashMap::new()),
            queue,
        });
        let q = this.queue.clone();
        jobs.add_handler(move |c| match c {
            Change::Upsert { new, .. } => q.add(util::key_of(&new.metadata)),
            Change::Deleted(old) => q.add(util::key_of(&old.metadata)),
        });
        let me = this.clone();
        pods.add_handler(move |c| {
            let (old, pod) = match c {
                Change::Upsert { old, new } => (old.clone(), new.clone()),
                Change::Deleted(p) => (None, p.clone()),
            };
            let Some(r) = util::controller_ref(&pod.metadata).filter(|r| r.kind == "Job") else { return };
            let key = format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), r.name);
            match c {
                Change::Upsert { old: None, .. } => me.expectations.creation_observed(&key),
                Change::Deleted(_) => me.expectations.deletion_observed(&key, &util::key_of(&pod.metadata)),
                Change::Upsert { .. } => {
                    if pod.metadata.deletion_timestamp.is_some()
                        && old.as_ref().is_some_and(|o| o.metadata.deletion_timestamp.is_none())
                    {
                        me.expectations.deletion_observed(&key, &util::key_of(&pod.metadata));
                    }
                }
            }
            me.queue.add(key);
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

    fn err(&self, action: &'static str, key: &str) -> impl FnOnce(kube::Error) -> Error {
        let job = key.to_string();
        move |source| Error { action, job, source }
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = util::split_key(key);
        let Some(job) = self.jobs.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            self.last_failure.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
            return Ok(None);
        };
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter(|p| util::controller_ref(&p.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let spec = job.spec.clone().unwrap_or_default();
        let mut status = job.status.clone().unwrap_or_default();
        let was_finished = finished(&job);
        let suspended = spec.suspend == Some(true);
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");

        // 1. Count every pod that finished (or vanished into deletion) exactly once.
        let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let mut counted_ok: HashSet<String> = uncounted.succeeded.iter().flatten().cloned().collect();
        let mut counted_failed: HashSet<String> = uncounted.failed.iter().flatten().cloned().collect();
        let mut completed = parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
        let mut new_failures = 0;
        let tracked = |p: &Pod| p.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER);
        let mut release: Vec<Arc<Pod>> = Vec::new();
        for p in pods.iter().filter(|p| tracked(p)) {
            let pod_uid = p.metadata.uid.clone().unwrap_or_default();
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            let terminal = util::is_terminal(p);
            let deleting = p.metadata.deletion_timestamp.is_some();
            if !terminal && !deleting {
                continue;
            }
            release.push(p.clone());
            if counted_ok.contains(&pod_uid) || counted_failed.contains(&pod_uid) || was_finished {
                continue;
            }
            if phase == Some("Succeeded") {
                let new_index = index_of(p).is_none_or(|i| completed.insert(i));
                if !indexed || new_index {
                    status.succeeded = Some(status.succeeded.unwrap_or(0) + 1);
                }
                counted_ok.insert(pod_uid.clone());
                uncounted.succeeded.get_or_insert_with(Vec::new).push(pod_uid);
            } else if terminal || !suspended {
                // A pod deleted before it finished counts as failed, unless the job removed it.
                status.failed = Some(status.failed.unwrap_or(0) + 1);
                new_failures += 1;
                counted_failed.insert(pod_uid.clone());
                uncounted.failed.get_or_insert_with(Vec::new).push(pod_uid);
            }
        }
        if new_failures > 0 {
            self.last_failure.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), Instant::now());
        }
        if indexed {
            status.completed_indexes = Some(format_indexes(&completed));
        }
        if !release.is_empty() {
            status.uncounted_terminated_pods = Some(uncounted.clone());
            self.write_status(&job, &status, key).await?;
            for p in &release {
                self.remove_finalizer(&pod_api, p, key).await?;
            }
            // Counted and released: no longer uncounted.
            let released: HashSet<String> = release.iter().filter_map(|p| p.metadata.uid.clone()).collect();
            let keep = |v: &Option<Vec<String>>| {
                v.as_ref().map(|v| v.iter().filter(|u| !released.contains(*u)).cloned().collect::<Vec<_>>())
            };
            status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
                succeeded: keep(&uncounted.succeeded),
                failed: keep(&uncounted.failed),
            });
        }
        if was_finished {
            return self.finish_status(&job, status, key).await;
        }

        let active: Vec<Arc<Pod>> = pods.iter().filter(|p| util::is_active(p)).cloned().collect();
        let succeeded = status.succeeded.unwrap_or(0);
        let failed = status.failed.unwrap_or(0);
        let now = jiff::Timestamp::now();
        let parallelism = spec.parallelism.unwrap_or(1).max(0);

        // 2. Suspend, fail or complete.
        if suspended {
            self.delete_pods(&pod_api, &active, key).await?;
            set_condition(&mut status, "Suspended", "True", "JobSuspended", "Job suspended");
            status.start_time = None;
            status.active = Some(0);
            return self.finish_status(&job, status, key).await;
        }
        if has_condition(&job, "Suspended") {
            set_condition(&mut status, "Suspended", "False", "JobResumed", "Job resumed");
        }
        status.start_time.get_or_insert(Time(now));
        let start = status.start_time.as_ref().map(|t| t.0).unwrap_or(now);
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let failure = if failed > backoff_limit {
            Some(("BackoffLimitExceeded", "Job has reached the specified backoff limit"))
        } else if spec.active_deadline_seconds.is_some_and(|d| start + jiff::SignedDuration::from_secs(d) <= now) {
            Some(("DeadlineExceeded", "Job was active longer than specified deadline"))
        } else {
            None
        };
        let done = match spec.completions {
            Some(c) if indexed => (0..c).all(|i| completed.contains(&i)),
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        };
        if let Some((reason, message)) = failure {
            self.delete_pods(&pod_api, &active, key).await?;
            set_condition(&mut status, "FailureTarget", "True", reason, message);
            set_condition(&mut status, "Failed", "True", reason, message);
            self.recorder.event(object_ref(job.as_ref()), EventType::Warning, reason, message);
            status.active = Some(0);
            return self.finish_status(&job, status, key).await;
        }
        if done {
            self.delete_pods(&pod_api, &active, key).await?;
            set_condition(
                &mut status,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            );
            set_condition(
                &mut status,
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            );
            status.completion_time = Some(Time(now));
            status.active = Some(0);
            self.recorder.event(object_ref(job.as_ref()), EventType::Normal, "Completed", "Job completed");
            return self.finish_status(&job, status, key).await;
        }

        // 3. Run the right number of pods, after the back-off since the last failure.
        let mut requeue = None;
        if self.expectations.satisfied(key) {
            let want = match spec.completions {
                Some(c) if indexed => (c - completed.len() as i32).min(parallelism),
                Some(c) => (c - succeeded).min(parallelism),
                None if succeeded > 0 => active.len() as i32,
                None => parallelism,
            }
            .max(0) as usize;
            if active.len() < want {
                let delay = if failed > 0 {
                    BACKOFF_BASE.saturating_mul(1 << (failed - 1).clamp(0, 10)).min(BACKOFF_MAX)
                } else {
                    Duration::ZERO
                };
                let since = self.last_failure.lock().unwrap_or_else(|e| e.into_inner()).get(key).map(|t| t.elapsed());
                match since {
                    Some(since) if since < delay => requeue = Some(delay - since),
                    _ => {
                        let mut indexes = Vec::new();
                        if indexed {
                            let busy: HashSet<i32> = active.iter().filter_map(|p| index_of(p)).collect();
                            let c = spec.completions.unwrap_or(0);
                            indexes = (0..c)
                                .filter(|i| !completed.contains(i) && !busy.contains(i))
                                .take(want - active.len())
                                .map(Some)
                                .collect();
                        } else {
                            indexes.resize(want - active.len(), None);
                        }
                        self.create_pods(&job, &pod_api, &indexes, key).await?;
                    }
                }
            } else if active.len() > want {
                let mut extra = active.clone();
                extra.sort_by(|a, b| crate::replicaset::deletion_order(a, b));
                extra.truncate(active.len() - want);
                self.delete_pods(&pod_api, &extra, key).await?;
            }
        }
        status.active = Some(active.len() as i32);
        status.ready = Some(active.iter().filter(|p| util::is_ready(p)).count() as i32);
        if let Some(d) = spec.active_deadline_seconds {
            let left = (start + jiff::SignedDuration::from_secs(d)).duration_since(now);
            let left = Duration::try_from(left).unwrap_or_default() + Duration::from_millis(100);
            requeue = Some(requeue.map_or(left, |r: Duration| r.min(left)));
        }
        if status != job.status.clone().unwrap_or_default() {
            self.write_status(&job, &status, key).await?;
        }
        Ok(requeue)
    }

    async fn finish_status(&self, job: &Job, status: JobStatus, key: &str) -> Result<Option<Duration>, Error> {
        if Some(&status) != job.status.as_ref() {
            self.write_status(job, &status, key).await?;
        }
        Ok(None)
    }

    async fn write_status(&self, job: &Job, status: &JobStatus, key: &str) -> Result<(), Error> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), job.metadata.namespace.as_deref().unwrap_or_default());
        let mut updated = job.clone();
        updated.status = Some(status.clone());
        match api
            .replace_status(job.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if util::api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.err("updating status", key)(e)),
        }
    }

    async fn remove_finalizer(&self, api: &Api<Pod>, pod: &Pod, key: &str) -> Result<(), Error> {
        let rest: Vec<&String> =
            pod.metadata.finalizers.iter().flatten().filter(|f| *f != TRACKING_FINALIZER).collect();
        let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": pod.metadata.resource_version}});
        match api
            .patch(pod.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if util::api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.err("removing the tracking finalizer", key)(e)),
        }
    }

    async fn delete_pods(&self, api: &Api<Pod>, pods: &[Arc<Pod>], key: &str) -> Result<(), Error> {
        if pods.is_empty() {
            return Ok(());
        }
        self.expectations.expect(key, 0, pods.iter().map(|p| util::key_of(&p.metadata)));
        for p in pods {
            let name = p.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(e) if util::api_code(&e) == Some(404) => {
                    self.expectations.deletion_observed(key, &util::key_of(&p.metadata))
                }
                Err(e) => {
                    self.expectations.deletion_observed(key, &util::key_of(&p.metadata));
                    return Err(self.err("deleting pod", key)(e));
                }
            }
            // Deleted by the job: release it right away, it is not a failure.
            self.remove_finalizer(api, p, key).await?;
        }
        Ok(())
    }

    async fn create_pods(&self, job: &Job, api: &Api<Pod>, indexes: &[Option<i32>], key: &str) -> Result<(), Error> {
        if indexes.is_empty() {
            return Ok(());
        }
        self.expectations.expect(key, indexes.len() as i64, []);
        let results = join_all(indexes.iter().map(|i| {
            let pod = pod_for(job, *i);
            async move { api.create(&PostParams::default(), &pod).await }
        }))
        .await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(p) => self.recorder.event(
                    object_ref(job),
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created pod: {}", p.metadata.name.unwrap_or_default()),
                ),
                Err(e) => {
                    self.expectations.lowered(key, 1);
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(self.err("creating pods", key)(e)),
            None => Ok(()),
        }
    }
}

/// A pod for the job's template: owned, tracked, and for Indexed jobs numbered.
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let tm = template.metadata.unwrap_or_default();
    let mut labels = tm.labels.unwrap_or_default();
    let mut annotations = tm.annotations.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let mut generate_name = format!("{name}-");
    if let Some(i) = index {
        labels.insert(COMPLETION_INDEX.into(), i.to_string());
        annotations.insert(COMPLETION_INDEX.into(), i.to_string());
        generate_name = format!("{name}-{i}-");
        if spec.hostname.is_none() {
            spec.hostname = Some(format!("{name}-{i}"));
        }
        for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
            c.env.get_or_insert_with(Vec::new).push(EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: None,
                value_from: Some(
                    serde_json::from_value(
                        json!({"fieldRef": {"fieldPath": format!("metadata.labels['{COMPLETION_INDEX}']")}}),
                    )
                    .unwrap_or_default(),
                ),
            });
        }
    }
    let mut finalizers = tm.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.into());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![util::new_controller_ref(job)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_round_trip_as_ranges() {
        let set = BTreeSet::from([0, 1, 2, 4, 6, 7]);
        assert_eq!(format_indexes(&set), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7"), set);
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }
}
