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
use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobStatus, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, SuccessPolicy,
    UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::ContainerStatus;
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
/// On a pod of an index with backoffLimitPerIndex: the failures of that index before it.
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
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
    /// backoffLimitPerIndex: per job, when each index last failed.
    index_failure: Mutex<HashMap<String, HashMap<i32, Instant>>>,
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

/// Upstream's pod back-off after `failures` failures: 10 s doubling, at most 6 min.
fn backoff(failures: i32) -> Duration {
    BACKOFF_BASE.saturating_mul(1 << (failures - 1).clamp(0, 10)).min(BACKOFF_MAX)
}

fn status_condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_ && c.status == "True")
}

/// What a pod failure policy rule does with a failed pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyAction {
    FailJob,
    FailIndex,
    Ignore,
    Count,
}

/// The first terminated container (app containers, then init containers) with a
/// non-zero exit code that the requirement matches.
fn match_exit_codes<'a>(pod: &'a Pod, req: &PodFailurePolicyOnExitCodesRequirement) -> Option<(&'a str, i32)> {
    let status = pod.status.as_ref()?;
    let lists = [status.container_statuses.as_deref(), status.init_container_statuses.as_deref()];
    lists.into_iter().flatten().find_map(|list: &[ContainerStatus]| {
        list.iter().find_map(|c| {
            if req.container_name.as_deref().is_some_and(|n| n != c.name) {
                return None;
            }
            let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
            let listed = req.values.contains(&code);
            let hit = match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            (code != 0 && hit).then_some((c.name.as_str(), code))
        })
    })
}

/// Upstream's matchPodFailurePolicy: the rules in order, the first match wins;
/// no match counts the failure. FailJob comes with the message of the Failed condition.
pub fn match_pod_failure_policy(policy: &PodFailurePolicy, pod: &Pod) -> (PolicyAction, Option<String>) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        let action = match rule.action.as_str() {
            "FailJob" => PolicyAction::FailJob,
            "FailIndex" => PolicyAction::FailIndex,
            "Ignore" => PolicyAction::Ignore,
            "Count" => PolicyAction::Count,
            // Unknown actions are skipped, as the API asks of clients.
            _ => continue,
        };
        let matched = if let Some(req) = &rule.on_exit_codes {
            match_exit_codes(pod, req).map(|(container, code)| {
                format!("Container {container} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}", rule.action)
            })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
            conditions.iter().find(|c| patterns.iter().any(|p| p.type_ == c.type_ && p.status == c.status)).map(|c| {
                format!("Pod {ns}/{name} has condition {} matching {} rule at index {index}", c.type_, rule.action)
            })
        } else {
            None
        };
        if let Some(message) = matched {
            return (action, (action == PolicyAction::FailJob).then_some(message));
        }
    }
    (PolicyAction::Count, None)
}

fn index_failure_count(pod: &Pod) -> i32 {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(INDEX_FAILURE_COUNT)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Per index, the failures counted so far: the newest failed pod's count plus itself.
fn index_failures(pods: &[Arc<Pod>], policy: Option<&PodFailurePolicy>) -> HashMap<i32, i32> {
    let mut out: HashMap<i32, i32> = HashMap::new();
    for p in pods {
        let Some(i) = index_of(p) else { continue };
        let failed = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed");
        let deleted = p.metadata.deletion_timestamp.is_some() && !util::is_terminal(p) && policy.is_none();
        if !(failed || deleted) {
            continue;
        }
        if policy.is_some_and(|pol| match_pod_failure_policy(pol, p).0 == PolicyAction::Ignore) {
            continue;
        }
        let n = index_failure_count(p) + 1;
        let e = out.entry(i).or_insert(0);
        *e = (*e).max(n);
    }
    out
}

/// Upstream's matchSuccessPolicy for Indexed jobs: the first rule whose indexes
/// (or count) the succeeded indexes satisfy.
pub fn match_success_policy(policy: &SuccessPolicy, completions: i32, succeeded: &BTreeSet<i32>) -> Option<String> {
    if succeeded.is_empty() {
        return None;
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        let hit = if let Some(indexes) = &rule.succeeded_indexes {
            let required: BTreeSet<i32> = parse_indexes(indexes).into_iter().filter(|i| *i < completions).collect();
            if required.is_empty() {
                continue;
            }
            let done = required.intersection(succeeded).count() as i32;
            match rule.succeeded_count {
                Some(n) => done >= n,
                None => done == required.len() as i32,
            }
        } else {
            rule.succeeded_count.is_some_and(|n| succeeded.len() as i32 >= n)
        };
        if hit {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
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
        // Upstream compresses three or more consecutive indexes only.
        out.push(match end - start {
            0 => start.to_string(),
            1 => format!("{start},{end}"),
            _ => format!("{start}-{end}"),
        });
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
            index_failure: Mutex::new(HashMap::new()),
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
        let Some(mut job) = self.jobs.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            self.last_failure.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
            self.index_failure.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
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
        let policy = spec.pod_failure_policy.as_ref();
        // backoffLimitPerIndex only means something for Indexed jobs.
        let per_index = spec.backoff_limit_per_index.filter(|_| indexed);

        // 1. Count every pod that finished (or vanished into deletion) exactly once.
        let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        // UIDs whose pods no longer carry the finalizer were counted and released already.
        let still_tracked: HashSet<&str> = pods
            .iter()
            .filter(|p| p.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER))
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        for list in [&mut uncounted.succeeded, &mut uncounted.failed].into_iter().flatten() {
            list.retain(|u| still_tracked.contains(u.as_str()));
        }
        if status.uncounted_terminated_pods.is_some() {
            status.uncounted_terminated_pods = Some(uncounted.clone());
        }
        let mut counted_ok: HashSet<String> = uncounted.succeeded.iter().flatten().cloned().collect();
        let mut counted_failed: HashSet<String> = uncounted.failed.iter().flatten().cloned().collect();
        let mut completed = parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
        let mut failed_indexes = parse_indexes(status.failed_indexes.as_deref().unwrap_or(""));
        let mut new_failures = 0;
        // The first FailJob match of this sync, unless the job is already terminating.
        let mut policy_failure: Option<String> = None;
        let tracked = |p: &Pod| p.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER);
        let mut release: Vec<Arc<Pod>> = Vec::new();
        for p in pods.iter().filter(|p| tracked(p)) {
            let pod_uid = p.metadata.uid.clone().unwrap_or_default();
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            let terminal = util::is_terminal(p);
            let deleting = p.metadata.deletion_timestamp.is_some();
            // With a pod failure policy a pod only fails once it reaches the Failed
            // phase: the policy needs its exit codes and conditions.
            if !terminal && (!deleting || (policy.is_some() && !was_finished)) {
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
                let (action, message) = match policy {
                    Some(policy) if terminal => match_pod_failure_policy(policy, p),
                    _ => (PolicyAction::Count, None),
                };
                if action == PolicyAction::Ignore {
                    tracing::debug!(job = key, pod = ?p.metadata.name, "pod failure ignored by the pod failure policy");
                    continue;
                }
                status.failed = Some(status.failed.unwrap_or(0) + 1);
                new_failures += 1;
                counted_failed.insert(pod_uid.clone());
                uncounted.failed.get_or_insert_with(Vec::new).push(pod_uid);
                if let (Some(limit), Some(i)) = (per_index, index_of(p)) {
                    let failures = index_failure_count(p) + 1;
                    self.index_failure
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(key.to_string())
                        .or_default()
                        .insert(i, Instant::now());
                    if action == PolicyAction::FailIndex || failures > limit {
                        failed_indexes.insert(i);
                    }
                }
                if action == PolicyAction::FailJob && policy_failure.is_none() {
                    policy_failure = message;
                }
            }
        }
        if new_failures > 0 {
            self.last_failure.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), Instant::now());
        }
        if indexed {
            status.completed_indexes = Some(format_indexes(&completed));
        }
        if per_index.is_some() {
            status.failed_indexes = Some(format_indexes(&failed_indexes));
        }
        let terminating_target = has_condition(&job, "FailureTarget") || has_condition(&job, "SuccessCriteriaMet");
        if let Some(message) = policy_failure.as_deref().filter(|_| !terminating_target && !was_finished) {
            // Recorded with the counts, before the pods are released.
            set_condition(&mut status, "FailureTarget", "True", "PodFailurePolicy", message);
        }
        if !release.is_empty() {
            status.uncounted_terminated_pods = Some(uncounted.clone());
            // Later writes of this sync go on top of this one.
            if let Some(updated) = self.write_status(&job, &status, key).await? {
                job = Arc::new(updated);
            }
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
        let terminating =
            pods.iter().filter(|p| p.metadata.deletion_timestamp.is_some() && !util::is_terminal(p)).count();
        status.terminating = Some(terminating as i32);

        // 2. Suspend, fail or complete. Upstream (1.31+) first adds FailureTarget or
        // SuccessCriteriaMet, terminates the remaining pods, and adds Failed or
        // Complete with the same reason and message once none is left.
        if suspended
            && status_condition(&status, "FailureTarget").is_none()
            && !has_condition(&job, "SuccessCriteriaMet")
        {
            self.delete_pods(&pod_api, &active, key).await?;
            set_condition(&mut status, "Suspended", "True", "JobSuspended", "Job suspended");
            status.start_time = None;
            status.active = Some(0);
            return self.finish_status(&job, status, key).await;
        }
        if has_condition(&job, "Suspended") && !suspended {
            set_condition(&mut status, "Suspended", "False", "JobResumed", "Job resumed");
        }
        status.start_time.get_or_insert(Time(now));
        let start = status.start_time.as_ref().map(|t| t.0).unwrap_or(now);
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let all_indexes_done = |c: i32| (0..c).all(|i| completed.contains(&i) || failed_indexes.contains(&i));
        if status_condition(&status, "FailureTarget").is_none()
            && status_condition(&status, "SuccessCriteriaMet").is_none()
        {
            let failure: Option<(&str, String)> = if spec
                .max_failed_indexes
                .is_some_and(|m| failed_indexes.len() as i32 > m)
                && per_index.is_some()
            {
                Some((
                    "MaxFailedIndexesExceeded",
                    "Job has exceeded the specified maximal number of failed indexes".into(),
                ))
            } else if failed > backoff_limit {
                Some(("BackoffLimitExceeded", "Job has reached the specified backoff limit".into()))
            } else if spec.active_deadline_seconds.is_some_and(|d| start + jiff::SignedDuration::from_secs(d) <= now) {
                Some(("DeadlineExceeded", "Job was active longer than specified deadline".into()))
            } else if per_index.is_some()
                && !failed_indexes.is_empty()
                && all_indexes_done(spec.completions.unwrap_or(0))
            {
                Some(("FailedIndexes", "Job has failed indexes".into()))
            } else {
                None
            };
            let success: Option<(&str, String)> = if failure.is_some() {
                None
            } else if let Some(message) = spec
                .success_policy
                .as_ref()
                .filter(|_| indexed)
                .and_then(|sp| match_success_policy(sp, spec.completions.unwrap_or(0), &completed))
            {
                Some(("SuccessPolicy", message))
            } else {
                let done = match spec.completions {
                    Some(c) if indexed => (0..c).all(|i| completed.contains(&i)),
                    Some(c) => succeeded >= c,
                    None => succeeded > 0 && active.is_empty(),
                };
                done.then(|| ("CompletionsReached", "Reached expected number of succeeded pods".to_string()))
            };
            if let Some((reason, message)) = &failure {
                set_condition(&mut status, "FailureTarget", "True", reason, message);
            }
            if let Some((reason, message)) = &success {
                set_condition(&mut status, "SuccessCriteriaMet", "True", reason, message);
            }
        }
        if let Some(target) =
            status_condition(&status, "FailureTarget").or_else(|| status_condition(&status, "SuccessCriteriaMet"))
        {
            let failing = target.type_ == "FailureTarget";
            let (reason, message) =
                (target.reason.clone().unwrap_or_default(), target.message.clone().unwrap_or_default());
            self.delete_pods(&pod_api, &active, key).await?;
            status.active = Some(0);
            status.ready = Some(0);
            let uncounted_left = status
                .uncounted_terminated_pods
                .as_ref()
                .is_some_and(|u| u.succeeded.iter().chain(u.failed.iter()).any(|v| !v.is_empty()));
            // Finished once no pod of the job is left running or terminating.
            if active.is_empty() && terminating == 0 && !uncounted_left {
                if failing {
                    set_condition(&mut status, "Failed", "True", &reason, &message);
                    self.recorder.event(object_ref(job.as_ref()), EventType::Warning, &reason, &message);
                } else {
                    set_condition(&mut status, "Complete", "True", &reason, &message);
                    status.completion_time = Some(Time(now));
                    self.recorder.event(object_ref(job.as_ref()), EventType::Normal, "Completed", "Job completed");
                }
            }
            return self.finish_status(&job, status, key).await;
        }

        // 3. Run the right number of pods, after the back-off since the last failure.
        let mut requeue = None;
        if self.expectations.satisfied(key) {
            let remaining =
                |c: i32| (0..c).filter(|i| !completed.contains(i) && !failed_indexes.contains(i)).count() as i32;
            let want = match spec.completions {
                Some(c) if indexed => remaining(c).min(parallelism),
                Some(c) => (c - succeeded).min(parallelism),
                None if succeeded > 0 => active.len() as i32,
                None => parallelism,
            }
            .max(0) as usize;
            // podReplacementPolicy Failed (the default with a pod failure policy): a pod
            // still terminating keeps its place until it is Failed.
            let replace_when_failed = match spec.pod_replacement_policy.as_deref() {
                Some(p) => p == "Failed",
                None => policy.is_some(),
            };
            let terminating_pods: Vec<&Arc<Pod>> = pods
                .iter()
                .filter(|p| replace_when_failed && p.metadata.deletion_timestamp.is_some() && !util::is_terminal(p))
                .collect();
            let running = active.len() + terminating_pods.len();
            if running < want {
                let delay = if failed > 0 && per_index.is_none() { backoff(failed) } else { Duration::ZERO };
                let since = self.last_failure.lock().unwrap_or_else(|e| e.into_inner()).get(key).map(|t| t.elapsed());
                match since {
                    Some(since) if since < delay => requeue = Some(delay - since),
                    _ => {
                        let mut indexes = Vec::new();
                        if indexed {
                            let busy: HashSet<i32> = active
                                .iter()
                                .chain(terminating_pods.iter().copied())
                                .filter_map(|p| index_of(p))
                                .collect();
                            let c = spec.completions.unwrap_or(0);
                            let failures: HashMap<i32, i32> =
                                if per_index.is_some() { index_failures(&pods, policy) } else { HashMap::new() };
                            let last = self.index_failure.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned();
                            for i in (0..c)
                                .filter(|i| !completed.contains(i) && !failed_indexes.contains(i) && !busy.contains(i))
                            {
                                if indexes.len() >= want - running {
                                    break;
                                }
                                let n = failures.get(&i).copied().unwrap_or(0);
                                // backoffLimitPerIndex: each index backs off on its own failures.
                                let since = last.as_ref().and_then(|m| m.get(&i)).map(|t| t.elapsed());
                                if let Some(since) = since.filter(|s| n > 0 && *s < backoff(n)) {
                                    let left = backoff(n) - since;
                                    requeue = Some(requeue.map_or(left, |r: Duration| r.min(left)));
                                    continue;
                                }
                                indexes.push((Some(i), n));
                            }
                        } else {
                            indexes.resize(want - running, (None, 0));
                        }
                        self.create_pods(&job, &pod_api, &indexes, per_index.is_some(), key).await?;
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

    async fn write_status(&self, job: &Job, status: &JobStatus, key: &str) -> Result<Option<Job>, Error> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), job.metadata.namespace.as_deref().unwrap_or_default());
        let mut updated = job.clone();
        updated.status = Some(status.clone());
        match api
            .replace_status(job.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &updated)
            .await
        {
            Ok(updated) => Ok(Some(updated)),
            Err(e) if util::api_code(&e) == Some(404) => Ok(None),
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
                // Deleted by the job: release it right away, it is not a failure. The
                // deletion changed its resourceVersion: release the pod it returned.
                Ok(deleted) => {
                    if let Some(deleting) = deleted.left() {
                        self.remove_finalizer(api, &deleting, key).await?;
                    }
                }
                Err(e) if util::api_code(&e) == Some(404) => {
                    self.expectations.deletion_observed(key, &util::key_of(&p.metadata))
                }
                Err(e) => {
                    self.expectations.deletion_observed(key, &util::key_of(&p.metadata));
                    return Err(self.err("deleting pod", key)(e));
                }
            }
        }
        Ok(())
    }

    async fn create_pods(
        &self,
        job: &Job,
        api: &Api<Pod>,
        indexes: &[(Option<i32>, i32)],
        count_index_failures: bool,
        key: &str,
    ) -> Result<(), Error> {
        if indexes.is_empty() {
            return Ok(());
        }
        self.expectations.expect(key, indexes.len() as i64, []);
        let results = join_all(indexes.iter().map(|(i, failures)| {
            let mut pod = pod_for(job, *i);
            if count_index_failures && i.is_some() {
                pod.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(INDEX_FAILURE_COUNT.into(), failures.to_string());
            }
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
        assert_eq!(format_indexes(&set), "0-2,4,6,7");
        assert_eq!(parse_indexes("0-2,4,6,7"), set);
        assert_eq!(parse_indexes("0-2,4,6-7"), set);
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    fn failed_pod(exit_codes: &[(&str, i32)], conditions: &[(&str, &str)]) -> Pod {
        let statuses: Vec<serde_json::Value> = exit_codes
            .iter()
            .map(|(n, c)| {
                json!({"name": n, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": c}}})
            })
            .collect();
        let conds: Vec<serde_json::Value> = conditions.iter().map(|(t, s)| json!({"type": t, "status": s})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "containerStatuses": statuses, "conditions": conds},
        }))
        .unwrap()
    }

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    }

    #[test]
    fn pod_failure_policy_rules_apply_in_order_and_fail_job_says_why() {
        let pol = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [2]}},
        ]));
        let disrupted = failed_pod(&[("main", 42)], &[("DisruptionTarget", "True")]);
        assert_eq!(match_pod_failure_policy(&pol, &disrupted), (PolicyAction::Ignore, None));
        let bug = failed_pod(&[("side", 0), ("main", 42)], &[]);
        assert_eq!(
            match_pod_failure_policy(&pol, &bug),
            (
                PolicyAction::FailJob,
                Some("Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1".into())
            )
        );
        // 42 in another container is not the named one: NotIn [1, 2] counts it.
        assert_eq!(match_pod_failure_policy(&pol, &failed_pod(&[("side", 42)], &[])).0, PolicyAction::Count);
        assert_eq!(match_pod_failure_policy(&pol, &failed_pod(&[("side", 2)], &[])).0, PolicyAction::FailIndex);
        // Exit code 0 never matches, not even NotIn; no rule matched counts.
        assert_eq!(match_pod_failure_policy(&pol, &failed_pod(&[("main", 0)], &[])), (PolicyAction::Count, None));
        let on_condition =
            policy(json!([{"action": "FailJob", "onPodConditions": [{"type": "ConfigIssue", "status": "True"}]}]));
        assert_eq!(
            match_pod_failure_policy(&on_condition, &failed_pod(&[], &[("ConfigIssue", "True")])).1.as_deref(),
            Some("Pod ns/p has condition ConfigIssue matching FailJob rule at index 0")
        );
    }

    #[test]
    fn success_policy_rules_match_indexes_and_counts() {
        let sp: SuccessPolicy = serde_json::from_value(json!({"rules": [
            {"succeededIndexes": "0,2-3", "succeededCount": 2},
            {"succeededCount": 4},
        ]}))
        .unwrap();
        assert_eq!(match_success_policy(&sp, 10, &BTreeSet::from([0, 1])), None);
        assert_eq!(match_success_policy(&sp, 10, &BTreeSet::from([0, 3])).as_deref(), Some("Matched rules at index 0"));
        assert_eq!(
            match_success_policy(&sp, 10, &BTreeSet::from([1, 4, 5, 6])).as_deref(),
            Some("Matched rules at index 1")
        );
        let all: SuccessPolicy = serde_json::from_value(json!({"rules": [{"succeededIndexes": "1-2"}]})).unwrap();
        assert_eq!(match_success_policy(&all, 5, &BTreeSet::from([1])), None);
        assert!(match_success_policy(&all, 5, &BTreeSet::from([1, 2])).is_some());
    }
}
