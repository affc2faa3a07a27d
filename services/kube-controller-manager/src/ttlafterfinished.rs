//! TTL-after-finished: deletes a finished Job (with its pods, in the
//! foreground) `ttlSecondsAfterFinished` after it completed or failed.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::informer::{Change, Factory};
use crate::job::finished;
use crate::queue::WorkQueue;
use crate::util;

#[derive(Debug, thiserror::Error)]
#[error("deleting expired job {job}: {source}")]
pub struct Error {
    job: String,
    #[source]
    source: kube::Error,
}

pub struct TtlAfterFinishedController {
    client: kube::Client,
    jobs: Store<Job>,
    queue: WorkQueue,
}

/// When the job finished: its Complete or Failed condition's transition time.
fn finish_time(job: &Job) -> Option<jiff::Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

fn expires_at(job: &Job) -> Option<jiff::Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    if job.metadata.deletion_timestamp.is_some() || !finished(job) {
        return None;
    }
    Some(finish_time(job).unwrap_or_else(jiff::Timestamp::now) + jiff::SignedDuration::from_secs(i64::from(ttl)))
}

impl TtlAfterFinishedController {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue) -> Arc<Self> {
        let jobs = factory.jobs();
        let q = queue.clone();
        jobs.add_handler(move |c| {
            if let Change::Upsert { new, .. } = c {
                if expires_at(new).is_some() {
                    q.add(util::key_of(&new.metadata));
                }
            }
        });
        Arc::new(TtlAfterFinishedController { client, jobs: jobs.store(), queue })
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
        let Some(job) = self.jobs.get(&ObjectRef::new(name).within(ns)) else { return Ok(None) };
        let Some(at) = expires_at(&job) else { return Ok(None) };
        let left = at.duration_since(jiff::Timestamp::now());
        if left.is_positive() {
            return Ok(Some(Duration::try_from(left).unwrap_or_default() + Duration::from_millis(50)));
        }
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let dp = DeleteParams {
            propagation_policy: Some(kube::api::PropagationPolicy::Foreground),
            preconditions: Some(Preconditions { uid: job.metadata.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        tracing::info!(job = key, "deleting a finished job whose TTL expired");
        match api.delete(name, &dp).await {
            Ok(_) => Ok(None),
            Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => Ok(None),
            Err(source) => Err(Error { job: key.to_string(), source }),
        }
    }
}
