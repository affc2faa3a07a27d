//! The whole cluster on one host, every part real: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, containerd, the kubelet and
//! kube-proxy. Stock kubectl creates a Deployment and exposes it; the
//! ClusterIP and the NodePort, curled from the host, reach every replica.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use integration::cluster::{Cluster, ClusterOptions, KubeProxyOptions};

fn curl(url: &str) -> Option<String> {
    let out = std::process::Command::new("curl").args(["-s", "--max-time", "2", url]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn deployment_exposed_through_kube_proxy_reaches_every_replica() {
    // kube-proxy turns on route_localnet for NodePorts on 127.0.0.1; the cluster gives the host its setting back.
    let cluster = Cluster::start(ClusterOptions {
        // Upstream's opt-in for NodePorts on localhost, besides the node's address.
        kube_proxy: Some(KubeProxyOptions { nodeport_addresses: "127.0.0.1/32,{node_ip}/32".into() }),
        ..Default::default()
    })
    .unwrap();
    let (image, node_ip) = (&cluster.host.image, &cluster.host.node_ip);
    let kubectl = |args: &[&str]| cluster.kubectl(args);
    let diag = || cluster.diag();
    let apiserver = &cluster.apiserver;
    // Deploy and expose.
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
}
