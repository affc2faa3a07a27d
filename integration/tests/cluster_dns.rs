//! The cluster DNS add-on (services/cluster-dns) against a real apiserver
//! and etcd, run as a host process on free ports with the identity and
//! ClusterRole of deploy/dns.yaml, queried by a real DNS client over UDP
//! and TCP: Services, headless endpoints and hostnames, SRV, PTR,
//! ExternalName, NXDOMAIN, forwarding to an upstream resolver (a fake one
//! on loopback), truncation, and how fast changes show.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use integration::{free_port, ControlPlane};

/// One question, one answer: over UDP (EDNS when `edns`) or TCP.
fn ask(server: SocketAddr, name: &str, qtype: RecordType, tcp: bool, edns: bool) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    let req = m.to_vec().unwrap();
    let bytes = if tcp {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect_timeout(&server, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut out = (req.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&req);
        s.write_all(&out).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).unwrap();
        buf
    } else {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send_to(&req, server).unwrap();
        let mut buf = vec![0u8; 65535];
        let n = s.recv(&mut buf).unwrap_or_else(|e| panic!("no UDP answer for {name} {qtype}: {e}"));
        buf.truncate(n);
        buf
    };
    let resp = Message::from_vec(&bytes).unwrap();
    assert_eq!(resp.metadata.id, m.metadata.id);
    assert_eq!(resp.metadata.message_type, MessageType::Response);
    resp
}

fn udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    ask(server, name, qtype, false, false)
}

/// The answer section's data, sorted, as text (`10.96.0.1`, `0 100 80 web...`).
fn answers(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}

/// A fake upstream resolver on loopback: `example.org.` A is 192.0.2.10, anything else NXDOMAIN.
struct Upstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
}

impl Upstream {
    fn start() -> Upstream {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (s, q) = (stop.clone(), queries.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else { continue };
                let Ok(req) = Message::from_vec(&buf[..n]) else { continue };
                q.fetch_add(1, Ordering::Relaxed);
                let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
                resp.metadata.recursion_desired = req.metadata.recursion_desired;
                resp.metadata.recursion_available = true;
                resp.add_queries(req.queries.iter().cloned());
                let question = &req.queries[0];
                if question.name().to_ascii().eq_ignore_ascii_case("example.org.")
                    && question.query_type() == RecordType::A
                {
                    resp.add_answer(Record::from_rdata(
                        question.name().clone(),
                        60,
                        RData::A(A([192, 0, 2, 10].into())),
                    ));
                } else {
                    resp.metadata.response_code = ResponseCode::NXDomain;
                }
                let _ = socket.send_to(&resp.to_vec().unwrap(), peer);
            }
        });
        Upstream { addr, stop, queries }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn deploy_manifest() -> String {
    std::fs::read_to_string(integration::repo_root().join("deploy/dns.yaml")).unwrap()
}

/// Polls `check` every 20 ms for up to `limit`; how long it took.
fn within(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn cluster_dns_answers_the_kubernetes_dns_schema_from_the_api() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let kubectl = |args: &[&str], stdin: Option<&str>| {
        let out = api.kubectl_stdin("1.33", args, stdin);
        assert!(out.status.success(), "kubectl {args:?}: {}", integration::text(&out));
        integration::stdout(&out)
    };
    // The add-on's own manifest: its ServiceAccount and ClusterRole are what it runs with here.
    kubectl(&["apply", "-f", "-"], Some(&deploy_manifest()));
    assert_eq!(
        kubectl(&["get", "svc", "kube-dns", "-n", "kube-system", "-o", "jsonpath={.spec.clusterIP}"], None),
        "10.96.0.10"
    );
    let token = kubectl(&["create", "token", "cluster-dns", "-n", "kube-system"], None);
    let kubeconfig = api.token_kubeconfig("cluster-dns", token.trim()).unwrap();

    let upstream = Upstream::start();
    let (dns_port, health_port) = (free_port(), free_port());
    let server: SocketAddr = ([127, 0, 0, 1], dns_port).into();
    let dns = api
        .start_component(
            "cluster-dns",
            &kubeconfig,
            &[
                "--bind-address=127.0.0.1",
                &format!("--dns-port={dns_port}"),
                &format!("--secure-port={health_port}"),
                &format!("--upstream={}", upstream.addr),
            ],
        )
        .unwrap();
    let healthy = within(Duration::from_secs(30), || {
        std::process::Command::new("curl")
            .args(["-sfk", &format!("https://127.0.0.1:{health_port}/healthz")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    assert!(healthy.is_some(), "cluster-dns never healthy:\n{}", dns.log());

    kubectl(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports: [{name: http, port: 80, protocol: TCP}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: default
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- {addresses: ["10.244.7.5"], hostname: db-0, conditions: {ready: true}}
- {addresses: ["10.244.7.6"], conditions: {ready: true}}
- {addresses: ["10.244.7.7"], hostname: db-2, conditions: {ready: false}}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec: {type: ExternalName, externalName: example.org}
"#,
        ),
    );
    let web_ip = kubectl(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"], None);
    let synced = within(Duration::from_secs(5), || {
        udp(server, "ext.default.svc.cluster.local.", RecordType::A).answers.len() == 2
    });
    assert!(synced.is_some(), "the new Services never showed:\n{}", dns.log());

    // ClusterIP Services: A (authoritative), no AAAA, SRV per named port with the address as additional.
    let m = udp(server, "kubernetes.default.svc.cluster.local.", RecordType::A);
    assert_eq!((m.metadata.response_code, m.metadata.authoritative), (ResponseCode::NoError, true));
    assert_eq!(answers(&m), ["10.96.0.1"]);
    assert_eq!(answers(&udp(server, "kube-dns.kube-system.svc.cluster.local.", RecordType::A)), ["10.96.0.10"]);
    assert_eq!(answers(&udp(server, "web.default.svc.cluster.local.", RecordType::A)), [web_ip.as_str()]);
    let m = udp(server, "web.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0), "NODATA: {m:?}");
    let m = udp(server, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(answers(&m), ["0 100 80 web.default.svc.cluster.local."]);
    assert_eq!(m.additionals.iter().map(|r| r.data.to_string()).collect::<Vec<_>>(), [web_ip.as_str()]);
    assert_eq!(
        answers(&udp(server, "_dns._udp.web.default.svc.cluster.local.", RecordType::SRV)),
        ["0 100 53 web.default.svc.cluster.local."]
    );
    // Over TCP too.
    assert_eq!(answers(&ask(server, "web.default.svc.cluster.local.", RecordType::A, true, false)), [web_ip.as_str()]);

    // Headless: the ready endpoints; hostnames (StatefulSet pods) and dashed addresses; SRV per endpoint.
    assert_eq!(answers(&udp(server, "db.default.svc.cluster.local.", RecordType::A)), ["10.244.7.5", "10.244.7.6"]);
    assert_eq!(answers(&udp(server, "db-0.db.default.svc.cluster.local.", RecordType::A)), ["10.244.7.5"]);
    assert_eq!(answers(&udp(server, "10-244-7-6.db.default.svc.cluster.local.", RecordType::A)), ["10.244.7.6"]);
    assert_eq!(
        udp(server, "db-2.db.default.svc.cluster.local.", RecordType::A).metadata.response_code,
        ResponseCode::NXDomain,
        "a not-ready endpoint has no name"
    );
    assert_eq!(
        answers(&udp(server, "_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV)),
        ["0 50 5432 10-244-7-6.db.default.svc.cluster.local.", "0 50 5432 db-0.db.default.svc.cluster.local."]
    );

    // PTR for ClusterIPs and endpoint hostnames.
    let octets: Vec<&str> = web_ip.split('.').rev().collect();
    let reverse = format!("{}.in-addr.arpa.", octets.join("."));
    assert_eq!(answers(&udp(server, &reverse, RecordType::PTR)), ["web.default.svc.cluster.local."]);
    assert_eq!(
        answers(&udp(server, "5.7.244.10.in-addr.arpa.", RecordType::PTR)),
        ["db-0.db.default.svc.cluster.local."]
    );

    // ExternalName: the CNAME, and its target resolved by the upstream.
    let before = upstream.queries.load(Ordering::Relaxed);
    let m = udp(server, "ext.default.svc.cluster.local.", RecordType::A);
    assert_eq!(answers(&m), ["192.0.2.10", "example.org."]);
    assert!(matches!(m.answers[0].data, RData::CNAME(_)), "{m:?}");
    assert!(upstream.queries.load(Ordering::Relaxed) > before);

    // Unknown names in the zone: NXDOMAIN with the SOA; a namespace with Services exists (NODATA).
    for name in [
        "nope.default.svc.cluster.local.",
        "web.nope.svc.cluster.local.",
        "kubernetes.default.default.svc.cluster.local.",
    ] {
        let m = udp(server, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(matches!(m.authorities.first().map(|r| &r.data), Some(RData::SOA(_))), "{name}: {m:?}");
    }
    assert_eq!(udp(server, "default.svc.cluster.local.", RecordType::A).metadata.response_code, ResponseCode::NoError);
    // Upstream's schema version record.
    assert_eq!(answers(&udp(server, "dns-version.cluster.local.", RecordType::TXT)), ["1.1.0"]);

    // Other names go to the upstream resolver, its answer relayed.
    let m = udp(server, "example.org.", RecordType::A);
    assert_eq!((m.metadata.response_code, answers(&m)), (ResponseCode::NoError, vec!["192.0.2.10".to_string()]));
    assert!(!m.metadata.authoritative);
    assert_eq!(udp(server, "missing.example.org.", RecordType::A).metadata.response_code, ResponseCode::NXDomain);

    // Changes show within a second: a new Service, a deleted one, an endpoint going unready.
    kubectl(&["create", "service", "clusterip", "late", "--tcp=8080:8080"], None);
    let created = within(Duration::from_secs(5), || {
        udp(server, "late.default.svc.cluster.local.", RecordType::A).answers.len() == 1
    });
    kubectl(&["delete", "service", "web"], None);
    let deleted = within(Duration::from_secs(5), || {
        udp(server, "web.default.svc.cluster.local.", RecordType::A).metadata.response_code == ResponseCode::NXDomain
    });
    kubectl(
        &[
            "patch",
            "endpointslice",
            "db-1",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/endpoints/1/conditions/ready","value":false}]"#,
        ],
        None,
    );
    let unready = within(Duration::from_secs(5), || {
        answers(&udp(server, "db.default.svc.cluster.local.", RecordType::A)) == ["10.244.7.5"]
    });
    eprintln!("visible after: created {created:?}, deleted {deleted:?}, endpoint unready {unready:?}");
    for (what, took) in [("created", created), ("deleted", deleted), ("unready", unready)] {
        let took = took.unwrap_or_else(|| panic!("{what} never showed:\n{}", dns.log()));
        assert!(took < Duration::from_secs(1), "{what} took {took:?}");
    }

    // No ready endpoint left: a headless Service is NXDOMAIN (upstream's spec, kube-dns and CoreDNS).
    kubectl(
        &[
            "patch",
            "endpointslice",
            "db-1",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/endpoints/0/conditions/ready","value":false}]"#,
        ],
        None,
    );
    let gone = within(Duration::from_secs(5), || {
        udp(server, "db.default.svc.cluster.local.", RecordType::A).metadata.response_code == ResponseCode::NXDomain
    });
    assert!(gone.is_some(), "db still answers:\n{}", dns.log());

    // A large answer: truncated over plain UDP (TC), whole over TCP and within EDNS's larger size.
    let endpoints: Vec<String> =
        (1..=60).map(|i| format!("- {{addresses: [\"10.244.8.{i}\"], conditions: {{ready: true}}}}")).collect();
    kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: big, namespace: default}}\nspec:\n  clusterIP: None\n  ports: [{{name: http, port: 80}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: big-1\n  namespace: default\n  labels: {{kubernetes.io/service-name: big}}\naddressType: IPv4\nports: [{{name: http, port: 80, protocol: TCP}}]\nendpoints:\n{}\n",
            endpoints.join("\n")
        )),
    );
    let big = "big.default.svc.cluster.local.";
    assert!(
        within(Duration::from_secs(5), || ask(server, big, RecordType::A, true, false).answers.len() == 60).is_some()
    );
    let m = udp(server, big, RecordType::A);
    assert!(m.metadata.truncation && m.answers.is_empty(), "60 addresses do not fit 512 bytes: {m:?}");
    assert_eq!(ask(server, big, RecordType::A, false, true).answers.len(), 60, "they fit the EDNS size");

    // The metrics count what was asked.
    let metrics = std::process::Command::new("curl")
        .args(["-sk", &format!("https://127.0.0.1:{health_port}/metrics")])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(metrics.contains("cluster_dns_requests_total{proto=\"udp\",source=\"forward\"}"), "{metrics}");
    assert!(metrics.contains("cluster_dns_responses_total{rcode=\"NXDOMAIN\"}"), "{metrics}");
}

#[test]
fn cluster_dns_flags() {
    let out = std::process::Command::new(integration::binary("cluster-dns")).arg("--no-such-flag").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"), "{}", integration::text(&out));
    let out = std::process::Command::new(integration::binary("cluster-dns"))
        .args(["--kubeconfig=/nonexistent", "--dns-port=0", "--bind-address=127.0.0.1", "--upstream=not-an-ip"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-an-ip"), "{}", integration::text(&out));
}

/// Relays TCP from `listen` to `target` (both on this host) until dropped: the
/// harness's apiserver listens on loopback, which pods cannot reach.
struct Relay {
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(listen: SocketAddr, target: SocketAddr) -> Relay {
        let listener = std::net::TcpListener::bind(listen).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = std::net::TcpStream::connect(target) else { continue };
                for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Relay { stop }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The whole add-on path on a real node: deploy/dns.yaml applied as it is (but for this test's
/// service range), its image from scripts/build-images.sh run by the kubelet on containerd and
/// reaching the apiserver in-cluster through the kubernetes Service, its kube-dns Service
/// programmed by kube-proxy, and a pod with dnsPolicy ClusterFirst resolving `kubernetes.default`
/// with busybox's nslookup through the search path the kubelet wrote.
#[test]
fn cluster_dns_pod_serves_cluster_first_pods() {
    use integration::cluster::{tail, ClusterOptions, Host, KubeProxyOptions};
    use integration::containerd::image_archives;

    let host = Host::start().unwrap();
    let archive = image_archives().unwrap().join("cluster-dns.tar");
    let imported = host.containerd.ctr(&["images", "import", &archive.to_string_lossy()]).unwrap();
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));

    // This test's own service range (parallel clusters' proxies never match each other's addresses).
    let (kubernetes_ip, dns_ip) = (host.kubernetes_ip(), format!("10.100.{}.10", host.slot));
    let node_ip = host.node_ip.clone();
    let gateway = host.containerd.gateway().to_string();
    let image = host.image.clone();
    // A real PKI, so that the add-on's in-cluster client verifies the apiserver (SAN: the kubernetes ClusterIP).
    let pki = tempfile::tempdir().unwrap();
    let mut opts = kube_pki::InitOptions::new(pki.path(), node_ip.parse().unwrap(), "n1");
    opts.cert_extra_sans = vec![kubernetes_ip.clone()];
    let _report = kube_pki::init(&opts).unwrap();
    let p = |rel: &str| pki.path().join(rel).display().to_string();
    // The kubernetes Service's endpoint is node_ip:port; the apiserver listens on loopback. The
    // relay starts once the port is known, which is as soon as the apiserver is up: before any pod.
    let cluster = host
        .start_cluster(ClusterOptions {
            apiserver_args: vec![
                format!("--tls-cert-file={}", p(kube_pki::paths::APISERVER.cert)),
                format!("--tls-private-key-file={}", p(kube_pki::paths::APISERVER.key)),
                format!("--advertise-address={node_ip}"),
            ],
            root_ca_file: Some(pki.path().join(kube_pki::paths::CA.cert)),
            kubelet_args: vec![format!("--cluster-dns={dns_ip}"), "--cluster-domain=cluster.local".into()],
            kube_proxy: Some(KubeProxyOptions { nodeport_addresses: "{node_ip}/32".into() }),
            ..Default::default()
        })
        .unwrap();
    let apiserver = &cluster.apiserver;
    let port = apiserver.port;
    let _relay = Relay::start(format!("{node_ip}:{port}").parse().unwrap(), ([127, 0, 0, 1], port).into());
    let kubectl = |args: &[&str], stdin: Option<&str>| cluster.kubectl_stdin(args, stdin);
    let pod_logs = || {
        let mut out = String::new();
        for entry in std::fs::read_dir("/var/log/pods").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !(name.starts_with("kube-system_cluster-dns-") || name.starts_with("default_dns-client_")) {
                continue;
            }
            for c in std::fs::read_dir(entry.path()).into_iter().flatten().flatten() {
                for f in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
                    out += &format!(
                        "{}:\n{}\n",
                        f.path().display(),
                        tail(&std::fs::read_to_string(f.path()).unwrap_or_default(), 15)
                    );
                }
            }
        }
        out
    };
    let diag = || format!("{}\n{}", cluster.diag(), pod_logs());
    let remember_pods = || cluster.remember_pods();

    // The add-on's manifest as shipped, but for this test's service range.
    let manifest = deploy_manifest()
        .replace("10.96.0.10", &dns_ip)
        .replace("\"10.96.0.1\"", &format!("\"{kubernetes_ip}\""))
        // No query leaves the machine: the upstream is a closed port in the pod (SERVFAIL at once).
        .replace("- --dns-port=53", "- --dns-port=53\n        - --upstream=127.0.0.1:9");
    kubectl(&["apply", "-f", "-"], Some(&manifest));
    let rollout = apiserver
        .kubectl("1.33", &["rollout", "status", "-n", "kube-system", "deployment/cluster-dns", "--timeout=120s"]);
    assert!(rollout.status.success(), "rollout: {}\n{}", integration::text(&rollout), diag());

    // A headless Service whose endpoint is this node's pod gateway (an address on this host).
    kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: gw, namespace: default}}\nspec: {{clusterIP: None}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: gw-1, namespace: default, labels: {{kubernetes.io/service-name: gw}}}}\n\
             addressType: IPv4\nendpoints: [{{addresses: [\"{gateway}\"]}}]\n"
        )),
    );
    // A ClusterFirst pod (the default policy): its resolv.conf names the kube-dns Service and the
    // search path. busybox's nslookup (1.28.4 and later) does not use the search path, so it asks
    // for full names; ping resolves the short name `gw` through the libc resolver, which walks the
    // search path to gw.default.svc.cluster.local (and pings the gateway: nothing leaves the host).
    let script = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do out=$(nslookup kubernetes.default.svc.cluster.local 2>&1); \
         if echo \"$out\" | grep -q '{kubernetes_ip}$'; then break; fi; sleep 1; done; \
         {{ cat /etc/resolv.conf; echo \"$out\"; ping -c 1 -W 1 gw 2>&1 | head -1; \
         nslookup nonexistent.default.svc.cluster.local 2>&1; }} > /dev/termination-log; exit 0"
    );
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "dns-client", "namespace": "default"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": image, "command": ["sh", "-c", script]}]}
    });
    kubectl(&["apply", "-f", "-"], Some(&pod.to_string()));
    let mut phase = String::new();
    let start = Instant::now();
    while phase != "Succeeded" && phase != "Failed" {
        assert!(start.elapsed() < Duration::from_secs(90), "the client pod is {phase:?}:\n{}", diag());
        std::thread::sleep(Duration::from_millis(500));
        phase = kubectl(&["get", "pod", "dns-client", "-o", "jsonpath={.status.phase}"], None);
    }
    remember_pods();
    let message = kubectl(
        &["get", "pod", "dns-client", "-o", "jsonpath={.status.containerStatuses[0].state.terminated.message}"],
        None,
    );
    assert_eq!(phase, "Succeeded", "the client pod:\n{message}\n{}", diag());
    eprintln!("in the client pod:\n{message}");
    assert!(message.contains(&format!("nameserver {dns_ip}")), "{message}");
    assert!(message.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{message}");
    assert!(message.contains("kubernetes.default.svc.cluster.local"), "nslookup's answer: {message}\n{}", diag());
    assert!(message.lines().any(|l| l.starts_with("Address") && l.trim_end().ends_with(&kubernetes_ip)), "{message}");
    assert!(message.contains(&format!("PING gw ({gateway})")), "ping resolved gw through the search path: {message}");
    assert!(message.contains("can't find nonexistent.default.svc.cluster.local: NXDOMAIN"), "{message}");

    kubectl(&["delete", "pod", "dns-client", "--wait=false"], None);
    kubectl(&["delete", "-f", "-", "--wait=false"], Some(&manifest));
    let start = Instant::now();
    while !kubectl(&["get", "pods", "-A", "-o", "name"], None).trim().is_empty()
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(500));
    }
}
