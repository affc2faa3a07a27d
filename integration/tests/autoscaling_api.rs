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
