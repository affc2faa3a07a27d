//! Upstream's kube-controller-manager flags (the ones this implementation
//! acts on, plus a few accepted for compatibility with kubeadm manifests).

use std::time::Duration;

use component_base::{duration_flag, ClientFlags, LeaderElectionFlags};

/// Every controller this binary knows, by upstream's current name, with the
/// older short alias `--controllers` also accepts.
pub const CONTROLLERS: &[(&str, &str)] = &[
    ("replicaset-controller", "replicaset"),
    ("replicationcontroller-controller", "replicationcontroller"),
    ("resourcequota-controller", "resourcequota"),
    ("deployment-controller", "deployment"),
    ("garbage-collector-controller", "garbagecollector"),
    ("namespace-controller", "namespace"),
    ("serviceaccount-controller", "serviceaccount"),
    ("root-ca-certificate-publisher-controller", "root-ca-cert-publisher"),
    ("endpointslice-controller", "endpointslice"),
    ("endpoints-controller", "endpoint"),
    ("endpointslice-mirroring-controller", "endpointslicemirroring"),
    ("node-ipam-controller", "nodeipam"),
    ("node-lifecycle-controller", "nodelifecycle"),
    ("pod-garbage-collector-controller", "podgc"),
    ("job-controller", "job"),
    ("cronjob-controller", "cronjob"),
    ("ttl-after-finished-controller", "ttl-after-finished"),
    ("disruption-controller", "disruption"),
    ("daemonset-controller", "daemonset"),
    ("statefulset-controller", "statefulset"),
    ("persistentvolume-binder-controller", "persistentvolume-binder"),
    ("ephemeral-volume-controller", "ephemeral-volume"),
    ("clusterrole-aggregation-controller", "clusterrole-aggregation"),
    ("horizontal-pod-autoscaler-controller", "horizontalpodautoscaling"),
];

#[derive(clap::Parser, Debug, Clone)]
#[command(name = "kube-controller-manager", about = "Runs the Kubernetes control loops.")]
pub struct Options {
    #[command(flatten)]
    pub client: ClientFlags,
    #[command(flatten)]
    pub leader_election: LeaderElectionFlags,
    #[command(flatten)]
    pub serving: component_base::serving::ServingFlags,

    /// Controllers to enable: `*` for all, `foo` to enable, `-foo` to disable.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,

    /// CIDR range for pods in the cluster (node IPAM).
    #[arg(long = "cluster-cidr", default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// Whether node IPAM allocates a spec.podCIDR to every node.
    #[arg(long = "allocate-node-cidrs", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allocate_node_cidrs: bool,
    /// Mask size of each node's pod CIDR.
    #[arg(long = "node-cidr-mask-size", default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// How long a node may go without renewing its Lease before it is marked unhealthy.
    #[arg(long = "node-monitor-grace-period", default_value = "40s", value_parser = duration_flag)]
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked.
    #[arg(long = "node-monitor-period", default_value = "5s", value_parser = duration_flag)]
    pub node_monitor_period: Duration,
    /// Nodes per second whose pods are evicted (NoExecute-tainted) in a healthy zone.
    #[arg(long = "node-eviction-rate", default_value_t = 0.1)]
    pub node_eviction_rate: f64,
    /// The same in a partially disrupted zone larger than --large-cluster-size-threshold.
    #[arg(long = "secondary-node-eviction-rate", default_value_t = 0.01)]
    pub secondary_node_eviction_rate: f64,
    /// Share of not Ready nodes (at least 3) that makes a zone partially disrupted.
    #[arg(long = "unhealthy-zone-threshold", default_value_t = 0.55)]
    pub unhealthy_zone_threshold: f64,
    /// Zones larger than this keep evicting (at the secondary rate) when partially disrupted.
    #[arg(long = "large-cluster-size-threshold", default_value_t = 50)]
    pub large_cluster_size_threshold: usize,
    /// CA bundle published as `kube-root-ca.crt` in every namespace.
    #[arg(long = "root-ca-file")]
    pub root_ca_file: Option<String>,
    /// Accepted; the token controller is not implemented here.
    #[arg(long = "service-account-private-key-file")]
    pub service_account_private_key_file: Option<String>,
    /// Accepted; every controller uses the --kubeconfig credentials.
    #[arg(long = "use-service-account-credentials", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub use_service_account_credentials: bool,

    #[arg(long = "concurrent-replicaset-syncs", default_value_t = 5)]
    pub concurrent_replicaset_syncs: usize,
    #[arg(long = "concurrent-rc-syncs", default_value_t = 5)]
    pub concurrent_rc_syncs: usize,
    #[arg(long = "concurrent-resource-quota-syncs", default_value_t = 5)]
    pub concurrent_resource_quota_syncs: usize,
    /// How often every quota's usage is recalculated.
    #[arg(long = "resource-quota-sync-period", default_value = "5m", value_parser = duration_flag)]
    pub resource_quota_sync_period: Duration,
    #[arg(long = "concurrent-deployment-syncs", default_value_t = 5)]
    pub concurrent_deployment_syncs: usize,
    #[arg(long = "concurrent-job-syncs", default_value_t = 5)]
    pub concurrent_job_syncs: usize,
    #[arg(long = "concurrent-cron-job-syncs", default_value_t = 5)]
    pub concurrent_cron_job_syncs: usize,
    #[arg(long = "concurrent-ttl-after-finished-syncs", default_value_t = 5)]
    pub concurrent_ttl_after_finished_syncs: usize,
    #[arg(long = "concurrent-daemonset-syncs", default_value_t = 2)]
    pub concurrent_daemonset_syncs: usize,
    #[arg(long = "concurrent-statefulset-syncs", default_value_t = 5)]
    pub concurrent_statefulset_syncs: usize,
    #[arg(long = "mirroring-concurrent-service-endpoint-syncs", default_value_t = 5)]
    pub mirroring_concurrent_service_endpoint_syncs: usize,
    #[arg(long = "concurrent-ephemeralvolume-syncs", default_value_t = 5)]
    pub concurrent_ephemeralvolume_syncs: usize,
    #[arg(long = "concurrent-gc-syncs", default_value_t = 20)]
    pub concurrent_gc_syncs: usize,
    #[arg(long = "concurrent-namespace-syncs", default_value_t = 10)]
    pub concurrent_namespace_syncs: usize,
    #[arg(long = "concurrent-service-endpoint-syncs", default_value_t = 5)]
    pub concurrent_service_endpoint_syncs: usize,
    #[arg(long = "concurrent-serviceaccount-token-syncs", default_value_t = 5)]
    pub concurrent_serviceaccount_token_syncs: usize,
    #[arg(long = "concurrent-horizontal-pod-autoscaler-syncs", default_value_t = 5)]
    pub concurrent_horizontal_pod_autoscaler_syncs: usize,
    /// How often every HorizontalPodAutoscaler is reconciled.
    #[arg(long = "horizontal-pod-autoscaler-sync-period", default_value = "15s", value_parser = duration_flag)]
    pub horizontal_pod_autoscaler_sync_period: Duration,
    /// The relative metric change under which the autoscaler does not scale.
    #[arg(long = "horizontal-pod-autoscaler-tolerance", default_value_t = 0.1)]
    pub horizontal_pod_autoscaler_tolerance: f64,
    /// Scale-downs take the highest recommendation of this window (HPAs without `behavior`).
    #[arg(long = "horizontal-pod-autoscaler-downscale-stabilization", default_value = "5m0s", value_parser = duration_flag)]
    pub horizontal_pod_autoscaler_downscale_stabilization: Duration,
    /// After a pod starts, cpu samples are skipped until a full window after it turned ready, for this long.
    #[arg(long = "horizontal-pod-autoscaler-cpu-initialization-period", default_value = "5m0s", value_parser = duration_flag)]
    pub horizontal_pod_autoscaler_cpu_initialization_period: Duration,
    /// A pod not ready within this time of starting is taken as never having been ready.
    #[arg(long = "horizontal-pod-autoscaler-initial-readiness-delay", default_value = "30s", value_parser = duration_flag)]
    pub horizontal_pod_autoscaler_initial_readiness_delay: Duration,
    /// Deletion of terminated pods starts above this many (0 turns pod GC off).
    #[arg(long = "terminated-pod-gc-threshold", default_value_t = 12500)]
    pub terminated_pod_gc_threshold: i32,

    /// Who may read /metrics: delegated authentication and authorization through the apiserver.
    #[command(flatten)]
    pub auth: component_base::DelegatedAuthFlags,

    // Accepted for compatibility with kubeadm's static pod manifest.
    #[arg(long = "cluster-name", default_value = "kubernetes")]
    pub cluster_name: String,
    #[arg(long = "cluster-signing-cert-file")]
    pub cluster_signing_cert_file: Option<String>,
    #[arg(long = "cluster-signing-key-file")]
    pub cluster_signing_key_file: Option<String>,
    #[arg(long = "service-cluster-ip-range")]
    pub service_cluster_ip_range: Option<String>,
    #[arg(long = "feature-gates")]
    pub feature_gates: Option<String>,

    /// Log verbosity, as upstream's klog `-v`.
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub v: u8,
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not in the list of known controllers")]
pub struct UnknownController(pub String);

impl Options {
    /// Whether `name` (upstream's full controller name) is enabled by `--controllers`.
    pub fn enabled(&self, name: &str) -> bool {
        let alias = CONTROLLERS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a).unwrap_or(name);
        let mut star = false;
        for c in &self.controllers {
            let c = c.trim();
            if c == name || c == alias {
                return true;
            }
            if c.strip_prefix('-').is_some_and(|c| c == name || c == alias) {
                return false;
            }
            star |= c == "*";
        }
        star
    }

    /// Rejects names in `--controllers` this binary does not know.
    pub fn validate(&self) -> Result<(), UnknownController> {
        for c in &self.controllers {
            let bare = c.trim().trim_start_matches('-');
            if bare != "*" && !CONTROLLERS.iter().any(|(n, a)| *n == bare || *a == bare) {
                return Err(UnknownController(bare.to_string()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn star_enables_all_but_the_excluded() {
        let o = Options::parse_from(["kcm", "--controllers=*,-deployment"]);
        assert!(o.enabled("replicaset-controller"));
        assert!(!o.enabled("deployment-controller"));
        o.validate().unwrap();
    }

    #[test]
    fn only_named_controllers_run_without_star() {
        let o = Options::parse_from(["kcm", "--controllers", "replicaset-controller"]);
        assert!(o.enabled("replicaset-controller"));
        assert!(!o.enabled("garbage-collector-controller"));
    }

    #[test]
    fn horizontal_pod_autoscaler_flags_take_upstream_names_and_durations() {
        let o = Options::parse_from([
            "kcm",
            "--controllers=horizontalpodautoscaling",
            "--horizontal-pod-autoscaler-sync-period=2s",
            "--horizontal-pod-autoscaler-tolerance=0.2",
            "--horizontal-pod-autoscaler-downscale-stabilization=1m30s",
        ]);
        o.validate().unwrap();
        assert!(o.enabled("horizontal-pod-autoscaler-controller"));
        assert_eq!(o.horizontal_pod_autoscaler_sync_period, Duration::from_secs(2));
        assert_eq!(o.horizontal_pod_autoscaler_downscale_stabilization, Duration::from_secs(90));
        assert_eq!(o.horizontal_pod_autoscaler_tolerance, 0.2);
        let d = Options::parse_from(["kcm"]);
        assert_eq!(d.horizontal_pod_autoscaler_sync_period, Duration::from_secs(15));
        assert_eq!(d.horizontal_pod_autoscaler_cpu_initialization_period, Duration::from_secs(300));
        assert_eq!(d.horizontal_pod_autoscaler_initial_readiness_delay, Duration::from_secs(30));
        assert!(d.enabled("horizontal-pod-autoscaler-controller"));
    }

    #[test]
    fn unknown_controllers_and_flags_are_errors() {
        assert!(Options::parse_from(["kcm", "--controllers=bogus"]).validate().is_err());
        assert!(Options::try_parse_from(["kcm", "--no-such-flag"]).is_err());
    }
}
