//! ResourceQuota admission. `status.used` is the source of truth, as
//! upstream: a create charges every quota of its namespace with a
//! compare-and-swap on the quota before the object is stored (so concurrent
//! creates cannot both slip under the limit), a delete refunds it, and a new
//! quota starts from the namespace's current objects.

use std::collections::BTreeMap;

use apimachinery::quantity::{format_milli, parse_milli};
use apimachinery::status::ApiError;
use serde_json::{json, Value};

use crate::endpoints::ApiServer;
use crate::registry::store::{Target, WriteOptions};
use crate::registry::ResourceDescriptor;

type Usage = BTreeMap<String, i128>;

/// A limit a charge would cross: (resource, requested, used, limit).
type Exceeded = (String, i128, i128, i128);

const ONE: i128 = 1000;

fn pod_is_terminal(pod: &Value) -> bool {
    matches!(pod["status"]["phase"].as_str(), Some("Succeeded") | Some("Failed"))
}

/// Sum of the containers' values, or the largest init container's if bigger.
fn pod_resource(pod: &Value, kind: &str, resource: &str) -> i128 {
    let sum_of = |list: &str| -> Vec<i128> {
        pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["resources"][kind][resource].as_str().and_then(|q| parse_milli(q).ok()).unwrap_or(0))
            .collect()
    };
    let main: i128 = sum_of("containers").iter().sum();
    let init = sum_of("initContainers").into_iter().max().unwrap_or(0);
    main.max(init)
}

/// What one object counts for, by quota resource name, in milli-units.
pub fn usage_of(d: &ResourceDescriptor, obj: &Value) -> Usage {
    let mut u = Usage::new();
    let count_name =
        if d.group.is_empty() { format!("count/{}", d.plural) } else { format!("count/{}.{}", d.plural, d.group) };
    u.insert(count_name, ONE);
    if d.group.is_empty()
        && matches!(
            d.plural,
            "pods"
                | "services"
                | "configmaps"
                | "secrets"
                | "persistentvolumeclaims"
                | "replicationcontrollers"
                | "resourcequotas"
        )
    {
        u.insert(d.plural.to_string(), ONE);
    }
    match (d.group, d.plural) {
        ("", "pods") => {
            if pod_is_terminal(obj) {
                // A finished pod still exists (count/pods) but holds no pod slot or compute.
                u.retain(|k, _| k.starts_with("count/"));
                return u;
            }
            for (kind, short) in [("requests", "requests"), ("limits", "limits")] {
                for r in ["cpu", "memory", "ephemeral-storage"] {
                    let v = pod_resource(obj, kind, r);
                    if v > 0 {
                        u.insert(format!("{short}.{r}"), v);
                        if kind == "requests" {
                            u.insert(r.to_string(), v);
                        }
                    }
                }
            }
        }
        ("", "services") => {
            let ports = obj["spec"]["ports"]
                .as_array()
                .map(|p| p.iter().filter(|p| p["nodePort"].is_number()).count())
                .unwrap_or(0);
            if ports > 0 {
                u.insert("services.nodeports".into(), ports as i128 * ONE);
            }
            if obj["spec"]["type"] == "LoadBalancer" {
                u.insert("services.loadbalancers".into(), ONE);
            }
        }
        ("", "persistentvolumeclaims") => {
            if let Some(q) = obj["spec"]["resources"]["requests"]["storage"].as_str().and_then(|q| parse_milli(q).ok())
            {
                u.insert("requests.storage".into(), q);
            }
        }
        _ => {}
    }
    u
}

fn parse_usage(v: &Value) -> Usage {
    v.as_object()
        .map(|m| m.iter().filter_map(|(k, q)| Some((k.clone(), parse_milli(q.as_str()?).ok()?))).collect())
        .unwrap_or_default()
}

fn quota_descriptor(server: &ApiServer) -> Option<std::sync::Arc<ResourceDescriptor>> {
    server.resources.lookup("", "v1", "resourcequotas").cloned()
}

/// Usage of everything a quota tracks in a namespace, from the watch caches.
fn compute_used(server: &ApiServer, ns: &str, hard: &Usage) -> Usage {
    let mut used: Usage = hard.keys().map(|k| (k.clone(), 0)).collect();
    for d in server.resources.resources.iter().filter(|d| d.namespaced && d.is_stored()) {
        let (items, _) = server.store.cache(d).snapshot(&d.key_prefix(&server.store.root, Some(ns)));
        for o in items {
            for (k, v) in usage_of(d, &o.value()) {
                if let Some(slot) = used.get_mut(&k) {
                    *slot += v;
                }
            }
        }
    }
    used
}

fn to_json(u: &Usage) -> Value {
    Value::Object(u.iter().map(|(k, v)| (k.clone(), json!(format_milli(*v)))).collect())
}

fn show(v: i128, resource: &str) -> String {
    // Counts and ports read as whole numbers.
    if resource.starts_with("count/")
        || !resource.contains('.') && !matches!(resource, "cpu" | "memory" | "ephemeral-storage")
    {
        return (v / ONE).to_string();
    }
    format_milli(v)
}

/// Charges (sign 1) or refunds (sign -1) every quota of the namespace for an
/// object; a charge over a limit is a 403 and charges nothing.
pub async fn charge(
    server: &ApiServer,
    d: &ResourceDescriptor,
    ns: &str,
    obj: &Value,
    sign: i128,
) -> Result<(), ApiError> {
    let Some(qd) = quota_descriptor(server) else { return Ok(()) };
    if ns.is_empty() || !d.namespaced || (d.group.is_empty() && d.plural == "resourcequotas" && sign < 0) {
        return Ok(());
    }
    // A quota created through this server a moment ago must already count.
    let cache = server.store.cache(&qd);
    if let Err(e) = cache.caught_up_with_own_writes(std::time::Duration::from_secs(3)).await {
        tracing::warn!("quota admission: the resourcequotas cache lags this server's writes: {e}");
    }
    let (quotas, _) = cache.snapshot(&qd.key_prefix(&server.store.root, Some(ns)));
    if quotas.is_empty() {
        return Ok(());
    }
    let delta = usage_of(d, obj);
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let mut charged: Vec<String> = Vec::new();
    for q in quotas {
        let qname = q.attrs.name.clone();
        let result = server
            .store
            .update(
                &qd,
                ns,
                &qname,
                Target::Status,
                &WriteOptions::default(),
                |current| {
                    let mut quota = current.cloned().unwrap_or(Value::Null);
                    let hard = parse_usage(&quota["spec"]["hard"]);
                    let mut used = parse_usage(&quota["status"]["used"]);
                    if used.is_empty() {
                        used = compute_used(server, ns, &hard);
                    }
                    let mut exceeded = Vec::new();
                    for (r, limit) in &hard {
                        let Some(dv) = delta.get(r) else { continue };
                        let now = used.get(r).copied().unwrap_or(0);
                        let next = (now + sign * dv).max(0);
                        if sign > 0 && next > *limit {
                            exceeded.push((r.clone(), *dv, now, *limit));
                        }
                        used.insert(r.clone(), next);
                    }
                    if !exceeded.is_empty() {
                        let part =
                            |f: &dyn Fn(&Exceeded) -> String| exceeded.iter().map(f).collect::<Vec<_>>().join(",");
                        return Err(ApiError::forbidden(format!(
                            "{} \"{name}\" is forbidden: exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                            d.plural,
                            part(&|e| format!("{}={}", e.0, show(e.1, &e.0))),
                            part(&|e| format!("{}={}", e.0, show(e.2, &e.0))),
                            part(&|e| format!("{}={}", e.0, show(e.3, &e.0))),
                        )));
                    }
                    quota["status"]["hard"] = to_json(&hard);
                    quota["status"]["used"] = to_json(&used);
                    // Unpinned: the store's compare-and-swap retries on a concurrent charge.
                    crate::registry::meta::metadata_mut(&mut quota).remove("resourceVersion");
                    Ok(quota)
                },
                |_, _| Ok(()),
            )
            .await;
        match result {
            Ok(_) => charged.push(qname),
            Err(e) => {
                // Undo what this create already charged elsewhere.
                if sign > 0 {
                    for other in &charged {
                        let _ = refund_one(server, &qd, ns, other, &delta).await;
                    }
                }
                if e.code == 403 || sign > 0 {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

async fn refund_one(
    server: &ApiServer,
    qd: &ResourceDescriptor,
    ns: &str,
    qname: &str,
    delta: &Usage,
) -> Result<(), ApiError> {
    server
        .store
        .update(
            qd,
            ns,
            qname,
            Target::Status,
            &WriteOptions::default(),
            |current| {
                let mut quota = current.cloned().unwrap_or(Value::Null);
                let mut used = parse_usage(&quota["status"]["used"]);
                for (r, v) in used.iter_mut() {
                    if let Some(dv) = delta.get(r) {
                        *v = (*v - dv).max(0);
                    }
                }
                quota["status"]["used"] = to_json(&used);
                crate::registry::meta::metadata_mut(&mut quota).remove("resourceVersion");
                Ok(quota)
            },
            |_, _| Ok(()),
        )
        .await
        .map(|_| ())
}

/// A new quota starts with the namespace's current usage in its status.
pub async fn initialize(server: &ApiServer, ns: &str, quota: &Value) {
    let Some(qd) = quota_descriptor(server) else { return };
    let name = quota["metadata"]["name"].as_str().unwrap_or_default();
    let hard = parse_usage(&quota["spec"]["hard"]);
    let used = compute_used(server, ns, &hard);
    let _ = server
        .store
        .update(
            &qd,
            ns,
            name,
            Target::Status,
            &WriteOptions::default(),
            |current| {
                let mut q = current.cloned().unwrap_or(Value::Null);
                q["status"] = json!({"hard": to_json(&hard), "used": to_json(&used)});
                crate::registry::meta::metadata_mut(&mut q).remove("resourceVersion");
                Ok(q)
            },
            |_, _| Ok(()),
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_usage_sums_containers_and_respects_init_containers() {
        let pods = crate::resources::builtin().into_iter().find(|d| d.plural == "pods").unwrap();
        let pod = json!({"spec": {
            "initContainers": [{"resources": {"requests": {"cpu": "2"}}}],
            "containers": [{"resources": {"requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}},
                           {"resources": {"requests": {"cpu": "250m"}}}],
        }});
        let u = usage_of(&pods, &pod);
        assert_eq!(u["pods"], ONE);
        assert_eq!(u["count/pods"], ONE);
        assert_eq!(u["requests.cpu"], 2000);
        assert_eq!(u["requests.memory"], 64 * 1024 * 1024 * 1000);
        assert_eq!(u["limits.memory"], 128 * 1024 * 1024 * 1000);
        let done = json!({"status": {"phase": "Succeeded"}});
        let finished = usage_of(&pods, &done);
        assert_eq!(finished.get("count/pods"), Some(&ONE), "a finished pod still exists");
        assert!(!finished.contains_key("pods"), "but holds no pod slot");
    }
}
