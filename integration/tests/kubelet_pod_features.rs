//! Pod features of the kubelet checked inside real containers (a private
//! containerd per test, real etcd, the real apiserver and kubelet): a
//! memory-backed emptyDir is a tmpfs of the right size; resources become the
//! container's cgroup limits under the QoS class's cgroup; the security
//! context's users, groups, read-only root, capabilities and privileged mode
//! hold in the container; images are pulled from a registry with basic auth
//! through `imagePullSecrets` under each pull policy; grpc probes drive
//! readiness and liveness; containers get the service environment variables.
//!
//! What a container sees is read through CRI ExecSync on the test's
//! containerd, and cgroup files also from the host.

use std::path::{Path, PathBuf};

use integration::containerd::{LocalRegistry, TEST_IMAGE};
use integration::node::{eventually_async as eventually, merge, SingleNode};
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::ExecSyncRequest;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use kubelet::probes::tonic_health::server::health_reporter;
use kubelet::probes::tonic_health::ServingStatus;
use serde_json::{json, Value};

struct Node1(SingleNode);

impl std::ops::Deref for Node1 {
    type Target = SingleNode;
    fn deref(&self) -> &SingleNode {
        &self.0
    }
}

impl std::ops::DerefMut for Node1 {
    fn deref_mut(&mut self) -> &mut SingleNode {
        &mut self.0
    }
}

impl Node1 {
    async fn start() -> Node1 {
        Node1(SingleNode::start(&[]).await)
    }

    async fn pod(&self, name: &str, spec: Value) -> Pod {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 2},
        });
        merge(&mut pod["spec"], spec);
        self.create_pod(pod).await
    }

    /// Runs `cmd` in the pod's container through CRI ExecSync: (exit code, stdout, stderr).
    async fn exec(&self, pod: &Pod, container: &str, cmd: &[&str]) -> (i32, String, String) {
        let id = container_id(pod, container).unwrap_or_else(|| panic!("no id for container {container}"));
        let mut cri = RuntimeServiceClient::new(self.containerd.cri_channel().await.unwrap());
        let r = cri
            .exec_sync(ExecSyncRequest {
                container_id: id,
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 20,
            })
            .await
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?} in {container}: {e}"))
            .into_inner();
        (r.exit_code, String::from_utf8_lossy(&r.stdout).into_owned(), String::from_utf8_lossy(&r.stderr).into_owned())
    }

    /// `exec` that must succeed; its stdout.
    async fn exec_ok(&self, pod: &Pod, container: &str, cmd: &[&str]) -> String {
        let (code, out, err) = self.exec(pod, container, cmd).await;
        assert_eq!(code, 0, "{cmd:?} in {container} failed: {out}{err}");
        out
    }

    /// Deletes the pods and waits until they are gone, so the kubelet unmounts
    /// their volumes and removes their cgroups before the node goes away.
    async fn delete_all(&self, names: &[&str]) {
        for name in names {
            let _ = self.pods().delete(name, &DeleteParams::default()).await;
        }
        let gone = eventually(|| async {
            for name in names {
                if self.pods().get_opt(name).await.ok()?.is_some() {
                    return None;
                }
            }
            Some(())
        })
        .await;
        assert!(gone.is_some(), "pods {names:?} were not deleted:\n{}", self.kubelet_log());
    }
}

fn container_status(p: &Pod, name: &str) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == name).cloned()
}

fn container_id(p: &Pod, name: &str) -> Option<String> {
    let id = container_status(p, name)?.container_id?;
    Some(id.strip_prefix("containerd://").unwrap_or(&id).to_string())
}

/// Every container runs.
fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| cs.iter().all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some())))
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn waiting_reason(p: &Pod, name: &str) -> Option<(String, String)> {
    let w = container_status(p, name)?.state?.waiting?;
    Some((w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
}

fn restarts(p: &Pod, name: &str) -> i32 {
    container_status(p, name).map(|c| c.restart_count).unwrap_or(0)
}

/// A container that idles, so that ExecSync can look around in it.
fn sleeper(name: &str, extra: Value) -> Value {
    let mut c = json!({"name": name, "image": TEST_IMAGE, "imagePullPolicy": "Never", "command": ["sleep", "3600"]});
    merge(&mut c, extra);
    c
}

/// The options of the mount at `path` in a /proc/mounts text, if it is a tmpfs.
fn tmpfs_options<'a>(mounts: &'a str, path: &str) -> Option<&'a str> {
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 3 && f[1] == path && f[2] == "tmpfs").then_some(f[3])
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_empty_dir_is_a_tmpfs_sized_by_its_limits() {
    let n = Node1::start().await;
    n.pod(
        "mem",
        json!({
            "containers": [sleeper("c", json!({
                "resources": {"limits": {"memory": "48Mi"}},
                "volumeMounts": [
                    {"name": "sized", "mountPath": "/sized"},
                    {"name": "unlimited", "mountPath": "/unlimited"},
                    {"name": "disk", "mountPath": "/disk"},
                ],
            }))],
            "volumes": [
                {"name": "sized", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
                {"name": "unlimited", "emptyDir": {"medium": "Memory"}},
                {"name": "disk", "emptyDir": {}},
            ],
        }),
    )
    .await;
    let pod = n.until("mem", "Running", running).await;
    let mounts = n.exec_ok(&pod, "c", &["cat", "/proc/mounts"]).await;
    // sizeLimit in bytes (8Mi = 8192k: a Quantity's Mi is not tmpfs's M suffix misread).
    let sized = tmpfs_options(&mounts, "/sized").unwrap_or_else(|| panic!("/sized is no tmpfs:\n{mounts}"));
    assert!(sized.split(',').any(|o| o == "size=8192k"), "{sized}");
    // Without sizeLimit the pod's memory limit (48Mi) bounds it, not the node's memory.
    let unlimited = tmpfs_options(&mounts, "/unlimited").unwrap_or_else(|| panic!("/unlimited is no tmpfs:\n{mounts}"));
    assert!(unlimited.split(',').any(|o| o == "size=49152k"), "{unlimited}");
    assert!(tmpfs_options(&mounts, "/disk").is_none(), "a disk emptyDir is no tmpfs:\n{mounts}");
    // The size holds: 6 MiB fit, 4 more do not.
    n.exec_ok(&pod, "c", &["dd", "if=/dev/zero", "of=/sized/a", "bs=1048576", "count=6"]).await;
    let (code, _, err) = n.exec(&pod, "c", &["dd", "if=/dev/zero", "of=/sized/b", "bs=1048576", "count=4"]).await;
    assert_ne!(code, 0, "writing past sizeLimit succeeded");
    assert!(err.contains("No space left"), "{err}");
    // The data lives in memory, not on the node's disk.
    let uid = pod.metadata.uid.clone().unwrap();
    let host_dir = n.root.path().join(format!("pods/{uid}/volumes/kubernetes.io~empty-dir/sized"));
    let host_mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(tmpfs_options(&host_mounts, &host_dir.display().to_string()).is_some(), "{}", host_dir.display());
    n.delete_all(&["mem"]).await;
    let host_mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(tmpfs_options(&host_mounts, &host_dir.display().to_string()).is_none(), "tmpfs left after deletion");
}

/// The cgroup (v1: per controller; v2: unified) folder of a container, from its /proc/<pid>/cgroup.
fn cgroup_dir(pid: u32, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        return PathBuf::from(format!("/sys/fs/cgroup{path}"));
    }
    let path = text
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            ctrls.split(',').any(|c| c == controller).then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup in\n{text}"));
    PathBuf::from(format!("/sys/fs/cgroup/{controller}{path}"))
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().to_string()
}

/// The pid of a container's process, as the host sees it.
async fn host_pid(n: &Node1, pod: &Pod, container: &str) -> u32 {
    // Our own pid namespace view: the container's `sleep` is the only one started by its shim with that id.
    let id = container_id(pod, container).unwrap();
    let out = n.containerd.ctr(&["tasks", "ls"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with(&id))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no task {id} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_cgroup_limits_under_the_qos_class_cgroup() {
    let n = Node1::start().await;
    let limited = json!({"resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}});
    n.pod("guaranteed", json!({"containers": [sleeper("c", limited.clone())]})).await;
    n.pod(
        "burstable",
        json!({"containers": [sleeper("c", json!({"resources": {"requests": {"cpu": "250m", "memory": "32Mi"}}}))]}),
    )
    .await;
    n.pod("besteffort", json!({"containers": [sleeper("c", json!({}))]})).await;
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let mut pod_cgroups = Vec::new();
    for (name, class, parent) in [
        ("guaranteed", "Guaranteed", "/kubepods/pod"),
        ("burstable", "Burstable", "/kubepods/burstable/pod"),
        ("besteffort", "BestEffort", "/kubepods/besteffort/pod"),
    ] {
        let pod = n.until(name, "Running", running).await;
        assert_eq!(pod.status.as_ref().and_then(|s| s.qos_class.as_deref()), Some(class), "{name}");
        let uid = pod.metadata.uid.clone().unwrap();
        let id = container_id(&pod, "c").unwrap();
        let pid = host_pid(&n, &pod, "c").await;
        let memory = cgroup_dir(pid, "memory");
        let cpu = cgroup_dir(pid, "cpu");
        // The QoS class decides the parent: <parent><uid>/<container id>.
        let expect = format!("{parent}{uid}/{id}");
        assert!(memory.display().to_string().ends_with(&expect), "{name}: {} is not under {expect}", memory.display());
        assert!(cpu.display().to_string().ends_with(&expect), "{name}: {}", cpu.display());
        // The container sees its own limits from inside too.
        let inside = n.exec_ok(&pod, "c", &["cat", "/proc/self/cgroup"]).await;
        assert!(inside.contains(&expect), "{name}: {inside}");
        let (mem_limit, quota, shares) = if v2 {
            (read_trim(&memory.join("memory.max")), read_trim(&cpu.join("cpu.max")), read_trim(&cpu.join("cpu.weight")))
        } else {
            (
                read_trim(&memory.join("memory.limit_in_bytes")),
                format!("{} {}", read_trim(&cpu.join("cpu.cfs_quota_us")), read_trim(&cpu.join("cpu.cfs_period_us"))),
                read_trim(&cpu.join("cpu.shares")),
            )
        };
        // oom_score_adj ranks the classes (the test's containerd does not lower a score below its own).
        let adj: i64 = read_trim(Path::new(&format!("/proc/{pid}/oom_score_adj"))).parse().unwrap();
        match name {
            "guaranteed" => assert!(adj <= 0, "guaranteed oom_score_adj {adj}"),
            "burstable" => {
                let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
                let total_kib: i64 = meminfo
                    .lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    .unwrap();
                let want = (1000 - 1000 * (32i64 << 20) / (total_kib * 1024)).clamp(3, 999);
                assert_eq!(adj, want, "burstable oom_score_adj");
            }
            _ => assert_eq!(adj, 1000, "besteffort oom_score_adj"),
        }
        // The pod's own cgroup (the container's parent) carries the pod-wide limits, as upstream's.
        let (pod_memory, pod_cpu) = (memory.parent().unwrap().to_path_buf(), cpu.parent().unwrap().to_path_buf());
        pod_cgroups.push(pod_memory.clone());
        let pod_values = if v2 {
            (read_trim(&pod_memory.join("memory.max")), read_trim(&pod_cpu.join("cpu.max")), String::new())
        } else {
            (
                read_trim(&pod_memory.join("memory.limit_in_bytes")),
                read_trim(&pod_cpu.join("cpu.cfs_quota_us")),
                read_trim(&pod_cpu.join("cpu.shares")),
            )
        };
        match (name, v2) {
            ("guaranteed", false) => assert_eq!(pod_values, ((64u64 << 20).to_string(), "50000".into(), "512".into())),
            ("guaranteed", true) => {
                assert_eq!(pod_values, ((64u64 << 20).to_string(), "50000 100000".into(), "".into()))
            }
            ("burstable", false) => {
                assert_eq!((pod_values.1.as_str(), pod_values.2.as_str()), ("-1", "256"), "{name}: {pod_values:?}");
                assert!(pod_values.0.parse::<u64>().unwrap() > 1 << 40, "{name}: {pod_values:?}");
            }
            ("besteffort", false) => assert_eq!(pod_values.2, "2", "{name}: {pod_values:?}"),
            _ => {}
        }
        match (name, v2) {
            ("guaranteed", false) => {
                assert_eq!(mem_limit, (64u64 << 20).to_string());
                assert_eq!(quota, "50000 100000");
                assert_eq!(shares, "512");
                let from_inside = n.exec_ok(&pod, "c", &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]).await;
                assert_eq!(from_inside.trim(), (64u64 << 20).to_string());
            }
            ("guaranteed", true) => {
                assert_eq!(mem_limit, (64u64 << 20).to_string());
                assert_eq!(quota, "50000 100000");
            }
            ("burstable", false) => {
                assert_eq!(quota.split(' ').next(), Some("-1"), "no cpu limit: {quota}");
                assert_eq!(shares, "256");
                assert!(mem_limit.parse::<u64>().unwrap() > 1 << 40, "no memory limit: {mem_limit}");
            }
            ("besteffort", false) => {
                assert_eq!(shares, "2");
                assert_eq!(quota.split(' ').next(), Some("-1"));
            }
            _ => {}
        }
    }
    n.delete_all(&["guaranteed", "burstable", "besteffort"]).await;
    // The kubelet removes a deleted pod's cgroup.
    let removed = eventually(|| async { pod_cgroups.iter().all(|p| !p.exists()).then_some(()) }).await;
    assert!(removed.is_some(), "pod cgroups left: {pod_cgroups:?}");
}

/// The effective capability set of the process in a /proc/<pid>/status text.
fn cap_eff(status: &str) -> u64 {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap_or_else(|| panic!("{status}"));
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

const CAP_NET_ADMIN: u64 = 1 << 12;
const CAP_NET_RAW: u64 = 1 << 13;
const CAP_SYS_ADMIN: u64 = 1 << 21;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_context_users_groups_readonly_root_capabilities_privileged() {
    let n = Node1::start().await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "sec-data"}, "stringData": {"key": "only-root-or-fsgroup"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(n.client.clone(), "default").create(&PostParams::default(), &secret).await.unwrap();
    n.pod(
        "sec",
        json!({
            "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000]},
            "containers": [
                sleeper("ids", json!({
                    "securityContext": {"readOnlyRootFilesystem": true},
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data"},
                        {"name": "secret", "mountPath": "/secret"},
                    ],
                })),
                sleeper("plain", json!({"securityContext": {"runAsUser": 0, "runAsGroup": 0}})),
                sleeper("caps", json!({"securityContext": {
                    "runAsUser": 0, "runAsGroup": 0,
                    "capabilities": {"add": ["NET_ADMIN"], "drop": ["NET_RAW"]},
                }})),
                sleeper("priv", json!({"securityContext": {"runAsUser": 0, "runAsGroup": 0, "privileged": true}})),
            ],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "secret", "secret": {"secretName": "sec-data", "defaultMode": 0o400}},
            ],
        }),
    )
    .await;
    let pod = n.until("sec", "Running", running).await;

    // runAsUser/runAsGroup, with fsGroup and supplementalGroups as extra groups.
    let id = n.exec_ok(&pod, "ids", &["id"]).await;
    assert!(id.starts_with("uid=1000 gid=3000"), "{id}");
    let groups: Vec<&str> = id.split("groups=").nth(1).unwrap_or("").trim().split(',').collect();
    for g in ["2000", "4000"] {
        assert!(groups.iter().any(|x| x.starts_with(g)), "group {g} missing: {id}");
    }
    // readOnlyRootFilesystem: / refuses writes; the emptyDir takes them, group-owned by fsGroup.
    let (code, _, err) = n.exec(&pod, "ids", &["touch", "/written"]).await;
    assert_ne!(code, 0, "the read-only root took a write");
    assert!(err.contains("Read-only file system"), "{err}");
    n.exec_ok(&pod, "ids", &["touch", "/data/file"]).await;
    let owner = n.exec_ok(&pod, "ids", &["stat", "-c", "%u %g", "/data/file"]).await;
    assert_eq!(owner.trim(), "1000 2000", "a new file in the fsGroup volume takes its group");
    // A 0400 secret is readable through the fsGroup: group-owned and group-readable, as upstream.
    let key = n.exec_ok(&pod, "ids", &["cat", "/secret/key"]).await;
    assert_eq!(key, "only-root-or-fsgroup");
    let mode = n.exec_ok(&pod, "ids", &["stat", "-L", "-c", "%g %a", "/secret/key"]).await;
    assert_eq!(mode.trim(), "2000 440");
    let plain_root = n.exec_ok(&pod, "plain", &["touch", "/written"]).await;
    assert!(plain_root.is_empty());

    // Upstream's default masked and read-only /proc paths hold for unprivileged containers only.
    let plain_mounts = n.exec_ok(&pod, "plain", &["cat", "/proc/mounts"]).await;
    let mount_of = |mounts: &str, path: &str| -> Option<String> {
        mounts.lines().find(|l| l.split_whitespace().nth(1) == Some(path)).map(str::to_string)
    };
    // The masked paths this kernel has (runc masks only those that exist).
    let masked: Vec<&str> = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware"]
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    assert!(!masked.is_empty(), "no maskable path on this host");
    for p in &masked {
        assert!(mount_of(&plain_mounts, p).is_some(), "{p} is not masked:\n{plain_mounts}");
    }
    let sys = mount_of(&plain_mounts, "/proc/sys").unwrap_or_else(|| panic!("no /proc/sys mount:\n{plain_mounts}"));
    assert!(sys.split_whitespace().nth(3).is_some_and(|o| o.split(',').any(|x| x == "ro")), "{sys}");
    let priv_mounts = n.exec_ok(&pod, "priv", &["cat", "/proc/mounts"]).await;
    assert!(mount_of(&priv_mounts, masked[0]).is_none(), "privileged {} masked:\n{priv_mounts}", masked[0]);

    // Capabilities: the runtime's default set has NET_RAW and not NET_ADMIN; drop/add flip both.
    let plain = cap_eff(&n.exec_ok(&pod, "plain", &["cat", "/proc/self/status"]).await);
    assert!(plain & CAP_NET_RAW != 0 && plain & CAP_NET_ADMIN == 0, "default caps {plain:x}");
    let caps = cap_eff(&n.exec_ok(&pod, "caps", &["cat", "/proc/self/status"]).await);
    assert_eq!(caps, (plain & !CAP_NET_RAW) | CAP_NET_ADMIN, "caps {caps:x} vs default {plain:x}");
    // A non-root user without added capabilities has none.
    let ids_caps = cap_eff(&n.exec_ok(&pod, "ids", &["cat", "/proc/self/status"]).await);
    assert_eq!(ids_caps, 0, "uid 1000 has capabilities {ids_caps:x}");

    // Privileged: every capability the host's root has, and the host's devices.
    let host = cap_eff(&std::fs::read_to_string("/proc/self/status").unwrap());
    let privileged = cap_eff(&n.exec_ok(&pod, "priv", &["cat", "/proc/self/status"]).await);
    assert_eq!(privileged, host, "privileged caps {privileged:x} vs host root {host:x}");
    assert!(privileged & CAP_SYS_ADMIN != 0);
    let count = |s: &str| s.split_whitespace().count();
    let priv_dev = n.exec_ok(&pod, "priv", &["ls", "/dev"]).await;
    let plain_dev = n.exec_ok(&pod, "plain", &["ls", "/dev"]).await;
    assert!(count(&priv_dev) > count(&plain_dev) + 10, "privileged /dev:\n{priv_dev}\nplain /dev:\n{plain_dev}");
    let (code, _, _) = n.exec(&pod, "plain", &["ls", "/dev/kmsg"]).await;
    assert_ne!(code, 0, "an unprivileged container sees /dev/kmsg");
    n.exec_ok(&pod, "priv", &["ls", "/dev/kmsg"]).await;

    // runAsNonRoot: a non-zero runAsUser runs; the image's root user or an explicit 0 do not.
    n.pod(
        "nonroot",
        json!({
            "securityContext": {"runAsNonRoot": true},
            "containers": [
                sleeper("user", json!({"securityContext": {"runAsUser": 1000}})),
                sleeper("image-root", json!({})),
                sleeper("explicit-root", json!({"securityContext": {"runAsUser": 0}})),
            ],
        }),
    )
    .await;
    let refused = |p: &Pod, c: &str, text: &str| {
        waiting_reason(p, c).is_some_and(|(r, m)| r == "CreateContainerConfigError" && m.contains(text))
    };
    let pod = n
        .until("nonroot", "root containers refused", |p| {
            container_status(p, "user").and_then(|s| s.state?.running).is_some()
                && refused(p, "image-root", "container has runAsNonRoot and image will run as root")
                && refused(p, "explicit-root", "container's runAsUser breaks non-root policy")
        })
        .await;
    assert_eq!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Pending"));
    n.delete_all(&["sec", "nonroot"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_secrets_and_pull_policies_against_a_registry_with_basic_auth() {
    let mut registry = LocalRegistry::start().unwrap();
    registry.push_images().unwrap();
    registry.require_auth("puller", "s3cret-pass").unwrap();
    let n = Node1::start().await;
    n.containerd.trust_plain_http_registry(registry.addr()).unwrap();
    let image = format!("{}/rustkube/testimage:latest", registry.addr());
    let present = |n: &Node1| {
        let out = n.containerd.ctr(&["images", "ls", "-q"]).unwrap();
        String::from_utf8_lossy(&out.stdout).lines().any(|l| l == image)
    };
    assert!(!present(&n), "{image} is in the node's containerd before any pull");

    // A dockerconfigjson secret with the registry's credentials.
    // base64 of "puller:s3cret-pass", as `kubectl create secret docker-registry` writes it.
    let auth = "cHVsbGVyOnMzY3JldC1wYXNz";
    let config = json!({"auths": {registry.addr(): {"username": "puller", "password": "s3cret-pass", "auth": auth}}});
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()},
    }))
    .unwrap();
    Api::<Secret>::namespaced(n.client.clone(), "default").create(&PostParams::default(), &secret).await.unwrap();

    // Always, with the secret: a real authenticated pull, then it runs.
    let c =
        |policy: &str| json!([{"name": "c", "image": image, "imagePullPolicy": policy, "command": ["sleep", "3600"]}]);
    n.pod("with-secret", json!({"containers": c("Always"), "imagePullSecrets": [{"name": "regcred"}]})).await;
    let pod = n.until("with-secret", "Running", running).await;
    assert!(present(&n), "{image} was not pulled");
    let status = container_status(&pod, "c").unwrap();
    assert!(status.image_id.contains("sha256:"), "{status:?}");
    let pulled =
        n.cp.apiserver.kubectl("1.33", &["get", "events", "--field-selector", "involvedObject.name=with-secret"]);
    let events = integration::stdout(&pulled);
    assert!(events.contains("Successfully pulled image"), "{events}");

    // IfNotPresent without the secret: the image is on the node now, no pull needed.
    n.pod("if-not-present", json!({"containers": c("IfNotPresent")})).await;
    n.until("if-not-present", "Running", running).await;

    // Always without the secret: the registry refuses, ErrImagePull then ImagePullBackOff.
    n.pod("without-secret", json!({"containers": c("Always")})).await;
    let failed = n
        .until("without-secret", "ErrImagePull", |p| {
            waiting_reason(p, "c").is_some_and(|(r, _)| r == "ErrImagePull" || r == "ImagePullBackOff")
        })
        .await;
    let (_, message) = waiting_reason(&failed, "c").unwrap();
    let lower = message.to_lowercase();
    assert!(lower.contains("unauthorized") || lower.contains("authoriz"), "{message}");
    n.until("without-secret", "ImagePullBackOff", |p| {
        waiting_reason(p, "c").is_some_and(|(r, m)| r == "ImagePullBackOff" && m.contains(&image))
    })
    .await;

    // Never with an image the node lacks: ErrImageNeverPull, and no pull.
    let absent = format!("{}/rustkube/absent:1", registry.addr());
    n.pod("never", json!({"containers": [{"name": "c", "image": absent, "imagePullPolicy": "Never"}]})).await;
    let never = n
        .until("never", "ErrImageNeverPull", |p| waiting_reason(p, "c").is_some_and(|(r, _)| r == "ErrImageNeverPull"))
        .await;
    assert!(waiting_reason(&never, "c").unwrap().1.contains("pull policy of Never"));
    n.delete_all(&["with-secret", "if-not-present", "without-secret", "never"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_probes_drive_readiness_and_liveness() {
    // The gRPC health server is this test's (grpc.health.v1 from tonic-health, what
    // the kubelet's probes speak); a hostNetwork pod's probes reach it on the node's
    // address, where the pod's own server would be.
    let (reporter, service) = health_reporter();
    reporter.set_service_status("ready", ServingStatus::Serving).await;
    reporter.set_service_status("live", ServingStatus::Serving).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let n = Node1::start().await;
    let probe = |svc: &str, failures: i32| json!({"grpc": {"port": port, "service": svc}, "periodSeconds": 1, "failureThreshold": failures});
    n.pod(
        "grpc",
        json!({
            "hostNetwork": true,
            "containers": [sleeper("c", json!({"readinessProbe": probe("ready", 1), "livenessProbe": probe("live", 2)}))],
        }),
    )
    .await;
    let pod = n.until("grpc", "Ready", |p| running(p) && ready(p)).await;
    assert_eq!(restarts(&pod, "c"), 0);

    // NOT_SERVING on the readiness service: out of Ready, not restarted.
    reporter.set_service_status("ready", ServingStatus::NotServing).await;
    let pod = n.until("grpc", "not Ready", |p| running(p) && !ready(p)).await;
    assert_eq!(restarts(&pod, "c"), 0, "a readiness failure restarted the container");
    reporter.set_service_status("ready", ServingStatus::Serving).await;
    n.until("grpc", "Ready again", ready).await;

    // NOT_SERVING on the liveness service: the container is restarted.
    reporter.set_service_status("live", ServingStatus::NotServing).await;
    n.until("grpc", "a liveness restart", |p| restarts(p, "c") >= 1).await;
    reporter.set_service_status("live", ServingStatus::Serving).await;
    n.until("grpc", "Ready after the restart", |p| running(p) && ready(p)).await;
    n.delete_all(&["grpc"]).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_see_service_variables_of_their_namespace_and_the_apiserver() {
    use k8s_openapi::api::core::v1::Service;
    let n = Node1::start().await;
    let services: Api<Service> = Api::namespaced(n.client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "my-db"},
        "spec": {"ports": [{"name": "sql", "port": 5432}, {"name": "dns", "port": 53, "protocol": "UDP"}]},
    }))
    .unwrap();
    let svc = services.create(&PostParams::default(), &svc).await.unwrap();
    let db_ip = svc.spec.and_then(|s| s.cluster_ip).unwrap();
    let master = services.get("kubernetes").await.unwrap();
    let master_ip = master.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap();
    let master_port = master.spec.as_ref().and_then(|s| s.ports.as_ref()).unwrap()[0].port;

    let env = json!({"env": [
        {"name": "DB_URL", "value": "postgres://$(MY_DB_SERVICE_HOST):$(MY_DB_SERVICE_PORT_SQL)/app"},
        {"name": "MY_DB_SERVICE_PORT", "value": "overridden"},
    ]});
    n.pod("links", json!({"containers": [sleeper("c", env.clone())]})).await;
    n.pod("nolinks", json!({"enableServiceLinks": false, "containers": [sleeper("c", env)]})).await;
    let links = n.until("links", "running", running).await;
    let nolinks = n.until("nolinks", "running", running).await;

    let vars = |out: String| -> std::collections::BTreeMap<String, String> {
        out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let with = vars(n.exec_ok(&links, "c", &["env"]).await);
    let get = |m: &std::collections::BTreeMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_default();
    assert_eq!(get(&with, "KUBERNETES_SERVICE_HOST"), master_ip, "{with:?}");
    assert_eq!(get(&with, "KUBERNETES_SERVICE_PORT"), master_port.to_string());
    assert_eq!(get(&with, "KUBERNETES_PORT"), format!("tcp://{master_ip}:{master_port}"));
    assert_eq!(get(&with, "MY_DB_SERVICE_HOST"), db_ip);
    assert_eq!(get(&with, "MY_DB_SERVICE_PORT_SQL"), "5432");
    assert_eq!(get(&with, "MY_DB_PORT_53_UDP"), format!("udp://{db_ip}:53"));
    assert_eq!(get(&with, "MY_DB_PORT_5432_TCP_ADDR"), db_ip);
    // A declared variable expands service variables and wins over one of the same name.
    assert_eq!(get(&with, "DB_URL"), format!("postgres://{db_ip}:5432/app"));
    assert_eq!(get(&with, "MY_DB_SERVICE_PORT"), "overridden");

    // Without service links only the apiserver's service is named; references stay literal.
    let without = vars(n.exec_ok(&nolinks, "c", &["env"]).await);
    assert_eq!(get(&without, "KUBERNETES_SERVICE_HOST"), master_ip, "{without:?}");
    assert!(!without.contains_key("MY_DB_SERVICE_HOST"), "{without:?}");
    assert_eq!(get(&without, "DB_URL"), "postgres://$(MY_DB_SERVICE_HOST):$(MY_DB_SERVICE_PORT_SQL)/app");
    n.delete_all(&["links", "nolinks"]).await;
}
