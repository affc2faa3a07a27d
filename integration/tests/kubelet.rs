//! The kubelet with real containerd (a private instance per test), real etcd
//! and the real apiserver: pods bound by the test run for real, answer on
//! their IPs, restart per their policy with back-off, are probed, get their
//! volumes, stop within their grace period, and survive a kubelet restart.

use std::time::{Duration, Instant};

use integration::containerd::{TEST_IMAGE, TEST_PAGE_MARKER};
use integration::eventually;
use integration::node::{merge, tail, SingleNode, WAIT};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
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
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 5,
                     "containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never"}]},
        });
        merge(&mut pod["spec"], spec);
        self.create_pod(pod).await
    }

    async fn running_ip(&self, name: &str) -> String {
        let p = self.until(name, "Running and Ready", |p| phase(p) == "Running" && ready(p)).await;
        p.status.and_then(|s| s.pod_ip).unwrap_or_default()
    }
}

fn phase(p: &Pod) -> String {
    p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn container(p: &Pod, name: &str) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == name).cloned()
}

fn http(ip: &str, path: &str) -> Option<String> {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "2", &format!("http://{ip}:80{path}")])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_runs_and_answers_on_its_ip() {
    let n = Node1::start().await;
    n.pod("web", json!({})).await;
    let ip = n.running_ip("web").await;
    assert!(
        ip.starts_with(&n.containerd.subnet()[..n.containerd.subnet().len() - 5]),
        "{ip} in {}",
        n.containerd.subnet()
    );
    let page = http(&ip, "/").unwrap_or_default();
    assert!(page.contains(TEST_PAGE_MARKER), "{page}");
    let p = n.pods().get("web").await.unwrap();
    let c = container(&p, "c").unwrap();
    assert!(c.ready);
    assert_eq!(c.restart_count, 0);
    assert!(c.container_id.unwrap_or_default().starts_with("containerd://"));
    assert!(c.state.and_then(|s| s.running).is_some());
    let status = p.status.unwrap();
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    let conds: Vec<String> =
        status.conditions.unwrap().iter().filter(|c| c.status == "True").map(|c| c.type_.clone()).collect();
    for want in ["PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"] {
        assert!(conds.contains(&want.to_string()), "{want} missing from {conds:?}");
    }
    // Stock kubectl shows it.
    let out = n.cp.apiserver.kubectl("1.33", &["get", "pod", "web", "-o", "wide"]);
    let text = integration::text(&out);
    assert!(text.contains("Running") && text.contains("1/1") && text.contains(&ip), "{text}");
    // The node reports real capacity and the runtime.
    let node: Node = Api::<Node>::all(n.client.clone()).get("n1").await.unwrap();
    let info = node.status.as_ref().and_then(|s| s.node_info.clone()).unwrap();
    assert!(info.container_runtime_version.starts_with("containerd://"), "{}", info.container_runtime_version);
    assert!(node.status.and_then(|s| s.capacity).unwrap().contains_key("cpu"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_container_backs_off() {
    let n = Node1::start().await;
    n.pod("crash", json!({"containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", "echo bye; exit 3"]}]})).await;
    let p = n
        .until("crash", "CrashLoopBackOff", |p| {
            container(p, "c").and_then(|c| c.state?.waiting?.reason).as_deref() == Some("CrashLoopBackOff")
        })
        .await;
    let c = container(&p, "c").unwrap();
    assert!(c.restart_count >= 1);
    let last = c.last_state.and_then(|s| s.terminated).unwrap();
    assert_eq!(last.exit_code, 3);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert!(c.state.unwrap().waiting.unwrap().message.unwrap().contains("back-off 10s"));
    // The back-off grows: the next wait is 20s.
    n.until("crash", "back-off 20s", |p| {
        container(p, "c").and_then(|c| c.state?.waiting?.message).is_some_and(|m| m.contains("back-off 20s"))
    })
    .await;
    assert_eq!(phase(&n.pods().get("crash").await.unwrap()), "Running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_restart_and_unready() {
    let n = Node1::start().await;
    // Liveness fails once /tmp/healthy disappears (after 3 s).
    n.pod(
        "live",
        json!({"containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never",
        "command": ["sh", "-c", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 3600"],
        "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 2}}]}),
    )
    .await;
    n.until("live", "a liveness restart", |p| container(p, "c").is_some_and(|c| c.restart_count >= 1)).await;
    // Readiness over HTTP: ready while the page exists, unready once it is gone.
    n.pod(
        "ready",
        json!({"containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never",
        "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 1, "failureThreshold": 1},
        "livenessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 2}}]}),
    )
    .await;
    n.running_ip("ready").await;
    // Point readiness at a missing page: the pod leaves Ready but is not restarted.
    n.pods().delete("ready", &DeleteParams::default()).await.unwrap();
    n.pod(
        "unready",
        json!({"containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never",
        "readinessProbe": {"httpGet": {"path": "/missing", "port": 80}, "periodSeconds": 1}}]}),
    )
    .await;
    let p = n
        .until("unready", "Running but not Ready", |p| {
            phase(p) == "Running" && container(p, "c").is_some_and(|c| c.state.and_then(|s| s.running).is_some())
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p2 = n.pods().get("unready").await.unwrap();
    assert!(!ready(&p2), "{:?}", p2.status);
    assert_eq!(container(&p2, "c").unwrap().restart_count, 0);
    let _ = p;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_and_volumes() {
    let n = Node1::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(n.client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "site"}, "data": {"page.txt": "from configmap v1"}}))
            .unwrap(),
    )
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(n.client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    n.pod("vols", json!({
        "initContainers": [{"name": "init", "image": TEST_IMAGE, "imagePullPolicy": "Never",
            "command": ["sh", "-c", "echo initialized-first > /www/init.txt"],
            "volumeMounts": [{"name": "www", "mountPath": "/www"}]}],
        "containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never",
            "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}],
            "volumeMounts": [{"name": "www", "mountPath": "/www"},
                             {"name": "site", "mountPath": "/www/cm"},
                             {"name": "creds", "mountPath": "/www/secret"},
                             {"name": "info", "mountPath": "/www/info"}]}],
        "volumes": [{"name": "www", "emptyDir": {}},
                    {"name": "site", "configMap": {"name": "site"}},
                    {"name": "creds", "secret": {"secretName": "creds"}},
                    {"name": "info", "downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}],
    }))
    .await;
    let ip = n.running_ip("vols").await;
    assert_eq!(http(&ip, "/init.txt").as_deref(), Some("initialized-first\n"));
    assert_eq!(http(&ip, "/cm/page.txt").as_deref(), Some("from configmap v1"));
    assert_eq!(http(&ip, "/secret/password").as_deref(), Some("s3cret"));
    assert_eq!(http(&ip, "/info/name").as_deref(), Some("vols"));
    let p = n.pods().get("vols").await.unwrap();
    let init = p.status.as_ref().and_then(|s| s.init_container_statuses.clone()).unwrap();
    assert_eq!(init[0].state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code), Some(0));
    // Updates follow.
    cms.patch("site", &PatchParams::default(), &Patch::Merge(json!({"data": {"page.txt": "from configmap v2"}})))
        .await
        .unwrap();
    secrets
        .patch("creds", &PatchParams::default(), &Patch::Merge(json!({"stringData": {"password": "rotated"}})))
        .await
        .unwrap();
    let updated = eventually(WAIT, || {
        (http(&ip, "/cm/page.txt").as_deref() == Some("from configmap v2")
            && http(&ip, "/secret/password").as_deref() == Some("rotated"))
        .then_some(())
    });
    assert!(updated.is_some(), "volumes did not follow the updates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_stops_containers_within_the_grace_period() {
    let n = Node1::start().await;
    // A container that ignores SIGTERM: killed after the 3 s grace period.
    n.pod("stubborn", json!({"terminationGracePeriodSeconds": 3, "containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never",
        "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]}]}))
    .await;
    n.running_ip("stubborn").await;
    let start = Instant::now();
    n.pods().delete("stubborn", &DeleteParams::default()).await.unwrap();
    let gone = eventually(WAIT, || {
        futures::executor::block_on(n.pods().get_opt("stubborn")).ok().flatten().is_none().then_some(())
    });
    assert!(gone.is_some(), "pod object never removed:\n{}", tail(&n.kubelet_log(), 30));
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(15), "took {took:?}");
    let left = n.containerd.ctr(&["-n", "k8s.io", "tasks", "ls"]).unwrap();
    let listing = String::from_utf8_lossy(&left.stdout);
    assert!(!listing.contains("RUNNING"), "tasks still running after the deletion:\n{listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_restart_keeps_containers() {
    let mut n = Node1::start().await;
    n.pod("keep", json!({})).await;
    n.running_ip("keep").await;
    let before = container(&n.pods().get("keep").await.unwrap(), "c").unwrap();
    if let Some(mut k) = n.kubelet.take() {
        k.kill();
    }
    n.start_kubelet();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = container(&n.pods().get("keep").await.unwrap(), "c").unwrap();
    assert_eq!(before.container_id, after.container_id);
    assert_eq!(after.restart_count, 0);
    assert_eq!(
        before.state.and_then(|s| s.running).and_then(|r| r.started_at),
        after.state.and_then(|s| s.running).and_then(|r| r.started_at)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_to_completion_pods_end_succeeded_or_failed() {
    let n = Node1::start().await;
    n.pod("ok", json!({"restartPolicy": "Never", "containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", "exit 0"]}]})).await;
    n.pod("bad", json!({"restartPolicy": "Never", "containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", "echo failing >/dev/termination-log; exit 7"]}]})).await;
    let ok = n.until("ok", "Succeeded", |p| phase(p) == "Succeeded").await;
    assert_eq!(container(&ok, "c").and_then(|c| c.state?.terminated).map(|t| t.exit_code), Some(0));
    let bad = n.until("bad", "Failed", |p| phase(p) == "Failed").await;
    let t = container(&bad, "c").and_then(|c| c.state?.terminated).unwrap();
    assert_eq!(t.exit_code, 7);
    assert_eq!(t.message.as_deref(), Some("failing\n"));
}
