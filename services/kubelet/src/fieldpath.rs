//! Downward API values (`fieldRef` and `resourceFieldRef`), shared by
//! environment variables and downwardAPI volumes.

use k8s_openapi::api::core::v1::{Container, Pod};

/// `metadata.labels` as downward API files show them: `key="value"` lines, sorted.
fn format_map(map: Option<&std::collections::BTreeMap<String, String>>) -> String {
    map.map(|m| m.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join("\n")).unwrap_or_default()
}

/// The value of a `fieldRef.fieldPath` for this pod, with the node's IP and the pod's IP as known now.
pub fn field_value(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']").map(str::to_string)
    };
    if let Some(key) = subscript("metadata.labels") {
        return Ok(meta.labels.as_ref().and_then(|l| l.get(&key)).cloned().unwrap_or_default());
    }
    if let Some(key) = subscript("metadata.annotations") {
        return Ok(meta.annotations.as_ref().and_then(|l| l.get(&key)).cloned().unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        other => return Err(format!("unsupported fieldPath {other:?}")),
    })
}

/// The value of a `resourceFieldRef` (`limits.cpu`, `requests.memory`...) scaled by its divisor;
/// an unset limit is the node's allocatable, as upstream reports it.
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    node_allocatable: &std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Result<String, String> {
    let (kind, name) = resource.split_once('.').ok_or_else(|| format!("unsupported resource {resource:?}"))?;
    let res = container.resources.as_ref();
    let set = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported resource {resource:?}")),
    };
    let q = set.and_then(|m| m.get(name)).or_else(|| if kind == "limits" { node_allocatable.get(name) } else { None });
    let milli = match q {
        Some(q) => apimachinery::quantity::parse_milli(&q.0).map_err(|e| e.to_string())?,
        None => 0,
    };
    let div = match divisor {
        Some(d) if !d.is_empty() => apimachinery::quantity::parse_milli(d).map_err(|e| e.to_string())?,
        _ => 1000,
    };
    if div <= 0 {
        return Err("divisor must be positive".into());
    }
    // Upstream rounds up.
    Ok(((milli + div - 1) / div).to_string())
}
