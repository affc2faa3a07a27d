//! Two nodes on one machine: each a network namespace with its own
//! containerd and kubelet, joined by a bridge. Once the nodes have pod CIDRs
//! their kubelets write the CNI config and route each other's pod CIDR, and
//! a pod on one node reaches a pod on the other by its IP, the source address
//! preserved (no NAT between pods).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use integration::containerd::{Containerd, ContainerdOptions, TEST_IMAGE, TEST_PAGE_MARKER};
use integration::{free_port, ApiServer, Component, Etcd};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn sh(args: &[&str]) -> bool {
    Command::new(args[0]).args(&args[1..]).status().map(|s| s.success()).unwrap_or(false)
}

/// A bridge in the host namespace and two namespaces plugged into it.
struct Hosts {
    id: u32,
    bridge: String,
    netns: Vec<String>,
}

impl Hosts {
    fn new() -> Hosts {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = (std::process::id() % 200 + NEXT.fetch_add(1, Ordering::Relaxed)) % 250 + 1;
        let bridge = format!("rkmb{id}");
        let h = Hosts { id, bridge: bridge.clone(), netns: vec![format!("rkmh{id}a"), format!("rkmh{id}b")] };
        h.teardown();
        assert!(sh(&["ip", "link", "add", &bridge, "type", "bridge"]));
        assert!(sh(&["ip", "addr", "add", &format!("{}/24", h.gateway()), "dev", &bridge]));
        assert!(sh(&["ip", "link", "set", &bridge, "up"]));
        for (i, ns) in h.netns.iter().enumerate() {
            let veth = format!("rkmv{id}{}", (b'a' + i as u8) as char);
            assert!(sh(&["ip", "netns", "add", ns]));
            assert!(sh(&["ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns]));
            assert!(sh(&["ip", "link", "set", &veth, "master", &bridge, "up"]));
            let addr = format!("{}/24", h.address(i));
            assert!(sh(&["ip", "-n", ns, "addr", "add", &addr, "dev", "eth0"]));
            assert!(sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]));
            assert!(sh(&["ip", "-n", ns, "link", "set", "lo", "up"]));
            assert!(sh(&["ip", "-n", ns, "route", "add", "default", "via", &h.gateway()]));
        }
        h
    }

    fn gateway(&self) -> String {
        format!("172.30.{}.254", self.id)
    }

    fn address(&self, i: usize) -> String {
        format!("172.30.{}.{}", self.id, i + 1)
    }

    fn pod_cidr(&self, i: usize) -> String {
        format!("10.241.{}.0/24", (self.id * 2 + i as u32) % 250)
    }

    fn teardown(&self) {
        for ns in &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).status();
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.teardown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_two_nodes_reach_each_other_without_nat() {
    let hosts = Hosts::new();
    let etcd = Etcd::start().unwrap();
    let apiserver = ApiServer::start_on_all_interfaces(&etcd).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&apiserver.kubeconfig).unwrap();
    let client =
        Client::try_from(Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap()).unwrap();
    let server = format!("https://{}:{}", hosts.gateway(), apiserver.port);
    let mut runtimes = Vec::new();
    let mut kubelets: Vec<Component> = Vec::new();
    let roots: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for (i, (node, token)) in [("n1", "node1-token"), ("n2", "node2-token")].into_iter().enumerate() {
        let opts =
            ContainerdOptions { write_cni_config: false, netns: Some(hosts.netns[i].clone()), ..Default::default() };
        let containerd = Containerd::start(opts).unwrap();
        let kc = apiserver.token_kubeconfig_at(&format!("system:node:{node}"), token, &server).unwrap();
        let args = [
            format!("--hostname-override={node}"),
            format!("--container-runtime-endpoint=unix://{}", containerd.socket().display()),
            format!("--root-dir={}", roots[i].path().display()),
            format!("--port={}", free_port()),
            format!("--healthz-port={}", free_port()),
            format!("--node-ip={}", hosts.address(i)),
            format!("--cni-conf-dir={}", containerd.cni_conf_dir().display()),
            "--cluster-cidr=10.241.0.0/16".to_string(),
        ];
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        kubelets.push(apiserver.start_component_in(Some(&hosts.netns[i]), "kubelet", &kc, &refs).unwrap());
        runtimes.push(containerd);
    }
    // The node IPAM controller's part: a pod CIDR per node.
    let nodes: Api<Node> = Api::all(client.clone());
    for (i, node) in ["n1", "n2"].into_iter().enumerate() {
        let start = Instant::now();
        while nodes.get_opt(node).await.ok().flatten().is_none() {
            assert!(start.elapsed() < WAIT, "{node} never registered:\n{}", kubelets[i].log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let patch = json!({"spec": {"podCIDR": hosts.pod_cidr(i), "podCIDRs": [hosts.pod_cidr(i)]}});
        nodes.patch(node, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    }
    for (i, node) in ["n1", "n2"].into_iter().enumerate() {
        let start = Instant::now();
        loop {
            let n = nodes.get(node).await.unwrap();
            let ready = n
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                break;
            }
            assert!(start.elapsed() < WAIT, "{node} never became Ready:\n{}", kubelets[i].log());
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "test"}})).unwrap(),
    )
    .await
    .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    sas.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap())
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = |name: &str, node: &str, command: Option<Vec<String>>| -> Pod {
        let mut c = json!({"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never"});
        if let Some(cmd) = command {
            c["command"] = json!(cmd);
        }
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [c]}}))
            .unwrap()
    };
    let ip_of = |p: &Pod| p.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty());
    let diag =
        |i: usize| format!("kubelet:\n{}\ncontainerd:\n{}", tail(&kubelets[i].log(), 15), runtimes[i].log_tail(15));
    let running = |name: &'static str, i: usize| {
        let pods = pods.clone();
        let diag = &diag;
        async move {
            let start = Instant::now();
            loop {
                let p = pods.get(name).await.unwrap();
                if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && ip_of(&p).is_some() {
                    return p;
                }
                assert!(start.elapsed() < WAIT, "{name} never ran: {:?}\n{}", p.status, diag(i));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    pods.create(
        &PostParams::default(),
        &pod(
            "server",
            "n2",
            Some(vec!["httpd".into(), "-f".into(), "-v".into(), "-p".into(), "80".into(), "-h".into(), "/www".into()]),
        ),
    )
    .await
    .unwrap();
    let server_pod = running("server", 1).await;
    let server_ip = ip_of(&server_pod).unwrap();
    let script = format!("while true; do wget -q -O- http://{server_ip}/ && echo FETCHED; sleep 1; done");
    pods.create(&PostParams::default(), &pod("client", "n1", Some(vec!["sh".into(), "-c".into(), script])))
        .await
        .unwrap();
    let client_pod = running("client", 0).await;
    let client_ip = ip_of(&client_pod).unwrap();
    assert!(
        hosts.pod_cidr(0).starts_with(&client_ip[..client_ip.rfind('.').unwrap()]),
        "{client_ip} not in {}",
        hosts.pod_cidr(0)
    );
    assert!(
        hosts.pod_cidr(1).starts_with(&server_ip[..server_ip.rfind('.').unwrap()]),
        "{server_ip} not in {}",
        hosts.pod_cidr(1)
    );
    // The server's access log names the client pod's own address.
    let log_of = |p: &Pod| {
        let dir = format!(
            "/var/log/pods/default_{}_{}/c/0.log",
            p.metadata.name.as_deref().unwrap(),
            p.metadata.uid.as_deref().unwrap()
        );
        std::fs::read_to_string(dir).unwrap_or_default()
    };
    let start = Instant::now();
    loop {
        let server_log = log_of(&server_pod);
        let client_log = log_of(&client_pod);
        if server_log.contains(&client_ip) && client_log.contains(TEST_PAGE_MARKER) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no cross-node request seen with the client's address {client_ip}.\nserver log:\n{server_log}\nclient log:\n{client_log}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(kubelets);
    drop(runtimes);
    drop(hosts);
}
