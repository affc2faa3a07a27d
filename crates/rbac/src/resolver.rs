//! Which rules apply to a user, and whether one of them allows a request:
//! upstream's `DefaultRuleResolver` and `RBACAuthorizer` over an [`RbacSource`].

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

use k8s_openapi::api::authorization::v1::{NonResourceRule, ResourceRule, SubjectRulesReviewStatus};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};

use crate::attributes::{Attributes, Decision};
use crate::quote::go_quote;
use crate::rule::{rule_allows, strings};
use crate::user::{service_account_matches, UserInfo};

/// The current RBAC objects, as the apiserver's watch caches hold them.
///
/// Objects come back in `Arc`s so a lookup per request costs a reference count,
/// not a deep copy. Listings may be in any order; the first allowing rule wins
/// and which one is only visible in the allow reason.
pub trait RbacSource {
    fn cluster_role(&self, name: &str) -> Option<Arc<ClusterRole>>;
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Role>>;
    fn cluster_role_bindings(&self) -> Vec<Arc<ClusterRoleBinding>>;
    fn role_bindings(&self, namespace: &str) -> Vec<Arc<RoleBinding>>;
}

/// Why a binding's rules could not be read. Rules are purely additive, so these
/// never deny: they only explain a `NoOpinion` (and make rule listings incomplete).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("role.rbac.authorization.k8s.io {} not found", go_quote(.name))]
    RoleNotFound { namespace: String, name: String },
    #[error("clusterrole.rbac.authorization.k8s.io {} not found", go_quote(.name))]
    ClusterRoleNotFound { name: String },
    #[error("unsupported role reference kind: {}", go_quote(.kind))]
    UnsupportedRoleRefKind { kind: String },
}

/// Upstream's `utilerrors.NewAggregate(errs).Error()`: one message alone,
/// several deduplicated in `[a, b]`.
pub fn aggregate_errors(errors: &[ResolveError]) -> String {
    let mut seen = HashSet::new();
    let messages: Vec<String> = errors.iter().map(ToString::to_string).filter(|m| seen.insert(m.clone())).collect();
    match messages.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// The binding (and which of its subjects) that made a rule apply.
#[derive(Clone, Copy, Debug)]
pub enum RuleOrigin<'a> {
    ClusterRoleBinding { binding: &'a ClusterRoleBinding, subject: &'a Subject },
    RoleBinding { binding: &'a RoleBinding, subject: &'a Subject },
}

/// Upstream's wording, e.g. `ClusterRoleBinding "cluster-admin" of ClusterRole
/// "cluster-admin" to Group "system:masters"`.
impl fmt::Display for RuleOrigin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleOrigin::ClusterRoleBinding { binding, subject } => {
                let name = binding.metadata.name.as_deref().unwrap_or_default();
                write!(
                    f,
                    "ClusterRoleBinding {} of {} {} to {}",
                    go_quote(name),
                    binding.role_ref.kind,
                    go_quote(&binding.role_ref.name),
                    describe_subject(subject, "")
                )
            }
            RuleOrigin::RoleBinding { binding, subject } => {
                let name = binding.metadata.name.as_deref().unwrap_or_default();
                let namespace = binding.metadata.namespace.as_deref().unwrap_or_default();
                write!(
                    f,
                    "RoleBinding {} of {} {} to {}",
                    go_quote(&format!("{name}/{namespace}")),
                    binding.role_ref.kind,
                    go_quote(&binding.role_ref.name),
                    describe_subject(subject, namespace)
                )
            }
        }
    }
}

fn describe_subject(subject: &Subject, binding_namespace: &str) -> String {
    if subject.kind == "ServiceAccount" {
        let namespace = subject.namespace.as_deref().filter(|ns| !ns.is_empty()).unwrap_or(binding_namespace);
        format!("{} {}", subject.kind, go_quote(&format!("{}/{namespace}", subject.name)))
    } else {
        format!("{} {}", subject.kind, go_quote(&subject.name))
    }
}

/// What [`visit_rules_for`] hands its visitor.
#[derive(Debug)]
pub enum RuleVisit<'a> {
    Rule { origin: RuleOrigin<'a>, rule: &'a PolicyRule },
    Error(ResolveError),
}

/// Whether a binding subject names `user`. Service-account subjects without a
/// namespace default to the binding's (none for ClusterRoleBindings, where they
/// then match nobody).
pub fn subject_matches(subject: &Subject, user: &UserInfo, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.name == subject.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            let namespace = subject.namespace.as_deref().filter(|ns| !ns.is_empty()).unwrap_or(binding_namespace);
            !namespace.is_empty() && service_account_matches(namespace, &subject.name, &user.name)
        }
        _ => false,
    }
}

fn first_matching_subject<'a>(subjects: &'a Option<Vec<Subject>>, user: &UserInfo, ns: &str) -> Option<&'a Subject> {
    subjects.as_deref().unwrap_or_default().iter().find(|s| subject_matches(s, user, ns))
}

/// The role a binding references, held while its rules are visited.
enum Resolved {
    Role(Arc<Role>),
    ClusterRole(Arc<ClusterRole>),
}

impl Resolved {
    fn rules(&self) -> &[PolicyRule] {
        match self {
            Resolved::Role(role) => role.rules.as_deref().unwrap_or_default(),
            Resolved::ClusterRole(role) => role.rules.as_deref().unwrap_or_default(),
        }
    }
}

fn resolve_role_ref(
    source: &dyn RbacSource,
    role_ref: &RoleRef,
    binding_namespace: &str,
) -> Result<Resolved, ResolveError> {
    match role_ref.kind.as_str() {
        "Role" => source.role(binding_namespace, &role_ref.name).map(Resolved::Role).ok_or_else(|| {
            ResolveError::RoleNotFound { namespace: binding_namespace.into(), name: role_ref.name.clone() }
        }),
        "ClusterRole" => source
            .cluster_role(&role_ref.name)
            .map(Resolved::ClusterRole)
            .ok_or_else(|| ResolveError::ClusterRoleNotFound { name: role_ref.name.clone() }),
        other => Err(ResolveError::UnsupportedRoleRefKind { kind: other.into() }),
    }
}

/// The rules bound by a role reference (upstream's `GetRoleReferenceRules`);
/// `binding_namespace` is empty for ClusterRoleBindings. A Role is looked up in
/// the binding's namespace; a ClusterRole referenced from a RoleBinding grants
/// its rules only there, since only the request namespace's RoleBindings are read.
pub fn role_ref_rules(
    source: &dyn RbacSource,
    role_ref: &RoleRef,
    binding_namespace: &str,
) -> Result<Vec<PolicyRule>, ResolveError> {
    resolve_role_ref(source, role_ref, binding_namespace).map(|r| r.rules().to_vec())
}

/// Calls `visitor` with every rule that applies to `user` in `namespace`, and
/// every error met on the way, until it breaks. ClusterRoleBindings come first;
/// RoleBindings only when `namespace` is not empty, so non-resource URLs and
/// cluster-scoped requests are only ever granted through ClusterRoleBindings.
pub fn visit_rules_for<F>(source: &dyn RbacSource, user: &UserInfo, namespace: &str, mut visitor: F)
where
    F: FnMut(RuleVisit<'_>) -> ControlFlow<()>,
{
    for binding in source.cluster_role_bindings() {
        let Some(subject) = first_matching_subject(&binding.subjects, user, "") else { continue };
        match resolve_role_ref(source, &binding.role_ref, "") {
            Ok(resolved) => {
                for rule in resolved.rules() {
                    let origin = RuleOrigin::ClusterRoleBinding { binding: &binding, subject };
                    if visitor(RuleVisit::Rule { origin, rule }).is_break() {
                        return;
                    }
                }
            }
            Err(err) => {
                if visitor(RuleVisit::Error(err)).is_break() {
                    return;
                }
            }
        }
    }
    if namespace.is_empty() {
        return;
    }
    for binding in source.role_bindings(namespace) {
        let Some(subject) = first_matching_subject(&binding.subjects, user, namespace) else { continue };
        match resolve_role_ref(source, &binding.role_ref, namespace) {
            Ok(resolved) => {
                for rule in resolved.rules() {
                    let origin = RuleOrigin::RoleBinding { binding: &binding, subject };
                    if visitor(RuleVisit::Rule { origin, rule }).is_break() {
                        return;
                    }
                }
            }
            Err(err) => {
                if visitor(RuleVisit::Error(err)).is_break() {
                    return;
                }
            }
        }
    }
}

/// Every rule that applies to `user` in `namespace` (cluster-wide ones only when
/// `namespace` is empty), with the errors met resolving them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResolvedRules {
    pub rules: Vec<PolicyRule>,
    pub errors: Vec<ResolveError>,
}

impl ResolvedRules {
    /// The errors as one message, as a SelfSubjectRulesReview's `evaluationError`.
    pub fn evaluation_error(&self) -> Option<String> {
        (!self.errors.is_empty()).then(|| aggregate_errors(&self.errors))
    }

    /// Upstream's SelfSubjectRulesReview status for RBAC: rules with resources
    /// become resource rules, rules with URLs non-resource rules. RBAC's listing
    /// is never `incomplete`; errors land in `evaluationError`.
    pub fn to_review_status(&self) -> SubjectRulesReviewStatus {
        let (resource_rules, non_resource_rules) = split_rules(&self.rules);
        SubjectRulesReviewStatus {
            evaluation_error: self.evaluation_error(),
            incomplete: false,
            non_resource_rules,
            resource_rules,
        }
    }
}

/// Splits policy rules into SelfSubjectRulesReview resource and non-resource rules.
pub fn split_rules(rules: &[PolicyRule]) -> (Vec<ResourceRule>, Vec<NonResourceRule>) {
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in rules {
        if !strings(&rule.resources).is_empty() {
            resource_rules.push(ResourceRule {
                verbs: rule.verbs.clone(),
                api_groups: rule.api_groups.clone(),
                resources: rule.resources.clone(),
                resource_names: rule.resource_names.clone(),
            });
        }
        if !strings(&rule.non_resource_urls).is_empty() {
            non_resource_rules
                .push(NonResourceRule { verbs: rule.verbs.clone(), non_resource_urls: rule.non_resource_urls.clone() });
        }
    }
    (resource_rules, non_resource_rules)
}

/// Every rule that applies to `user` in `namespace`, with resolution errors.
pub fn resolve_rules_for(source: &dyn RbacSource, user: &UserInfo, namespace: &str) -> ResolvedRules {
    let mut resolved = ResolvedRules::default();
    visit_rules_for(source, user, namespace, |visit| {
        match visit {
            RuleVisit::Rule { rule, .. } => resolved.rules.push(rule.clone()),
            RuleVisit::Error(err) => resolved.errors.push(err),
        }
        ControlFlow::Continue(())
    });
    resolved
}

/// Every rule (resource and non-resource) that applies to `user` in `namespace`:
/// what SelfSubjectRulesReview (`kubectl auth can-i --list`) reports, and what
/// escalation checks compare against. Rules whose role is missing are skipped;
/// [`resolve_rules_for`] also reports them.
///
/// Like upstream, rules of ClusterRoles bound by RoleBindings are listed whole,
/// non-resource URLs included, though [`authorize`] never grants those URLs.
pub fn rules_for(source: &dyn RbacSource, user: &UserInfo, namespace: &str) -> Vec<PolicyRule> {
    resolve_rules_for(source, user, namespace).rules
}

/// Upstream's RBAC authorizer: `Allow` with the binding that allowed it as the
/// reason (`RBAC: allowed by ClusterRoleBinding "..." of ClusterRole "..." to
/// Group "..."`), else `NoOpinion` with the resolution errors met, if any.
/// RBAC never returns `Deny`.
pub fn authorize(source: &dyn RbacSource, attrs: &Attributes) -> (Decision, String) {
    let mut allowed_by = None;
    let mut errors = Vec::new();
    visit_rules_for(source, &attrs.user, &attrs.namespace, |visit| match visit {
        RuleVisit::Rule { origin, rule } if rule_allows(attrs, rule) => {
            allowed_by = Some(origin.to_string());
            ControlFlow::Break(())
        }
        RuleVisit::Rule { .. } => ControlFlow::Continue(()),
        RuleVisit::Error(err) => {
            errors.push(err);
            ControlFlow::Continue(())
        }
    });
    match allowed_by {
        Some(origin) => (Decision::Allow, format!("RBAC: allowed by {origin}")),
        None if errors.is_empty() => (Decision::NoOpinion, String::new()),
        None => (Decision::NoOpinion, format!("RBAC: {}", aggregate_errors(&errors))),
    }
}

/// An in-memory [`RbacSource`]: objects applied and deleted by name, as a
/// reflector would. Handy for tests and as the apiserver's index behind a lock.
#[derive(Clone, Debug, Default)]
pub struct StaticRbacSource {
    cluster_roles: BTreeMap<String, Arc<ClusterRole>>,
    roles: BTreeMap<(String, String), Arc<Role>>,
    cluster_role_bindings: BTreeMap<String, Arc<ClusterRoleBinding>>,
    role_bindings: BTreeMap<String, BTreeMap<String, Arc<RoleBinding>>>,
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_default()
}

impl StaticRbacSource {
    pub fn new() -> Self {
        Self::default()
    }

    /// The bootstrap policy, with aggregated ClusterRoles' rules filled in, as a
    /// fresh cluster has it once the aggregation controller has run.
    pub fn with_bootstrap_policy() -> Self {
        let mut source = Self::new();
        let mut cluster_roles = crate::bootstrap::bootstrap_cluster_roles();
        let aggregated: BTreeMap<String, Vec<PolicyRule>> =
            crate::aggregation::aggregate(&cluster_roles).into_iter().collect();
        for role in &mut cluster_roles {
            if let Some(rules) = aggregated.get(role.metadata.name.as_deref().unwrap_or_default()) {
                role.rules = Some(rules.clone());
            }
        }
        cluster_roles.into_iter().for_each(|r| source.apply_cluster_role(r));
        crate::bootstrap::bootstrap_cluster_role_bindings()
            .into_iter()
            .for_each(|b| source.apply_cluster_role_binding(b));
        crate::bootstrap::bootstrap_roles().into_iter().for_each(|r| source.apply_role(r));
        crate::bootstrap::bootstrap_role_bindings().into_iter().for_each(|b| source.apply_role_binding(b));
        source
    }

    pub fn apply_cluster_role(&mut self, role: ClusterRole) {
        self.cluster_roles.insert(name_of(&role.metadata), Arc::new(role));
    }

    pub fn delete_cluster_role(&mut self, name: &str) {
        self.cluster_roles.remove(name);
    }

    pub fn apply_role(&mut self, role: Role) {
        let key = (namespace_of(&role.metadata), name_of(&role.metadata));
        self.roles.insert(key, Arc::new(role));
    }

    pub fn delete_role(&mut self, namespace: &str, name: &str) {
        self.roles.remove(&(namespace.to_string(), name.to_string()));
    }

    pub fn apply_cluster_role_binding(&mut self, binding: ClusterRoleBinding) {
        self.cluster_role_bindings.insert(name_of(&binding.metadata), Arc::new(binding));
    }

    pub fn delete_cluster_role_binding(&mut self, name: &str) {
        self.cluster_role_bindings.remove(name);
    }

    pub fn apply_role_binding(&mut self, binding: RoleBinding) {
        let namespace = namespace_of(&binding.metadata);
        self.role_bindings.entry(namespace).or_default().insert(name_of(&binding.metadata), Arc::new(binding));
    }

    pub fn delete_role_binding(&mut self, namespace: &str, name: &str) {
        if let Some(bindings) = self.role_bindings.get_mut(namespace) {
            bindings.remove(name);
            if bindings.is_empty() {
                self.role_bindings.remove(namespace);
            }
        }
    }

    /// Every ClusterRole, by name.
    pub fn cluster_roles(&self) -> impl Iterator<Item = &Arc<ClusterRole>> {
        self.cluster_roles.values()
    }
}

impl RbacSource for StaticRbacSource {
    fn cluster_role(&self, name: &str) -> Option<Arc<ClusterRole>> {
        self.cluster_roles.get(name).cloned()
    }

    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Role>> {
        self.roles.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    fn cluster_role_bindings(&self) -> Vec<Arc<ClusterRoleBinding>> {
        self.cluster_role_bindings.values().cloned().collect()
    }

    fn role_bindings(&self, namespace: &str) -> Vec<Arc<RoleBinding>> {
        self.role_bindings.get(namespace).map(|b| b.values().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{rule, subject_group, subject_service_account, subject_user};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta { name: Some(name.into()), namespace: namespace.map(Into::into), ..Default::default() }
    }

    fn role(namespace: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
        Role { metadata: meta(Some(namespace), name), rules: Some(rules) }
    }

    fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
        ClusterRole { metadata: meta(None, name), rules: Some(rules), aggregation_rule: None }
    }

    fn role_ref(kind: &str, name: &str) -> RoleRef {
        RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: kind.into(), name: name.into() }
    }

    fn role_binding(namespace: &str, name: &str, role_ref: RoleRef, subjects: Vec<Subject>) -> RoleBinding {
        RoleBinding { metadata: meta(Some(namespace), name), role_ref, subjects: Some(subjects) }
    }

    fn cluster_role_binding(name: &str, role_ref: RoleRef, subjects: Vec<Subject>) -> ClusterRoleBinding {
        ClusterRoleBinding { metadata: meta(None, name), role_ref, subjects: Some(subjects) }
    }

    fn alice() -> UserInfo {
        UserInfo::new("alice", ["system:authenticated"])
    }

    fn pods(user: UserInfo, verb: &str, namespace: &str) -> Attributes {
        Attributes::resource(user, verb, "", "pods").in_namespace(namespace)
    }

    fn allowed(source: &StaticRbacSource, attrs: &Attributes) -> bool {
        authorize(source, attrs).0 == Decision::Allow
    }

    #[test]
    fn a_role_binding_a_user_to_get_and_list_pods_in_one_namespace_allows_exactly_that() {
        let mut source = StaticRbacSource::new();
        source.apply_role(role(
            "dev",
            "pod-reader",
            vec![rule(&["get", "list"]).groups(&[""]).resources(&["pods"]).build()],
        ));
        source.apply_role_binding(role_binding(
            "dev",
            "read-pods",
            role_ref("Role", "pod-reader"),
            vec![subject_user("alice")],
        ));

        let (decision, reason) = authorize(&source, &pods(alice(), "get", "dev").named("web"));
        assert_eq!(decision, Decision::Allow);
        assert_eq!(reason, r#"RBAC: allowed by RoleBinding "read-pods/dev" of Role "pod-reader" to User "alice""#);
        assert!(allowed(&source, &pods(alice(), "list", "dev")));

        assert!(!allowed(&source, &pods(alice(), "watch", "dev")));
        assert!(!allowed(&source, &pods(alice(), "delete", "dev").named("web")));
        assert!(!allowed(&source, &pods(alice(), "get", "prod").named("web")));
        assert!(!allowed(&source, &pods(alice(), "list", "")));
        assert!(!allowed(&source, &Attributes::resource(alice(), "get", "", "secrets").in_namespace("dev")));
        assert!(!allowed(&source, &Attributes::resource(alice(), "get", "apps", "pods").in_namespace("dev")));
        assert!(!allowed(&source, &pods(UserInfo::new("bob", ["system:authenticated"]), "get", "dev")));
        assert_eq!(authorize(&source, &pods(alice(), "watch", "dev")), (Decision::NoOpinion, String::new()));
    }

    #[test]
    fn a_role_binding_to_a_cluster_role_is_namespace_scoped() {
        let mut source = StaticRbacSource::new();
        source.apply_cluster_role(cluster_role(
            "reader",
            vec![
                rule(&["get", "list"]).groups(&[""]).resources(&["pods", "nodes"]).build(),
                rule(&["get"]).urls(&["/metrics"]).build(),
            ],
        ));
        source.apply_role_binding(role_binding(
            "dev",
            "r",
            role_ref("ClusterRole", "reader"),
            vec![subject_user("alice")],
        ));

        assert!(allowed(&source, &pods(alice(), "list", "dev")));
        assert!(!allowed(&source, &pods(alice(), "list", "prod")));
        assert!(!allowed(&source, &pods(alice(), "list", "")));
        // cluster-scoped resources have no namespace, so a RoleBinding never reaches them
        assert!(!allowed(&source, &Attributes::resource(alice(), "get", "", "nodes").named("n1")));
        // nor non-resource URLs
        assert!(!allowed(&source, &Attributes::non_resource(alice(), "get", "/metrics")));
        // but the listing shows the role whole, as upstream's does
        assert_eq!(rules_for(&source, &alice(), "dev").len(), 2);
        assert_eq!(role_ref_rules(&source, &role_ref("ClusterRole", "reader"), "dev").map(|r| r.len()), Ok(2));
        assert!(rules_for(&source, &alice(), "prod").is_empty());
    }

    #[test]
    fn a_cluster_role_binding_grants_in_every_namespace_and_at_cluster_scope() {
        let mut source = StaticRbacSource::new();
        source.apply_cluster_role(cluster_role(
            "reader",
            vec![rule(&["list"]).groups(&[""]).resources(&["pods"]).build()],
        ));
        source.apply_cluster_role_binding(cluster_role_binding(
            "r",
            role_ref("ClusterRole", "reader"),
            vec![subject_user("alice")],
        ));
        assert!(allowed(&source, &pods(alice(), "list", "dev")));
        assert!(allowed(&source, &pods(alice(), "list", "")));
    }

    #[test]
    fn group_subjects_match_users_in_the_group() {
        let mut source = StaticRbacSource::new();
        source.apply_cluster_role(cluster_role(
            "reader",
            vec![rule(&["get"]).groups(&[""]).resources(&["pods"]).build()],
        ));
        source.apply_role_binding(role_binding(
            "dev",
            "devs",
            role_ref("ClusterRole", "reader"),
            vec![subject_group("developers")],
        ));
        source.apply_role_binding(role_binding(
            "public",
            "all-sas",
            role_ref("ClusterRole", "reader"),
            vec![subject_group("system:serviceaccounts:ci")],
        ));

        let dev = UserInfo::new("carol", ["developers", "system:authenticated"]);
        assert!(allowed(&source, &pods(dev, "get", "dev")));
        assert!(!allowed(&source, &pods(alice(), "get", "dev")));

        assert!(allowed(&source, &pods(UserInfo::service_account("ci", "builder"), "get", "public")));
        assert!(!allowed(&source, &pods(UserInfo::service_account("other", "builder"), "get", "public")));
    }

    #[test]
    fn service_account_subjects_match_by_username_and_default_to_the_binding_namespace() {
        let mut source = StaticRbacSource::new();
        source.apply_role(role("dev", "r", vec![rule(&["get"]).groups(&[""]).resources(&["pods"]).build()]));
        let no_namespace = Subject { kind: "ServiceAccount".into(), name: "builder".into(), ..Default::default() };
        source.apply_role_binding(role_binding("dev", "local", role_ref("Role", "r"), vec![no_namespace.clone()]));
        source.apply_role_binding(role_binding(
            "dev",
            "remote",
            role_ref("Role", "r"),
            vec![subject_service_account("ci", "deployer")],
        ));

        let (decision, reason) = authorize(&source, &pods(UserInfo::service_account("dev", "builder"), "get", "dev"));
        assert_eq!(decision, Decision::Allow);
        assert_eq!(reason, r#"RBAC: allowed by RoleBinding "local/dev" of Role "r" to ServiceAccount "builder/dev""#);
        assert!(allowed(&source, &pods(UserInfo::service_account("ci", "deployer"), "get", "dev")));
        assert!(!allowed(&source, &pods(UserInfo::service_account("ci", "builder"), "get", "dev")));
        // only the username counts: a user merely named like the group does not match
        assert!(!allowed(&source, &pods(UserInfo::new("builder", ["system:serviceaccounts:dev"]), "get", "dev")));

        // without a namespace, a ClusterRoleBinding's service-account subject matches nobody
        let mut source = StaticRbacSource::new();
        source.apply_cluster_role(cluster_role("r", vec![rule(&["get"]).groups(&[""]).resources(&["pods"]).build()]));
        source.apply_cluster_role_binding(cluster_role_binding("b", role_ref("ClusterRole", "r"), vec![no_namespace]));
        assert!(!allowed(&source, &pods(UserInfo::service_account("dev", "builder"), "get", "dev")));
    }

    #[test]
    fn resource_names_limit_a_grant_to_named_objects() {
        let mut source = StaticRbacSource::new();
        source.apply_role(role(
            "kube-system",
            "reader",
            vec![rule(&["get", "update"]).groups(&[""]).resources(&["configmaps"]).names(&["cluster-info"]).build()],
        ));
        source.apply_role_binding(role_binding(
            "kube-system",
            "b",
            role_ref("Role", "reader"),
            vec![subject_user("alice")],
        ));
        let cm = |verb: &str, name: &str| {
            Attributes::resource(alice(), verb, "", "configmaps").in_namespace("kube-system").named(name)
        };
        assert!(allowed(&source, &cm("get", "cluster-info")));
        assert!(allowed(&source, &cm("update", "cluster-info")));
        assert!(!allowed(&source, &cm("get", "kubeadm-config")));
        assert!(!allowed(&source, &cm("list", "")));
    }

    #[test]
    fn subresources_are_granted_separately_from_their_resource() {
        let mut source = StaticRbacSource::new();
        source.apply_role(role(
            "dev",
            "r",
            vec![
                rule(&["get"]).groups(&[""]).resources(&["pods", "pods/log"]).build(),
                rule(&["update"]).groups(&["*"]).resources(&["*/scale"]).build(),
            ],
        ));
        source.apply_role_binding(role_binding("dev", "b", role_ref("Role", "r"), vec![subject_user("alice")]));
        let req = |verb: &str, group: &str, resource: &str, sub: &str| {
            Attributes::resource(alice(), verb, group, resource).in_namespace("dev").named("x").with_subresource(sub)
        };
        assert!(allowed(&source, &req("get", "", "pods", "log")));
        assert!(!allowed(&source, &req("create", "", "pods", "exec")));
        assert!(!allowed(&source, &req("get", "", "pods", "exec")));
        assert!(allowed(&source, &req("update", "apps", "deployments", "scale")));
        assert!(!allowed(&source, &req("update", "apps", "deployments", "")));
    }

    #[test]
    fn non_resource_urls_come_from_cluster_role_bindings_with_star_prefixes() {
        let mut source = StaticRbacSource::new();
        source.apply_cluster_role(cluster_role("probe", vec![rule(&["get"]).urls(&["/healthz", "/logs/*"]).build()]));
        source.apply_cluster_role_binding(cluster_role_binding(
            "probe",
            role_ref("ClusterRole", "probe"),
            vec![subject_group("system:authenticated")],
        ));
        let get = |path: &str| Attributes::non_resource(alice(), "get", path);
        assert!(allowed(&source, &get("/healthz")));
        assert!(allowed(&source, &get("/logs/kube-apiserver.log")));
        assert!(allowed(&source, &get("/logs/")));
        assert!(!allowed(&source, &get("/logs")));
        assert!(!allowed(&source, &get("/healthz/etcd")));
        assert!(!allowed(&source, &Attributes::non_resource(alice(), "post", "/healthz")));
        assert!(!allowed(&source, &Attributes::non_resource(UserInfo::anonymous(), "get", "/healthz")));
    }

    #[test]
    fn missing_roles_and_bad_kinds_explain_no_opinion() {
        let mut source = StaticRbacSource::new();
        source.apply_cluster_role_binding(cluster_role_binding(
            "gone",
            role_ref("ClusterRole", "gone"),
            vec![subject_user("alice")],
        ));
        source.apply_role_binding(role_binding("dev", "a", role_ref("Role", "missing"), vec![subject_user("alice")]));
        source.apply_role_binding(role_binding("dev", "b", role_ref("Other", "x"), vec![subject_user("alice")]));
        // bindings for someone else are never resolved
        source.apply_role_binding(role_binding("dev", "c", role_ref("Role", "ignored"), vec![subject_user("bob")]));

        let (decision, reason) = authorize(&source, &pods(alice(), "get", "dev"));
        assert_eq!(decision, Decision::NoOpinion);
        assert_eq!(
            reason,
            r#"RBAC: [clusterrole.rbac.authorization.k8s.io "gone" not found, role.rbac.authorization.k8s.io "missing" not found, unsupported role reference kind: "Other"]"#
        );
        let (_, reason) = authorize(&source, &pods(alice(), "get", ""));
        assert_eq!(reason, r#"RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found"#);

        assert_eq!(
            role_ref_rules(&source, &role_ref("Role", "missing"), "dev"),
            Err(ResolveError::RoleNotFound { namespace: "dev".into(), name: "missing".into() })
        );
        let resolved = resolve_rules_for(&source, &alice(), "dev");
        assert!(resolved.rules.is_empty());
        assert_eq!(resolved.errors.len(), 3);
        assert!(resolved.to_review_status().evaluation_error.is_some());
    }

    #[test]
    fn rules_for_lists_cluster_and_namespace_rules_for_the_review_status() {
        let mut source = StaticRbacSource::new();
        source.apply_cluster_role(cluster_role(
            "basic",
            vec![
                rule(&["create"]).groups(&["authorization.k8s.io"]).resources(&["selfsubjectrulesreviews"]).build(),
                rule(&["get"]).urls(&["/api", "/api/*"]).build(),
            ],
        ));
        source.apply_cluster_role_binding(cluster_role_binding(
            "basic",
            role_ref("ClusterRole", "basic"),
            vec![subject_group("system:authenticated")],
        ));
        source.apply_role(role("dev", "r", vec![rule(&["get"]).groups(&[""]).resources(&["pods"]).build()]));
        source.apply_role_binding(role_binding("dev", "b", role_ref("Role", "r"), vec![subject_user("alice")]));

        assert_eq!(rules_for(&source, &alice(), "").len(), 2);
        let rules = rules_for(&source, &alice(), "dev");
        assert_eq!(rules.len(), 3);
        let status = resolve_rules_for(&source, &alice(), "dev").to_review_status();
        assert_eq!(status.resource_rules.len(), 2);
        assert_eq!(status.non_resource_rules.len(), 1);
        assert_eq!(
            status.non_resource_rules[0].non_resource_urls.as_deref(),
            Some(&["/api".into(), "/api/*".into()][..])
        );
        assert!(!status.incomplete);
        assert_eq!(status.evaluation_error, None);
    }

    #[test]
    fn deleted_objects_stop_granting() {
        let mut source = StaticRbacSource::new();
        source.apply_role(role("dev", "r", vec![rule(&["get"]).groups(&[""]).resources(&["pods"]).build()]));
        source.apply_role_binding(role_binding("dev", "b", role_ref("Role", "r"), vec![subject_user("alice")]));
        assert!(allowed(&source, &pods(alice(), "get", "dev")));
        source.delete_role_binding("dev", "b");
        assert!(!allowed(&source, &pods(alice(), "get", "dev")));
        source.apply_role_binding(role_binding("dev", "b", role_ref("Role", "r"), vec![subject_user("alice")]));
        source.delete_role("dev", "r");
        assert_eq!(
            authorize(&source, &pods(alice(), "get", "dev")),
            (Decision::NoOpinion, r#"RBAC: role.rbac.authorization.k8s.io "r" not found"#.to_string())
        );
    }
}
