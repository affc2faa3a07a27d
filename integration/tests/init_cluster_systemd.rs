//! `scripts/init-cluster.sh` where systemd is PID 1: a real systemd boots in
//! a PID + mount + UTS namespace, the script runs inside it, and the cluster's
//! services are systemd units (installed from systemd/, flags in
//! /etc/kubernetes/<service>.env) that systemd started and restarts. Stock
//! kubectl 1.33 sees the node Ready; the installed units pass `systemd-analyze
//! verify`; a second run restarts nothing; `reset` disables and removes the units.
//! Before that, `--no-systemd` under the same booted systemd runs supervised
//! processes instead (checked cheaply: with an apiserver that exits at once, the
//! run stops at that step having installed no unit).
//!
//! The namespace's systemd must not touch the shared machine: it gets its own
//! /run, /tmp and /var/log/journal (tmpfs), an /etc/systemd/system of its own,
//! no generators, and a unit directory holding only the targets, slices,
//! journald and containerd (no tmpfiles, sysctl, sysusers, gettys or the
//! distribution's enabled services). /usr/local/bin, where the script installs
//! the binaries, is an overlay whose writes stay in the namespace. The network
//! namespace, /etc/kubernetes and the host's containerd dirs are shared, so this
//! test is in nextest's `init-cluster` group with the other init_cluster tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const UNITS: &[&str] = &[
    "rustkube-etcd.service",
    "kube-apiserver.service",
    "kube-controller-manager.service",
    "kube-scheduler.service",
    "containerd.service",
    "kubelet.service",
    "kube-proxy.service",
];

const BOOT: &str = r#"#!/bin/sh
set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /var/log/journal 2>/dev/null || true
# systemd mounts every cgroup v1 controller the kernel lists in /proc/cgroups. A
# controller the host has not mounted would get a new hierarchy, and a hierarchy
# outlives this namespace: every runtime on the machine then finds a controller in
# /proc/self/cgroup with no mount ("cannot find cgroup mount destination"). Show
# systemd only the controllers the host has mounted.
mounted=$(awk '{ for (i = 1; i < NF; i++) if ($i == "-") { if ($(i+1) == "cgroup") print $(i+3); break } }' \
  /proc/self/mountinfo | tr ',' '\n')
{ head -n 1 /proc/cgroups
  tail -n +2 /proc/cgroups | while read -r name rest; do
    if printf '%s\n' "$mounted" | grep -qx "$name"; then printf '%s\t%s\n' "$name" "$rest"; fi
  done; } > /run/rustkube-test-cgroups
mount --bind /run/rustkube-test-cgroups /proc/cgroups
units=/run/rustkube-test-units
mkdir -p $units /run/rustkube-test-ovl/upper /run/rustkube-test-ovl/work
cp /lib/systemd/system/*.target /lib/systemd/system/*.slice $units/
for u in containerd.service systemd-journald.service systemd-journald.socket \
         systemd-journald-dev-log.socket systemd-journald-audit.socket; do
  [ -f /lib/systemd/system/$u ] && cp /lib/systemd/system/$u $units/
done
mount --bind $units /lib/systemd/system
mount -t tmpfs tmpfs /lib/systemd/system-generators
mount -t tmpfs tmpfs /etc/systemd/system
mount -t overlay overlay \
  -o lowerdir=/usr/local/bin,upperdir=/run/rustkube-test-ovl/upper,workdir=/run/rustkube-test-ovl/work /usr/local/bin
exec /lib/systemd/systemd --system --unit=multi-user.target
"#;

fn repo() -> PathBuf {
    integration::repo_root()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The cgroups directly under each hierarchy's root that look like systemd's (units, slices, scopes).
fn systemd_cgroups() -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for h in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        for c in std::fs::read_dir(h.path()).into_iter().flatten().flatten() {
            let name = c.file_name().to_string_lossy().into_owned();
            let ours = [".slice", ".scope", ".mount", ".service", ".socket", ".swap"].iter().any(|s| name.ends_with(s));
            if ours && c.path().is_dir() {
                out.insert(c.path());
            }
        }
    }
    out
}

fn remove_cgroup_tree(dir: &Path) {
    for c in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if c.path().is_dir() {
            remove_cgroup_tree(&c.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A systemd booted in its own PID, mount and UTS namespaces.
struct Systemd {
    unshare: Child,
    pid: u32,
    cgroups_before: BTreeSet<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Systemd {
    fn boot() -> Systemd {
        let cgroups_before = systemd_cgroups();
        let dir = tempfile::Builder::new().prefix("rk-systemd-").tempdir_in("/var/tmp").expect("temp dir");
        let boot = dir.path().join("boot.sh");
        std::fs::write(&boot, BOOT).expect("boot script");
        let log = std::fs::File::create(dir.path().join("boot.log")).expect("boot log");
        let unshare = Command::new("unshare")
            .args(["--fork", "--pid", "--mount", "--uts", "--mount-proc", "sh"])
            .arg(&boot)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("unshare");
        // systemd is unshare's only child (the boot script execs it).
        let start = Instant::now();
        let pid = loop {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id())).unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    break pid;
                }
            }
            let log = std::fs::read_to_string(dir.path().join("boot.log")).unwrap_or_default();
            assert!(start.elapsed() < Duration::from_secs(20), "systemd did not start:\n{log}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let sd = Systemd { unshare, pid, cgroups_before, _dir: dir };
        // Booted: is-system-running says running (or degraded, if some unit of the minimal set failed).
        let start = Instant::now();
        loop {
            let state = sd.inside(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "systemd did not finish booting: {state}");
            std::thread::sleep(Duration::from_millis(200));
        }
        // journald (socket-activated in a full boot) collects the units' output.
        let journald = sd.inside(&[
            "systemctl",
            "start",
            "systemd-journald.socket",
            "systemd-journald-dev-log.socket",
            "systemd-journald.service",
        ]);
        assert!(journald.status.success(), "starting journald: {}", text(&journald));
        sd
    }

    /// A command in systemd's mount, PID and UTS namespaces.
    fn inside(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-p", "-u", "--"])
            .args(args)
            .output()
            .expect("nsenter")
    }

    fn script(&self, args: &[&str]) -> Output {
        let script = repo().join("scripts/init-cluster.sh");
        let mut all = vec![script.to_str().unwrap_or_default()];
        all.extend_from_slice(args);
        self.inside(&all)
    }

    /// The namespace's supervisor pid files (its own /run) and init-cluster.sh processes.
    fn supervisors(&self) -> (String, String) {
        let files = self.inside(&["sh", "-c", "ls /run/rustkube/ 2>/dev/null | grep '^supervisor-.*\\.pid$' || true"]);
        let procs = self.inside(&["pgrep", "-af", "scripts/init-cluster\\.sh"]);
        (
            String::from_utf8_lossy(&files.stdout).trim().to_string(),
            String::from_utf8_lossy(&procs.stdout).trim().to_string(),
        )
    }

    fn unit_state(&self, unit: &str) -> String {
        String::from_utf8_lossy(&self.inside(&["systemctl", "is-active", unit]).stdout).trim().to_string()
    }

    fn main_pid(&self, unit: &str) -> String {
        let o = self.inside(&["systemctl", "show", "-p", "MainPID", "--value", unit]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        let _ = self.script(&["reset"]);
        // Killing the namespace's PID 1 ends every process in it; its mounts go with it.
        let _ = Command::new("kill").args(["-KILL", &self.pid.to_string()]).status();
        let _ = self.unshare.wait();
        for cg in systemd_cgroups().difference(&self.cgroups_before) {
            remove_cgroup_tree(cg);
        }
    }
}

fn kubectl(args: &[&str]) -> Output {
    Command::new(integration::kubectl_path("1.33"))
        .arg("--kubeconfig=/etc/kubernetes/admin.conf")
        .args(args)
        .output()
        .expect("kubectl")
}

#[test]
fn init_cluster_under_systemd_runs_every_service_as_a_unit() {
    let bins = integration::snapshot_bin_dir();
    let bin_dir = bins.path();
    let sd = Systemd::boot();
    let hostname = String::from_utf8_lossy(&sd.inside(&["hostname"]).stdout).trim().to_lowercase();

    // --no-systemd where systemd is PID 1: supervised processes (pid files in the namespace's
    // /run), no unit installed. An apiserver that exits keeps this short: etcd starts, the
    // apiserver's step fails.
    let fake = integration::bin_dir_with_a_failing_apiserver();
    let script = repo().join("scripts/init-cluster.sh").display().to_string();
    let out = Command::new("nsenter")
        .args(["-t", &sd.pid.to_string(), "-m", "-p", "-u", "--", &script, "--no-systemd", "--bin-dir"])
        .arg(fake.path())
        .env("READY_TIMEOUT", "10")
        .output()
        .expect("nsenter");
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("services: supervised background processes"), "{log}");
    assert!(log.contains("FAILED: kube-apiserver did not become ready"), "{log}");
    assert!(log.contains("log: /var/log/kubernetes/kube-apiserver.log"), "{log}");
    let (files, procs) = sd.supervisors();
    assert!(files.contains("supervisor-etcd.pid") && files.contains("supervisor-kube-apiserver.pid"), "{files}");
    assert!(!procs.is_empty(), "no supervisor process in the namespace");
    for unit in UNITS.iter().filter(|u| **u != "containerd.service") {
        let listed = text(&sd.inside(&["ls", &format!("/etc/systemd/system/{unit}")]));
        assert!(listed.contains("No such file"), "--no-systemd installed {unit}: {listed}");
        assert_ne!(sd.unit_state(unit), "active", "{unit}");
    }
    let out = sd.script(&["reset"]);
    assert!(out.status.success(), "reset failed:\n{}", text(&out));
    assert_eq!(sd.supervisors(), (String::new(), String::new()), "supervisors left after reset");

    let out = sd.script(&["--bin-dir", &bin_dir.display().to_string()]);
    let log = text(&out);
    let journal = |unit: &str| text(&sd.inside(&["journalctl", "--no-pager", "-n", "40", "-u", unit]));
    assert!(
        out.status.success(),
        "init-cluster.sh failed under systemd:\n{log}\n{}",
        UNITS.iter().map(|u| format!("--- {u}\n{}", journal(u))).collect::<String>()
    );
    assert!(log.contains("services: systemd units"), "{log}");
    assert!(log.contains("cluster is up"), "{log}");

    for unit in UNITS {
        assert_eq!(sd.unit_state(unit), "active", "{unit}:\n{}", journal(unit));
        let enabled = sd.inside(&["systemctl", "is-enabled", unit]);
        if *unit != "containerd.service" {
            assert_eq!(String::from_utf8_lossy(&enabled.stdout).trim(), "enabled", "{unit}");
        }
    }
    // The units run what the script installed, with the flags of their environment files.
    let env = std::fs::read_to_string("/etc/kubernetes/kube-apiserver.env").expect("kube-apiserver.env");
    assert!(env.contains("KUBE_APISERVER_ARGS=\"--etcd-servers=https://127.0.0.1:2379"), "{env}");
    let shown = text(&sd.inside(&["systemctl", "show", "-p", "ExecStart", "kube-apiserver.service"]));
    assert!(shown.contains("/usr/local/bin/kube-apiserver"), "{shown}");
    let dropin = text(&sd.inside(&["systemctl", "cat", "containerd.service"]));
    assert!(dropin.contains("--config /etc/kubernetes/containerd.toml"), "{dropin}");
    // No background supervisor of the no-systemd mode: no pid file in the namespace's /run, no script process.
    assert_eq!(sd.supervisors(), (String::new(), String::new()), "supervisors under systemd");
    // The installed units (binaries in /usr/local/bin) pass systemd-analyze verify, with no warning.
    let installed: Vec<String> =
        UNITS.iter().filter(|u| **u != "containerd.service").map(|u| format!("/etc/systemd/system/{u}")).collect();
    let mut verify = vec!["systemd-analyze", "verify"];
    verify.extend(installed.iter().map(String::as_str));
    let verified = sd.inside(&verify);
    assert!(verified.status.success(), "systemd-analyze verify:\n{}", text(&verified));
    assert_eq!(text(&verified).trim(), "", "systemd-analyze verify warned");

    let ready =
        kubectl(&["get", "node", &hostname, "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#]);
    assert_eq!(String::from_utf8_lossy(&ready.stdout).trim(), "True", "{}", text(&ready));

    // A second run restarts nothing: every unit keeps its main process.
    let pids: Vec<String> = UNITS.iter().map(|u| sd.main_pid(u)).collect();
    assert!(pids.iter().all(|p| p != "0" && !p.is_empty()), "{pids:?}");
    let out = sd.script(&["--bin-dir", &bin_dir.display().to_string()]);
    let log = text(&out);
    assert!(out.status.success(), "second init-cluster.sh failed under systemd:\n{log}");
    for unit in UNITS.iter().filter(|u| **u != "containerd.service") {
        assert!(log.contains(&format!("{unit} already running")), "{unit} not kept:\n{log}");
    }
    let again: Vec<String> = UNITS.iter().map(|u| sd.main_pid(u)).collect();
    assert_eq!(again, pids, "a second run restarted units ({UNITS:?})");

    // Restart=always: systemd brings a killed apiserver back, under a new PID.
    let before = sd.main_pid("kube-apiserver.service");
    let kill = sd.inside(&["systemctl", "kill", "--signal=KILL", "kube-apiserver.service"]);
    assert!(kill.status.success(), "{}", text(&kill));
    let start = Instant::now();
    loop {
        let pid = sd.main_pid("kube-apiserver.service");
        if sd.unit_state("kube-apiserver.service") == "active" && pid != before && pid != "0" {
            let nodes = kubectl(&["get", "nodes"]);
            if nodes.status.success() {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "kube-apiserver not restarted:\n{}",
            journal("kube-apiserver")
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let out = sd.script(&["reset"]);
    assert!(out.status.success(), "reset failed:\n{}", text(&out));
    for unit in UNITS.iter().filter(|u| **u != "containerd.service") {
        assert_ne!(sd.unit_state(unit), "active", "{unit} still active after reset");
        let file = Path::new("/etc/systemd/system").join(unit);
        let listed = text(&sd.inside(&["ls", &file.display().to_string()]));
        assert!(listed.contains("No such file"), "{unit} left installed: {listed}");
    }
    assert_eq!(sd.unit_state("containerd.service"), "inactive", "reset stops the containerd it started");
    assert!(!Path::new("/etc/kubernetes/kube-apiserver.env").exists(), "env file left");
    assert!(!Path::new("/etc/kubernetes/admin.conf").exists(), "admin.conf left");
    let bins = text(&sd.inside(&["ls", "/usr/local/bin"]));
    assert!(!bins.contains("kube-apiserver"), "binaries left in /usr/local/bin: {bins}");
    let tables = Command::new("nft").args(["list", "tables"]).output().expect("nft");
    let tables = String::from_utf8_lossy(&tables.stdout);
    assert!(!tables.lines().any(|l| l == "table ip kube-proxy" || l == "table ip rustkube-cni"), "{tables}");
}
