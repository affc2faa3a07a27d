//! Command-line flags with upstream's names. `--config` takes a
//! `KubeSchedulerConfiguration` file; flags cover the common settings.

use std::path::PathBuf;

use component_base::serving::ServingFlags;
use component_base::{ClientFlags, LeaderElectionFlags};

#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "kube-scheduler",
    version = "v1.33.0+rustkube",
    about = "Binds every pending pod to the best feasible node."
)]
pub struct Options {
    /// A KubeSchedulerConfiguration file (kubescheduler.config.k8s.io/v1).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientFlags,
    #[command(flatten)]
    pub leader_election: LeaderElectionFlags,
    #[command(flatten)]
    pub serving: ServingFlags,
    /// Log verbosity (upstream's klog levels; 2 and up logs each placement).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
    /// Who may read /metrics: delegated authentication and authorization through the apiserver.
    #[command(flatten)]
    pub auth: component_base::DelegatedAuthFlags,
    /// Accepted for compatibility; no feature gates change behaviour here.
    #[arg(long = "feature-gates")]
    pub feature_gates: Option<String>,
    /// Accepted for compatibility (no profiling endpoints).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub profiling: Option<bool>,
    /// The most time a pod stays in the unschedulable set without a cluster event before it is retried.
    #[arg(long = "pod-max-in-unschedulable-pods-duration", value_parser = component_base::duration_flag)]
    pub pod_max_in_unschedulable_pods_duration: Option<std::time::Duration>,
}
