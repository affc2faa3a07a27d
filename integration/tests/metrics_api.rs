//! The resource metrics API (`metrics.k8s.io/v1beta1`) the apiserver serves
//! itself from its kubelets' `/metrics/resource`: real etcd, apiserver,
//! kubelet and containerd, a pod burning a core and an idle one, stock
//! `kubectl top` (1.33 and 1.32), the raw JSON in metrics-server's shape,
//! NotFound, RBAC, selectors, discovery and Tables.

use std::time::{Duration, Instant};

use integration::containerd::TEST_IMAGE;
use integration::node::{SingleNode, WAIT};
use integration::{fails, ok, text, KUBECTL_VERSIONS};
use serde_json::{json, Value};

/// The scrape interval the apiserver under test uses (the default is 15s).
const RESOLUTION: &str = "2s";

fn pod(name: &str, app: &str, node: &str, command: Option<&str>) -> Value {
    let mut c = json!({"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never"});
    if let Some(cmd) = command {
        c["command"] = json!(["sh", "-c", cmd]);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [c]},
    })
}

/// A quantity's value in thousandths of its unit (`1500m` → 1500, `987654321n` → 987, `4Ki` → 4_096_000);
/// panics on anything else (metrics-server's integers with a suffix).
fn milli(q: &str) -> i128 {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: i128 = num.parse().unwrap_or_else(|e| panic!("quantity {q:?}: {e}"));
    match suffix {
        "n" => n / 1_000_000,
        "u" => n / 1000,
        "m" => n,
        "" => n * 1000,
        "k" => n * 1_000_000,
        "Ki" => (n * 1000) << 10,
        "Mi" => (n * 1000) << 20,
        "Gi" => (n * 1000) << 30,
        _ => panic!("quantity {q:?}: unexpected suffix"),
    }
}

/// A Go duration of whole and fractional seconds (`15s`, `2.003s`, `1m0.5s`, `900ms`) in ms.
fn window_ms(w: &str) -> u128 {
    if let Some(ms) = w.strip_suffix("ms") {
        return ms.parse().unwrap_or_else(|e| panic!("window {w:?}: {e}"));
    }
    let (minutes, secs) = match w.split_once('m') {
        Some((m, s)) => (m.parse::<u128>().unwrap_or_else(|e| panic!("window {w:?}: {e}")), s),
        None => (0, w),
    };
    let secs: f64 = secs.strip_suffix('s').and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("window {w:?}"));
    minutes * 60_000 + (secs * 1000.0).round() as u128
}

/// `kubectl top pod --no-headers` rows as name → (cpu millicores, memory text).
fn top_rows(out: &str) -> Vec<(String, i128, String)> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [name, cpu, mem, ..] => Some((name.to_string(), milli(cpu), mem.to_string())),
                _ => None,
            }
        })
        .collect()
}

/// Polls `f` until it returns Some, for as long as a metrics scrape can take to settle.
fn until<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > WAIT => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_top_and_the_metrics_api_report_what_the_kubelet_measures() {
    // Inherited by the apiserver the harness starts (its only reader).
    std::env::set_var("RUSTKUBE_METRIC_RESOLUTION", RESOLUTION);
    let n = SingleNode::start(&[]).await;
    let api = &n.cp.apiserver;
    n.create_pod(pod("busy", "busy", "n1", Some("while :; do :; done"))).await;
    n.create_pod(pod("idle", "idle", "n1", None)).await;
    // Bound to a node that does not exist: a pod with no metrics.
    n.create_pod(pod("ghost", "ghost", "nowhere", None)).await;
    for name in ["busy", "idle"] {
        n.until(name, "Running", |p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).await;
    }

    // Discovery: kubectl top finds the API; api-resources lists both kinds.
    let out = ok(api.kubectl("1.33", &["api-resources", "--api-group=metrics.k8s.io", "--no-headers"]));
    assert!(out.lines().any(|l| l.starts_with("nodes ") && l.contains("NodeMetrics") && l.contains("false")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("pods ") && l.contains("PodMetrics") && l.contains("true")), "{out}");
    let (code, list) = api.json("GET", "/apis/metrics.k8s.io/v1beta1", None);
    assert_eq!(code, 200, "{list}");
    let verbs: Vec<&Value> = list["resources"].as_array().map(|r| r.iter().map(|r| &r["verbs"]).collect()).unwrap();
    assert_eq!(verbs, vec![&json!(["get", "list"]), &json!(["get", "list"])], "{list}");

    // kubectl top pod, both versions: the busy pod burns most of a core, the idle one nearly nothing.
    for v in KUBECTL_VERSIONS {
        let rows = until(&format!("kubectl {v} top pod"), || {
            let o = api.kubectl(v, &["top", "pod", "--no-headers"]);
            if !o.status.success() {
                return Err(text(&o));
            }
            let rows = top_rows(&integration::stdout(&o));
            let busy = rows.iter().find(|r| r.0 == "busy").map(|r| r.1).unwrap_or(0);
            if busy < 300 || rows.len() != 2 {
                return Err(format!("{rows:?}\n{}", n.logs_for_failure()));
            }
            Ok(rows)
        });
        eprintln!("kubectl {v} top pod: {rows:?}");
        let idle = rows.iter().find(|r| r.0 == "idle").unwrap_or_else(|| panic!("{rows:?}"));
        assert!(idle.1 < 50, "idle pod uses {}m: {rows:?}", idle.1);
        assert!(idle.2.ends_with("Mi") || idle.2.ends_with("Ki"), "{rows:?}");
        assert!(!rows.iter().any(|r| r.0 == "ghost"), "a pod without metrics is left out: {rows:?}");

        let out = ok(api.kubectl(v, &["top", "pod", "busy", "--containers", "--no-headers"]));
        let f: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(&f[..2], &["busy", "c"], "{out}");
        assert!(milli(f[2]) >= 300, "{out}");

        let out = ok(api.kubectl(v, &["top", "pod", "-l", "app=idle", "--no-headers"]));
        let names: Vec<String> = top_rows(&out).into_iter().map(|r| r.0).collect();
        assert_eq!(names, vec!["idle"], "{out}");

        let out = ok(api.kubectl(v, &["top", "node", "--no-headers"]));
        let f: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(f.first(), Some(&"n1"), "{out}");
        assert!(milli(f[1]) >= 300, "the node runs the busy pod: {out}");
        assert!(f[2].ends_with('%') && f[4].ends_with('%'), "{out}");

        let err = fails(api.kubectl(v, &["top", "pod", "ghost"]));
        assert!(err.contains("not available") || err.contains("not found"), "{err}");
    }

    // The raw object, in metrics-server's shape.
    let (code, m) = api.json("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/busy", None);
    assert_eq!(code, 200, "{m}");
    eprintln!("PodMetrics: {m}");
    assert_eq!((m["kind"].as_str(), m["apiVersion"].as_str()), (Some("PodMetrics"), Some("metrics.k8s.io/v1beta1")));
    assert_eq!(m["metadata"]["name"], "busy");
    assert_eq!(m["metadata"]["namespace"], "default");
    assert_eq!(m["metadata"]["labels"], json!({"app": "busy"}));
    assert!(m["metadata"]["creationTimestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{m}");
    let ts = m["timestamp"].as_str().unwrap_or_default();
    let ts: k8s_openapi::jiff::Timestamp = ts.parse().unwrap_or_else(|e| panic!("timestamp {ts:?}: {e}"));
    let age = k8s_openapi::jiff::Timestamp::now().as_second() - ts.as_second();
    assert!((0..30).contains(&age), "the metrics are fresh: {m}");
    let window = m["window"].as_str().unwrap_or_default();
    assert!((500..=10_000).contains(&window_ms(window)), "a window near the {RESOLUTION} resolution: {m}");
    assert_eq!(m["containers"].as_array().map(Vec::len), Some(1), "{m}");
    assert_eq!(m["containers"][0]["name"], "c");
    let cpu = m["containers"][0]["usage"]["cpu"].as_str().unwrap_or_default();
    assert!(milli(cpu) >= 300, "{m}");
    let memory = m["containers"][0]["usage"]["memory"].as_str().unwrap_or_default();
    assert!(milli(memory) > 0 && !memory.contains('.'), "{m}");

    let (code, node) = api.json("GET", "/apis/metrics.k8s.io/v1beta1/nodes/n1", None);
    assert_eq!(code, 200, "{node}");
    assert_eq!(node["kind"], "NodeMetrics");
    assert!(node["metadata"].get("namespace").is_none(), "{node}");
    assert!(milli(node["usage"]["cpu"].as_str().unwrap_or("0")) >= 300, "{node}");
    assert!(milli(node["usage"]["memory"].as_str().unwrap_or("0")) > 0, "{node}");

    // Lists: all namespaces, selectors; list items carry no kind, as metrics-server's.
    let (code, all) = api.json("GET", "/apis/metrics.k8s.io/v1beta1/pods", None);
    assert_eq!(code, 200, "{all}");
    assert_eq!(all["kind"], "PodMetricsList");
    let names = |l: &Value| -> Vec<String> {
        l["items"]
            .as_array()
            .map(|i| i.iter().filter_map(|x| x["metadata"]["name"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    assert_eq!(names(&all), vec!["busy", "idle"], "{all}");
    assert!(all["items"][0].get("kind").is_none(), "{all}");
    let (_, l) = api.json("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dbusy", None);
    assert_eq!(names(&l), vec!["busy"], "{l}");
    let (_, l) = api.json(
        "GET",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?fieldSelector=metadata.name%3Didle",
        None,
    );
    assert_eq!(names(&l), vec!["idle"], "{l}");
    let (_, l) = api.json("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/kube-system/pods", None);
    assert_eq!(names(&l), Vec::<String>::new(), "{l}");
    let (code, s) =
        api.json("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?fieldSelector=spec.nodeName%3Dn1", None);
    assert_eq!(code, 400, "{s}");

    // NotFound: no such pod, and a pod without metrics (metrics-server's wording).
    let (code, s) = api.json("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope", None);
    assert_eq!((code, s["kind"].as_str(), s["reason"].as_str()), (404, Some("Status"), Some("NotFound")), "{s}");
    let (code, s) = api.json("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/ghost", None);
    assert_eq!(code, 404, "{s}");
    assert_eq!(s["message"], "podmetrics.metrics.k8s.io \"default/ghost\" not found", "{s}");
    // Only get and list.
    let (code, s) = api.json("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?watch=true", None);
    assert_eq!((code, s["reason"].as_str()), (405, Some("MethodNotAllowed")), "{s}");
    let (code, _) = api.json("DELETE", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/busy", None);
    assert_eq!(code, 405);

    // kubectl get: metrics-server's Table columns.
    let out = ok(api.kubectl("1.33", &["get", "podmetrics", "busy"]));
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "CPU", "MEMORY", "WINDOW"], "{out}");
    let out = ok(api.kubectl("1.32", &["get", "nodes.metrics.k8s.io", "--no-headers"]));
    assert!(out.starts_with("n1 "), "{out}");
    let out = ok(api.kubectl("1.33", &["get", "nodemetrics", "--no-headers"]));
    assert!(out.starts_with("n1 "), "{out}");

    // OpenAPI: kubectl explain knows the kinds.
    for v in KUBECTL_VERSIONS {
        let out = ok(api.kubectl(v, &["explain", "podmetrics.containers"]));
        assert!(out.contains("PodMetrics") && out.contains("usage"), "{out}");
        let out = ok(api.kubectl(v, &["explain", "nodemetrics.usage"]));
        assert!(out.contains("NodeMetrics"), "{out}");
    }
    // YAML when asked.
    let (code, body, headers) = api
        .request_with_headers("GET", "/apis/metrics.k8s.io/v1beta1/nodes/n1", &["Accept: application/yaml"])
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 200, "{body}");
    assert!(headers.to_lowercase().contains("content-type: application/yaml"), "{headers}");
    assert!(body.contains("kind: NodeMetrics"), "{body}");

    // RBAC: metrics.k8s.io like any resource; view aggregates system:aggregated-metrics-reader.
    for v in KUBECTL_VERSIONS {
        let err = fails(api.kubectl_as(v, "alice-token", &["top", "pod"]));
        assert!(err.contains("forbidden") && err.contains("metrics.k8s.io"), "{err}");
    }
    let (code, s) = api.json(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        Some(&json!({"metadata": {"name": "alice-view"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]})),
    );
    assert_eq!(code, 201, "{s}");
    for v in KUBECTL_VERSIONS {
        let out = until("alice's kubectl top pod", || {
            let o = api.kubectl_as(v, "alice-token", &["top", "pod", "--no-headers"]);
            if o.status.success() {
                Ok(integration::stdout(&o))
            } else {
                Err(text(&o))
            }
        });
        assert_eq!(top_rows(&out).len(), 2, "{out}");
        // Namespaced view does not reach the cluster-scoped node metrics.
        let err = fails(api.kubectl_as(v, "alice-token", &["top", "node"]));
        assert!(err.contains("forbidden"), "{err}");
    }
}
