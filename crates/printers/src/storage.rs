//! Printers for the `storage.k8s.io` API group.

use jiff::Timestamp;
use serde_json::Value;

use crate::format::{age, array_at, bool_at, get, len_at, name, opt_bool, opt_str, quantity, str_at};
use crate::{col, Column, Printer, AGE, NAME};

pub(crate) fn printer(kind: &str) -> Option<&'static Printer> {
    Some(match kind {
        "StorageClass" => &STORAGE_CLASS,
        "VolumeAttributesClass" => &VOLUME_ATTRIBUTES_CLASS,
        "VolumeAttachment" => &VOLUME_ATTACHMENT,
        "CSIDriver" => &CSI_DRIVER,
        "CSINode" => &CSI_NODE,
        "CSIStorageCapacity" => &CSI_STORAGE_CAPACITY,
        _ => return None,
    })
}

/// The object name, with `" (default)"` when `annotation` is `"true"`.
fn name_marking_default(obj: &Value, annotations: &[&str]) -> Value {
    let name = str_at(obj, &["metadata", "name"]);
    let is_default = annotations.iter().any(|a| str_at(obj, &["metadata", "annotations", a]) == "true");
    if is_default {
        Value::from(format!("{name} (default)"))
    } else {
        Value::from(name)
    }
}

// === StorageClass ===

static STORAGE_CLASS: Printer = Printer::new(
    &[
        NAME,
        col("Provisioner", "string", "provisioner indicates the type of the provisioner."),
        col(
            "ReclaimPolicy",
            "string",
            "reclaimPolicy controls the reclaimPolicy for dynamically provisioned \
             PersistentVolumes of this storage class. Defaults to Delete.",
        ),
        col(
            "VolumeBindingMode",
            "string",
            "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
        ),
        col(
            "AllowVolumeExpansion",
            "string",
            "allowVolumeExpansion shows whether the storage class allow volume expand.",
        ),
        AGE,
    ],
    storage_class_cells,
);

fn storage_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_marking_default(
            obj,
            &["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"],
        ),
        Value::from(str_at(obj, &["provisioner"])),
        Value::from(opt_str(obj, &["reclaimPolicy"]).unwrap_or("Delete")),
        Value::from(opt_str(obj, &["volumeBindingMode"]).unwrap_or("Immediate")),
        Value::from(bool_at(obj, &["allowVolumeExpansion"])),
        age(obj, now),
    ]
}

// === VolumeAttributesClass ===

static VOLUME_ATTRIBUTES_CLASS: Printer = Printer::new(
    &[NAME, col("DriverName", "string", "Name of the CSI driver This field is immutable."), AGE],
    |obj, now| {
        vec![
            name_marking_default(obj, &["volumeattributesclass.alpha.kubernetes.io/is-default-class"]),
            Value::from(str_at(obj, &["driverName"])),
            age(obj, now),
        ]
    },
);

// === VolumeAttachment ===

static VOLUME_ATTACHMENT: Printer = Printer::new(
    &[
        NAME,
        // Upstream marks this column with the name format too.
        Column {
            format: "name",
            ..col(
                "Attacher",
                "string",
                "attacher indicates the name of the volume driver that MUST handle this request.",
            )
        },
        col("PV", "string", "persistentVolumeName represents the name of the persistent volume to attach."),
        col("Node", "string", "nodeName represents the node that the volume should be attached to."),
        col("Attached", "boolean", "attached indicates the volume is successfully attached."),
        AGE,
    ],
    |obj, now| {
        vec![
            name(obj),
            Value::from(str_at(obj, &["spec", "attacher"])),
            Value::from(str_at(obj, &["spec", "source", "persistentVolumeName"])),
            Value::from(str_at(obj, &["spec", "nodeName"])),
            Value::from(bool_at(obj, &["status", "attached"])),
            age(obj, now),
        ]
    },
);

// === CSIDriver, CSINode, CSIStorageCapacity ===

static CSI_DRIVER: Printer = Printer::new(
    &[
        NAME,
        col(
            "AttachRequired",
            "boolean",
            "attachRequired indicates this CSI volume driver requires an attach operation.",
        ),
        col(
            "PodInfoOnMount",
            "boolean",
            "podInfoOnMount indicates this CSI volume driver requires additional pod \
             information (like podName, podUID, etc.) during mount operations.",
        ),
        col(
            "StorageCapacity",
            "boolean",
            "storageCapacity indicates that the CSI volume driver wants pod scheduling to \
             consider the storage capacity that the driver deployment will report.",
        ),
        col(
            "TokenRequests",
            "string",
            "tokenRequests indicates the CSI driver needs pods' service account tokens it is \
             mounting volume for to do necessary authentication.",
        ),
        col(
            "RequiresRepublish",
            "boolean",
            "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being \
             periodically called to reflect any possible change in the mounted volume.",
        ),
        col("Modes", "string", "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports."),
        AGE,
    ],
    csi_driver_cells,
);

fn csi_driver_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let token_requests = match get(obj, &["spec", "tokenRequests"]) {
        None => "<unset>".to_string(),
        Some(requests) => requests
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(|t| str_at(t, &["audience"]))
            .collect::<Vec<_>>()
            .join(","),
    };
    let modes: Vec<&str> = array_at(obj, &["spec", "volumeLifecycleModes"]).iter().filter_map(Value::as_str).collect();
    let modes = if modes.is_empty() { "<none>".to_string() } else { modes.join(",") };
    vec![
        name(obj),
        Value::from(opt_bool(obj, &["spec", "attachRequired"]).unwrap_or(true)),
        Value::from(bool_at(obj, &["spec", "podInfoOnMount"])),
        Value::from(bool_at(obj, &["spec", "storageCapacity"])),
        Value::from(token_requests),
        Value::from(bool_at(obj, &["spec", "requiresRepublish"])),
        Value::from(modes),
        age(obj, now),
    ]
}

static CSI_NODE: Printer = Printer::new(
    &[NAME, col("Drivers", "integer", "Drivers indicates the number of CSI drivers registered on the node"), AGE],
    |obj, now| vec![name(obj), Value::from(len_at(obj, &["spec", "drivers"])), age(obj, now)],
);

static CSI_STORAGE_CAPACITY: Printer = Printer::new(
    &[
        NAME,
        col(
            "StorageClassName",
            "string",
            "storageClassName represents the name of the StorageClass that the reported \
             capacity applies to.",
        ),
        col(
            "Capacity",
            "string",
            "capacity is the value reported by the CSI driver in its GetCapacityResponse for a \
             GetCapacityRequest with topology and parameters that match the previous fields.",
        ),
    ],
    |obj, _now| {
        let capacity = match get(obj, &["capacity"]) {
            None => "<unset>".to_string(),
            some => quantity(some),
        };
        vec![name(obj), Value::from(str_at(obj, &["storageClassName"])), Value::from(capacity)]
    },
);

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
    fn default_storage_class_is_marked() {
        let sc = json!({
            "metadata": {
                "name": "standard",
                "creationTimestamp": "2024-04-01T12:00:00Z",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}
            },
            "provisioner": "rancher.io/local-path",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"
        });
        assert_eq!(
            cells("StorageClass", &sc),
            [
                json!("standard (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("30d"),
            ]
        );
        let bare = json!({"metadata": {"name": "x"}, "provisioner": "p", "allowVolumeExpansion": true});
        assert_eq!(
            cells("StorageClass", &bare)[..5],
            [json!("x"), json!("p"), json!("Delete"), json!("Immediate"), json!(true)]
        );
    }

    #[test]
    fn csi_driver_defaults() {
        let driver = json!({
            "metadata": {"name": "ebs.csi.aws.com"},
            "spec": {"attachRequired": false, "volumeLifecycleModes": ["Persistent", "Ephemeral"]}
        });
        assert_eq!(
            cells("CSIDriver", &driver)[..7],
            [
                json!("ebs.csi.aws.com"),
                json!(false),
                json!(false),
                json!(false),
                json!("<unset>"),
                json!(false),
                json!("Persistent,Ephemeral"),
            ]
        );
        let tokens =
            json!({"metadata": {"name": "d"}, "spec": {"tokenRequests": [{"audience": "vault"}, {"audience": "gcp"}]}});
        assert_eq!(cells("CSIDriver", &tokens)[1], json!(true));
        assert_eq!(cells("CSIDriver", &tokens)[4], json!("vault,gcp"));
        assert_eq!(cells("CSIDriver", &tokens)[6], json!("<none>"));
    }

    #[test]
    fn volume_attachment_and_capacity() {
        let va = json!({
            "metadata": {"name": "csi-123"},
            "spec": {"attacher": "ebs.csi.aws.com", "nodeName": "node-a", "source": {"persistentVolumeName": "pv-1"}},
            "status": {"attached": true}
        });
        assert_eq!(
            cells("VolumeAttachment", &va)[..5],
            [json!("csi-123"), json!("ebs.csi.aws.com"), json!("pv-1"), json!("node-a"), json!(true)]
        );
        let cap = json!({"metadata": {"name": "c"}, "storageClassName": "fast"});
        assert_eq!(cells("CSIStorageCapacity", &cap), [json!("c"), json!("fast"), json!("<unset>")]);
    }
}
