//! Whether one `PolicyRule` allows a request: upstream's `RuleAllows` and the
//! per-field matchers behind it.

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::attributes::Attributes;

/// Matches every verb.
pub const VERB_ALL: &str = "*";
/// Matches every API group.
pub const API_GROUP_ALL: &str = "*";
/// Matches every resource and every subresource.
pub const RESOURCE_ALL: &str = "*";
/// Matches every non-resource URL.
pub const NON_RESOURCE_ALL: &str = "*";

pub(crate) fn strings(field: &Option<Vec<String>>) -> &[String] {
    field.as_deref().unwrap_or_default()
}

/// Whether `rule` allows the request described by `attrs`.
///
/// A resource request needs a matching verb, API group, resource (the combined
/// `resource/subresource`) and resource name (when the rule lists names); a
/// non-resource request needs a matching verb and URL.
pub fn rule_allows(attrs: &Attributes, rule: &PolicyRule) -> bool {
    if !verb_matches(rule, &attrs.verb) {
        return false;
    }
    if attrs.is_resource_request {
        api_group_matches(rule, &attrs.api_group)
            && resource_matches(rule, &attrs.resource, &attrs.subresource)
            && resource_name_matches(rule, &attrs.name)
    } else {
        non_resource_url_matches(rule, &attrs.path)
    }
}

/// Whether any of `rules` allows the request.
pub fn rules_allow(attrs: &Attributes, rules: &[PolicyRule]) -> bool {
    rules.iter().any(|rule| rule_allows(attrs, rule))
}

pub fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == VERB_ALL || v == verb)
}

pub fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    strings(&rule.api_groups).iter().any(|g| g == API_GROUP_ALL || g == group)
}

/// Matches `*`, the exact `resource` or `resource/subresource`, and `*/subresource`
/// for subresource requests. `pods/*` is not a wildcard upstream: it only matches
/// a subresource literally named `*`.
pub fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    strings(&rule.resources).iter().any(|r| {
        if r == RESOURCE_ALL {
            return true;
        }
        if subresource.is_empty() {
            return r == resource;
        }
        match r.split_once('/') {
            Some((rule_resource, rule_subresource)) => {
                rule_subresource == subresource && (rule_resource == resource || rule_resource == "*")
            }
            None => false,
        }
    })
}

/// A rule without resource names matches every name (including none); one with
/// names matches only those, so it never allows `list`, `watch` or `create`
/// without a name.
pub fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    let names = strings(&rule.resource_names);
    names.is_empty() || names.iter().any(|n| n == name)
}

/// Matches `*`, the exact path, or a prefix when the rule's URL ends in `*`.
pub fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    strings(&rule.non_resource_urls).iter().any(|url| {
        url == NON_RESOURCE_ALL || url == path || (url.ends_with('*') && path.starts_with(url.trim_end_matches('*')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::UserInfo;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let owned = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        PolicyRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            api_groups: owned(groups),
            resources: owned(resources),
            resource_names: if names.is_empty() { None } else { owned(names) },
            non_resource_urls: None,
        }
    }

    fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            non_resource_urls: Some(urls.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn request(verb: &str, group: &str, resource: &str, subresource: &str, name: &str) -> Attributes {
        Attributes::resource(UserInfo::default(), verb, group, resource)
            .with_subresource(subresource)
            .named(name)
            .in_namespace("ns")
    }

    #[test]
    fn wildcards_match_every_verb_group_and_resource() {
        let r = rule(&["*"], &["*"], &["*"], &[]);
        assert!(rule_allows(&request("escalate", "rbac.authorization.k8s.io", "roles", "", ""), &r));
        assert!(rule_allows(&request("create", "", "pods", "exec", "x"), &r));
    }

    #[test]
    fn subresources_need_their_own_grant() {
        let pods = rule(&["get"], &[""], &["pods"], &[]);
        assert!(rule_allows(&request("get", "", "pods", "", "x"), &pods));
        assert!(!rule_allows(&request("get", "", "pods", "log", "x"), &pods));

        let log = rule(&["get"], &[""], &["pods/log"], &[]);
        assert!(rule_allows(&request("get", "", "pods", "log", "x"), &log));
        assert!(!rule_allows(&request("get", "", "pods", "", "x"), &log));
        assert!(!rule_allows(&request("get", "", "pods", "exec", "x"), &log));
    }

    #[test]
    fn star_slash_subresource_matches_that_subresource_of_any_resource() {
        let scale = rule(&["get", "update"], &["*"], &["*/scale"], &[]);
        assert!(rule_allows(&request("update", "apps", "deployments", "scale", "web"), &scale));
        assert!(rule_allows(&request("get", "", "replicationcontrollers", "scale", "rc"), &scale));
        assert!(!rule_allows(&request("get", "apps", "deployments", "status", "web"), &scale));
        assert!(!rule_allows(&request("get", "apps", "deployments", "", "web"), &scale));
        // a subresource whose name ends like the rule's must not match
        assert!(!rule_allows(&request("get", "x", "foos", "rescale", "a"), &scale));
    }

    #[test]
    fn resource_slash_star_is_not_a_subresource_wildcard() {
        let r = rule(&["get"], &[""], &["pods/*"], &[]);
        assert!(!rule_allows(&request("get", "", "pods", "log", "x"), &r));
        assert!(!rule_allows(&request("get", "", "pods", "", "x"), &r));
    }

    #[test]
    fn resource_names_restrict_to_named_objects() {
        let r = rule(&["get", "list", "update"], &[""], &["configmaps"], &["cluster-info"]);
        assert!(rule_allows(&request("get", "", "configmaps", "", "cluster-info"), &r));
        assert!(!rule_allows(&request("get", "", "configmaps", "", "other"), &r));
        assert!(!rule_allows(&request("list", "", "configmaps", "", ""), &r));
    }

    #[test]
    fn groups_must_match_exactly() {
        let r = rule(&["get"], &["apps"], &["deployments"], &[]);
        assert!(rule_allows(&request("get", "apps", "deployments", "", "x"), &r));
        assert!(!rule_allows(&request("get", "extensions", "deployments", "", "x"), &r));
        assert!(!rule_allows(&request("get", "", "deployments", "", "x"), &r));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_trailing_star_prefix() {
        let r = url_rule(&["get"], &["/healthz", "/apis/*", "/version"]);
        let req = |path: &str| Attributes::non_resource(UserInfo::default(), "get", path);
        assert!(rule_allows(&req("/healthz"), &r));
        assert!(!rule_allows(&req("/healthz/etcd"), &r));
        assert!(rule_allows(&req("/apis/apps/v1"), &r));
        assert!(rule_allows(&req("/apis/"), &r));
        assert!(!rule_allows(&req("/apis"), &r));
        assert!(!rule_allows(&req("/version/"), &r));
        assert!(!rule_allows(&Attributes::non_resource(UserInfo::default(), "post", "/healthz"), &r));
        assert!(rule_allows(&req("/anything"), &url_rule(&["*"], &["*"])));
    }

    #[test]
    fn resource_rules_never_match_non_resource_requests_and_back() {
        let resources = rule(&["*"], &["*"], &["*"], &[]);
        assert!(!rule_allows(&Attributes::non_resource(UserInfo::default(), "get", "/api"), &resources));
        let urls = url_rule(&["*"], &["*"]);
        assert!(!rule_allows(&request("get", "", "pods", "", ""), &urls));
    }
}
