//! Access and token reviews: create-only resources answered from the request
//! and never stored (`kubectl auth whoami`, `kubectl auth can-i [--list]`,
//! webhook-style TokenReview and SubjectAccessReview).

use apimachinery::status::ApiError;
use rbac::{Attributes, Decision, UserInfo};
use serde_json::{json, Value};

use crate::authn::Credentials;
use crate::endpoints::ApiServer;
use crate::registry::{ResourceDescriptor, ReviewKind};
use crate::serviceaccount::{user_for, TokenVerifier};

fn user_json(u: &UserInfo) -> Value {
    let mut v = json!({"username": u.name, "groups": u.groups});
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    if !u.extra.is_empty() {
        v["extra"] = json!(u.extra);
    }
    v
}

/// Attributes from a review's `spec.resourceAttributes` or `spec.nonResourceAttributes`.
fn attributes(user: UserInfo, spec: &Value, forced_namespace: Option<&str>) -> Result<Attributes, ApiError> {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        let namespace = forced_namespace.map(String::from).unwrap_or_else(|| s(&r["namespace"]));
        Ok(Attributes {
            user,
            verb: s(&r["verb"]),
            namespace,
            api_group: s(&r["group"]),
            api_version: s(&r["version"]),
            resource: s(&r["resource"]),
            subresource: s(&r["subresource"]),
            name: s(&r["name"]),
            is_resource_request: true,
            path: String::new(),
        })
    } else if let Some(n) = spec.get("nonResourceAttributes").filter(|r| r.is_object()) {
        Ok(Attributes::non_resource(user, s(&n["verb"]), s(&n["path"])))
    } else {
        Err(ApiError::invalid(
            "authorization.k8s.io",
            "SubjectAccessReview",
            "",
            &[apimachinery::status::FieldError::required(
                "spec.resourceAttributes",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )],
        ))
    }
}

fn access_status(server: &ApiServer, attrs: &Attributes) -> Value {
    let (decision, reason) = server.authorizer.authorize(attrs);
    let mut status = json!({"allowed": decision == Decision::Allow});
    if decision == Decision::Deny {
        status["denied"] = json!(true);
    }
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    status
}

/// A TokenReview as upstream answers it: the token is authenticated for `spec.audiences`, or for the
/// apiserver's own audiences when none are asked; `status.audiences` says which of them it is valid for.
/// Service-account tokens must name one of those audiences; audience-agnostic (static) tokens are valid
/// only for the apiserver's own audiences.
fn token_review_status(server: &ApiServer, spec: &Value) -> Value {
    let token = spec["token"].as_str().unwrap_or_default();
    let requested: Vec<String> = spec["audiences"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let own = &server.sa_verifier.audiences;
    let audiences = if requested.is_empty() { own.clone() } else { requested };
    let refused = |why: &str| json!({"authenticated": false, "error": why});
    if token.is_empty() {
        return refused("invalid bearer token");
    }
    if TokenVerifier::looks_like_jwt(token) && !server.sa_verifier.is_empty() {
        let now = jiff::Timestamp::now().as_second();
        return match server.sa_verifier.verify_for(token, now, &audiences) {
            Ok((t, matched)) if crate::endpoints::bound_objects_exist(server, &t) => {
                json!({"authenticated": true, "user": user_json(&user_for(&t)), "audiences": matched})
            }
            Ok(_) => refused("invalid bearer token, service account token has been invalidated"),
            Err(e) => refused(&format!("invalid bearer token, {e}")),
        };
    }
    // Audience-agnostic tokens stand for the apiserver's own audiences only.
    let matched: Vec<String> = audiences.iter().filter(|a| own.contains(a)).cloned().collect();
    if !own.is_empty() && matched.is_empty() {
        return refused("invalid bearer token, token audiences are not accepted");
    }
    match server.authenticator.authenticate(&Credentials { bearer_token: Some(token), ..Default::default() }) {
        Ok(u) => json!({"authenticated": true, "user": user_json(&u), "audiences": matched}),
        Err(_) => refused("invalid bearer token"),
    }
}

/// Answers a review; the result echoes the request with `status` filled in.
pub fn review(
    server: &ApiServer,
    d: &ResourceDescriptor,
    kind: ReviewKind,
    caller: &UserInfo,
    namespace: &str,
    mut obj: Value,
) -> Result<Value, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    obj["apiVersion"] = json!(d.api_version());
    obj["kind"] = json!(d.kind);
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]["creationTimestamp"] = Value::Null;
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let status = match kind {
        ReviewKind::SelfSubject => json!({"userInfo": user_json(caller)}),
        ReviewKind::Token => token_review_status(server, &spec),
        ReviewKind::SelfSubjectAccess => access_status(server, &attributes(caller.clone(), &spec, None)?),
        ReviewKind::SubjectAccess | ReviewKind::LocalSubjectAccess => {
            let subject = UserInfo {
                name: spec["user"].as_str().unwrap_or_default().to_string(),
                uid: spec["uid"].as_str().unwrap_or_default().to_string(),
                groups: spec["groups"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|g| g.as_str().map(String::from)).collect())
                    .unwrap_or_default(),
                extra: serde_json::from_value(spec["extra"].clone()).unwrap_or_default(),
            };
            let forced = (kind == ReviewKind::LocalSubjectAccess).then_some(namespace);
            access_status(server, &attributes(subject, &spec, forced)?)
        }
        ReviewKind::SelfSubjectRules => {
            let ns = spec["namespace"].as_str().unwrap_or_default();
            serde_json::to_value(server.authorizer.rules_for(caller, ns).to_review_status()).unwrap_or(json!({}))
        }
    };
    obj["status"] = status;
    Ok(obj)
}
