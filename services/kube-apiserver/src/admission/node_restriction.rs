//! NodeRestriction: a kubelet writes only its own Node and Lease, and only
//! pods bound to it (creating just mirror pods); it cannot set the
//! `node-restriction.kubernetes.io/` labels; it evicts, and gets tokens for,
//! only pods bound to it.

use apimachinery::status::ApiError;
use serde_json::Value;

use super::{done, AdmissionPlugin, Attributes, Hook, Operation};
use crate::endpoints::ApiServer;
use crate::registry::ResourceDescriptor;

pub struct NodeRestriction;

// Upstream runs NodeRestriction in the mutating phase (it changes nothing).
impl AdmissionPlugin for NodeRestriction {
    fn name(&self) -> &'static str {
        "NodeRestriction"
    }

    fn admit<'a>(&'a self, server: &'a ApiServer, a: &'a mut Attributes<'_>) -> Hook<'a> {
        let Some(node) = crate::authz::node_name(a.user) else { return done(Ok(())) };
        match (a.operation, a.subresource) {
            // A kubelet asks for tokens only for pods bound to it.
            (Operation::Create, Some("token")) if a.is("", "serviceaccounts") => {
                Box::pin(async move { check_token_request(server, node, a).await })
            }
            // A kubelet evicts only pods bound to it.
            (Operation::Create, Some("eviction")) if a.is("", "pods") => {
                Box::pin(async move { check_eviction(server, node, a).await })
            }
            // A kubelet deletes only pods bound to it.
            (Operation::Delete, None) if a.is("", "pods") => Box::pin(async move {
                let current = match a.old_object {
                    Some(o) => o.clone(),
                    None => server.store.get(a.resource, a.namespace, a.url_name).await?,
                };
                check_node_restriction(a.resource, a.user, a.namespace, &current, Some(&current))
            }),
            (Operation::Create | Operation::Update, None | Some("status")) => done(match a.object() {
                Some(new) => check_node_restriction(a.resource, a.user, a.namespace, new, a.old_object),
                None => Ok(()),
            }),
            _ => done(Ok(())),
        }
    }
}

/// Upstream's rule for a kubelet's Eviction: the pod (named on the URL, else
/// in the Eviction) must be bound to the kubelet's node.
async fn check_eviction(server: &ApiServer, node: &str, a: &Attributes<'_>) -> Result<(), ApiError> {
    let name = a.name();
    if name.is_empty() {
        return Err(ApiError::forbidden("pods is forbidden: could not determine pod from request data"));
    }
    let pods = server.resources.lookup("", "v1", "pods").ok_or_else(|| ApiError::internal("pods are not served"))?;
    let pod = server.store.get(pods, a.namespace, name).await?;
    if pod["spec"]["nodeName"].as_str() != Some(node) {
        return Err(ApiError::forbidden(format!(
            "pods \"{name}\" is forbidden: node {node} can only evict pods with spec.nodeName set to itself"
        )));
    }
    Ok(())
}

/// Upstream's rule for a kubelet's TokenRequest: bound to a pod (by name and
/// uid) that is scheduled on the kubelet's node.
async fn check_token_request(server: &ApiServer, node: &str, a: &Attributes<'_>) -> Result<(), ApiError> {
    let forbid =
        |msg: String| Err(ApiError::forbidden(format!("serviceaccounts \"{}\" is forbidden: {msg}", a.url_name)));
    let reference = a.object().map(|r| &r["spec"]["boundObjectRef"]).unwrap_or(&Value::Null);
    let pod_name = reference["name"].as_str().unwrap_or_default();
    if reference["apiVersion"] != "v1" || reference["kind"] != "Pod" || pod_name.is_empty() {
        return forbid("node requested token not bound to a pod".into());
    }
    let Some(uid) = reference["uid"].as_str().filter(|u| !u.is_empty()) else {
        return forbid("node requested token with a pod binding without a uid".into());
    };
    let pods = server.resources.lookup("", "v1", "pods").ok_or_else(|| ApiError::internal("pods are not served"))?;
    let pod = server.store.get(pods, a.namespace, pod_name).await?;
    if pod["metadata"]["uid"].as_str() != Some(uid) {
        return forbid(format!(
            "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
        ));
    }
    if pod["spec"]["nodeName"].as_str() != Some(node) {
        return forbid("node requested token bound to a pod scheduled on a different node".into());
    }
    Ok(())
}

/// The check itself, for a kubelet's write of `new` (replacing `old`).
fn check_node_restriction(
    d: &ResourceDescriptor,
    user: &rbac::UserInfo,
    ns: &str,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(node) = crate::authz::node_name(user) else { return Ok(()) };
    let name = new["metadata"]["name"].as_str().unwrap_or_default();
    let forbid = |msg: String| Err(ApiError::forbidden(format!("{} \"{name}\" is forbidden: {msg}", d.plural)));
    match (d.group, d.plural) {
        ("", "nodes") => {
            if name != node {
                return forbid(format!("node \"{node}\" is not allowed to modify node \"{name}\""));
            }
            let restricted = |v: &Value| -> Vec<(String, String)> {
                v["metadata"]["labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter(|(k, _)| {
                                k.split('/').next().is_some_and(|p| p.ends_with("node-restriction.kubernetes.io"))
                            })
                            .map(|(k, v)| (k.clone(), v.to_string()))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            if restricted(new) != old.map(restricted).unwrap_or_default() {
                return forbid(format!(
                    "is not allowed to modify labels: node-restriction.kubernetes.io/* (node \"{node}\")"
                ));
            }
        }
        ("", "pods") => {
            let bound = |v: &Value| v["spec"]["nodeName"].as_str() == Some(node);
            match old {
                None => {
                    let mirror = new["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string();
                    if !mirror {
                        return forbid(format!("pod does not have \"kubernetes.io/config.mirror\" annotation, node \"{node}\" can only create mirror pods"));
                    }
                    if !bound(new) {
                        return forbid(format!(
                            "node \"{node}\" can only create pods with spec.nodeName set to itself"
                        ));
                    }
                }
                Some(o) => {
                    if !bound(o) {
                        return forbid(format!(
                            "node \"{node}\" can only update pod status for pods with spec.nodeName set to itself"
                        ));
                    }
                }
            }
        }
        ("coordination.k8s.io", "leases") if ns == "kube-node-lease" && name != node => {
            return forbid("can only access node lease with the same name as the requesting node".to_string());
        }
        _ => {}
    }
    Ok(())
}
