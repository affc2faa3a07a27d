//! kube-scheduler: watches pods without a node and binds each to the best
//! feasible node through `pods/binding`, talking only to the apiserver.
//! Modules mirror upstream's scheduler: the cache of nodes and placed pods,
//! the scheduling queue, the framework's plugins, preemption, and the loop.
#![forbid(unsafe_code)]

pub mod cache;
pub mod config;
pub mod metrics;
pub mod options;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod scheduler;

use std::sync::Arc;

use anyhow::Context;
use component_base::LeaderElector;

use crate::options::Options;

/// Loads the configuration, starts serving health and metrics, and schedules
/// while holding the leader Lease (or always, with `--leader-elect=false`).
pub async fn run(mut options: Options) -> anyhow::Result<()> {
    let mut settings = config::Settings::default();
    if let Some(path) = &options.config {
        let file = config::load(path)?;
        settings = file.settings().with_context(|| format!("--config {}", path.display()))?;
        if let Some(cc) = &file.client_connection {
            if options.client.kubeconfig.is_none() {
                options.client.kubeconfig = cc.kubeconfig.clone().filter(|k| !k.is_empty()).map(Into::into);
            }
        }
        if let Some(le) = &file.leader_election {
            apply_leader_election(&mut options, le)?;
        }
    }
    if let Some(d) = options.pod_max_in_unschedulable_pods_duration {
        settings.max_in_unschedulable_pods = d;
    }
    let client = options.client.client().await?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(metrics::Metrics::new(&mut registry));
    let registry = Arc::new(registry);
    let serving = options.serving.clone();
    let auth = Arc::new(component_base::DelegatedAuth::new(&options.auth, &options.client, &client).await?);
    let server = tokio::spawn(async move {
        component_base::serving::serve_authorized(&serving, 10259, "kube-scheduler", registry, Some(auth)).await
    });
    let scheduler = scheduler::Scheduler::new(client.clone(), &settings, metrics);
    let work = async move {
        if options.leader_election.leader_elect {
            LeaderElector::new(client, &options.leader_election, "kube-scheduler")?.run(scheduler.run()).await
        } else {
            scheduler.run().await
        }
    };
    tokio::select! {
        r = work => r,
        r = server => r.context("health server")?,
        _ = component_base::shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

fn apply_leader_election(options: &mut Options, le: &config::LeaderElection) -> anyhow::Result<()> {
    let flags = &mut options.leader_election;
    if let Some(v) = le.leader_elect {
        flags.leader_elect = v;
    }
    let parse = |s: &Option<String>, what: &str| -> anyhow::Result<Option<std::time::Duration>> {
        s.as_deref()
            .map(|d| apimachinery::duration::parse(d).with_context(|| format!("leaderElection.{what}")))
            .transpose()
    };
    if let Some(d) = parse(&le.lease_duration, "leaseDuration")? {
        flags.lease_duration = d;
    }
    if let Some(d) = parse(&le.renew_deadline, "renewDeadline")? {
        flags.renew_deadline = d;
    }
    if let Some(d) = parse(&le.retry_period, "retryPeriod")? {
        flags.retry_period = d;
    }
    if let Some(n) = &le.resource_name {
        flags.resource_name = Some(n.clone());
    }
    if let Some(n) = &le.resource_namespace {
        flags.resource_namespace = n.clone();
    }
    Ok(())
}
