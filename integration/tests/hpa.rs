//! The horizontal pod autoscaler (kube-controller-manager's
//! `horizontalpodautoscaling` controller) against the real apiserver's
//! autoscaling/v2 and metrics.k8s.io. First without a node: what the
//! controller reports and does when there are no metrics (a target scaled to
//! zero, a missing target, replicas outside min/max, metric APIs this
//! cluster does not serve). Then the whole cluster: a Deployment burning cpu
//! on a real kubelet and containerd scales up to the HPA's maximum and, once
//! idle, back down to its minimum.

use std::time::{Duration, Instant};

use integration::cluster::{Cluster, ClusterOptions};
use integration::{ControlPlane, KUBECTL_VERSIONS};
use serde_json::Value;

const NS: &str = "default";

/// Polls `check` every 300 ms for up to `limit`; panics with `what` and the last state otherwise.
#[track_caller]
fn until<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if start.elapsed() > limit => panic!("{what} did not happen within {limit:?}; last: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

fn get(cp_api: &integration::ApiServer, path: &str) -> Value {
    let (code, v) = cp_api.json("GET", path, None);
    assert_eq!(code, 200, "GET {path}: {v}");
    v
}

fn hpa(api: &integration::ApiServer, name: &str) -> Value {
    get(api, &format!("/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/{name}"))
}

/// The HPA's condition of `type_` as (status, reason, message).
fn condition(h: &Value, type_: &str) -> Option<(String, String, String)> {
    let c = h["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?;
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    Some((s("status"), s("reason"), s("message")))
}

/// Events about the HPA `name`: (type, reason, message).
fn events(api: &integration::ApiServer, name: &str) -> Vec<(String, String, String)> {
    let list = get(api, &format!("/api/v1/namespaces/{NS}/events"));
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["kind"] == "HorizontalPodAutoscaler" && e["involvedObject"]["name"] == name)
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("type"), s("reason"), s("message"))
        })
        .collect()
}

fn deployment_replicas(api: &integration::ApiServer, name: &str) -> i64 {
    get(api, &format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}"))["spec"]["replicas"].as_i64().unwrap_or(-1)
}

fn deployment(name: &str, replicas: i32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {NS}}}\n\
         spec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    \
         metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n      - name: c\n        \
         image: busybox\n        resources: {{requests: {{cpu: 50m}}}}\n"
    )
}

/// An autoscaling/v2 HPA for Deployment `target` with `metrics` (YAML flow sequence).
fn autoscaler(name: &str, target: &str, min: i32, max: i32, metrics: &str) -> String {
    format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: {name}, namespace: {NS}}}\n\
         spec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {target}}}\n  \
         minReplicas: {min}\n  maxReplicas: {max}\n  metrics: {metrics}\n"
    )
}

const CPU_50: &str = "[{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]";

/// No node and no metrics: only the controller-manager with the HPA controller, playing against
/// the apiserver's scale subresources, autoscaling/v2 and metrics.k8s.io.
#[test]
fn hpa_without_metrics_reports_upstream_conditions_and_enforces_min_and_max() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let kc = api.token_kubeconfig("system:kube-controller-manager", "controller-manager-token").unwrap();
    let kcm = api
        .start_component(
            "kube-controller-manager",
            &kc,
            &[
                "--leader-elect=false",
                "--secure-port=0",
                "--use-service-account-credentials=true",
                "--controllers=horizontalpodautoscaling",
                "--horizontal-pod-autoscaler-sync-period=1s",
            ],
        )
        .unwrap();
    let apply = |yaml: String| integration::ok(api.kubectl_stdin("1.33", &["apply", "-f", "-"], Some(&yaml)));
    for (name, replicas) in [("zero", 0), ("small", 1), ("big", 6), ("within", 2), ("custom", 2)] {
        apply(deployment(name, replicas));
    }
    apply(autoscaler("zero", "zero", 1, 5, CPU_50));
    apply(autoscaler("ghost", "missing", 1, 5, CPU_50));
    apply(autoscaler("small", "small", 2, 5, CPU_50));
    apply(autoscaler("big", "big", 1, 3, CPU_50));
    apply(autoscaler("within", "within", 1, 5, CPU_50));
    apply(autoscaler(
        "custom",
        "custom",
        1,
        5,
        "[{type: Pods, pods: {metric: {name: requests_per_second}, target: {type: AverageValue, averageValue: \"10\"}}}, \
         {type: External, external: {metric: {name: queue_depth}, target: {type: Value, value: \"30\"}}}, \
         {type: Object, object: {describedObject: {apiVersion: apps/v1, kind: Deployment, name: custom}, \
         metric: {name: hits}, target: {type: Value, value: \"5\"}}}]",
    ));
    let logs = || integration::cluster::tail(&kcm.log(), 30);

    // A target at zero replicas: autoscaling is off, nothing is scaled.
    let h = until(Duration::from_secs(30), "zero: ScalingDisabled", || {
        let h = hpa(api, "zero");
        match condition(&h, "ScalingActive") {
            Some((s, r, _)) if s == "False" && r == "ScalingDisabled" => Ok(h),
            _ => Err(format!("{}\n{}", h["status"], logs())),
        }
    });
    assert_eq!(condition(&h, "AbleToScale").map(|c| (c.0, c.1)), Some(("True".into(), "SucceededGetScale".into())));
    assert_eq!(h["status"]["currentReplicas"], 0, "{h}");
    assert_eq!(h["status"]["desiredReplicas"], 0, "{h}");
    assert!(h["status"]["lastScaleTime"].is_null(), "{h}");
    assert_eq!(deployment_replicas(api, "zero"), 0);

    // A target that does not exist.
    let (s, _, message) = until(Duration::from_secs(30), "ghost: FailedGetScale", || {
        let h = hpa(api, "ghost");
        match condition(&h, "AbleToScale") {
            Some(c) if c.1 == "FailedGetScale" => Ok(c),
            _ => Err(format!("{}\n{}", h["status"], logs())),
        }
    });
    assert_eq!(s, "False");
    assert!(message.starts_with("the HPA controller was unable to get the target's current scale: "), "{message}");
    assert!(message.contains("not found"), "{message}");
    until(Duration::from_secs(10), "ghost: a FailedGetScale event", || {
        let e = events(api, "ghost");
        e.iter().any(|e| e.0 == "Warning" && e.1 == "FailedGetScale").then_some(()).ok_or(format!("{e:?}"))
    });

    // Below minReplicas: raised to the minimum without any metric, as upstream does.
    until(Duration::from_secs(30), "small: scaled to 2", || {
        let n = deployment_replicas(api, "small");
        (n == 2).then_some(()).ok_or(format!("{n} replicas\n{}", logs()))
    });
    let h = until(Duration::from_secs(10), "small: status after the rescale", || {
        let h = hpa(api, "small");
        (h["status"]["desiredReplicas"] == 2).then(|| h.clone()).ok_or(format!("{}", h["status"]))
    });
    assert_eq!(h["status"]["currentReplicas"], 1, "the count the scale had before: {h}");
    assert!(h["status"]["lastScaleTime"].is_string(), "{h}");
    let e = events(api, "small");
    assert!(
        e.iter().any(|e| e.0 == "Normal"
            && e.1 == "SuccessfulRescale"
            && e.2 == "New size: 2; reason: Current number of replicas below Spec.MinReplicas"),
        "{e:?}"
    );

    // Above maxReplicas: lowered to the maximum.
    until(Duration::from_secs(30), "big: scaled to 3", || {
        let n = deployment_replicas(api, "big");
        (n == 3).then_some(()).ok_or(format!("{n} replicas\n{}", logs()))
    });
    let e = events(api, "big");
    assert!(
        e.iter().any(|e| e.1 == "SuccessfulRescale"
            && e.2 == "New size: 3; reason: Current number of replicas above Spec.MaxReplicas"),
        "{e:?}"
    );

    // Within range with a cpu metric, but no pod has metrics (nothing runs): no scaling, the failure reported.
    let (s, _, message) = until(Duration::from_secs(30), "within: FailedGetResourceMetric", || {
        let h = hpa(api, "within");
        match condition(&h, "ScalingActive") {
            Some(c) if c.1 == "FailedGetResourceMetric" => Ok(c),
            _ => Err(format!("{}\n{}", h["status"], logs())),
        }
    });
    assert_eq!(s, "False");
    assert!(
        message.starts_with("the HPA was unable to compute the replica count: failed to get cpu resource metric value: failed to get cpu utilization: unable to get metrics for resource cpu: "),
        "{message}"
    );
    let h = hpa(api, "within");
    assert_eq!(h["status"]["currentReplicas"], 2, "{h}");
    assert_eq!(deployment_replicas(api, "within"), 2);
    let e = events(api, "within");
    assert!(e.iter().any(|e| e.0 == "Warning" && e.1 == "FailedGetResourceMetric"), "{e:?}");
    assert!(
        e.iter().any(|e| e.1 == "FailedComputeMetricsReplicas"
            && e.2.starts_with(
                "invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value"
            )),
        "{e:?}"
    );

    // Pods, External and Object metrics need custom.metrics.k8s.io and external.metrics.k8s.io, which
    // this cluster does not serve: reported (the first failing metric's reason), never ignored.
    let (s, _, message) = until(Duration::from_secs(30), "custom: FailedGetPodsMetric", || {
        let h = hpa(api, "custom");
        match condition(&h, "ScalingActive") {
            Some(c) if c.1 == "FailedGetPodsMetric" => Ok(c),
            _ => Err(format!("{}\n{}", h["status"], logs())),
        }
    });
    assert_eq!(s, "False");
    assert!(
        message.contains("unable to get metric requests_per_second: unable to fetch metrics from custom metrics API"),
        "{message}"
    );
    let e = until(Duration::from_secs(10), "custom: one event per failing metric", || {
        let e = events(api, "custom");
        let has = |r: &str| e.iter().any(|e| e.0 == "Warning" && e.1 == r);
        (has("FailedGetPodsMetric") && has("FailedGetExternalMetric") && has("FailedGetObjectMetric"))
            .then(|| e.clone())
            .ok_or(format!("{e:?}"))
    });
    assert!(
        e.iter()
            .any(|e| e.1 == "FailedComputeMetricsReplicas" && e.2.starts_with("invalid metrics (3 invalid out of 3)")),
        "{e:?}"
    );
    assert_eq!(deployment_replicas(api, "custom"), 2);

    // Two HPAs over the same pods: neither scales them (upstream's AmbiguousSelector).
    apply(deployment("twin", 1));
    apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: twin-pod, namespace: default, labels: {app: twin}}\n\
         spec: {automountServiceAccountToken: false, containers: [{name: c, image: busybox}]}\n"
            .into(),
    );
    apply(autoscaler("twin-a", "twin", 1, 5, CPU_50));
    apply(autoscaler("twin-b", "twin", 1, 5, CPU_50));
    for name in ["twin-a", "twin-b"] {
        let (s, _, message) = until(Duration::from_secs(30), &format!("{name}: AmbiguousSelector"), || {
            let h = hpa(api, name);
            match condition(&h, "ScalingActive") {
                Some(c) if c.1 == "AmbiguousSelector" => Ok(c),
                _ => Err(format!("{}\n{}", h["status"], logs())),
            }
        });
        assert_eq!(s, "False");
        assert_eq!(
            message,
            "pods by selector app=twin are controlled by multiple HPAs: [default/twin-a default/twin-b]"
        );
    }
    integration::ok(api.kubectl("1.33", &["delete", "hpa", "twin-b"]));
    until(Duration::from_secs(30), "twin-a: unambiguous once twin-b is gone", || {
        let h = hpa(api, "twin-a");
        match condition(&h, "ScalingActive") {
            Some(c) if c.1 == "FailedGetResourceMetric" => Ok(()),
            _ => Err(format!("{}\n{}", h["status"], logs())),
        }
    });

    // kubectl describe shows the conditions and events, in both supported versions.
    for v in KUBECTL_VERSIONS {
        let out = integration::ok(api.kubectl(v, &["describe", "hpa", "zero"]));
        assert!(
            out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()[..].starts_with(&[
                "ScalingActive",
                "False",
                "ScalingDisabled"
            ])),
            "kubectl {v}: {out}"
        );
        let out = integration::ok(api.kubectl(v, &["describe", "hpa", "small"]));
        assert!(out.contains("SuccessfulRescale"), "kubectl {v}: {out}");
    }

    // A spec change is acted on at once: raising big's minimum scales it up.
    integration::ok(api.kubectl(
        "1.33",
        &["patch", "hpa", "big", "--type=merge", "-p", r#"{"spec":{"minReplicas":4,"maxReplicas":6}}"#],
    ));
    until(Duration::from_secs(30), "big: raised to the new minimum", || {
        let n = deployment_replicas(api, "big");
        (n == 4).then_some(()).ok_or(format!("{n} replicas\n{}", logs()))
    });
    let h = until(Duration::from_secs(10), "big: the status follows", || {
        let h = hpa(api, "big");
        (h["status"]["desiredReplicas"] == 4).then(|| h.clone()).ok_or(format!("{h}"))
    });
    assert_eq!(condition(&h, "AbleToScale").map(|c| c.1), Some("SucceededRescale".into()), "{h}");
}

/// The whole cluster: cpu burnt in real containers, measured by the kubelet, served by
/// metrics.k8s.io, scales the Deployment up to the maximum; idle, it comes back to the minimum.
#[test]
fn hpa_scales_a_cpu_burning_deployment_up_and_back_down() {
    // Inherited by the apiserver this test starts (its only reader): a sample every 2 s.
    std::env::set_var("RUSTKUBE_METRIC_RESOLUTION", "2s");
    let cluster = Cluster::start(ClusterOptions {
        controller_manager_args: vec!["--horizontal-pod-autoscaler-sync-period=2s".into()],
        ..Default::default()
    })
    .unwrap();
    let api = &cluster.apiserver;
    let image = &cluster.host.image;
    // Each replica burns at most 100m (its limit): 200% of its 50m request, whatever the machine's load.
    let burn = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: burn, namespace: {NS}}}\n\
         spec:\n  replicas: 1\n  selector: {{matchLabels: {{app: burn}}}}\n  template:\n    \
         metadata: {{labels: {{app: burn}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        \
         image: {image}\n        command: [sh, -c, 'while :; do :; done']\n        \
         resources: {{requests: {{cpu: 50m}}, limits: {{cpu: 100m}}}}\n"
    );
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(&burn));
    let hpa_yaml = format!(
        "{}  behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n",
        autoscaler("burn", "burn", 1, 3, CPU_50)
    );
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(&hpa_yaml));
    let state = || {
        cluster.remember_pods();
        format!(
            "hpa: {}\nevents: {:?}\nkcm:\n{}\n{}",
            hpa(api, "burn")["status"],
            events(api, "burn"),
            integration::cluster::tail(&cluster.controller_manager.log(), 15),
            integration::text(&api.kubectl("1.33", &["get", "pods", "-o", "wide"]))
        )
    };

    // Up to the maximum.
    until(Duration::from_secs(180), "scaled up to 3", || {
        let n = deployment_replicas(api, "burn");
        (n == 3).then_some(()).ok_or(format!("{n} replicas\n{}", state()))
    });
    let h = hpa(api, "burn");
    let e = events(api, "burn");
    assert!(
        e.iter().any(|e| e.0 == "Normal"
            && e.1 == "SuccessfulRescale"
            && e.2 == "New size: 3; reason: cpu resource utilization (percentage of request) above target"),
        "{e:?}\n{h}"
    );
    let current = &h["status"]["currentMetrics"][0];
    assert_eq!(current["type"], "Resource", "{h}");
    assert_eq!(current["resource"]["name"], "cpu", "{h}");
    let utilization = current["resource"]["current"]["averageUtilization"].as_i64().unwrap_or(0);
    assert!(utilization > 50, "measured utilization {utilization}% is above the 50% target: {h}");
    assert!(current["resource"]["current"]["averageValue"].is_string(), "{h}");
    assert_eq!(
        condition(&h, "ScalingActive").map(|c| (c.0, c.1)),
        Some(("True".into(), "ValidMetricFound".into())),
        "{h}"
    );
    assert_eq!(condition(&h, "AbleToScale").map(|c| c.0), Some("True".into()), "{h}");
    assert!(h["status"]["lastScaleTime"].is_string(), "{h}");
    // Burning 200% of its request, three replicas want more than the maximum of 3.
    let h = until(Duration::from_secs(60), "ScalingLimited TooManyReplicas at the maximum", || {
        let h = hpa(api, "burn");
        match condition(&h, "ScalingLimited") {
            Some((s, r, _)) if s == "True" && r == "TooManyReplicas" && h["status"]["currentReplicas"] == 3 => Ok(h),
            _ => Err(state()),
        }
    });
    assert_eq!(h["status"]["currentReplicas"], 3, "{h}");
    assert_eq!(h["status"]["desiredReplicas"], 3, "{h}");

    // kubectl top shows the burning pods; kubectl get hpa the measured target.
    let out = until(Duration::from_secs(60), "kubectl top pod lists the pods", || {
        let o = api.kubectl("1.33", &["top", "pod", "-l", "app=burn", "--no-headers"]);
        let out = integration::stdout(&o);
        (o.status.success() && out.lines().filter(|l| l.starts_with("burn-")).count() >= 1)
            .then(|| out.clone())
            .ok_or(integration::text(&o))
    });
    eprintln!("kubectl top pod:\n{out}");
    for v in KUBECTL_VERSIONS {
        let out = integration::ok(api.kubectl(v, &["get", "hpa", "burn", "--no-headers"]));
        assert!(out.contains("Deployment/burn") && out.contains("/50%"), "kubectl {v}: {out}");
    }

    // Idle: back down to the minimum (no stabilization window).
    cluster.kubectl(&[
        "patch",
        "deployment",
        "burn",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/command","value":["sleep","3600"]}]"#,
    ]);
    until(Duration::from_secs(240), "scaled back down to 1", || {
        let n = deployment_replicas(api, "burn");
        (n == 1).then_some(()).ok_or(format!("{n} replicas\n{}", state()))
    });
    let e = events(api, "burn");
    assert!(
        e.iter().any(|e| e.1 == "SuccessfulRescale" && e.2 == "New size: 1; reason: All metrics below target"),
        "{e:?}"
    );
    let h = until(Duration::from_secs(30), "status at the minimum", || {
        let h = hpa(api, "burn");
        let utilization = h["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"].as_i64();
        (h["status"]["currentReplicas"] == 1 && utilization.is_some_and(|u| u < 50)).then(|| h.clone()).ok_or(state())
    });
    assert_eq!(condition(&h, "ScalingActive").map(|c| c.1), Some("ValidMetricFound".into()), "{h}");

    cluster.kubectl(&["delete", "hpa", "burn"]);
    cluster.kubectl(&["delete", "deployment", "burn"]);
    cluster.remember_pods();
    let start = Instant::now();
    while !cluster.kubectl(&["get", "pods", "-o", "name"]).trim().is_empty()
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(500));
    }
}
