//! The newcomer's path: `scripts/init-cluster.sh` (without systemd, with the
//! binaries this build made) brings up a one-node cluster on this machine;
//! stock kubectl 1.33 then deploys, exposes, scales, rolls out and back,
//! reads a pod's log and its DNS settings, and deletes; `init-cluster.sh reset` leaves no process, mount, nft table
//! or interface behind. This is the one test that uses the machine's own
//! paths and ports (/etc/kubernetes, 6443, /run/containerd).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    integration::repo_root()
}

fn script(args: &[&str]) -> Output {
    Command::new(repo().join("scripts/init-cluster.sh")).args(args).output().expect("running init-cluster.sh")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Resets the cluster even when the test fails half-way.
struct Cluster;

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = script(&["reset"]);
    }
}

fn kubectl(args: &[&str]) -> String {
    let out = Command::new(integration::kubectl_path("1.33"))
        .arg("--kubeconfig=/etc/kubernetes/admin.conf")
        .args(args)
        .output()
        .expect("kubectl");
    assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn curl(url: &str) -> Option<String> {
    let out = Command::new("curl").args(["-s", "--max-time", "2", url]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn init_cluster_serves_a_deployment_and_reset_leaves_nothing() {
    let bin_dir = integration::bin_dir();
    let _cluster = Cluster;
    let out = script(&["--bin-dir", &bin_dir.display().to_string()]);
    let log = text(&out);
    assert!(out.status.success(), "init-cluster.sh failed:\n{log}");
    assert!(log.contains("cluster is up"), "{log}");
    let nodes = kubectl(&["get", "nodes", "--no-headers"]);
    assert!(nodes.contains(" Ready"), "{nodes}");

    // Two tags of the local test image: a rollout and its undo switch between them.
    let tag = Command::new("ctr")
        .args([
            "-n",
            "k8s.io",
            "images",
            "tag",
            "--force",
            "docker.io/rustkube/testimage:1.0",
            "docker.io/rustkube/testimage:1.1",
        ])
        .output()
        .unwrap();
    assert!(tag.status.success(), "{}", text(&tag));
    kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=docker.io/rustkube/testimage:1.0",
        "--replicas=3",
        "--port=80",
        "--",
        "sh",
        "-c",
        "echo serving as $(hostname); hostname > /www/host.txt; exec httpd -f -v -p 80 -h /www",
    ]);
    kubectl(&["expose", "deployment", "web", "--port=80"]);
    kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let ip = kubectl(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let hosts = |want: usize| {
        let mut seen = BTreeSet::new();
        let start = Instant::now();
        while seen.len() < want && start.elapsed() < Duration::from_secs(60) {
            if let Some(h) = curl(&format!("http://{ip}/host.txt")).filter(|h| !h.is_empty()) {
                seen.insert(h);
            }
        }
        seen
    };
    assert_eq!(hosts(3).len(), 3);

    // kubectl logs reaches the kubelet through the apiserver: the pod's own output, then httpd's request log (`-v`).
    let pods = kubectl(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"]);
    let pod = pods.split_whitespace().next().expect("a web pod").to_string();
    let logs = kubectl(&["logs", &pod]);
    assert!(logs.contains(&format!("serving as {pod}")), "kubectl logs {pod}:\n{logs}");
    assert!(logs.contains("response:200"), "no request in the log of {pod}:\n{logs}");
    // The kubelet runs with --cluster-dns (the 10th address of 10.96.0.0/12) and --cluster-domain=cluster.local.
    let resolv = kubectl(&["exec", &pod, "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(resolv.contains("default.svc.cluster.local svc.cluster.local cluster.local"), "{resolv}");
    kubectl(&["scale", "deployment", "web", "--replicas=5"]);
    kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert_eq!(hosts(5).len(), 5);
    kubectl(&["set", "image", "deployment/web", "testimage=docker.io/rustkube/testimage:1.1"]);
    kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let image = kubectl(&["get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert_eq!(image, "docker.io/rustkube/testimage:1.1");
    kubectl(&["rollout", "undo", "deployment/web"]);
    kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let image = kubectl(&["get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert_eq!(image, "docker.io/rustkube/testimage:1.0");
    assert_eq!(hosts(5).len(), 5);
    kubectl(&["delete", "service", "web"]);
    kubectl(&["delete", "deployment", "web"]);

    let out = script(&["reset"]);
    assert!(out.status.success(), "reset failed:\n{}", text(&out));
    let procs = Command::new("pgrep")
        .args([
            "-f",
            "/etc/kubernetes/|containerd-shim-runc-v2 -namespace k8s.io -id [0-9a-f]+ -address /run/containerd/",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&procs.stdout).trim().is_empty(), "left running: {}", text(&procs));
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    assert!(!mounts.contains("/var/lib/kubelet/"), "mounts left:\n{mounts}");
    let tables = Command::new("nft").args(["list", "tables"]).output().unwrap();
    let tables = String::from_utf8_lossy(&tables.stdout);
    assert!(!tables.lines().any(|l| l == "table ip kube-proxy" || l == "table ip rustkube-cni"), "{tables}");
    assert!(!Command::new("ip").args(["link", "show", "rkbr0"]).output().unwrap().status.success(), "bridge left");
}
