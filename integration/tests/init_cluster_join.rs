//! A control plane and two workers from `scripts/init-cluster.sh`: the control
//! plane (and its own node) on this machine, then `token create` and `join`
//! for two workers, each a network namespace plugged into a bridge with its own
//! node tree (`join --root DIR`: kubeconfigs, kubelet dir, containerd). Pods
//! spread across both workers reach each other by IP and through a Service;
//! a used token and a wrong CA hash are refused. Shares the machine's ports and
//! /etc/kubernetes with the other init_cluster tests (nextest group
//! `init-cluster`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    integration::repo_root()
}

fn script_path() -> String {
    repo().join("scripts/init-cluster.sh").display().to_string()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn sh(args: &[&str]) -> bool {
    Command::new(args[0]).args(&args[1..]).status().map(|s| s.success()).unwrap_or(false)
}

/// The script on this machine's network (the control plane).
fn script(args: &[&str]) -> Output {
    Command::new(script_path()).args(args).output().expect("running init-cluster.sh")
}

/// The script in a worker's network namespace (and the machine's mount namespace, so that
/// cgroups and /sys stay the machine's, as on a separate host).
fn script_in(netns: &str, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .arg(script_path())
        .args(args)
        .output()
        .expect("nsenter init-cluster.sh")
}

/// A bridge on the machine and worker hosts (network namespaces) plugged into it.
struct Hosts {
    id: u32,
    bridge: String,
    netns: Vec<String>,
}

impl Hosts {
    fn new(n: usize) -> Hosts {
        let id = std::process::id() % 250 + 1;
        let bridge = format!("rkjb{id}");
        let netns = (0..n).map(|i| format!("rkjn{id}{}", (b'a' + i as u8) as char)).collect();
        let h = Hosts { id, bridge: bridge.clone(), netns };
        h.teardown();
        assert!(sh(&["ip", "link", "add", &bridge, "type", "bridge"]));
        assert!(sh(&["ip", "addr", "add", &format!("{}/24", h.gateway()), "dev", &bridge]));
        assert!(sh(&["ip", "link", "set", &bridge, "up"]));
        for (i, ns) in h.netns.iter().enumerate() {
            let veth = format!("rkjv{id}{}", (b'a' + i as u8) as char);
            assert!(sh(&["ip", "netns", "add", ns]));
            assert!(sh(&["ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns]));
            assert!(sh(&["ip", "link", "set", &veth, "master", &bridge, "up"]));
            assert!(sh(&["ip", "-n", ns, "addr", "add", &format!("{}/24", h.address(i)), "dev", "eth0"]));
            assert!(sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]));
            assert!(sh(&["ip", "-n", ns, "link", "set", "lo", "up"]));
            assert!(sh(&["ip", "-n", ns, "route", "add", "default", "via", &h.gateway()]));
        }
        h
    }

    fn gateway(&self) -> String {
        format!("172.29.{}.254", self.id)
    }

    fn address(&self, i: usize) -> String {
        format!("172.29.{}.{}", self.id, i + 1)
    }

    fn teardown(&self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("ip").args(args).stderr(std::process::Stdio::null()).status();
        };
        for ns in &self.netns {
            quiet(&["netns", "del", ns]);
        }
        quiet(&["link", "del", &self.bridge]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Resets the workers and the control plane even when the test fails half-way.
struct Cluster<'a> {
    workers: Vec<(&'a str, PathBuf)>,
}

impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        for (ns, root) in &self.workers {
            let _ = script_in(ns, &["reset", "--root", &root.display().to_string()]);
        }
        let _ = script(&["reset"]);
    }
}

fn kubectl(args: &[&str]) -> Output {
    Command::new(integration::kubectl_path("1.33"))
        .arg("--kubeconfig=/etc/kubernetes/admin.conf")
        .args(args)
        .output()
        .expect("kubectl")
}

fn ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn kubectl_apply(yaml: &str) {
    use std::io::Write;
    let mut child = Command::new(integration::kubectl_path("1.33"))
        .args(["--kubeconfig=/etc/kubernetes/admin.conf", "apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl apply");
    child.stdin.take().expect("stdin").write_all(yaml.as_bytes()).expect("writing the manifest");
    let out = child.wait_with_output().expect("kubectl apply");
    assert!(out.status.success(), "kubectl apply: {}\n{yaml}", text(&out));
}

fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `join` arguments from `token create`'s output (its last line is the join command).
fn join_args(token_output: &str) -> Vec<String> {
    let line = token_output.lines().rev().find(|l| l.contains(" join ")).expect("a join command");
    line.split_whitespace().skip_while(|w| *w != "join").map(String::from).collect()
}

#[test]
fn workers_join_and_pods_across_them_reach_each_other_and_a_service() {
    let bin_dir = integration::bin_dir().display().to_string();
    let hosts = Hosts::new(2);
    let roots: Vec<tempfile::TempDir> =
        (0..2).map(|_| tempfile::Builder::new().prefix("rk-node-").tempdir_in("/var/tmp").expect("temp dir")).collect();
    let names: Vec<String> = (0..2).map(|i| format!("rkj{}-w{}", hosts.id, i + 1)).collect();
    let _cluster = Cluster {
        workers: hosts.netns.iter().map(String::as_str).zip(roots.iter().map(|r| r.path().to_path_buf())).collect(),
    };

    let out = script(&["--bin-dir", &bin_dir]);
    assert!(out.status.success(), "init-cluster.sh failed:\n{}", text(&out));

    let mut first_join = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let token = script(&["token", "create", "--node-name", name, "--bin-dir", &bin_dir]);
        let token_out = text(&token);
        assert!(token.status.success(), "token create: {token_out}");
        assert!(token_out.contains("--discovery-token-ca-cert-hash sha256:"), "{token_out}");
        let mut args = join_args(&token_out);
        if i == 0 {
            first_join = args.clone();
        }
        let root = roots[i].path().display().to_string();
        args.extend(["--root".to_string(), root, "--bin-dir".to_string(), bin_dir.clone()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = script_in(&hosts.netns[i], &refs);
        assert!(out.status.success(), "join of {name} failed:\n{}", text(&out));
        assert!(out.status.success() && text(&out).contains(&format!("node {name} joined")), "{}", text(&out));
    }

    // A token joins one node once; a server whose CA does not match the pin is refused.
    let scratch = tempfile::Builder::new().prefix("rk-node-").tempdir_in("/var/tmp").expect("temp dir");
    let scratch_root = scratch.path().display().to_string();
    let mut again = first_join.clone();
    again.extend(["--root".to_string(), scratch_root.clone(), "--bin-dir".to_string(), bin_dir.clone()]);
    let refs: Vec<&str> = again.iter().map(String::as_str).collect();
    let reused = script_in(&hosts.netns[1], &refs);
    assert!(!reused.status.success(), "a used token joined again:\n{}", text(&reused));
    assert!(text(&reused).contains("the token cannot read"), "{}", text(&reused));
    let mut wrong = first_join.clone();
    if let Some(pos) = wrong.iter().position(|a| a == "--discovery-token-ca-cert-hash") {
        wrong[pos + 1] = format!("sha256:{}", "0".repeat(64));
    }
    wrong.extend(["--root".to_string(), scratch_root.clone(), "--bin-dir".to_string(), bin_dir.clone()]);
    let refs: Vec<&str> = wrong.iter().map(String::as_str).collect();
    let refused = script_in(&hosts.netns[1], &refs);
    assert!(!refused.status.success(), "joined a server with another CA:\n{}", text(&refused));
    assert!(text(&refused).contains("refusing to join"), "{}", text(&refused));
    let _ = script_in(&hosts.netns[1], &["reset", "--root", &scratch_root]);

    for (i, name) in names.iter().enumerate() {
        let ready = ok(&["get", "node", name, "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#]);
        assert_eq!(ready, "True", "{name}");
        let ip = ok(&["get", "node", name, "-o", r#"jsonpath={.status.addresses[?(@.type=="InternalIP")].address}"#]);
        assert_eq!(ip, hosts.address(i), "{name}'s InternalIP");
        ok(&["label", "node", name, &format!("rustkube.test/pool=join{}", hosts.id), "--overwrite"]);
    }

    // One web pod per worker (required anti-affinity on the host name), and a client on the first worker.
    let pool = format!("join{}", hosts.id);
    kubectl_apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: default}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      nodeSelector: {{rustkube.test/pool: {pool}}}
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {{matchLabels: {{app: web}}}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: web
        image: docker.io/rustkube/testimage:1.0
        command: [sh, -c, "hostname > /www/host.txt; exec httpd -f -p 80 -h /www"]
        ports: [{{containerPort: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: default}}
spec:
  nodeName: {client_node}
  containers:
  - name: client
    image: docker.io/rustkube/testimage:1.0
    command: [sleep, "3600"]
"#,
        client_node = names[0]
    ));
    ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    eventually("the client pod Running", Duration::from_secs(120), || {
        (ok(&["get", "pod", "client", "-o", "jsonpath={.status.phase}"]) == "Running").then_some(())
    });
    let listing = ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{"\n"}{end}"#,
    ]);
    let web: Vec<(String, String, String)> = listing
        .lines()
        .filter_map(|l| {
            let mut p = l.split_whitespace().map(String::from);
            Some((p.next()?, p.next()?, p.next()?))
        })
        .collect();
    let nodes: BTreeSet<&str> = web.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(nodes, names.iter().map(String::as_str).collect(), "web pods not spread over both workers: {listing}");

    // An HTTP GET from the client pod (busybox nc: the static busybox's wget crashes resolving "http").
    let fetch = |ip: &str| -> Option<String> {
        let get = format!(r#"printf 'GET /host.txt HTTP/1.0\r\n\r\n' | nc -w 3 {ip} 80"#);
        let out = kubectl(&["exec", "client", "--", "sh", "-c", &get]);
        let reply = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = reply.split_once("\r\n\r\n")?;
        (out.status.success() && head.starts_with("HTTP/1.1 200")).then(|| body.trim().to_string())
    };
    // Pod to pod: the client on worker 1 reaches both web pods by IP, the other worker's across the bridge.
    for (pod, node, ip) in &web {
        let got = eventually(&format!("client → {pod} on {node} ({ip})"), Duration::from_secs(60), || fetch(ip));
        assert_eq!(&got, pod, "{ip} answered as another pod");
    }
    // Through the Service's ClusterIP: kube-proxy on worker 1 balances over both nodes' endpoints.
    let cluster_ip = ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let mut seen = BTreeSet::new();
    let want: BTreeSet<String> = web.iter().map(|(p, _, _)| p.clone()).collect();
    eventually(&format!("both web pods behind {cluster_ip}"), Duration::from_secs(90), || {
        if let Some(h) = fetch(&cluster_ip) {
            seen.insert(h);
        }
        (seen == want).then_some(())
    });

    ok(&["delete", "pod", "client", "--grace-period=0"]);
    ok(&["delete", "service", "web"]);
    ok(&["delete", "deployment", "web"]);
    for (i, root) in roots.iter().enumerate() {
        let out = script_in(&hosts.netns[i], &["reset", "--root", &root.path().display().to_string()]);
        assert!(out.status.success(), "reset of worker {i}: {}", text(&out));
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let root_str = root.path().display().to_string();
        assert!(!mounts.contains(&root_str), "mounts left under {root_str}:\n{mounts}");
        let left: Vec<PathBuf> = walk(root.path());
        let kept = |p: &PathBuf| *p == root.path().join("var") || p.starts_with(root.path().join("var/log"));
        assert!(left.iter().all(kept), "left under the worker's root (only logs may stay): {left:?}");
        let shims = Command::new("pgrep").args(["-f", &format!("{root_str}/")]).output().expect("pgrep");
        assert!(String::from_utf8_lossy(&shims.stdout).trim().is_empty(), "processes of worker {i} left");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(e.path());
        if e.path().is_dir() && !e.path().is_symlink() {
            out.extend(walk(&e.path()));
        }
    }
    out
}
