//! The generated ruleset loaded into a real kernel with the real nft binary,
//! in network namespaces of the test's own: a "node" namespace that routes
//! between a client namespace and backends on a bridge, with traffic from
//! the client to the virtual addresses. Needs root, `ip`, `nft`,
//! `conntrack`, `busybox` and `python3`; each test uses its own namespaces
//! (so its own table), removed on drop. The `--min-sync-period` test also
//! runs the kube-proxy binary against etcd and the kube-apiserver binary
//! (build it first: `cargo build -p kube-apiserver`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kube_proxy::convert::{self, NodeInfo};
use kube_proxy::model::{Backend, Frontend, FrontendKey, Masquerade, NoEndpoints, Protocol};
use kube_proxy::nft::Runner;
use kube_proxy::ruleset::TableConfig;
use kube_proxy::syncer::{SyncKind, Syncer};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const NODE: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const BRIDGE: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawning a command");
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn backend_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1, 10 + i as u8)
}

/// A node namespace with a client and `n` backends, each serving HTTP on
/// 8080 (`/cgi-bin/who` answers "backend-i REMOTE_ADDR") and UDP on 5353.
struct Lab {
    node: String,
    client: String,
    backends: Vec<String>,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new(n: usize) -> Lab {
        let id = format!("{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let mut lab = Lab {
            node: format!("kpn-{id}"),
            client: format!("kpc-{id}"),
            backends: (0..n).map(|i| format!("kpb{i}-{id}")).collect(),
            children: Vec::new(),
            dir: tempfile::tempdir().expect("a temp dir"),
        };
        for ns in [&lab.node, &lab.client].into_iter().chain(&lab.backends) {
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let node = lab.node.clone();
        run(&["ip", "netns", "exec", &node, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        run(&["ip", "-n", &node, "link", "add", "cl0", "type", "veth", "peer", "name", "eth0", "netns", &lab.client]);
        run(&["ip", "-n", &node, "addr", "add", &format!("{NODE}/24"), "dev", "cl0"]);
        run(&["ip", "-n", &node, "link", "set", "cl0", "up"]);
        // A default route, so that the node's own connections to virtual addresses are routed.
        run(&["ip", "-n", &node, "route", "add", "default", "via", &CLIENT.to_string()]);
        run(&["ip", "-n", &lab.client, "addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"]);
        run(&["ip", "-n", &lab.client, "link", "set", "eth0", "up"]);
        run(&["ip", "-n", &lab.client, "route", "add", "default", "via", &NODE.to_string()]);
        run(&["ip", "-n", &node, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &node, "addr", "add", &format!("{BRIDGE}/24"), "dev", "br0"]);
        run(&["ip", "-n", &node, "link", "set", "br0", "up"]);
        for i in 0..n {
            let ns = lab.backends[i].clone();
            let port = format!("vb{i}");
            run(&["ip", "-n", &node, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            run(&["ip", "-n", &node, "link", "set", &port, "master", "br0", "up"]);
            run(&["ip", "-n", &ns, "addr", "add", &format!("{}/24", backend_ip(i)), "dev", "eth0"]);
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            run(&["ip", "-n", &ns, "route", "add", "default", "via", &BRIDGE.to_string()]);
            let root = lab.dir.path().join(format!("www{i}"));
            std::fs::create_dir_all(root.join("cgi-bin")).expect("www dir");
            std::fs::write(root.join("index.html"), format!("backend-{i}\n")).expect("index");
            let cgi = root.join("cgi-bin/who");
            std::fs::write(
                &cgi,
                format!("#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"backend-{i} $REMOTE_ADDR\"\n"),
            )
            .expect("cgi");
            run(&["chmod", "+x", &cgi.display().to_string()]);
            let httpd = Command::new("ip")
                .args(["netns", "exec", &ns, "busybox", "httpd", "-f", "-p", "8080", "-h"])
                .arg(&root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("httpd");
            lab.children.push(httpd);
            let udp = format!(
                "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',5353))\nwhile True:\n  d,a=s.recvfrom(100)\n  s.sendto(b'backend-{i} '+a[0].encode(),a)\n"
            );
            let udp = Command::new("ip")
                .args(["netns", "exec", &ns, "python3", "-c", &udp])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("udp server");
            lab.children.push(udp);
        }
        // Wait until every backend answers directly.
        for i in 0..n {
            let url = format!("http://{}:8080/", backend_ip(i));
            let ok = (0..50).any(|_| {
                let o = lab.exec(&lab.client, &["curl", "-s", "-m", "1", &url]);
                o.status.success() || {
                    std::thread::sleep(Duration::from_millis(100));
                    false
                }
            });
            assert!(ok, "backend {i} does not answer directly");
        }
        lab
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", ns]).args(args).output().expect("ip netns exec")
    }

    fn syncer(&self) -> Syncer {
        Syncer::new(
            TableConfig { name: "kube-proxy".into(), cluster_cidrs: vec!["10.244.0.0/16".into()] },
            Runner { netns: Some(self.node.clone()) },
        )
    }

    /// `curl` from `ns`; the body, or None when it failed, with curl's exit code.
    fn curl(&self, ns: &str, url: &str) -> Result<String, i32> {
        let o = self.exec(ns, &["curl", "-s", "-m", "2", url]);
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
        } else {
            Err(o.status.code().unwrap_or(-1))
        }
    }

    /// Who answers `n` requests to `url` from the client: name → count.
    fn spread(&self, url: &str, n: usize) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            let body = self.curl(&self.client, url).unwrap_or_else(|code| panic!("curl {url} failed: {code}"));
            let name = body.split_whitespace().next().unwrap_or_default().to_string();
            *seen.entry(name).or_insert(0) += 1;
        }
        seen
    }

    fn udp(&self, ns: &str, ip: Ipv4Addr, port: u16) -> Option<String> {
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1.5)\ns.sendto(b'hi',('{ip}',{port}))\nprint(s.recvfrom(100)[0].decode())\n"
        );
        let o = self.exec(ns, &["python3", "-c", &script]);
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// A UDP exchange from a fixed source port (so from one conntrack entry): who answered.
    fn udp_from(&self, ns: &str, ip: Ipv4Addr, port: u16, source_port: u16) -> Option<String> {
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',{source_port}))\ns.settimeout(1.5)\ns.sendto(b'hi',('{ip}',{port}))\nprint(s.recvfrom(100)[0].decode())\n"
        );
        let o = self.exec(ns, &["python3", "-c", &script]);
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// The node's conntrack entries of `protocol`, one a line.
    fn conntrack(&self, protocol: &str) -> String {
        let o = self.exec(&self.node, &["conntrack", "-L", "-p", protocol]);
        assert!(o.status.success(), "conntrack -L: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs `python3 -c script args...` in `ns` until the lab is dropped.
    fn spawn_python(&mut self, ns: &str, script: &str, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", script])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        self.children.push(child);
    }

    fn nft_list(&self) -> String {
        String::from_utf8_lossy(&self.exec(&self.node, &["nft", "list", "ruleset"]).stdout).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.node, &self.client].into_iter().chain(&self.backends) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn frontend(ip: Ipv4Addr, protocol: Protocol, port: u16, backends: &[usize], target: u16) -> Frontend {
    Frontend {
        key: FrontendKey { ip, protocol, port },
        backends: backends.iter().map(|i| Backend { ip: backend_ip(*i), port: target }).collect(),
        masquerade: Masquerade::OffCluster,
        affinity_timeout: None,
        no_endpoints: NoEndpoints::Reject,
        cluster_backends: Vec::new(),
        service: "default/test:port".into(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn names(seen: &BTreeMap<String, usize>) -> Vec<&str> {
    seen.keys().map(String::as_str).collect()
}

#[test]
fn cluster_ip_spreads_over_every_backend_and_follows_endpoint_changes() {
    let lab = Lab::new(3);
    let rt = rt();
    let mut syncer = lab.syncer();
    let none = BTreeSet::new();
    let url = format!("http://{VIP}/");
    let stats =
        rt.block_on(syncer.sync(vec![frontend(VIP, Protocol::Tcp, 80, &[0, 1, 2], 8080)], &none, false)).unwrap();
    assert_eq!(stats.kind, SyncKind::Full);
    let seen = lab.spread(&url, 40);
    assert_eq!(names(&seen), ["backend-0", "backend-1", "backend-2"], "{seen:?}");

    // One endpoint goes: an incremental change, and it is no longer chosen.
    let stats = rt.block_on(syncer.sync(vec![frontend(VIP, Protocol::Tcp, 80, &[0, 2], 8080)], &none, false)).unwrap();
    assert_eq!(stats.kind, SyncKind::Incremental);
    let seen = lab.spread(&url, 30);
    assert_eq!(names(&seen), ["backend-0", "backend-2"], "{seen:?}");

    // It comes back, and a periodic resync keeps everything working.
    rt.block_on(syncer.sync(vec![frontend(VIP, Protocol::Tcp, 80, &[0, 1, 2], 8080)], &none, false)).unwrap();
    let stats =
        rt.block_on(syncer.sync(vec![frontend(VIP, Protocol::Tcp, 80, &[0, 1, 2], 8080)], &none, true)).unwrap();
    assert_eq!(stats.kind, SyncKind::Resync);
    let seen = lab.spread(&url, 40);
    assert_eq!(names(&seen), ["backend-0", "backend-1", "backend-2"], "{seen:?}");

    // The client is outside the cluster network: backends see the node's address.
    let who = lab.curl(&lab.client, &format!("http://{VIP}/cgi-bin/who")).unwrap();
    assert!(who.contains(&format!(":{BRIDGE}]")), "{who}");
}

#[test]
fn a_service_without_endpoints_refuses_connections_at_once() {
    let lab = Lab::new(1);
    let rt = rt();
    let mut syncer = lab.syncer();
    rt.block_on(syncer.sync(vec![frontend(VIP, Protocol::Tcp, 80, &[], 8080)], &BTreeSet::new(), false)).unwrap();
    let start = std::time::Instant::now();
    // curl exit code 7: could not connect (refused), not 28 (timeout).
    assert_eq!(lab.curl(&lab.client, &format!("http://{VIP}/")), Err(7));
    assert!(start.elapsed() < Duration::from_secs(1));
    // From the node itself (output hook) too.
    assert_eq!(lab.curl(&lab.node, &format!("http://{VIP}/")), Err(7));
    // An endpoint appears: served.
    rt.block_on(syncer.sync(vec![frontend(VIP, Protocol::Tcp, 80, &[0], 8080)], &BTreeSet::new(), false)).unwrap();
    assert_eq!(lab.curl(&lab.client, &format!("http://{VIP}/")).unwrap(), "backend-0");
    assert_eq!(lab.curl(&lab.node, &format!("http://{VIP}/")).unwrap(), "backend-0");
}

#[test]
fn udp_services_reach_every_backend_and_lose_removed_ones() {
    let lab = Lab::new(2);
    let rt = rt();
    let mut syncer = lab.syncer();
    let udp = |b: &[usize]| vec![frontend(VIP, Protocol::Udp, 53, b, 5353)];
    rt.block_on(syncer.sync(udp(&[0, 1]), &BTreeSet::new(), false)).unwrap();
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        let answer = lab.udp(&lab.client, VIP, 53).expect("a UDP answer");
        seen.insert(answer.split_whitespace().next().unwrap_or_default().to_string());
    }
    assert_eq!(seen, BTreeSet::from(["backend-0".to_string(), "backend-1".to_string()]));
    rt.block_on(syncer.sync(udp(&[1]), &BTreeSet::new(), false)).unwrap();
    for _ in 0..10 {
        let answer = lab.udp(&lab.client, VIP, 53).expect("a UDP answer");
        assert!(answer.starts_with("backend-1"), "{answer}");
    }
}

#[test]
fn node_ports_masquerade_with_cluster_policy_and_keep_the_client_with_local_policy() {
    let lab = Lab::new(3);
    let rt = rt();
    let mut syncer = lab.syncer();
    let mut cluster = frontend(NODE, Protocol::Tcp, 30080, &[0, 1, 2], 8080);
    cluster.masquerade = Masquerade::Always;
    // Local policy: only the endpoints on this node (here 1 and 2), client address kept.
    let mut local = frontend(NODE, Protocol::Tcp, 30081, &[1, 2], 8080);
    local.masquerade = Masquerade::Never;
    local.no_endpoints = NoEndpoints::Drop;
    rt.block_on(syncer.sync(vec![cluster.clone(), local.clone()], &BTreeSet::new(), false)).unwrap();

    let seen = lab.spread(&format!("http://{NODE}:30080/cgi-bin/who"), 40);
    assert_eq!(names(&seen), ["backend-0", "backend-1", "backend-2"], "{seen:?}");
    let who = lab.curl(&lab.client, &format!("http://{NODE}:30080/cgi-bin/who")).unwrap();
    assert!(who.contains(&format!(":{BRIDGE}]")), "{who}");

    let seen = lab.spread(&format!("http://{NODE}:30081/cgi-bin/who"), 30);
    assert_eq!(names(&seen), ["backend-1", "backend-2"], "{seen:?}");
    let who = lab.curl(&lab.client, &format!("http://{NODE}:30081/cgi-bin/who")).unwrap();
    assert!(who.contains(&format!(":{CLIENT}]")), "client address not kept: {who}");

    // No local endpoint left: dropped (a timeout, not a refusal).
    local.backends.clear();
    rt.block_on(syncer.sync(vec![cluster, local], &BTreeSet::new(), false)).unwrap();
    assert_eq!(lab.curl(&lab.client, &format!("http://{NODE}:30081/")), Err(28));
}

#[test]
fn client_ip_affinity_keeps_a_client_on_one_backend_until_it_goes() {
    let lab = Lab::new(3);
    let rt = rt();
    let mut syncer = lab.syncer();
    let mut f = frontend(VIP, Protocol::Tcp, 80, &[0, 1, 2], 8080);
    f.affinity_timeout = Some(300);
    rt.block_on(syncer.sync(vec![f.clone()], &BTreeSet::new(), false)).unwrap();
    let seen = lab.spread(&format!("http://{VIP}/"), 15);
    assert_eq!(seen.len(), 1, "{seen:?}");
    let chosen: usize = seen.keys().next().unwrap().trim_start_matches("backend-").parse().unwrap();
    // The chosen backend goes: its record is pruned and the client moves to another one, and stays there.
    f.backends.retain(|b| b.ip != backend_ip(chosen));
    rt.block_on(syncer.sync(vec![f], &BTreeSet::new(), false)).unwrap();
    let seen = lab.spread(&format!("http://{VIP}/"), 15);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(!seen.contains_key(&format!("backend-{chosen}")), "{seen:?}");
}

#[test]
fn a_pod_reaches_itself_through_its_service() {
    let lab = Lab::new(1);
    let rt = rt();
    let mut syncer = lab.syncer();
    // As on a node with a bridge CNI: the bridge hands packets to netfilter
    // and lets a port receive its own frames back (hairpin mode), so the
    // DNAT back to the sender is bridged rather than routed.
    lab.exec(&lab.node, &["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
    run(&["ip", "-n", &lab.node, "link", "set", "vb0", "type", "bridge_slave", "hairpin", "on"]);
    let hairpin = BTreeSet::from([backend_ip(0)]);
    rt.block_on(syncer.sync(vec![frontend(VIP, Protocol::Tcp, 80, &[0], 8080)], &hairpin, false)).unwrap();
    let who = lab.curl(&lab.backends[0], &format!("http://{VIP}/cgi-bin/who")).expect("hairpin connection");
    assert_eq!(who, format!("backend-0 [::ffff:{BRIDGE}]"));
}

#[test]
fn cleanup_removes_only_the_proxy_table() {
    let lab = Lab::new(1);
    let rt = rt();
    lab.exec(&lab.node, &["nft", "add", "table", "ip", "other"]);
    let mut syncer = lab.syncer();
    rt.block_on(syncer.sync(vec![frontend(VIP, Protocol::Tcp, 80, &[0], 8080)], &BTreeSet::new(), false)).unwrap();
    assert!(lab.nft_list().contains("table ip kube-proxy"));
    // The binary's --cleanup (no apiserver needed).
    let cleanup = Command::new(env!("CARGO_BIN_EXE_kube-proxy"))
        .args(["--cleanup", "--nftables-table=kube-proxy", &format!("--netns={}", lab.node)])
        .output()
        .expect("kube-proxy --cleanup");
    assert!(cleanup.status.success(), "{}", String::from_utf8_lossy(&cleanup.stderr));
    let after = lab.nft_list();
    assert!(!after.contains("kube-proxy"), "{after}");
    assert!(after.contains("table ip other"), "{after}");
    // Twice is fine.
    let runner = Runner { netns: Some(lab.node.clone()) };
    rt.block_on(runner.apply(&kube_proxy::ruleset::cleanup_script("kube-proxy"))).unwrap();
}

/// The reply-direction source addresses of the node's conntrack entries of the flow `CLIENT:sport → vip`.
fn reply_sources(conntrack: &str, vip: Ipv4Addr, sport: u16) -> Vec<String> {
    conntrack
        .lines()
        .filter(|l| l.contains(&format!(" src={CLIENT} dst={vip} sport={sport} ")))
        .filter_map(|l| l.split_whitespace().filter(|w| w.starts_with("src=")).nth(1))
        .map(|w| w.trim_start_matches("src=").to_string())
        .collect()
}

fn backend_index(answer: &str) -> usize {
    let name = answer.split_whitespace().next().unwrap_or_default();
    name.strip_prefix("backend-").and_then(|i| i.parse().ok()).unwrap_or_else(|| panic!("not a backend: {answer}"))
}

#[test]
fn removing_a_udp_endpoint_flushes_its_conntrack_entries() {
    let lab = Lab::new(2);
    let rt = rt();
    let mut syncer = lab.syncer();
    let udp = |b: &[usize]| vec![frontend(VIP, Protocol::Udp, 53, b, 5353)];
    rt.block_on(syncer.sync(udp(&[0, 1]), &BTreeSet::new(), false)).unwrap();
    // One flow (a fixed source port): its conntrack entry pins it to the backend first chosen.
    const SPORT: u16 = 45000;
    let first = lab.udp_from(&lab.client, VIP, 53, SPORT).expect("a UDP answer");
    let chosen = backend_index(&first);
    for _ in 0..5 {
        let answer = lab.udp_from(&lab.client, VIP, 53, SPORT).expect("a UDP answer");
        assert_eq!(backend_index(&answer), chosen, "{answer}");
    }
    let ct = lab.conntrack("udp");
    assert_eq!(reply_sources(&ct, VIP, SPORT), [backend_ip(chosen).to_string()], "{ct}");

    // The chosen endpoint leaves the Service (its server keeps running, so a
    // stale entry would keep the flow on it): its entry is deleted...
    let other = 1 - chosen;
    let stats = rt.block_on(syncer.sync(udp(&[other]), &BTreeSet::new(), false)).unwrap();
    assert_eq!(stats.kind, SyncKind::Incremental);
    let ct = lab.conntrack("udp");
    assert!(reply_sources(&ct, VIP, SPORT).is_empty(), "stale entry left:\n{ct}");
    // ...and the same flow's next datagrams reach the remaining endpoint.
    for _ in 0..5 {
        let answer = lab.udp_from(&lab.client, VIP, 53, SPORT).expect("a UDP answer");
        assert_eq!(backend_index(&answer), other, "{answer}");
    }
    let ct = lab.conntrack("udp");
    assert_eq!(reply_sources(&ct, VIP, SPORT), [backend_ip(other).to_string()], "{ct}");
}

/// SCTP packets over raw IP sockets. This kernel has no SCTP stack
/// (`CONFIG_IP_SCTP` is not set, so an SCTP socket fails with "Protocol not
/// supported") while conntrack and NAT handle SCTP: the client sends an
/// association's first packet (an INIT chunk, with a valid CRC32c) and the
/// backend answers with an INIT ACK, which is all conntrack needs to track
/// and NAT the association both ways.
const SCTP_COMMON: &str = r#"
import socket, struct, sys
def crc32c(data):
    crc = 0xffffffff
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xffffffff
def packet(sport, dport, vtag, chunk_type, init_tag):
    chunk = struct.pack('!BBHIIHHI', chunk_type, 0, 20, init_tag, 65535, 1, 1, 1)
    header = struct.pack('!HHII', sport, dport, vtag, 0)
    return header[:8] + struct.pack('<I', crc32c(header + chunk)) + chunk
def parse(data):
    ihl = (data[0] & 15) * 4
    s = data[ihl:]
    sport, dport, vtag = struct.unpack('!HHI', s[:8])
    crc_ok = struct.unpack('<I', s[8:12])[0] == crc32c(s[:8] + bytes(4) + s[12:])
    init_tag = struct.unpack('!I', s[16:20])[0]
    return socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20]), sport, dport, vtag, crc_ok, s[12], init_tag
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
"#;

/// Backend `argv[1]` on port `argv[2]`: answers each valid INIT with an INIT ACK whose tag names it.
const SCTP_SERVER: &str = r#"
index, port = int(sys.argv[1]), int(sys.argv[2])
while True:
    data, _ = sock.recvfrom(2048)
    src, dst, sport, dport, vtag, crc_ok, chunk_type, init_tag = parse(data)
    if chunk_type == 1 and vtag == 0 and crc_ok and dport == port:
        sock.sendto(packet(dport, sport, init_tag, 2, 0xB0000000 + index), (src, 0))
"#;

/// Opens `argv[3]` associations to `argv[1]:argv[2]`, each from its own
/// source port from `argv[4]` on; prints for each who answered, or what was wrong.
const SCTP_CLIENT: &str = r#"
vip, port, count, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sock.settimeout(0.5)
for k in range(count):
    sport, tag = first + k, 0x10000 + k
    sock.sendto(packet(sport, port, 0, 1, tag), (vip, 0))
    result = 'no-answer'
    try:
        while True:
            src, dst, rsport, rdport, vtag, crc_ok, chunk_type, init_tag = parse(sock.recvfrom(2048)[0])
            if chunk_type == 2 and vtag == tag:
                if (src, rsport, rdport, crc_ok) == (vip, port, sport, True):
                    result = 'backend-%d' % (init_tag - 0xB0000000)
                else:
                    result = 'bad-answer:%s:%d->%d:crc=%s' % (src, rsport, rdport, crc_ok)
                break
    except socket.timeout:
        pass
    print(result, flush=True)
"#;

#[test]
fn sctp_cluster_ips_dnat_associations_to_every_backend() {
    let mut lab = Lab::new(2);
    for i in 0..2 {
        let ns = lab.backends[i].clone();
        lab.spawn_python(&ns, &format!("{SCTP_COMMON}{SCTP_SERVER}"), &[&i.to_string(), "9999"]);
    }
    let rt = rt();
    let mut syncer = lab.syncer();
    rt.block_on(syncer.sync(vec![frontend(VIP, Protocol::Sctp, 7777, &[0, 1], 9999)], &BTreeSet::new(), false))
        .unwrap();
    let table = String::from_utf8_lossy(&lab.exec(&lab.node, &["nft", "list", "table", "ip", "kube-proxy"]).stdout)
        .into_owned();
    assert!(table.contains(&format!("{VIP} . sctp . 7777 : goto endpoints-2")), "{table}");
    assert!(table.contains(&format!("{VIP} . sctp . 7777 . 0 : {} . 9999", backend_ip(0))), "{table}");

    // The servers start in the background: wait until one answers.
    let script = format!("{SCTP_COMMON}{SCTP_CLIENT}");
    // Each association from a source port of its own (a new conntrack entry).
    let associate = |count: usize, first_port: u16| -> Vec<String> {
        let (count, first_port) = (count.to_string(), first_port.to_string());
        let o = lab.exec(&lab.client, &["python3", "-c", &script, &VIP.to_string(), "7777", &count, &first_port]);
        assert!(o.status.success(), "sctp client: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()
    };
    let ready = (0..20).any(|i| associate(1, 40000 + i).iter().any(|l| l.starts_with("backend-")));
    assert!(ready, "no SCTP answer through {VIP}:7777:\n{}", lab.conntrack("sctp"));
    let answers = associate(20, 41000);
    let seen: BTreeSet<&str> = answers.iter().map(String::as_str).collect();
    assert_eq!(seen, BTreeSet::from(["backend-0", "backend-1"]), "{answers:?}");
    // Tracked as SCTP associations, DNATed to the target port.
    let ct = lab.conntrack("sctp");
    assert!(ct.contains(&format!("dst={VIP} sport=41000 dport=7777")), "{ct}");
    assert!(ct.contains("sport=9999"), "{ct}");

    // An endpoint goes: new associations reach only the other one.
    rt.block_on(syncer.sync(vec![frontend(VIP, Protocol::Sctp, 7777, &[1], 9999)], &BTreeSet::new(), false)).unwrap();
    let answers = associate(10, 42000);
    assert!(answers.iter().all(|a| a == "backend-1"), "{answers:?}");
}

/// The value of the sample `name` (with its labels, if any) from the proxy's /metrics.
fn metric(metrics_url: &str, name: &str) -> Option<u64> {
    let o = Command::new("curl").args(["-s", "-m", "2", metrics_url]).output().ok()?;
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text.lines().find(|l| l.starts_with(&format!("{name} ")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `kubeproxy_sync_proxy_rules_duration_seconds_count`: the number of syncs so far.
fn sync_count(metrics_url: &str) -> Option<u64> {
    metric(metrics_url, "kubeproxy_sync_proxy_rules_duration_seconds_count")
}

/// The real binary against a real etcd and kube-apiserver (built beforehand:
/// `cargo build -p kube-apiserver`), programming the lab's node namespace
/// (`--netns`): a burst of 50 EndpointSlice changes within
/// `--min-sync-period=2s` is applied in few syncs (each one nft
/// transaction), counted by the sync duration histogram of /metrics, and the
/// rules end as the last change says.
#[test]
fn min_sync_period_batches_a_burst_of_endpoint_changes() {
    let lab = Lab::new(2);
    let etcd = integration::Etcd::start().expect("etcd");
    let apiserver = integration::ApiServer::start(&etcd).expect("kube-apiserver");
    let metrics_port = integration::free_port();
    let healthz_port = integration::free_port();
    let proxy = apiserver
        .start_component(
            "kube-proxy",
            &apiserver.kubeconfig,
            &[
                "--hostname-override=n1",
                &format!("--netns={}", lab.node),
                "--cluster-cidr=10.244.0.0/16",
                "--min-sync-period=2s",
                "--sync-period=1h",
                &format!("--metrics-bind-address=127.0.0.1:{metrics_port}"),
                &format!("--healthz-bind-address=127.0.0.1:{healthz_port}"),
            ],
        )
        .expect("kube-proxy");
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");

    let (code, svc) = apiserver.json(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        })),
    );
    assert_eq!(code, 201, "{svc}");
    let cluster_ip = svc["spec"]["clusterIP"].as_str().expect("a clusterIP").to_string();
    let slice = |backends: &[usize], port: u16| {
        serde_json::json!({
            "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": backends.iter().map(|i| serde_json::json!({
                "addresses": [backend_ip(*i).to_string()], "conditions": {"ready": true}
            })).collect::<Vec<_>>(),
        })
    };
    let slices = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
    let (code, body) = apiserver.json("POST", slices, Some(&slice(&[0], 8080)));
    assert_eq!(code, 201, "{body}");
    let url = format!("http://{cluster_ip}/");
    let served = integration::eventually(Duration::from_secs(20), || lab.curl(&lab.client, &url).ok());
    assert_eq!(served.as_deref(), Some("backend-0"), "kube-proxy log:\n{}", proxy.log());

    // Quiet: no sync pending.
    let mut before = sync_count(&metrics_url).expect("the sync count");
    loop {
        std::thread::sleep(Duration::from_millis(2500));
        let now = sync_count(&metrics_url).expect("the sync count");
        if now == before {
            break;
        }
        before = now;
    }
    let health = Command::new("curl")
        .args(["-s", "-w", " %{http_code}", &format!("http://127.0.0.1:{healthz_port}/healthz")])
        .output()
        .expect("curl");
    let health = String::from_utf8_lossy(&health.stdout).into_owned();
    assert!(health.ends_with(" 200") && health.contains("\"lastUpdated\":\"20"), "{health}");

    // 50 changes as fast as the apiserver takes them; the last one wants both backends on 8080.
    let start = std::time::Instant::now();
    for k in 0..49 {
        let (code, body) = apiserver.json("PATCH", &format!("{slices}/web-1"), Some(&slice(&[k % 2], 9000 + k as u16)));
        assert_eq!(code, 200, "{body}");
    }
    let (code, body) = apiserver.json("PATCH", &format!("{slices}/web-1"), Some(&slice(&[0, 1], 8080)));
    assert_eq!(code, 200, "{body}");
    let burst = start.elapsed();
    // Every change is in once the period after the burst has passed.
    std::thread::sleep(Duration::from_millis(2500));
    let seen = lab.spread(&url, 30);
    assert_eq!(names(&seen), ["backend-0", "backend-1"], "{seen:?}");
    let map = lab.exec(&lab.node, &["nft", "list", "map", "ip", "kube-proxy", "backends"]);
    let map = String::from_utf8_lossy(&map.stdout).into_owned();
    let elements: Vec<&str> = map.split([',', '{', '}']).filter(|e| e.contains(&cluster_ip)).map(str::trim).collect();
    assert_eq!(
        elements,
        [
            format!("{cluster_ip} . tcp . 80 . 0 : {} . 8080", backend_ip(0)),
            format!("{cluster_ip} . tcp . 80 . 1 : {} . 8080", backend_ip(1))
        ],
        "{map}"
    );
    // The rules counts of /metrics are the kernel's: the elements of the
    // maps and sets the proxy fills (all but the packet path's `affinity`),
    // and the chains.
    let table = lab.exec(&lab.node, &["nft", "-j", "list", "table", "ip", "kube-proxy"]);
    let table: serde_json::Value = serde_json::from_slice(&table.stdout).expect("nft -j output");
    let objects = table["nftables"].as_array().expect("nft objects");
    let elements: usize = objects
        .iter()
        .filter_map(|o| o.get("map").or_else(|| o.get("set")))
        .filter(|m| m["name"] != "affinity")
        .map(|m| m["elem"].as_array().map_or(0, Vec::len))
        .sum();
    let chains = objects.iter().filter(|o| o.get("chain").is_some()).count();
    assert!(elements >= 4, "{table}");
    assert_eq!(metric(&metrics_url, "kubeproxy_sync_proxy_rules_nftables_elements"), Some(elements as u64));
    assert_eq!(metric(&metrics_url, "kubeproxy_sync_proxy_rules_nftables_chains"), Some(chains as u64));
    let after = sync_count(&metrics_url).expect("the sync count");
    let syncs = after - before;
    // One sync when the burst starts, then at most one per period (and one
    // more for the watch events' delays). Without batching: 44 syncs here.
    let allowed = 2 + (burst.as_secs_f64() / 2.0).ceil() as u64;
    eprintln!("50 changes in {burst:?}: {syncs} syncs (allowed {allowed})");
    assert!((1..=allowed).contains(&syncs), "{syncs} syncs for 50 changes in {burst:?}\n{}", proxy.log());
}

/// The frontends `convert` makes of Service and EndpointSlice objects (JSON, as the API serves them) on node n1.
fn converted(
    services: &[serde_json::Value],
    slices: &[serde_json::Value],
    nodeport_ips: &[Ipv4Addr],
) -> (Vec<Frontend>, BTreeSet<Ipv4Addr>) {
    let services: Vec<k8s_openapi::api::core::v1::Service> =
        services.iter().map(|s| serde_json::from_value(s.clone()).expect("a Service")).collect();
    let slices: Vec<k8s_openapi::api::discovery::v1::EndpointSlice> =
        slices.iter().map(|s| serde_json::from_value(s.clone()).expect("an EndpointSlice")).collect();
    let node = NodeInfo { name: "n1".into(), nodeport_ips: nodeport_ips.to_vec() };
    convert::frontends(&services, &slices, &node)
}

/// An EndpointSlice of Service `service`: `(backend, node, ready, serving, terminating)` each, with `ports` (name, protocol, port).
fn endpoint_slice(
    service: &str,
    ports: &[(&str, &str, u16)],
    endpoints: &[(usize, &str, bool, bool, bool)],
) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": format!("{service}-1"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": ports.iter().map(|(name, protocol, port)| serde_json::json!({"name": name, "protocol": protocol, "port": port})).collect::<Vec<_>>(),
        "endpoints": endpoints.iter().map(|(i, node, ready, serving, terminating)| serde_json::json!({
            "addresses": [backend_ip(*i).to_string()], "nodeName": node,
            "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        })).collect::<Vec<_>>(),
    })
}

/// externalTrafficPolicy: Local as upstream: an outside client reaches only
/// the node's endpoints and keeps its address (dropped when there is none),
/// while the node itself (masqueraded, 127.0.0.1 included) and pods reach
/// every endpoint of the Service.
#[test]
fn local_policy_node_ports_serve_the_node_and_pods_from_every_endpoint() {
    let lab = Lab::new(3);
    let rt = rt();
    let mut syncer = lab.syncer();
    // Backend 2 plays a pod on this node's bridge (in --cluster-cidr) that is not an endpoint.
    let pod = lab.backends[2].clone();
    // As on a node with a bridge CNI: bridged replies between pods go through conntrack (un-DNAT).
    lab.exec(&lab.node, &["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
    run(&["ip", "netns", "exec", &lab.node, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"]);
    let service = serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "NodePort", "clusterIP": VIP.to_string(), "externalTrafficPolicy": "Local",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30081}]},
    });
    let localhost = Ipv4Addr::LOCALHOST;
    // Both endpoints on another node.
    let remote =
        endpoint_slice("web", &[("http", "TCP", 8080)], &[(0, "n2", true, true, false), (1, "n2", true, true, false)]);
    let (frontends, hairpin) = converted(std::slice::from_ref(&service), &[remote], &[NODE, localhost]);
    rt.block_on(syncer.sync(frontends, &hairpin, false)).unwrap();
    let node_port = format!("http://{NODE}:30081/cgi-bin/who");

    // The outside client: no local endpoint, dropped (a timeout, not a refusal).
    assert_eq!(lab.curl(&lab.client, &node_port), Err(28));
    // The node itself, on its address and on 127.0.0.1: every endpoint, masqueraded.
    for url in [node_port.clone(), format!("http://{localhost}:30081/cgi-bin/who")] {
        let mut seen = BTreeSet::new();
        for _ in 0..20 {
            let who = lab.curl(&lab.node, &url).unwrap_or_else(|code| panic!("{url} from the node: curl {code}"));
            assert!(who.ends_with(&format!(":{BRIDGE}]")), "not masqueraded: {who}");
            seen.insert(backend_index(&who));
        }
        assert_eq!(seen, BTreeSet::from([0, 1]), "{url}");
    }
    // A pod: every endpoint, its own address kept.
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        let who = lab.curl(&pod, &node_port).unwrap_or_else(|code| panic!("{node_port} from a pod: curl {code}"));
        assert!(who.ends_with(&format!(":{}]", backend_ip(2))), "pod address lost: {who}");
        seen.insert(backend_index(&who));
    }
    assert_eq!(seen, BTreeSet::from([0, 1]));

    // Endpoint 1 moves to this node: the outside client reaches it alone, with its address kept...
    let moved =
        endpoint_slice("web", &[("http", "TCP", 8080)], &[(0, "n2", true, true, false), (1, "n1", true, true, false)]);
    let (frontends, hairpin) = converted(&[service], &[moved], &[NODE, localhost]);
    let stats = rt.block_on(syncer.sync(frontends, &hairpin, false)).unwrap();
    assert_eq!(stats.kind, SyncKind::Incremental);
    for _ in 0..10 {
        let who = lab.curl(&lab.client, &node_port).expect("the local endpoint");
        assert_eq!(who, format!("backend-1 [::ffff:{CLIENT}]"));
    }
    // ...while the node still reaches both.
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        seen.insert(backend_index(&lab.curl(&lab.node, &node_port).expect("from the node")));
    }
    assert_eq!(seen, BTreeSet::from([0, 1]));
}

/// ClientIP affinity with a 2 s timeout: one backend while the client keeps
/// coming within the window, and a fresh choice once the record expired.
#[test]
fn client_ip_affinity_expires_after_its_timeout() {
    let lab = Lab::new(3);
    let rt = rt();
    let mut syncer = lab.syncer();
    let mut f = frontend(VIP, Protocol::Tcp, 80, &[0, 1, 2], 8080);
    f.affinity_timeout = Some(2);
    rt.block_on(syncer.sync(vec![f], &BTreeSet::new(), false)).unwrap();
    let url = format!("http://{VIP}/");
    let seen = lab.spread(&url, 15);
    assert_eq!(seen.len(), 1, "{seen:?}");
    let affinity = || {
        let o = lab.exec(&lab.node, &["nft", "list", "map", "ip", "kube-proxy", "affinity"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let record = affinity();
    assert!(record.contains(&format!("{CLIENT} . {VIP} . tcp . 80")), "{record}");
    // Past the timeout the record is gone, and each new choice is random: over
    // a few expired windows the client meets more than one backend.
    let mut chosen = BTreeSet::new();
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(2300));
        let record = affinity();
        assert!(!record.contains(&CLIENT.to_string()), "not expired: {record}");
        chosen.insert(lab.curl(&lab.client, &url).expect("a backend"));
        if chosen.len() > 1 {
            break;
        }
    }
    assert!(chosen.len() > 1, "always {chosen:?}");
}

/// ExternalIPs, load-balancer ingress IPs, named target ports and the
/// terminating-endpoint fallback, from Service and EndpointSlice objects
/// through `convert`; and a UDP Service without endpoints refused with ICMP
/// port unreachable.
#[test]
fn external_and_load_balancer_ips_named_ports_and_terminating_endpoints_carry_traffic() {
    let lab = Lab::new(3);
    let rt = rt();
    let mut syncer = lab.syncer();
    let external = Ipv4Addr::new(203, 0, 113, 5);
    let ingress = Ipv4Addr::new(198, 51, 100, 7);
    let empty_vip = Ipv4Addr::new(10, 96, 0, 20);
    // The lab's client sits on the node's default route, so the node answers
    // its packets to unserved addresses with ICMP redirects, which use up the
    // per-host ICMP rate limit that the port-unreachable errors share (a real
    // node's clients are not behind its default route).
    run(&["ip", "netns", "exec", &lab.node, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"]);
    let mut service = serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "clusterIP": VIP.to_string(), "externalIPs": [external.to_string()],
                 "ports": [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP", "nodePort": 30080},
                           {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP", "nodePort": 30053}]},
        "status": {"loadBalancer": {"ingress": [{"ip": ingress.to_string()}]}},
    });
    let empty = serde_json::json!({
        "metadata": {"name": "empty", "namespace": "default"},
        "spec": {"clusterIP": empty_vip.to_string(), "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]},
    });
    // The named target ports resolved by the slice: "http" is 8080, "dns" 5353.
    let ports = [("http", "TCP", 8080), ("dns", "UDP", 5353)];
    let ready = endpoint_slice("web", &ports, &[(0, "n2", true, true, false), (1, "n2", false, false, false)]);
    let (frontends, hairpin) = converted(&[service.clone(), empty.clone()], &[ready], &[NODE]);
    rt.block_on(syncer.sync(frontends, &hairpin, false)).unwrap();
    for ip in [VIP, external, ingress] {
        let who =
            lab.curl(&lab.client, &format!("http://{ip}/cgi-bin/who")).unwrap_or_else(|c| panic!("{ip}: curl {c}"));
        // Only the ready endpoint; external traffic (policy Cluster) masqueraded.
        assert_eq!(who, format!("backend-0 [::ffff:{BRIDGE}]"), "{ip}");
        let answer = lab.udp(&lab.client, ip, 53).unwrap_or_else(|| panic!("no UDP answer from {ip}:53"));
        assert!(answer.starts_with("backend-0 "), "{ip}: {answer}");
    }
    assert_eq!(lab.curl(&lab.client, &format!("http://{NODE}:30080/")).as_deref(), Ok("backend-0"));
    // From the node too.
    assert_eq!(lab.curl(&lab.node, &format!("http://{external}/")).as_deref(), Ok("backend-0"));

    // No ready endpoint left: the serving terminating ones take the traffic.
    let terminating = endpoint_slice(
        "web",
        &ports,
        &[(0, "n2", false, false, true), (1, "n2", false, true, true), (2, "n2", false, true, true)],
    );
    let (frontends, hairpin) = converted(&[service.clone(), empty.clone()], &[terminating], &[NODE]);
    rt.block_on(syncer.sync(frontends, &hairpin, false)).unwrap();
    for ip in [VIP, external, ingress] {
        let seen = lab.spread(&format!("http://{ip}/"), 20);
        assert_eq!(names(&seen), ["backend-1", "backend-2"], "{ip}: {seen:?}");
    }

    // The load balancer loses its ingress IP (that address is no longer
    // served), and the endpoints go.
    service["status"] = serde_json::json!({"loadBalancer": {}});
    let (frontends, hairpin) = converted(&[service, empty], &[], &[NODE]);
    rt.block_on(syncer.sync(frontends, &hairpin, false)).unwrap();
    // No endpoints at all: TCP refused, and UDP too (ICMP port unreachable).
    assert_eq!(lab.curl(&lab.client, &format!("http://{external}/")), Err(7));
    let refused = |ip: Ipv4Addr| {
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1.5)\ns.connect(('{ip}',53))\ns.send(b'hi')\ntry:\n  s.recv(100)\n  print('answered')\nexcept ConnectionRefusedError:\n  print('refused')\nexcept socket.timeout:\n  print('timeout')\n"
        );
        let o = lab.exec(&lab.client, &["python3", "-c", &script]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(refused(empty_vip), "refused");
    assert_eq!(refused(VIP), "refused");
    // (Last: the unserved address loops between node and client, and the
    // node's ICMP errors about it use up its ICMP rate limit.)
    let table = lab.nft_list();
    assert!(!table.contains(&ingress.to_string()), "{table}");
    assert!(lab.curl(&lab.client, &format!("http://{ingress}/")).is_err());
}

/// The periodic resync of the real binary (`--sync-period=2s`, against etcd
/// and the kube-apiserver binary) repairs the table when a `backends`
/// element is deleted behind its back: traffic to the Service comes back
/// without any API change, counted as `kind="resync"` in /metrics.
#[test]
fn the_periodic_resync_restores_an_element_deleted_behind_the_proxys_back() {
    let lab = Lab::new(1);
    let etcd = integration::Etcd::start().expect("etcd");
    let apiserver = integration::ApiServer::start(&etcd).expect("kube-apiserver");
    let metrics_port = integration::free_port();
    let proxy = apiserver
        .start_component(
            "kube-proxy",
            &apiserver.kubeconfig,
            &[
                "--hostname-override=n1",
                &format!("--netns={}", lab.node),
                "--cluster-cidr=10.244.0.0/16",
                "--sync-period=2s",
                &format!("--metrics-bind-address=127.0.0.1:{metrics_port}"),
                "--healthz-bind-address=",
            ],
        )
        .expect("kube-proxy");
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let (code, svc) = apiserver.json(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        })),
    );
    assert_eq!(code, 201, "{svc}");
    let cluster_ip = svc["spec"]["clusterIP"].as_str().expect("a clusterIP").to_string();
    let slice = endpoint_slice("web", &[("http", "TCP", 8080)], &[(0, "n2", true, true, false)]);
    let (code, body) =
        apiserver.json("POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", Some(&slice));
    assert_eq!(code, 201, "{body}");
    let url = format!("http://{cluster_ip}/");
    let served = integration::eventually(Duration::from_secs(20), || lab.curl(&lab.client, &url).ok());
    assert_eq!(served.as_deref(), Some("backend-0"), "kube-proxy log:\n{}", proxy.log());

    let resyncs = || metric(&metrics_url, "kubeproxy_sync_proxy_rules_total{kind=\"resync\",result=\"success\"}");
    let element = format!("{cluster_ip} . tcp . 80 . 0");
    let backends = || {
        let o = lab.exec(&lab.node, &["nft", "list", "map", "ip", "kube-proxy", "backends"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Deleted behind the proxy's back (no API change follows): gone from the kernel...
    let before = resyncs().unwrap_or(0);
    run(&[
        "ip",
        "netns",
        "exec",
        &lab.node,
        "nft",
        "delete",
        "element",
        "ip",
        "kube-proxy",
        "backends",
        &format!("{{ {element} }}"),
    ]);
    assert!(!backends().contains(&element), "{}", backends());
    // ...until the next resync writes it again, and the Service serves again.
    let restored = integration::eventually(Duration::from_secs(10), || backends().contains(&element).then_some(()));
    assert!(restored.is_some(), "not restored:\n{}\nkube-proxy log:\n{}", backends(), proxy.log());
    assert_eq!(lab.curl(&lab.client, &url).as_deref(), Ok("backend-0"));
    let after = resyncs().expect("the resync count");
    assert!(after > before, "resyncs {before} -> {after}");
}
