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
    /// The Node authorizer: kubelets reach secrets, configmaps, PVCs and
    /// service-account tokens only through pods bound to them.
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
    /// What every kubelet may do beyond its pods' objects (upstream's NodeRules).
    node_rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule>,
}

impl Authorizer {
    pub fn new(modes: Vec<Mode>, store: Arc<Store>) -> Self {
        Authorizer {
            modes,
            rbac: RbacIndex { store, snapshot: RwLock::new(None) },
            node_rules: rbac::bootstrap::node_rules(),
        }
    }

    pub fn uses_rbac(&self) -> bool {
        self.modes.contains(&Mode::Rbac)
    }

    /// The decision and its reason.
    pub fn authorize(&self, attrs: &Attributes) -> (Decision, String) {
        if attrs.user.groups.iter().any(|g| g == rbac::user::SYSTEM_PRIVILEGED_GROUP) {
            return (Decision::Allow, String::new());
        }
        let mut reasons: Vec<String> = Vec::new();
        for mode in &self.modes {
            let (decision, reason) = match mode {
                Mode::AlwaysAllow => (Decision::Allow, String::new()),
                Mode::AlwaysDeny => (Decision::Deny, "Everything is forbidden.".into()),
                Mode::Rbac => rbac::authorize(self.rbac.snapshot().as_ref(), attrs),
                Mode::Node => self.authorize_node(attrs),
            };
            if decision != Decision::NoOpinion {
                return (decision, reason);
            }
            // Upstream's union authorizer reports every no-opinion reason.
            if !reason.is_empty() && !reason.starts_with("RBAC:") {
                reasons.push(reason);
            }
        }
        (Decision::NoOpinion, reasons.join(", "))
    }

    /// Upstream's Node authorizer, over the watch caches.
    fn authorize_node(&self, attrs: &Attributes) -> (Decision, String) {
        let Some(node) = node_name(&attrs.user) else { return (Decision::NoOpinion, String::new()) };
        if attrs.is_resource_request && attrs.api_group.is_empty() {
            let graph_resource = matches!(
                (attrs.resource.as_str(), attrs.subresource.as_str()),
                ("secrets" | "configmaps" | "persistentvolumeclaims" | "persistentvolumes", "")
                    | ("serviceaccounts", "token")
            );
            if graph_resource {
                let verb_ok = match attrs.resource.as_str() {
                    "serviceaccounts" => attrs.verb == "create",
                    _ => attrs.verb == "get",
                };
                if verb_ok && !attrs.name.is_empty() && self.node_references(node, attrs) {
                    return (Decision::Allow, String::new());
                }
                return (Decision::NoOpinion, format!("no relationship found between node '{node}' and this object"));
            }
        }
        if attrs.is_resource_request {
            match (attrs.api_group.as_str(), attrs.resource.as_str()) {
                ("coordination.k8s.io", "leases") => return authorize_lease(node, attrs),
                ("storage.k8s.io", "csinodes") => return authorize_csinode(node, attrs),
                _ => {}
            }
        }
        if rbac::rules_allow(attrs, &self.node_rules) {
            return (Decision::Allow, String::new());
        }
        (Decision::NoOpinion, String::new())
    }

    /// Whether a pod bound to `node` references the object in `attrs`.
    fn node_references(&self, node: &str, attrs: &Attributes) -> bool {
        let store = &self.rbac.store;
        let Some(pods) = store.resources.lookup("", "v1", "pods") else { return false };
        let (items, _) = store.cache(pods).snapshot(&pods.key_prefix(&store.root, Some(&attrs.namespace)));
        let on_node = items.iter().filter(|o| o.attrs.field("spec.nodeName") == Some(node));
        if attrs.resource == "persistentvolumes" {
            // A PV is reachable through a PVC of one of the node's pods.
            let Some(pvcs) = store.resources.lookup("", "v1", "persistentvolumeclaims") else { return false };
            let (all_pods, _) = store.cache(pods).snapshot(&pods.key_prefix(&store.root, None));
            return all_pods.iter().filter(|o| o.attrs.field("spec.nodeName") == Some(node)).any(|p| {
                let pod = p.value();
                pod_references(&pod, "persistentvolumeclaims").iter().any(|claim| {
                    let key = pvcs.key(&store.root, &p.attrs.namespace, claim);
                    store.cache(pvcs).get(&key).is_some_and(|c| c.value()["spec"]["volumeName"] == attrs.name.as_str())
                })
            });
        }
        for p in on_node {
            let pod = p.value();
            if pod_references(&pod, &attrs.resource).contains(&attrs.name) {
                return true;
            }
        }
        false
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

const NODE_OBJECT_VERBS: [&str; 5] = ["get", "create", "update", "patch", "delete"];

/// Upstream's node lease rule: a kubelet reaches only the Lease named after its node in
/// `kube-node-lease` (on create the name is not known yet: NodeRestriction checks it).
fn authorize_lease(node: &str, attrs: &Attributes) -> (Decision, String) {
    if !NODE_OBJECT_VERBS.contains(&attrs.verb.as_str()) {
        return (Decision::NoOpinion, "can only get, create, update, patch, or delete a node lease".into());
    }
    if attrs.namespace != "kube-node-lease" {
        return (Decision::NoOpinion, "can only access leases in the \"kube-node-lease\" system namespace".into());
    }
    if attrs.verb != "create" && attrs.name != node {
        return (Decision::NoOpinion, "can only access node lease with the same name as the requesting node".into());
    }
    (Decision::Allow, String::new())
}

/// Upstream's CSINode rule: a kubelet reaches only the CSINode named after its node.
fn authorize_csinode(node: &str, attrs: &Attributes) -> (Decision, String) {
    if !NODE_OBJECT_VERBS.contains(&attrs.verb.as_str()) {
        return (Decision::NoOpinion, "can only get, create, update, patch, or delete a CSINode".into());
    }
    if !attrs.subresource.is_empty() {
        return (Decision::NoOpinion, "cannot authorize CSINode subresources".into());
    }
    if attrs.verb != "create" && attrs.name != node {
        return (Decision::NoOpinion, "can only access CSINode with the same name as the requesting node".into());
    }
    (Decision::Allow, String::new())
}

/// `system:node:<name>` in group `system:nodes`.
pub fn node_name(user: &rbac::UserInfo) -> Option<&str> {
    if !user.groups.iter().any(|g| g == rbac::user::NODES_GROUP) {
        return None;
    }
    user.name.strip_prefix("system:node:").filter(|n| !n.is_empty())
}

/// The names of objects of one kind a pod references: volumes, env, envFrom,
/// projected sources, image pull secrets, its service account.
pub fn pod_references(pod: &serde_json::Value, resource: &str) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &pod["spec"];
    let push = |out: &mut Vec<String>, v: &serde_json::Value| {
        if let Some(n) = v.as_str().filter(|n| !n.is_empty()) {
            out.push(n.to_string());
        }
    };
    if resource == "serviceaccounts" {
        push(&mut out, &spec["serviceAccountName"]);
        return out;
    }
    for vol in spec["volumes"].as_array().into_iter().flatten() {
        match resource {
            "secrets" => push(&mut out, &vol["secret"]["secretName"]),
            "configmaps" => push(&mut out, &vol["configMap"]["name"]),
            "persistentvolumeclaims" => push(&mut out, &vol["persistentVolumeClaim"]["claimName"]),
            _ => {}
        }
        for src in vol["projected"]["sources"].as_array().into_iter().flatten() {
            match resource {
                "secrets" => push(&mut out, &src["secret"]["name"]),
                "configmaps" => push(&mut out, &src["configMap"]["name"]),
                _ => {}
            }
        }
        for key in ["cephfs", "cinder", "flexVolume", "iscsi", "rbd", "scaleIO", "storageos", "csi"] {
            if resource == "secrets" {
                push(&mut out, &vol[key]["secretRef"]["name"]);
                push(&mut out, &vol[key]["nodePublishSecretRef"]["name"]);
            }
        }
    }
    if resource == "secrets" {
        for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
            push(&mut out, &s["name"]);
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            for e in c["envFrom"].as_array().into_iter().flatten() {
                match resource {
                    "secrets" => push(&mut out, &e["secretRef"]["name"]),
                    "configmaps" => push(&mut out, &e["configMapRef"]["name"]),
                    _ => {}
                }
            }
            for e in c["env"].as_array().into_iter().flatten() {
                match resource {
                    "secrets" => push(&mut out, &e["valueFrom"]["secretKeyRef"]["name"]),
                    "configmaps" => push(&mut out, &e["valueFrom"]["configMapKeyRef"]["name"]),
                    _ => {}
                }
            }
        }
    }
    out
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
    fn pods_reference_secrets_through_volumes_env_and_pull_secrets() {
        let pod = serde_json::json!({"spec": {
            "serviceAccountName": "sa",
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [{"name": "v", "secret": {"secretName": "vol"}},
                        {"name": "p", "projected": {"sources": [{"secret": {"name": "proj"}}, {"configMap": {"name": "cm1"}}]}}],
            "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "from"}}],
                            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "key", "key": "k"}}}]}],
        }});
        let mut s = pod_references(&pod, "secrets");
        s.sort();
        assert_eq!(s, ["from", "key", "proj", "pull", "vol"]);
        assert_eq!(pod_references(&pod, "configmaps"), ["cm1"]);
        assert_eq!(pod_references(&pod, "serviceaccounts"), ["sa"]);
    }

    #[test]
    fn a_kubelet_reaches_only_its_own_lease_and_csinode() {
        let attrs = |verb: &str, ns: &str, name: &str| Attributes {
            user: rbac::UserInfo::default(),
            verb: verb.into(),
            namespace: ns.into(),
            api_group: "coordination.k8s.io".into(),
            api_version: "v1".into(),
            resource: "leases".into(),
            subresource: String::new(),
            name: name.into(),
            is_resource_request: true,
            path: String::new(),
        };
        for verb in ["get", "update", "patch", "delete"] {
            assert_eq!(authorize_lease("n1", &attrs(verb, "kube-node-lease", "n1")).0, Decision::Allow, "{verb}");
            assert_eq!(authorize_lease("n1", &attrs(verb, "kube-node-lease", "n2")).0, Decision::NoOpinion, "{verb}");
        }
        // The name of a create is checked by NodeRestriction.
        assert_eq!(authorize_lease("n1", &attrs("create", "kube-node-lease", "")).0, Decision::Allow);
        assert_eq!(authorize_lease("n1", &attrs("get", "default", "n1")).0, Decision::NoOpinion);
        assert_eq!(authorize_lease("n1", &attrs("list", "kube-node-lease", "")).0, Decision::NoOpinion);
        let csinode = |verb: &str, name: &str| Attributes {
            api_group: "storage.k8s.io".into(),
            resource: "csinodes".into(),
            namespace: String::new(),
            ..attrs(verb, "", name)
        };
        assert_eq!(authorize_csinode("n1", &csinode("update", "n1")).0, Decision::Allow);
        assert_eq!(authorize_csinode("n1", &csinode("update", "n2")).0, Decision::NoOpinion);
    }

    #[test]
    fn only_node_identities_get_a_node_name() {
        let kubelet =
            rbac::UserInfo { name: "system:node:n1".into(), groups: vec!["system:nodes".into()], ..Default::default() };
        assert_eq!(node_name(&kubelet), Some("n1"));
        let impostor = rbac::UserInfo { name: "system:node:n1".into(), ..Default::default() };
        assert_eq!(node_name(&impostor), None);
    }

    #[test]
    fn modes_parse_with_upstream_spellings_and_reject_unknown_ones() {
        let m = parse_modes(&["Node".into(), "RBAC".into()]).unwrap();
        assert_eq!(m, vec![Mode::Node, Mode::Rbac]);
        assert!(parse_modes(&["ABAC".into()]).unwrap_err().to_string().contains("ABAC"));
    }
}
