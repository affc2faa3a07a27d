//! The real plugin binary (`rustkube-cni`, built by cargo for this test) run the
//! way a container runtime runs it: CNI_* variables and the network config on
//! stdin, into network namespaces the test creates with `ip netns add`. Needs
//! root, `ip` and `nft`. Every test has its own netns, bridge, subnet
//! (10.237.x.0/24), nftables table and IPAM dir, all removed on drop, so the
//! tests run in parallel with each other and with anything else on the host.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use serde_json::{json, Value};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The plugin under test: cargo's build of it, or another build named by RUSTKUBE_CNI_TEST_PLUGIN.
fn plugin() -> PathBuf {
    std::env::var_os("RUSTKUBE_CNI_TEST_PLUGIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rustkube-cni")))
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawning a command");
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn succeeds(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `f` on a thread that has entered the named netns (sockets it opens stay there).
fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    let file = File::open(netns_path(name)).expect("opening the netns");
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("the thread in the netns")
    })
}

fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(name)
}

/// One test's network: its bridge, subnet, nftables table, IPAM dir and pod namespaces.
struct Net {
    id: String,
    bridge: String,
    table: String,
    subnet: String,
    gateway: Ipv4Addr,
    cluster_cidr: Option<String>,
    data: tempfile::TempDir,
    netns: Vec<String>,
    /// An empty dir: as PATH it makes any attempt to spawn `ip`, `nsenter` or `nft` fail.
    empty_path: tempfile::TempDir,
}

/// What one plugin run answered.
struct Answer {
    ok: bool,
    json: Value,
    stderr: String,
}

impl Net {
    fn new(masquerade: bool) -> Net {
        let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
        assert_eq!(uid.ok(), Some(0), "this test needs root (netns, links, nftables)");
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        assert!(n < 4, "one subnet per test: raise the limit with the number of tests");
        let octet = (pid % 64) * 4 + n;
        let id = format!("{pid}-{n}");
        Net {
            bridge: format!("rkcb{}{n}", pid % 100_000),
            table: format!("rkcni-test-{id}"),
            subnet: format!("10.237.{octet}.0/24"),
            gateway: Ipv4Addr::new(10, 237, octet as u8, 1),
            cluster_cidr: masquerade.then(|| "10.237.0.0/16".to_string()),
            data: tempfile::tempdir().expect("a temp dir"),
            netns: Vec::new(),
            empty_path: tempfile::tempdir().expect("a temp dir"),
            id,
        }
    }

    /// A new pod netns, named uniquely; returns its name.
    fn pod_netns(&mut self) -> String {
        let name = format!("rkcni-{}-{}", self.id, self.netns.len());
        run(&["ip", "netns", "add", &name]);
        self.netns.push(name.clone());
        name
    }

    fn config(&self) -> String {
        let mut conf = json!({
            "cniVersion": "1.0.0",
            "name": "rkcni-test",
            "type": "rustkube-bridge",
            "bridge": self.bridge,
            "subnet": self.subnet,
            "nftTable": self.table,
            "dataDir": self.data.path(),
            "dns": {"nameservers": ["10.96.0.10"]},
        });
        if let Some(cluster) = &self.cluster_cidr {
            conf["clusterCIDR"] = json!(cluster);
        }
        conf.to_string()
    }

    fn invoke_with(&self, command: &str, container: &str, netns: Option<&str>, no_tools: bool) -> Answer {
        let plugin = plugin();
        let mut cmd = Command::new(&plugin);
        // Container ids are unique on a host (the host veth's name derives from it): prefix the test's id.
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", format!("{}-{container}", self.id))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", plugin.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ns) = netns {
            cmd.env("CNI_NETNS", netns_path(ns));
        }
        if no_tools {
            cmd.env("PATH", self.empty_path.path());
        }
        let mut child = cmd.spawn().expect("spawning the plugin");
        child.stdin.take().expect("stdin").write_all(self.config().as_bytes()).expect("writing the config");
        let out = child.wait_with_output().expect("waiting for the plugin");
        let stdout = String::from_utf8_lossy(&out.stdout);
        Answer {
            ok: out.status.success(),
            json: if stdout.trim().is_empty() { Value::Null } else { serde_json::from_str(&stdout).expect("JSON") },
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn invoke(&self, command: &str, container: &str, netns: Option<&str>) -> Answer {
        self.invoke_with(command, container, netns, false)
    }

    /// ADD, asserted to succeed; returns the pod's address and the host veth's name.
    fn add(&self, container: &str, netns: &str, no_tools: bool) -> (Ipv4Addr, String) {
        let a = self.invoke_with("ADD", container, Some(netns), no_tools);
        assert!(a.ok, "ADD {container}: {} {}", a.json, a.stderr);
        let address = a.json["ips"][0]["address"].as_str().expect("an address");
        let ip: Ipv4Addr = address.split('/').next().and_then(|s| s.parse().ok()).expect("an IPv4 address");
        assert_eq!(address, format!("{ip}/24"));
        assert_eq!(a.json["ips"][0]["gateway"], self.gateway.to_string());
        let ifs = a.json["interfaces"].as_array().expect("interfaces");
        assert_eq!(ifs.len(), 3, "{}", a.json);
        assert_eq!(ifs[0]["name"], self.bridge.as_str());
        assert_eq!(ifs[2]["name"], "eth0");
        assert_eq!(ifs[2]["sandbox"], netns_path(netns).to_string_lossy().as_ref());
        for i in ifs {
            let mac = i["mac"].as_str().expect("a mac");
            assert_eq!(mac.len(), 17, "{mac}");
        }
        assert_eq!(a.json["dns"]["nameservers"][0], "10.96.0.10");
        (ip, ifs[1]["name"].as_str().expect("the host veth").to_string())
    }

    fn allocated(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.data.path())
            .expect("the IPAM dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.parse::<Ipv4Addr>().is_ok())
            .collect();
        v.sort();
        v
    }

    fn masquerade_rules(&self) -> Option<String> {
        let out = Command::new("nft").args(["list", "chain", "ip", &self.table, "postrouting"]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
        let _ = Command::new("ip").args(["link", "del", "dev", &self.bridge]).stderr(Stdio::null()).status();
        let _ = Command::new("nft").args(["delete", "table", "ip", &self.table]).stderr(Stdio::null()).status();
    }
}

/// A TCP connection from inside `from` to `to`, accepted by `listener`; returns the source address seen.
fn connect(from: &str, listener: &TcpListener, to: Ipv4Addr) -> Ipv4Addr {
    let port = listener.local_addr().expect("the listener's address").port();
    let mut client =
        in_netns(from, || TcpStream::connect_timeout(&SocketAddr::from((to, port)), Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("connecting from {from} to {to}:{port}: {e}"));
    let (mut server, peer) = listener.accept().expect("accepting");
    client.write_all(b"ping").expect("sending");
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).expect("receiving");
    assert_eq!(&buf, b"ping");
    match peer.ip() {
        std::net::IpAddr::V4(ip) => ip,
        other => panic!("an IPv6 peer {other}"),
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

#[test]
fn two_pods_get_addresses_reach_each_other_and_the_gateway_and_del_gives_everything_back() {
    let mut net = Net::new(false);
    let (ns_a, ns_b) = (net.pod_netns(), net.pod_netns());
    let (ip_a, host_a) = net.add("pod-a", &ns_a, false);
    let (ip_b, host_b) = net.add("pod-b", &ns_b, false);
    let subnet = net.subnet.trim_end_matches(".0/24").to_string();
    assert!(ip_a.to_string().starts_with(&subnet) && ip_b.to_string().starts_with(&subnet), "{ip_a} {ip_b}");
    assert_ne!(ip_a, ip_b);
    assert_ne!(ip_a, net.gateway);
    assert_eq!(net.allocated(), {
        let mut v = vec![ip_a.to_string(), ip_b.to_string()];
        v.sort();
        v
    });

    // What the kernel has: the pod end with its address and default route, the host end on the bridge.
    let addr = run(&["ip", "-n", &ns_a, "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains(&format!("inet {ip_a}/24")), "{addr}");
    let route = run(&["ip", "-n", &ns_a, "route", "show", "default"]);
    assert!(route.contains(&format!("default via {} dev eth0", net.gateway)), "{route}");
    let master = std::fs::read_link(format!("/sys/class/net/{host_a}/master")).expect("the host end's master");
    assert_eq!(master.file_name().and_then(|n| n.to_str()), Some(net.bridge.as_str()));
    let hairpin = std::fs::read_to_string(format!("/sys/class/net/{host_a}/brport/hairpin_mode")).expect("hairpin");
    assert_eq!(hairpin.trim(), "1");
    let bridge_addr = run(&["ip", "-4", "-o", "addr", "show", "dev", &net.bridge]);
    assert!(bridge_addr.contains(&format!("inet {}/24", net.gateway)), "{bridge_addr}");

    // Pod to pod across the bridge, with their own source addresses, and pod to the gateway.
    let listener_b = in_netns(&ns_b, || TcpListener::bind("0.0.0.0:0")).expect("listening in pod b");
    assert_eq!(connect(&ns_a, &listener_b, ip_b), ip_a);
    let listener_a = in_netns(&ns_a, || TcpListener::bind("0.0.0.0:0")).expect("listening in pod a");
    assert_eq!(connect(&ns_b, &listener_a, ip_a), ip_b);
    let listener_gw = TcpListener::bind((net.gateway, 0)).expect("listening on the gateway address");
    assert_eq!(connect(&ns_a, &listener_gw, net.gateway), ip_a);

    let check = net.invoke("CHECK", "pod-a", Some(&ns_a));
    assert!(check.ok, "CHECK: {} {}", check.json, check.stderr);
    let check = net.invoke("CHECK", "not-a-pod", Some(&ns_a));
    assert!(!check.ok && check.json["code"] == 102, "{}", check.json);

    // A second ADD into a netns whose eth0 exists is an error and leaves no allocation behind.
    let again = net.invoke("ADD", "pod-a-again", Some(&ns_a));
    assert!(!again.ok, "{}", again.json);
    assert!(again.json["details"].as_str().unwrap_or_default().contains("already exists"), "{}", again.json);
    assert_eq!(net.allocated().len(), 2);

    // DEL removes the pair and frees the address; a second DEL is fine.
    let del = net.invoke("DEL", "pod-a", Some(&ns_a));
    assert!(del.ok, "DEL: {} {}", del.json, del.stderr);
    assert!(!link_exists(&host_a), "{host_a} is still there");
    assert!(!succeeds(&["ip", "-n", &ns_a, "link", "show", "dev", "eth0"]), "eth0 is still in {ns_a}");
    assert_eq!(net.allocated(), vec![ip_b.to_string()]);
    let del = net.invoke("DEL", "pod-a", Some(&ns_a));
    assert!(del.ok, "second DEL: {} {}", del.json, del.stderr);
    let check = net.invoke("CHECK", "pod-a", Some(&ns_a));
    assert!(!check.ok, "CHECK after DEL: {}", check.json);

    // The netns going away first: DEL still cleans up, ADD into it fails clearly and allocates nothing.
    run(&["ip", "netns", "del", &ns_b]);
    let del = net.invoke("DEL", "pod-b", Some(&ns_b));
    assert!(del.ok, "DEL without netns: {} {}", del.json, del.stderr);
    assert!(!link_exists(&host_b), "{host_b} is still there");
    assert!(net.allocated().is_empty(), "{:?}", net.allocated());
    let add = net.invoke("ADD", "pod-c", Some(&ns_b));
    assert!(!add.ok, "ADD into a deleted netns succeeded: {}", add.json);
    assert_eq!(add.json["code"], 5, "{}", add.json);
    let details = add.json["details"].as_str().unwrap_or_default();
    assert!(details.contains("does not exist") && details.contains(&ns_b), "{details}");
    assert!(net.allocated().is_empty(), "{:?}", net.allocated());
    let del = net.invoke("DEL", "pod-c", None);
    assert!(del.ok, "DEL without CNI_NETNS: {} {}", del.json, del.stderr);

    // The netns is reused by a new pod: same subnet, an address not handed out before.
    let (ip_a2, _) = net.add("pod-a2", &ns_a, false);
    assert!(ip_a2 != ip_b && ip_a2 != net.gateway, "{ip_a2}");
    assert!(net.invoke("DEL", "pod-a2", Some(&ns_a)).ok);
}

#[test]
fn a_steady_state_add_spawns_no_process_and_a_removed_masquerade_rule_comes_back() {
    let mut net = Net::new(true);
    let (ns1, ns2, ns3) = (net.pod_netns(), net.pod_netns(), net.pod_netns());
    let (ip1, _) = net.add("pod-1", &ns1, false);
    let rules = net.masquerade_rules().expect("the plugin's table");
    let cluster = net.cluster_cidr.clone().unwrap_or_default();
    assert!(rules.contains(&format!("ip saddr {} ip daddr != {cluster} masquerade", net.subnet)), "{rules}");
    assert!(rules.contains("hook postrouting"), "{rules}");

    // With the bridge and the rule in place, ADD, CHECK and DEL need no tool: PATH holds none.
    let (ip2, _) = net.add("pod-2", &ns2, true);
    assert_ne!(ip1, ip2);
    let check = net.invoke_with("CHECK", "pod-2", Some(&ns2), true);
    assert!(check.ok, "CHECK: {} {}", check.json, check.stderr);
    let listener = in_netns(&ns1, || TcpListener::bind("0.0.0.0:0")).expect("listening in pod 1");
    assert_eq!(connect(&ns2, &listener, ip1), ip2, "inside the cluster network nothing is masqueraded");

    // The table removed (a reset, another test): CHECK says so, the next ADD puts it back.
    run(&["nft", "delete", "table", "ip", &net.table]);
    let check = net.invoke("CHECK", "pod-1", Some(&ns1));
    assert!(!check.ok, "CHECK without the masquerade rule passed");
    assert!(check.json["details"].as_str().unwrap_or_default().contains("masquerade"), "{}", check.json);
    let (ip3, _) = net.add("pod-3", &ns3, false);
    let rules = net.masquerade_rules().expect("the table is back");
    assert!(rules.contains(&format!("ip saddr {} ip daddr != {cluster} masquerade", net.subnet)), "{rules}");
    let check = net.invoke_with("CHECK", "pod-1", Some(&ns1), true);
    assert!(check.ok, "CHECK: {} {}", check.json, check.stderr);

    // A rule someone else added to the chain is not ours: the next ADD rewrites the chain.
    assert!(net.invoke("DEL", "pod-3", Some(&ns3)).ok);
    run(&["nft", "add", "rule", "ip", &net.table, "postrouting", "counter"]);
    let (ip3b, _) = net.add("pod-3b", &ns3, false);
    let rules = net.masquerade_rules().expect("the table");
    assert!(!rules.contains("counter"), "{rules}");
    assert_eq!(rules.matches("ip saddr").count(), 1, "{rules}");
    assert_ne!(ip3, ip3b, "a released address is handed out again only after the others");

    for (pod, ns) in [("pod-1", &ns1), ("pod-2", &ns2), ("pod-3b", &ns3)] {
        let del = net.invoke_with("DEL", pod, Some(ns), true);
        assert!(del.ok, "DEL {pod}: {} {}", del.json, del.stderr);
    }
    assert!(net.allocated().is_empty(), "{:?}", net.allocated());
}

#[test]
fn concurrent_adds_into_many_pods_get_distinct_addresses_and_all_come_back() {
    let mut net = Net::new(true);
    let pods: Vec<String> = (0..12).map(|_| net.pod_netns()).collect();
    let net = &net;
    let ips: Vec<Ipv4Addr> = std::thread::scope(|s| {
        let handles: Vec<_> =
            pods.iter().enumerate().map(|(i, ns)| s.spawn(move || net.add(&format!("pod-{i}"), ns, false).0)).collect();
        handles.into_iter().map(|h| h.join().expect("an ADD thread")).collect()
    });
    let mut distinct = ips.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), ips.len(), "{ips:?}");
    let rules = net.masquerade_rules().expect("the table");
    assert_eq!(rules.matches("ip saddr").count(), 1, "{rules}");
    std::thread::scope(|s| {
        for (i, ns) in pods.iter().enumerate() {
            s.spawn(move || {
                let del = net.invoke("DEL", &format!("pod-{i}"), Some(ns));
                assert!(del.ok, "DEL pod-{i}: {} {}", del.json, del.stderr);
            });
        }
    });
    assert!(net.allocated().is_empty(), "{:?}", net.allocated());
}
