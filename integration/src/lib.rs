//! The integration-test harness: real etcd from the Debian package on free
//! ports in a temporary directory, the real service binaries, and stock
//! kubectl (1.33 and 1.32) pointed at them. Everything a harness starts is
//! killed and removed when its handle drops, so tests run in parallel.

pub mod cluster;
pub mod containerd;
pub mod node;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The kubectl versions every kubectl-driven test runs against.
pub const KUBECTL_VERSIONS: &[&str] = &["1.33", "1.32"];

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// The folder of the built binaries (`target/<profile>`), found from the test binary.
/// The integration crate's folder: cargo's `CARGO_MANIFEST_DIR` for this run
/// (cargo test and nextest set it) before the one this was compiled in, since
/// a binary built by another checkout that shares the target dir would
/// otherwise read that checkout's (maybe gone) scripts and manifests.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    manifest_dir().parent().map(PathBuf::from).unwrap_or_default()
}

pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("RUSTKUBE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>
    exe.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
}

/// The binaries init-cluster.sh takes from its `--bin-dir`.
const CLUSTER_BINARIES: [&str; 7] = [
    "kube-apiserver",
    "kube-pki",
    "kube-scheduler",
    "kube-controller-manager",
    "kubelet",
    "kube-proxy",
    "rustkube-cni",
];

/// This build's binaries as they are now, hard-linked (or copied) into a directory of the caller's
/// own under /var/tmp (a booted systemd's namespace has its own /tmp): other builds sharing the
/// target dir replace the binaries there, and a rerun of init-cluster.sh rightly restarts a
/// service whose binary changed.
pub fn snapshot_bin_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("rk-bin-").tempdir_in("/var/tmp").expect("temp dir");
    for b in CLUSTER_BINARIES {
        let (from, to) = (binary(b), dir.path().join(b));
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
        }
    }
    dir
}

/// A `--bin-dir` (under /var/tmp) of this build's binaries in which kube-apiserver is a script
/// that says `fake kube-apiserver: refusing to start` and exits 1.
pub fn bin_dir_with_a_failing_apiserver() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("rk-bin-").tempdir_in("/var/tmp").expect("temp dir");
    for b in CLUSTER_BINARIES.into_iter().filter(|b| *b != "kube-apiserver") {
        std::os::unix::fs::symlink(binary(b), dir.path().join(b)).expect("symlink");
    }
    let apiserver = dir.path().join("kube-apiserver");
    std::fs::write(&apiserver, "#!/bin/sh\necho 'fake kube-apiserver: refusing to start' >&2\nexit 1\n")
        .expect("script");
    let mut perms = std::fs::metadata(&apiserver).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&apiserver, perms).expect("chmod");
    dir
}

pub fn binary(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// The path of stock kubectl of one version (`kubectl.1.33`).
pub fn kubectl_path(version: &str) -> PathBuf {
    let base = Command::new("sh")
        .arg("-c")
        .arg("dirname \"$(readlink -f \"$(command -v kubectl)\")\"")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    PathBuf::from(base).join(format!("kubectl.{version}"))
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not become ready within {limit:?}")
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// A real etcd member, alone, on free ports.
pub struct Etcd {
    child: Child,
    pub dir: tempfile::TempDir,
    pub client_url: String,
}

impl Etcd {
    pub fn start() -> Result<Etcd> {
        Self::start_inner(None)
    }

    /// etcd serving TLS and requiring client certificates from `pki` (kube-pki's layout).
    pub fn start_tls(pki: &Path) -> Result<Etcd> {
        Self::start_inner(Some(pki))
    }

    fn start_inner(pki: Option<&Path>) -> Result<Etcd> {
        let dir = tempfile::tempdir()?;
        let client = free_port();
        let peer = free_port();
        let scheme = if pki.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{client}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let mut cmd = Command::new("etcd");
        if let Some(p) = pki {
            cmd.arg(format!("--cert-file={}", p.join(kube_pki::paths::ETCD_SERVER.cert).display()))
                .arg(format!("--key-file={}", p.join(kube_pki::paths::ETCD_SERVER.key).display()))
                .arg(format!("--trusted-ca-file={}", p.join(kube_pki::paths::ETCD_CA.cert).display()))
                .arg("--client-cert-auth");
        }
        let child = cmd
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-cluster=test=http://127.0.0.1:{peer}"))
            .arg("--log-level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd (apt-get install etcd-server)")?;
        let etcd = Etcd { child, dir, client_url };
        wait_for("etcd", Duration::from_secs(20), || port_open(client))?;
        Ok(etcd)
    }

    /// Runs etcdctl against this member.
    pub fn etcdctl(&self, args: &[&str]) -> Result<Output> {
        Ok(Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.client_url))
            .args(args)
            .output()?)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running kube-apiserver binary with an admin kubeconfig.
pub struct ApiServer {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub kubeconfig: PathBuf,
    etcd_url: String,
    extra_args: Vec<String>,
    bind_address: String,
}

impl ApiServer {
    pub fn start(etcd: &Etcd) -> Result<ApiServer> {
        Self::start_with(etcd, &[])
    }

    /// An apiserver on `port` (the one [`ApiServer::generate_pki`] was given)
    /// with a real PKI from kube-pki in `pki`: serving certificate,
    /// client-certificate authentication, and etcd over TLS when `etcd` uses it.
    /// The kubeconfig is kube-pki's admin.conf (a client certificate in system:masters).
    pub fn start_secure(etcd: &Etcd, pki: &Path, port: u16) -> Result<ApiServer> {
        let p = |rel: &str| pki.join(rel).display().to_string();
        let mut args = vec![
            format!("--tls-cert-file={}", p(kube_pki::paths::APISERVER.cert)),
            format!("--tls-private-key-file={}", p(kube_pki::paths::APISERVER.key)),
            format!("--client-ca-file={}", p(kube_pki::paths::CA.cert)),
            "--anonymous-auth=true".to_string(),
            format!("--service-account-signing-key-file={}", p(kube_pki::paths::SA_KEY)),
            format!("--service-account-key-file={}", p(kube_pki::paths::SA_PUB)),
        ];
        if etcd.client_url.starts_with("https") {
            args.push(format!("--etcd-cafile={}", p(kube_pki::paths::ETCD_CA.cert)));
            args.push(format!("--etcd-certfile={}", p(kube_pki::paths::APISERVER_ETCD_CLIENT.cert)));
            args.push(format!("--etcd-keyfile={}", p(kube_pki::paths::APISERVER_ETCD_CLIENT.key)));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut s = Self::prepare(etcd, &refs, port)?;
        std::fs::copy(pki.join(kube_pki::paths::ADMIN_CONF), &s.kubeconfig)?;
        s.launch()?;
        Ok(s)
    }

    /// Generates a PKI for an apiserver on `port` at 127.0.0.1.
    pub fn generate_pki(dir: &Path, port: u16) -> Result<()> {
        let mut opts = kube_pki::InitOptions::new(dir, std::net::IpAddr::from([127, 0, 0, 1]), "test-node");
        opts.bind_port = port;
        opts.control_plane_endpoint = Some(format!("https://127.0.0.1:{port}"));
        let _report = kube_pki::init(&opts).map_err(|e| anyhow::anyhow!("kube-pki: {e}"))?;
        Ok(())
    }

    /// An apiserver listening on every interface, for hosts in network namespaces.
    pub fn start_on_all_interfaces(etcd: &Etcd) -> Result<ApiServer> {
        let mut s = Self::prepare(etcd, &[], free_port())?;
        s.bind_address = "0.0.0.0".into();
        s.launch()?;
        Ok(s)
    }

    pub fn start_with(etcd: &Etcd, extra_args: &[&str]) -> Result<ApiServer> {
        let mut s = Self::prepare(etcd, extra_args, free_port())?;
        s.launch()?;
        Ok(s)
    }

    fn prepare(etcd: &Etcd, extra_args: &[&str], port: u16) -> Result<ApiServer> {
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("admin.conf");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: admin\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\ncurrent-context: test\n"
            ),
        )?;
        Ok(ApiServer {
            child: None,
            dir,
            port,
            kubeconfig,
            etcd_url: etcd.client_url.clone(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            bind_address: "127.0.0.1".into(),
        })
    }

    fn launch(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("apiserver.log"))?;
        // Bootstrap identities: the admin (system:masters) and an unprivileged user.
        let tokens = self.dir.path().join("tokens.csv");
        std::fs::write(
            &tokens,
            "admin,admin,admin-uid,\"system:masters\"\n\
             alice-token,alice,alice-uid,\"dev\"\n\
             node1-token,system:node:n1,n1-uid,\"system:nodes\"\n\
             node2-token,system:node:n2,n2-uid,\"system:nodes\"\n\
             scheduler-token,system:kube-scheduler,scheduler-uid\n\
             controller-manager-token,system:kube-controller-manager,kcm-uid\n\
             kube-proxy-token,system:kube-proxy,kube-proxy-uid\n",
        )?;
        // Upstream requires a service-account signing key; secure setups pass their own.
        let mut sa_args = Vec::new();
        if !self.extra_args.iter().any(|a| a.starts_with("--service-account-signing-key-file")) {
            let key_path = self.dir.path().join("sa.key");
            let pub_path = self.dir.path().join("sa.pub");
            if !key_path.exists() {
                let key = kube_pki::cert::Key::generate().context("generating a service-account key")?;
                std::fs::write(&key_path, key.pem())?;
                std::fs::write(&pub_path, key.public_pem())?;
            }
            sa_args.push(format!("--service-account-signing-key-file={}", key_path.display()));
            sa_args.push(format!("--service-account-key-file={}", pub_path.display()));
        }
        let child = Command::new(binary("kube-apiserver"))
            .args(&sa_args)
            .arg(format!("--etcd-servers={}", self.etcd_url))
            .arg(format!("--token-auth-file={}", tokens.display()))
            .arg("--authorization-mode=Node,RBAC")
            .arg("--enable-admission-plugins=NodeRestriction")
            .arg(format!("--secure-port={}", self.port))
            .arg(format!("--bind-address={}", self.bind_address))
            .arg(format!("--cert-dir={}", self.dir.path().join("certs").display()))
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary("kube-apiserver").display()))?;
        self.child = Some(child);
        let url = format!("{}/readyz", self.url());
        wait_for("kube-apiserver", Duration::from_secs(30), || {
            curl(&["-sk", "-o", "/dev/null", "-w", "%{http_code}", &url]).map(|o| o.stdout == b"200").unwrap_or(false)
        })
        .with_context(|| format!("log:\n{}", self.log()))
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
    }

    /// Kills the server (SIGKILL: nothing is flushed on purpose).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the same server again on the same port.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.launch()
    }

    /// Runs stock kubectl of `version` against this server.
    pub fn kubectl(&self, version: &str, args: &[&str]) -> Output {
        self.kubectl_stdin(version, args, None)
    }

    /// Runs kubectl as another bearer-token user.
    pub fn kubectl_as(&self, version: &str, token: &str, args: &[&str]) -> Output {
        let mut full = vec!["--token", token];
        full.extend_from_slice(args);
        self.kubectl_stdin(version, &full, None)
    }

    pub fn kubectl_stdin(&self, version: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(kubectl_path(version));
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .env("HOME", self.dir.path())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut run = || -> std::io::Result<Output> {
            let mut child = cmd.spawn()?;
            if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
                use std::io::Write;
                pipe.write_all(input.as_bytes())?;
            }
            child.wait_with_output()
        };
        run().unwrap_or_else(|e| Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
            stdout: Vec::new(),
            stderr: format!("running kubectl.{version}: {e}").into_bytes(),
        })
    }

    /// A raw HTTPS request as the admin: (status code, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<(u16, String)> {
        let ct = content_type.map(|c| format!("Content-Type: {c}"));
        let mut headers = vec!["Authorization: Bearer admin"];
        headers.extend(ct.as_deref());
        let (code, bytes, _) = self.curl_request(method, path, &headers, body)?;
        Ok((code, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

impl ApiServer {
    /// A JSON request: (status code, parsed body or Null).
    pub fn json(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> (u16, serde_json::Value) {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let ct = if method == "PATCH" { "application/merge-patch+json" } else { "application/json" };
        let (code, text) = self.request(method, path, Some(ct), bytes.as_deref()).unwrap_or((0, String::new()));
        (code, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// A request as the admin with extra headers: (status code, body, response headers).
    pub fn request_with_headers(&self, method: &str, path: &str, headers: &[&str]) -> Result<(u16, Vec<u8>, String)> {
        let mut all = vec!["Authorization: Bearer admin"];
        all.extend_from_slice(headers);
        self.raw_request(method, path, &all)
    }

    /// A request with exactly these headers (no credentials unless given).
    pub fn raw_request(&self, method: &str, path: &str, headers: &[&str]) -> Result<(u16, Vec<u8>, String)> {
        self.curl_request(method, path, headers, None)
    }

    /// One curl request: (status code, body, response headers).
    fn curl_request(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>, String)> {
        let body_file = self.dir.path().join(unique_name("body"));
        let out_file = self.dir.path().join(unique_name("out"));
        let hdr_file = self.dir.path().join(unique_name("hdr"));
        let mut args: Vec<String> = vec!["-sk".into(), "-X".into(), method.into()];
        args.extend(["-o".into(), out_file.display().to_string(), "-D".into(), hdr_file.display().to_string()]);
        args.extend(["-w".into(), "%{http_code}".into()]);
        for h in headers {
            args.extend(["-H".into(), h.to_string()]);
        }
        if let Some(b) = body {
            std::fs::write(&body_file, b)?;
            args.extend(["--data-binary".into(), format!("@{}", body_file.display())]);
        }
        args.push(format!("{}{path}", self.url()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = curl(&refs)?;
        let code: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
        let response = std::fs::read(&out_file).unwrap_or_default();
        let hdrs = std::fs::read_to_string(&hdr_file).unwrap_or_default();
        for f in [&body_file, &out_file, &hdr_file] {
            let _ = std::fs::remove_file(f);
        }
        Ok((code, response, hdrs))
    }
}

impl ApiServer {
    /// A kubeconfig for this server with a bearer token from the token file.
    pub fn token_kubeconfig(&self, user: &str, token: &str) -> Result<PathBuf> {
        self.token_kubeconfig_at(user, token, &self.url())
    }

    /// The same, reaching the server at `server` (another address of this host).
    pub fn token_kubeconfig_at(&self, user: &str, token: &str, server: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(format!("{user}-{}.conf", unique_name("kc")));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: {user}\ncurrent-context: test\n",
            ),
        )?;
        Ok(path)
    }

    /// Starts a component binary (`kube-scheduler`, `kube-controller-manager`...)
    /// against this server with `--kubeconfig` and `args`; it is killed on drop.
    pub fn start_component(&self, binary_name: &str, kubeconfig: &Path, args: &[&str]) -> Result<Component> {
        self.start_component_in(None, binary_name, kubeconfig, args)
    }

    /// The same, inside a network namespace (a host of its own) when `netns` is given.
    pub fn start_component_in(
        &self,
        netns: Option<&str>,
        binary_name: &str,
        kubeconfig: &Path,
        args: &[&str],
    ) -> Result<Component> {
        let dir = tempfile::tempdir()?;
        let log_path = dir.path().join(format!("{binary_name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut command = match netns {
            Some(ns) => {
                // Only the network namespace (`ip netns exec` would remount /sys).
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(binary(binary_name));
                c
            }
            None => Command::new(binary(binary_name)),
        };
        let child = command
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(args)
            .env("RUST_LOG", std::env::var("COMPONENT_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary(binary_name).display()))?;
        Ok(Component { child: Some(child), dir, log_path })
    }
}

/// A running component process; killed (SIGKILL) when dropped.
pub struct Component {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    log_path: PathBuf,
}

impl Component {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().map(|c| matches!(c.try_wait(), Ok(None))).unwrap_or(false)
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The resident set size of a process in KiB (from /proc).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Polls `check` every 100 ms until it returns Some or `limit` passes.
pub fn eventually<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A name unique within this process, for temporary files of concurrent requests.
fn unique_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn curl(args: &[&str]) -> Result<Output> {
    Command::new("curl").args(args).output().context("running curl")
}

/// etcd plus one apiserver: what most tests need.
pub struct ControlPlane {
    pub apiserver: ApiServer,
    pub etcd: Etcd,
}

impl ControlPlane {
    pub fn start() -> Result<ControlPlane> {
        let etcd = Etcd::start()?;
        let apiserver = ApiServer::start(&etcd)?;
        Ok(ControlPlane { apiserver, etcd })
    }
}

/// Output as text, for assertions with context.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts kubectl succeeded and returns its stdout.
#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "kubectl failed: {}", text(&o));
    stdout(&o)
}

/// Asserts kubectl failed and returns its combined output.
#[track_caller]
pub fn fails(o: Output) -> String {
    assert!(!o.status.success(), "kubectl unexpectedly succeeded: {}", text(&o));
    text(&o)
}
