//! Kubernetes RBAC without IO, for the kube-apiserver.
//!
//! - [`authorize`] decides a request ([`Attributes`]) against the RBAC objects
//!   an [`RbacSource`] serves (the apiserver's watch caches), with upstream's
//!   subject, rule and scope semantics; [`rules_for`] lists what a user may do
//!   (SelfSubjectRulesReview, `kubectl auth can-i --list`).
//! - [`confirm_no_escalation`] and [`covers`] stop writes to roles and bindings
//!   from granting more than the writer holds.
//! - [`aggregate`] computes the rules of aggregated ClusterRoles.
//! - [`bootstrap`] holds the default policy as data.
//! - [`forbidden_message`] words a 403 exactly as upstream does.
#![forbid(unsafe_code)]

pub mod aggregation;
pub mod attributes;
pub mod bootstrap;
pub mod builder;
pub mod escalation;
pub mod forbidden;
pub mod quote;
pub mod resolver;
pub mod rule;
pub mod user;

pub use aggregation::{aggregate, aggregate_one};
pub use attributes::{Attributes, Decision};
pub use bootstrap::{
    bootstrap_cluster_role_bindings, bootstrap_cluster_roles, bootstrap_role_bindings, bootstrap_roles,
};
pub use escalation::{
    bind_attributes, compact_rules, compact_string, confirm_no_escalation, covers, escalate_attributes,
    escalation_allowed, escalation_message,
};
pub use forbidden::{forbidden_message, forbidden_message_with_reason, forbidden_reason};
pub use resolver::{
    authorize, resolve_rules_for, role_ref_rules, rules_for, visit_rules_for, RbacSource, ResolveError, ResolvedRules,
    RuleOrigin, RuleVisit, StaticRbacSource,
};
pub use rule::{rule_allows, rules_allow};
pub use user::UserInfo;
