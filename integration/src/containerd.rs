//! A private containerd per test: its own root, state, socket, CNI config and
//! pod network, with the project's images imported and the project's CNI
//! plugin (`rustkube-bridge`, chained with `portmap`) as its network.
//!
//! Parallel tests never collide: each instance holds a slot (an flock'd file
//! under /run/rustkube-test/slots) that numbers its bridge (`rkt<N>`), pod
//! subnet (`10.240.<N>.0/24` by default), nftables table (`rustkube-cni-t<N>`)
//! and everything else lives in its temp dir (netns mounts included).
//! Dropping the handle kills the containers, shims and containerd, unmounts
//! whatever is left under its dirs, and removes its bridge and table.
//!
//! Needs root, containerd, runc, containernetworking-plugins (/usr/lib/cni),
//! busybox-static, nftables and iproute2, and the `rustkube-cni` binary built
//! beside the test binaries (`cargo build -p rustkube-cni`).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rustix::fs::{flock, FlockOperation};

/// The sandbox image containerd's CRI is configured with.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.9";
/// The same image under the project's name.
pub const PAUSE_IMAGE_ALIAS: &str = "docker.io/rustkube/pause:latest";
/// busybox with its applets in /bin; its default command is `httpd -f -v -p 80 -h /www`.
pub const TEST_IMAGE: &str = "docker.io/rustkube/testimage:latest";
/// What the test image's httpd serves at `/`.
pub const TEST_PAGE_MARKER: &str = "rustkube testimage";
/// The CNI network name in the conflist.
pub const NETWORK_NAME: &str = "rustkube";

const SLOT_DIR: &str = "/run/rustkube-test/slots";
const IMAGE_CACHE: &str = "/var/cache/rustkube-images";
const CNI_PLUGIN_DIR: &str = "/usr/lib/cni";

/// How to start an instance.
#[derive(Clone, Debug)]
pub struct ContainerdOptions {
    /// The first two octets of the cluster network: it is `<prefix>.0.0/16` and
    /// this instance's pod subnet is `<prefix>.<slot>.0/24`.
    pub network_prefix: [u8; 2],
    /// Import the pause and test images (built once per process, cached on disk).
    pub import_images: bool,
    /// Write the CNI conflist before starting (containerd's network is then ready at once).
    pub write_cni_config: bool,
    /// Run containerd (and so its pods' networking) inside this network namespace: a "host" of its own.
    pub netns: Option<String>,
    /// The OCI runtime binary the runc shim drives: `runc`, or e.g. `/usr/bin/crun`.
    pub oci_runtime: String,
}

impl Default for ContainerdOptions {
    fn default() -> Self {
        Self {
            network_prefix: [10, 240],
            import_images: true,
            write_cni_config: true,
            netns: None,
            oci_runtime: "runc".into(),
        }
    }
}

/// A running private containerd.
pub struct Containerd {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    slot: Slot,
    bridge: String,
    nft_table: String,
    subnet: String,
    gateway: String,
    cluster_cidr: String,
}

impl Containerd {
    pub fn start(opts: ContainerdOptions) -> Result<Containerd> {
        let slot = Slot::acquire()?;
        let n = slot.number;
        let [a, b] = opts.network_prefix;
        let bridge = format!("rkt{n}");
        let nft_table = format!("rustkube-cni-t{n}");
        // Whatever a killed earlier holder of this slot left behind is ours now.
        remove_bridge(&bridge);
        remove_nft_table(&nft_table);

        let dir =
            tempfile::Builder::new().prefix(&format!("rk-ctrd-{n}-")).tempdir_in(temp_root()).context("temp dir")?;
        let path = dir.path().to_path_buf();
        let mut me = Containerd {
            child: None,
            dir: Some(dir),
            path: path.clone(),
            slot,
            bridge,
            nft_table,
            subnet: format!("{a}.{b}.{n}.0/24"),
            gateway: format!("{a}.{b}.{n}.1"),
            cluster_cidr: format!("{a}.{b}.0.0/16"),
        };
        for sub in ["root", "state", "net.d", "cni-bin", "cni-data", "pods", "certs.d"] {
            fs::create_dir_all(path.join(sub)).with_context(|| format!("creating {sub}"))?;
        }
        me.link_cni_plugins()?;
        if opts.write_cni_config {
            fs::write(me.conflist_path(), me.conflist()).context("writing the CNI conflist")?;
        }
        // Cleanup (also of a killed test's leftovers) deletes containers with the same runtime.
        fs::write(path.join(OCI_RUNTIME_FILE), &opts.oci_runtime).context("writing the runtime's name")?;
        fs::write(path.join("config.toml"), me.config_toml(&opts.oci_runtime)).context("writing config.toml")?;

        let log = File::create(me.log_path()).context("containerd log")?;
        let mut command = match &opts.netns {
            Some(ns) => {
                // nsenter enters only the network namespace; `ip netns exec` would also
                // remount /sys and hide the cgroup mounts runc needs.
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("containerd");
                c
            }
            None => Command::new("containerd"),
        };
        let child = command
            .arg("--config")
            .arg(path.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting containerd (is it installed?)")?;
        me.child = Some(child);
        me.wait_ready()?;
        if opts.import_images {
            let archives = image_archives()?;
            for name in ["pause.tar", "testimage.tar"] {
                let out = me.ctr(&["images", "import", &archives.join(name).to_string_lossy()])?;
                if !out.status.success() {
                    bail!("ctr images import {name}: {}", String::from_utf8_lossy(&out.stderr));
                }
            }
        }
        Ok(me)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("containerd exited ({status}):\n{}", self.log_tail(40));
                }
            }
            if self.socket().exists() && self.ctr(&["version"]).map(|o| o.status.success()).unwrap_or(false) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("containerd did not answer on {} within 30s:\n{}", self.socket().display(), self.log_tail(40))
    }

    /// The instance's temp dir (root, state, net.d, cni-bin, cni-data, pods, containerd.log).
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The gRPC socket (CRI and containerd's own API).
    pub fn socket(&self) -> PathBuf {
        self.path.join("containerd.sock")
    }

    /// `unix://<socket>`, the form `--container-runtime-endpoint` takes.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// A folder for pod logs (`PodSandboxConfig.log_directory`).
    pub fn pod_log_dir(&self) -> PathBuf {
        self.path.join("pods")
    }

    pub fn log_path(&self) -> PathBuf {
        self.path.join("containerd.log")
    }

    /// The last `lines` lines of containerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    pub fn nft_table(&self) -> &str {
        &self.nft_table
    }

    /// This instance's pod subnet, e.g. `10.240.7.0/24`.
    pub fn subnet(&self) -> &str {
        &self.subnet
    }

    /// The bridge's address, the pods' default gateway.
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// The cluster network: traffic to it keeps its source address.
    pub fn cluster_cidr(&self) -> &str {
        &self.cluster_cidr
    }

    pub fn cni_conf_dir(&self) -> PathBuf {
        self.path.join("net.d")
    }

    /// The plugins containerd runs: rustkube-cni plus /usr/lib/cni's, as symlinks.
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.path.join("cni-bin")
    }

    /// The IPAM data dir of the network (one file per allocated address).
    pub fn cni_data_dir(&self) -> PathBuf {
        self.path.join("cni-data")
    }

    pub fn conflist_path(&self) -> PathBuf {
        self.cni_conf_dir().join("10-rustkube.conflist")
    }

    /// The `rustkube-bridge` plugin's network config (without `cniVersion` and `name`).
    pub fn plugin_config(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "rustkube-bridge",
            "bridge": self.bridge,
            "subnet": self.subnet,
            "clusterCIDR": self.cluster_cidr,
            "dataDir": self.cni_data_dir(),
            "nftTable": self.nft_table,
        })
    }

    /// The conflist: rustkube-bridge, then portmap for hostPorts. (containerd sets
    /// up loopback itself with the `loopback` plugin from the same bin dir.)
    pub fn conflist(&self) -> String {
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": NETWORK_NAME,
            "plugins": [
                self.plugin_config(),
                { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true },
            ],
        });
        serde_json::to_string_pretty(&conf).unwrap_or_default()
    }

    /// The addresses currently allocated by the plugin.
    pub fn allocated_ips(&self) -> Vec<String> {
        let mut ips: Vec<String> = fs::read_dir(self.cni_data_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
            .collect();
        ips.sort();
        ips
    }

    /// Runs `ctr -a <socket> -n k8s.io <args>`.
    pub fn ctr(&self, args: &[&str]) -> Result<Output> {
        Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .context("running ctr")
    }

    /// Invokes the rustkube-bridge plugin by hand, as a runtime would, with
    /// this instance's network config. Returns (exit status success, stdout).
    pub fn cni_invoke(&self, command: &str, container_id: &str, netns: Option<&Path>) -> Result<(bool, String)> {
        use std::io::Write;
        let mut conf = self.plugin_config();
        conf["cniVersion"] = "1.0.0".into();
        conf["name"] = NETWORK_NAME.into();
        let mut cmd = Command::new(self.cni_bin_dir().join("rustkube-bridge"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", self.cni_bin_dir());
        if let Some(ns) = netns {
            cmd.env("CNI_NETNS", ns);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running rustkube-cni")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(conf.to_string().as_bytes())?;
        }
        let out = child.wait_with_output()?;
        Ok((out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// A CRI channel over the socket, for `k8s_cri::v1::{runtime_service_client, image_service_client}`.
    pub async fn cri_channel(&self) -> Result<tonic::transport::Channel> {
        use hyper_util::rt::TokioIo;
        let socket = self.socket();
        let channel = tonic::transport::Endpoint::try_from("http://[::1]:50051")?
            .connect_with_connector(tower::service_fn(move |_: http::Uri| {
                let socket = socket.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
            }))
            .await
            .context("connecting to containerd's CRI")?;
        Ok(channel)
    }

    /// Lets this containerd pull from a plain-HTTP registry at `host:port`
    /// (a hosts.toml under its registry config_path, read at each pull).
    pub fn trust_plain_http_registry(&self, host_port: &str) -> Result<()> {
        let dir = self.path.join("certs.d").join(host_port);
        fs::create_dir_all(&dir)?;
        let hosts = format!(
            "server = \"http://{host_port}\"\n\n[host.\"http://{host_port}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        fs::write(dir.join("hosts.toml"), hosts).context("writing hosts.toml")
    }

    fn link_cni_plugins(&self) -> Result<()> {
        let bin = self.cni_bin_dir();
        let ours = crate::binary("rustkube-cni");
        if !ours.exists() {
            bail!("{} is missing: build it with `cargo build -p rustkube-cni`", ours.display());
        }
        // The conflist's type is rustkube-bridge; the binary is rustkube-cni.
        symlink(&ours, bin.join("rustkube-bridge"))?;
        symlink(&ours, bin.join("rustkube-cni"))?;
        let entries = fs::read_dir(CNI_PLUGIN_DIR)
            .with_context(|| format!("{CNI_PLUGIN_DIR} (apt-get install containernetworking-plugins)"))?;
        for entry in entries.flatten() {
            symlink(entry.path(), bin.join(entry.file_name()))?;
        }
        Ok(())
    }

    fn config_toml(&self, oci_runtime: &str) -> String {
        let p = self.path.display();
        let binary_name =
            if oci_runtime == "runc" { String::new() } else { format!("\n        BinaryName = \"{oci_runtime}\"") };
        format!(
            r#"version = 2
root = "{p}/root"
state = "{p}/state"
# Snapshotters this VM cannot use (no btrfs/zfs/devmapper/aufs); overlayfs and native work.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{p}/containerd.sock"

[ttrpc]
  address = "{p}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{p}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  # No CAP_SYS_RESOURCE here: never lower a process's oom_score_adj.
  restrict_oom_score_adj = true
  sandbox_image = "{PAUSE_IMAGE}"
  # Pod netns mounts under this instance's state dir, so cleanup finds them.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # runc's state per instance (the shim appends the namespace).
        Root = "{p}/runc"{binary_name}

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{p}/cni-bin"
    conf_dir = "{p}/net.d"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{p}/certs.d"
"#
        )
    }

    /// Everything this instance started, in dependency order. Safe to call twice.
    fn cleanup(&mut self) {
        // 1. The containers (pause included): runc kills their processes and removes their cgroups.
        delete_containers(&self.path);
        // 2. containerd, then its shims.
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_processes_of(&self.path);
        // 3. Mounts left under our dirs (rootfs overlays, shm, netns).
        unmount_under(&self.path);
        // 4. The pod network: veths still on our bridge, the bridge, the nft table.
        remove_bridge(&self.bridge);
        remove_nft_table(&self.nft_table);
        // 5. The files (TempDir), then the slot.
        if let Some(dir) = self.dir.take() {
            if dir.close().is_err() {
                let _ = fs::remove_dir_all(&self.path);
            }
        }
        self.slot.release();
    }
}

/// Tears down what instances killed before their Drop ran (a nextest timeout,
/// SIGKILL) left behind: a `rk-ctrd-<n>-*` dir whose slot nobody holds is
/// stale, and holding the slot while sweeping keeps a new instance out of it.
fn sweep_stale() {
    for entry in fs::read_dir(temp_root()).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(n) = name.strip_prefix("rk-ctrd-").and_then(|r| r.split('-').next()).and_then(|n| n.parse().ok())
        else {
            continue;
        };
        let Some(mut slot) = Slot::try_acquire(n) else { continue };
        let dir = entry.path();
        delete_containers(&dir);
        kill_processes_of(&dir);
        unmount_under(&dir);
        let _ = fs::remove_dir_all(&dir);
        remove_bridge(&format!("rkt{n}"));
        remove_nft_table(&format!("rustkube-cni-t{n}"));
        slot.release();
    }
}

/// Where an instance's dir names its OCI runtime binary.
const OCI_RUNTIME_FILE: &str = "oci-runtime";

/// `runc delete --force` (or the instance's other runtime's) of every container in a containerd dir's runc root.
fn delete_containers(dir: &Path) {
    let runc_root = dir.join("runc").join("k8s.io");
    if !runc_root.exists() {
        return;
    }
    let runtime = fs::read_to_string(dir.join(OCI_RUNTIME_FILE)).unwrap_or_else(|_| "runc".into());
    let runtime = runtime.trim();
    let ids = Command::new(runtime)
        .arg("--root")
        .arg(&runc_root)
        .args(["list", "-q"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for id in ids.split_whitespace() {
        let _ = Command::new(runtime)
            .arg("--root")
            .arg(&runc_root)
            .args(["delete", "--force", id])
            .stderr(Stdio::null())
            .status();
    }
}

/// SIGKILLs containerd (found by its config path) and its shims (by its socket path).
fn kill_processes_of(dir: &Path) {
    for arg in [dir.join("config.toml"), dir.join("containerd.sock")] {
        for pid in pids_with_arg(&arg.to_string_lossy()) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

/// Lazily unmounts everything at or under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let mut mounts = mounts_under(dir);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = Command::new("umount").args(["-l", &m]).stderr(Stdio::null()).status();
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- containerd log ({}) ---\n{}", self.log_path().display(), self.log_tail(60));
        }
        self.cleanup();
    }
}

fn temp_root() -> PathBuf {
    // Not /tmp when it is a tmpfs: overlayfs upper dirs and big layers are happier on disk.
    std::env::var_os("RUSTKUBE_CONTAINERD_TMP").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp"))
}

/// The pod subnet number of an instance, held as an flock on a file, so that
/// parallel test processes (and a crashed one's leftovers) never share a network.
struct Slot {
    number: u8,
    file: Option<File>,
}

impl Slot {
    fn acquire() -> Result<Slot> {
        fs::create_dir_all(SLOT_DIR).with_context(|| format!("creating {SLOT_DIR}"))?;
        sweep_stale();
        // Start at a pid-dependent place so parallel processes rarely contend.
        let offset = std::process::id() % 250;
        for i in 0..250u32 {
            let number = u8::try_from(1 + (offset + i) % 250).unwrap_or(1);
            if let Some(slot) = Slot::try_acquire(number) {
                return Ok(slot);
            }
        }
        Err(anyhow!("all 250 containerd test slots are taken"))
    }

    fn try_acquire(number: u8) -> Option<Slot> {
        let path = Path::new(SLOT_DIR).join(format!("slot-{number}.lock"));
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(path).ok()?;
        flock(&file, FlockOperation::NonBlockingLockExclusive).ok()?;
        Some(Slot { number, file: Some(file) })
    }

    fn release(&mut self) {
        // Closing the file drops the lock.
        self.file.take();
    }
}

fn remove_bridge(bridge: &str) {
    let ports = Command::new("ip")
        .args(["-j", "link", "show", "master", bridge])
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    for port in ports.as_ref().and_then(|p| p.as_array()).into_iter().flatten() {
        if let Some(name) = port.get("ifname").and_then(|n| n.as_str()) {
            let _ = Command::new("ip").args(["link", "del", "dev", name]).stderr(Stdio::null()).status();
        }
    }
    let _ = Command::new("ip").args(["link", "del", "dev", bridge]).stderr(Stdio::null()).status();
}

fn remove_nft_table(table: &str) {
    let _ = Command::new("nft").args(["delete", "table", "ip", table]).stderr(Stdio::null()).status();
}

/// Mount points at or under `dir`, from /proc/self/mountinfo (octal escapes decoded).
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .collect()
}

fn unescape_mount_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Processes with `arg` as one of their command-line arguments.
fn pids_with_arg(arg: &str) -> Vec<u32> {
    let me = std::process::id();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Debian's docker-registry (distribution) on a free loopback port, storing in a temp dir.
pub struct LocalRegistry {
    child: Child,
    _dir: tempfile::TempDir,
    addr: String,
}

impl LocalRegistry {
    pub fn start() -> Result<LocalRegistry> {
        let dir = tempfile::Builder::new().prefix("rk-registry-").tempdir_in(temp_root())?;
        let addr = format!("127.0.0.1:{}", crate::free_port());
        let child = spawn_registry(dir.path(), &addr, None)?;
        let mut me = LocalRegistry { child, _dir: dir, addr };
        me.wait_listening()?;
        Ok(me)
    }

    fn wait_listening(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                let log = fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default();
                bail!("docker-registry exited ({status}):\n{log}");
            }
            if start.elapsed() > Duration::from_secs(15) {
                bail!("docker-registry did not listen on {} within 15s", self.addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Restarts the registry on the same address and storage with htpasswd
    /// basic auth: from now on only `user`/`password` may pull or push.
    pub fn require_auth(&mut self, user: &str, password: &str) -> Result<()> {
        let htpasswd = self._dir.path().join("htpasswd");
        fs::write(&htpasswd, format!("{user}:{}\n", bcrypt_hash(password)?))?;
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_registry(self._dir.path(), &self.addr, Some(&htpasswd))?;
        self.wait_listening()
    }

    /// `127.0.0.1:<port>`
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Pushes the project's images (scripts/build-images.sh --push): `<addr>/pause:3.9`,
    /// `<addr>/rustkube/pause:latest`, `<addr>/rustkube/testimage:latest`.
    pub fn push_images(&self) -> Result<()> {
        image_archives()?;
        let script = crate::repo_root().join("scripts/build-images.sh");
        let status = Command::new("bash")
            .arg(&script)
            .args(["--no-import", "--out", IMAGE_CACHE, "--push", &self.addr])
            .status()
            .context("running build-images.sh --push")?;
        if !status.success() {
            bail!("build-images.sh --push {} failed ({status})", self.addr);
        }
        Ok(())
    }
}

/// Starts docker-registry with its config, storage and log in `dir`.
fn spawn_registry(dir: &Path, addr: &str, htpasswd: Option<&Path>) -> Result<Child> {
    let mut config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
        dir.join("data").display()
    );
    if let Some(h) = htpasswd {
        config.push_str(&format!("auth:\n  htpasswd:\n    realm: rustkube-test\n    path: {}\n", h.display()));
    }
    fs::write(dir.join("config.yml"), config)?;
    let log = OpenOptions::new().create(true).append(true).open(dir.join("registry.log"))?;
    Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting docker-registry (apt-get install docker-registry)")
}

/// A bcrypt hash for an htpasswd file (the only kind docker-registry takes):
/// apache2-utils' `htpasswd` if installed, else Python's crypt (glibc's libxcrypt).
fn bcrypt_hash(password: &str) -> Result<String> {
    if let Ok(out) = Command::new("htpasswd").args(["-nbBC", "10", "u", password]).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(hash) = text.trim().strip_prefix("u:").filter(|_| out.status.success()) {
            return Ok(hash.to_string());
        }
    }
    let out = Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
        ])
        .arg(password)
        .output()
        .context("running python3 for a bcrypt hash")?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !hash.starts_with("$2") {
        bail!("no bcrypt hash (install apache2-utils): {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(hash)
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The folder holding `pause.tar` and `testimage.tar`: built by
/// scripts/build-images.sh once per process, cached on disk by content under
/// /var/cache/rustkube-images, behind an flock so parallel tests build once.
pub fn image_archives() -> Result<PathBuf> {
    static ARCHIVES: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    ARCHIVES.get_or_init(|| build_image_archives().map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!(e))
}

fn build_image_archives() -> Result<PathBuf> {
    fs::create_dir_all(IMAGE_CACHE).with_context(|| format!("creating {IMAGE_CACHE}"))?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(Path::new(IMAGE_CACHE).join(".lock"))
        .context("image cache lock")?;
    flock(&lock, FlockOperation::LockExclusive).context("locking the image cache")?;
    let script = crate::repo_root().join("scripts/build-images.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).args(["--no-import", "--print-dir", "--out", IMAGE_CACHE]);
    // Build pause into the same target dir as the tests (target/<profile>/.. is the target dir).
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        if let Some(target) = crate::bin_dir().parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
    }
    let out = cmd.stderr(Stdio::inherit()).output().with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !dir.join("pause.tar").exists() || !dir.join("testimage.tar").exists() {
        bail!("{} printed {}, which lacks the archives", script.display(), dir.display());
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert_eq!(unescape_mount_path("/end\\"), "/end\\");
    }
}
