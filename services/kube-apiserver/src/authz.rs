//! Authorization: may this user do this? A chain of authorizers from
//! `--authorization-mode`, after upstream's privileged-group shortcut for
//! `system:masters`. The first Allow or Deny decides; no opinion from all is a
//! 403 with upstream's message.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use rbac::{Attributes, Decision, RbacSource};
use serde::de::DeserializeOwned;

use crate::registry::store::Store;
use crate::registry::ResourceDescriptor;

/// One authorization mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    AlwaysAllow,
    AlwaysDeny,
    Rbac,
    /// The Node authorizer (kubelets): not yet implemented, so it has no opinion.
    Node,
}

/// Errors in `--authorization-mode`.
#[derive(Debug, thiserror::Error)]
#[error("--authorization-mode: unknown mode {0:?} (supported: AlwaysAllow, AlwaysDeny, RBAC, Node)")]
pub struct UnknownMode(String);

pub fn parse_modes(modes: &[String]) -> Result<Vec<Mode>, UnknownMode> {
    modes
        .iter()
        .map(|m| match m.as_str() {
            "AlwaysAllow" => Ok(Mode::AlwaysAllow),
            "AlwaysDeny" => Ok(Mode::AlwaysDeny),
            "RBAC" => Ok(Mode::Rbac),
            "Node" => Ok(Mode::Node),
            other => Err(UnknownMode(other.to_string())),
        })
        .collect()
}

/// The configured chain.
pub struct Authorizer {
    modes: Vec<Mode>,
    rbac: RbacIndex,
}

impl Authorizer {
    pub fn new(modes: Vec<Mode>, store: Arc<Store>) -> Self {
        Authorizer { modes, rbac: RbacIndex { store, snapshot: RwLock::new(None) } }
    }

    pub fn uses_rbac(&self) -> bool {
        self.modes.contains(&Mode::Rbac)
    }

    /// The decision and its reason.
    pub fn authorize(&self, attrs: &Attributes) -> (Decision, String) {
        if attrs.user.groups.iter().any(|g| g == rbac::user::SYSTEM_PRIVILEGED_GROUP) {
            return (Decision::Allow, String::new());
        }
        for mode in &self.modes {
            let (decision, reason) = match mode {
                Mode::AlwaysAllow => (Decision::Allow, String::new()),
                Mode::AlwaysDeny => (Decision::Deny, "Everything is forbidden.".into()),
                Mode::Rbac => rbac::authorize(self.rbac.snapshot().as_ref(), attrs),
                Mode::Node => (Decision::NoOpinion, String::new()),
            };
            if decision != Decision::NoOpinion {
                return (decision, reason);
            }
        }
        (Decision::NoOpinion, String::new())
    }

    /// The rules that apply to a user in a namespace (SelfSubjectRulesReview).
    pub fn rules_for(&self, user: &rbac::UserInfo, namespace: &str) -> rbac::ResolvedRules {
        rbac::resolve_rules_for(self.rbac.snapshot().as_ref(), user, namespace)
    }

    /// The RBAC view, for escalation checks on RBAC writes.
    pub fn rbac_source(&self) -> Arc<RbacSnapshot> {
        self.rbac.snapshot()
    }
}

/// RBAC objects decoded once per change of the RBAC caches, with aggregated
/// ClusterRoles resolved.
pub struct RbacIndex {
    store: Arc<Store>,
    snapshot: RwLock<Option<([i64; 4], Arc<RbacSnapshot>)>>,
}

#[derive(Default)]
pub struct RbacSnapshot {
    cluster_roles: HashMap<String, Arc<ClusterRole>>,
    roles: HashMap<(String, String), Arc<Role>>,
    cluster_role_bindings: Vec<Arc<ClusterRoleBinding>>,
    role_bindings: HashMap<String, Vec<Arc<RoleBinding>>>,
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

impl RbacIndex {
    fn descriptors(&self) -> Option<[Arc<ResourceDescriptor>; 4]> {
        let r = &self.store.resources;
        Some([
            r.lookup(RBAC_GROUP, "v1", "clusterroles")?.clone(),
            r.lookup(RBAC_GROUP, "v1", "roles")?.clone(),
            r.lookup(RBAC_GROUP, "v1", "clusterrolebindings")?.clone(),
            r.lookup(RBAC_GROUP, "v1", "rolebindings")?.clone(),
        ])
    }

    fn snapshot(&self) -> Arc<RbacSnapshot> {
        let Some(ds) = self.descriptors() else { return Arc::default() };
        let revs = [0, 1, 2, 3].map(|i| self.store.cache(&ds[i]).revision());
        if let Ok(guard) = self.snapshot.read() {
            if let Some((r, snap)) = guard.as_ref() {
                if *r == revs {
                    return snap.clone();
                }
            }
        }
        let snap = Arc::new(self.build(&ds));
        if let Ok(mut guard) = self.snapshot.write() {
            *guard = Some((revs, snap.clone()));
        }
        snap
    }

    fn build(&self, ds: &[Arc<ResourceDescriptor>; 4]) -> RbacSnapshot {
        fn all<T: DeserializeOwned>(store: &Store, d: &ResourceDescriptor) -> Vec<T> {
            let (items, _) = store.cache(d).snapshot(&d.key_prefix(&store.root, None));
            items.iter().filter_map(|o| serde_json::from_slice(&o.json).ok()).collect()
        }
        let mut cluster_roles: Vec<ClusterRole> = all(&self.store, &ds[0]);
        for (name, rules) in rbac::aggregate(&cluster_roles) {
            if let Some(cr) = cluster_roles.iter_mut().find(|c| c.metadata.name.as_deref() == Some(name.as_str())) {
                cr.rules = Some(rules);
            }
        }
        let mut snap = RbacSnapshot::default();
        for cr in cluster_roles {
            let name = cr.metadata.name.clone().unwrap_or_default();
            snap.cluster_roles.insert(name, Arc::new(cr));
        }
        for r in all::<Role>(&self.store, &ds[1]) {
            let key = (r.metadata.namespace.clone().unwrap_or_default(), r.metadata.name.clone().unwrap_or_default());
            snap.roles.insert(key, Arc::new(r));
        }
        snap.cluster_role_bindings = all::<ClusterRoleBinding>(&self.store, &ds[2]).into_iter().map(Arc::new).collect();
        for rb in all::<RoleBinding>(&self.store, &ds[3]) {
            let ns = rb.metadata.namespace.clone().unwrap_or_default();
            snap.role_bindings.entry(ns).or_default().push(Arc::new(rb));
        }
        snap
    }
}

impl RbacSource for RbacSnapshot {
    fn cluster_role(&self, name: &str) -> Option<Arc<ClusterRole>> {
        self.cluster_roles.get(name).cloned()
    }

    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Role>> {
        self.roles.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    fn cluster_role_bindings(&self) -> Vec<Arc<ClusterRoleBinding>> {
        self.cluster_role_bindings.clone()
    }

    fn role_bindings(&self, namespace: &str) -> Vec<Arc<RoleBinding>> {
        self.role_bindings.get(namespace).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_with_upstream_spellings_and_reject_unknown_ones() {
        let m = parse_modes(&["Node".into(), "RBAC".into()]).unwrap();
        assert_eq!(m, vec![Mode::Node, Mode::Rbac]);
        assert!(parse_modes(&["ABAC".into()]).unwrap_err().to_string().contains("ABAC"));
    }
}
