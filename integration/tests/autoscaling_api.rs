//! HorizontalPodAutoscalers through the real kube-apiserver on real etcd with
//! stock kubectl 1.33 and 1.32: autoscaling/v2 stored, autoscaling/v1 served by
//! conversion.

use integration::{fails, ok, ControlPlane};
use serde_json::{json, Value};

const HPAS: &str = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";

fn v2_hpa(name: &str) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 6,
        }
    })
}

#[test]
fn v2_objects_are_defaulted_validated_and_printed() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let (code, created) = api.json("POST", HPAS, Some(&v2_hpa("plain")));
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["apiVersion"], "autoscaling/v2");
    assert_eq!(
        created["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])
    );
    assert!(created.get("status").is_none_or(|s| s.get("currentReplicas").is_none()), "{created}");

    // Behavior given partly is completed with upstream's defaults.
    let mut with_behavior = v2_hpa("behaved");
    with_behavior["spec"]["behavior"] =
        json!({"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}});
    let (code, created) = api.json("POST", HPAS, Some(&with_behavior));
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["spec"]["behavior"]["scaleUp"],
        json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]})
    );
    assert_eq!(created["spec"]["behavior"]["scaleDown"]["selectPolicy"], "Max");

    // Invalid objects: 422 naming the field.
    let mut bad = v2_hpa("bad");
    bad["spec"]["minReplicas"] = json!(5);
    bad["spec"]["maxReplicas"] = json!(3);
    bad["spec"]["scaleTargetRef"]["name"] = json!("");
    let (code, status) = api.json("POST", HPAS, Some(&bad));
    assert_eq!(code, 422, "{status}");
    let causes: Vec<&str> =
        status["details"]["causes"].as_array().unwrap().iter().filter_map(|c| c["field"].as_str()).collect();
    assert!(causes.contains(&"spec.maxReplicas") && causes.contains(&"spec.scaleTargetRef.name"), "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("spec.maxReplicas: Invalid value: 3: must be greater than or equal to `minReplicas`"),
        "{status}"
    );
    let mut bad = v2_hpa("bad");
    bad["spec"]["metrics"] = json!([{"type": "Pods", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]);
    let (code, status) = api.json("POST", HPAS, Some(&bad));
    assert_eq!(code, 422, "{status}");
    assert!(status["message"].as_str().unwrap().contains("spec.metrics[0].pods: Required value"), "{status}");

    // Status is written through /status only.
    let (code, _) = api.json(
        "PATCH",
        &format!("{HPAS}/plain/status"),
        Some(&json!({"status": {"currentReplicas": 3, "desiredReplicas": 3, "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45, "averageValue": "45m"}}}]}})),
    );
    assert_eq!(code, 200);
    let (_, got) = api.json("GET", &format!("{HPAS}/plain"), None);
    assert_eq!(got["status"]["currentReplicas"], 3);

    for v in integration::KUBECTL_VERSIONS {
        let table = ok(api.kubectl(v, &["get", "hpa"]));
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header, ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"], "{table}");
        let row = table.lines().find(|l| l.starts_with("plain ")).unwrap_or_default().to_string();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[..7], ["plain", "Deployment/web", "cpu:", "45%/80%", "2", "6", "3"], "{table}");
        let row = table.lines().find(|l| l.starts_with("behaved ")).unwrap_or_default();
        assert!(row.contains("cpu: <unknown>/80%"), "{table}");
        let err = fails(api.kubectl(v, &["get", "hpa", "missing"]));
        assert!(err.contains("horizontalpodautoscalers.autoscaling \"missing\" not found"), "{err}");
    }
}

const V1_HPAS: &str = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers";

#[test]
fn kubectl_autoscale_describe_and_explain_with_both_kubectl_versions() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    for (v, wire) in [("1.33", "/apis/autoscaling/v2/"), ("1.32", "/apis/autoscaling/v1/")] {
        let name = format!("web{}", v.replace('.', ""));
        ok(api.kubectl(v, &["create", "deployment", &name, "--image=nginx:1.25"]));
        let out = api.kubectl(v, &["-v=6", "autoscale", "deployment", &name, "--min=2", "--max=5", "--cpu-percent=60"]);
        let log = integration::text(&out);
        assert!(out.status.success(), "{log}");
        assert!(
            log.lines().any(|l| l.contains("POST") && l.contains(wire) && l.contains("horizontalpodautoscalers")),
            "kubectl {v} should create through {wire}: {log}"
        );
        // The full resource name keeps the version (kubectl's short-name expansion falls back to the preferred one).
        let v1: Value = serde_json::from_str(&ok(
            api.kubectl(v, &["get", "horizontalpodautoscalers.v1.autoscaling", &name, "-o", "json"])
        ))
        .unwrap();
        assert_eq!(v1["apiVersion"], "autoscaling/v1", "{v1}");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60, "{v1}");
        assert_eq!((&v1["spec"]["minReplicas"], &v1["spec"]["maxReplicas"]), (&json!(2), &json!(5)));
        assert_eq!(v1["spec"]["scaleTargetRef"], json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": name}));
        let v2: Value = serde_json::from_str(&ok(
            api.kubectl(v, &["get", "horizontalpodautoscalers.v2.autoscaling", &name, "-o", "json"])
        ))
        .unwrap();
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}])
        );
        assert_eq!(v1["metadata"]["resourceVersion"], v2["metadata"]["resourceVersion"], "one stored object");

        let table = ok(api.kubectl(v, &["get", "hpa", &name]));
        let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
        assert_eq!(
            row[..7],
            [name.as_str(), &format!("Deployment/{name}"), "cpu:", "<unknown>/60%", "2", "5", "0"],
            "{table}"
        );
        let all = ok(api.kubectl(v, &["get", "all", "-o", "name"]));
        assert!(all.contains(&format!("horizontalpodautoscaler.autoscaling/{name}")), "{all}");

        let described = ok(api.kubectl(v, &["describe", "hpa", &name]));
        for needle in ["Name:", "Reference:", &format!("Deployment/{name}"), "Min replicas:", "Max replicas:", "60%"] {
            assert!(described.contains(needle), "describe lacks {needle}: {described}");
        }
        let explain = ok(api.kubectl(v, &["explain", "hpa.spec.metrics"]));
        assert!(
            explain.contains("autoscaling") && explain.contains("MetricSpec") && explain.contains("type"),
            "{explain}"
        );
        let explain = ok(api.kubectl(v, &["explain", "horizontalpodautoscalers.spec", "--api-version=autoscaling/v1"]));
        assert!(explain.contains("targetCPUUtilizationPercentage"), "{explain}");
        ok(api.kubectl(v, &["delete", "hpa", &name]));
        let err = fails(api.kubectl(v, &["get", "horizontalpodautoscalers.v1.autoscaling", &name]));
        assert!(err.contains("not found"), "{err}");
    }
    // Both versions are discovered, v2 preferred.
    let (_, group) = api.json("GET", "/apis/autoscaling", None);
    assert_eq!(group["preferredVersion"]["version"], "v2", "{group}");
    let versions: Vec<&str> =
        group["versions"].as_array().unwrap().iter().filter_map(|v| v["version"].as_str()).collect();
    assert_eq!(versions, ["v2", "v1"]);
    let (_, list) = api.json("GET", "/apis/autoscaling/v1", None);
    let names: Vec<&str> = list["resources"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["horizontalpodautoscalers", "horizontalpodautoscalers/status"], "{list}");
    let (code, index) = api.json("GET", "/openapi/v3", None);
    assert_eq!(code, 200);
    for gv in ["apis/autoscaling/v1", "apis/autoscaling/v2"] {
        assert!(index["paths"].get(gv).is_some(), "{index}");
    }
}

#[test]
fn v2_only_content_survives_a_v1_round_trip() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let mut hpa = v2_hpa("mixed");
    hpa["spec"]["metrics"] = json!([
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}
    ]);
    hpa["spec"]["behavior"] = json!({"scaleDown": {"stabilizationWindowSeconds": 120, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}});
    let (code, created) = api.json("POST", HPAS, Some(&hpa));
    assert_eq!(code, 201, "{created}");
    let (code, _) = api.json(
        "PUT",
        &format!("{HPAS}/mixed/status"),
        Some(&{
            let mut s = created.clone();
            s["status"] = json!({"currentReplicas": 2, "desiredReplicas": 2,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "50Mi"}}},
                                   {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 30, "averageValue": "30m"}}}],
                "conditions": [{"type": "ScalingActive", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "ValidMetricFound", "message": "ok"}]});
            s
        }),
    );
    assert_eq!(code, 200);
    let (_, stored) = api.json("GET", &format!("{HPAS}/mixed"), None);

    // Read at v1: cpu in v1's fields, the rest in upstream's annotations.
    let (code, v1) = api.json("GET", &format!("{V1_HPAS}/mixed"), None);
    assert_eq!(code, 200, "{v1}");
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
    assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 30);
    let annotations = &v1["metadata"]["annotations"];
    for key in [
        "autoscaling.alpha.kubernetes.io/metrics",
        "autoscaling.alpha.kubernetes.io/behavior",
        "autoscaling.alpha.kubernetes.io/conditions",
        "autoscaling.alpha.kubernetes.io/current-metrics",
    ] {
        assert!(annotations[key].is_string(), "{key} missing: {v1}");
    }
    assert!(v1["spec"].get("metrics").is_none() && v1["spec"].get("behavior").is_none(), "{v1}");

    // Written back at v1 with a change: v2 keeps memory, behavior and the status.
    let mut edited = v1.clone();
    edited["spec"]["maxReplicas"] = json!(9);
    let (code, answer) = api.json("PUT", &format!("{V1_HPAS}/mixed"), Some(&edited));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["apiVersion"], "autoscaling/v1");
    assert_eq!(answer["spec"]["maxReplicas"], 9);
    let (_, now) = api.json("GET", &format!("{HPAS}/mixed"), None);
    assert_eq!(now["spec"]["maxReplicas"], 9);
    assert_eq!(now["spec"]["metrics"], stored["spec"]["metrics"], "{now}");
    assert_eq!(now["spec"]["behavior"], stored["spec"]["behavior"], "{now}");
    assert_eq!(now["status"], stored["status"], "{now}");
    assert!(now["metadata"].get("annotations").is_none(), "annotations are not stored: {now}");

    // A merge patch at v1 and a replace by kubectl 1.32 of the v1 YAML keep them too.
    let (code, patched) =
        api.json("PATCH", &format!("{V1_HPAS}/mixed"), Some(&json!({"spec": {"targetCPUUtilizationPercentage": 70}})));
    assert_eq!(code, 200, "{patched}");
    let yaml = ok(api.kubectl("1.32", &["get", "horizontalpodautoscalers.v1.autoscaling", "mixed", "-o", "yaml"]));
    let yaml = yaml.replace("minReplicas: 2", "minReplicas: 3");
    ok(api.kubectl_stdin("1.32", &["replace", "-f", "-"], Some(&yaml)));
    let (_, now) = api.json("GET", &format!("{HPAS}/mixed"), None);
    assert_eq!(now["spec"]["minReplicas"], 3);
    assert_eq!(
        now["spec"]["metrics"],
        json!([
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
        ])
    );
    assert_eq!(now["spec"]["behavior"], stored["spec"]["behavior"]);

    // Server-side apply at v1 creates, then changes, the one stored object.
    let applied = |max: i32| {
        format!(
            "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: applied\nspec:\n  \
             scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n  maxReplicas: {max}\n  \
             targetCPUUtilizationPercentage: 40\n"
        )
    };
    for max in [4, 7] {
        ok(api.kubectl_stdin("1.33", &["apply", "--server-side", "-f", "-"], Some(&applied(max))));
        let (_, now) = api.json("GET", &format!("{HPAS}/applied"), None);
        assert_eq!(now["spec"]["maxReplicas"], max, "{now}");
        assert_eq!(now["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 40, "{now}");
    }

    // Lists at v1 convert every item.
    let (_, list) = api.json("GET", V1_HPAS, None);
    assert_eq!((&list["kind"], &list["apiVersion"]), (&json!("HorizontalPodAutoscalerList"), &json!("autoscaling/v1")));
    let mixed = list["items"].as_array().unwrap().iter().find(|i| i["metadata"]["name"] == "mixed").unwrap();
    assert_eq!(mixed["spec"]["targetCPUUtilizationPercentage"], 70, "{list}");
    let (_, list) = api.json("GET", &format!("{V1_HPAS}?fieldSelector=metadata.name%3Dmixed"), None);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn invalid_v1_objects_are_rejected_with_field_paths() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let v1 = |min: i64, max: i64| {
        json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "bad"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": min, "maxReplicas": max,
                     "targetCPUUtilizationPercentage": 0}})
    };
    let (code, status) = api.json("POST", V1_HPAS, Some(&v1(0, 3)));
    assert_eq!(code, 422, "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("spec.minReplicas: Invalid value: 0: must be greater than or equal to 1"), "{message}");
    assert!(
        message
            .contains("spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0"),
        "{message}"
    );
    let (code, status) = api.json("POST", V1_HPAS, Some(&v1(4, 3)));
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["details"]["kind"], "HorizontalPodAutoscaler");
    // The wrong apiVersion for the URL is refused; strict field validation sees v1's fields.
    let mut wrong = v1(1, 3);
    wrong["apiVersion"] = json!("autoscaling/v2");
    let (code, _) = api.json("POST", V1_HPAS, Some(&wrong));
    assert_eq!(code, 400);
    let mut unknown = v1(1, 3);
    unknown["spec"]["targetCPUUtilizationPercentage"] = json!(50);
    unknown["spec"]["metrics"] = json!([{"type": "Resource"}]);
    let (code, body) = api
        .request(
            "POST",
            &format!("{V1_HPAS}?fieldValidation=Strict"),
            Some("application/json"),
            Some(unknown.to_string().as_bytes()),
        )
        .unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("unknown field \\\"spec.metrics\\\""), "{body}");
    let err =
        fails(api.kubectl_stdin("1.32", &["create", "-f", "-"], Some(&serde_json::to_string(&v1(4, 3)).unwrap())));
    assert!(err.contains("spec.maxReplicas"), "{err}");
}

#[test]
fn watches_at_either_version_see_the_same_changes() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let (code, created) = api.json("POST", HPAS, Some(&v2_hpa("watched")));
    assert_eq!(code, 201, "{created}");
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    // Live watchers at both versions, then a change at v2.
    let watch = |version: &str| {
        format!("/apis/autoscaling/{version}/namespaces/default/horizontalpodautoscalers?watch=1&resourceVersion={rv}&timeoutSeconds=3")
    };
    let (v1_path, v2_path) = (watch("v1"), watch("v2"));
    let (v1_events, v2_events) = std::thread::scope(|s| {
        let a = s.spawn(|| api.request("GET", &v1_path, None, None).unwrap());
        let b = s.spawn(|| api.request("GET", &v2_path, None, None).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(700));
        let (code, _) = api.json("PATCH", &format!("{HPAS}/watched"), Some(&json!({"spec": {"maxReplicas": 8}})));
        assert_eq!(code, 200);
        let (code, _) = api.json("DELETE", &format!("{V1_HPAS}/watched"), None);
        assert_eq!(code, 200);
        (a.join().unwrap(), b.join().unwrap())
    });
    let parse = |(code, body): (u16, String)| -> Vec<Value> {
        assert_eq!(code, 200, "{body}");
        body.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let v1_events = parse(v1_events);
    let v2_events = parse(v2_events);
    let kinds = |evs: &[Value]| -> Vec<(String, String, String)> {
        evs.iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or_default().to_string(),
                    e["object"]["apiVersion"].as_str().unwrap_or_default().to_string(),
                    e["object"]["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let (k1, k2) = (kinds(&v1_events), kinds(&v2_events));
    assert_eq!(k1.len(), 2, "{v1_events:?}");
    assert_eq!(k1.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), ["MODIFIED", "DELETED"]);
    assert!(k1.iter().all(|k| k.1 == "autoscaling/v1") && k2.iter().all(|k| k.1 == "autoscaling/v2"), "{k1:?} {k2:?}");
    let rvs = |k: &[(String, String, String)]| k.iter().map(|x| (x.0.clone(), x.2.clone())).collect::<Vec<_>>();
    assert_eq!(rvs(&k1), rvs(&k2), "both versions see the same events");
    assert_eq!(v1_events[0]["object"]["spec"]["maxReplicas"], 8);
    assert_eq!(v1_events[0]["object"]["spec"]["targetCPUUtilizationPercentage"], 80);

    // A watch from an old version at v1 replays the same history.
    let (code, body) =
        api.request("GET", &format!("{V1_HPAS}?watch=1&resourceVersion={rv}&timeoutSeconds=1"), None, None).unwrap();
    assert_eq!(code, 200);
    assert_eq!(rvs(&kinds(&parse((code, body)))), rvs(&k1));
}
