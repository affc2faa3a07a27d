//! One real node for kubelet tests: etcd and the apiserver, a private
//! containerd, and the kubelet `n1` running as `system:node:n1` (Node
//! authorization applies), with what the controller-manager would otherwise
//! provide in `default` (the `kube-root-ca.crt` ConfigMap and the `default`
//! ServiceAccount) so pods can mount their kube-api-access volume.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

use crate::containerd::{Containerd, ContainerdOptions};
use crate::{free_port, Component, ControlPlane};

/// How long a node or pod may take to get where a test waits for it.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct SingleNode {
    pub cp: ControlPlane,
    pub containerd: Containerd,
    /// The admin's client.
    pub client: kube::Client,
    pub kubelet: Option<Component>,
    pub root: tempfile::TempDir,
    /// The kubelet's HTTPS port.
    pub port: u16,
    pub healthz_port: u16,
    extra_args: Vec<String>,
}

impl SingleNode {
    /// Starts everything, the kubelet with `extra_args` besides the usual ones, and waits
    /// until the node is Ready.
    pub async fn start(extra_args: &[&str]) -> SingleNode {
        let cp = ControlPlane::start().expect("control plane");
        let containerd = Containerd::start(ContainerdOptions::default()).expect("containerd");
        let kubeconfig = kube::config::Kubeconfig::read_from(&cp.apiserver.kubeconfig).expect("admin kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("admin client config");
        let client = kube::Client::try_from(config).expect("admin client");
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let ca = json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "test CA"}});
        cms.create(&PostParams::default(), &serde_json::from_value(ca).expect("configmap")).await.expect("root CA");
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        let sa = json!({"metadata": {"name": "default"}});
        sas.create(&PostParams::default(), &serde_json::from_value(sa).expect("sa")).await.expect("default SA");
        let mut n = SingleNode {
            cp,
            containerd,
            client,
            kubelet: None,
            root: tempfile::tempdir().expect("kubelet root"),
            port: free_port(),
            healthz_port: free_port(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        n.start_kubelet();
        let nodes: Api<Node> = Api::all(n.client.clone());
        let ready = crate::eventually(WAIT, || {
            let node = futures::executor::block_on(nodes.get_opt("n1")).ok().flatten()?;
            let ready = node.status?.conditions?.into_iter().find(|c| c.type_ == "Ready")?;
            (ready.status == "True").then_some(())
        });
        assert!(ready.is_some(), "node n1 never became Ready:\n{}", n.kubelet_log());
        n
    }

    /// (Re)starts the kubelet with the same flags.
    pub fn start_kubelet(&mut self) {
        let kubeconfig = self.cp.apiserver.token_kubeconfig("system:node:n1", "node1-token").expect("node kubeconfig");
        let mut args = vec![
            "--hostname-override=n1".to_string(),
            format!("--container-runtime-endpoint=unix://{}", self.containerd.socket().display()),
            format!("--root-dir={}", self.root.path().display()),
            format!("--port={}", self.port),
            format!("--healthz-port={}", self.healthz_port),
            "--node-ip=127.0.0.1".to_string(),
            "--sync-frequency=10s".to_string(),
        ];
        args.extend(self.extra_args.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.kubelet = Some(self.cp.apiserver.start_component("kubelet", &kubeconfig, &refs).expect("kubelet"));
    }

    pub fn kubelet_log(&self) -> String {
        self.kubelet.as_ref().map(|k| k.log()).unwrap_or_default()
    }

    /// The last lines of the kubelet's and apiserver's logs, for failure messages.
    pub fn logs_for_failure(&self) -> String {
        format!("kubelet:\n{}\napiserver:\n{}", tail(&self.kubelet_log(), 40), tail(&self.cp.apiserver.log(), 20))
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates `pod` (a Pod as JSON) in `default`.
    pub async fn create_pod(&self, pod: Value) -> Pod {
        let pod: Pod = serde_json::from_value(pod).expect("a Pod");
        self.pods().create(&PostParams::default(), &pod).await.expect("creating the pod")
    }

    /// Waits until `check` holds for the pod; the failure message has its status and the logs.
    pub async fn until(&self, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
        let start = Instant::now();
        loop {
            let pod = self.pods().get_opt(name).await.ok().flatten();
            if let Some(p) = pod.as_ref().filter(|p| check(p)) {
                return p.clone();
            }
            if start.elapsed() > WAIT {
                panic!(
                    "pod {name}: {what} did not happen within {WAIT:?}; status: {}\n{}",
                    serde_json::to_string_pretty(&pod.and_then(|p| p.status)).unwrap_or_default(),
                    self.logs_for_failure()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for SingleNode {
    fn drop(&mut self) {
        // A failed test leaves the kubelet's volume mounts behind: the temp dir can only go once they are.
        if let Some(mut k) = self.kubelet.take() {
            k.kill();
        }
        let root = self.root.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut under: Vec<&str> =
            mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|m| m.starts_with(&root)).collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = std::process::Command::new("umount").args(["-l", m]).status();
        }
    }
}

/// Merges `extra` into `base`: objects key by key, anything else replaced.
pub fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls the future `f` makes until it gives a value or [`WAIT`] passes.
pub async fn eventually_async<T, F, Fut>(f: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}
