//! kube-scheduler against the real apiserver and etcd, with Node objects
//! created by the test (no kubelet): each filter and score deciding a
//! placement, the queue retrying when a fitting node appears, preemption,
//! profiles from a configuration file, and leader failover.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use integration::{eventually, Component, ControlPlane};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

struct Cluster {
    cp: ControlPlane,
    client: Client,
}

impl Cluster {
    async fn start() -> Cluster {
        let cp = ControlPlane::start().unwrap();
        let kubeconfig = kube::config::Kubeconfig::read_from(&cp.apiserver.kubeconfig).unwrap();
        let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
        let client = Client::try_from(config).unwrap();
        Cluster { cp, client }
    }

    /// A scheduler running as system:kube-scheduler (least privilege, upstream's bootstrap RBAC).
    fn scheduler(&self, args: &[&str]) -> Component {
        let kubeconfig = self.cp.apiserver.token_kubeconfig("system:kube-scheduler", "scheduler-token").unwrap();
        let mut all = vec!["--secure-port=0"];
        all.extend_from_slice(args);
        self.cp.apiserver.start_component("kube-scheduler", &kubeconfig, &all).unwrap()
    }

    /// A scheduler as `user` (a token of the apiserver's token file) serving
    /// /metrics on a free port, which it returns.
    fn scheduler_serving(&self, user: &str, token: &str, args: &[&str]) -> (Component, u16) {
        let kubeconfig = self.cp.apiserver.token_kubeconfig(user, token).unwrap();
        let port = integration::free_port();
        let secure = format!("--secure-port={port}");
        let mut all = vec![secure.as_str(), "--bind-address=127.0.0.1"];
        all.extend_from_slice(args);
        (self.cp.apiserver.start_component("kube-scheduler", &kubeconfig, &all).unwrap(), port)
    }

    /// Gives `user` what the scheduler's bootstrap ClusterRoles give
    /// system:kube-scheduler, except creating `pods/binding` (and `bindings`).
    async fn scheduler_rights_without_binding(&self, user: &str) {
        let roles: Api<ClusterRole> = Api::all(self.client.clone());
        let bindings: Api<ClusterRoleBinding> = Api::all(self.client.clone());
        let mut rules = Vec::new();
        for b in bindings.list(&ListParams::default()).await.unwrap() {
            if b.subjects.iter().flatten().any(|s| s.kind == "User" && s.name == "system:kube-scheduler") {
                rules.extend(roles.get(&b.role_ref.name).await.unwrap().rules.unwrap_or_default());
            }
        }
        let mut removed = false;
        for r in &mut rules {
            if let Some(resources) = r.resources.as_mut() {
                let before = resources.len();
                resources.retain(|x| x != "pods/binding" && x != "bindings");
                removed |= resources.len() != before;
            }
        }
        assert!(removed, "system:kube-scheduler may not bind pods? {rules:?}");
        rules.retain(|r| r.resources.as_ref().is_some_and(|x| !x.is_empty()) || r.non_resource_urls.is_some());
        let role: ClusterRole = serde_json::from_value(json!({
            "metadata": {"name": "scheduler-without-binding"}, "rules": rules}))
        .unwrap();
        roles.create(&PostParams::default(), &role).await.unwrap();
        self.bind_cluster_role("scheduler-without-binding", user).await;
    }

    async fn bind_cluster_role(&self, role: &str, user: &str) {
        let bindings: Api<ClusterRoleBinding> = Api::all(self.client.clone());
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("{role}-{user}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}))
        .unwrap();
        bindings.create(&PostParams::default(), &binding).await.unwrap();
    }

    /// Events about a pod with `reason`, their messages.
    async fn events(&self, pod: &str, reason: &str) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(pod) && e.reason.as_deref() == Some(reason))
            .map(|e| e.message.unwrap_or_default())
            .collect()
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn node(&self, name: &str, cpu: &str, memory: &str, labels: Value, extra: Value) {
        let mut node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {},
            "status": {
                "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test node"}],
            },
        });
        merge(&mut node, extra);
        let node: Node = serde_json::from_value(node).unwrap();
        let created = self.nodes().create(&PostParams::default(), &node).await.unwrap();
        // Nodes register with their status, as upstream keeps it on create.
        assert!(
            created.status.as_ref().and_then(|s| s.allocatable.as_ref()).is_some(),
            "node status dropped on create"
        );
    }

    async fn pod(&self, name: &str, spec: Value) -> Pod {
        self.pod_with(name, json!({}), spec).await
    }

    async fn pod_with(&self, name: &str, metadata: Value, spec: Value) -> Pod {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        });
        merge(&mut pod["metadata"], metadata);
        merge(&mut pod["spec"], spec);
        let pod: Pod = serde_json::from_value(pod).unwrap();
        self.pods().create(&PostParams::default(), &pod).await.unwrap()
    }

    /// The node the pod gets bound to.
    async fn bound(&self, name: &str) -> String {
        let start = std::time::Instant::now();
        loop {
            if let Ok(p) = self.pods().get(name).await {
                if let Some(n) = p.spec.and_then(|s| s.node_name) {
                    return n;
                }
            }
            if start.elapsed() > WAIT {
                let p = self.pods().get(name).await.ok().and_then(|p| p.status).and_then(|s| s.conditions);
                panic!("pod {name} was not bound within {WAIT:?}: {p:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The PodScheduled=False message once the scheduler gave up on the pod.
    async fn unschedulable_message(&self, name: &str) -> String {
        let start = std::time::Instant::now();
        loop {
            if let Ok(p) = self.pods().get(name).await {
                assert!(p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none(), "{name} was bound");
                let cond =
                    p.status.and_then(|s| s.conditions).and_then(|c| c.into_iter().find(|c| c.type_ == "PodScheduled"));
                if let Some(c) = cond.filter(|c| c.status == "False") {
                    assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
                    return c.message.unwrap_or_default();
                }
            }
            if start.elapsed() > WAIT {
                panic!("pod {name} never got PodScheduled=False");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `scheduler_schedule_attempts_total` with `result`, summed over profiles,
/// from the scheduler's /metrics; `None` until the endpoint answers.
fn attempts(port: u16, result: &str) -> Option<u64> {
    let out = std::process::Command::new("curl")
        .args(["-sk", "-H", "Authorization: Bearer admin", &format!("https://127.0.0.1:{port}/metrics")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // An OpenMetrics exposition ends with `# EOF` (a scheduler that never tried has no attempt lines).
    if !text.contains("# EOF") {
        return None;
    }
    let label = format!("result=\"{result}\"");
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("scheduler_schedule_attempts_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    Some(total as u64)
}

fn all_attempts(port: u16) -> Option<u64> {
    Some(attempts(port, "scheduled")? + attempts(port, "unschedulable")? + attempts(port, "error")?)
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

fn cpu(request: &str) -> Value {
    json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": request}}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_decide_placement() {
    let c = Cluster::start().await;
    c.node("ssd", "2", "4Gi", json!({"disk": "ssd", "zone": "a", "kubernetes.io/hostname": "ssd"}), json!({})).await;
    c.node("big", "16", "32Gi", json!({"disk": "hdd", "zone": "b", "kubernetes.io/hostname": "big"}), json!({})).await;
    c.node(
        "gpu",
        "4",
        "8Gi",
        json!({"disk": "hdd", "zone": "c", "kubernetes.io/hostname": "gpu"}),
        json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
               "status": {"allocatable": {"example.com/gpu": "2"}, "capacity": {"example.com/gpu": "2"}}}),
    )
    .await;
    c.node("cordoned", "64", "64Gi", json!({"zone": "d"}), json!({"spec": {"unschedulable": true}})).await;
    c.node(
        "notready",
        "64",
        "64Gi",
        json!({"zone": "e"}),
        json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]}}),
    )
    .await;
    let sched = c.scheduler(&["--leader-elect=false"]);

    // nodeSelector: the seeds' disk=ssd example.
    c.pod("wants-ssd", json!({"nodeSelector": {"disk": "ssd"}})).await;
    assert_eq!(c.bound("wants-ssd").await, "ssd");
    // Resource fit: only the big node has 8 CPUs free (cordoned and not-ready nodes are out).
    c.pod("wants-8-cpus", cpu("8")).await;
    assert_eq!(c.bound("wants-8-cpus").await, "big");
    // Taints and tolerations, and an extended resource only the tainted node offers.
    c.pod(
        "wants-gpu",
        json!({
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
            "containers": [{"name": "c", "image": "busybox", "resources": {"limits": {"example.com/gpu": "1"}}}],
        }),
    )
    .await;
    assert_eq!(c.bound("wants-gpu").await, "gpu");
    // Required node affinity.
    c.pod(
        "wants-zone-b",
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b", "x"]}]}]}}}}),
    )
    .await;
    assert_eq!(c.bound("wants-zone-b").await, "big");
    // Host ports: two pods asking for the same port on the one matching node cannot both fit.
    let port = json!({"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
    c.pod("port-1", port.clone()).await;
    assert_eq!(c.bound("port-1").await, "ssd");
    c.pod("port-2", port).await;
    let msg = c.unschedulable_message("port-2").await;
    assert!(msg.contains("1 node(s) didn't have free ports for the requested pod ports"), "{msg}");
    // Inter-pod affinity: next to the pod labelled app=web (by hostname).
    c.pod_with("web", json!({"labels": {"app": "web"}}), json!({"nodeSelector": {"zone": "b"}})).await;
    assert_eq!(c.bound("web").await, "big");
    c.pod(
        "near-web",
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}}),
    )
    .await;
    assert_eq!(c.bound("near-web").await, "big");
    // Anti-affinity by zone: one per zone among the three schedulable nodes, the fourth cannot go anywhere.
    let anti = json!({
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "spread"}}, "topologyKey": "zone"}]}}});
    let mut zones = Vec::new();
    for i in 0..3 {
        let name = format!("anti-{i}");
        c.pod_with(&name, json!({"labels": {"app": "spread"}}), anti.clone()).await;
        zones.push(c.bound(&name).await);
    }
    zones.sort();
    assert_eq!(zones, vec!["big", "gpu", "ssd"]);
    c.pod_with("anti-3", json!({"labels": {"app": "spread"}}), anti).await;
    let msg = c.unschedulable_message("anti-3").await;
    assert!(msg.starts_with("0/5 nodes are available:"), "{msg}");
    assert!(msg.contains("3 node(s) didn't satisfy existing pods anti-affinity rules"), "{msg}");
    assert!(msg.contains("1 node(s) were unschedulable"), "{msg}");
    assert!(msg.contains("1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }"), "{msg}");
    // The example message from upstream's docs: insufficient cpu and affinity misses, counted per node.
    c.pod(
        "too-big",
        json!({
            "nodeSelector": {"disk": "hdd"},
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100"}}}],
        }),
    )
    .await;
    let msg = c.unschedulable_message("too-big").await;
    assert!(
        msg.starts_with("0/5 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable, 2 Insufficient cpu."),
        "{msg}"
    );
    // Topology spread (DoNotSchedule, maxSkew 1 over zones a and b): alternate between them.
    let spread = json!({
        "nodeSelector": {"disk": "ssd"},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "zonal"}}}]});
    c.pod_with("zonal-0", json!({"labels": {"app": "zonal"}}), spread.clone()).await;
    assert_eq!(c.bound("zonal-0").await, "ssd");
    let mut spread_any_zone = spread.clone();
    spread_any_zone["nodeSelector"] = json!({});
    spread_any_zone["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}});
    c.pod_with("zonal-1", json!({"labels": {"app": "zonal"}}), spread_any_zone.clone()).await;
    assert_eq!(c.bound("zonal-1").await, "big", "zone a already has one; skew would be 2");
    // Events: FailedScheduling for the pending pod and Scheduled for the placed ones, as kubectl shows them.
    let events = c.cp.apiserver.kubectl("1.33", &["get", "events", "--field-selector", "involvedObject.name=too-big"]);
    assert!(integration::stdout(&events).contains("FailedScheduling"), "{}", integration::text(&events));
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let scheduled = events.list(&ListParams::default()).await.unwrap();
    assert!(
        scheduled.items.iter().any(|e| e.reason.as_deref() == Some("Scheduled")
            && e.message.as_deref() == Some("Successfully assigned default/wants-ssd to ssd")),
        "no Scheduled event"
    );
    more_filters(&c).await;
    drop(sched);
}

/// The rest of NodeResourcesFit (memory, ephemeral-storage, the pod count), user
/// taints (NoSchedule, NoExecute), a node whose Ready condition is Unknown, and a
/// node change waking an unschedulable pod. Each pair of nodes shares a `pair`
/// label: the constrained node is out, the other takes the pod.
async fn more_filters(c: &Cluster) {
    let host = |n: &str| json!({"kubernetes.io/hostname": n});
    let with = |pair: &str, n: &str| json!({"pair": pair, "kubernetes.io/hostname": n});
    let storage = |size: &str| json!({"status": {"allocatable": {"ephemeral-storage": size}, "capacity": {"ephemeral-storage": size}}});
    c.node("mem-small", "64", "1Gi", with("mem", "mem-small"), json!({})).await;
    c.node("mem-big", "64", "64Gi", with("mem", "mem-big"), json!({})).await;
    c.node("disk-small", "64", "64Gi", with("disk", "disk-small"), storage("1Gi")).await;
    c.node("disk-big", "64", "64Gi", with("disk", "disk-big"), storage("100Gi")).await;
    let pods = |n: &str| json!({"status": {"allocatable": {"pods": n}, "capacity": {"pods": n}}});
    c.node("pods-full", "64", "64Gi", with("pods", "pods-full"), pods("1")).await;
    c.node("pods-free", "64", "64Gi", with("pods", "pods-free"), pods("10")).await;
    c.pod("fills-pods-full", json!({"nodeName": "pods-full"})).await;
    c.node(
        "user-taint",
        "64",
        "64Gi",
        with("taint", "user-taint"),
        json!({"spec": {"taints": [{"key": "team", "value": "x", "effect": "NoSchedule"}]}}),
    )
    .await;
    c.node(
        "evicting",
        "64",
        "64Gi",
        with("taint", "evicting"),
        json!({"spec": {"taints": [{"key": "maintenance", "effect": "NoExecute"}]}}),
    )
    .await;
    c.node(
        "unknown",
        "64",
        "64Gi",
        with("taint", "unknown"),
        json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}]}}),
    )
    .await;
    c.node("clean", "64", "64Gi", with("taint", "clean"), json!({})).await;
    let requests = |r: Value| json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": r}}]});
    let cases = [
        ("mem", requests(json!({"memory": "2Gi"})), "mem-big", "mem-small", "1 Insufficient memory"),
        (
            "disk",
            requests(json!({"ephemeral-storage": "2Gi"})),
            "disk-big",
            "disk-small",
            "1 Insufficient ephemeral-storage",
        ),
        ("pods", json!({}), "pods-free", "pods-full", "1 Too many pods"),
    ];
    for (pair, spec, fits, full, reason) in cases {
        let mut spec = spec;
        spec["nodeSelector"] = json!({"pair": pair});
        c.pod(&format!("{pair}-fits"), spec.clone()).await;
        assert_eq!(c.bound(&format!("{pair}-fits")).await, fits);
        spec["nodeSelector"] = host(full);
        c.pod(&format!("{pair}-full"), spec).await;
        let msg = c.unschedulable_message(&format!("{pair}-full")).await;
        assert!(msg.contains(reason), "{msg}");
    }
    // Three of the four taint-pair nodes are out: a user taint, a NoExecute taint, and Ready=Unknown (unreachable).
    for i in 0..3 {
        let name = format!("taint-{i}");
        c.pod(&name, json!({"nodeSelector": {"pair": "taint"}})).await;
        assert_eq!(c.bound(&name).await, "clean");
    }
    c.pod(
        "not-clean",
        json!({"nodeSelector": {"pair": "taint"}, "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["clean"]}]}]}}}}),
    )
    .await;
    let msg = c.unschedulable_message("not-clean").await;
    for taint in ["{team: x}", "{maintenance: }", "{node.kubernetes.io/unreachable: }"] {
        assert!(msg.contains(&format!("1 node(s) had untolerated taint {taint}")), "{taint}: {msg}");
    }
    // Tolerating the user taint is enough for that node.
    c.pod(
        "tolerates-team",
        json!({"nodeSelector": host("user-taint"), "tolerations": [{"key": "team", "operator": "Equal", "value": "x", "effect": "NoSchedule"}]}),
    )
    .await;
    assert_eq!(c.bound("tolerates-team").await, "user-taint");
    // A node change wakes an unschedulable pod: uncordoning the only node it may use.
    c.node("late", "4", "8Gi", host("late"), json!({"spec": {"unschedulable": true}})).await;
    c.pod("waits-for-late", json!({"nodeSelector": host("late")})).await;
    let msg = c.unschedulable_message("waits-for-late").await;
    // The filters run in upstream's order: both cordoned nodes (`cordoned` and `late`) fail NodeUnschedulable first.
    assert!(msg.contains("2 node(s) were unschedulable"), "{msg}");
    // Past its backoff, it waits in the unschedulable set for an event.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let patch = json!({"spec": {"unschedulable": false}});
    c.nodes().patch("late", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    let uncordoned = Instant::now();
    assert_eq!(c.bound("waits-for-late").await, "late");
    assert!(uncordoned.elapsed() < Duration::from_secs(3), "took {:?} after uncordon", uncordoned.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_decide_placement() {
    let c = Cluster::start().await;
    c.node("a", "4", "8Gi", json!({"topology.kubernetes.io/zone": "z1"}), json!({})).await;
    c.node("b", "4", "8Gi", json!({"topology.kubernetes.io/zone": "z2"}), json!({})).await;
    let _sched = c.scheduler(&["--leader-elect=false"]);
    let apply = |doc: &str| {
        let out = c.cp.apiserver.kubectl_stdin("1.33", &["apply", "-f", "-"], Some(doc));
        assert!(out.status.success(), "{}", integration::text(&out));
    };
    // A local volume pinned to node b through its node affinity.
    apply("apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: local-b\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  storageClassName: local\n  local: {path: /mnt/disk}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      - matchExpressions:\n        - {key: kubernetes.io/hostname, operator: In, values: [b]}\n");
    apply("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\n  namespace: default\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: local\n  volumeName: local-b\n  resources: {requests: {storage: 1Gi}}\n");
    // A zonal volume in z1.
    apply("apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: zonal\n  labels: {topology.kubernetes.io/zone: z1}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  hostPath: {path: /tmp/zonal}\n");
    apply("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: zonal\n  namespace: default\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: \"\"\n  volumeName: zonal\n  resources: {requests: {storage: 1Gi}}\n");
    apply("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: unbound\n  namespace: default\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n");
    // The labels kubectl-created nodes would have.
    for n in ["a", "b"] {
        let patch = json!({"metadata": {"labels": {"kubernetes.io/hostname": n}}});
        c.nodes().patch(n, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(patch)).await.unwrap();
    }
    let uses = |claim: &str| json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]});
    c.pod("on-local", uses("data")).await;
    assert_eq!(c.bound("on-local").await, "b");
    c.pod("on-zonal", uses("zonal")).await;
    assert_eq!(c.bound("on-zonal").await, "a");
    c.pod("no-claim", uses("nope")).await;
    let msg = c.unschedulable_message("no-claim").await;
    assert!(msg.starts_with("0/2 nodes are available: persistentvolumeclaim \"nope\" not found."), "{msg}");
    c.pod("waits", uses("unbound")).await;
    let msg = c.unschedulable_message("waits").await;
    assert!(msg.starts_with("0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims."), "{msg}");
    // Both volumes at once: no node is in z1 and is b.
    c.pod(
        "conflict",
        json!({"volumes": [
        {"name": "v1", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "v2", "persistentVolumeClaim": {"claimName": "zonal"}}]}),
    )
    .await;
    let msg = c.unschedulable_message("conflict").await;
    assert!(msg.contains("1 node(s) had volume node affinity conflict"), "{msg}");
    assert!(msg.contains("1 node(s) had no available volume zone"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_decide_placement() {
    let c = Cluster::start().await;
    c.node("a", "4", "8Gi", json!({"zone": "a", "kubernetes.io/hostname": "a"}), json!({})).await;
    c.node("b", "4", "8Gi", json!({"zone": "b", "kubernetes.io/hostname": "b"}), json!({})).await;
    let _sched = c.scheduler(&["--leader-elect=false"]);
    // Each preference below wins against NodeResourcesFit's least-allocated pull the other
    // way, so a broken score plugin fails here instead of passing by chance.
    let load = |node: &str, cpu: &str, memory: &str| {
        json!({"nodeName": node, "containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]})
    };
    // b starts a quarter full, so least-allocated prefers a.
    c.pod_with("load-b", json!({}), load("b", "1", "2Gi")).await;
    // Preferred node affinity.
    let prefer_b = json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}}]}}});
    c.pod("likes-b", prefer_b).await;
    assert_eq!(c.bound("likes-b").await, "b");
    // Least allocated: after a big pod on a, the next plain pod goes to b.
    c.pod_with("big-a", json!({}), load("a", "3", "6Gi")).await;
    c.pod("plain-1", cpu("100m")).await;
    assert_eq!(c.bound("plain-1").await, "b");
    // Preferred pod anti-affinity: away from app=noisy on b, although b is far less allocated.
    c.pod_with("noisy", json!({"labels": {"app": "noisy"}}), json!({"nodeName": "b"})).await;
    c.pod(
        "quiet",
        json!({"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
            "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "noisy"}}, "topologyKey": "kubernetes.io/hostname"}}]}}}),
    )
    .await;
    assert_eq!(c.bound("quiet").await, "a");
    // Preferred pod affinity: next to app=noisy, although b is now the more allocated.
    c.pod_with("big-b", json!({}), load("b", "2", "4Gi")).await;
    c.pod(
        "fan",
        json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
            "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "noisy"}}, "topologyKey": "kubernetes.io/hostname"}}]}}}),
    )
    .await;
    assert_eq!(c.bound("fan").await, "b");
    // Balanced allocation: with the pod, i is 75% used in cpu and memory, j 85% cpu and 62% memory.
    // Least-allocated alone slightly prefers j (26 against 25); balance decides for i.
    c.node("i", "4", "8Gi", json!({"zone": "i"}), json!({})).await;
    c.node("j", "4", "8Gi", json!({"zone": "j"}), json!({})).await;
    c.pod_with("load-i", json!({}), load("i", "2", "4Gi")).await;
    c.pod_with("load-j", json!({}), load("j", "2400m", "3Gi")).await;
    c.pod(
        "balanced",
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["i", "j"]}]}]}}},
            "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}),
    )
    .await;
    assert_eq!(c.bound("balanced").await, "i");
    // PreferNoSchedule taints push pods away.
    c.node(
        "c",
        "64",
        "64Gi",
        json!({"zone": "c"}),
        json!({"spec": {"taints": [{"key": "old", "effect": "PreferNoSchedule"}]}}),
    )
    .await;
    c.node("d", "64", "64Gi", json!({"zone": "d"}), json!({})).await;
    for i in 0..3 {
        let name = format!("avoid-taint-{i}");
        c.pod(
            &name,
            json!({"nodeSelector": {}, "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["c", "d"]}]}]}}}}),
        )
        .await;
        assert_eq!(c.bound(&name).await, "d");
    }
    // Image locality: a node that already has a large image attracts pods using it.
    c.node(
        "e",
        "64",
        "64Gi",
        json!({"zone": "e"}),
        json!({"status": {"images": [{"names": ["registry.local/huge:v1"], "sizeBytes": 2_000_000_000i64}]}}),
    )
    .await;
    c.node("f", "64", "64Gi", json!({"zone": "f"}), json!({})).await;
    let ef = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["e", "f"]}]}]}}});
    c.pod("huge", json!({"affinity": ef, "containers": [{"name": "c", "image": "registry.local/huge:v1"}]})).await;
    assert_eq!(c.bound("huge").await, "e");
    // Topology spread (ScheduleAnyway): pods of one app alternate between the two zones g and h.
    // g is half full, so least-allocated alone would put every pod on h.
    c.node("g", "64", "64Gi", json!({"zone": "g"}), json!({})).await;
    c.node("h", "64", "64Gi", json!({"zone": "h"}), json!({})).await;
    c.pod_with("load-g", json!({}), load("g", "32", "32Gi")).await;
    let gh = json!({
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["g", "h"]}]}]}}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": "soft"}}}]});
    let mut placed = BTreeMap::new();
    for i in 0..4 {
        let name = format!("soft-{i}");
        c.pod_with(&name, json!({"labels": {"app": "soft"}}), gh.clone()).await;
        *placed.entry(c.bound(&name).await).or_insert(0) += 1;
    }
    assert_eq!(placed.get("g"), Some(&2), "{placed:?}");
    assert_eq!(placed.get("h"), Some(&2), "{placed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pod_is_retried_when_a_node_fits() {
    let c = Cluster::start().await;
    c.node("small", "1", "1Gi", json!({}), json!({})).await;
    let (_sched, port) = c.scheduler_serving("system:kube-scheduler", "scheduler-token", &["--leader-elect=false"]);
    c.pod("needs-4", cpu("4")).await;
    let msg = c.unschedulable_message("needs-4").await;
    assert_eq!(msg, "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.");
    // Let it sit past the longest backoff: only the event may wake it, and it is not retried meanwhile.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let tried = attempts(port, "unschedulable").expect("metrics");
    assert!((1..=3).contains(&tried), "{tried} attempts while nothing changed: a busy loop");
    let added = std::time::Instant::now();
    c.node("large", "8", "8Gi", json!({}), json!({})).await;
    assert_eq!(c.bound("needs-4").await, "large");
    assert!(added.elapsed() < Duration::from_secs(3), "took {:?} after the node appeared", added.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_evicts_lower_priority_pods() {
    let c = Cluster::start().await;
    c.node("only", "2", "4Gi", json!({}), json!({})).await;
    c.cp.apiserver.kubectl("1.33", &["create", "priorityclass", "high", "--value=1000"]);
    let out = c.cp.apiserver.kubectl("1.33", &["create", "priorityclass", "low", "--value=10"]);
    assert!(out.status.success(), "{}", integration::text(&out));
    let _sched = c.scheduler(&["--leader-elect=false"]);
    let mut low = cpu("1500m");
    low["priorityClassName"] = json!("low");
    c.pod("victim", low).await;
    assert_eq!(c.bound("victim").await, "only");
    let mut high = cpu("1");
    high["priorityClassName"] = json!("high");
    c.pod("important", high).await;
    // The victim is deleted gracefully; with no kubelet, the test finishes the deletion as a kubelet would.
    let pods = c.pods();
    let terminating = eventually(WAIT, || {
        let p = futures::executor::block_on(pods.get("victim")).ok()?;
        p.metadata.deletion_timestamp.is_some().then_some(p)
    });
    let listing = c.cp.apiserver.kubectl(
        "1.33",
        &[
            "get",
            "pods",
            "-o",
            "custom-columns=N:.metadata.name,P:.spec.priority,NODE:.spec.nodeName,MSG:.status.conditions[0].message",
        ],
    );
    assert!(terminating.is_some(), "the lower-priority pod was not preempted: {}", integration::text(&listing));
    let nominated = c.pods().get("important").await.unwrap().status.and_then(|s| s.nominated_node_name);
    assert_eq!(nominated.as_deref(), Some("only"));
    c.pods().delete("victim", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    assert_eq!(c.bound("important").await, "only");
    // A pod that may not preempt says so.
    let mut polite = cpu("1500m");
    let out =
        c.cp.apiserver
            .kubectl("1.33", &["create", "priorityclass", "polite", "--value=1000", "--preemption-policy=Never"]);
    assert!(out.status.success(), "{}", integration::text(&out));
    polite["priorityClassName"] = json!("polite");
    c.pod("polite", polite).await;
    let msg = c.unschedulable_message("polite").await;
    assert!(msg.ends_with("preemption: not eligible due to preemptionPolicy=Never."), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_from_a_configuration_file() {
    let c = Cluster::start().await;
    for n in ["n1", "n2", "n3"] {
        c.node(n, "8", "16Gi", json!({}), json!({})).await;
    }
    let config = c.cp.apiserver.dir.path().join("scheduler.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nleaderElection:\n  leaderElect: false\nprofiles:\n- schedulerName: default-scheduler\n- schedulerName: bin-packer\n  plugins:\n    score:\n      disabled:\n      - name: NodeResourcesBalancedAllocation\n      - name: ImageLocality\n  pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: MostAllocated\n",
    )
    .unwrap();
    let _sched = c.scheduler(&[&format!("--config={}", config.display())]);
    let mut packed = Vec::new();
    for i in 0..4 {
        let name = format!("packed-{i}");
        let mut spec = cpu("1");
        spec["schedulerName"] = json!("bin-packer");
        c.pod(&name, spec).await;
        packed.push(c.bound(&name).await);
    }
    packed.dedup();
    assert_eq!(packed.len(), 1, "MostAllocated packs pods onto one node: {packed:?}");
    // A pod for another scheduler is left alone.
    let mut other = cpu("1");
    other["schedulerName"] = json!("someone-else");
    c.pod("not-mine", other).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = c.pods().get("not-mine").await.unwrap();
    assert!(p.spec.unwrap().node_name.is_none());
    // A bad configuration is a clear error that names the problem.
    let bad = c.cp.apiserver.dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: x\n  plugins:\n    score:\n      enabled:\n      - name: NoSuchPlugin\n").unwrap();
    let out = std::process::Command::new(integration::binary("kube-scheduler"))
        .arg(format!("--config={}", bad.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NoSuchPlugin"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(integration::binary("kube-scheduler")).arg("--no-such-flag").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_binds_every_pod_once() {
    let c = Cluster::start().await;
    for n in ["n1", "n2"] {
        c.node(n, "64", "64Gi", json!({}), json!({})).await;
    }
    let args =
        ["--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=1s"];
    let user = ("system:kube-scheduler", "scheduler-token");
    let (mut first, first_port) = c.scheduler_serving(user.0, user.1, &args);
    let (mut second, second_port) = c.scheduler_serving(user.0, user.1, &args);
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-system");
    let holder = eventually(WAIT, || {
        let l = futures::executor::block_on(leases.get("kube-scheduler")).ok()?;
        l.spec?.holder_identity
    })
    .expect("a leader");
    for i in 0..10 {
        c.pod(&format!("before-{i}"), json!({})).await;
    }
    for i in 0..10 {
        c.bound(&format!("before-{i}")).await;
    }
    // Kill whichever is leading; the other must take over within the lease duration.
    let first_leads = first.log().contains(&holder);
    assert!(
        first_leads || second.log().contains(&holder),
        "the holder {holder} is one of the two: {}\n{}",
        first.log(),
        second.log()
    );
    // Only the leader worked: every pod bound at its first try, and the standby tried nothing.
    let (leader_port, standby_port) = if first_leads { (first_port, second_port) } else { (second_port, first_port) };
    assert_eq!(eventually(WAIT, || attempts(leader_port, "scheduled").filter(|n| *n == 10)), Some(10));
    assert_eq!(attempts(leader_port, "error"), Some(0), "the leader's bindings failed");
    assert_eq!(all_attempts(standby_port), Some(0), "the standby scheduled while not leading");
    if first_leads {
        first.kill();
    } else {
        second.kill();
    }
    let killed_at = std::time::Instant::now();
    for i in 0..10 {
        c.pod(&format!("after-{i}"), json!({})).await;
    }
    for i in 0..10 {
        c.bound(&format!("after-{i}")).await;
    }
    assert!(killed_at.elapsed() < Duration::from_secs(12), "takeover took {:?}", killed_at.elapsed());
    let new_holder = leases.get("kube-scheduler").await.unwrap().spec.unwrap().holder_identity.unwrap();
    assert_ne!(new_holder, holder);
    assert!(first.running() != second.running());
    // The new leader bound the ten new pods, each at its first try (no conflicts with pods bound before).
    assert_eq!(eventually(WAIT, || attempts(standby_port, "scheduled").filter(|n| *n >= 10)), Some(10));
    assert_eq!(attempts(standby_port, "error"), Some(0), "bindings of the new leader failed (bound twice?)");
    assert_eq!(attempts(standby_port, "unschedulable"), Some(0));
    // Every pod was bound exactly once.
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let list = events.list(&ListParams::default()).await.unwrap();
    let mut scheduled: BTreeMap<String, usize> = BTreeMap::new();
    for e in list.items.iter().filter(|e| e.reason.as_deref() == Some("Scheduled")) {
        *scheduled.entry(e.involved_object.name.clone().unwrap_or_default()).or_default() += 1;
    }
    assert_eq!(scheduled.len(), 20, "{scheduled:?}");
    assert!(scheduled.values().all(|n| *n == 1), "{scheduled:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_endpoints() {
    let c = Cluster::start().await;
    c.node("n1", "4", "8Gi", json!({}), json!({})).await;
    let port = integration::free_port();
    let kubeconfig = c.cp.apiserver.token_kubeconfig("system:kube-scheduler", "scheduler-token").unwrap();
    let _sched =
        c.cp.apiserver
            .start_component(
                "kube-scheduler",
                &kubeconfig,
                &["--leader-elect=false", &format!("--secure-port={port}"), "--bind-address=127.0.0.1"],
            )
            .unwrap();
    c.pod("p", json!({})).await;
    c.bound("p").await;
    let get = |path: &str| {
        // /metrics needs a caller the apiserver authorizes (the admin is in system:masters).
        let out = std::process::Command::new("curl")
            .args(["-sk", "-H", "Authorization: Bearer admin", &format!("https://127.0.0.1:{port}{path}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(eventually(WAIT, || Some(get("/healthz")).filter(|s| s == "ok")).as_deref(), Some("ok"));
    let metrics =
        eventually(WAIT, || Some(get("/metrics")).filter(|m| m.contains("result=\"scheduled\""))).unwrap_or_default();
    assert!(metrics.contains("scheduler_schedule_attempts_total"), "{metrics}");
    assert!(metrics.contains("scheduler_pending_pods"), "{metrics}");
    assert!(metrics.contains("scheduler_scheduling_attempt_duration_seconds_bucket"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_errors_back_off_and_forget_the_assumption() {
    let c = Cluster::start().await;
    // Room for one of the pods below, not two.
    c.node("one", "1", "2Gi", json!({}), json!({})).await;
    c.scheduler_rights_without_binding("alice").await;
    let (sched, port) = c.scheduler_serving("alice", "alice-token", &["--leader-elect=false"]);
    c.pod("first", cpu("600m")).await;
    let first = eventually(WAIT, || attempts(port, "error").filter(|n| *n >= 1));
    assert!(first.is_some(), "no binding was refused: {}", sched.log());
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let grew = attempts(port, "error").unwrap() - first.unwrap_or(0);
    // Backoff 1 s, 2 s, 4 s: two or three more tries in 5 s, not hundreds.
    assert!((1..=4).contains(&grew), "{grew} refused bindings in {:?}", started.elapsed());
    assert_eq!(attempts(port, "scheduled"), Some(0));
    let rejected = c.events("first", "FailedScheduling").await;
    assert!(rejected.iter().any(|m| m.starts_with("Binding rejected: ")), "{rejected:?}");
    // The refused binding forgot `first`'s assumption: `second` fits the same node
    // and gets as far as its own binding (with the assumption kept, it would only ever be unschedulable).
    c.pod("second", cpu("600m")).await;
    let second = eventually(WAIT, || {
        let events = futures::executor::block_on(c.events("second", "FailedScheduling"));
        events.iter().any(|m| m.starts_with("Binding rejected: ")).then_some(())
    });
    assert!(second.is_some(), "second never reached binding: {:?}", c.events("second", "FailedScheduling").await);
    // With the right to bind, one of them binds after its backoff, and the other no longer fits.
    let binder: ClusterRole = serde_json::from_value(json!({"metadata": {"name": "pod-binder"},
        "rules": [{"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]}]}))
    .unwrap();
    Api::<ClusterRole>::all(c.client.clone()).create(&PostParams::default(), &binder).await.unwrap();
    c.bind_cluster_role("pod-binder", "alice").await;
    let pods = c.pods();
    let bound = eventually(WAIT, || {
        let node = |n: &str| futures::executor::block_on(pods.get(n)).ok()?.spec?.node_name;
        match (node("first"), node("second")) {
            (Some(_), None) => Some(("first", "second")),
            (None, Some(_)) => Some(("second", "first")),
            (Some(_), Some(_)) => panic!("both pods were bound to a node with room for one"),
            (None, None) => None,
        }
    });
    let (winner, loser) = bound.expect("no pod was bound after pods/binding was granted");
    assert_eq!(c.bound(winner).await, "one");
    let msg = c.unschedulable_message(loser).await;
    assert!(msg.starts_with("0/1 nodes are available: 1 Insufficient cpu."), "{msg}");
    drop(sched);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_pod_wakes_pods_waiting_for_it() {
    let c = Cluster::start().await;
    for n in ["n1", "n2"] {
        c.node(n, "4", "8Gi", json!({"kubernetes.io/hostname": n}), json!({})).await;
    }
    let (sched, port) = c.scheduler_serving("system:kube-scheduler", "scheduler-token", &["--leader-elect=false"]);
    c.pod(
        "near-web",
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}}),
    )
    .await;
    let msg = c.unschedulable_message("near-web").await;
    assert!(msg.starts_with("0/2 nodes are available: 2 node(s) didn't match pod affinity rules."), "{msg}");
    // A pod that waits for room, not for other pods: a bound pod must not wake it.
    c.pod("needs-cpu", cpu("16")).await;
    c.unschedulable_message("needs-cpu").await;
    // Past the backoffs: from here on only a cluster event retries either pod.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = attempts(port, "unschedulable").expect("metrics");
    // A web pod bound by someone else (nodeName set): upstream's AssignedPodAdd.
    c.pod_with("web", json!({"labels": {"app": "web"}}), json!({"nodeName": "n2"})).await;
    let added = Instant::now();
    assert_eq!(c.bound("near-web").await, "n2");
    assert!(added.elapsed() < Duration::from_secs(3), "took {:?} after the web pod was bound", added.elapsed());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(attempts(port, "unschedulable"), Some(before), "the pod waiting for cpu was retried: {}", sched.log());
    // A relabelled bound pod (AssignedPodUpdate) wakes a pod waiting for that label.
    c.pod(
        "near-db",
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}}),
    )
    .await;
    c.unschedulable_message("near-db").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let patch = json!({"metadata": {"labels": {"app": "db"}}});
    c.pods().patch("web", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    let relabelled = Instant::now();
    assert_eq!(c.bound("near-db").await, "n2");
    assert!(relabelled.elapsed() < Duration::from_secs(3), "took {:?} after the relabel", relabelled.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pods_are_retried_after_the_configured_duration() {
    let c = Cluster::start().await;
    c.node("small", "1", "1Gi", json!({}), json!({})).await;
    let (_sched, port) = c.scheduler_serving(
        "system:kube-scheduler",
        "scheduler-token",
        &["--leader-elect=false", "--pod-max-in-unschedulable-pods-duration=2s"],
    );
    c.pod("needs-4", cpu("4")).await;
    c.unschedulable_message("needs-4").await;
    // Nothing changes in the cluster; the pod is still retried every ~2 s (the default is 5 minutes).
    let retried = eventually(Duration::from_secs(12), || attempts(port, "unschedulable").filter(|n| *n >= 4));
    assert!(retried.is_some(), "attempts: {:?}", attempts(port, "unschedulable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_respects_disruption_budgets() {
    let c = Cluster::start().await;
    for n in ["p1", "p2"] {
        c.node(n, "2", "4Gi", json!({"kubernetes.io/hostname": n}), json!({})).await;
    }
    for (name, value) in [("high", "1000"), ("low", "10"), ("lowest", "5")] {
        let out = c.cp.apiserver.kubectl("1.33", &["create", "priorityclass", name, &format!("--value={value}")]);
        assert!(out.status.success(), "{}", integration::text(&out));
    }
    // Without the budget p1's victim would be the cheaper one (lower priority).
    let victim = |class: &str, node: &str| {
        let mut spec = cpu("1500m");
        spec["priorityClassName"] = json!(class);
        spec["nodeName"] = json!(node);
        spec
    };
    c.pod_with("protected", json!({"labels": {"app": "protected"}}), victim("lowest", "p1")).await;
    c.pod_with("unprotected", json!({"labels": {"app": "free"}}), victim("low", "p2")).await;
    // No controller-manager runs here: the budget's status stays as set.
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), "default");
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "keep"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "protected"}}}}))
    .unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let status = json!({"status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1,
        "expectedPods": 1, "observedGeneration": 1}});
    pdbs.patch_status("keep", &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
    let stored = pdbs.get_status("keep").await.unwrap().status.unwrap();
    assert_eq!((stored.disruptions_allowed, stored.current_healthy), (0, 1));
    let _sched = c.scheduler(&["--leader-elect=false"]);
    let mut high = cpu("1");
    high["priorityClassName"] = json!("high");
    c.pod("important", high).await;
    let pods = c.pods();
    let nominated =
        eventually(WAIT, || futures::executor::block_on(pods.get("important")).ok()?.status?.nominated_node_name);
    assert_eq!(nominated.as_deref(), Some("p2"));
    let evicted =
        eventually(WAIT, || futures::executor::block_on(pods.get("unprotected")).ok()?.metadata.deletion_timestamp);
    assert!(evicted.is_some(), "the unprotected victim was not evicted");
    let protected = c.pods().get("protected").await.unwrap();
    assert!(protected.metadata.deletion_timestamp.is_none(), "the pod its budget protects was evicted");
    let preempted = c.events("unprotected", "Preempted").await;
    assert!(preempted.iter().any(|m| m.ends_with("on node p2")), "{preempted:?}");
    c.pods()
        .delete("unprotected", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(c.bound("important").await, "p2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csi_volume_limits_decide_placement() {
    let c = Cluster::start().await;
    for n in ["v1", "v2"] {
        c.node(n, "8", "16Gi", json!({"kubernetes.io/hostname": n}), json!({})).await;
    }
    let apply = |doc: String| {
        let out = c.cp.apiserver.kubectl_stdin("1.33", &["apply", "-f", "-"], Some(&doc));
        assert!(out.status.success(), "{}", integration::text(&out));
    };
    // v1 attaches at most one volume of the driver; v2 two.
    for (node, count) in [("v1", 1), ("v2", 2)] {
        apply(format!("apiVersion: storage.k8s.io/v1\nkind: CSINode\nmetadata:\n  name: {node}\nspec:\n  drivers:\n  - name: csi.example.com\n    nodeID: {node}\n    allocatable: {{count: {count}}}\n"));
    }
    for v in ["a", "b", "c"] {
        apply(format!("apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: pv-{v}\nspec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  storageClassName: \"\"\n  csi: {{driver: csi.example.com, volumeHandle: vol-{v}}}\n"));
        apply(format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {v}\n  namespace: default\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: \"\"\n  volumeName: pv-{v}\n  resources: {{requests: {{storage: 1Gi}}}}\n"));
    }
    let _sched = c.scheduler(&["--leader-elect=false"]);
    let uses = |claims: &[&str], node: Option<&str>| {
        let volumes: Vec<Value> = claims
            .iter()
            .map(|cl| json!({"name": format!("v-{cl}"), "persistentVolumeClaim": {"claimName": cl}}))
            .collect();
        let mut spec = json!({"volumes": volumes});
        if let Some(n) = node {
            spec["nodeSelector"] = json!({"kubernetes.io/hostname": n});
        }
        spec
    };
    c.pod("first", uses(&["a"], Some("v1"))).await;
    assert_eq!(c.bound("first").await, "v1");
    // The same volume again counts once.
    c.pod("shares", uses(&["a"], Some("v1"))).await;
    assert_eq!(c.bound("shares").await, "v1");
    c.pod("over", uses(&["b"], Some("v1"))).await;
    let msg = c.unschedulable_message("over").await;
    assert!(msg.contains("1 node(s) exceed max volume count"), "{msg}");
    // Free to choose, a pod with two new volumes only fits v2.
    c.pod("two", uses(&["b", "c"], None)).await;
    assert_eq!(c.bound("two").await, "v2");
}
