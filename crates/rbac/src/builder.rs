//! Small builders for rules, subjects and bindings (upstream's `rbacv1helpers`
//! `NewRule(...).Groups(...).Resources(...)`), used by the bootstrap policy.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The RBAC API group, used in role references and User/Group subjects.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn sorted(mut items: Vec<String>) -> Option<Vec<String>> {
    if items.is_empty() {
        return None;
    }
    items.sort();
    Some(items)
}

/// Starts a rule for `verbs`.
pub fn rule(verbs: &[&str]) -> RuleBuilder {
    RuleBuilder { verbs: owned(verbs), ..Default::default() }
}

/// A policy rule under construction. [`build`](Self::build) sorts verbs,
/// resources, names and URLs as upstream's builder does; API groups keep their order.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct RuleBuilder {
    verbs: Vec<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    names: Vec<String>,
    urls: Vec<String>,
}

impl RuleBuilder {
    pub fn groups(mut self, groups: &[&str]) -> Self {
        self.groups.extend(owned(groups));
        self
    }

    pub fn resources(mut self, resources: &[&str]) -> Self {
        self.resources.extend(owned(resources));
        self
    }

    pub fn names(mut self, names: &[&str]) -> Self {
        self.names.extend(owned(names));
        self
    }

    pub fn urls(mut self, urls: &[&str]) -> Self {
        self.urls.extend(owned(urls));
        self
    }

    /// The rule. Panics on what upstream's `RuleOrDie` refuses: no verbs, a
    /// resource rule without groups, or URLs mixed with resources; the builder
    /// only makes static policy, so that is a programming error.
    pub fn build(self) -> PolicyRule {
        assert!(!self.verbs.is_empty(), "a policy rule needs verbs");
        if self.urls.is_empty() {
            assert!(!self.resources.is_empty(), "a policy rule needs resources or URLs");
            assert!(!self.groups.is_empty(), "a resource rule needs API groups");
        } else {
            assert!(
                self.groups.is_empty() && self.resources.is_empty() && self.names.is_empty(),
                "a non-resource rule takes only verbs and URLs"
            );
        }
        PolicyRule {
            verbs: sorted(self.verbs).unwrap_or_default(),
            api_groups: (!self.groups.is_empty()).then_some(self.groups),
            resources: sorted(self.resources),
            resource_names: sorted(self.names),
            non_resource_urls: sorted(self.urls),
        }
    }
}

pub fn subject_user(name: &str) -> Subject {
    Subject { api_group: Some(RBAC_GROUP.into()), kind: "User".into(), name: name.into(), namespace: None }
}

pub fn subject_group(name: &str) -> Subject {
    Subject { api_group: Some(RBAC_GROUP.into()), kind: "Group".into(), name: name.into(), namespace: None }
}

pub fn subject_service_account(namespace: &str, name: &str) -> Subject {
    Subject { api_group: None, kind: "ServiceAccount".into(), name: name.into(), namespace: Some(namespace.into()) }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef { api_group: RBAC_GROUP.into(), kind: kind.into(), name: name.into() }
}

/// A ClusterRoleBinding named like the ClusterRole it binds.
pub fn cluster_role_binding(role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta { name: Some(role.into()), ..Default::default() },
        role_ref: role_ref("ClusterRole", role),
        subjects: (!subjects.is_empty()).then_some(subjects),
    }
}

/// A RoleBinding of the Role `role` in `namespace`, named `name`.
pub fn role_binding(namespace: &str, name: &str, role: &str, subjects: Vec<Subject>) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(namespace.into()), ..Default::default() },
        role_ref: role_ref("Role", role),
        subjects: (!subjects.is_empty()).then_some(subjects),
    }
}

/// Object metadata with a name, optional namespace and labels.
pub(crate) fn object_meta(namespace: Option<&str>, name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        labels: (!labels.is_empty()).then_some(labels),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_sort_verbs_resources_and_names_but_keep_group_order() {
        let r = rule(&["watch", "get"])
            .groups(&["", "events.k8s.io"])
            .resources(&["pods", "events"])
            .names(&["b", "a"])
            .build();
        assert_eq!(r.verbs, vec!["get", "watch"]);
        assert_eq!(r.api_groups, Some(vec!["".to_string(), "events.k8s.io".to_string()]));
        assert_eq!(r.resources, Some(vec!["events".to_string(), "pods".to_string()]));
        assert_eq!(r.resource_names, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(r.non_resource_urls, None);

        let r = rule(&["get"]).urls(&["/version", "/healthz"]).build();
        assert_eq!(r.non_resource_urls, Some(vec!["/healthz".to_string(), "/version".to_string()]));
        assert_eq!(r.api_groups, None);
    }

    #[test]
    #[should_panic(expected = "a resource rule needs API groups")]
    fn resource_rules_without_groups_are_refused() {
        let _ = rule(&["get"]).resources(&["pods"]).build();
    }
}
