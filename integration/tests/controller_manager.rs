//! kube-controller-manager against the real apiserver and etcd. No kubelet
//! runs: where a controller needs running, ready pods, the test marks them so
//! through pods/status, as a kubelet would.

use std::collections::BTreeSet;
use std::future::Future;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use integration::{Component, ControlPlane};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Config};
use serde_json::json;

/// etcd and an apiserver that signs service account tokens (the
/// controllers' credentials come from TokenRequests).
struct Cluster {
    cp: ControlPlane,
    _keys: tempfile::TempDir,
}

impl std::ops::Deref for Cluster {
    type Target = ControlPlane;
    fn deref(&self) -> &ControlPlane {
        &self.cp
    }
}

fn start_cluster() -> Cluster {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("sa.key");
    let public = keys.path().join("sa.pub");
    let gen = Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(gen.status.success(), "{gen:?}");
    let pubout =
        Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&key).arg("-out").arg(&public).output().unwrap();
    assert!(pubout.status.success(), "{pubout:?}");
    let etcd = integration::Etcd::start().unwrap();
    let args = [
        format!("--service-account-signing-key-file={}", key.display()),
        format!("--service-account-key-file={}", public.display()),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let apiserver = integration::ApiServer::start_with(&etcd, &refs).unwrap();
    Cluster { cp: ControlPlane { apiserver, etcd }, _keys: keys }
}

async fn client(cp: &ControlPlane) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&cp.apiserver.kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

/// The controller-manager as upstream deploys it: its own identity
/// (system:kube-controller-manager) for informers and leader election, and a
/// ServiceAccount per controller (`system:controller:*` roles) for writes.
fn kcm(cp: &ControlPlane, args: &[&str]) -> Component {
    let mut all = vec!["--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=true"];
    all.extend_from_slice(args);
    cp.apiserver.start_component("kube-controller-manager", &kcm_kubeconfig(cp), &all).unwrap()
}

fn kcm_kubeconfig(cp: &ControlPlane) -> std::path::PathBuf {
    cp.apiserver.token_kubeconfig("system:kube-controller-manager", "controller-manager-token").unwrap()
}

/// Polls `check` every 200ms until it returns Some, or panics with `what` after `limit`.
async fn until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn pods(api: &Api<Pod>, selector: &str) -> Vec<Pod> {
    api.list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// What a kubelet would report for a started pod: Running and Ready.
async fn mark_ready(api: &Api<Pod>, pod: &Pod) {
    let name = pod.metadata.name.as_deref().unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "phase": "Running",
        "podIP": "10.0.0.1",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
    }});
    let _ = api.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await;
}

/// A stand-in kubelet: marks every pod in the namespace ready as it appears.
fn fake_kubelet(client: Client, ns: &str) -> tokio::task::JoinHandle<()> {
    let api: Api<Pod> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        let mut stream = watcher(api.clone(), watcher::Config::default()).applied_objects().boxed();
        while let Some(Ok(pod)) = stream.next().await {
            // An image that "fails to start" never becomes ready.
            let broken =
                pod.spec.as_ref().is_some_and(|s| s.containers.iter().any(|c| c.image.as_deref() == Some("broken")));
            if pod.metadata.deletion_timestamp.is_none() && !is_ready(&pod) && !broken {
                mark_ready(&api, &pod).await;
            }
        }
    })
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn replicaset(name: &str, replicas: i32, app: &str) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]},
            },
        },
    }))
    .unwrap()
}

#[test]
fn unknown_flags_and_controllers_are_rejected() {
    let bin = integration::binary("kube-controller-manager");
    let out = Command::new(&bin).arg("--no-such-flag").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
    let out = Command::new(&bin).args(["--controllers=*,-bogus", "--master=http://127.0.0.1:1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the list of known controllers"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_healthz_and_metrics() {
    let cp = start_cluster();
    let port = integration::free_port();
    let c = cp
        .apiserver
        .start_component(
            "kube-controller-manager",
            &cp.apiserver.kubeconfig,
            &["--leader-elect=false", &format!("--secure-port={port}"), "--bind-address=127.0.0.1"],
        )
        .unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let body = until(Duration::from_secs(20), "healthz", || async {
        let o = Command::new("curl").args(["-sk", &format!("{url}/healthz")]).output().ok()?;
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    })
    .await;
    assert_eq!(body, "ok", "{}", c.log());
    let api: Api<ReplicaSet> = Api::namespaced(client(&cp).await, "default");
    api.create(&PostParams::default(), &replicaset("m", 1, "m")).await.unwrap();
    until(Duration::from_secs(20), "workqueue metrics", || async {
        // /metrics needs a caller the apiserver authorizes (the admin is in system:masters).
        let o = Command::new("curl")
            .args(["-sk", "-H", "Authorization: Bearer admin", &format!("{url}/metrics")])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.contains("workqueue_adds_total{name=\"replicaset\"}").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_adopts_creates_releases_and_reports_status() {
    let cp = start_cluster();
    let client = client(&cp).await;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    // An orphan that matches: adopted rather than duplicated.
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]},
    }))
    .unwrap();
    pod_api.create(&PostParams::default(), &orphan).await.unwrap();
    let rs = rs_api.create(&PostParams::default(), &replicaset("web", 3, "web")).await.unwrap();
    let _kcm = kcm(&cp, &[]);

    let owned = until(Duration::from_secs(30), "3 pods", || async {
        let p = pods(&pod_api, "app=web").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    for p in &owned {
        let r = p.metadata.owner_references.as_ref().unwrap().iter().find(|r| r.controller == Some(true)).unwrap();
        assert_eq!(r.uid, rs.metadata.uid.clone().unwrap());
        assert_eq!(r.block_owner_deletion, Some(true));
    }
    assert!(owned.iter().any(|p| p.metadata.name.as_deref() == Some("orphan")));
    // No more than 3 were ever made, even after a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pods(&pod_api, "app=web").await.len(), 3);

    for p in &owned {
        mark_ready(&pod_api, p).await;
    }
    until(Duration::from_secs(20), "status with 3 ready", || async {
        let s = rs_api.get("web").await.ok()?.status?;
        (s.replicas == 3
            && s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.fully_labeled_replicas == Some(3)
            && s.observed_generation == Some(1))
        .then_some(())
    })
    .await;

    // A pod relabelled out of the selector is released and replaced.
    pod_api
        .patch("orphan", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})))
        .await
        .unwrap();
    until(Duration::from_secs(20), "release and replacement", || async {
        let released = pod_api.get("orphan").await.ok()?;
        let free = released.metadata.owner_references.as_ref().is_none_or(|r| r.is_empty());
        (free && pods(&pod_api, "app=web").await.len() == 3).then_some(())
    })
    .await;

    // Scaling down deletes the not-ready replacement before the ready pods.
    let ready_before: BTreeSet<String> =
        pods(&pod_api, "app=web").await.into_iter().filter(is_ready).filter_map(|p| p.metadata.name).collect();
    assert_eq!(ready_before.len(), 2);
    rs_api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await.unwrap();
    let left = until(Duration::from_secs(20), "scale down to 2", || async {
        let p = pods(&pod_api, "app=web").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    let left: BTreeSet<String> = left.into_iter().filter_map(|p| p.metadata.name).collect();
    assert_eq!(left, ready_before);
    let events = kubectl(&cp, &["get", "events", "-o", "custom-columns=REASON:.reason,SOURCE:.source.component"]);
    assert!(events.contains("SuccessfulCreate") && events.contains("SuccessfulDelete"), "{events}");
    assert!(events.contains("replicaset-controller"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicaset_reports_replica_failure_while_pod_creation_is_refused() {
    use k8s_openapi::api::core::v1::ResourceQuota;
    let cp = start_cluster();
    let client = client(&cp).await;
    kubectl(&cp, &["create", "namespace", "capped"]);
    let quota_api: Api<ResourceQuota> = Api::namespaced(client.clone(), "capped");
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "capped");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "capped");
    let _kcm = kcm(&cp, &["--controllers=replicaset,resourcequota,deployment"]);
    let quota: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": "two-pods"}, "spec": {"hard": {"pods": "2"}}})).unwrap();
    quota_api.create(&PostParams::default(), &quota).await.unwrap();
    until(Duration::from_secs(20), "the quota's status", || async {
        quota_api.get("two-pods").await.ok()?.status?.hard.map(|_| ())
    })
    .await;
    rs_api.create(&PostParams::default(), &replicaset("capped", 3, "capped")).await.unwrap();
    let failure = until(Duration::from_secs(20), "the ReplicaFailure condition", || async {
        let st = rs_api.get("capped").await.ok()?.status?;
        st.conditions?.into_iter().find(|c| c.type_ == "ReplicaFailure")
    })
    .await;
    assert_eq!((failure.status.as_str(), failure.reason.as_deref()), ("True", Some("FailedCreate")));
    let message = failure.message.unwrap_or_default();
    assert!(message.contains("forbidden") && message.contains("exceeded quota: two-pods"), "{message}");
    assert_eq!(pods(&pod_api, "app=capped").await.len(), 2);
    let st = rs_api.get("capped").await.unwrap().status.unwrap();
    assert_eq!(st.replicas, 2);

    // Room again: the third pod is created and the condition goes.
    let raise = json!({"spec": {"hard": {"pods": "3"}}});
    quota_api.patch("two-pods", &PatchParams::default(), &Patch::Merge(raise)).await.unwrap();
    until(Duration::from_secs(30), "3 pods and no ReplicaFailure", || async {
        let st = rs_api.get("capped").await.ok()?.status?;
        let failing = st.conditions.unwrap_or_default().iter().any(|c| c.type_ == "ReplicaFailure");
        (st.replicas == 3 && !failing).then_some(())
    })
    .await;
    assert_eq!(pods(&pod_api, "app=capped").await.len(), 3);

    // A Deployment shows its ReplicaSet's failure (upstream copies it into its own conditions).
    let d_api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), "capped");
    d_api.create(&PostParams::default(), &deployment("over", 1)).await.unwrap();
    let failure = until(Duration::from_secs(20), "the Deployment's ReplicaFailure", || async {
        let st = d_api.get("over").await.ok()?.status?;
        st.conditions?.into_iter().find(|c| c.type_ == "ReplicaFailure")
    })
    .await;
    assert_eq!(failure.reason.as_deref(), Some("FailedCreate"));
    assert!(failure.message.unwrap_or_default().contains("exceeded quota: two-pods"));
    let room = json!({"spec": {"hard": {"pods": "4"}}});
    quota_api.patch("two-pods", &PatchParams::default(), &Patch::Merge(room)).await.unwrap();
    until(Duration::from_secs(30), "the Deployment's failure cleared", || async {
        let st = d_api.get("over").await.ok()?.status?;
        let failing = st.conditions.unwrap_or_default().iter().any(|c| c.type_ == "ReplicaFailure");
        (st.replicas == Some(1) && !failing).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_without_duplicate_pods() {
    let cp = start_cluster();
    let client = client(&cp).await;
    let le = [
        "--use-service-account-credentials=true",
        "--leader-elect=true",
        "--secure-port=0",
        "--leader-elect-lease-duration=4s",
        "--leader-elect-renew-deadline=3s",
        "--leader-elect-retry-period=500ms",
    ];
    let mut a = cp.apiserver.start_component("kube-controller-manager", &kcm_kubeconfig(&cp), &le).unwrap();
    let mut b = cp.apiserver.start_component("kube-controller-manager", &kcm_kubeconfig(&cp), &le).unwrap();
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    rs_api.create(&PostParams::default(), &replicaset("ha", 3, "ha")).await.unwrap();
    until(Duration::from_secs(30), "3 pods", || async { (pods(&pod_api, "app=ha").await.len() == 3).then_some(()) })
        .await;
    let a_leads = a.log().contains("acquired the leader lease");
    assert_ne!(
        a_leads,
        b.log().contains("acquired the leader lease"),
        "exactly one leader: {}\n---\n{}",
        a.log(),
        b.log()
    );
    let (leader, standby) = if a_leads { (&mut a, &mut b) } else { (&mut b, &mut a) };
    leader.kill();
    rs_api.patch("ha", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}}))).await.unwrap();
    until(Duration::from_secs(30), "5 pods after failover", || async {
        (pods(&pod_api, "app=ha").await.len() == 5).then_some(())
    })
    .await;
    assert!(standby.log().contains("acquired the leader lease"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pods(&pod_api, "app=ha").await.len(), 5, "no duplicates");
}

fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    integration::ok(cp.apiserver.kubectl("1.33", args))
}

async fn ready_count(api: &Api<Pod>, selector: &str) -> usize {
    pods(api, selector).await.iter().filter(|p| is_ready(p)).count()
}

fn images(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter().flat_map(|p| p.spec.as_ref().unwrap().containers.iter().filter_map(|c| c.image.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_within_max_unavailable_and_rollout_undo_restores_the_template() {
    use k8s_openapi::api::apps::v1::Deployment;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kubelet = fake_kubelet(client.clone(), "default");
    let kcm = kcm(&cp, &[]);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let d_api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 5,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]},
            },
        },
    }))
    .unwrap();
    d_api.create(&PostParams::default(), &d).await.unwrap();
    let out = kubectl(&cp, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(ready_count(&pod_api, "app=web").await, 5);

    // Watch readiness through the rollout: never below replicas - maxUnavailable (5 - 1).
    let monitor = {
        let api = pod_api.clone();
        tokio::spawn(async move {
            let mut min = usize::MAX;
            for _ in 0..400 {
                min = min.min(ready_count(&api, "app=web").await);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            min
        })
    };
    kubectl(&cp, &["set", "image", "deployment/web", "c=nginx:1.26"]);
    let out = kubectl(&cp, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let min = monitor.await.unwrap();
    assert!(min >= 4, "ready pods dropped to {min} during the rollout");
    let now = pods(&pod_api, "app=web").await;
    assert_eq!(now.len(), 5);
    assert_eq!(images(&now), BTreeSet::from(["nginx:1.26".to_string()]));
    let d = d_api.get("web").await.unwrap();
    assert_eq!(d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"], "2");
    let st = d.status.unwrap();
    assert_eq!((st.replicas, st.updated_replicas, st.available_replicas), (Some(5), Some(5), Some(5)));
    let progressing = st.conditions.unwrap().into_iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetAvailable"));
    let described = kubectl(&cp, &["describe", "deployment", "web"]);
    assert!(described.contains("ScalingReplicaSet"), "{described}");
    let history = kubectl(&cp, &["rollout", "history", "deployment/web"]);
    assert!(history.contains("1 ") && history.contains("2 "), "{history}");

    kubectl(&cp, &["rollout", "undo", "deployment/web"]);
    let out = kubectl(&cp, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let now = until(Duration::from_secs(20), "old pods gone", || async {
        let p = pods(&pod_api, "app=web").await;
        (p.len() == 5).then_some(p)
    })
    .await;
    assert_eq!(images(&now), BTreeSet::from(["nginx:1.25".to_string()]));
    let d = d_api.get("web").await.unwrap();
    assert_eq!(d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"], "3");
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rss = rs_api.list(&ListParams::default()).await.unwrap().items;
    let templates: Vec<_> =
        rss.iter().map(|r| serde_json::to_string(&r.spec.as_ref().unwrap().template).unwrap()).collect();
    assert_eq!(rss.len(), 2, "undo reuses the old ReplicaSet: {templates:#?}");
    let log = kcm.log();
    assert!(!log.contains("forbidden") && !log.contains("Forbidden"), "least privilege suffices: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_counts_pods_available_only_after_min_ready_seconds() {
    use k8s_openapi::api::apps::v1::Deployment;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kubelet = fake_kubelet(client.clone(), "default");
    let _kcm = kcm(&cp, &["--controllers=deployment,replicaset"]);
    let d_api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("slowready", 2);
    d.spec.as_mut().unwrap().min_ready_seconds = Some(4);
    d_api.create(&PostParams::default(), &d).await.unwrap();
    let ready_at = until(Duration::from_secs(20), "2 ready replicas", || async {
        let st = d_api.get("slowready").await.ok()?.status?;
        (st.ready_replicas == Some(2)).then(std::time::Instant::now)
    })
    .await;
    let st = d_api.get("slowready").await.unwrap().status.unwrap();
    assert_eq!(st.available_replicas.unwrap_or(0), 0, "available before minReadySeconds");
    let available = until(Duration::from_secs(20), "2 available replicas", || async {
        let st = d_api.get("slowready").await.ok()?.status?;
        (st.available_replicas == Some(2)).then(std::time::Instant::now)
    })
    .await;
    let waited = available - ready_at;
    assert!(waited >= Duration::from_secs(3), "available {waited:?} after ready");
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs = rs_api.list(&ListParams::default().labels("app=slowready")).await.unwrap().items;
    assert_eq!(rs[0].spec.as_ref().unwrap().min_ready_seconds, Some(4));
}

fn deployment(name: &str, replicas: i32) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]},
            },
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_removes_replicasets_and_pods_before_the_deployment() {
    use k8s_openapi::api::apps::v1::Deployment;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kubelet = fake_kubelet(client.clone(), "default");
    let _kcm = kcm(&cp, &[]);
    let d_api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    d_api.create(&PostParams::default(), &deployment("fg", 3)).await.unwrap();
    kubectl(&cp, &["rollout", "status", "deployment/fg", "--timeout=60s"]);
    kubectl(&cp, &["delete", "deployment", "fg", "--cascade=foreground", "--wait=false"]);
    let mut saw_finalizer = false;
    let start = std::time::Instant::now();
    while let Some(d) = d_api.get_opt("fg").await.unwrap() {
        saw_finalizer |= d.metadata.finalizers.iter().flatten().any(|f| f == "foregroundDeletion");
        assert!(start.elapsed() < Duration::from_secs(30), "the deployment was not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Gone: its dependents must already be gone.
    assert!(rs_api.list(&ListParams::default()).await.unwrap().items.is_empty());
    assert!(pod_api.list(&ListParams::default()).await.unwrap().items.is_empty());
    assert!(saw_finalizer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletion_collects_dependents_and_orphaning_keeps_them() {
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kcm = kcm(&cp, &[]);
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    rs_api.create(&PostParams::default(), &replicaset("bg", 2, "bg")).await.unwrap();
    rs_api.create(&PostParams::default(), &replicaset("or", 2, "or")).await.unwrap();
    until(Duration::from_secs(30), "4 pods", || async {
        (pods(&pod_api, "app in (bg,or)").await.len() == 4).then_some(())
    })
    .await;

    kubectl(&cp, &["delete", "replicaset", "bg"]);
    until(Duration::from_secs(30), "background collection", || async {
        pod_api.list(&ListParams::default().labels("app=bg")).await.unwrap().items.is_empty().then_some(())
    })
    .await;

    kubectl(&cp, &["delete", "replicaset", "or", "--cascade=orphan"]);
    until(Duration::from_secs(30), "orphaning", || async {
        let gone = rs_api.get_opt("or").await.unwrap().is_none();
        let left = pods(&pod_api, "app=or").await;
        let free = left.iter().all(|p| p.metadata.owner_references.as_ref().is_none_or(|r| r.is_empty()));
        (gone && left.len() == 2 && free).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pods(&pod_api, "app=or").await.len(), 2, "orphans are kept");
}

/// 5 objects of each of 10 kinds in `ns`, as one YAML stream.
fn fifty_objects(ns: &str) -> String {
    let mut docs = Vec::new();
    for i in 0..5 {
        docs.push(format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm{i}, namespace: {ns}}}\ndata: {{k: v}}"
        ));
        docs.push(format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: s{i}, namespace: {ns}}}\nstringData: {{k: v}}"
        ));
        docs.push(format!("apiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}, namespace: {ns}}}\nspec: {{ports: [{{port: 80}}]}}"));
        docs.push(format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: sa{i}, namespace: {ns}}}"));
        docs.push(format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: {ns}}}\nspec: {{containers: [{{name: c, image: nginx}}]}}"
        ));
        docs.push(format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: r{i}, namespace: {ns}}}\nrules: []"
        ));
        docs.push(format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: rb{i}, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: r{i}}}\nsubjects: [{{kind: User, name: u}}]"
        ));
        docs.push(format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: l{i}, namespace: {ns}}}"
        ));
        docs.push(format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: pvc{i}, namespace: {ns}}}\nspec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}"
        ));
        docs.push(format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d{i}, namespace: {ns}}}\nspec: {{replicas: 1, selector: {{matchLabels: {{app: d{i}}}}}, template: {{metadata: {{labels: {{app: d{i}}}}}, spec: {{containers: [{{name: c, image: nginx}}]}}}}}}"
        ));
    }
    docs.join("\n---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_empties_it_and_it_goes_away() {
    let cp = start_cluster();
    let kcm = kcm(&cp, &[]);
    kubectl(&cp, &["create", "namespace", "big"]);
    let out = cp.apiserver.kubectl_stdin("1.33", &["apply", "-f", "-"], Some(&fifty_objects("big")));
    assert!(out.status.success(), "{}", integration::text(&out));
    // The deployments' ReplicaSets and pods come too.
    until(Duration::from_secs(30), "deployment pods", || async {
        let out = cp.apiserver.kubectl("1.33", &["get", "pods", "-n", "big", "-o", "name"]);
        (integration::stdout(&out).lines().count() >= 10).then_some(())
    })
    .await;
    kubectl(&cp, &["delete", "namespace", "big", "--wait=false"]);
    until(Duration::from_secs(60), "the namespace to go", || async {
        let out = cp.apiserver.kubectl("1.33", &["get", "namespace", "big"]);
        integration::text(&out).contains("NotFound").then_some(())
    })
    .await;
    let (code, _) = cp.apiserver.json("GET", "/api/v1/namespaces/big/configmaps", None);
    let (_, list) = cp.apiserver.json("GET", "/apis/apps/v1/replicasets", None);
    assert_eq!(list["items"].as_array().map(|a| a.len()), Some(0), "{code}");
    assert!(kcm.log().contains("namespace emptied and finalized"), "{}", kcm.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_a_default_service_account_and_the_root_ca() {
    let cp = start_cluster();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.crt");
    let ca = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n";
    std::fs::write(&ca_path, ca).unwrap();
    let _kcm = kcm(&cp, &[&format!("--root-ca-file={}", ca_path.display())]);
    kubectl(&cp, &["create", "namespace", "team"]);
    let client = client(&cp).await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "team");
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), "team");
    for _ in 0..2 {
        until(Duration::from_secs(20), "default SA and root CA", || async {
            let sa = sas.get_opt("default").await.unwrap();
            let cm = cms.get_opt("kube-root-ca.crt").await.unwrap()?;
            (sa.is_some() && cm.data?.get("ca.crt").map(String::as_str) == Some(ca)).then_some(())
        })
        .await;
        // Both come back when deleted or tampered with.
        kubectl(&cp, &["delete", "serviceaccount", "default", "-n", "team"]);
        kubectl(&cp, &["patch", "configmap", "kube-root-ca.crt", "-n", "team", "-p", r#"{"data":{"ca.crt":"x"}}"#]);
    }
    // Existing namespaces too.
    let kube_system: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    until(Duration::from_secs(20), "root CA in kube-system", || async {
        kube_system.get_opt("kube-root-ca.crt").await.unwrap().map(|_| ())
    })
    .await;
}

async fn pod_with_status(api: &Api<Pod>, name: &str, app: &str, node: Option<&str>, ip: &str, ready: bool) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx", "ports": [{"name": "http", "containerPort": 8080}]}]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &pod).await.unwrap();
    let status = json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpointslices_and_endpoints_follow_the_selected_pods() {
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kcm = kcm(&cp, &[]);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..3 {
        pod_with_status(&pod_api, &format!("ready{i}"), "ep", None, &format!("10.1.0.{}", i + 1), true).await;
    }
    pod_with_status(&pod_api, "unready", "ep", None, "10.1.0.10", false).await;
    pod_with_status(&pod_api, "leaving", "ep", Some("node-a"), "10.1.0.11", true).await;
    pod_with_status(&pod_api, "other", "not-ep", None, "10.1.0.12", true).await;
    pod_api.delete("leaving", &Default::default()).await.unwrap();
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "ep"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "default").create(&PostParams::default(), &svc).await.unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = until(Duration::from_secs(20), "a slice with 5 endpoints", || async {
        let l = slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap().items;
        l.into_iter().find(|s| s.endpoints.len() == 5)
    })
    .await;
    assert_eq!(slice.address_type, "IPv4");
    let ports = slice.ports.clone().unwrap();
    assert_eq!((ports[0].name.as_deref(), ports[0].port), (Some("http"), Some(8080)));
    let cond = |name: &str| {
        let e = slice.endpoints.iter().find(|e| e.target_ref.as_ref().unwrap().name.as_deref() == Some(name)).unwrap();
        let c = e.conditions.clone().unwrap();
        (c.ready, c.serving, c.terminating)
    };
    assert_eq!(cond("ready0"), (Some(true), Some(true), Some(false)));
    assert_eq!(cond("unready"), (Some(false), Some(false), Some(false)));
    assert_eq!(cond("leaving"), (Some(false), Some(true), Some(true)));
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Service", "web"));
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = until(Duration::from_secs(20), "endpoints", || async { eps.get_opt("web").await.unwrap() }).await;
    let subset = &ep.subsets.unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap().len(), 3);
    assert_eq!(subset.not_ready_addresses.as_ref().unwrap().len(), 1);
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, 8080);
    assert_eq!(ep.metadata.labels.unwrap()["endpointslice.kubernetes.io/skip-mirror"], "true");

    // More than 100 endpoints split across slices.
    for i in 0..100 {
        pod_with_status(&pod_api, &format!("many{i}"), "ep", None, &format!("10.2.{}.{}", i / 200, i % 200 + 1), true)
            .await;
    }
    until(Duration::from_secs(30), "two slices with 105 endpoints", || async {
        let l = slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap().items;
        let total: usize = l.iter().map(|s| s.endpoints.len()).sum();
        (l.len() == 2 && total == 105 && l.iter().all(|s| s.endpoints.len() <= 100)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ipam_gives_every_node_a_distinct_pod_cidr() {
    use k8s_openapi::api::core::v1::Node;
    let cp = start_cluster();
    let client = client(&cp).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node = |name: &str, cidr: Option<&str>| -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"podCIDR": cidr, "podCIDRs": cidr.map(|c| vec![c])}}),
        )
        .unwrap()
    };
    nodes.create(&PostParams::default(), &node("pre", Some("10.100.0.0/24"))).await.unwrap();
    // Four /24 blocks in all: "pre" holds one.
    let kcm = kcm(&cp, &["--allocate-node-cidrs=true", "--cluster-cidr=10.100.0.0/22"]);
    // Each new node is touched again at once (as a kubelet's first status updates do): the
    // controller syncs it again before its cache holds its own patch, and must not allocate twice.
    let toucher = {
        let nodes = nodes.clone();
        tokio::spawn(async move {
            for j in 0..300 {
                for i in 0..3 {
                    let patch = json!({"metadata": {"labels": {"touch": j.to_string()}}});
                    let _ = nodes.patch(&format!("n{i}"), &PatchParams::default(), &Patch::Merge(&patch)).await;
                }
            }
        })
    };
    for i in 0..3 {
        nodes.create(&PostParams::default(), &node(&format!("n{i}"), None)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    toucher.await.unwrap();
    let cidr_of = |n: &Node| n.spec.as_ref().and_then(|s| s.pod_cidr.clone());
    let cidrs = until(Duration::from_secs(20), "pod CIDRs on every node", || async {
        let l = nodes.list(&ListParams::default()).await.unwrap().items;
        let cidrs: Vec<String> = l.iter().filter_map(cidr_of).collect();
        (cidrs.len() == 4).then_some(cidrs)
    })
    .await;
    let distinct: BTreeSet<&String> = cidrs.iter().collect();
    assert_eq!(distinct.len(), 4, "{cidrs:?}");
    assert!(cidrs.iter().all(|c| c.starts_with("10.100.") && c.ends_with(".0/24")), "{cidrs:?}");
    let pre = nodes.get("pre").await.unwrap();
    assert_eq!(pre.spec.unwrap().pod_cidr.as_deref(), Some("10.100.0.0/24"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let allocations = kcm.log().lines().filter(|l| l.contains("allocated pod CIDR")).count();
    assert_eq!(allocations, 3, "{}", kcm.log());
    assert!(!kcm.log().contains("setting the pod CIDR"), "a second block was tried:\n{}", kcm.log());
    // A pod CIDR once set never changes (upstream's node validation).
    let moved = json!({"spec": {"podCIDR": "10.100.3.0/24", "podCIDRs": ["10.100.3.0/24"]}});
    let err = nodes.patch("pre", &PatchParams::default(), &Patch::Merge(&moved)).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("may not change podCIDR")),
        "{err:?}"
    );
    // The range is full: a fifth node waits until a deleted node releases its block.
    nodes.create(&PostParams::default(), &node("late", None)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(cidr_of(&nodes.get("late").await.unwrap()), None);
    let freed = cidr_of(&nodes.get("n1").await.unwrap()).unwrap();
    nodes.delete("n1", &Default::default()).await.unwrap();
    let got = until(Duration::from_secs(10), "the released block reused", || async {
        cidr_of(&nodes.get("late").await.ok()?)
    })
    .await;
    assert_eq!(got, freed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_renewing_is_tainted_its_pods_evicted_and_replaced() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Node;
    let cp = start_cluster();
    let client = client(&cp).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let n: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    let kubelet_status = || {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}]}})
    };
    nodes.patch_status("n1", &PatchParams::default(), &Patch::Merge(kubelet_status())).await.unwrap();
    let _ = cp.apiserver.json("POST", "/api/v1/namespaces", Some(&json!({"metadata": {"name": "kube-node-lease"}})));
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease: Lease = serde_json::from_value(
        json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}}),
    )
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let renewing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let renewer = {
        let (leases, renewing) = (leases.clone(), renewing.clone());
        tokio::spawn(async move {
            loop {
                if renewing.load(std::sync::atomic::Ordering::SeqCst) {
                    let now = k8s_openapi::jiff::Timestamp::now().to_string();
                    let _ = leases
                        .patch("n1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"renewTime": now}})))
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    // A second node that stays healthy: with every node down the controller would
    // assume a control-plane problem and taint nothing (upstream's master disruption).
    let _healthy = FakeNodes::start(&cp, &client, &[("n2", "")]).await;
    let _kcm = kcm(&cp, &["--node-monitor-grace-period=3s", "--node-monitor-period=500ms"]);

    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let mut rs = replicaset("ev", 2, "ev");
    let tolerations = serde_json::from_value(json!([
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2},
    ]))
    .unwrap();
    rs.spec.as_mut().unwrap().template.as_mut().unwrap().spec.as_mut().unwrap().tolerations = Some(tolerations);
    rs_api.create(&PostParams::default(), &rs).await.unwrap();
    let first = until(Duration::from_secs(20), "2 pods", || async {
        let p = pods(&pod_api, "app=ev").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    for p in &first {
        let name = p.metadata.name.clone().unwrap();
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
        let (code, body) =
            cp.apiserver.json("POST", &format!("/api/v1/namespaces/default/pods/{name}/binding"), Some(&binding));
        assert_eq!(code, 201, "{body}");
        mark_ready(&pod_api, p).await;
    }
    // Healthy for a while: nothing happens.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let node = nodes.get("n1").await.unwrap();
    assert!(node.spec.and_then(|s| s.taints).unwrap_or_default().is_empty());

    renewing.store(false, std::sync::atomic::Ordering::SeqCst);
    until(Duration::from_secs(20), "Ready=Unknown and the unreachable taint", || async {
        let node = nodes.get("n1").await.ok()?;
        let ready = node.status?.conditions?.into_iter().find(|c| c.type_ == "Ready")?;
        let taints = node.spec?.taints.unwrap_or_default();
        (ready.status == "Unknown"
            && taints.iter().any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute"))
        .then_some(())
    })
    .await;
    // Its pods are no longer Ready (they leave Service endpoints).
    until(Duration::from_secs(10), "pods marked not ready", || async {
        let all = pod_api.list(&ListParams::default().labels("app=ev")).await.unwrap().items;
        let on_node: Vec<&Pod> =
            all.iter().filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some("n1")).collect();
        (on_node.len() == 2 && on_node.iter().all(|p| !is_ready(p))).then_some(())
    })
    .await;
    let evicted_names: BTreeSet<String> = first.iter().filter_map(|p| p.metadata.name.clone()).collect();
    until(Duration::from_secs(20), "eviction and replacement", || async {
        let all = pod_api.list(&ListParams::default().labels("app=ev")).await.unwrap().items;
        let evicted = all
            .iter()
            .filter(|p| evicted_names.contains(p.metadata.name.as_ref().unwrap()))
            .all(|p| p.metadata.deletion_timestamp.is_some());
        let replacements = all.iter().filter(|p| {
            !evicted_names.contains(p.metadata.name.as_ref().unwrap()) && p.metadata.deletion_timestamp.is_none()
        });
        (evicted && replacements.count() == 2).then_some(())
    })
    .await;

    // The kubelet comes back: the taints go.
    renewing.store(true, std::sync::atomic::Ordering::SeqCst);
    nodes.patch_status("n1", &PatchParams::default(), &Patch::Merge(kubelet_status())).await.unwrap();
    until(Duration::from_secs(20), "taints removed", || async {
        let node = nodes.get("n1").await.ok()?;
        let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
        taints.iter().all(|t| !t.key.starts_with("node.kubernetes.io/")).then_some(())
    })
    .await;
    renewer.abort();
}

/// Node objects with a Lease each and a stand-in kubelet that renews the
/// Leases of the nodes in `alive` every 300ms (no real kubelet runs).
struct FakeNodes {
    alive: Arc<std::sync::Mutex<BTreeSet<String>>>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for FakeNodes {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

impl FakeNodes {
    async fn start(cp: &ControlPlane, client: &Client, nodes: &[(&str, &str)]) -> FakeNodes {
        use k8s_openapi::api::coordination::v1::Lease;
        use k8s_openapi::api::core::v1::Node;
        let api: Api<Node> = Api::all(client.clone());
        let _ =
            cp.apiserver.json("POST", "/api/v1/namespaces", Some(&json!({"metadata": {"name": "kube-node-lease"}})));
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        for (name, zone) in nodes {
            // An empty zone: no topology labels at all.
            let labels = if zone.is_empty() {
                json!({})
            } else {
                json!({"topology.kubernetes.io/region": "r1", "topology.kubernetes.io/zone": zone})
            };
            let n: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
            api.create(&PostParams::default(), &n).await.unwrap();
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
            let lease: Lease = serde_json::from_value(
                json!({"metadata": {"name": name}, "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now}}),
            )
            .unwrap();
            leases.create(&PostParams::default(), &lease).await.unwrap();
        }
        let alive = Arc::new(std::sync::Mutex::new(nodes.iter().map(|(n, _)| n.to_string()).collect::<BTreeSet<_>>()));
        let renewer = {
            let alive = alive.clone();
            tokio::spawn(async move {
                loop {
                    let names: Vec<String> = alive.lock().unwrap().iter().cloned().collect();
                    for name in names {
                        let now = k8s_openapi::jiff::Timestamp::now().to_string();
                        let _ = leases
                            .patch(&name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"renewTime": now}})))
                            .await;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            })
        };
        FakeNodes { alive, renewer }
    }

    fn stop(&self, names: &[&str]) {
        let mut alive = self.alive.lock().unwrap();
        for n in names {
            alive.remove(*n);
        }
    }

    fn resume(&self, names: &[&str]) {
        self.alive.lock().unwrap().extend(names.iter().map(|n| n.to_string()));
    }
}

/// The nodes (of `names`) that carry the taint `key` with `effect`.
async fn tainted(client: &Client, names: &[&str], key: &str, effect: &str) -> BTreeSet<String> {
    let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let mut out = BTreeSet::new();
    for n in api.list(&ListParams::default()).await.unwrap().items {
        let name = n.metadata.name.clone().unwrap();
        let has = n.spec.and_then(|s| s.taints).unwrap_or_default().iter().any(|t| t.key == key && t.effect == effect);
        if has && names.contains(&name.as_str()) {
            out.insert(name);
        }
    }
    out
}

async fn ready_status(client: &Client, name: &str) -> String {
    let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let n = api.get(name).await.unwrap();
    n.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_eviction_is_rate_limited_per_zone_and_stops_in_disruptions() {
    const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
    let cp = start_cluster();
    let client = client(&cp).await;
    let z1 = ["a0", "a1", "a2", "a3", "a4", "a5"];
    let mut all: Vec<(&str, &str)> = z1.iter().map(|n| (*n, "z1")).collect();
    all.extend([("b0", "z2"), ("b1", "z2")]);
    let fleet = FakeNodes::start(&cp, &client, &all).await;
    let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
    // One node every 2 s per zone.
    let _kcm = kcm(
        &cp,
        &[
            "--controllers=node-lifecycle-controller",
            "--node-monitor-grace-period=2s",
            "--node-monitor-period=200ms",
            "--node-eviction-rate=0.5",
        ],
    );
    // A pod that tolerates nothing on a node that will only go down with the whole cluster.
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "on-a5"}, "spec": {"nodeName": "a5", "containers": [{"name": "c", "image": "nginx"}]}}),
    )
    .unwrap();
    pod_api.create(&PostParams::default(), &p).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(tainted(&client, &names, UNREACHABLE, "NoSchedule").await.is_empty());

    // 3 of 6 in z1 down (below the 0.55 threshold: a Normal zone): tainted one at a time, 2 s apart.
    fleet.stop(&["a0", "a1", "a2"]);
    let start = std::time::Instant::now();
    let mut times: Vec<(String, Duration)> = Vec::new();
    while times.len() < 3 {
        assert!(start.elapsed() < Duration::from_secs(20), "only {times:?} tainted NoExecute");
        for n in tainted(&client, &["a0", "a1", "a2"], UNREACHABLE, "NoExecute").await {
            if !times.iter().any(|(t, _)| *t == n) {
                times.push((n, start.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in times.windows(2) {
        let gap = w[1].1 - w[0].1;
        assert!(gap >= Duration::from_millis(1500), "tainted too close together: {times:?}");
    }
    // NoSchedule is not rate limited: all three had it before the last NoExecute.
    let no_schedule = tainted(&client, &["a0", "a1", "a2"], UNREACHABLE, "NoSchedule").await;
    assert_eq!(no_schedule.len(), 3);

    // A fourth (4 of 6 >= 0.55): z1 is partially disrupted and small, so it stops tainting.
    fleet.stop(&["a3"]);
    until(Duration::from_secs(10), "a3 Unknown and NoSchedule", || async {
        (ready_status(&client, "a3").await == "Unknown"
            && tainted(&client, &["a3"], UNREACHABLE, "NoSchedule").await.len() == 1)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(tainted(&client, &["a3"], UNREACHABLE, "NoExecute").await.is_empty(), "a partially disrupted zone tainted");

    // Every node down: master disruption. Nothing is tainted NoExecute any more, nothing evicted.
    fleet.stop(&["a4", "a5", "b0", "b1"]);
    until(Duration::from_secs(15), "every node Unknown and no NoExecute taint", || async {
        for n in &names {
            if ready_status(&client, n).await != "Unknown" {
                return None;
            }
        }
        tainted(&client, &names, UNREACHABLE, "NoExecute").await.is_empty().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(tainted(&client, &names, UNREACHABLE, "NoExecute").await.is_empty());
    let pod = pod_api.get("on-a5").await.unwrap();
    assert!(pod.metadata.deletion_timestamp.is_none(), "a pod was evicted in a full disruption");

    // z2 comes back: z1 alone is fully disrupted, and a zone that is down as a whole is
    // evacuated at the normal rate (upstream: its pods may run elsewhere).
    fleet.resume(&["b0", "b1"]);
    let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    for n in ["b0", "b1"] {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
        api.patch_status(n, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
    }
    let first = until(Duration::from_secs(10), "a z1 node tainted again", || async {
        let t = tainted(&client, &z1, UNREACHABLE, "NoExecute").await;
        (!t.is_empty()).then_some(t)
    })
    .await;
    assert_eq!(first.len(), 1, "{first:?}");
    until(Duration::from_secs(10), "a second z1 node tainted", || async {
        (tainted(&client, &z1, UNREACHABLE, "NoExecute").await.len() >= 2).then_some(())
    })
    .await;
    assert!(tainted(&client, &["b0", "b1"], UNREACHABLE, "NoExecute").await.is_empty());
}

fn rs_replicas(rss: &[ReplicaSet]) -> Vec<(String, i32)> {
    let mut v: Vec<(String, i32)> = rss
        .iter()
        .map(|r| {
            let image =
                r.spec.as_ref().unwrap().template.as_ref().unwrap().spec.as_ref().unwrap().containers[0].image.clone();
            (image.unwrap_or_default(), r.spec.as_ref().unwrap().replicas.unwrap_or(0))
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_pause_resume_restart_and_revision_history_limit() {
    use k8s_openapi::api::apps::v1::Deployment;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kubelet = fake_kubelet(client.clone(), "default");
    let _kcm = kcm(&cp, &[]);
    let d_api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("pr", 2);
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    d_api.create(&PostParams::default(), &d).await.unwrap();
    kubectl(&cp, &["rollout", "status", "deployment/pr", "--timeout=60s"]);

    kubectl(&cp, &["rollout", "pause", "deployment/pr"]);
    kubectl(&cp, &["set", "image", "deployment/pr", "c=nginx:1.26"]);
    until(Duration::from_secs(20), "the paused condition", || async {
        let st = d_api.get("pr").await.ok()?.status?;
        let p = st.conditions?.into_iter().find(|c| c.type_ == "Progressing")?;
        (p.reason.as_deref() == Some("DeploymentPaused")).then_some(())
    })
    .await;
    assert_eq!(rs_api.list(&ListParams::default()).await.unwrap().items.len(), 1, "no rollout while paused");

    kubectl(&cp, &["rollout", "resume", "deployment/pr"]);
    kubectl(&cp, &["rollout", "status", "deployment/pr", "--timeout=60s"]);
    kubectl(&cp, &["rollout", "restart", "deployment/pr"]);
    kubectl(&cp, &["rollout", "status", "deployment/pr", "--timeout=60s"]);
    let rss = until(Duration::from_secs(20), "history trimmed to 1 old ReplicaSet", || async {
        let l = rs_api.list(&ListParams::default()).await.unwrap().items;
        (l.len() == 2).then_some(l)
    })
    .await;
    assert_eq!(rs_replicas(&rss), vec![("nginx:1.26".to_string(), 0), ("nginx:1.26".to_string(), 2)]);
    let d = d_api.get("pr").await.unwrap();
    assert_eq!(d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"], "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_every_old_pod_before_creating_new_ones() {
    use k8s_openapi::api::apps::v1::Deployment;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kubelet = fake_kubelet(client.clone(), "default");
    let _kcm = kcm(&cp, &[]);
    let d_api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("rc", 3);
    d.spec.as_mut().unwrap().strategy = Some(serde_json::from_value(json!({"type": "Recreate"})).unwrap());
    d_api.create(&PostParams::default(), &d).await.unwrap();
    kubectl(&cp, &["rollout", "status", "deployment/rc", "--timeout=60s"]);
    let monitor = {
        let api = pod_api.clone();
        tokio::spawn(async move {
            let mut mixed = false;
            for _ in 0..200 {
                let all = api.list(&ListParams::default().labels("app=rc")).await.unwrap().items;
                mixed |= images(&all).len() > 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            mixed
        })
    };
    kubectl(&cp, &["set", "image", "deployment/rc", "c=nginx:1.26"]);
    kubectl(&cp, &["rollout", "status", "deployment/rc", "--timeout=60s"]);
    assert!(!monitor.await.unwrap(), "old and new pods coexisted");
    let now = pods(&pod_api, "app=rc").await;
    assert_eq!((now.len(), images(&now)), (3, BTreeSet::from(["nginx:1.26".to_string()])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_rollout_exceeds_its_progress_deadline() {
    use k8s_openapi::api::apps::v1::Deployment;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kcm = kcm(&cp, &[]);
    let d_api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("stuck", 1);
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(2);
    d_api.create(&PostParams::default(), &d).await.unwrap();
    // No kubelet: the pod never becomes ready.
    let out =
        integration::fails(cp.apiserver.kubectl("1.33", &["rollout", "status", "deployment/stuck", "--timeout=30s"]));
    assert!(out.contains("exceeded its progress deadline"), "{out}");
    let st = d_api.get("stuck").await.unwrap().status.unwrap();
    let p = st.conditions.unwrap().into_iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!((p.status.as_str(), p.reason.as_deref()), ("False", Some("ProgressDeadlineExceeded")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_mid_rollout_is_proportional() {
    use k8s_openapi::api::apps::v1::Deployment;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kubelet = fake_kubelet(client.clone(), "default");
    let _kcm = kcm(&cp, &[]);
    let d_api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("prop", 10);
    d.spec.as_mut().unwrap().strategy = Some(
        serde_json::from_value(json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}))
            .unwrap(),
    );
    d_api.create(&PostParams::default(), &d).await.unwrap();
    kubectl(&cp, &["rollout", "status", "deployment/prop", "--timeout=60s"]);
    // The new image never becomes ready: the rollout stalls with 8 old and 5 new.
    kubectl(&cp, &["set", "image", "deployment/prop", "c=broken"]);
    let stalled = until(Duration::from_secs(20), "a stalled rollout", || async {
        let v = rs_replicas(&rs_api.list(&ListParams::default()).await.unwrap().items);
        (v == vec![("broken".to_string(), 5), ("nginx:1.25".to_string(), 8)]).then_some(v)
    })
    .await;
    assert_eq!(stalled.iter().map(|(_, n)| n).sum::<i32>(), 13);
    kubectl(&cp, &["scale", "deployment/prop", "--replicas=20"]);
    // 20 + maxSurge 3 = 23, split in proportion to 8:5.
    let scaled = until(Duration::from_secs(20), "proportional scale-up", || async {
        let v = rs_replicas(&rs_api.list(&ListParams::default()).await.unwrap().items);
        (v.iter().map(|(_, n)| n).sum::<i32>() == 23).then_some(v)
    })
    .await;
    let old = scaled.iter().find(|(i, _)| i == "nginx:1.25").unwrap().1;
    let new = scaled.iter().find(|(i, _)| i == "broken").unwrap().1;
    assert!((13..=15).contains(&old) && (8..=10).contains(&new), "{scaled:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_gc_deletes_terminated_pods_beyond_the_threshold_and_pods_of_missing_nodes() {
    let cp = start_cluster();
    let client = client(&cp).await;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..4 {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("done{i}"), "labels": {"app": "done"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap();
        pod_api.create(&PostParams::default(), &pod).await.unwrap();
        let status = json!({"status": {"phase": "Succeeded"}});
        pod_api.patch_status(&format!("done{i}"), &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let ghost: Pod = serde_json::from_value(json!({
        "metadata": {"name": "on-ghost"},
        "spec": {"nodeName": "ghost", "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    pod_api.create(&PostParams::default(), &ghost).await.unwrap();
    let _kcm = kcm(&cp, &["--terminated-pod-gc-threshold=2"]);
    let left = until(Duration::from_secs(40), "terminated pods trimmed to 2", || async {
        let l = pod_api.list(&ListParams::default().labels("app=done")).await.unwrap().items;
        (l.len() == 2).then(|| l.into_iter().filter_map(|p| p.metadata.name).collect::<BTreeSet<_>>())
    })
    .await;
    assert_eq!(left, BTreeSet::from(["done2".to_string(), "done3".to_string()]), "the oldest go first");
    until(Duration::from_secs(90), "the pod of a missing node to go", || async {
        pod_api.get_opt("on-ghost").await.unwrap().is_none().then_some(())
    })
    .await;
}

/// A stand-in kubelet for job pods: each pod runs for `run_for`, then ends in `phase`.
fn job_kubelet(client: Client, ns: &str, run_for: Duration, phase: &'static str) -> tokio::task::JoinHandle<()> {
    let api: Api<Pod> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        let mut stream = watcher(api.clone(), watcher::Config::default()).applied_objects().boxed();
        let mut seen = BTreeSet::new();
        while let Some(Ok(pod)) = stream.next().await {
            let name = pod.metadata.name.clone().unwrap();
            if pod.metadata.deletion_timestamp.is_some() || !seen.insert(name.clone()) {
                continue;
            }
            let api = api.clone();
            tokio::spawn(async move {
                let running = json!({"status": {"phase": "Running"}});
                let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(running)).await;
                tokio::time::sleep(run_for).await;
                let done = json!({"status": {"phase": phase}});
                let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(done)).await;
            });
        }
    })
}

fn job(name: &str, extra_spec: serde_json::Value) -> k8s_openapi::api::batch::v1::Job {
    let mut spec = json!({
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}},
    });
    for (k, v) in extra_spec.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_its_completions_parallelism_at_a_time() {
    use k8s_openapi::api::batch::v1::Job;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kubelet = job_kubelet(client.clone(), "default", Duration::from_millis(500), "Succeeded");
    let _kcm = kcm(&cp, &[]);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job("work", json!({"completions": 4, "parallelism": 2}))).await.unwrap();
    let monitor = {
        let api = pod_api.clone();
        tokio::spawn(async move {
            let mut max = 0;
            for _ in 0..100 {
                let all =
                    api.list(&ListParams::default().labels("batch.kubernetes.io/job-name=work")).await.unwrap().items;
                let running = all
                    .iter()
                    .filter(|p| {
                        p.metadata.deletion_timestamp.is_none()
                            && !matches!(
                                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                                Some("Succeeded" | "Failed")
                            )
                    })
                    .count();
                max = max.max(running);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            max
        })
    };
    let out = kubectl(&cp, &["wait", "--for=condition=complete", "job/work", "--timeout=60s"]);
    assert!(out.contains("condition met"), "{out}");
    assert!(monitor.await.unwrap() <= 2, "more than parallelism pods ran at once");
    let st = jobs.get("work").await.unwrap().status.unwrap();
    assert_eq!((st.succeeded, st.failed.unwrap_or(0), st.active.unwrap_or(0)), (Some(4), 0, 0));
    assert!(st.completion_time.is_some() && st.start_time.is_some());
    let all = pod_api.list(&ListParams::default().labels("batch.kubernetes.io/job-name=work")).await.unwrap().items;
    assert_eq!(all.len(), 4, "exactly one pod per completion");
    until(Duration::from_secs(10), "tracking finalizers removed", || async {
        let all = pod_api.list(&ListParams::default().labels("batch.kubernetes.io/job-name=work")).await.unwrap().items;
        all.iter().all(|p| p.metadata.finalizers.as_ref().is_none_or(|f| f.is_empty())).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexed_job_completes_every_index_once() {
    use k8s_openapi::api::batch::v1::Job;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kubelet = job_kubelet(client.clone(), "default", Duration::from_millis(300), "Succeeded");
    let _kcm = kcm(&cp, &[]);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("idx", json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"})),
    )
    .await
    .unwrap();
    kubectl(&cp, &["wait", "--for=condition=complete", "job/idx", "--timeout=60s"]);
    let st = jobs.get("idx").await.unwrap().status.unwrap();
    assert_eq!((st.succeeded, st.completed_indexes.as_deref()), (Some(3), Some("0-2")));
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let all = pod_api.list(&ListParams::default().labels("batch.kubernetes.io/job-name=idx")).await.unwrap().items;
    let indexes: BTreeSet<String> = all
        .iter()
        .filter_map(|p| p.metadata.annotations.as_ref()?.get("batch.kubernetes.io/job-completion-index").cloned())
        .collect();
    assert_eq!(indexes, BTreeSet::from(["0".to_string(), "1".to_string(), "2".to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_fails_once_its_backoff_limit_is_exceeded() {
    use k8s_openapi::api::batch::v1::Job;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kubelet = job_kubelet(client.clone(), "default", Duration::from_millis(200), "Failed");
    let _kcm = kcm(&cp, &[]);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job("flaky", json!({"backoffLimit": 1}))).await.unwrap();
    let out = kubectl(&cp, &["wait", "--for=condition=failed", "job/flaky", "--timeout=60s"]);
    assert!(out.contains("condition met"), "{out}");
    let st = jobs.get("flaky").await.unwrap().status.unwrap();
    assert_eq!(st.failed, Some(2));
    let failed = st.conditions.unwrap().into_iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let all = pod_api.list(&ListParams::default().labels("batch.kubernetes.io/job-name=flaky")).await.unwrap().items;
    assert_eq!(all.len(), 2, "one retry after the back-off");
}

/// What a kubelet reports for a job pod that ended: the phase, container `c`'s
/// exit code and any extra pod conditions (e.g. DisruptionTarget).
async fn end_pod(api: &Api<Pod>, name: &str, phase: &str, exit_code: i32, conditions: serde_json::Value) {
    let status = json!({"status": {
        "phase": phase,
        "conditions": conditions,
        "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "reason": if exit_code == 0 { "Completed" } else { "Error" }}}}],
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
}

/// The job's pods that are neither finished nor being deleted, by name.
async fn running_job_pods(api: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods(api, &format!("batch.kubernetes.io/job-name={job}"))
        .await
        .into_iter()
        .filter(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
        .collect()
}

fn job_condition(
    job: &k8s_openapi::api::batch::v1::Job,
    type_: &str,
) -> Option<k8s_openapi::api::batch::v1::JobCondition> {
    job.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_ && c.status == "True").cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_failure_policy_ignores_disruptions_and_fails_the_job_on_a_fatal_exit_code() {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Node;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kcm = kcm(&cp, &[]);
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap())
        .await
        .unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let spec = json!({
        "completions": 4, "parallelism": 2, "backoffLimit": 0,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]},
    });
    jobs.create(&PostParams::default(), &job("pfp", spec)).await.unwrap();
    let first = until(Duration::from_secs(20), "2 pods", || async {
        let p = running_job_pods(&pod_api, "pfp").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    let (a, b) = (first[0].metadata.name.clone().unwrap(), first[1].metadata.name.clone().unwrap());
    // b runs on a node, so deleting it waits for the "kubelet" (this test).
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": b}, "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let (code, body) =
        cp.apiserver.json("POST", &format!("/api/v1/namespaces/default/pods/{b}/binding"), Some(&binding));
    assert_eq!(code, 201, "{body}");
    mark_ready(&pod_api, &first[1]).await;

    // A disruption is ignored: not counted against backoffLimit 0, and replaced at once (no back-off).
    let disrupted = json!([{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}]);
    end_pod(&pod_api, &a, "Failed", 137, disrupted).await;
    let replacement = until(Duration::from_secs(10), "a replacement for the disrupted pod", || async {
        let p = running_job_pods(&pod_api, "pfp").await;
        p.into_iter().find(|p| p.metadata.name.as_deref() != Some(b.as_str()))
    })
    .await;
    let c = replacement.metadata.name.clone().unwrap();
    assert_ne!(c, a);
    let j = jobs.get("pfp").await.unwrap();
    assert_eq!(j.status.as_ref().unwrap().failed.unwrap_or(0), 0, "the ignored failure was counted");
    assert!(job_condition(&j, "FailureTarget").is_none() && job_condition(&j, "Failed").is_none());

    // Exit code 42 of container c matches the FailJob rule (index 0).
    end_pod(&pod_api, &c, "Failed", 42, json!([])).await;
    let message = format!("Container c for pod default/{c} failed with exit code 42 matching FailJob rule at index 0");
    let target = until(Duration::from_secs(10), "FailureTarget", || async {
        job_condition(&jobs.get("pfp").await.ok()?, "FailureTarget")
    })
    .await;
    assert_eq!(
        (target.reason.as_deref(), target.message.as_deref()),
        (Some("PodFailurePolicy"), Some(message.as_str()))
    );
    // The running pod is being terminated; the job is not Failed while it is.
    until(Duration::from_secs(10), "the running pod terminating", || async {
        pod_api.get(&b).await.ok()?.metadata.deletion_timestamp.map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(job_condition(&jobs.get("pfp").await.unwrap(), "Failed").is_none(), "Failed before its pods terminated");
    // The kubelet stops it and removes it: now the job is Failed with the same reason and message.
    end_pod(&pod_api, &b, "Failed", 137, json!([])).await;
    let _ = pod_api.delete(&b, &kube::api::DeleteParams::default().grace_period(0)).await;
    let out = kubectl(&cp, &["wait", "--for=condition=failed", "job/pfp", "--timeout=20s"]);
    assert!(out.contains("condition met"), "{out}");
    let j = jobs.get("pfp").await.unwrap();
    let failed = job_condition(&j, "Failed").unwrap();
    assert_eq!(
        (failed.reason.as_deref(), failed.message.as_deref()),
        (Some("PodFailurePolicy"), Some(message.as_str()))
    );
    let st = j.status.unwrap();
    assert_eq!((st.failed, st.succeeded.unwrap_or(0), st.active.unwrap_or(0)), (Some(1), 0, 0));
    let all = pod_api.list(&ListParams::default().labels("batch.kubernetes.io/job-name=pfp")).await.unwrap().items;
    assert_eq!(all.len(), 2, "no pod created after the job failed: {all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_pod_failure_policy_a_terminating_pod_is_replaced_only_once_it_failed() {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Node;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kcm = kcm(&cp, &["--controllers=job"]);
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Upstream defaults podReplacementPolicy to Failed with a pod failure policy; said explicitly
    // here, as that defaulting is the apiserver's.
    let spec = json!({"podReplacementPolicy": "Failed", "podFailurePolicy": {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]}});
    jobs.create(&PostParams::default(), &job("repl", spec)).await.unwrap();
    let first = until(Duration::from_secs(20), "the pod", || async {
        running_job_pods(&pod_api, "repl").await.into_iter().next()
    })
    .await;
    let name = first.metadata.name.clone().unwrap();
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let (code, body) =
        cp.apiserver.json("POST", &format!("/api/v1/namespaces/default/pods/{name}/binding"), Some(&binding));
    assert_eq!(code, 201, "{body}");
    mark_ready(&pod_api, &first).await;
    // Evicted: it terminates (gracefully, on its node) and is not replaced meanwhile.
    pod_api.delete(&name, &Default::default()).await.unwrap();
    until(Duration::from_secs(10), "status.terminating 1", || async {
        (jobs.get("repl").await.ok()?.status?.terminating == Some(1)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = pod_api.list(&ListParams::default().labels("batch.kubernetes.io/job-name=repl")).await.unwrap().items;
    assert_eq!(all.len(), 1, "replaced while still terminating");
    // The kubelet reports it Failed with the disruption condition: ignored, and replaced at once.
    let disrupted = json!([{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]);
    end_pod(&pod_api, &name, "Failed", 137, disrupted).await;
    let replacement = until(Duration::from_secs(10), "the replacement", || async {
        running_job_pods(&pod_api, "repl").await.into_iter().find(|p| p.metadata.name.as_deref() != Some(name.as_str()))
    })
    .await;
    assert!(replacement.metadata.deletion_timestamp.is_none());
    let st = jobs.get("repl").await.unwrap().status.unwrap();
    assert_eq!(st.failed.unwrap_or(0), 0, "an ignored disruption was counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_limit_per_index_fails_indexes_and_max_failed_indexes_fails_the_job() {
    use k8s_openapi::api::batch::v1::Job;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kcm = kcm(&cp, &[]);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let by_index = |pods: &[Pod], i: &str| {
        pods.iter()
            .find(|p| {
                p.metadata
                    .annotations
                    .as_ref()
                    .unwrap()
                    .get("batch.kubernetes.io/job-completion-index")
                    .map(String::as_str)
                    == Some(i)
            })
            .and_then(|p| p.metadata.name.clone())
    };
    // maxFailedIndexes 0: the first failed index fails the job and stops the other pods.
    let spec = json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed", "backoffLimitPerIndex": 0, "maxFailedIndexes": 0});
    jobs.create(&PostParams::default(), &job("maxfail", spec)).await.unwrap();
    let first = until(Duration::from_secs(20), "2 pods", || async {
        let p = running_job_pods(&pod_api, "maxfail").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    end_pod(&pod_api, &by_index(&first, "0").unwrap(), "Failed", 1, json!([])).await;
    let out = kubectl(&cp, &["wait", "--for=condition=failed", "job/maxfail", "--timeout=20s"]);
    assert!(out.contains("condition met"), "{out}");
    let j = jobs.get("maxfail").await.unwrap();
    for type_ in ["FailureTarget", "Failed"] {
        let c = job_condition(&j, type_).unwrap();
        assert_eq!(
            (c.reason.as_deref(), c.message.as_deref()),
            (Some("MaxFailedIndexesExceeded"), Some("Job has exceeded the specified maximal number of failed indexes"))
        );
    }
    assert_eq!(j.status.as_ref().unwrap().failed_indexes.as_deref(), Some("0"));
    assert!(running_job_pods(&pod_api, "maxfail").await.is_empty(), "index 1 still runs");

    // One retry per index; FailIndex fails index 0 at once; index 2 fails twice.
    let spec = json!({
        "completions": 3, "parallelism": 3, "completionMode": "Indexed", "backoffLimitPerIndex": 1,
        "podFailurePolicy": {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [3]}}]},
    });
    jobs.create(&PostParams::default(), &job("perindex", spec)).await.unwrap();
    let first = until(Duration::from_secs(20), "3 pods", || async {
        let p = running_job_pods(&pod_api, "perindex").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    end_pod(&pod_api, &by_index(&first, "0").unwrap(), "Failed", 3, json!([])).await;
    end_pod(&pod_api, &by_index(&first, "1").unwrap(), "Succeeded", 0, json!([])).await;
    let failed_2 = by_index(&first, "2").unwrap();
    end_pod(&pod_api, &failed_2, "Failed", 1, json!([])).await;
    // Index 2 comes back after its back-off (10 s), counting its first failure.
    let retry = until(Duration::from_secs(25), "index 2 retried", || async {
        let p = running_job_pods(&pod_api, "perindex").await;
        p.into_iter().find(|p| p.metadata.name.as_deref() != Some(failed_2.as_str()))
    })
    .await;
    let ann = retry.metadata.annotations.clone().unwrap();
    assert_eq!(ann.get("batch.kubernetes.io/job-completion-index").map(String::as_str), Some("2"));
    assert_eq!(ann.get("batch.kubernetes.io/job-index-failure-count").map(String::as_str), Some("1"));
    let all = pod_api.list(&ListParams::default().labels("batch.kubernetes.io/job-name=perindex")).await.unwrap().items;
    assert_eq!(all.len(), 4, "index 0 failed by FailIndex must not be retried");
    let st = jobs.get("perindex").await.unwrap().status.unwrap();
    assert_eq!((st.failed_indexes.as_deref(), st.completed_indexes.as_deref()), (Some("0"), Some("1")));
    assert!(job_condition(&jobs.get("perindex").await.unwrap(), "Failed").is_none());
    end_pod(&pod_api, retry.metadata.name.as_deref().unwrap(), "Failed", 1, json!([])).await;
    let out = kubectl(&cp, &["wait", "--for=condition=failed", "job/perindex", "--timeout=20s"]);
    assert!(out.contains("condition met"), "{out}");
    let j = jobs.get("perindex").await.unwrap();
    let c = job_condition(&j, "Failed").unwrap();
    assert_eq!((c.reason.as_deref(), c.message.as_deref()), (Some("FailedIndexes"), Some("Job has failed indexes")));
    let st = j.status.unwrap();
    assert_eq!((st.failed_indexes.as_deref(), st.completed_indexes.as_deref()), (Some("0,2"), Some("1")));
    assert_eq!((st.failed, st.succeeded), (Some(3), Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_policy_completes_an_indexed_job_and_stops_the_rest() {
    use k8s_openapi::api::batch::v1::Job;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kcm = kcm(&cp, &[]);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    // The leader (index 0) and one worker must succeed.
    let spec = json!({
        "completions": 5, "parallelism": 5, "completionMode": "Indexed",
        "successPolicy": {"rules": [{"succeededIndexes": "0"}, {"succeededIndexes": "1-4", "succeededCount": 3}]},
    });
    jobs.create(&PostParams::default(), &job("leader", spec)).await.unwrap();
    let first = until(Duration::from_secs(20), "5 pods", || async {
        let p = running_job_pods(&pod_api, "leader").await;
        (p.len() == 5).then_some(p)
    })
    .await;
    let name_of = |i: &str| {
        first
            .iter()
            .find(|p| {
                p.metadata.labels.as_ref().unwrap().get("batch.kubernetes.io/job-completion-index").map(String::as_str)
                    == Some(i)
            })
            .and_then(|p| p.metadata.name.clone())
            .unwrap()
    };
    // Two workers succeeding do not meet rule 1 (3 of 1-4) nor rule 0.
    end_pod(&pod_api, &name_of("1"), "Succeeded", 0, json!([])).await;
    end_pod(&pod_api, &name_of("2"), "Succeeded", 0, json!([])).await;
    until(Duration::from_secs(10), "completed indexes 1,2", || async {
        let st = jobs.get("leader").await.ok()?.status?;
        (st.completed_indexes.as_deref() == Some("1,2")).then_some(())
    })
    .await;
    assert!(job_condition(&jobs.get("leader").await.unwrap(), "SuccessCriteriaMet").is_none());
    end_pod(&pod_api, &name_of("0"), "Succeeded", 0, json!([])).await;
    let out = kubectl(&cp, &["wait", "--for=condition=complete", "job/leader", "--timeout=20s"]);
    assert!(out.contains("condition met"), "{out}");
    let j = jobs.get("leader").await.unwrap();
    for type_ in ["SuccessCriteriaMet", "Complete"] {
        let c = job_condition(&j, type_).unwrap();
        assert_eq!(
            (c.reason.as_deref(), c.message.as_deref()),
            (Some("SuccessPolicy"), Some("Matched rules at index 0"))
        );
    }
    let st = j.status.unwrap();
    assert_eq!((st.succeeded, st.completed_indexes.as_deref(), st.active), (Some(3), Some("0-2"), Some(0)));
    assert!(st.completion_time.is_some());
    assert!(running_job_pods(&pod_api, "leader").await.is_empty(), "indexes 3 and 4 were not stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_active_deadline_fails_and_stops_its_pods() {
    use k8s_openapi::api::batch::v1::Job;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kcm = kcm(&cp, &["--controllers=job"]);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Its pods never finish (no kubelet).
    jobs.create(
        &PostParams::default(),
        &job("slow", json!({"parallelism": 2, "completions": 2, "activeDeadlineSeconds": 3})),
    )
    .await
    .unwrap();
    until(Duration::from_secs(10), "2 pods", || async {
        (running_job_pods(&pod_api, "slow").await.len() == 2).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    let out = kubectl(&cp, &["wait", "--for=condition=failed", "job/slow", "--timeout=20s"]);
    assert!(out.contains("condition met"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(10), "failed {:?} after the pods started", started.elapsed());
    let j = jobs.get("slow").await.unwrap();
    for type_ in ["FailureTarget", "Failed"] {
        let c = job_condition(&j, type_).unwrap();
        assert_eq!(
            (c.reason.as_deref(), c.message.as_deref()),
            (Some("DeadlineExceeded"), Some("Job was active longer than specified deadline"))
        );
    }
    assert_eq!(j.status.unwrap().active.unwrap_or(0), 0);
    until(Duration::from_secs(10), "its pods gone", || async {
        running_job_pods(&pod_api, "slow").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_in_a_time_zone_catches_up_a_missed_start_under_its_concurrency_policy_and_history_limit() {
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    let cp = start_cluster();
    let client = client(&cp).await;
    // No job controller: the jobs stay as this test leaves them.
    let _kcm = kcm(&cp, &["--controllers=cronjob"]);
    let cjs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    // Minute 30 in Kolkata (UTC+05:30) is minute 0 in UTC.
    let cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "cj"},
        "spec": {
            "schedule": "30 * * * *",
            "timeZone": "Asia/Kolkata",
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 1,
            "suspend": true,
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}},
        },
    }))
    .unwrap();
    let cj = cjs.create(&PostParams::default(), &cj).await.unwrap();
    let owned = |name: &str| -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": name, "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "cj",
                "uid": cj.metadata.uid, "controller": true}]},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
        }))
        .unwrap()
    };
    // Two finished jobs (history limit 1 keeps the newer) and one still running.
    for name in ["done-1", "done-2"] {
        let created = jobs.create(&PostParams::default(), &owned(name)).await.unwrap();
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let mut finished = created.clone();
        finished.status = Some(
            serde_json::from_value(json!({
                "startTime": now, "completionTime": now, "succeeded": 1,
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
                    {"type": "Complete", "status": "True", "reason": "CompletionsReached"},
                ],
            }))
            .unwrap(),
        );
        jobs.replace_status(name, &PostParams::default(), &finished).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    jobs.create(&PostParams::default(), &owned("running")).await.unwrap();
    let names = || async {
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .map(|j| j.metadata.name.unwrap())
            .collect::<BTreeSet<_>>()
    };
    until(Duration::from_secs(10), "the older finished job deleted", || async {
        (names().await == BTreeSet::from(["done-2".to_string(), "running".to_string()])).then_some(())
    })
    .await;

    // Last run two hours ago: a start was missed. Forbid: not while a job runs.
    let two_hours_ago = k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(2);
    let missed = json!({"status": {"lastScheduleTime": two_hours_ago.to_string()}});
    cjs.patch_status("cj", &PatchParams::default(), &Patch::Merge(missed)).await.unwrap();
    cjs.patch("cj", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": false}}))).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(names().await, BTreeSet::from(["done-2".to_string(), "running".to_string()]), "Forbid started a job");

    // Replace: the running job goes and the missed start runs.
    cjs.patch("cj", &PatchParams::default(), &Patch::Merge(json!({"spec": {"concurrencyPolicy": "Replace"}})))
        .await
        .unwrap();
    let started = until(Duration::from_secs(10), "the missed start", || async {
        let n = names().await;
        (!n.contains("running") && n.len() == 2).then(|| n.into_iter().find(|n| n != "done-2")).flatten()
    })
    .await;
    let job = jobs.get(&started).await.unwrap();
    let scheduled: k8s_openapi::jiff::Timestamp =
        job.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/cronjob-scheduled-timestamp"].parse().unwrap();
    // The latest hh:30 in Kolkata, i.e. the latest full UTC hour.
    let now = k8s_openapi::jiff::Timestamp::now();
    assert_eq!(scheduled.as_second() % 3600, 0, "{scheduled}");
    assert!(scheduled <= now && now.as_second() - scheduled.as_second() < 3600, "{scheduled}");
    assert_eq!(started, format!("cj-{}", scheduled.as_second() / 60));
    let st = cjs.get("cj").await.unwrap().status.unwrap();
    assert_eq!(st.last_schedule_time.map(|t| t.0), Some(scheduled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_statefulset_starts_every_pod_at_once_and_a_partition_holds_back_the_update() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    let cp = start_cluster();
    let client = client(&cp).await;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let _kcm = kcm(&cp, &["--controllers=statefulset"]);
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "par"},
        "spec": {
            "replicas": 3,
            "serviceName": "par",
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
            "selector": {"matchLabels": {"app": "par"}},
            "template": {"metadata": {"labels": {"app": "par"}}, "spec": {"containers": [{"name": "c", "image": "v1"}]}},
        },
    }))
    .unwrap();
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    sts_api.create(&PostParams::default(), &sts).await.unwrap();
    // Parallel: all three exist although none is ready (no kubelet yet).
    let all = until(Duration::from_secs(10), "3 pods, none ready", || async {
        let p = pods(&pod_api, "app=par").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    assert!(all.iter().all(|p| !is_ready(p)));
    let names: BTreeSet<String> = all.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names, BTreeSet::from(["par-0".to_string(), "par-1".to_string(), "par-2".to_string()]));
    let _kubelet = fake_kubelet(client.clone(), "default");
    until(Duration::from_secs(10), "3 ready", || async { (ready_count(&pod_api, "app=par").await == 3).then_some(()) })
        .await;
    // Partition 2: only ordinal 2 takes the new template.
    kubectl(&cp, &["set", "image", "statefulset/par", "c=v2"]);
    until(Duration::from_secs(20), "par-2 on v2 and ready", || async {
        let p = pod_api.get("par-2").await.ok()?;
        (images(std::slice::from_ref(&p)) == BTreeSet::from(["v2".to_string()]) && is_ready(&p)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in ["par-0", "par-1"] {
        let p = pod_api.get(n).await.unwrap();
        assert_eq!(images(std::slice::from_ref(&p)), BTreeSet::from(["v1".to_string()]), "{n} was updated");
    }
    // Lowering the partition to 0 updates the rest.
    sts_api
        .patch(
            "par",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}})),
        )
        .await
        .unwrap();
    until(Duration::from_secs(30), "every pod on v2", || async {
        let p = pods(&pod_api, "app=par").await;
        (p.len() == 3 && images(&p) == BTreeSet::from(["v2".to_string()]) && p.iter().all(is_ready)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_starts_a_job_on_schedule_and_finished_jobs_expire_after_their_ttl() {
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kubelet = job_kubelet(client.clone(), "default", Duration::from_millis(300), "Succeeded");
    let _kcm = kcm(&cp, &[]);
    let cjs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {"spec": {
                "ttlSecondsAfterFinished": 2,
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}},
            }},
        },
    }))
    .unwrap();
    cjs.create(&PostParams::default(), &cj).await.unwrap();
    // Within a minute and a bit: a job owned by the cronjob, for a whole minute.
    let job = until(Duration::from_secs(75), "a scheduled job", || async {
        jobs.list(&ListParams::default()).await.unwrap().items.into_iter().next()
    })
    .await;
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("CronJob", "tick"));
    let scheduled: k8s_openapi::jiff::Timestamp =
        job.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/cronjob-scheduled-timestamp"].parse().unwrap();
    assert_eq!(scheduled.as_second() % 60, 0);
    assert_eq!(job.metadata.name.as_deref(), Some(format!("tick-{}", scheduled.as_second() / 60).as_str()));
    until(Duration::from_secs(30), "lastScheduleTime and lastSuccessfulTime", || async {
        let st = cjs.get("tick").await.ok()?.status?;
        (st.last_schedule_time.is_some() && st.last_successful_time.is_some()).then_some(())
    })
    .await;
    // The finished job goes 2s after it completed (TTL-after-finished).
    let name = job.metadata.name.clone().unwrap();
    until(Duration::from_secs(30), "the finished job to expire", || async {
        jobs.get_opt(&name).await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_disruption_budget_status_gates_evictions() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kubelet = fake_kubelet(client.clone(), "default");
    let _kcm = kcm(&cp, &[]);
    let d_api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    d_api.create(&PostParams::default(), &deployment("guarded", 3)).await.unwrap();
    kubectl(&cp, &["rollout", "status", "deployment/guarded", "--timeout=60s"]);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    for (name, budget) in [("min", json!({"minAvailable": 2})), ("max", json!({"maxUnavailable": "33%"}))] {
        let mut spec = json!({"selector": {"matchLabels": {"app": "guarded"}}});
        for (k, v) in budget.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let pdb: PodDisruptionBudget =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
        pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    }
    for name in ["min", "max"] {
        let st = until(Duration::from_secs(20), "PDB status", || async {
            let st = pdbs.get(name).await.ok()?.status?;
            (st.current_healthy == 3).then_some(st)
        })
        .await;
        assert_eq!((st.expected_pods, st.desired_healthy, st.disruptions_allowed), (3, 2, 1), "{name}: {st:?}");
        let cond = &st.conditions.unwrap()[0];
        assert_eq!(
            (cond.type_.as_str(), cond.status.as_str(), cond.reason.as_str()),
            ("DisruptionAllowed", "True", "SufficientPods")
        );
    }
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let victim = pods(&pod_api, "app=guarded").await[0].metadata.name.clone().unwrap();
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": victim}});
    let (code, body) =
        cp.apiserver.json("POST", &format!("/api/v1/namespaces/default/pods/{victim}/eviction"), Some(&eviction));
    assert_eq!(code, 201, "{body}");
    // The replacement becomes ready, and the budget allows one disruption again.
    until(Duration::from_secs(30), "the budget to recover", || async {
        let st = pdbs.get("min").await.ok()?.status?;
        (st.current_healthy == 3 && st.disruptions_allowed == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_runs_one_pod_per_eligible_node_and_rolls_updates() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::Node;
    let cp = start_cluster();
    let client = client(&cp).await;
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, labels, taints) in [
        ("a", json!({"role": "worker"}), json!([])),
        ("b", json!({"role": "worker"}), json!([])),
        ("c", json!({"role": "worker"}), json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])),
        ("d", json!({"role": "control-plane"}), json!([])),
    ] {
        let n: Node =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}))
                .unwrap();
        nodes.create(&PostParams::default(), &n).await.unwrap();
    }
    let _kubelet = fake_kubelet(client.clone(), "default");
    let _kcm = kcm(&cp, &[]);
    let ds_api: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"nodeSelector": {"role": "worker"}, "containers": [{"name": "c", "image": "agent:1"}]},
            },
        },
    }))
    .unwrap();
    ds_api.create(&PostParams::default(), &ds).await.unwrap();
    let out = kubectl(&cp, &["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let target = |p: &Pod| -> String {
        let terms = &p
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        terms[0].match_fields.as_ref().unwrap()[0].values.as_ref().unwrap()[0].clone()
    };
    let on: BTreeSet<String> = pods(&pod_api, "app=agent").await.iter().map(target).collect();
    assert_eq!(on, BTreeSet::from(["a".to_string(), "b".to_string()]), "tainted and unselected nodes get none");
    let st = ds_api.get("agent").await.unwrap().status.unwrap();
    assert_eq!((st.desired_number_scheduled, st.current_number_scheduled, st.number_ready), (2, 2, 2));

    // A new node that qualifies gets a pod; an update rolls node by node.
    let e: Node = serde_json::from_value(json!({"metadata": {"name": "e", "labels": {"role": "worker"}}})).unwrap();
    nodes.create(&PostParams::default(), &e).await.unwrap();
    until(Duration::from_secs(20), "a pod on the new node", || async {
        (pods(&pod_api, "app=agent").await.len() == 3).then_some(())
    })
    .await;
    kubectl(&cp, &["set", "image", "daemonset/agent", "c=agent:2"]);
    let out = kubectl(&cp, &["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let now = pods(&pod_api, "app=agent").await;
    assert_eq!((now.len(), images(&now)), (3, BTreeSet::from(["agent:2".to_string()])));
    let history = kubectl(&cp, &["rollout", "history", "daemonset/agent"]);
    assert!(history.contains("1 ") && history.contains("2 "), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_with_max_surge_starts_each_new_pod_before_removing_the_old() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::Node;
    let cp = start_cluster();
    let client = client(&cp).await;
    let nodes: Api<Node> = Api::all(client.clone());
    for name in ["s1", "s2", "s3"] {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        nodes.create(&PostParams::default(), &n).await.unwrap();
    }
    // A kubelet that takes a second to start each pod, so that old and new overlap visibly.
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let _kubelet = {
        let api = pod_api.clone();
        tokio::spawn(async move {
            let mut stream = watcher(api.clone(), watcher::Config::default()).applied_objects().boxed();
            let mut seen = BTreeSet::new();
            while let Some(Ok(pod)) = stream.next().await {
                if pod.metadata.deletion_timestamp.is_none() && seen.insert(pod.metadata.name.clone().unwrap()) {
                    let api = api.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        mark_ready(&api, &pod).await;
                    });
                }
            }
        })
    };
    let _kcm = kcm(&cp, &[]);
    let ds_api: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "surge"},
        "spec": {
            "selector": {"matchLabels": {"app": "surge"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {"app": "surge"}}, "spec": {"containers": [{"name": "c", "image": "agent:1"}]}},
        },
    }))
    .unwrap();
    ds_api.create(&PostParams::default(), &ds).await.unwrap();
    let out = kubectl(&cp, &["rollout", "status", "daemonset/surge", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let node_of = |p: &Pod| -> String {
        let aff = p.spec.as_ref().unwrap().affinity.as_ref().unwrap().node_affinity.as_ref().unwrap();
        let terms = &aff.required_during_scheduling_ignored_during_execution.as_ref().unwrap().node_selector_terms;
        terms[0].match_fields.as_ref().unwrap()[0].values.as_ref().unwrap()[0].clone()
    };

    // Watch every node through the update: never without a ready pod, never more than one extra pod.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let monitor = {
        let (api, stop) = (pod_api.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut min_ready_per_node, mut max_total, mut doubled) = (usize::MAX, 0, false);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let now = pods(&api, "app=surge").await;
                let mut per_node: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
                for p in &now {
                    let e = per_node.entry(node_of(p)).or_default();
                    e.0 += 1;
                    e.1 += usize::from(is_ready(p));
                }
                max_total = max_total.max(now.len());
                doubled |= per_node.values().any(|(n, _)| *n == 2);
                let least = ["s1", "s2", "s3"].iter().map(|n| per_node.get(*n).map_or(0, |e| e.1)).min().unwrap();
                min_ready_per_node = min_ready_per_node.min(least);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (min_ready_per_node, max_total, doubled)
        })
    };
    kubectl(&cp, &["set", "image", "daemonset/surge", "c=agent:2"]);
    until(Duration::from_secs(30), "three pods, all agent:2 and ready", || async {
        let now = pods(&pod_api, "app=surge").await;
        (now.len() == 3 && images(&now) == BTreeSet::from(["agent:2".to_string()]) && now.iter().all(is_ready))
            .then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (min_ready_per_node, max_total, doubled) = monitor.await.unwrap();
    assert_eq!(min_ready_per_node, 1, "a node was left without a ready pod");
    assert!(doubled, "no node ever ran the new pod beside the old one");
    assert_eq!(max_total, 4, "more than maxSurge (1) extra pods at once");
    let on: BTreeSet<String> = pods(&pod_api, "app=surge").await.iter().map(node_of).collect();
    assert_eq!(on.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_creates_updates_and_removes_pods_in_order() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kubelet = fake_kubelet(client.clone(), "default");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Record, as the watch sees them, pod creations (with which pods were ready then) and deletions.
    let log: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let recorder = {
        let (api, log) = (pod_api.clone(), log.clone());
        tokio::spawn(async move {
            let mut ready = BTreeSet::new();
            let mut known = BTreeSet::new();
            let mut stream = watcher(api, watcher::Config::default().labels("app=web")).boxed();
            while let Some(Ok(ev)) = stream.next().await {
                match ev {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        let name = p.metadata.name.clone().unwrap();
                        if known.insert(name.clone()) {
                            log.lock().unwrap().push(format!("create {name} after {ready:?}"));
                        }
                        if is_ready(&p) && p.metadata.deletion_timestamp.is_none() {
                            ready.insert(name);
                        }
                    }
                    watcher::Event::Delete(p) => {
                        let name = p.metadata.name.clone().unwrap();
                        known.remove(&name);
                        ready.remove(&name);
                        log.lock().unwrap().push(format!("delete {name}"));
                    }
                    _ => {}
                }
            }
        })
    };
    let _kcm = kcm(&cp, &[]);
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.25", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]},
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }],
        },
    }))
    .unwrap();
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    sts_api.create(&PostParams::default(), &sts).await.unwrap();
    let out = kubectl(&cp, &["rollout", "status", "statefulset/web", "--timeout=60s"]);
    assert!(out.contains("roll out complete") || out.contains("rolling update complete"), "{out}");
    {
        let log = log.lock().unwrap();
        assert_eq!(log[0], "create web-0 after {}");
        assert_eq!(log[1], "create web-1 after {\"web-0\"}");
        assert_eq!(log[2], "create web-2 after {\"web-0\", \"web-1\"}");
    }
    let p1 = pod_api.get("web-1").await.unwrap();
    let spec = p1.spec.unwrap();
    assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("web-1"), Some("web")));
    let claim = spec.volumes.unwrap().into_iter().find(|v| v.name == "data").unwrap().persistent_volume_claim.unwrap();
    assert_eq!(claim.claim_name, "data-web-1");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    for i in 0..3 {
        pvcs.get(&format!("data-web-{i}")).await.unwrap();
    }

    log.lock().unwrap().clear();
    kubectl(&cp, &["set", "image", "statefulset/web", "c=nginx:1.26"]);
    let out = kubectl(&cp, &["rollout", "status", "statefulset/web", "--timeout=60s"]);
    assert!(out.contains("complete"), "{out}");
    let deletions: Vec<String> = log.lock().unwrap().iter().filter(|l| l.starts_with("delete")).cloned().collect();
    assert_eq!(deletions, vec!["delete web-2", "delete web-1", "delete web-0"], "updates go from the highest ordinal");
    assert_eq!(images(&pods(&pod_api, "app=web").await), BTreeSet::from(["nginx:1.26".to_string()]));
    let st = sts_api.get("web").await.unwrap().status.unwrap();
    assert_eq!(st.current_revision, st.update_revision);

    log.lock().unwrap().clear();
    kubectl(&cp, &["scale", "statefulset/web", "--replicas=1"]);
    until(Duration::from_secs(30), "scale down to 1", || async {
        (pods(&pod_api, "app=web").await.len() == 1).then_some(())
    })
    .await;
    let deletions: Vec<String> = log.lock().unwrap().iter().filter(|l| l.starts_with("delete")).cloned().collect();
    assert_eq!(deletions, vec!["delete web-2", "delete web-1"]);
    assert!(pvcs.get_opt("data-web-2").await.unwrap().is_some(), "claims are retained");
    recorder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_written_endpoints_of_a_selectorless_service_are_mirrored_into_slices() {
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kcm = kcm(&cp, &[]);
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let svc: Service =
        serde_json::from_value(json!({"metadata": {"name": "db"}, "spec": {"ports": [{"name": "pg", "port": 5432}]}}))
            .unwrap();
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    let ep: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "subsets": [{
            "addresses": [{"ip": "10.9.0.1"}, {"ip": "10.9.0.2"}],
            "notReadyAddresses": [{"ip": "10.9.0.3"}],
            "ports": [{"name": "pg", "port": 5432}],
        }],
    }))
    .unwrap();
    eps.create(&PostParams::default(), &ep).await.unwrap();
    let mirrored = until(Duration::from_secs(20), "a mirrored slice", || async {
        let l = slices.list(&ListParams::default().labels("kubernetes.io/service-name=db")).await.unwrap().items;
        l.into_iter().find(|s| s.endpoints.len() == 3)
    })
    .await;
    let labels = mirrored.metadata.labels.clone().unwrap();
    assert_eq!(labels["endpointslice.kubernetes.io/managed-by"], "endpointslicemirroring-controller.k8s.io");
    let ready: BTreeSet<String> = mirrored
        .endpoints
        .iter()
        .filter(|e| e.conditions.as_ref().unwrap().ready == Some(true))
        .map(|e| e.addresses[0].clone())
        .collect();
    assert_eq!(ready, BTreeSet::from(["10.9.0.1".to_string(), "10.9.0.2".to_string()]));
    assert_eq!(mirrored.ports.unwrap()[0].port, Some(5432));

    eps.delete("db", &Default::default()).await.unwrap();
    until(Duration::from_secs(20), "the mirrored slice to go", || async {
        let l = slices.list(&ListParams::default().labels("kubernetes.io/service-name=db")).await.unwrap().items;
        l.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_bind_to_the_smallest_fitting_volume_and_released_volumes_are_kept() {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kcm = kcm(&cp, &[]);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    for (name, size, class) in
        [("small", "1Gi", ""), ("big", "10Gi", ""), ("medium", "5Gi", ""), ("fast", "5Gi", "fast")]
    {
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": class, "hostPath": {"path": format!("/tmp/{name}")}},
        }))
        .unwrap();
        pvs.create(&PostParams::default(), &pv).await.unwrap();
    }
    let claim = |name: &str, size: &str, class: &str| -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class, "resources": {"requests": {"storage": size}}},
        }))
        .unwrap()
    };
    pvcs.create(&PostParams::default(), &claim("data", "2Gi", "")).await.unwrap();
    pvcs.create(&PostParams::default(), &claim("quick", "1Gi", "fast")).await.unwrap();
    pvcs.create(&PostParams::default(), &claim("huge", "100Gi", "")).await.unwrap();
    for (claim_name, volume) in [("data", "medium"), ("quick", "fast")] {
        until(Duration::from_secs(20), "a bound claim", || async {
            let c = pvcs.get(claim_name).await.ok()?;
            let bound = c.spec.as_ref()?.volume_name.as_deref() == Some(volume)
                && c.status.as_ref()?.phase.as_deref() == Some("Bound");
            let v = pvs.get(volume).await.ok()?;
            let claimed = v.spec.as_ref()?.claim_ref.as_ref()?.name.as_deref() == Some(claim_name)
                && v.status.as_ref()?.phase.as_deref() == Some("Bound");
            (bound && claimed).then_some(())
        })
        .await;
    }
    let data = pvcs.get("data").await.unwrap();
    assert_eq!(data.status.unwrap().capacity.unwrap()["storage"].0, "5Gi");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let huge = pvcs.get("huge").await.unwrap();
    assert_ne!(huge.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
    assert_eq!(pvs.get("small").await.unwrap().status.unwrap().phase.as_deref(), Some("Available"));

    // The claim goes; its (Retain) volume is released, not reused.
    pvcs.delete("data", &Default::default()).await.unwrap();
    until(Duration::from_secs(20), "the volume released", || async {
        (pvs.get("medium").await.ok()?.status?.phase.as_deref() == Some("Released")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_a_generic_ephemeral_volume_gets_its_own_claim() {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kcm = kcm(&cp, &[]);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "scratch"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
            "volumes": [{"name": "tmp", "ephemeral": {"volumeClaimTemplate": {
                "metadata": {"labels": {"kind": "scratch"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }}}],
        },
    }))
    .unwrap();
    let created = pod_api.create(&PostParams::default(), &pod).await.unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let claim =
        until(Duration::from_secs(20), "the ephemeral claim", || async { pvcs.get_opt("scratch-tmp").await.unwrap() })
            .await;
    let owner = &claim.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Pod", created.metadata.uid.as_deref().unwrap()));
    assert_eq!(claim.metadata.labels.unwrap()["kind"], "scratch");
    // It goes with the pod (garbage collector).
    pod_api.delete("scratch", &Default::default()).await.unwrap();
    until(Duration::from_secs(20), "the claim to go with the pod", || async {
        pvcs.get_opt("scratch-tmp").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_cluster_roles_pick_up_the_rules_of_labelled_roles() {
    use k8s_openapi::api::rbac::v1::ClusterRole;
    let cp = start_cluster();
    let client = client(&cp).await;
    let _kcm = kcm(&cp, &[]);
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let widget: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "widget-editor", "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
        "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "update"]}],
    }))
    .unwrap();
    roles.create(&PostParams::default(), &widget).await.unwrap();
    // The built-in edit role (and admin, which aggregates edit) now grant it.
    for name in ["edit", "admin"] {
        until(Duration::from_secs(20), "the aggregated rule", || async {
            let role = roles.get(name).await.ok()?;
            role.rules?
                .iter()
                .any(|r| r.resources.as_ref().is_some_and(|res| res.iter().any(|x| x == "widgets")))
                .then_some(())
        })
        .await;
    }
    // And lose it when the labelled role goes.
    roles.delete("widget-editor", &Default::default()).await.unwrap();
    until(Duration::from_secs(20), "the rule removed", || async {
        let role = roles.get("edit").await.ok()?;
        (!role.rules?.iter().any(|r| r.resources.as_ref().is_some_and(|res| res.iter().any(|x| x == "widgets"))))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_controller_keeps_its_replicas_and_kubectl_scales_it() {
    use k8s_openapi::api::core::v1::ReplicationController;
    let cp = start_cluster();
    let client = client(&cp).await;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rc_api: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    let _kubelet = fake_kubelet(client.clone(), "default");
    // A ReplicaSet selecting the same labels must not take the RC's pods.
    let _kcm = kcm(&cp, &["--controllers=replicationcontroller,replicaset"]);
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "legacy"},
        "spec": {
            "replicas": 3,
            "selector": {"app": "legacy"},
            "template": {
                "metadata": {"labels": {"app": "legacy", "tier": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]},
            },
        },
    }))
    .unwrap();
    let rc = rc_api.create(&PostParams::default(), &rc).await.unwrap();

    let owned = until(Duration::from_secs(30), "3 pods", || async {
        let p = pods(&pod_api, "app=legacy").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    for p in &owned {
        let r = p.metadata.owner_references.as_ref().unwrap().iter().find(|r| r.controller == Some(true)).unwrap();
        assert_eq!((r.kind.as_str(), r.api_version.as_str()), ("ReplicationController", "v1"));
        assert_eq!(r.uid, rc.metadata.uid.clone().unwrap());
    }
    until(Duration::from_secs(20), "status with 3 ready", || async {
        let s = rc_api.get("legacy").await.ok()?.status?;
        (s.replicas == 3
            && s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.fully_labeled_replicas == Some(3)
            && s.observed_generation == Some(1))
        .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pods(&pod_api, "app=legacy").await.len(), 3);

    // Stock kubectl scales it through replicationcontrollers/scale.
    kubectl(&cp, &["scale", "rc", "legacy", "--replicas=5"]);
    until(Duration::from_secs(30), "5 ready pods", || async {
        let s = rc_api.get("legacy").await.ok()?.status?;
        (pods(&pod_api, "app=legacy").await.len() == 5 && s.ready_replicas == Some(5)).then_some(())
    })
    .await;
    kubectl(&cp, &["scale", "replicationcontroller/legacy", "--replicas=1"]);
    until(Duration::from_secs(30), "scale down to 1", || async {
        let s = rc_api.get("legacy").await.ok()?.status?;
        (pods(&pod_api, "app=legacy").await.len() == 1 && s.replicas == 1 && s.observed_generation == Some(3))
            .then_some(())
    })
    .await;
    let got = kubectl(&cp, &["get", "rc", "legacy", "-o", "jsonpath={.spec.replicas}/{.status.readyReplicas}"]);
    assert_eq!(got.trim(), "1/1");
    // A deleted pod is replaced.
    let last = pods(&pod_api, "app=legacy").await.remove(0);
    pod_api.delete(last.metadata.name.as_deref().unwrap(), &Default::default()).await.unwrap();
    until(Duration::from_secs(30), "a replacement", || async {
        let p = pods(&pod_api, "app=legacy").await;
        (p.len() == 1 && p[0].metadata.uid != last.metadata.uid).then_some(())
    })
    .await;
    let events =
        kubectl(&cp, &["get", "events", "-o", "custom-columns=KIND:.involvedObject.kind,SOURCE:.source.component"]);
    assert!(events.contains("ReplicationController") && events.contains("replication-controller"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_quota_usage_is_recalculated_and_terminated_pods_free_their_share() {
    use k8s_openapi::api::core::v1::{ConfigMap, ResourceQuota};
    let cp = start_cluster();
    let client = client(&cp).await;
    kubectl(&cp, &["create", "namespace", "limited"]);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "limited");
    let quota_api: Api<ResourceQuota> = Api::namespaced(client.clone(), "limited");
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), "limited");
    let _kcm = kcm(&cp, &["--controllers=resourcequota", "--resource-quota-sync-period=1m"]);
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "small"},
        "spec": {"hard": {"pods": "2", "requests.cpu": "1", "count/configmaps": "5", "services": "3"}},
    }))
    .unwrap();
    quota_api.create(&PostParams::default(), &quota).await.unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "settings"}})).unwrap();
    cm_api.create(&PostParams::default(), &cm).await.unwrap();
    let pod = |name: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.25", "resources": {"requests": {"cpu": "100m"}}}]},
        }))
        .unwrap()
    };
    let used = |q: ResourceQuota| -> Option<Vec<String>> {
        let used = q.status?.used?;
        Some(
            ["pods", "requests.cpu", "count/configmaps", "services"]
                .iter()
                .map(|k| used.get(*k).map(|q| q.0.clone()).unwrap_or_default())
                .collect(),
        )
    };
    pod_api.create(&PostParams::default(), &pod("one")).await.unwrap();
    pod_api.create(&PostParams::default(), &pod("two")).await.unwrap();
    let err = pod_api.create(&PostParams::default(), &pod("three")).await.unwrap_err();
    assert_eq!(integration_api_code(&err), Some(403), "{err}");
    until(Duration::from_secs(20), "usage of 2 pods and a configmap", || async {
        (used(quota_api.get("small").await.ok()?)? == ["2", "200m", "1", "0"]).then_some(())
    })
    .await;

    // As a kubelet would report a finished pod: it no longer holds its share.
    let finished = json!({"status": {"phase": "Succeeded"}});
    pod_api.patch_status("one", &PatchParams::default(), &Patch::Merge(finished)).await.unwrap();
    until(Duration::from_secs(20), "the finished pod freed", || async {
        (used(quota_api.get("small").await.ok()?)? == ["1", "100m", "1", "0"]).then_some(())
    })
    .await;
    pod_api.create(&PostParams::default(), &pod("three")).await.unwrap();
    let err = pod_api.create(&PostParams::default(), &pod("four")).await.unwrap_err();
    assert_eq!(integration_api_code(&err), Some(403), "{err}");

    // Deletions are replenished too; kubectl shows the recalculated usage.
    cm_api.delete("settings", &Default::default()).await.unwrap();
    until(Duration::from_secs(20), "the configmap freed", || async {
        (used(quota_api.get("small").await.ok()?)? == ["2", "200m", "0", "0"]).then_some(())
    })
    .await;
    let described = kubectl(&cp, &["describe", "quota", "small", "-n", "limited"]);
    assert!(described.contains("pods") && described.contains("200m"), "{described}");
}

fn integration_api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}
