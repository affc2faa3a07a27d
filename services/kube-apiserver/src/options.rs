//! Command-line flags, named and valued as upstream's kube-apiserver.

use clap::Parser;

/// kube-apiserver validates and configures data for the API objects and serves
/// the Kubernetes API over etcd.
#[derive(Clone, Debug, Parser)]
#[command(name = "kube-apiserver", version = crate::endpoints::GIT_VERSION)]
pub struct Options {
    /// List of etcd servers to connect with (scheme://ip:port), comma separated.
    #[arg(long = "etcd-servers", value_delimiter = ',', required = true)]
    pub etcd_servers: Vec<String>,
    /// The prefix to prepend to all resource paths in etcd.
    #[arg(long = "etcd-prefix", default_value = "/registry")]
    pub etcd_prefix: String,
    /// SSL Certificate Authority file used to secure etcd communication.
    #[arg(long = "etcd-cafile")]
    pub etcd_cafile: Option<String>,
    /// SSL certification file used to secure etcd communication.
    #[arg(long = "etcd-certfile")]
    pub etcd_certfile: Option<String>,
    /// SSL key file used to secure etcd communication.
    #[arg(long = "etcd-keyfile")]
    pub etcd_keyfile: Option<String>,
    /// The port on which to serve HTTPS with authentication and authorization.
    #[arg(long = "secure-port", default_value_t = 6443)]
    pub secure_port: u16,
    /// The IP address on which to listen for the --secure-port port.
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    pub bind_address: String,
    /// The IP address on which to advertise the apiserver to members of the cluster.
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<String>,
    /// File containing the default x509 Certificate for HTTPS.
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: Option<String>,
    /// File containing the default x509 private key matching --tls-cert-file.
    #[arg(long = "tls-private-key-file")]
    pub tls_private_key_file: Option<String>,
    /// The directory where self-signed TLS certs are written when none are given.
    #[arg(long = "cert-dir", default_value = "/var/run/kubernetes")]
    pub cert_dir: String,
    /// If set, a client certificate signed by one of these authorities authenticates its CN as the user.
    #[arg(long = "client-ca-file")]
    pub client_ca_file: Option<String>,
    /// Bearer tokens: a CSV file of `token,user,uid,"group1,group2"`.
    #[arg(long = "token-auth-file")]
    pub token_auth_file: Option<String>,
    /// Enables anonymous requests (user system:anonymous, group system:unauthenticated).
    #[arg(long = "anonymous-auth", default_value_t = true, action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,
    /// Identifier of the service account token issuer (the first signs; all are accepted).
    #[arg(long = "service-account-issuer", default_value = "https://kubernetes.default.svc.cluster.local")]
    pub service_account_issuer: Vec<String>,
    /// PEM files of keys that verify service account tokens (public or private keys).
    #[arg(long = "service-account-key-file")]
    pub service_account_key_file: Vec<String>,
    /// The PKCS#8 P-256 private key that signs service account tokens.
    #[arg(long = "service-account-signing-key-file")]
    pub service_account_signing_key_file: Option<String>,
    /// Audiences accepted in tokens (default: the issuer).
    #[arg(long = "api-audiences", value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// The longest validity a TokenRequest may ask for.
    #[arg(long = "service-account-max-token-expiration", default_value = "24h")]
    pub service_account_max_token_expiration: String,
    /// A CIDR notation IP range from which to assign service cluster IPs.
    #[arg(long = "service-cluster-ip-range", default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
    /// A port range to reserve for services with NodePort visibility.
    #[arg(long = "service-node-port-range", default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// Admission plugins to enable in addition to the default ones.
    #[arg(long = "enable-admission-plugins", value_delimiter = ',')]
    pub enable_admission_plugins: Vec<String>,
    /// Admission plugins to disable.
    #[arg(long = "disable-admission-plugins", value_delimiter = ',')]
    pub disable_admission_plugins: Vec<String>,
    /// Seconds of the `node.kubernetes.io/not-ready:NoExecute` toleration that
    /// DefaultTolerationSeconds gives every pod without one.
    #[arg(long = "default-not-ready-toleration-seconds", default_value_t = 300)]
    pub default_not_ready_toleration_seconds: i64,
    /// Seconds of the `node.kubernetes.io/unreachable:NoExecute` toleration that
    /// DefaultTolerationSeconds gives every pod without one.
    #[arg(long = "default-unreachable-toleration-seconds", default_value_t = 300)]
    pub default_unreachable_toleration_seconds: i64,
    /// Ordered list of plug-ins to do authorization on secure port.
    #[arg(long = "authorization-mode", value_delimiter = ',', default_value = "AlwaysAllow")]
    pub authorization_mode: Vec<String>,
    /// Limit on the request body size, in bytes (upstream: 3 MiB).
    #[arg(long = "max-request-bytes", default_value_t = 3 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Client certificate (PEM) this server presents to kubelets.
    #[arg(long = "kubelet-client-certificate")]
    pub kubelet_client_certificate: Option<String>,
    /// The key of --kubelet-client-certificate.
    #[arg(long = "kubelet-client-key")]
    pub kubelet_client_key: Option<String>,
    /// CA bundle that verifies kubelets' serving certificates (unverified when not given, as upstream).
    #[arg(long = "kubelet-certificate-authority")]
    pub kubelet_certificate_authority: Option<String>,
    /// The node address types to reach kubelets at, in order. (Upstream lists Hostname first; node
    /// names here are often not resolvable, so the InternalIP the kubelet reports comes first.)
    #[arg(
        long = "kubelet-preferred-address-types",
        value_delimiter = ',',
        default_value = "InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP"
    )]
    pub kubelet_preferred_address_types: Vec<String>,
    /// Number for the log level verbosity.
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
}

impl Options {
    /// What the admission plugins take from flags.
    pub fn admission_config(&self) -> crate::admission::Config {
        crate::admission::Config {
            not_ready_toleration_seconds: self.default_not_ready_toleration_seconds,
            unreachable_toleration_seconds: self.default_unreachable_toleration_seconds,
        }
    }

    /// `RUST_LOG`-style filter from `--v`.
    pub fn log_filter(&self) -> &'static str {
        match self.verbosity {
            0..=1 => "info",
            2..=4 => "kube_apiserver=debug,info",
            _ => "debug",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_flag_spellings_parse() {
        let o = Options::try_parse_from([
            "kube-apiserver",
            "--etcd-servers=http://127.0.0.1:2379,http://127.0.0.2:2379",
            "--secure-port",
            "7443",
            "--authorization-mode=RBAC,AlwaysAllow",
            "--v=2",
        ])
        .unwrap();
        assert_eq!(o.etcd_servers.len(), 2);
        assert_eq!(o.secure_port, 7443);
        assert_eq!(o.authorization_mode, vec!["RBAC", "AlwaysAllow"]);
    }

    #[test]
    fn unknown_flags_are_errors_that_name_the_flag() {
        let e = Options::try_parse_from(["kube-apiserver", "--etcd-servers=x", "--no-such-flag=1"]).unwrap_err();
        assert!(e.to_string().contains("--no-such-flag"), "{e}");
    }
}
