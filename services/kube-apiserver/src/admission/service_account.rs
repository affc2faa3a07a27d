//! ServiceAccount: pods run as `default` unless they name an account, and get
//! the projected `kube-api-access-*` volume (a bound token, the cluster CA and
//! their namespace) mounted in every container, unless automounting is off
//! for the pod or its service account, or the path is already mounted.

use serde_json::{json, Value};

use super::{done, AdmissionPlugin, Attributes, Hook, Operation};
use crate::endpoints::ApiServer;

pub struct ServiceAccount;

impl AdmissionPlugin for ServiceAccount {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    fn admit<'a>(&'a self, server: &'a ApiServer, a: &'a mut Attributes<'_>) -> Hook<'a> {
        if a.operation == Operation::Create && a.is_main("", "pods") {
            let ns = a.namespace;
            if let Some(pod) = a.object_mut() {
                service_account(server, ns, pod);
            }
        }
        done(Ok(()))
    }
}

const SA_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn service_account(server: &ApiServer, ns: &str, pod: &mut Value) {
    let spec = &mut pod["spec"];
    if !spec.is_object() {
        return;
    }
    if spec["serviceAccountName"].as_str().unwrap_or_default().is_empty() {
        spec["serviceAccountName"] = json!("default");
    }
    spec["serviceAccount"] = spec["serviceAccountName"].clone();
    let mirror = pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string();
    let spec = &mut pod["spec"];
    let sa_name = spec["serviceAccountName"].as_str().unwrap_or_default().to_string();
    let sa_automount = server
        .resources
        .lookup("", "v1", "serviceaccounts")
        .and_then(|d| server.store.cache(d).get(&d.key(&server.store.root, ns, &sa_name)))
        .map(|o| o.value()["automountServiceAccountToken"] != false)
        .unwrap_or(true);
    let automount = match spec["automountServiceAccountToken"].as_bool() {
        Some(b) => b,
        None => sa_automount,
    };
    if mirror || !automount {
        return;
    }
    let mounted = ["containers", "initContainers"].iter().any(|l| {
        spec[*l]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["volumeMounts"].as_array().into_iter().flatten().any(|m| m["mountPath"] == SA_MOUNT_PATH))
    });
    if mounted {
        return;
    }
    let volume = format!("kube-api-access-{}", crate::registry::meta::name_suffix());
    let projected = json!({
        "name": volume,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}},
            ],
        },
    });
    match spec["volumes"].as_array_mut() {
        Some(v) => v.push(projected),
        None => spec["volumes"] = json!([projected]),
    }
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec[list].as_array_mut() {
            for c in cs {
                let mount = json!({"name": volume, "mountPath": SA_MOUNT_PATH, "readOnly": true});
                match c["volumeMounts"].as_array_mut() {
                    Some(m) => m.push(mount),
                    None => c["volumeMounts"] = json!([mount]),
                }
            }
        }
    }
}
