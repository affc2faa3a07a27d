//! A whole single-node cluster on this host, every part real: a private
//! containerd, etcd, kube-apiserver, kube-controller-manager (per-controller
//! credentials), kube-scheduler, the kubelet `n1` and, when asked for,
//! kube-proxy. Each cluster takes its own service range and NodePort range
//! from its containerd's network slot, so parallel clusters never match each
//! other's addresses. On drop it removes what it left on the host: the
//! kube-proxy nftables table, the route_localnet setting it turned on, and the
//! log folders of the pods it saw (the kubelet keeps them).
//!
//! Two steps, for tests that need the host's addresses before the control
//! plane starts (a PKI with the kubernetes ClusterIP): [`Host::start`], then
//! [`Host::start_cluster`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::containerd::{Containerd, ContainerdOptions, TEST_IMAGE};
use crate::{free_port, ApiServer, Component, Etcd};

const ROUTE_LOCALNET: &str = "/proc/sys/net/ipv4/conf/all/route_localnet";

/// The host's address towards the outside (the node IP), or loopback.
pub fn host_ip() -> String {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("10.255.255.255:1")?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

pub use crate::node::tail;

/// The node's runtime and addresses, before any control plane.
pub struct Host {
    pub containerd: Containerd,
    /// This cluster's network slot: services in 10.100.<slot>.0/24.
    pub slot: u32,
    pub node_ip: String,
    /// The test image under a locally present tag (the default pull policy, IfNotPresent, applies).
    pub image: String,
}

impl Host {
    pub fn start() -> Result<Host> {
        let containerd = Containerd::start(ContainerdOptions::default())?;
        let slot: u32 = containerd.subnet().split('.').nth(2).and_then(|s| s.parse().ok()).unwrap_or(0);
        let image = TEST_IMAGE.replace(":latest", ":v1");
        let tagged = containerd.ctr(&["-n", "k8s.io", "images", "tag", TEST_IMAGE, &image])?;
        anyhow::ensure!(tagged.status.success(), "tagging {image}: {}", String::from_utf8_lossy(&tagged.stderr));
        Ok(Host { containerd, slot, node_ip: host_ip(), image })
    }

    pub fn service_cidr(&self) -> String {
        format!("10.100.{}.0/24", self.slot)
    }

    /// The `kubernetes` Service's ClusterIP (the first of the range).
    pub fn kubernetes_ip(&self) -> String {
        format!("10.100.{}.1", self.slot)
    }

    pub fn nodeport_range(&self) -> String {
        format!("{}-{}", 30000 + self.slot * 10, 30000 + self.slot * 10 + 9)
    }

    /// Starts etcd and the components; waits until the node is Ready.
    pub fn start_cluster(self, opts: ClusterOptions) -> Result<Cluster> {
        let etcd = Etcd::start()?;
        let mut api_args = vec![
            format!("--service-cluster-ip-range={}", self.service_cidr()),
            format!("--service-node-port-range={}", self.nodeport_range()),
        ];
        api_args.extend(opts.apiserver_args);
        let refs: Vec<&str> = api_args.iter().map(String::as_str).collect();
        let apiserver = ApiServer::start_with(&etcd, &refs)?;

        let dir = tempfile::tempdir()?;
        let ca = match opts.root_ca_file {
            Some(ca) => ca,
            None => {
                let ca = dir.path().join("ca.crt");
                std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n")?;
                ca
            }
        };
        let kcm_kc = apiserver.token_kubeconfig("system:kube-controller-manager", "controller-manager-token")?;
        let mut kcm_args = vec![
            "--leader-elect=false".to_string(),
            "--secure-port=0".to_string(),
            "--use-service-account-credentials=true".to_string(),
            format!("--root-ca-file={}", ca.display()),
        ];
        kcm_args.extend(opts.controller_manager_args);
        let refs: Vec<&str> = kcm_args.iter().map(String::as_str).collect();
        let controller_manager = apiserver.start_component("kube-controller-manager", &kcm_kc, &refs)?;
        let sched_kc = apiserver.token_kubeconfig("system:kube-scheduler", "scheduler-token")?;
        let scheduler =
            apiserver.start_component("kube-scheduler", &sched_kc, &["--leader-elect=false", "--secure-port=0"])?;

        let kubelet_kc = apiserver.token_kubeconfig("system:node:n1", "node1-token")?;
        let mut kubelet_args = vec![
            "--hostname-override=n1".to_string(),
            format!("--container-runtime-endpoint=unix://{}", self.containerd.socket().display()),
            format!("--root-dir={}", dir.path().join("kubelet").display()),
            format!("--port={}", free_port()),
            format!("--healthz-port={}", free_port()),
            format!("--node-ip={}", self.node_ip),
        ];
        kubelet_args.extend(opts.kubelet_args);
        let refs: Vec<&str> = kubelet_args.iter().map(String::as_str).collect();
        let kubelet = apiserver.start_component("kubelet", &kubelet_kc, &refs)?;

        let proxy_table = format!("kpc{}", self.slot);
        let localnet_before = std::fs::read_to_string(ROUTE_LOCALNET).unwrap_or_default();
        let proxy = match opts.kube_proxy {
            None => None,
            Some(p) => {
                let proxy_kc = apiserver.token_kubeconfig("system:kube-proxy", "kube-proxy-token")?;
                let args = [
                    "--hostname-override=n1".to_string(),
                    format!("--nftables-table={proxy_table}"),
                    format!("--cluster-cidr={}", self.containerd.cluster_cidr()),
                    format!("--healthz-bind-address=127.0.0.1:{}", free_port()),
                    format!("--metrics-bind-address=127.0.0.1:{}", free_port()),
                    format!("--nodeport-addresses={}", p.nodeport_addresses.replace("{node_ip}", &self.node_ip)),
                ];
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                Some(apiserver.start_component("kube-proxy", &proxy_kc, &refs)?)
            }
        };
        let cluster = Cluster {
            proxy,
            kubelet,
            scheduler,
            controller_manager,
            apiserver,
            etcd,
            host: self,
            proxy_table,
            localnet_before,
            pod_uids: Mutex::new(BTreeSet::new()),
            _dir: dir,
        };
        let start = Instant::now();
        while !crate::text(&cluster.apiserver.kubectl("1.33", &["get", "node", "n1"])).contains(" Ready") {
            anyhow::ensure!(start.elapsed() < Duration::from_secs(60), "node never Ready:\n{}", cluster.diag());
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(cluster)
    }
}

/// What to start besides the defaults.
#[derive(Default)]
pub struct ClusterOptions {
    pub apiserver_args: Vec<String>,
    pub controller_manager_args: Vec<String>,
    pub kubelet_args: Vec<String>,
    /// The controller-manager's `--root-ca-file`; a placeholder file when None.
    pub root_ca_file: Option<PathBuf>,
    pub kube_proxy: Option<KubeProxyOptions>,
}

pub struct KubeProxyOptions {
    /// `--nodeport-addresses`; `{node_ip}` stands for the node's address.
    pub nodeport_addresses: String,
}

/// The running cluster. Fields drop in order: node components first, containerd last.
pub struct Cluster {
    pub proxy: Option<Component>,
    pub kubelet: Component,
    pub scheduler: Component,
    pub controller_manager: Component,
    pub apiserver: ApiServer,
    pub etcd: Etcd,
    pub host: Host,
    /// kube-proxy's nftables table (removed on drop).
    pub proxy_table: String,
    localnet_before: String,
    pod_uids: Mutex<BTreeSet<String>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts a cluster with the defaults and `opts`.
    pub fn start(opts: ClusterOptions) -> Result<Cluster> {
        Host::start().context("the node's containerd")?.start_cluster(opts)
    }

    /// kubectl 1.33 `args`, asserting success; its stdout.
    #[track_caller]
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, None)
    }

    #[track_caller]
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.apiserver.kubectl_stdin("1.33", args, stdin);
        assert!(out.status.success(), "kubectl {args:?}: {}\n{}", crate::text(&out), self.diag());
        crate::stdout(&out)
    }

    /// Notes the UIDs of every pod now in the API, whose log folders drop removes.
    pub fn remember_pods(&self) {
        let uids = crate::stdout(
            &self.apiserver.kubectl("1.33", &["get", "pods", "-A", "-o", "jsonpath={.items[*].metadata.uid}"]),
        );
        if let Ok(mut u) = self.pod_uids.lock() {
            u.extend(uids.split_whitespace().map(str::to_string));
        }
    }

    /// The components' recent logs and the pods, for failure messages.
    pub fn diag(&self) -> String {
        self.remember_pods();
        format!(
            "kubelet:\n{}\nkube-controller-manager:\n{}\nkube-proxy:\n{}\npods:\n{}",
            tail(&self.kubelet.log(), 20),
            tail(&self.controller_manager.log(), 20),
            self.proxy.as_ref().map(|p| tail(&p.log(), 10)).unwrap_or_default(),
            crate::text(&self.apiserver.kubectl("1.33", &["get", "pods", "-A", "-o", "wide"])),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.remember_pods();
        if let Some(mut p) = self.proxy.take() {
            p.kill();
            let _ = std::process::Command::new("nft").args(["delete", "table", "ip", &self.proxy_table]).status();
            if !self.localnet_before.is_empty() {
                let _ = std::fs::write(ROUTE_LOCALNET, self.localnet_before.trim());
            }
        }
        self.kubelet.kill();
        // A failed test leaves the kubelet's volume mounts behind: the temp dir can only go once they are.
        let root = self._dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut under: Vec<&str> =
            mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|m| m.starts_with(&root)).collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = std::process::Command::new("umount").args(["-l", m]).status();
        }
        let uids = self.pod_uids.lock().map(|u| u.clone()).unwrap_or_default();
        for entry in std::fs::read_dir("/var/log/pods").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if uids.iter().any(|u| !u.is_empty() && name.ends_with(&format!("_{u}"))) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}
