//! A highly available control plane from `scripts/init-cluster.sh`: the first
//! control-plane node on this machine (`--control-plane-endpoint VIP:6443`),
//! two more joined with `token create --control-plane` / `join --control-plane`
//! as network-namespace hosts on a bridge (`--root DIR`), each with its own
//! etcd member, apiserver, leader-elected controller-manager and scheduler, and
//! a kubelet (as kubeadm's control-plane nodes have).
//!
//! The endpoint is what upstream expects in front of the apiservers: a load
//! balancer with health checks. The test plays it with an nft table on the
//! machine that DNATs the VIP (an address outside the bridge's subnet, routed
//! through the machine) over the apiservers it lists, and takes a node out of
//! the list when that node's apiserver is killed, as a load balancer's health
//! check would.
//!
//! Checked: three started etcd members; every apiserver answers; after killing
//! the controller-manager and scheduler that hold the Leases and the apiserver
//! and etcd member of the controller-manager leader's node, the Leases move to
//! another holder and a new Deployment's pods are created, scheduled and run.
//! Then every node is reset and no process, netns, mount or nft table is left.
//! Shares the machine's ports and /etc/kubernetes with the other init_cluster
//! tests (nextest group `init-cluster`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
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

/// The script on this machine's network (the first control-plane node).
fn script(args: &[&str]) -> Output {
    Command::new(script_path()).args(args).output().expect("running init-cluster.sh")
}

/// The script in a host's network namespace (and the machine's mount namespace).
fn script_in(netns: &str, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .arg(script_path())
        .args(args)
        .output()
        .expect("nsenter init-cluster.sh")
}

/// The machine's address as the script finds it (the source of the route to 10.255.255.255).
fn machine_address() -> String {
    let out = Command::new("ip").args(["-4", "route", "get", "10.255.255.255"]).output().expect("ip route get");
    let s = String::from_utf8_lossy(&out.stdout);
    let mut words = s.split_whitespace();
    while let Some(w) = words.next() {
        if w == "src" {
            return words.next().unwrap_or("127.0.0.1").to_string();
        }
    }
    "127.0.0.1".to_string()
}

/// A bridge on the machine and hosts (network namespaces) plugged into it.
struct Hosts {
    id: u32,
    bridge: String,
    netns: Vec<String>,
}

impl Hosts {
    fn new(n: usize) -> Hosts {
        let id = std::process::id() % 250 + 1;
        let bridge = format!("rkhb{id}");
        let netns = (0..n).map(|i| format!("rkhn{id}{}", (b'a' + i as u8) as char)).collect();
        let h = Hosts { id, bridge: bridge.clone(), netns };
        h.teardown();
        assert!(sh(&["ip", "link", "add", &bridge, "type", "bridge"]));
        assert!(sh(&["ip", "addr", "add", &format!("{}/24", h.gateway()), "dev", &bridge]));
        assert!(sh(&["ip", "link", "set", &bridge, "up"]));
        for (i, ns) in h.netns.iter().enumerate() {
            let veth = format!("rkhv{id}{}", (b'a' + i as u8) as char);
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
        format!("172.28.{}.254", self.id)
    }

    fn address(&self, i: usize) -> String {
        format!("172.28.{}.{}", self.id, i + 1)
    }

    /// The control-plane endpoint: off the bridge's subnet, so every host routes it through the machine.
    fn vip(&self) -> String {
        format!("10.254.{}.1", self.id)
    }

    fn lb_table(&self) -> String {
        format!("rkha{}", self.id)
    }

    /// Points the VIP's port 6443 at these apiservers (random choice per connection), replacing
    /// the previous list in one transaction. Connections that leave through the bridge are
    /// masqueraded, so that replies come back through the machine (and a host may reach itself).
    fn balance(&self, backends: &[String]) {
        let target = if backends.len() == 1 {
            backends[0].clone()
        } else {
            let elems: Vec<String> = backends.iter().enumerate().map(|(i, b)| format!("{i} : {b}")).collect();
            format!("numgen random mod {} map {{ {} }}", backends.len(), elems.join(", "))
        };
        let (t, vip, br) = (self.lb_table(), self.vip(), &self.bridge);
        let rules = format!(
            "table ip {t} {{}}\ndelete table ip {t}\ntable ip {t} {{\n\
             chain pre {{ type nat hook prerouting priority dstnat - 10; policy accept; ip daddr {vip} tcp dport 6443 dnat to {target}; }}\n\
             chain out {{ type nat hook output priority -110; policy accept; ip daddr {vip} tcp dport 6443 dnat to {target}; }}\n\
             chain post {{ type nat hook postrouting priority srcnat - 10; policy accept; oifname \"{br}\" ct original ip daddr {vip} masquerade; }}\n}}\n"
        );
        let out = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().expect("stdin").write_all(rules.as_bytes())?;
                c.wait_with_output()
            })
            .expect("nft");
        assert!(out.status.success(), "nft -f:\n{rules}\n{}", text(&out));
    }

    fn teardown(&self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new(args[0]).args(&args[1..]).stderr(Stdio::null()).status();
        };
        quiet(&["nft", "delete", "table", "ip", &self.lb_table()]);
        for ns in &self.netns {
            quiet(&["ip", "netns", "del", ns]);
        }
        quiet(&["ip", "link", "del", &self.bridge]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Resets the joined nodes and the first one even when the test fails half-way.
struct Cluster<'a> {
    joined: Vec<(&'a str, PathBuf)>,
}

impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut nodes = vec![Node { root: String::new(), address: "this machine".into() }];
            nodes.extend(
                self.joined.iter().map(|(ns, r)| Node { root: r.display().to_string(), address: ns.to_string() }),
            );
            for n in &nodes {
                eprintln!("{}", n.logs());
            }
        }
        for (ns, root) in &self.joined {
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

/// One control-plane node: where it lives (its --root, "" for the machine) and its address.
struct Node {
    root: String,
    address: String,
}

impl Node {
    /// The last lines of each of the node's service logs, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        for svc in ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "containerd"] {
            let log = self.log(svc);
            let lines: Vec<&str> = log.lines().collect();
            out.push_str(&format!(
                "--- {svc}.log of {}:\n{}\n",
                self.address,
                lines[lines.len().saturating_sub(25)..].join("\n")
            ));
        }
        out
    }

    fn log(&self, service: &str) -> String {
        std::fs::read_to_string(format!("{}/var/log/kubernetes/{service}.log", self.root)).unwrap_or_default()
    }

    /// Kills a service the way a crash would: its supervisor (so that nothing restarts it),
    /// then the process, both with SIGKILL (a leader holds its Lease until the Lease expires).
    fn kill(&self, service: &str) {
        for f in [format!("supervisor-{service}.pid"), format!("{service}.pid")] {
            let path = format!("{}/run/rustkube/{f}", self.root);
            let pid = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(sh(&["kill", "-KILL", pid.trim()]), "kill {service} ({path}: {pid})");
        }
    }
}

fn lease_holder(name: &str) -> String {
    ok(&["-n", "kube-system", "get", "lease", name, "-o", "jsonpath={.spec.holderIdentity}"])
}

/// Which node's log says it acquired `lease` as `identity`.
fn holder_node(nodes: &[Node], service: &str, identity: &str) -> Option<usize> {
    nodes
        .iter()
        .position(|n| n.log(service).lines().any(|l| l.contains("acquired the leader lease") && l.contains(identity)))
}

/// etcdctl towards the member at `endpoint`, with the first node's client certificate (any member trusts it).
fn etcdctl(endpoint: &str, args: &[&str]) -> Output {
    let pki = "/etc/kubernetes/pki";
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=15s")
        .arg(format!("--cacert={pki}/etcd/ca.crt"))
        .arg(format!("--cert={pki}/apiserver-etcd-client.crt"))
        .arg(format!("--key={pki}/apiserver-etcd-client.key"))
        .args(args)
        .output()
        .expect("etcdctl")
}

#[test]
fn three_control_plane_nodes_survive_losing_the_leaders_and_an_apiserver_with_its_etcd() {
    let bin_dir = integration::bin_dir().display().to_string();
    let hosts = Hosts::new(2);
    let roots: Vec<tempfile::TempDir> =
        (0..2).map(|_| tempfile::Builder::new().prefix("rk-node-").tempdir_in("/var/tmp").expect("temp dir")).collect();
    let names: Vec<String> = (0..2).map(|i| format!("rkh{}-cp{}", hosts.id, i + 2)).collect();
    let mut nodes = vec![Node { root: String::new(), address: machine_address() }];
    for (i, root) in roots.iter().enumerate() {
        nodes.push(Node { root: root.path().display().to_string(), address: hosts.address(i) });
    }
    let mut backends = vec![nodes[0].address.clone()];
    hosts.balance(&backends);
    let _cluster = Cluster {
        joined: hosts.netns.iter().map(String::as_str).zip(roots.iter().map(|r| r.path().to_path_buf())).collect(),
    };

    let endpoint = format!("{}:6443", hosts.vip());
    let out = script(&["--bin-dir", &bin_dir, "--control-plane-endpoint", &endpoint]);
    assert!(out.status.success(), "init-cluster.sh --control-plane-endpoint failed:\n{}", text(&out));
    let server = ok(&["config", "view", "-o", "jsonpath={.clusters[0].cluster.server}"]);
    assert_eq!(server, format!("https://{endpoint}"), "admin.conf's server");

    // A worker's token does not make a control-plane node.
    let worker = format!("rkh{}-w", hosts.id);
    let worker_token = script(&["token", "create", "--node-name", &worker, "--bin-dir", &bin_dir]);
    assert!(worker_token.status.success(), "token create: {}", text(&worker_token));
    let scratch = tempfile::Builder::new().prefix("rk-node-").tempdir_in("/var/tmp").expect("temp dir");
    let scratch_root = scratch.path().display().to_string();
    let mut args = join_args(&text(&worker_token));
    args.extend(["--control-plane", "--root", &scratch_root, "--bin-dir", &bin_dir].map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = script_in(&hosts.netns[0], &refs);
    assert!(!refused.status.success(), "a worker's token joined a control-plane node:\n{}", text(&refused));
    assert!(text(&refused).contains("was made for a worker"), "{}", text(&refused));
    let _ = script_in(&hosts.netns[0], &["reset", "--root", &scratch_root]);
    for (i, name) in names.iter().enumerate() {
        let token = script(&["token", "create", "--node-name", name, "--control-plane", "--bin-dir", &bin_dir]);
        let token_out = text(&token);
        assert!(token.status.success(), "token create --control-plane: {token_out}");
        let mut args = join_args(&token_out);
        assert!(args.iter().any(|a| a == "--control-plane"), "{token_out}");
        assert_eq!(args.iter().position(|a| a == "--server").map(|p| args[p + 1].clone()), Some(server.clone()));
        args.extend(["--root".to_string(), nodes[i + 1].root.clone(), "--bin-dir".to_string(), bin_dir.clone()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = script_in(&hosts.netns[i], &refs);
        assert!(
            out.status.success() && text(&out).contains(&format!("control-plane node {name} joined")),
            "join --control-plane of {name} failed:\n{}\n{}",
            text(&out),
            nodes[i + 1].logs()
        );
        // The load balancer's health check finds the new apiserver.
        backends.push(nodes[i + 1].address.clone());
        hosts.balance(&backends);
    }

    // Three started etcd members, named after their nodes.
    let members = etcdctl("https://127.0.0.1:2379", &["member", "list"]);
    assert!(members.status.success(), "etcdctl member list: {}", text(&members));
    let listing = String::from_utf8_lossy(&members.stdout).to_string();
    let started: Vec<&str> = listing.lines().filter(|l| l.split(", ").nth(1) == Some("started")).collect();
    assert_eq!(started.len(), 3, "etcd members:\n{listing}");
    for name in &names {
        assert!(started.iter().any(|l| l.split(", ").nth(2) == Some(name.as_str())), "no member {name}:\n{listing}");
    }

    // Every apiserver answers on its own address with its own certificate, and sees the three nodes Ready.
    for n in &nodes {
        let out = kubectl(&[
            &format!("--server=https://{}:6443", n.address),
            "get",
            "nodes",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
        ]);
        assert!(out.status.success(), "apiserver at {}: {}", n.address, text(&out));
        let ready = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.ends_with("=True")).count();
        assert_eq!(ready, 3, "nodes Ready through {}: {}", n.address, text(&out));
    }
    // Every controller-manager and scheduler runs, and all but one stand by.
    for n in &nodes {
        for svc in ["kube-controller-manager", "kube-scheduler"] {
            assert!(n.log(svc).contains("attempting to acquire the leader lease"), "{svc} on {}", n.address);
        }
    }

    let cm_identity = lease_holder("kube-controller-manager");
    let sched_identity = lease_holder("kube-scheduler");
    let cm_node = holder_node(&nodes, "kube-controller-manager", &cm_identity)
        .unwrap_or_else(|| panic!("no controller-manager log says it holds the Lease as {cm_identity}"));
    let sched_node = holder_node(&nodes, "kube-scheduler", &sched_identity)
        .unwrap_or_else(|| panic!("no scheduler log says it holds the Lease as {sched_identity}"));
    eprintln!(
        "leaders: controller-manager on {} ({cm_identity}), scheduler on {} ({sched_identity}); \
         killing those and the apiserver and etcd member of {}",
        nodes[cm_node].address, nodes[sched_node].address, nodes[cm_node].address
    );

    // The leaders crash, and so do the apiserver and etcd member of the controller-manager leader's node.
    nodes[cm_node].kill("kube-controller-manager");
    nodes[sched_node].kill("kube-scheduler");
    nodes[cm_node].kill("kube-apiserver");
    nodes[cm_node].kill("etcd");
    backends.retain(|b| *b != nodes[cm_node].address);
    hosts.balance(&backends);
    let dead = format!("https://{}:6443", nodes[cm_node].address);
    assert!(!kubectl(&[&format!("--server={dead}"), "--request-timeout=5s", "get", "--raw", "/readyz"])
        .status
        .success());

    // The Leases move to the survivors.
    let started_at = Instant::now();
    let new_cm = eventually("another controller-manager holding the Lease", Duration::from_secs(90), || {
        let h = kubectl(&[
            "-n",
            "kube-system",
            "get",
            "lease",
            "kube-controller-manager",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        let h = String::from_utf8_lossy(&h.stdout).trim().to_string();
        (!h.is_empty() && h != cm_identity).then_some(h)
    });
    let new_sched = eventually("another scheduler holding the Lease", Duration::from_secs(90), || {
        let h =
            kubectl(&["-n", "kube-system", "get", "lease", "kube-scheduler", "-o", "jsonpath={.spec.holderIdentity}"]);
        let h = String::from_utf8_lossy(&h.stdout).trim().to_string();
        (!h.is_empty() && h != sched_identity).then_some(h)
    });
    let new_cm_node = eventually("the new controller-manager leader's log", Duration::from_secs(10), || {
        holder_node(&nodes, "kube-controller-manager", &new_cm)
    });
    let new_sched_node = eventually("the new scheduler leader's log", Duration::from_secs(10), || {
        holder_node(&nodes, "kube-scheduler", &new_sched)
    });
    assert_ne!(new_cm_node, cm_node, "the controller-manager Lease went back to the dead node");
    assert_ne!(new_sched_node, sched_node, "the scheduler Lease went back to the dead scheduler's node");
    eprintln!(
        "new leaders after {:?}: controller-manager on {}, scheduler on {}",
        started_at.elapsed(),
        nodes[new_cm_node].address,
        nodes[new_sched_node].address
    );

    // A new Deployment: its ReplicaSet and pods are created, scheduled and run.
    ok(&[
        "create",
        "deployment",
        "ha",
        "--image=docker.io/rustkube/testimage:1.0",
        "--replicas=3",
        "--",
        "sleep",
        "3600",
    ]);
    let placed = eventually("3 pods of Deployment ha scheduled", Duration::from_secs(120), || {
        let out =
            kubectl(&["get", "pods", "-l", "app=ha", "-o", r#"jsonpath={range .items[*]}{.spec.nodeName}{"\n"}{end}"#]);
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        let nodes: Vec<String> = s.lines().filter(|l| !l.is_empty()).map(String::from).collect();
        (nodes.len() == 3).then_some(nodes)
    });
    eprintln!("pods of ha on {placed:?}");
    ok(&["rollout", "status", "deployment/ha", "--timeout=240s"]);
    // The survivors' apiservers serve it (from the two remaining etcd members).
    for (i, n) in nodes.iter().enumerate().filter(|(i, _)| *i != cm_node) {
        let ready = ok(&[
            &format!("--server=https://{}:6443", n.address),
            "get",
            "deployment",
            "ha",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]);
        assert_eq!(ready, "3", "Deployment ha through node {i}'s apiserver");
    }
    ok(&["delete", "deployment", "ha"]);

    // The operator gives up on the dead node: its member goes (through a survivor). A survivor
    // that is reset then leaves etcd by itself, and the last one is a cluster of one.
    let survivors: Vec<usize> = (0..nodes.len()).filter(|i| *i != cm_node).collect();
    let member_at = |i: usize| format!("https://{}:2379", nodes[i].address);
    let list = etcdctl(&member_at(survivors[0]), &["member", "list"]);
    assert!(list.status.success(), "etcdctl member list: {}", text(&list));
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    let dead_peer = format!("https://{}:2380", nodes[cm_node].address);
    let dead_id = list
        .lines()
        .find(|l| l.split(", ").nth(3) == Some(dead_peer.as_str()))
        .and_then(|l| l.split(", ").next())
        .unwrap_or_else(|| panic!("no member with peer URL {dead_peer}:\n{list}"))
        .to_string();
    let removed = etcdctl(&member_at(survivors[0]), &["member", "remove", &dead_id]);
    assert!(removed.status.success(), "etcdctl member remove {dead_id}: {}", text(&removed));
    let leaving = survivors.iter().copied().find(|i| *i != 0).expect("a joined node survives");
    let staying = survivors.iter().copied().find(|i| *i != leaving).expect("two survivors");
    let out = script_in(&hosts.netns[leaving - 1], &["reset", "--root", &nodes[leaving].root]);
    assert!(out.status.success(), "reset of {}: {}", names[leaving - 1], text(&out));
    assert!(text(&out).contains(&format!("removing etcd member {}", names[leaving - 1])), "{}", text(&out));
    let list = etcdctl(&member_at(staying), &["member", "list"]);
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    let own_peer = format!("https://{}:2380", nodes[staying].address);
    assert!(
        list.lines().count() == 1 && list.lines().all(|l| l.split(", ").nth(3) == Some(own_peer.as_str())),
        "the last member alone:\n{list}"
    );

    // Reset every node: nothing of the cluster is left.
    for (i, ns) in hosts.netns.iter().enumerate() {
        let root = &nodes[i + 1].root;
        let out = script_in(ns, &["reset", "--root", root]);
        assert!(out.status.success(), "reset of {}: {}", names[i], text(&out));
    }
    let out = script(&["reset"]);
    assert!(out.status.success(), "reset: {}", text(&out));
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    assert!(!mounts.contains("/var/lib/kubelet/"), "mounts left:\n{mounts}");
    for n in &nodes[1..] {
        assert!(!mounts.contains(&n.root), "mounts left under {}:\n{mounts}", n.root);
        let left: Vec<PathBuf> = walk(Path::new(&n.root));
        let kept =
            |p: &PathBuf| *p == Path::new(&n.root).join("var") || p.starts_with(Path::new(&n.root).join("var/log"));
        assert!(left.iter().all(kept), "left under {} (only logs may stay): {left:?}", n.root);
    }
    let mut pattern = String::from(
        "/etc/kubernetes/|containerd-shim-runc-v2 -namespace k8s.io -id [0-9a-f]+ -address /run/containerd/",
    );
    for n in &nodes[1..] {
        pattern.push_str(&format!("|{}/", n.root));
    }
    let procs = Command::new("pgrep").args(["-a", "-f", &pattern]).output().expect("pgrep");
    assert!(String::from_utf8_lossy(&procs.stdout).trim().is_empty(), "left running: {}", text(&procs));
    hosts.teardown();
    let netns = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(!hosts.netns.iter().any(|ns| netns.contains(ns.as_str())), "netns left: {netns}");
    let tables = Command::new("nft").args(["list", "tables"]).output().expect("nft list tables");
    let tables = String::from_utf8_lossy(&tables.stdout);
    let ours = [
        "table ip kube-proxy".to_string(),
        "table ip rustkube-cni".to_string(),
        format!("table ip {}", hosts.lb_table()),
    ];
    assert!(!tables.lines().any(|l| ours.iter().any(|t| t == l)), "nft tables left: {tables}");
    assert!(!Command::new("ip").args(["link", "show", "rkbr0"]).output().expect("ip").status.success(), "bridge left");
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
