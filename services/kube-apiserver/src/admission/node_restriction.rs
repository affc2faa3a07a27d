//! NodeRestriction: a kubelet writes only its own Node and Lease, and only
//! pods bound to it (creating just mirror pods); it cannot set the
//! `node-restriction.kubernetes.io/` labels.

use apimachinery::status::ApiError;
use serde_json::Value;

use super::{done, AdmissionPlugin, Attributes, Hook, Operation};
use crate::endpoints::ApiServer;
use crate::registry::ResourceDescriptor;

pub struct NodeRestriction;

impl AdmissionPlugin for NodeRestriction {
    fn name(&self) -> &'static str {
        "NodeRestriction"
    }

    fn validate<'a>(&'a self, server: &'a ApiServer, a: &'a mut Attributes<'_>) -> Hook<'a> {
        if crate::authz::node_name(a.user).is_none() {
            return done(Ok(()));
        }
        match (a.operation, a.object()) {
            (Operation::Create | Operation::Update, Some(new)) => {
                done(check_node_restriction(a.resource, a.user, new, a.old_object))
            }
            // A kubelet deletes only pods bound to it.
            (Operation::Delete, _) if a.is_main("", "pods") => Box::pin(async move {
                let current = match a.old_object {
                    Some(o) => o.clone(),
                    None => server.store.get(a.resource, a.namespace, a.url_name).await?,
                };
                check_node_restriction(a.resource, a.user, &current, Some(&current))
            }),
            _ => done(Ok(())),
        }
    }
}

/// The check itself, for a kubelet's write of `new` (replacing `old`).
pub fn check_node_restriction(
    d: &ResourceDescriptor,
    user: &rbac::UserInfo,
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
        ("coordination.k8s.io", "leases") => {
            let ns = new["metadata"]["namespace"].as_str().unwrap_or_default();
            if ns == "kube-node-lease" && name != node {
                return forbid("can only access node lease with the same name as the requesting node".to_string());
            }
        }
        _ => {}
    }
    Ok(())
}
