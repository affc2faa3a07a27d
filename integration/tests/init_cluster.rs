//! The newcomer's path: `scripts/init-cluster.sh --no-systemd` (supervised
//! background processes whatever the host, with the binaries this build made)
//! brings up a one-node cluster on this machine; a second run changes nothing
//! (same processes, node still Ready); stock kubectl 1.33 then deploys, exposes,
//! scales, rolls out and back, reads a pod's log and its DNS settings, and
//! deletes; `init-cluster.sh reset` leaves no process, supervisor, mount, pod
//! interface, nft table or bridge behind. A step that fails (an apiserver that
//! exits at once) says FAILED, which step and where its log is, and reset cleans
//! up after it.
//!
//! These tests use the machine's own paths and ports (/etc/kubernetes, 6443,
//! /run/containerd, /run/rustkube): they are in nextest's `init-cluster` group
//! (one at a time). Their checks match only what init-cluster.sh creates (its
//! pid files, processes with the machine's /etc/kubernetes paths on their command
//! line, the interfaces on rkbr0), never what other tests running beside them
//! create under their private dirs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// What init-cluster.sh supervises on a control-plane node (pid files /run/rustkube/<name>.pid).
const SERVICES: [&str; 7] =
    ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet", "kube-proxy"];
const RUN_DIR: &str = "/run/rustkube";

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

/// A pid from a pid file of the script.
fn pid_file(path: &str) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Running, not a zombie waiting to be reaped.
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesised command name.
    stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')).unwrap_or(false)
}

/// Every live process's pid and command line (arguments joined by spaces).
fn processes() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ").trim().to_string();
        if !cmdline.is_empty() && alive(pid) {
            out.push((pid, cmdline));
        }
    }
    out
}

/// The processes of one service that init-cluster.sh started on this machine: the program
/// by name, with the machine's own paths (not a test's private dirs) on its command line.
fn service_processes(service: &str) -> BTreeSet<u32> {
    let marker = match service {
        "etcd" => "--data-dir=/var/lib/rustkube/etcd",
        "containerd" => "--config /etc/kubernetes/containerd.toml",
        _ => "=/etc/kubernetes/",
    };
    processes()
        .into_iter()
        .filter(|(_, cmd)| {
            let program = cmd.split(' ').next().unwrap_or_default();
            Path::new(program).file_name().is_some_and(|n| n == service) && cmd.contains(marker)
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Processes running this checkout's init-cluster.sh: after the script returns, its supervisors.
fn script_processes() -> BTreeSet<u32> {
    let script = repo().join("scripts/init-cluster.sh").display().to_string();
    processes().into_iter().filter(|(_, cmd)| cmd.contains(&script)).map(|(pid, _)| pid).collect()
}

/// Each service's (supervisor pid, service pid), from the script's pid files.
fn supervised() -> Vec<(&'static str, u32, u32)> {
    SERVICES
        .iter()
        .map(|s| {
            let sup = pid_file(&format!("{RUN_DIR}/supervisor-{s}.pid"))
                .unwrap_or_else(|| panic!("no supervisor pid of {s}"));
            let pid = pid_file(&format!("{RUN_DIR}/{s}.pid")).unwrap_or_else(|| panic!("no pid of {s}"));
            (*s, sup, pid)
        })
        .collect()
}

/// The mount points under the node's paths.
fn node_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|m| m.starts_with("/run/containerd/") || m.starts_with("/var/lib/kubelet"))
        .map(str::to_string)
        .collect()
}

/// The interfaces enslaved to the node's pod bridge rkbr0 (the pods' veths, rkv*).
fn bridge_ports() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link", "show", "master", "rkbr0"]).output().expect("ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

fn link_exists(name: &str) -> bool {
    Command::new("ip").args(["link", "show", name]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// After a reset: the recorded processes are gone, and so is every supervisor and service
/// process of the script, every pid file, and every mount under the node's paths.
fn assert_nothing_left(pids: &[u32]) {
    for pid in pids {
        assert!(
            !alive(*pid),
            "pid {pid} still running after reset: {:?}",
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        );
    }
    let pid_files: Vec<_> = std::fs::read_dir(RUN_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("supervisor-") && n.ends_with(".pid"))
        .collect();
    assert!(pid_files.is_empty(), "supervisor pid files left in {RUN_DIR}: {pid_files:?}");
    assert_eq!(script_processes(), BTreeSet::new(), "init-cluster.sh supervisors left running");
    for s in SERVICES {
        assert_eq!(service_processes(s), BTreeSet::new(), "{s} left running");
    }
    let mounts = node_mounts();
    assert!(mounts.is_empty(), "mounts left under /run/containerd or /var/lib/kubelet: {mounts:?}");
}

fn node_ready() -> bool {
    let out = Command::new(integration::kubectl_path("1.33"))
        .args(["--kubeconfig=/etc/kubernetes/admin.conf", "get", "nodes", "--no-headers"])
        .output()
        .expect("kubectl");
    String::from_utf8_lossy(&out.stdout).contains(" Ready")
}

fn curl(url: &str) -> Option<String> {
    let out = Command::new("curl").args(["-s", "--max-time", "2", url]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn init_cluster_serves_a_deployment_and_reset_leaves_nothing() {
    let bins = integration::snapshot_bin_dir();
    let _cluster = Cluster;
    let bin_dir = bins.path().display().to_string();
    let started = Instant::now();
    let out = script(&["--no-systemd", "--bin-dir", &bin_dir]);
    let log = text(&out);
    assert!(out.status.success(), "init-cluster.sh failed:\n{log}");
    assert!(log.contains("services: supervised background processes"), "{log}");
    assert!(log.contains("cluster is up"), "{log}");
    // The time to a Ready node, as the script reports it.
    let ready_line = log.lines().find(|l| l.contains(" s after init-cluster.sh started")).unwrap_or_default();
    let ready_after: f64 = ready_line
        .split(" Ready ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no time to Ready in the output:\n{log}"));
    assert!(ready_after > 0.0 && ready_after < started.elapsed().as_secs_f64(), "{ready_line}");
    eprintln!("init-cluster.sh: {ready_line} (whole run {:.1} s)", started.elapsed().as_secs_f64());
    assert!(node_ready(), "node not Ready");
    // The apiserver's certificate names this host: its hostname and each global address.
    let sans = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in", "/etc/kubernetes/pki/apiserver.crt"])
        .output()
        .unwrap();
    let sans = String::from_utf8_lossy(&sans.stdout).to_lowercase();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_lowercase();
    assert!(sans.contains(&format!("dns:{host}")), "{host} not in {sans}");
    // (The default route's interface: other tests add and remove interfaces of their own meanwhile.)
    let route = std::process::Command::new("ip").args(["-4", "route", "show", "default"]).output().unwrap();
    let route = String::from_utf8_lossy(&route.stdout).into_owned();
    let dev = route.split_whitespace().skip_while(|w| *w != "dev").nth(1).unwrap_or_default().to_string();
    if !dev.is_empty() {
        let addrs = std::process::Command::new("ip")
            .args(["-o", "-4", "addr", "show", "dev", &dev, "scope", "global"])
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&addrs.stdout).lines() {
            let ip = line.split_whitespace().nth(3).and_then(|a| a.split('/').next()).unwrap_or_default();
            assert!(sans.contains(&format!("ip address:{ip}")), "{dev} {ip} not in {sans}");
        }
    }

    // Every service runs once, under its supervisor; the supervisors are the only script processes left.
    let first = supervised();
    for (s, sup, pid) in &first {
        assert!(alive(*sup) && alive(*pid), "{s}: supervisor {sup} or process {pid} not running");
        assert_eq!(service_processes(s), BTreeSet::from([*pid]), "{s}: not exactly its one process");
    }
    let supervisors: BTreeSet<u32> = first.iter().map(|(_, sup, _)| *sup).collect();
    assert_eq!(script_processes(), supervisors, "init-cluster.sh processes other than the supervisors");

    // A second run is safe: it keeps every unchanged service as it is (no restart, no duplicate).
    let out = script(&["--no-systemd", "--bin-dir", &bin_dir]);
    let log = text(&out);
    assert!(out.status.success(), "second init-cluster.sh failed:\n{log}");
    assert!(log.contains("cluster is up"), "{log}");
    for s in SERVICES {
        assert!(log.contains(&format!("{s} already running")), "{s} not kept:\n{log}");
    }
    assert_eq!(supervised(), first, "a second run changed the services' processes");
    for (s, _, pid) in &first {
        assert!(alive(*pid), "{s} ({pid}) died");
        assert_eq!(service_processes(s), BTreeSet::from([*pid]), "{s}: duplicate after the second run");
    }
    assert_eq!(script_processes(), supervisors, "the second run left more supervisors");
    assert!(node_ready(), "node not Ready after the second run");

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
    let start = Instant::now();
    loop {
        let left = kubectl(&["get", "pods", "-l", "app=web", "-o", "name"]);
        if left.trim().is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "web pods not gone: {left}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // What reset must remove is there now: the add-ons' pods' veths on rkbr0 and their mounts.
    let veths = bridge_ports();
    assert!(!veths.is_empty() && veths.iter().all(|v| v.starts_with("rkv")), "pod veths on rkbr0: {veths:?}");
    assert!(!node_mounts().is_empty(), "no pod mounts under /run/containerd or /var/lib/kubelet");
    let pids: Vec<u32> = first.iter().flat_map(|(_, sup, pid)| [*sup, *pid]).collect();

    let out = script(&["reset"]);
    assert!(out.status.success(), "reset failed:\n{}", text(&out));
    assert_nothing_left(&pids);
    for v in &veths {
        assert!(!link_exists(v), "pod veth {v} left");
    }
    let procs = Command::new("pgrep")
        .args([
            "-f",
            "/etc/kubernetes/|containerd-shim-runc-v2 -namespace k8s.io -id [0-9a-f]+ -address /run/containerd/",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&procs.stdout).trim().is_empty(), "left running: {}", text(&procs));
    let tables = Command::new("nft").args(["list", "tables"]).output().unwrap();
    let tables = String::from_utf8_lossy(&tables.stdout);
    assert!(!tables.lines().any(|l| l == "table ip kube-proxy" || l == "table ip rustkube-cni"), "{tables}");
    assert!(!link_exists("rkbr0"), "bridge left");
}

#[test]
fn a_failing_step_names_itself_and_its_log_and_reset_cleans_up() {
    let dir = integration::bin_dir_with_a_failing_apiserver();
    let _cluster = Cluster;
    let start = Instant::now();
    let out = Command::new(repo().join("scripts/init-cluster.sh"))
        .args(["--no-systemd", "--bin-dir", &dir.path().display().to_string()])
        .env("READY_TIMEOUT", "10")
        .output()
        .expect("running init-cluster.sh");
    let log = text(&out);
    assert!(!out.status.success(), "init-cluster.sh succeeded with an apiserver that exits:\n{log}");
    // etcd came up; the apiserver's step failed, said so with its log (and the log's end), and nothing ran after it.
    assert!(log.contains("waiting for etcd") && log.contains("ready"), "{log}");
    assert!(log.contains("FAILED: kube-apiserver did not become ready within 10s"), "{log}");
    assert!(log.contains("in step: starting kube-apiserver"), "{log}");
    assert!(log.contains("log: /var/log/kubernetes/kube-apiserver.log"), "{log}");
    assert!(log.contains("| fake kube-apiserver: refusing to start"), "the log's end not shown:\n{log}");
    assert!(!log.contains("starting kube-controller-manager"), "{log}");
    assert!(start.elapsed() < Duration::from_secs(60), "READY_TIMEOUT not honoured: {:?}", start.elapsed());

    // The supervisors of etcd and the apiserver run (the apiserver's restarting it); reset stops them all.
    let mut pids = Vec::new();
    for s in ["etcd", "kube-apiserver"] {
        let sup = pid_file(&format!("{RUN_DIR}/supervisor-{s}.pid")).unwrap_or_else(|| panic!("no supervisor of {s}"));
        assert!(alive(sup), "supervisor of {s} not running");
        pids.push(sup);
    }
    let etcd = service_processes("etcd");
    assert_eq!(etcd.len(), 1, "etcd processes: {etcd:?}");
    pids.extend(etcd);
    let out = script(&["reset"]);
    assert!(out.status.success(), "reset failed:\n{}", text(&out));
    assert_nothing_left(&pids);
    for f in ["/etc/kubernetes/admin.conf", "/etc/kubernetes/pki/ca.key", "/var/lib/rustkube", RUN_DIR] {
        assert!(!Path::new(f).exists(), "{f} left after reset");
    }
}

#[test]
fn an_external_etcd_with_its_own_ca_holds_the_cluster_and_outlives_reset() {
    let bins = integration::snapshot_bin_dir();
    // An etcd cluster of the operator's, with a CA that is not the cluster's.
    let outside = tempfile::tempdir().expect("temp dir");
    integration::ApiServer::generate_pki(outside.path(), 6443).expect("external etcd PKI");
    let etcd = integration::Etcd::start_tls(outside.path()).expect("external etcd");
    let file = |p: &str| outside.path().join(p).display().to_string();
    let (ca, cert, key) = (
        file(kube_pki::paths::ETCD_CA.cert),
        file(kube_pki::paths::APISERVER_ETCD_CLIENT.cert),
        file(kube_pki::paths::APISERVER_ETCD_CLIENT.key),
    );
    let etcdctl = |args: &[&str]| {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                format!("--endpoints={}", etcd.client_url),
                format!("--cacert={ca}"),
                format!("--cert={cert}"),
                format!("--key={key}"),
            ])
            .args(args)
            .output()
            .expect("etcdctl");
        assert!(out.status.success(), "etcdctl {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let _cluster = Cluster;
    let bin_dir = bins.path().display().to_string();
    let out = script(&[
        "--no-systemd",
        "--bin-dir",
        &bin_dir,
        "--etcd-servers",
        &etcd.client_url,
        "--etcd-cafile",
        &ca,
        "--etcd-certfile",
        &cert,
        "--etcd-keyfile",
        &key,
    ]);
    let log = text(&out);
    assert!(out.status.success(), "init-cluster.sh failed:\n{log}");
    assert!(log.contains("using external etcd") && !log.contains("starting etcd"), "{log}");
    assert!(node_ready(), "node not Ready");
    // No etcd of the script's own; the cluster lives in the external one.
    assert!(service_processes("etcd").is_empty(), "the script started an etcd: {:?}", service_processes("etcd"));
    assert!(pid_file(&format!("{RUN_DIR}/supervisor-etcd.pid")).is_none());
    kubectl(&["create", "configmap", "kept-outside", "--from-literal=k=v"]);
    let keys = etcdctl(&["get", "/registry/configmaps/default/kept-outside", "--keys-only"]);
    assert!(keys.contains("/registry/configmaps/default/kept-outside"), "{keys}");

    // reset takes down what the script started, not the operator's etcd or its data.
    let out = script(&["reset"]);
    assert!(out.status.success(), "reset failed:\n{}", text(&out));
    assert!(!Path::new("/etc/kubernetes/pki/external-etcd").exists(), "the copies of the etcd client files left");
    let keys = etcdctl(&["get", "/registry/configmaps/default/kept-outside", "--keys-only"]);
    assert!(keys.contains("kept-outside"), "reset touched the external etcd: {keys}");
}
