//! kube-apiserver benchmark: real etcd, the real (release) binary, 50
//! concurrent keep-alive HTTPS clients speaking JSON.
//!
//! Prints throughput and p50/p99 latency for create, get, list of 10k objects
//! and watch fan-out to 100 watchers, and the apiserver's RSS idle and under
//! load. Run through `scripts/bench-apiserver.sh`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use integration::{ApiServer, Etcd};

const CLIENTS: usize = 50;
const CREATES: usize = 10_000;
const GETS: usize = 20_000;
const LISTS: usize = 20;
const WATCHERS: usize = 100;
const WATCH_EVENTS: usize = 1_000;

#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

fn tls() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// One keep-alive HTTPS/1.1 connection.
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(port: u16, tls: Arc<rustls::ClientConfig>) -> Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?.to_owned();
        let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn { sender })
    }

    async fn send(&mut self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<(u16, Bytes)> {
        self.sender.ready().await?;
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("authorization", "Bearer admin")
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) the process has used.
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn report(name: &str, mut lat: Vec<Duration>, elapsed: Duration) {
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or_default()
    };
    println!(
        "{name:<28} n={:<6} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
        lat.len(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let etcd = Etcd::start().context("etcd")?;
    let api = ApiServer::start(&etcd).context("kube-apiserver")?;
    let pid = std::process::Command::new("pgrep")
        .args(["-f", &format!("secure-port={}", api.port)])
        .output()?
        .stdout
        .split(|b| *b == b'\n')
        .next()
        .and_then(|l| std::str::from_utf8(l).ok()?.trim().parse::<u32>().ok())
        .context("finding the apiserver pid")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle, _) = rss_kib(pid);
    println!("kube-apiserver benchmark: {CLIENTS} keep-alive HTTPS clients, JSON, real etcd {}", etcd.client_url);
    println!("{:<28} {} MiB", "RSS idle", idle / 1024);

    let tls = tls();
    let mut pool = Vec::new();
    for _ in 0..CLIENTS {
        pool.push(Conn::open(api.port, tls.clone()).await?);
    }
    let ns = "bench";
    let mut c0 = Conn::open(api.port, tls.clone()).await?;
    c0.send("POST", "/api/v1/namespaces", Some(format!("{{\"metadata\":{{\"name\":\"{ns}\"}}}}").into_bytes())).await?;

    // Plain creates: no watchers.
    let cpu0 = cpu_secs(pid);
    let (lat, el) = run(&mut pool, CREATES - WATCH_EVENTS, move |i| {
        let body = format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"cm-{i:05}\",\"labels\":{{\"kind\":\"plain\"}}}},\"data\":{{\"k\":\"value-{i}\"}}}}"
        );
        ("POST", format!("/api/v1/namespaces/{ns}/configmaps"), Some(body.into_bytes()))
    })
    .await?;
    let n = lat.len();
    report("create (50 clients)", lat, el);
    println!("{:<28} {:.0} µs apiserver CPU per create", "", (cpu_secs(pid) - cpu0) * 1e6 / n as f64);
    let (rss_load, _) = rss_kib(pid);

    // Watch fan-out: 100 watchers, then creates they all see.
    let received = Arc::new(AtomicUsize::new(0));
    let lat_sum = Arc::new(std::sync::Mutex::new(Vec::<Duration>::new()));
    let epoch = Instant::now();
    let mut watch_tasks = Vec::new();
    for _ in 0..WATCHERS {
        let mut c = Conn::open(api.port, tls.clone()).await?;
        let received = received.clone();
        let lat_sum = lat_sum.clone();
        watch_tasks.push(tokio::spawn(async move {
            c.sender.ready().await?;
            let req = http::Request::builder()
                .uri(format!(
                    "/api/v1/namespaces/{ns}/configmaps?watch=1&labelSelector=kind%3Dwatched&timeoutSeconds=120"
                ))
                .header("host", "localhost")
                .header("authorization", "Bearer admin")
                .body(Full::new(Bytes::new()))?;
            let resp = c.sender.send_request(req).await?;
            let mut body = resp.into_body();
            let mut buf = Vec::new();
            let mut n = 0;
            while n < WATCH_EVENTS {
                let Some(frame) = body.frame().await else { break };
                if let Ok(data) = frame?.into_data() {
                    buf.extend_from_slice(&data);
                    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        let text = std::str::from_utf8(&line)?;
                        let sent = text
                            .split_once("\"sentMicros\":\"")
                            .and_then(|(_, rest)| rest.split('"').next())
                            .and_then(|s| s.parse::<u64>().ok());
                        if let Some(sent) = sent {
                            let now = epoch.elapsed().as_micros() as u64;
                            lat_sum
                                .lock()
                                .map_err(|_| anyhow::anyhow!("poisoned"))?
                                .push(Duration::from_micros(now.saturating_sub(sent)));
                        }
                        n += 1;
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Watched creates: every watcher sees each of these.
    let cpu0 = cpu_secs(pid);
    let (lat, el) = run(&mut pool, WATCH_EVENTS, move |i| {
        let i = CREATES - WATCH_EVENTS + i;
        let body = format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"cm-{i:05}\",\"labels\":{{\"kind\":\"watched\"}}}},\"data\":{{\"k\":\"value-{i}\",\"sentMicros\":\"{}\"}}}}",
            epoch.elapsed().as_micros()
        );
        ("POST", format!("/api/v1/namespaces/{ns}/configmaps"), Some(body.into_bytes()))
    })
    .await?;
    let n = lat.len();
    report(&format!("create, {WATCHERS} watchers"), lat, el);
    println!("{:<28} {:.0} µs apiserver CPU per create incl. fan-out", "", (cpu_secs(pid) - cpu0) * 1e6 / n as f64);

    let deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < WATCHERS * WATCH_EVENTS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = received.load(Ordering::Relaxed);
    let watch_lat = lat_sum.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    report_latency(&format!("watch delivery ({WATCHERS} w.)"), watch_lat);
    println!("{:<28} {delivered} of {} events delivered", "watch fan-out", WATCHERS * WATCH_EVENTS);
    for t in watch_tasks {
        t.abort();
    }
    println!("{:<28} {} MiB after the watch phase", "RSS", rss_kib(pid).0 / 1024);

    let cpu0 = cpu_secs(pid);
    let (lat, el) = run(&mut pool, GETS, move |i| {
        let n = (i * 7919) % CREATES;
        ("GET", format!("/api/v1/namespaces/{ns}/configmaps/cm-{n:05}"), None)
    })
    .await?;
    let n = lat.len();
    report("get (50 clients)", lat, el);
    println!("{:<28} {:.0} µs apiserver CPU per get", "", (cpu_secs(pid) - cpu0) * 1e6 / n as f64);
    println!("{:<28} {} MiB after the get phase", "RSS", rss_kib(pid).0 / 1024);

    let mut list_lat = Vec::new();
    let start = Instant::now();
    let mut items = 0;
    for _ in 0..LISTS {
        let t = Instant::now();
        let (code, body) = c0.send("GET", &format!("/api/v1/namespaces/{ns}/configmaps"), None).await?;
        anyhow::ensure!(code == 200, "list: {code}");
        list_lat.push(t.elapsed());
        items = serde_json::from_slice::<serde_json::Value>(&body)?["items"].as_array().map(Vec::len).unwrap_or(0);
    }
    report(&format!("list {items} objects"), list_lat, start.elapsed());
    let mut list_lat = Vec::new();
    let start = Instant::now();
    for _ in 0..LISTS {
        let t = Instant::now();
        let (code, _) = c0.send("GET", &format!("/api/v1/namespaces/{ns}/configmaps?resourceVersion=0"), None).await?;
        anyhow::ensure!(code == 200, "list rv=0: {code}");
        list_lat.push(t.elapsed());
    }
    report(&format!("list {items} objects (rv=0)"), list_lat, start.elapsed());
    let (rss_after, peak) = rss_kib(pid);
    println!(
        "{:<28} {} MiB after {} creates, {} MiB at the end, {} MiB peak",
        "RSS under load",
        rss_load / 1024,
        CREATES - WATCH_EVENTS,
        rss_after / 1024,
        peak / 1024
    );
    drop(api);
    drop(etcd);
    Ok(())
}

fn report_latency(name: &str, mut lat: Vec<Duration>) {
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or_default()
    };
    println!(
        "{name:<28} n={:<6} create-to-watcher latency   p50 {:>7.2} ms   p99 {:>7.2} ms",
        lat.len(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
    );
}

/// Spreads `total` requests over the pool's connections concurrently.
async fn run<F>(pool: &mut Vec<Conn>, total: usize, make: F) -> Result<(Vec<Duration>, Duration)>
where
    F: Fn(usize) -> (&'static str, String, Option<Vec<u8>>) + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in pool.drain(..) {
        let make = make.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let (method, path, body) = make(i);
                let t = Instant::now();
                let (code, text) = conn.send(method, &path, body).await?;
                anyhow::ensure!(code < 300, "{method} {path}: {code} {}", String::from_utf8_lossy(&text));
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>((conn, lat))
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let (conn, lat) = t.await??;
        pool.push(conn);
        all.extend(lat);
    }
    Ok((all, start.elapsed()))
}
