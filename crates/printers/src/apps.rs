//! Printers for the `apps` API group.

use jiff::Timestamp;
use serde_json::Value;

use crate::format::{
    age, array_at, bool_at, container_cells, format_label_selector, format_labels, get, int_at, label_selector_string,
    name, opt_int, str_at,
};
use crate::{col, wide, Printer, AGE, CONTAINERS, IMAGES, NAME};

pub(crate) fn printer(kind: &str) -> Option<&'static Printer> {
    Some(match kind {
        "Deployment" => &DEPLOYMENT,
        "ReplicaSet" => &REPLICA_SET,
        "StatefulSet" => &STATEFUL_SET,
        "DaemonSet" => &DAEMON_SET,
        "ControllerRevision" => &CONTROLLER_REVISION,
        _ => return None,
    })
}

/// `spec.replicas`, which defaulting sets to 1 when unset.
fn desired_replicas(obj: &Value) -> i64 {
    opt_int(obj, &["spec", "replicas"]).unwrap_or(1)
}

// === Deployment ===

static DEPLOYMENT: Printer = Printer::new(
    &[
        NAME,
        col("Ready", "string", "Number of the pod with ready state"),
        col(
            "Up-to-date",
            "string",
            "Total number of non-terminated pods targeted by this deployment that have the \
             desired template spec.",
        ),
        col(
            "Available",
            "string",
            "Total number of available pods (ready for at least minReadySeconds) targeted by \
             this deployment.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", "Label selector for pods."),
    ],
    deployment_cells,
);

fn deployment_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ready = int_at(obj, &["status", "readyReplicas"]);
    let [names, images] = container_cells(obj, &["spec", "template"]);
    // Upstream prints the bare selector string here, without "<none>".
    let selector = label_selector_string(get(obj, &["spec", "selector"])).unwrap_or_else(|()| "<invalid>".to_string());
    vec![
        name(obj),
        Value::from(format!("{ready}/{}", desired_replicas(obj))),
        Value::from(int_at(obj, &["status", "updatedReplicas"])),
        Value::from(int_at(obj, &["status", "availableReplicas"])),
        age(obj, now),
        names,
        images,
        Value::from(selector),
    ]
}

// === ReplicaSet ===

static REPLICA_SET: Printer = Printer::new(
    &[
        NAME,
        col("Desired", "integer", "Replicas is the number of desired replicas."),
        col("Current", "integer", "Replicas is the most recently observed number of replicas."),
        col("Ready", "integer", "The number of ready replicas for this replica set."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", "Selector is a label query over pods that should match the replica count."),
    ],
    replica_set_cells,
);

fn replica_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(obj, &["spec", "template"]);
    vec![
        name(obj),
        Value::from(desired_replicas(obj)),
        Value::from(int_at(obj, &["status", "replicas"])),
        Value::from(int_at(obj, &["status", "readyReplicas"])),
        age(obj, now),
        names,
        images,
        Value::from(format_label_selector(get(obj, &["spec", "selector"]))),
    ]
}

// === StatefulSet ===

static STATEFUL_SET: Printer = Printer::new(
    &[NAME, col("Ready", "string", "Number of the pod with ready state"), AGE, CONTAINERS, IMAGES],
    stateful_set_cells,
);

fn stateful_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ready = int_at(obj, &["status", "readyReplicas"]);
    let [names, images] = container_cells(obj, &["spec", "template"]);
    vec![name(obj), Value::from(format!("{ready}/{}", desired_replicas(obj))), age(obj, now), names, images]
}

// === DaemonSet ===

static DAEMON_SET: Printer = Printer::new(
    &[
        NAME,
        col("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
        col(
            "Current",
            "integer",
            "The number of nodes that are running at least 1 daemon pod and are supposed to \
             run the daemon pod.",
        ),
        col(
            "Ready",
            "integer",
            "The number of nodes that should be running the daemon pod and have one or more of \
             the daemon pod running and ready.",
        ),
        col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
        col(
            "Available",
            "integer",
            "The number of nodes that should be running the daemon pod and have one or more of \
             the daemon pod running and available.",
        ),
        col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", "A label query over pods that are managed by the daemon set."),
    ],
    daemon_set_cells,
);

fn daemon_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let status = |key: &str| Value::from(int_at(obj, &["status", key]));
    let [names, images] = container_cells(obj, &["spec", "template"]);
    vec![
        name(obj),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        Value::from(format_labels(get(obj, &["spec", "template", "spec", "nodeSelector"]))),
        age(obj, now),
        names,
        images,
        Value::from(format_label_selector(get(obj, &["spec", "selector"]))),
    ]
}

// === ControllerRevision ===

static CONTROLLER_REVISION: Printer = Printer::new(
    &[
        NAME,
        col("Controller", "string", "Controller of the object"),
        col("Revision", "string", "Revision indicates the revision of the state represented by Data."),
        AGE,
    ],
    controller_revision_cells,
);

fn controller_revision_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(obj), Value::from(controller_of(obj)), Value::from(int_at(obj, &["revision"])), age(obj, now)]
}

/// The controlling owner as `kind.group/name` (lower-cased kind and group),
/// or `"<none>"`.
fn controller_of(obj: &Value) -> String {
    let Some(owner) = array_at(obj, &["metadata", "ownerReferences"]).iter().find(|r| bool_at(r, &["controller"]))
    else {
        return "<none>".to_string();
    };
    let api_version = str_at(owner, &["apiVersion"]);
    let group = api_version.split_once('/').map(|(group, _)| group).unwrap_or("");
    let kind = str_at(owner, &["kind"]);
    let owner_name = str_at(owner, &["name"]);
    let group_kind = match (kind, group) {
        ("", "") => return owner_name.to_string(),
        (kind, "") => kind.to_string(),
        (kind, group) => format!("{kind}.{group}"),
    };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::TablePrinter;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn cells(kind: &str, obj: &Value) -> Vec<Value> {
        printer(kind).unwrap().cells(obj, now())
    }

    #[test]
    fn deployment_shows_ready_over_desired() {
        let deploy = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:45:00Z"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "nginx", "image": "nginx:1.27"},
                        {"name": "exporter", "image": "nginx-exporter:1.1"}
                    ]}
                }
            },
            "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2}
        });
        assert_eq!(
            cells("Deployment", &deploy),
            [
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("15m"),
                json!("nginx,exporter"),
                json!("nginx:1.27,nginx-exporter:1.1"),
                json!("app=web"),
            ]
        );
    }

    #[test]
    fn fresh_deployment_without_status_reads_zero() {
        let deploy = json!({
            "metadata": {"name": "api"},
            "spec": {"selector": {}, "template": {"spec": {"containers": []}}}
        });
        assert_eq!(
            cells("Deployment", &deploy),
            [json!("api"), json!("0/1"), json!(0), json!(0), json!("<unknown>"), json!(""), json!(""), json!("")]
        );
    }

    #[test]
    fn replica_set_and_stateful_set() {
        let rs = json!({
            "metadata": {"name": "web-7d4b9c", "creationTimestamp": "2024-05-01T11:45:00Z"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d4b9c"}},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}
            },
            "status": {"replicas": 3, "readyReplicas": 2}
        });
        assert_eq!(
            cells("ReplicaSet", &rs),
            [
                json!("web-7d4b9c"),
                json!(3),
                json!(3),
                json!(2),
                json!("15m"),
                json!("nginx"),
                json!("nginx:1.27"),
                json!("app=web,pod-template-hash=7d4b9c"),
            ]
        );
        let sts = json!({
            "metadata": {"name": "db"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}}},
            "status": {"readyReplicas": 2}
        });
        assert_eq!(
            cells("StatefulSet", &sts),
            [json!("db"), json!("2/2"), json!("<unknown>"), json!("pg"), json!("postgres:16")]
        );
    }

    #[test]
    fn daemon_set_counts_and_node_selector() {
        let ds = json!({
            "metadata": {"name": "kube-proxy"},
            "spec": {
                "selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                "template": {"spec": {
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [{"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.33.1"}]
                }}
            },
            "status": {
                "desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                "updatedNumberScheduled": 3, "numberAvailable": 2
            }
        });
        assert_eq!(
            cells("DaemonSet", &ds),
            [
                json!("kube-proxy"),
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("kubernetes.io/os=linux"),
                json!("<unknown>"),
                json!("kube-proxy"),
                json!("registry.k8s.io/kube-proxy:v1.33.1"),
                json!("k8s-app=kube-proxy"),
            ]
        );
    }

    #[test]
    fn controller_revision_names_its_controller() {
        let rev = json!({
            "metadata": {
                "name": "web-6c8f",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Pod", "name": "other"},
                    {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}
                ]
            },
            "revision": 4
        });
        assert_eq!(
            cells("ControllerRevision", &rev)[..3],
            [json!("web-6c8f"), json!("statefulset.apps/web"), json!(4)]
        );
        let orphan = json!({"metadata": {"name": "r"}, "revision": 1});
        assert_eq!(cells("ControllerRevision", &orphan)[1], json!("<none>"));
    }
}
