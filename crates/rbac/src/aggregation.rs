//! ClusterRole aggregation: a ClusterRole with `aggregationRule.clusterRoleSelectors`
//! gets the rules of every other ClusterRole whose labels a selector matches
//! (upstream's clusterrole-aggregation controller).

use std::collections::BTreeMap;

use apimachinery::selector::label::LabelSelector;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};

/// A rule with absent and empty lists treated alike, as upstream's semantic
/// equality does, so `resourceNames: []` and no `resourceNames` are one rule.
fn same_rule(a: &PolicyRule, b: &PolicyRule) -> bool {
    let list = |l: &Option<Vec<String>>| l.clone().unwrap_or_default();
    a.verbs == b.verbs
        && list(&a.api_groups) == list(&b.api_groups)
        && list(&a.resources) == list(&b.resources)
        && list(&a.resource_names) == list(&b.resource_names)
        && list(&a.non_resource_urls) == list(&b.non_resource_urls)
}

fn selectors(role: &ClusterRole) -> Option<Result<Vec<LabelSelector>, String>> {
    let rule = role.aggregation_rule.as_ref()?;
    let parsed = rule
        .cluster_role_selectors
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|selector| {
            let value = serde_json::to_value(selector).map_err(|e| e.to_string())?;
            LabelSelector::from_json(&value).map_err(|e| e.to_string())
        })
        .collect();
    Some(parsed)
}

/// One aggregation step for `role` over the current `cluster_roles`, as the
/// controller's sync does: for each selector in order, the matching ClusterRoles
/// other than `role` by name, their rules appended unless already present.
/// `None` when `role` does not aggregate; `Err` when a selector is invalid (the
/// controller then leaves the role alone).
pub fn aggregate_one(role: &ClusterRole, cluster_roles: &[ClusterRole]) -> Option<Result<Vec<PolicyRule>, String>> {
    let selectors = match selectors(role)? {
        Ok(selectors) => selectors,
        Err(err) => return Some(Err(err)),
    };
    let name = role.metadata.name.as_deref().unwrap_or_default();
    let mut by_name: Vec<&ClusterRole> = cluster_roles.iter().collect();
    by_name.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let mut rules: Vec<PolicyRule> = Vec::new();
    let no_labels = BTreeMap::new();
    for selector in &selectors {
        for source in &by_name {
            if source.metadata.name.as_deref().unwrap_or_default() == name {
                continue;
            }
            if !selector.matches(source.metadata.labels.as_ref().unwrap_or(&no_labels)) {
                continue;
            }
            for rule in source.rules.as_deref().unwrap_or_default() {
                if !rules.iter().any(|r| same_rule(r, rule)) {
                    rules.push(rule.clone());
                }
            }
        }
    }
    Some(Ok(rules))
}

/// The rules every aggregating ClusterRole ends up with once the controller has
/// settled: aggregation steps repeated until nothing changes, so chains like
/// `admin` ← `edit` ← `view` resolve in one call. Returns `(name, rules)` for
/// each ClusterRole with an `aggregationRule` whose selectors are valid, in the
/// input order; the caller writes back those whose rules differ.
pub fn aggregate(cluster_roles: &[ClusterRole]) -> Vec<(String, Vec<PolicyRule>)> {
    let mut current: Vec<ClusterRole> = cluster_roles.to_vec();
    // Each round carries rules at least one more link along a chain, so as many
    // rounds as roles settle any chain; the bound also ends odd cycles.
    for _ in 0..=current.len() {
        let mut changed = false;
        for i in 0..current.len() {
            let Some(Ok(rules)) = aggregate_one(&current[i], &current) else { continue };
            let existing = current[i].rules.as_deref().unwrap_or_default();
            let same = existing.len() == rules.len() && existing.iter().zip(&rules).all(|(a, b)| same_rule(a, b));
            if !same {
                current[i].rules = Some(rules);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    current
        .into_iter()
        .filter(|role| matches!(selectors(role), Some(Ok(_))))
        .map(|role| (role.metadata.name.unwrap_or_default(), role.rules.unwrap_or_default()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{object_meta, rule};
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as Selector, LabelSelectorRequirement};

    fn labelled(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
        ClusterRole { metadata: object_meta(None, name, labels), rules: Some(rules), aggregation_rule: None }
    }

    fn aggregating(name: &str, labels: &[(&str, &str)], selectors: Vec<Selector>) -> ClusterRole {
        ClusterRole {
            metadata: object_meta(None, name, labels),
            rules: None,
            aggregation_rule: Some(AggregationRule { cluster_role_selectors: Some(selectors) }),
        }
    }

    fn match_label(key: &str, value: &str) -> Selector {
        Selector { match_labels: Some([(key.to_string(), value.to_string())].into()), match_expressions: None }
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> Selector {
        Selector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
            }]),
        }
    }

    fn rules_of<'a>(result: &'a [(String, Vec<PolicyRule>)], name: &str) -> &'a [PolicyRule] {
        &result.iter().find(|(n, _)| n == name).expect("aggregated role").1
    }

    #[test]
    fn aggregation_collects_matching_roles_rules_through_chains() {
        let pods = rule(&["get"]).groups(&[""]).resources(&["pods"]).build();
        let secrets = rule(&["create"]).groups(&[""]).resources(&["secrets"]).build();
        let roles = vec![
            aggregating("admin", &[], vec![match_label("to-admin", "true")]),
            aggregating("edit", &[("to-admin", "true")], vec![match_label("to-edit", "true")]),
            aggregating("view", &[("to-edit", "true")], vec![match_label("to-view", "true")]),
            labelled("pod-reader", &[("to-view", "true")], vec![pods.clone()]),
            labelled("secret-writer", &[("to-edit", "true")], vec![secrets.clone()]),
            labelled("unrelated", &[("to-view", "false")], vec![rule(&["*"]).groups(&["*"]).resources(&["*"]).build()]),
        ];
        let result = aggregate(&roles);
        assert_eq!(result.len(), 3);
        assert_eq!(rules_of(&result, "view"), std::slice::from_ref(&pods));
        assert_eq!(rules_of(&result, "edit"), [secrets.clone(), pods.clone()]);
        assert_eq!(rules_of(&result, "admin"), [secrets, pods]);
    }

    #[test]
    fn one_step_aggregates_only_what_sources_hold_now() {
        let pods = rule(&["get"]).groups(&[""]).resources(&["pods"]).build();
        let roles = vec![
            aggregating("edit", &[], vec![match_label("to-edit", "true")]),
            aggregating("view", &[("to-edit", "true")], vec![match_label("to-view", "true")]),
            labelled("pod-reader", &[("to-view", "true")], vec![pods.clone()]),
        ];
        assert_eq!(aggregate_one(&roles[0], &roles), Some(Ok(vec![])));
        assert_eq!(aggregate_one(&roles[1], &roles), Some(Ok(vec![pods])));
        assert_eq!(aggregate_one(&roles[2], &roles), None);
    }

    #[test]
    fn selectors_support_match_expressions_and_duplicates_are_dropped() {
        let pods = rule(&["get"]).groups(&[""]).resources(&["pods"]).build();
        let nodes = rule(&["list"]).groups(&[""]).resources(&["nodes"]).build();
        let roles = vec![
            aggregating(
                "mixed",
                &[("tier", "a")],
                vec![expression("tier", "In", &["a", "b"]), expression("extra", "Exists", &[])],
            ),
            labelled("b", &[("tier", "b")], vec![pods.clone()]),
            labelled("c", &[("tier", "c"), ("extra", "")], vec![nodes.clone(), pods.clone()]),
            labelled("d", &[("tier", "d")], vec![rule(&["*"]).groups(&["*"]).resources(&["*"]).build()]),
        ];
        assert_eq!(rules_of(&aggregate(&roles), "mixed"), [pods.clone(), nodes.clone()]);

        let roles = vec![
            aggregating(
                "not-c",
                &[],
                vec![expression("tier", "NotIn", &["c"]), expression("tier", "DoesNotExist", &[])],
            ),
            labelled("b", &[("tier", "b")], vec![pods.clone()]),
            labelled("c", &[("tier", "c")], vec![nodes.clone()]),
            labelled("none", &[], vec![nodes.clone()]),
        ];
        // NotIn also matches roles without the label
        assert_eq!(rules_of(&aggregate(&roles), "not-c"), [pods, nodes]);
    }

    #[test]
    fn invalid_selectors_leave_the_role_out() {
        let roles = vec![
            aggregating("bad", &[], vec![expression("tier", "Sometimes", &["a"])]),
            aggregating("empty", &[], vec![]),
        ];
        let result = aggregate(&roles);
        assert_eq!(result, vec![("empty".to_string(), vec![])]);
        assert!(matches!(aggregate_one(&roles[0], &roles), Some(Err(_))));
    }

    #[test]
    fn an_empty_selector_matches_every_other_role() {
        let pods = rule(&["get"]).groups(&[""]).resources(&["pods"]).build();
        let roles =
            vec![aggregating("everything", &[], vec![Selector::default()]), labelled("a", &[], vec![pods.clone()])];
        assert_eq!(rules_of(&aggregate(&roles), "everything"), [pods]);
    }
}
