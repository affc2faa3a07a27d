//! Privilege-escalation prevention: a user may only write a Role, ClusterRole or
//! binding granting rules they already hold (upstream's `Covers` and
//! `ConfirmNoEscalation`), unless the caller's authorizer grants them `escalate`
//! on the role or `bind` on the referenced role; see [`escalate_attributes`] and
//! [`bind_attributes`] for those checks, which the caller runs.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};

use crate::attributes::Attributes;
use crate::quote::{go_quote, go_quote_list};
use crate::rule::{strings, API_GROUP_ALL, RESOURCE_ALL, VERB_ALL};
use crate::user::{UserInfo, SYSTEM_PRIVILEGED_GROUP};

/// Splits a rule into rules of one verb, one group, one resource and at most one
/// resource name (or one verb and one URL), which together allow exactly what
/// the rule allows.
pub fn breakdown_rule(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| Some(vec![s.clone()]);
    let mut subrules = Vec::new();
    for group in strings(&rule.api_groups) {
        for resource in strings(&rule.resources) {
            for verb in &rule.verbs {
                let base = PolicyRule {
                    api_groups: one(group),
                    resources: one(resource),
                    verbs: vec![verb.clone()],
                    ..Default::default()
                };
                let names = strings(&rule.resource_names);
                if names.is_empty() {
                    subrules.push(base);
                } else {
                    subrules.extend(names.iter().map(|name| PolicyRule { resource_names: one(name), ..base.clone() }));
                }
            }
        }
    }
    for url in strings(&rule.non_resource_urls) {
        for verb in &rule.verbs {
            subrules.push(PolicyRule { non_resource_urls: one(url), verbs: vec![verb.clone()], ..Default::default() });
        }
    }
    subrules
}

fn has(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == item)
}

fn has_all(set: &[String], items: &[String]) -> bool {
    items.iter().all(|item| has(set, item))
}

fn resources_cover(owner: &[String], requested: &[String]) -> bool {
    if has(owner, RESOURCE_ALL) {
        return true;
    }
    requested.iter().all(|resource| {
        has(owner, resource)
            || resource.split_once('/').is_some_and(|(_, subresource)| has(owner, &format!("*/{subresource}")))
    })
}

fn non_resource_url_covers(owner: &str, requested: &str) -> bool {
    owner == requested || (owner.ends_with('*') && requested.starts_with(owner.trim_end_matches('*')))
}

fn non_resource_urls_cover(owner: &[String], requested: &[String]) -> bool {
    requested.iter().all(|url| owner.iter().any(|o| non_resource_url_covers(o, url)))
}

/// Whether `owner` covers a broken-down `subrule` (upstream's `ruleCovers`).
fn rule_covers(owner: &PolicyRule, subrule: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, VERB_ALL) || has_all(&owner.verbs, &subrule.verbs);
    let owner_groups = strings(&owner.api_groups);
    let groups = has(owner_groups, API_GROUP_ALL) || has_all(owner_groups, strings(&subrule.api_groups));
    let resources = resources_cover(strings(&owner.resources), strings(&subrule.resources));
    let urls = non_resource_urls_cover(strings(&owner.non_resource_urls), strings(&subrule.non_resource_urls));
    let owner_names = strings(&owner.resource_names);
    let sub_names = strings(&subrule.resource_names);
    let names = owner_names.is_empty() || (!sub_names.is_empty() && has_all(owner_names, sub_names));
    verbs && groups && resources && names && urls
}

/// Whether `owner_rules` allow everything `servant_rules` do (upstream's
/// `Covers`); the second value holds the broken-down rules not covered.
///
/// A rule with resource names is only covered by a rule with no names or with
/// all of them; `*` in the servant's rules is only covered by `*` in the owner's.
pub fn covers(owner_rules: &[PolicyRule], servant_rules: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let uncovered: Vec<PolicyRule> = servant_rules
        .iter()
        .flat_map(breakdown_rule)
        .filter(|subrule| !owner_rules.iter().any(|owner| rule_covers(owner, subrule)))
        .collect();
    (uncovered.is_empty(), uncovered)
}

/// `Ok` when `owner_rules` (the writer's, from [`crate::rules_for`] in the
/// object's namespace) cover `requested` (the rules the written Role or
/// ClusterRole, or the role a binding references, grants); otherwise the missing
/// rules, broken down then compacted, for [`escalation_message`].
pub fn confirm_no_escalation(owner_rules: &[PolicyRule], requested: &[PolicyRule]) -> Result<(), Vec<PolicyRule>> {
    match covers(owner_rules, requested) {
        (true, _) => Ok(()),
        (false, missing) => Err(compact_rules(&missing)),
    }
}

/// Merges the verbs of rules naming one group and one resource (and at most one
/// resource name) into one rule per group/resource/name; other rules stay as
/// they are (upstream's `CompactRules`).
pub fn compact_rules(rules: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut compacted = Vec::new();
    let mut simple: Vec<PolicyRule> = Vec::new();
    let mut index: HashMap<(String, String, Option<String>), usize> = HashMap::new();
    for rule in rules {
        let groups = strings(&rule.api_groups);
        let resources = strings(&rule.resources);
        let names = strings(&rule.resource_names);
        let is_simple = groups.len() == 1
            && resources.len() == 1
            && names.len() <= 1
            && strings(&rule.non_resource_urls).is_empty();
        if !is_simple {
            compacted.push(rule.clone());
            continue;
        }
        let key = (groups[0].clone(), resources[0].clone(), names.first().cloned());
        match index.get(&key) {
            Some(&i) => simple[i].verbs.extend(rule.verbs.iter().cloned()),
            None => {
                index.insert(key, simple.len());
                simple.push(rule.clone());
            }
        }
    }
    compacted.extend(simple);
    compacted
}

/// Upstream's `CompactString`, e.g. `{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}`.
pub fn compact_string(rule: &PolicyRule) -> String {
    let mut parts = Vec::new();
    let fields = [
        ("APIGroups", strings(&rule.api_groups)),
        ("Resources", strings(&rule.resources)),
        ("NonResourceURLs", strings(&rule.non_resource_urls)),
        ("ResourceNames", strings(&rule.resource_names)),
        ("Verbs", rule.verbs.as_slice()),
    ];
    for (label, values) in fields {
        if !values.is_empty() {
            parts.push(format!("{label}:{}", go_quote_list(values)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// Upstream's refusal, which the apiserver returns as a 403 Forbidden on the
/// RBAC object: `user "alice" (groups=["system:authenticated"]) is attempting
/// to grant RBAC permissions not currently held:` and one sorted line per rule.
pub fn escalation_message(user: &UserInfo, missing: &[PolicyRule]) -> String {
    let lines: BTreeSet<String> = missing.iter().map(compact_string).collect();
    format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quote(&user.name),
        go_quote_list(&user.groups),
        lines.into_iter().collect::<Vec<_>>().join("\n")
    )
}

/// Upstream's `EscalationAllowed`: members of `system:masters` skip the check.
pub fn escalation_allowed(user: &UserInfo) -> bool {
    user.in_group(SYSTEM_PRIVILEGED_GROUP)
}

/// The request to authorize before letting `user` write a Role or ClusterRole
/// whose rules they do not hold: `escalate` on that role (upstream's
/// `RoleEscalationAuthorized`). `resource` is `roles` or `clusterroles`;
/// `namespace` is empty for ClusterRoles.
pub fn escalate_attributes(user: &UserInfo, resource: &str, namespace: &str, name: &str) -> Attributes {
    Attributes::resource(user.clone(), "escalate", crate::builder::RBAC_GROUP, resource)
        .with_api_version("v1")
        .in_namespace(namespace)
        .named(name)
}

/// The request to authorize before letting `user` write a binding to a role
/// whose rules they do not hold: `bind` on the referenced role, checked in the
/// binding's namespace (empty for ClusterRoleBindings), as upstream's
/// `BindingAuthorized`. `None` for a role reference of an unknown kind.
pub fn bind_attributes(user: &UserInfo, role_ref: &RoleRef, binding_namespace: &str) -> Option<Attributes> {
    let resource = match role_ref.kind.as_str() {
        "ClusterRole" => "clusterroles",
        "Role" => "roles",
        _ => return None,
    };
    Some(
        Attributes::resource(user.clone(), "bind", role_ref.api_group.clone(), resource)
            .in_namespace(binding_namespace)
            .named(role_ref.name.clone()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::rule;

    #[test]
    fn identical_and_wider_rules_cover() {
        let requested = [rule(&["get", "list"]).groups(&[""]).resources(&["pods", "services"]).build()];
        assert_eq!(covers(&requested, &requested), (true, vec![]));

        let admin = [rule(&["*"]).groups(&["*"]).resources(&["*"]).build()];
        assert!(covers(&admin, &requested).0);

        let split = [
            rule(&["get"]).groups(&[""]).resources(&["pods", "services"]).build(),
            rule(&["list"]).groups(&[""]).resources(&["services", "pods"]).build(),
        ];
        assert!(covers(&split, &requested).0);
    }

    #[test]
    fn missing_verbs_are_reported_broken_down() {
        let owner = [rule(&["get"]).groups(&[""]).resources(&["pods"]).build()];
        let requested = [rule(&["get", "delete"]).groups(&[""]).resources(&["pods"]).build()];
        let (covered, missing) = covers(&owner, &requested);
        assert!(!covered);
        assert_eq!(missing, vec![rule(&["delete"]).groups(&[""]).resources(&["pods"]).build()]);
    }

    #[test]
    fn wildcards_requested_need_wildcards_held() {
        let owner = [rule(&["get", "list", "watch"]).groups(&[""]).resources(&["pods"]).build()];
        assert!(!covers(&owner, &[rule(&["*"]).groups(&[""]).resources(&["pods"]).build()]).0);
        assert!(!covers(&owner, &[rule(&["get"]).groups(&["*"]).resources(&["pods"]).build()]).0);
        assert!(!covers(&owner, &[rule(&["get"]).groups(&[""]).resources(&["*"]).build()]).0);
    }

    #[test]
    fn subresources_are_covered_by_exact_or_star_slash_rules_only() {
        let owner = [rule(&["get"]).groups(&["*"]).resources(&["pods", "*/status"]).build()];
        assert!(covers(&owner, &[rule(&["get"]).groups(&["apps"]).resources(&["deployments/status"]).build()]).0);
        assert!(!covers(&owner, &[rule(&["get"]).groups(&[""]).resources(&["pods/log"]).build()]).0);
        assert!(!covers(&owner, &[rule(&["get"]).groups(&[""]).resources(&["*/log"]).build()]).0);
    }

    #[test]
    fn resource_names_are_covered_by_no_names_or_the_same_names() {
        let unnamed = [rule(&["get"]).groups(&[""]).resources(&["secrets"]).build()];
        let named = [rule(&["get"]).groups(&[""]).resources(&["secrets"]).names(&["a", "b"]).build()];
        let requested_a = [rule(&["get"]).groups(&[""]).resources(&["secrets"]).names(&["a"]).build()];
        let requested_c = [rule(&["get"]).groups(&[""]).resources(&["secrets"]).names(&["c"]).build()];
        assert!(covers(&unnamed, &requested_a).0);
        assert!(covers(&named, &requested_a).0);
        assert!(!covers(&named, &requested_c).0);
        assert!(!covers(&named, &unnamed).0);
    }

    #[test]
    fn non_resource_urls_are_covered_by_exact_or_star_prefix_urls() {
        let owner = [rule(&["get"]).urls(&["/healthz", "/apis/*"]).build()];
        assert!(covers(&owner, &[rule(&["get"]).urls(&["/healthz", "/apis/apps"]).build()]).0);
        assert!(!covers(&owner, &[rule(&["get"]).urls(&["/metrics"]).build()]).0);
        assert!(!covers(&owner, &[rule(&["post"]).urls(&["/healthz"]).build()]).0);
        assert!(!covers(&owner, &[rule(&["get"]).urls(&["*"]).build()]).0);
        // resource rules never cover URLs and back
        let admin = [rule(&["*"]).groups(&["*"]).resources(&["*"]).build()];
        assert!(!covers(&admin, &[rule(&["get"]).urls(&["/healthz"]).build()]).0);
        assert!(covers(&[rule(&["*"]).urls(&["*"]).build()], &[rule(&["get"]).urls(&["/healthz"]).build()]).0);
    }

    #[test]
    fn confirm_no_escalation_compacts_what_is_missing() {
        let owner = [rule(&["get"]).groups(&[""]).resources(&["pods"]).build()];
        let requested = [
            rule(&["get", "list", "delete"]).groups(&[""]).resources(&["pods", "secrets"]).build(),
            rule(&["get"]).urls(&["/metrics"]).build(),
        ];
        assert_eq!(confirm_no_escalation(&owner, &owner), Ok(()));
        let missing = confirm_no_escalation(&owner, &requested).unwrap_err();
        let described: Vec<String> = missing.iter().map(compact_string).collect();
        assert_eq!(
            described,
            vec![
                r#"{NonResourceURLs:["/metrics"], Verbs:["get"]}"#,
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete" "list"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["delete" "get" "list"]}"#,
            ]
        );
        let user = UserInfo::new("alice", ["devs", "system:authenticated"]);
        assert_eq!(
            escalation_message(&user, &missing),
            "user \"alice\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
             {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\" \"list\"]}\n\
             {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"delete\" \"get\" \"list\"]}\n\
             {NonResourceURLs:[\"/metrics\"], Verbs:[\"get\"]}"
        );
    }

    #[test]
    fn escalate_and_bind_checks_target_the_role() {
        let user = UserInfo::new("alice", ["system:authenticated"]);
        assert!(!escalation_allowed(&user));
        assert!(escalation_allowed(&UserInfo::new("root", ["system:masters"])));

        let attrs = escalate_attributes(&user, "clusterroles", "", "edit");
        assert_eq!(
            (attrs.verb.as_str(), attrs.resource.as_str(), attrs.name.as_str()),
            ("escalate", "clusterroles", "edit")
        );
        assert_eq!(attrs.api_group, "rbac.authorization.k8s.io");

        let role_ref =
            RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "ClusterRole".into(), name: "view".into() };
        let attrs = bind_attributes(&user, &role_ref, "dev").unwrap();
        assert_eq!(
            (attrs.verb.as_str(), attrs.resource.as_str(), attrs.name.as_str()),
            ("bind", "clusterroles", "view")
        );
        assert_eq!(attrs.namespace, "dev");
        let bad = RoleRef { kind: "Other".into(), ..role_ref };
        assert!(bind_attributes(&user, &bad, "dev").is_none());
    }
}
