//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` does it: a candidate takes the Lease when it is absent or
//! its holder has not renewed it for the lease duration (measured on the
//! candidate's own clock from when it last saw the record change, so clock
//! skew between hosts does not matter); the leader renews every retry period
//! and gives up when it could not renew within the renew deadline. Every
//! write is an update on the Lease's resourceVersion, so two candidates can
//! never both win.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// Upstream's leader-election flags.
#[derive(clap::Args, Debug, Clone)]
pub struct LeaderElectionFlags {
    /// Run only while holding the leader Lease.
    #[arg(long = "leader-elect", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// How long a non-leader waits after the last observed renewal before taking over.
    #[arg(long = "leader-elect-lease-duration", default_value = "15s", value_parser = crate::duration_flag)]
    pub lease_duration: Duration,
    /// How long the leader keeps retrying a renewal before it gives up leading.
    #[arg(long = "leader-elect-renew-deadline", default_value = "10s", value_parser = crate::duration_flag)]
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    #[arg(long = "leader-elect-retry-period", default_value = "2s", value_parser = crate::duration_flag)]
    pub retry_period: Duration,
    /// Only `leases` is supported (upstream's only lock since v1.24).
    #[arg(long = "leader-elect-resource-lock", default_value = "leases", value_parser = ["leases"])]
    pub resource_lock: String,
    /// The Lease's name; each component sets its own default.
    #[arg(long = "leader-elect-resource-name")]
    pub resource_name: Option<String>,
    #[arg(long = "leader-elect-resource-namespace", default_value = "kube-system")]
    pub resource_namespace: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderElectionError {
    #[error("leader election lost: the Lease {0} could not be renewed within the renew deadline")]
    Lost(String),
    #[error("invalid leader election settings: {0}")]
    Invalid(String),
}

/// One candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
    /// The last record seen and when it was first seen on this clock.
    observed: Option<(Observed, Instant)>,
}

#[derive(Clone, PartialEq, Debug)]
struct Observed {
    holder: String,
    renew_time: Option<MicroTime>,
    transitions: i32,
}

impl LeaderElector {
    pub fn new(
        client: kube::Client,
        flags: &LeaderElectionFlags,
        default_name: &str,
    ) -> Result<LeaderElector, LeaderElectionError> {
        if flags.lease_duration <= flags.renew_deadline {
            return Err(LeaderElectionError::Invalid("leaseDuration must be greater than renewDeadline".into()));
        }
        if flags.renew_deadline <= flags.retry_period {
            return Err(LeaderElectionError::Invalid("renewDeadline must be greater than retryPeriod".into()));
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
        Ok(LeaderElector {
            api: Api::namespaced(client, &flags.resource_namespace),
            name: flags.resource_name.clone().unwrap_or_else(|| default_name.to_string()),
            identity: format!("{host}_{}", uuid::Uuid::new_v4()),
            lease_duration: flags.lease_duration,
            renew_deadline: flags.renew_deadline,
            retry_period: flags.retry_period,
            observed: None,
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&mut self) {
        tracing::info!(lease = %self.name, identity = %self.identity, "attempting to acquire the leader lease");
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired the leader lease");
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(lease = %self.name, "leader election: {e}"),
            }
            tokio::time::sleep(jittered(self.retry_period)).await;
        }
    }

    /// Renews the Lease every retry period; returns when leadership is lost.
    pub async fn keep_renewing(&mut self) -> LeaderElectionError {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.retry_period).await;
            let attempt = tokio::time::timeout(self.renew_deadline, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(true)) => last_renewal = Instant::now(),
                Ok(Ok(false)) => return LeaderElectionError::Lost(self.name.clone()),
                Ok(Err(e)) => tracing::warn!(lease = %self.name, "renewing the leader lease: {e}"),
                Err(_) => tracing::warn!(lease = %self.name, "renewing the leader lease timed out"),
            }
            if last_renewal.elapsed() >= self.renew_deadline {
                return LeaderElectionError::Lost(self.name.clone());
            }
        }
    }

    /// Runs `work` while leading: acquires first, and returns an error as soon
    /// as leadership is lost (the caller exits, as upstream's components do).
    pub async fn run<F>(mut self, work: F) -> anyhow::Result<()>
    where
        F: std::future::Future<Output = anyhow::Result<()>>,
    {
        self.acquire().await;
        tokio::select! {
            result = work => {
                self.release().await;
                result
            }
            lost = self.keep_renewing() => Err(lost.into()),
        }
    }

    /// Gives the Lease up so that a standby takes over at once.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else { return };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        if let Err(e) = self.api.replace(&self.name, &PostParams::default(), &lease).await {
            tracing::warn!(lease = %self.name, "releasing the leader lease: {e}");
        }
    }

    /// One round of client-go's `tryAcquireOrRenew`: true when this candidate holds the Lease after it.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now_time = now();
        let duration_secs = self.lease_duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now_time.clone()),
                    renew_time: Some(now_time),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let record = Observed {
            holder: spec.holder_identity.clone().unwrap_or_default(),
            renew_time: spec.renew_time.clone(),
            transitions: spec.lease_transitions.unwrap_or(0),
        };
        let seen_at = match &self.observed {
            Some((old, at)) if *old == record => *at,
            _ => Instant::now(),
        };
        self.observed = Some((record.clone(), seen_at));
        let held_by_me = record.holder == self.identity;
        let holder_duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(duration_secs).max(0) as u64);
        if !held_by_me && !record.holder.is_empty() && seen_at.elapsed() < holder_duration {
            return Ok(false);
        }
        if !held_by_me {
            spec.acquire_time = Some(now_time.clone());
            spec.lease_transitions = Some(record.transitions + 1);
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(duration_secs);
        spec.renew_time = Some(now_time);
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// client-go waits retryPeriod × (1 + rand(0..1.2)) between acquisition attempts.
fn jittered(d: Duration) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|t| t.subsec_nanos()).unwrap_or(0);
    d + d.mul_f64(f64::from(nanos % 1000) / 1000.0 * 1.2)
}
