//! Command-line flags, named as kubeadm's where kubeadm has them.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::options::{self, DEFAULT_CLUSTER_NAME, DEFAULT_DIR, DEFAULT_DNS_DOMAIN, DEFAULT_PORT, DEFAULT_SERVICE_CIDR};
use crate::{InitOptions, NodeOptions, UserOptions};

/// kube-pki generates a cluster's certificates, keys and kubeconfigs in kubeadm's layout.
/// Reruns keep CAs and keys and write only what is missing or no longer fits.
#[derive(Debug, Parser)]
#[command(name = "kube-pki", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The CAs, the apiserver's and etcd's certificates, the service-account key pair and the
    /// component kubeconfigs (admin, scheduler, controller-manager, kubelet, kube-proxy).
    Init(InitArgs),
    /// Another node's kubelet client kubeconfig and serving certificate, signed by the existing CA.
    Node(NodeArgs),
    /// A user's client-certificate kubeconfig, signed by the existing CA.
    Kubeconfig(KubeconfigArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where the kubeconfigs go; certificates and keys go under <dir>/pki.
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// The cluster's name in the kubeconfigs.
    #[arg(long = "cluster-name", default_value = DEFAULT_CLUSTER_NAME)]
    pub cluster_name: String,
    /// The IP address the apiserver advertises.
    #[arg(long = "apiserver-advertise-address")]
    pub advertise_address: IpAddr,
    /// The apiserver's port.
    #[arg(long = "apiserver-bind-port", default_value_t = DEFAULT_PORT)]
    pub bind_port: u16,
    /// More names for the apiserver's certificate, IP addresses or DNS names, comma separated.
    #[arg(long = "apiserver-cert-extra-sans", value_delimiter = ',')]
    pub cert_extra_sans: Vec<String>,
    /// The service IP range; with two (dual stack), the first is the primary one.
    #[arg(long = "service-cidr", default_value = DEFAULT_SERVICE_CIDR)]
    pub service_cidr: String,
    /// The cluster's DNS domain.
    #[arg(long = "service-dns-domain", default_value = DEFAULT_DNS_DOMAIN)]
    pub dns_domain: String,
    /// A shared address for all control-plane nodes: host[:port] or https://host[:port].
    #[arg(long = "control-plane-endpoint")]
    pub control_plane_endpoint: Option<String>,
    /// This node's name [default: the host name].
    #[arg(long = "node-name")]
    pub node_name: Option<String>,
    /// This node's IP addresses for its kubelet serving certificate [default: the advertise address].
    #[arg(long = "node-ip", value_delimiter = ',')]
    pub node_ips: Vec<IpAddr>,
    /// Reissue every leaf certificate and kubeconfig; CAs and keys are kept.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// The node's name.
    #[arg(long = "node-name")]
    pub node_name: String,
    /// The node's IP addresses for its serving certificate, comma separated.
    #[arg(long = "node-ip", value_delimiter = ',')]
    pub node_ips: Vec<IpAddr>,
    /// The apiserver URL [default: admin.conf's].
    #[arg(long)]
    pub server: Option<String>,
    /// The cluster's name in the kubeconfig [default: admin.conf's].
    #[arg(long = "cluster-name")]
    pub cluster_name: Option<String>,
    /// Where to write the kubeconfig [default: <dir>/kubelet-<node>.conf].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Reissue the node's certificates even if they fit.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// The user name (the certificate's CN).
    #[arg(long)]
    pub user: String,
    /// The user's groups (the certificate's O), comma separated.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// The apiserver URL [default: admin.conf's].
    #[arg(long)]
    pub server: Option<String>,
    /// The cluster's name in the kubeconfig [default: admin.conf's].
    #[arg(long = "cluster-name")]
    pub cluster_name: Option<String>,
    /// Where to write the kubeconfig (mode 0600) [default: standard output].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl InitArgs {
    pub fn into_options(self) -> anyhow::Result<InitOptions> {
        let node_name = match self.node_name {
            Some(name) => name,
            None => options::hostname().context("cannot read the host name; pass --node-name")?,
        };
        let primary = self.service_cidr.split(',').next().unwrap_or_default().trim();
        let service_cidr = primary.parse().map_err(|e| anyhow::anyhow!("invalid --service-cidr: {e}"))?;
        Ok(InitOptions {
            dir: self.dir,
            cluster_name: self.cluster_name,
            advertise_address: self.advertise_address,
            bind_port: self.bind_port,
            cert_extra_sans: self.cert_extra_sans.into_iter().filter(|s| !s.trim().is_empty()).collect(),
            service_cidr,
            dns_domain: self.dns_domain,
            control_plane_endpoint: self.control_plane_endpoint,
            node_name,
            node_ips: self.node_ips,
            force: self.force,
        })
    }
}

/// Runs one command, printing its report (or, for `kubeconfig` without `--out`, the kubeconfig).
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Init(args) => {
            let report = crate::init(&args.into_options()?)?;
            write!(stdout, "{report}")?;
        }
        Command::Node(args) => {
            let opts = NodeOptions {
                dir: args.dir,
                node_name: args.node_name,
                node_ips: args.node_ips,
                server: args.server,
                cluster_name: args.cluster_name,
                out: args.out,
                force: args.force,
            };
            write!(stdout, "{}", crate::node(&opts)?)?;
        }
        Command::Kubeconfig(args) => {
            let opts = UserOptions {
                user: args.user,
                groups: args.groups,
                server: args.server,
                cluster_name: args.cluster_name,
            };
            let kubeconfig = crate::user_kubeconfig(&args.dir, &opts)?;
            match args.out {
                Some(out) => {
                    crate::fs::write(&out, kubeconfig.as_bytes(), crate::fs::SECRET_MODE)?;
                    writeln!(stdout, "wrote     {}", out.display())?;
                }
                None => stdout.write_all(kubeconfig.as_bytes())?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_parse_as_documented() {
        <Cli as clap::CommandFactory>::command().debug_assert();
        let cli = Cli::try_parse_from([
            "kube-pki",
            "init",
            "--dir",
            "/tmp/k",
            "--apiserver-advertise-address",
            "10.0.0.5",
            "--apiserver-cert-extra-sans",
            "host1,1.2.3.4",
            "--service-cidr",
            "10.96.0.0/12,fd00::/108",
            "--control-plane-endpoint",
            "https://10.0.0.5:6443",
            "--node-name",
            "node1",
        ])
        .unwrap();
        let Command::Init(args) = cli.command else { panic!("not init") };
        let opts = args.into_options().unwrap();
        assert_eq!(opts.cert_extra_sans, ["host1", "1.2.3.4"]);
        assert_eq!(opts.service_cidr.to_string(), "10.96.0.0/12");
        assert_eq!(opts.node_name, "node1");

        let cli = Cli::try_parse_from(["kube-pki", "kubeconfig", "--user", "alice", "--groups", "dev,qa"]).unwrap();
        let Command::Kubeconfig(args) = cli.command else { panic!("not kubeconfig") };
        assert_eq!(args.groups, ["dev", "qa"]);
        assert_eq!(args.dir, PathBuf::from("/etc/kubernetes"));
    }
}
