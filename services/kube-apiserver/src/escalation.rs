//! Upstream's RBAC escalation prevention, part of the RBAC registry (not
//! admission: no flag turns it off): a Role/ClusterRole write may grant only
//! rules its writer holds (or the writer has `escalate`); a binding may
//! reference only a role whose rules the writer holds (or the writer has `bind`).

use apimachinery::status::ApiError;
use serde_json::Value;

use crate::endpoints::ApiServer;
use crate::registry::ResourceDescriptor;

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
