//! Command-line flags with upstream's names (the ones an operator's unit file
//! uses); `--config` takes a KubeletConfiguration file for the same settings.

use std::path::PathBuf;
use std::time::Duration;

use component_base::duration_flag;

#[derive(clap::Parser, Debug, Clone)]
#[command(name = "kubelet", version = "v1.33.0+rustkube", about = "The node agent: runs the pods bound to this node.")]
pub struct Options {
    /// A KubeletConfiguration file (kubelet.config.k8s.io/v1beta1).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Credentials and address of the apiserver.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Accepted for compatibility (TLS bootstrap is not implemented: use --kubeconfig).
    #[arg(long = "bootstrap-kubeconfig")]
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// The node's name instead of the hostname.
    #[arg(long = "hostname-override")]
    pub hostname_override: Option<String>,
    /// The node's InternalIP (default: the address of the default route's interface).
    #[arg(long = "node-ip")]
    pub node_ip: Option<String>,
    /// The CRI socket.
    #[arg(long = "container-runtime-endpoint", default_value = "unix:///run/containerd/containerd.sock")]
    pub container_runtime_endpoint: String,
    /// Accepted for compatibility (the CRI image service is the runtime's).
    #[arg(long = "image-service-endpoint")]
    pub image_service_endpoint: Option<String>,
    #[arg(long = "runtime-request-timeout", default_value = "2m", value_parser = duration_flag)]
    pub runtime_request_timeout: Duration,
    /// Where the kubelet keeps pod volumes and its state.
    #[arg(long = "root-dir", default_value = "/var/lib/kubelet")]
    pub root_dir: PathBuf,
    /// Static pod manifests.
    #[arg(long = "pod-manifest-path")]
    pub pod_manifest_path: Option<PathBuf>,
    /// Labels to add when registering (`key=value,...`).
    #[arg(long = "node-labels", default_value = "")]
    pub node_labels: String,
    /// Taints to register with (`key=value:Effect,...`).
    #[arg(long = "register-with-taints", default_value = "")]
    pub register_with_taints: String,
    #[arg(long = "register-node", default_value_t = true, action = clap::ArgAction::Set)]
    pub register_node: bool,
    /// Resources reserved for Kubernetes daemons (`cpu=100m,memory=100Mi`).
    #[arg(long = "kube-reserved", default_value = "")]
    pub kube_reserved: String,
    /// Resources reserved for the system.
    #[arg(long = "system-reserved", default_value = "")]
    pub system_reserved: String,
    #[arg(long = "max-pods", default_value_t = 110)]
    pub max_pods: u32,
    /// The DNS server IPs pods with dnsPolicy ClusterFirst use.
    #[arg(long = "cluster-dns", value_delimiter = ',')]
    pub cluster_dns: Vec<String>,
    #[arg(long = "cluster-domain", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The resolv.conf pods with dnsPolicy Default inherit.
    #[arg(long = "resolv-conf", default_value = "/etc/resolv.conf")]
    pub resolv_conf: String,
    /// The kubelet's HTTPS port.
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    #[arg(long, default_value = "0.0.0.0")]
    pub address: String,
    /// Accepted for compatibility; the read-only port stays off.
    #[arg(long = "read-only-port", default_value_t = 0)]
    pub read_only_port: u16,
    #[arg(long = "healthz-port", default_value_t = 10248)]
    pub healthz_port: u16,
    #[arg(long = "healthz-bind-address", default_value = "127.0.0.1")]
    pub healthz_bind_address: String,
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: Option<String>,
    #[arg(long = "tls-private-key-file")]
    pub tls_private_key_file: Option<String>,
    /// CA for client certificates calling the kubelet's API. Given (here or in --config), the
    /// API's authentication and authorization default to the config file's secure values.
    #[arg(long = "client-ca-file")]
    pub client_ca_file: Option<String>,
    #[arg(long = "node-status-update-frequency", default_value = "10s", value_parser = duration_flag)]
    pub node_status_update_frequency: Duration,
    #[arg(long = "node-status-report-frequency", default_value = "5m", value_parser = duration_flag)]
    pub node_status_report_frequency: Duration,
    #[arg(long = "node-lease-duration-seconds", default_value_t = 40)]
    pub node_lease_duration_seconds: i32,
    /// How often pods are re-synced even without a change.
    #[arg(long = "sync-frequency", default_value = "1m", value_parser = duration_flag)]
    pub sync_frequency: Duration,
    /// Only `cgroupfs` is supported here (systemd is not PID 1 on every host).
    #[arg(long = "cgroup-driver", default_value = "cgroupfs", value_parser = ["cgroupfs", "systemd"])]
    pub cgroup_driver: String,
    #[arg(long = "cgroup-root", default_value = "/")]
    pub cgroup_root: String,
    /// Where the kubelet writes the CNI configuration once the node has a pod CIDR.
    #[arg(long = "cni-conf-dir", default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// The pod CIDR when the node has none in its spec (standalone mode).
    #[arg(long = "pod-cidr")]
    pub pod_cidr: Option<String>,
    /// (rustkube) The cluster's pod network; traffic from pods to outside it is masqueraded.
    #[arg(long = "cluster-cidr")]
    pub cluster_cidr: Option<String>,
    /// Accepted for compatibility: the sandbox image is the runtime's setting.
    #[arg(long = "pod-infra-container-image")]
    pub pod_infra_container_image: Option<String>,
    #[arg(long = "serialize-image-pulls", default_value_t = true, action = clap::ArgAction::Set)]
    pub serialize_image_pulls: bool,
    #[arg(long = "fail-swap-on", default_value_t = true, action = clap::ArgAction::Set)]
    pub fail_swap_on: bool,
    #[arg(long = "container-log-max-size", default_value = "10Mi")]
    pub container_log_max_size: String,
    #[arg(long = "container-log-max-files", default_value_t = 5)]
    pub container_log_max_files: u32,
    #[arg(long = "streaming-connection-idle-timeout", default_value = "4h", value_parser = duration_flag)]
    pub streaming_connection_idle_timeout: Duration,
    // The kubelet API's authentication and authorization (see server_auth.rs): unset flags take
    // the --config file's values, else upstream's defaults (the config file's when there is a
    // client CA or a config file: anonymous off, token webhook on, mode Webhook).
    /// Authorization of the kubelet's API: `Webhook` (SubjectAccessReview) or `AlwaysAllow`.
    #[arg(long = "authorization-mode", value_parser = ["Webhook", "AlwaysAllow"])]
    pub authorization_mode: Option<String>,
    /// Whether requests without credentials are served as `system:anonymous`.
    #[arg(long = "anonymous-auth", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub anonymous_auth: Option<bool>,
    /// Bearer tokens are authenticated through TokenReview.
    #[arg(long = "authentication-token-webhook", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub authentication_token_webhook: Option<bool>,
    #[arg(long = "authentication-token-webhook-cache-ttl", value_parser = duration_flag)]
    pub authentication_token_webhook_cache_ttl: Option<Duration>,
    #[arg(long = "authorization-webhook-cache-authorized-ttl", value_parser = duration_flag)]
    pub authorization_webhook_cache_authorized_ttl: Option<Duration>,
    #[arg(long = "authorization-webhook-cache-unauthorized-ttl", value_parser = duration_flag)]
    pub authorization_webhook_cache_unauthorized_ttl: Option<Duration>,
    #[arg(long = "feature-gates")]
    pub feature_gates: Option<String>,
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
}

/// `key=value,key2=value2`.
pub fn parse_map(s: &str) -> anyhow::Result<Vec<(String, String)>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("{p:?} is not key=value"))
        })
        .collect()
}

/// `key=value:Effect` or `key:Effect`.
pub fn parse_taints(s: &str) -> anyhow::Result<Vec<k8s_openapi::api::core::v1::Taint>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (kv, effect) = p.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("taint {p:?} has no :Effect"))?;
            if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
                anyhow::bail!("taint {p:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute");
            }
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (kv.to_string(), None),
            };
            Ok(k8s_openapi::api::core::v1::Taint { key, value, effect: effect.to_string(), time_added: None })
        })
        .collect()
}
