//! Built-in mutating admission run before the strategy: ServiceAccount
//! defaulting for pods and IP/port allocation for services.

use apimachinery::status::ApiError;
use serde_json::{json, Value};

use crate::endpoints::ApiServer;
use crate::registry::ResourceDescriptor;

/// Mutations applied to a new object before it is validated and stored.
pub async fn mutate_on_create(server: &ApiServer, d: &ResourceDescriptor, mut obj: Value) -> Result<Value, ApiError> {
    match (d.group, d.plural) {
        ("", "pods") => {
            let spec = &mut obj["spec"];
            if spec.is_object() && spec["serviceAccountName"].as_str().unwrap_or_default().is_empty() {
                spec["serviceAccountName"] = json!("default");
                spec["serviceAccount"] = json!("default");
            }
        }
        ("", "services") => {
            if let Some(alloc) = &server.allocator {
                alloc.allocate_for(&mut obj).await?;
            }
        }
        _ => {}
    }
    Ok(obj)
}

/// Frees what admission allocated for an object that is gone or was never stored.
pub async fn release(server: &ApiServer, d: &ResourceDescriptor, obj: &Value) {
    if let (("", "services"), Some(alloc)) = ((d.group, d.plural), &server.allocator) {
        alloc.release(obj).await;
    }
}

/// Upstream's RBAC escalation prevention: a Role/ClusterRole write may grant
/// only rules its writer holds (or the writer has `escalate`); a binding may
/// reference only a role whose rules the writer holds (or the writer has `bind`).
pub fn check_rbac_escalation(
    server: &ApiServer,
    d: &ResourceDescriptor,
    user: &rbac::UserInfo,
    obj: &Value,
) -> Result<(), ApiError> {
    use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};
    if d.group != "rbac.authorization.k8s.io" || !server.authorizer.uses_rbac() || rbac::escalation_allowed(user) {
        return Ok(());
    }
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let source = server.authorizer.rbac_source();
    let allowed = |attrs: &rbac::Attributes| server.authorizer.authorize(attrs).0 == rbac::Decision::Allow;
    let requested: Vec<PolicyRule> = match d.plural {
        "roles" | "clusterroles" => {
            if allowed(&rbac::escalate_attributes(user, d.plural, ns, name)) {
                return Ok(());
            }
            serde_json::from_value(obj["rules"].clone()).unwrap_or_default()
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref: RoleRef = serde_json::from_value(obj["roleRef"].clone())
                .map_err(|e| ApiError::bad_request(format!("roleRef: {e}")))?;
            if rbac::bind_attributes(user, &role_ref, ns).is_some_and(|a| allowed(&a)) {
                return Ok(());
            }
            match rbac::role_ref_rules(source.as_ref(), &role_ref, ns) {
                Ok(rules) => rules,
                Err(e) => return Err(ApiError::forbidden(e.to_string())),
            }
        }
        _ => return Ok(()),
    };
    let owner = rbac::rules_for(source.as_ref(), user, ns);
    rbac::confirm_no_escalation(&owner, &requested).map_err(|missing| {
        ApiError::forbidden(format!(
            "{}.rbac.authorization.k8s.io \"{name}\" is forbidden: {}",
            d.plural,
            rbac::escalation_message(user, &missing)
        ))
    })
}

/// NodeRestriction: a kubelet writes only its own Node and Lease, and only
/// pods bound to it (creating just mirror pods); it cannot set the
/// `node-restriction.kubernetes.io/` labels.
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

/// Validating admission on writes, in order.
pub fn validate(
    server: &ApiServer,
    d: &ResourceDescriptor,
    user: &rbac::UserInfo,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    check_node_restriction(d, user, new, old)?;
    check_rbac_escalation(server, d, user, new)
}
