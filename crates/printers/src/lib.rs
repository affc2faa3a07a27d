//! Server-side printing: the `meta.k8s.io/v1` `Table` form of built-in
//! objects, what the apiserver answers to
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and what
//! `kubectl get` renders.
//!
//! Each built-in kind has a [`TablePrinter`] with upstream's columns and cell
//! formats (`pkg/printers/internalversion`), working on objects in their JSON
//! form. Like the upstream apiserver, every printer always emits the wide
//! (priority 1) cells too; clients hide them unless asked for `-o wide`.
//! Kinds without a printer get [`default_printer`]: Name and Created At.
#![forbid(unsafe_code)]

mod apps;
mod batch;
mod core;
mod duration;
mod format;
mod networking;
mod other;
mod storage;

use jiff::Timestamp;
use serde_json::{json, Map, Value};

pub use duration::{human_duration, human_signed_duration};

/// One column of a table (`metav1.TableColumnDefinition`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// Human-readable name, e.g. `"Ready"`; clients upper-case it.
    pub name: &'static str,
    /// OpenAPI type of the cells: `"string"`, `"integer"`, `"boolean"`,
    /// `"date"`, ...
    pub type_: &'static str,
    /// OpenAPI format; `"name"` marks the column holding the object name.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 is always shown; 1 only in wide output.
    pub priority: i32,
}

impl Column {
    /// The column as a `TableColumnDefinition` JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// Builds the columns and per-object cells of one kind's table.
pub trait TablePrinter: Send + Sync {
    /// Column definitions, wide ones included.
    fn columns(&self) -> &'static [Column];

    /// One cell per column for `obj`, relative to `now` for ages.
    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value>;

    /// `metav1.TableRowCondition`s for the row (pods report `Completed`).
    fn row_conditions(&self, _obj: &Value) -> Vec<Value> {
        Vec::new()
    }
}

/// The printer for a built-in kind; `group` is `""` for the core group.
/// `None` for kinds upstream prints with the default table (for example
/// LimitRange, Role, ClusterRole) and for kinds we do not know.
pub fn printer_for(group: &str, kind: &str) -> Option<&'static dyn TablePrinter> {
    let printer: &'static Printer = match group {
        "" | "core" => core::printer(kind)?,
        "apps" => apps::printer(kind)?,
        "batch" => batch::printer(kind)?,
        "networking.k8s.io" | "discovery.k8s.io" => networking::printer(group, kind)?,
        "storage.k8s.io" => storage::printer(kind)?,
        _ => other::printer(group, kind)?,
    };
    Some(printer)
}

/// The table for kinds without a printer: Name and Created At (an RFC 3339
/// UTC timestamp), as upstream's default table convertor prints them.
pub fn default_printer() -> &'static dyn TablePrinter {
    &DEFAULT
}

/// A complete `Table` for `objects` of one kind.
///
/// `list_meta` becomes the table's `metadata` (`resourceVersion`,
/// `continue`, `remainingItemCount`; pass `Value::Null` for none). Each
/// row's `object` is `include_object(obj)`: the object itself, its
/// `PartialObjectMetadata`, or `Value::Null` to leave `object` out. For
/// `noHeaders`, drop `columnDefinitions` from the result.
pub fn table(
    group: &str,
    kind: &str,
    objects: &[&Value],
    list_meta: Value,
    include_object: impl Fn(&Value) -> Value,
    now: Timestamp,
) -> Value {
    let printer = printer_for(group, kind).unwrap_or_else(default_printer);
    let metadata = match list_meta {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let columns: Vec<Value> = printer.columns().iter().map(Column::to_json).collect();
    let rows: Vec<Value> = objects.iter().map(|obj| row(printer, obj, include_object(obj), now)).collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// One `TableRow` for `obj`; `object` is left out when `Value::Null`.
pub fn row(printer: &dyn TablePrinter, obj: &Value, object: Value, now: Timestamp) -> Value {
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(printer.cells(obj, now)));
    let conditions = printer.row_conditions(obj);
    if !conditions.is_empty() {
        row.insert("conditions".into(), Value::Array(conditions));
    }
    if !object.is_null() {
        row.insert("object".into(), object);
    }
    Value::Object(row)
}

// === impl Printer ===

/// A printer built from a column list and plain functions; every built-in
/// kind is one of these.
pub(crate) struct Printer {
    columns: &'static [Column],
    cells: fn(&Value, Timestamp) -> Vec<Value>,
    conditions: Option<fn(&Value) -> Vec<Value>>,
}

impl Printer {
    pub(crate) const fn new(columns: &'static [Column], cells: fn(&Value, Timestamp) -> Vec<Value>) -> Self {
        Printer { columns, cells, conditions: None }
    }

    pub(crate) const fn with_conditions(mut self, conditions: fn(&Value) -> Vec<Value>) -> Self {
        self.conditions = Some(conditions);
        self
    }
}

impl TablePrinter for Printer {
    fn columns(&self) -> &'static [Column] {
        self.columns
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        (self.cells)(obj, now)
    }

    fn row_conditions(&self, obj: &Value) -> Vec<Value> {
        self.conditions.map(|f| f(obj)).unwrap_or_default()
    }
}

// === shared columns ===

pub(crate) const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required \
    when creating resources, although some resources may allow a client to request the \
    generation of an appropriate name automatically. Name is primarily intended for creation \
    idempotence and configuration definition. Cannot be updated. More info: \
    https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

pub(crate) const CREATION_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing \
    the server time when this object was created. It is not guaranteed to be set in \
    happens-before order across separate operations. Clients may not set this value. It is \
    represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for \
    lists. More info: \
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// A priority-0 column.
pub(crate) const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 0 }
}

/// A priority-1 (wide) column.
pub(crate) const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { priority: 1, ..col(name, type_, description) }
}

pub(crate) const NAME: Column =
    Column { name: "Name", type_: "string", format: "name", description: NAME_DESCRIPTION, priority: 0 };

pub(crate) const AGE: Column = col("Age", "string", CREATION_DESCRIPTION);

pub(crate) const CONTAINERS: Column = wide("Containers", "string", "Names of each container in the template.");

pub(crate) const IMAGES: Column = wide("Images", "string", "Images referenced by each container in the template.");

// === default printer ===

static DEFAULT: Printer = Printer::new(&[NAME, col("Created At", "date", CREATION_DESCRIPTION)], default_cells);

fn default_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    // Go prints an unset time as its zero value.
    let created = format::time_at(obj, &["metadata", "creationTimestamp"])
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
    vec![format::name(obj), Value::from(created)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn every_printer_has_a_name_column_and_matching_cell_counts() {
        let kinds = [
            ("", "Pod"),
            ("", "Node"),
            ("", "Namespace"),
            ("", "Service"),
            ("", "Endpoints"),
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "ServiceAccount"),
            ("", "Event"),
            ("", "ReplicationController"),
            ("", "ResourceQuota"),
            ("", "PersistentVolume"),
            ("", "PersistentVolumeClaim"),
            ("", "PodTemplate"),
            ("", "ComponentStatus"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("apps", "ControllerRevision"),
            ("batch", "Job"),
            ("batch", "CronJob"),
            ("coordination.k8s.io", "Lease"),
            ("coordination.k8s.io", "LeaseCandidate"),
            ("discovery.k8s.io", "EndpointSlice"),
            ("events.k8s.io", "Event"),
            ("networking.k8s.io", "NetworkPolicy"),
            ("networking.k8s.io", "Ingress"),
            ("networking.k8s.io", "IngressClass"),
            ("networking.k8s.io", "ServiceCIDR"),
            ("networking.k8s.io", "IPAddress"),
            ("policy", "PodDisruptionBudget"),
            ("scheduling.k8s.io", "PriorityClass"),
            ("storage.k8s.io", "StorageClass"),
            ("storage.k8s.io", "VolumeAttachment"),
            ("storage.k8s.io", "CSIDriver"),
            ("storage.k8s.io", "CSINode"),
            ("storage.k8s.io", "CSIStorageCapacity"),
            ("storage.k8s.io", "VolumeAttributesClass"),
            ("rbac.authorization.k8s.io", "RoleBinding"),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            ("autoscaling", "HorizontalPodAutoscaler"),
            ("certificates.k8s.io", "CertificateSigningRequest"),
            ("certificates.k8s.io", "ClusterTrustBundle"),
            ("node.k8s.io", "RuntimeClass"),
            ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
            ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
            ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
            ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
            ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
            ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"),
            ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
            ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
            ("resource.k8s.io", "DeviceClass"),
            ("resource.k8s.io", "ResourceClaim"),
            ("resource.k8s.io", "ResourceClaimTemplate"),
            ("resource.k8s.io", "ResourceSlice"),
            ("internal.apiserver.k8s.io", "StorageVersion"),
        ];
        let empty = json!({"metadata": {"name": "x"}});
        for (group, kind) in kinds {
            let printer = printer_for(group, kind).unwrap_or_else(|| panic!("no printer for {group}/{kind}"));
            let columns = printer.columns();
            assert!(
                columns.iter().any(|c| c.name == "Name" && c.format == "name"),
                "{group}/{kind} has no name column"
            );
            let cells = printer.cells(&empty, now());
            assert_eq!(cells.len(), columns.len(), "{group}/{kind} cell count");
        }
    }

    #[test]
    fn kinds_upstream_prints_by_default_have_no_printer() {
        assert!(printer_for("", "LimitRange").is_none());
        assert!(printer_for("rbac.authorization.k8s.io", "Role").is_none());
        assert!(printer_for("rbac.authorization.k8s.io", "ClusterRole").is_none());
        assert!(printer_for("example.com", "Widget").is_none());
    }

    #[test]
    fn default_printer_shows_name_and_creation_time() {
        let obj = json!({"metadata": {"name": "limits", "creationTimestamp": "2024-04-30T08:15:00Z"}});
        let printer = default_printer();
        let names: Vec<_> = printer.columns().iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Created At"]);
        assert_eq!(printer.columns()[1].type_, "date");
        assert_eq!(printer.cells(&obj, now()), [json!("limits"), json!("2024-04-30T08:15:00Z")]);
        let unset = json!({"metadata": {"name": "x"}});
        assert_eq!(printer.cells(&unset, now())[1], json!("0001-01-01T00:00:00Z"));
    }

    #[test]
    fn table_wraps_rows_with_metadata_and_objects() {
        let a = json!({"metadata": {"name": "a", "creationTimestamp": "2024-05-01T11:00:00Z"}, "data": {"k": "v"}});
        let b = json!({"metadata": {"name": "b", "creationTimestamp": "2024-05-01T11:59:30Z"}});
        let t = table(
            "",
            "ConfigMap",
            &[&a, &b],
            json!({"resourceVersion": "42"}),
            |o| json!({"kind": "PartialObjectMetadata", "metadata": o["metadata"].clone()}),
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({"resourceVersion": "42"}));
        assert_eq!(
            t["columnDefinitions"][0],
            json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0})
        );
        assert_eq!(t["rows"][0]["cells"], json!(["a", 1, "60m"]));
        assert_eq!(t["rows"][1]["cells"], json!(["b", 0, "30s"]));
        assert_eq!(t["rows"][1]["object"]["metadata"]["name"], "b");
    }

    #[test]
    fn table_leaves_out_null_objects_and_uses_the_default_printer() {
        let a = json!({"metadata": {"name": "r", "creationTimestamp": "2024-05-01T11:00:00Z"}});
        let t = table("rbac.authorization.k8s.io", "Role", &[&a], Value::Null, |_| Value::Null, now());
        assert_eq!(t["metadata"], json!({}));
        assert_eq!(t["rows"], json!([{"cells": ["r", "2024-05-01T11:00:00Z"]}]));
        let empty = table("", "Pod", &[], Value::Null, |o| o.clone(), now());
        assert_eq!(empty["rows"], json!([]));
        assert_eq!(empty["columnDefinitions"].as_array().unwrap().len(), 9);
    }
}
