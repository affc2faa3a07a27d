//! The wording of a 403 from the apiserver's authorization filter (upstream's
//! `responsewriters.Forbidden` wrapped in `apierrors.NewForbidden`).

use crate::attributes::Attributes;
use crate::quote::go_quote;

/// Upstream escapes these so an error never reads as HTML; quotes are kept.
fn sanitize(message: &str) -> String {
    message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Upstream's `forbiddenMessage`: who cannot do what, without the
/// `... is forbidden:` prefix.
pub fn forbidden_reason(attrs: &Attributes) -> String {
    let user = go_quote(&attrs.user.name);
    if !attrs.is_resource_request {
        return format!("User {user} cannot {} path {}", attrs.verb, go_quote(&attrs.path));
    }
    let resource = go_quote(&attrs.combined_resource());
    let group = go_quote(&attrs.api_group);
    if attrs.namespace.is_empty() {
        format!("User {user} cannot {} resource {resource} in API group {group} at the cluster scope", attrs.verb)
    } else {
        let namespace = go_quote(&attrs.namespace);
        format!(
            "User {user} cannot {} resource {resource} in API group {group} in the namespace {namespace}",
            attrs.verb
        )
    }
}

/// The `message` of the 403 Status the apiserver returns when no authorizer
/// allowed `attrs`, e.g. `pods "x" is forbidden: User "alice" cannot get
/// resource "pods" in API group "" in the namespace "default"` or, for a
/// non-resource request, `forbidden: User "system:anonymous" cannot get path "/api"`.
pub fn forbidden_message(attrs: &Attributes) -> String {
    forbidden_message_with_reason(attrs, "")
}

/// [`forbidden_message`] with the authorizer's reason appended after `: ` when
/// not empty (as the Node authorizer's `no relationship found between node ...`).
pub fn forbidden_message_with_reason(attrs: &Attributes, reason: &str) -> String {
    let mut detail = sanitize(&forbidden_reason(attrs));
    if !reason.is_empty() {
        detail.push_str(": ");
        detail.push_str(reason);
    }
    let qualified = match (attrs.resource.as_str(), attrs.api_group.as_str()) {
        ("", "") => String::new(),
        (resource, "") => resource.to_string(),
        (resource, group) => format!("{resource}.{group}"),
    };
    match (qualified.is_empty(), attrs.name.is_empty()) {
        (true, _) => format!("forbidden: {detail}"),
        (false, true) => format!("{qualified} is forbidden: {detail}"),
        (false, false) => format!("{qualified} {} is forbidden: {detail}", go_quote(&attrs.name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::UserInfo;

    fn alice() -> UserInfo {
        UserInfo::new("alice", ["system:authenticated"])
    }

    #[test]
    fn namespaced_lists_name_the_resource_and_namespace() {
        let attrs = Attributes::resource(alice(), "list", "", "pods").in_namespace("default");
        assert_eq!(
            forbidden_message(&attrs),
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
        );
    }

    #[test]
    fn named_requests_quote_the_name() {
        let attrs = Attributes::resource(alice(), "get", "", "pods").in_namespace("default").named("x");
        assert_eq!(
            forbidden_message(&attrs),
            r#"pods "x" is forbidden: User "alice" cannot get resource "pods" in API group "" in the namespace "default""#
        );
    }

    #[test]
    fn subresources_join_the_resource_in_the_reason_only() {
        let attrs = Attributes::resource(alice(), "create", "", "pods")
            .in_namespace("default")
            .named("x")
            .with_subresource("exec");
        assert_eq!(
            forbidden_message(&attrs),
            r#"pods "x" is forbidden: User "alice" cannot create resource "pods/exec" in API group "" in the namespace "default""#
        );
    }

    #[test]
    fn grouped_resources_are_qualified_by_group() {
        let attrs = Attributes::resource(alice(), "delete", "apps", "deployments").in_namespace("prod").named("web");
        assert_eq!(
            forbidden_message(&attrs),
            r#"deployments.apps "web" is forbidden: User "alice" cannot delete resource "deployments" in API group "apps" in the namespace "prod""#
        );
    }

    #[test]
    fn cluster_scoped_requests_say_cluster_scope() {
        let attrs = Attributes::resource(alice(), "list", "", "nodes");
        assert_eq!(
            forbidden_message(&attrs),
            r#"nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#
        );
    }

    #[test]
    fn non_resource_requests_name_the_path() {
        let attrs = Attributes::non_resource(UserInfo::anonymous(), "get", "/api");
        assert_eq!(forbidden_message(&attrs), r#"forbidden: User "system:anonymous" cannot get path "/api""#);
    }

    #[test]
    fn reasons_are_appended_and_html_is_escaped() {
        let attrs = Attributes::resource(UserInfo::new("system:node:n1", ["system:nodes"]), "get", "", "secrets")
            .in_namespace("default")
            .named("s");
        assert_eq!(
            forbidden_message_with_reason(&attrs, "no relationship found between node 'n1' and this object"),
            r#"secrets "s" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'n1' and this object"#
        );
        let attrs = Attributes::non_resource(UserInfo::new("<b>", Vec::<String>::new()), "get", "/a&b");
        assert_eq!(forbidden_message(&attrs), r#"forbidden: User "&lt;b&gt;" cannot get path "/a&amp;b""#);
    }
}
