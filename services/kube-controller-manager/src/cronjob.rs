//! The CronJob controller: creates a Job at each scheduled time (in
//! `spec.timeZone`, UTC by default), honouring `startingDeadlineSeconds`,
//! `concurrencyPolicy` (Allow/Forbid/Replace) and `suspend`; keeps
//! status.active/lastScheduleTime/lastSuccessfulTime and trims finished
//! jobs to the successful/failed history limits.

use std::sync::Arc;
use std::time::Duration;

use component_base::events::{object_ref, EventType, Recorder};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::cron::Schedule;
use crate::informer::{Change, Factory};
use crate::job::finished;
use crate::queue::WorkQueue;
use crate::util;

pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream gives up enumerating after this many missed times.
const MAX_MISSED: usize = 100;

#[derive(Debug, thiserror::Error)]
#[error("{action} for cronjob {cronjob}: {source}")]
pub struct Error {
    action: &'static str,
    cronjob: String,
    #[source]
    source: kube::Error,
}

pub struct CronJobController {
    client: kube::Client,
    recorder: Recorder,
    cron_jobs: Store<CronJob>,
    jobs: Store<Job>,
    queue: WorkQueue,
}

fn job_succeeded(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Complete" && c.status == "True"))
}

impl CronJobController {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue) -> Arc<Self> {
        let cjs = factory.cron_jobs();
        let jobs = factory.jobs();
        let q = queue.clone();
        cjs.add_handler(move |c| {
            if let Change::Upsert { new, .. } = c {
                q.add(util::key_of(&new.metadata));
            }
        });
        let q = queue.clone();
        jobs.add_handler(move |c| {
            let job = match c {
                Change::Upsert { new, .. } => new,
                Change::Deleted(old) => old,
            };
            if let Some(r) = util::controller_ref(&job.metadata).filter(|r| r.kind == "CronJob") {
                q.add(format!("{}/{}", job.metadata.namespace.as_deref().unwrap_or_default(), r.name));
            }
        });
        Arc::new(CronJobController {
            recorder: Recorder::new(client.clone(), "cronjob-controller", None),
            client,
            cron_jobs: cjs.store(),
            jobs: jobs.store(),
            queue,
        })
    }

    pub fn run(self: &Arc<Self>, workers: usize) {
        let me = self.clone();
        self.queue.run_workers(workers, move |key| {
            let me = me.clone();
            async move { me.sync(&key).await }
        });
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = util::split_key(key);
        let Some(cj) = self.cron_jobs.get(&ObjectRef::new(name).within(ns)) else { return Ok(None) };
        if cj.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let err = |action| {
            let cronjob = key.to_string();
            move |source| Error { action, cronjob, source }
        };
        let spec = cj.spec.clone().unwrap_or_default();
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let job_api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let mut jobs: Vec<Arc<Job>> = self
            .jobs
            .state()
            .into_iter()
            .filter(|j| j.metadata.namespace.as_deref() == Some(ns))
            .filter(|j| util::controller_ref(&j.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        jobs.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let mut status = cj.status.clone().unwrap_or_default();

        // Active jobs and the last success.
        let active: Vec<&Arc<Job>> =
            jobs.iter().filter(|j| !finished(j) && j.metadata.deletion_timestamp.is_none()).collect();
        status.active = (!active.is_empty()).then(|| active.iter().map(|j| object_ref(j.as_ref())).collect());
        for j in jobs.iter().filter(|j| job_succeeded(j)) {
            let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
            if done.as_ref().map(|t| t.0) > status.last_successful_time.as_ref().map(|t| t.0) {
                status.last_successful_time = done;
            }
        }

        // History limits.
        let successful: Vec<&Arc<Job>> = jobs.iter().filter(|j| job_succeeded(j)).collect();
        let failed: Vec<&Arc<Job>> = jobs.iter().filter(|j| finished(j) && !job_succeeded(j)).collect();
        for (list, limit) in [
            (successful, spec.successful_jobs_history_limit.unwrap_or(3)),
            (failed, spec.failed_jobs_history_limit.unwrap_or(1)),
        ] {
            let excess = list.len().saturating_sub(limit.max(0) as usize);
            for j in list.into_iter().take(excess) {
                self.delete_job(&job_api, j).await.map_err(err("deleting an old job"))?;
            }
        }

        let tz = match spec.time_zone.as_deref() {
            None | Some("") | Some("UTC") | Some("Etc/UTC") => jiff::tz::TimeZone::UTC,
            Some(name) => match jiff::tz::TimeZone::get(name) {
                Ok(tz) => tz,
                Err(e) => {
                    self.recorder.event(
                        object_ref(cj.as_ref()),
                        EventType::Warning,
                        "UnknownTimeZone",
                        &format!("invalid timeZone {name:?}: {e}"),
                    );
                    return self.write_status(&cj, status).await.map_err(err("updating status"));
                }
            },
        };
        let schedule = match Schedule::parse(&spec.schedule) {
            Ok(s) => s,
            Err(e) => {
                self.recorder.event(object_ref(cj.as_ref()), EventType::Warning, "UnparseableSchedule", &e.to_string());
                return self.write_status(&cj, status).await.map_err(err("updating status"));
            }
        };
        let now = jiff::Timestamp::now();
        let requeue_at = |after: jiff::Timestamp| {
            schedule.next(after, &tz).map(|n| {
                Duration::try_from(n.duration_since(jiff::Timestamp::now())).unwrap_or_default()
                    + Duration::from_millis(100)
            })
        };
        if spec.suspend == Some(true) {
            self.write_status(&cj, status).await.map_err(err("updating status"))?;
            return Ok(None);
        }

        // The most recent scheduled time not yet run.
        let since =
            status.last_schedule_time.as_ref().or(cj.metadata.creation_timestamp.as_ref()).map(|t| t.0).unwrap_or(now);
        let mut due = None;
        let mut missed = 0;
        let mut t = since;
        while let Some(next) = schedule.next(t, &tz).filter(|n| *n <= now) {
            due = Some(next);
            t = next;
            missed += 1;
            if missed > MAX_MISSED {
                self.recorder.event(
                    object_ref(cj.as_ref()),
                    EventType::Warning,
                    "TooManyMissedTimes",
                    "too many missed start times; check clock skew",
                );
                due = schedule.next(now - jiff::SignedDuration::from_secs(61), &tz).filter(|n| *n <= now);
                break;
            }
        }
        let Some(scheduled) = due else {
            self.write_status(&cj, status).await.map_err(err("updating status"))?;
            return Ok(requeue_at(now));
        };
        if let Some(deadline) = spec.starting_deadline_seconds {
            if scheduled + jiff::SignedDuration::from_secs(deadline) < now {
                self.recorder.event(
                    object_ref(cj.as_ref()),
                    EventType::Warning,
                    "MissSchedule",
                    &format!("Missed scheduled time to start a job: {scheduled}"),
                );
                self.write_status(&cj, status).await.map_err(err("updating status"))?;
                return Ok(requeue_at(now));
            }
        }
        match spec.concurrency_policy.as_deref() {
            Some("Forbid") if !active.is_empty() => {
                self.write_status(&cj, status).await.map_err(err("updating status"))?;
                // The running job's end requeues this; so does the next time.
                return Ok(requeue_at(now));
            }
            Some("Replace") => {
                for j in &active {
                    self.delete_job(&job_api, j).await.map_err(err("replacing an active job"))?;
                }
                status.active = None;
            }
            _ => {}
        }

        let job = job_for(&cj, scheduled);
        let job_name = job.metadata.name.clone().unwrap_or_default();
        match job_api.create(&PostParams::default(), &job).await {
            Ok(created) => {
                self.recorder.event(
                    object_ref(cj.as_ref()),
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created job {job_name}"),
                );
                status.active.get_or_insert_with(Vec::new).push(object_ref(&created));
            }
            // Already created for this time (e.g. before a restart).
            Err(e) if util::api_code(&e) == Some(409) => {}
            Err(e) => return Err(err("creating a job")(e)),
        }
        status.last_schedule_time = Some(Time(scheduled));
        self.write_status(&cj, status).await.map_err(err("updating status"))?;
        Ok(requeue_at(now))
    }

    async fn delete_job(&self, api: &Api<Job>, job: &Job) -> Result<(), kube::Error> {
        match api.delete(job.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(e) if util::api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn write_status(
        &self,
        cj: &CronJob,
        status: k8s_openapi::api::batch::v1::CronJobStatus,
    ) -> Result<Option<Duration>, kube::Error> {
        if cj.status.as_ref() == Some(&status) || (cj.status.is_none() && status == Default::default()) {
            return Ok(None);
        }
        let api: Api<CronJob> =
            Api::namespaced(self.client.clone(), cj.metadata.namespace.as_deref().unwrap_or_default());
        let mut updated = cj.clone();
        updated.status = Some(status);
        match api
            .replace_status(cj.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(None),
            Err(e) if util::api_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The Job for one scheduled time: named `<cronjob>-<minutes since the epoch>`, as upstream.
pub fn job_for(cj: &CronJob, scheduled: jiff::Timestamp) -> Job {
    let template = cj.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let tm = template.metadata.unwrap_or_default();
    let mut annotations = tm.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), scheduled.to_string());
    Job {
        metadata: ObjectMeta {
            name: Some(format!("{}-{}", cj.metadata.name.as_deref().unwrap_or_default(), scheduled.as_second() / 60)),
            namespace: cj.metadata.namespace.clone(),
            labels: tm.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![util::new_controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}
