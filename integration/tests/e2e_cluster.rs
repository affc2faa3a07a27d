//! The whole cluster on one host, every part real: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, containerd, the kubelet and
//! kube-proxy. Stock kubectl creates a Deployment and exposes it; the
//! ClusterIP and the NodePort, curled from the host, reach every replica.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use integration::containerd::{Containerd, ContainerdOptions, TEST_IMAGE};
use integration::{free_port, ApiServer, Component, Etcd};

fn host_ip() -> String {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("10.255.255.255:1")?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

fn curl(url: &str) -> Option<String> {
    let out = std::process::Command::new("curl").args(["-s", "--max-time", "2", url]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn deployment_exposed_through_kube_proxy_reaches_every_replica() {
    // kube-proxy turns on route_localnet for NodePorts on 127.0.0.1; the host gets its setting back.
    let localnet = "/proc/sys/net/ipv4/conf/all/route_localnet";
    let localnet_before = std::fs::read_to_string(localnet).unwrap_or_default();
    let containerd = Containerd::start(ContainerdOptions::default()).unwrap();
    // Service ranges of this test alone, so parallel clusters' proxies never match each other's addresses.
    let slot: u32 = containerd.subnet().split('.').nth(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let etcd = Etcd::start().unwrap();
    let nodeports = format!("{}-{}", 30000 + slot * 10, 30000 + slot * 10 + 9);
    let apiserver = ApiServer::start_with(
        &etcd,
        &[&format!("--service-cluster-ip-range=10.100.{slot}.0/24"), &format!("--service-node-port-range={nodeports}")],
    )
    .unwrap();
    // A locally present tag, so the default pull policy (IfNotPresent) applies.
    let image = TEST_IMAGE.replace(":latest", ":v1");
    let tagged = containerd.ctr(&["-n", "k8s.io", "images", "tag", TEST_IMAGE, &image]).unwrap();
    assert!(tagged.status.success(), "{}", String::from_utf8_lossy(&tagged.stderr));

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n").unwrap();
    let kcm_kc = apiserver.token_kubeconfig("system:kube-controller-manager", "controller-manager-token").unwrap();
    let _kcm = apiserver
        .start_component(
            "kube-controller-manager",
            &kcm_kc,
            &[
                "--leader-elect=false",
                "--secure-port=0",
                "--use-service-account-credentials=true",
                &format!("--root-ca-file={}", ca.display()),
            ],
        )
        .unwrap();
    let sched_kc = apiserver.token_kubeconfig("system:kube-scheduler", "scheduler-token").unwrap();
    let _sched =
        apiserver.start_component("kube-scheduler", &sched_kc, &["--leader-elect=false", "--secure-port=0"]).unwrap();
    let node_ip = host_ip();
    let kubelet_kc = apiserver.token_kubeconfig("system:node:n1", "node1-token").unwrap();
    let root = tempfile::tempdir().unwrap();
    let kubelet: Component = apiserver
        .start_component(
            "kubelet",
            &kubelet_kc,
            &[
                "--hostname-override=n1",
                &format!("--container-runtime-endpoint=unix://{}", containerd.socket().display()),
                &format!("--root-dir={}", root.path().display()),
                &format!("--port={}", free_port()),
                &format!("--healthz-port={}", free_port()),
                &format!("--node-ip={node_ip}"),
            ],
        )
        .unwrap();
    let table = format!("kpe2e{slot}");
    // kube-proxy as system:kube-proxy (upstream's system:node-proxier role), like every other component here.
    let proxy_kc = apiserver.token_kubeconfig("system:kube-proxy", "kube-proxy-token").unwrap();
    let proxy = apiserver
        .start_component(
            "kube-proxy",
            &proxy_kc,
            &[
                "--hostname-override=n1",
                &format!("--nftables-table={table}"),
                &format!("--cluster-cidr={}", containerd.cluster_cidr()),
                &format!("--healthz-bind-address=127.0.0.1:{}", free_port()),
                &format!("--metrics-bind-address=127.0.0.1:{}", free_port()),
                // Upstream's opt-in for NodePorts on localhost, besides the node's address.
                &format!("--nodeport-addresses=127.0.0.1/32,{node_ip}/32"),
            ],
        )
        .unwrap();
    let kubectl = |args: &[&str]| {
        let out = apiserver.kubectl("1.33", args);
        assert!(out.status.success(), "kubectl {args:?}: {}", integration::text(&out));
        integration::stdout(&out)
    };
    let diag = || {
        format!(
            "kubelet:\n{}\nkube-proxy:\n{}\npods:\n{}",
            tail(&kubelet.log(), 20),
            tail(&proxy.log(), 20),
            integration::text(&apiserver.kubectl("1.33", &["get", "pods", "-o", "wide"]))
        )
    };
    // Wait for the node, then deploy and expose.
    let start = Instant::now();
    while !integration::text(&apiserver.kubectl("1.33", &["get", "node", "n1"])).contains(" Ready") {
        assert!(start.elapsed() < Duration::from_secs(60), "node never Ready:\n{}", diag());
        std::thread::sleep(Duration::from_millis(300));
    }
    kubectl(&[
        "create",
        "deployment",
        "web",
        &format!("--image={image}"),
        "--replicas=3",
        "--port=80",
        "--",
        "sh",
        "-c",
        "hostname > /www/host.txt; exec httpd -f -p 80 -h /www",
    ]);
    kubectl(&["expose", "deployment", "web", "--port=80", "--type=NodePort"]);
    let rollout = apiserver.kubectl("1.33", &["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(rollout.status.success(), "rollout: {}\n{}", integration::text(&rollout), diag());
    let cluster_ip = kubectl(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let node_port = kubectl(&["get", "svc", "web", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    let pods: BTreeSet<String> = kubectl(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(pods.len(), 3, "{pods:?}");
    for (what, url) in [
        ("ClusterIP", format!("http://{cluster_ip}/host.txt")),
        ("NodePort", format!("http://{node_ip}:{node_port}/host.txt")),
        ("NodePort on localhost", format!("http://127.0.0.1:{node_port}/host.txt")),
    ] {
        let mut seen = BTreeSet::new();
        let start = Instant::now();
        while !pods.is_subset(&seen) {
            if let Some(host) = curl(&url).filter(|h| !h.is_empty()) {
                assert!(pods.contains(&host), "{what} answered from {host:?}, not one of {pods:?}");
                seen.insert(host);
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{what} {url} reached only {seen:?} of {pods:?}\n{}",
                diag()
            );
        }
    }
    kubectl(&["delete", "service", "web"]);
    kubectl(&["delete", "deployment", "web"]);
    drop(proxy);
    let _ = std::process::Command::new("nft").args(["delete", "table", "ip", &table]).status();
    if !localnet_before.is_empty() {
        let _ = std::fs::write(localnet, localnet_before.trim());
    }
}
