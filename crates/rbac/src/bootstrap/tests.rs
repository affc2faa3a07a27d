use std::collections::BTreeSet;

use super::*;
use crate::attributes::{Attributes, Decision};
use crate::escalation::covers;
use crate::resolver::{authorize, rules_for, RbacSource, StaticRbacSource};
use crate::user::UserInfo;

fn cluster() -> StaticRbacSource {
    StaticRbacSource::with_bootstrap_policy()
}

fn can(source: &StaticRbacSource, attrs: Attributes) -> bool {
    authorize(source, &attrs).0 == Decision::Allow
}

fn req(user: &UserInfo, verb: &str, group: &str, resource: &str) -> Attributes {
    Attributes::resource(user.clone(), verb, group, resource)
}

fn authenticated(name: &str) -> UserInfo {
    UserInfo::new(name, ["system:authenticated"])
}

fn scheduler() -> UserInfo {
    authenticated("system:kube-scheduler")
}

fn role_rules(source: &StaticRbacSource, name: &str) -> Vec<PolicyRule> {
    source.cluster_role(name).and_then(|r| r.rules.clone()).unwrap_or_default()
}

#[test]
fn the_scheduler_can_bind_pods_but_not_read_secrets() {
    let source = cluster();
    let user = scheduler();
    assert!(can(
        &source,
        req(&user, "create", "", "pods").in_namespace("default").named("web").with_subresource("binding")
    ));
    assert!(can(&source, req(&user, "create", "", "bindings").in_namespace("default")));
    assert!(can(&source, req(&user, "watch", "", "pods")));
    assert!(can(&source, req(&user, "list", "", "nodes")));
    assert!(can(
        &source,
        req(&user, "patch", "", "pods").in_namespace("default").named("web").with_subresource("status")
    ));
    assert!(can(&source, req(&user, "list", "storage.k8s.io", "csinodes")));
    // volume binding comes from system:volume-scheduler
    assert!(can(&source, req(&user, "update", "", "persistentvolumes").named("pv1")));

    assert!(!can(&source, req(&user, "get", "", "secrets").in_namespace("default").named("token")));
    assert!(!can(&source, req(&user, "list", "", "secrets")));
    assert!(!can(&source, req(&user, "create", "", "pods").in_namespace("default")));
    assert!(!can(&source, req(&user, "update", "", "nodes").named("n1")));
}

#[test]
fn the_scheduler_leads_through_its_own_lease_only() {
    let source = cluster();
    let user = scheduler();
    let lease = |verb: &str, name: &str| {
        req(&user, verb, "coordination.k8s.io", "leases").in_namespace("kube-system").named(name)
    };
    assert!(can(&source, lease("update", "kube-scheduler")));
    assert!(can(&source, lease("create", "")));
    assert!(can(&source, lease("get", "kube-scheduler")));
    // the kube-system leader-locking Role grants leases there; elsewhere only its own lease
    let elsewhere = req(&user, "update", "coordination.k8s.io", "leases").in_namespace("default").named("other");
    assert!(!can(&source, elsewhere));
    let cm =
        req(&user, "get", "", "configmaps").in_namespace("kube-system").named("extension-apiserver-authentication");
    assert!(can(&source, cm));
    let other_cm = req(&user, "get", "", "configmaps").in_namespace("kube-system").named("kubeadm-config");
    assert!(!can(&source, other_cm));
}

#[test]
fn kube_proxy_reads_services_and_endpoints_but_cannot_write_pods() {
    let source = cluster();
    let user = authenticated("system:kube-proxy");
    assert!(can(&source, req(&user, "list", "", "services")));
    assert!(can(&source, req(&user, "watch", "", "endpoints")));
    assert!(can(&source, req(&user, "watch", "discovery.k8s.io", "endpointslices")));
    assert!(can(&source, req(&user, "get", "", "nodes").named("n1")));
    assert!(can(&source, req(&user, "create", "", "events").in_namespace("default")));
    assert!(can(&source, req(&user, "patch", "events.k8s.io", "events").in_namespace("default").named("e")));

    for verb in ["create", "update", "patch", "delete"] {
        assert!(!can(&source, req(&user, verb, "", "pods").in_namespace("default").named("web")), "{verb} pods");
    }
    assert!(!can(&source, req(&user, "get", "", "secrets").in_namespace("kube-system").named("s")));
    assert!(!can(&source, req(&user, "update", "", "services").in_namespace("default").named("svc")));
}

#[test]
fn anonymous_can_get_healthz_but_not_api() {
    let source = cluster();
    let anonymous = UserInfo::anonymous();
    for path in ["/healthz", "/livez", "/readyz", "/version", "/version/"] {
        assert!(can(&source, Attributes::non_resource(anonymous.clone(), "get", path)), "{path}");
    }
    let (decision, reason) = authorize(&source, &Attributes::non_resource(anonymous.clone(), "get", "/api"));
    assert_eq!(decision, Decision::NoOpinion);
    assert_eq!(reason, "");
    assert!(!can(&source, Attributes::non_resource(anonymous.clone(), "get", "/apis/apps/v1")));
    assert!(!can(&source, Attributes::non_resource(anonymous.clone(), "get", "/healthz/etcd")));
    assert!(!can(&source, Attributes::non_resource(anonymous.clone(), "get", "/metrics")));
    assert!(!can(&source, req(&anonymous, "list", "", "namespaces")));
    assert!(!can(&source, req(&anonymous, "create", "authorization.k8s.io", "selfsubjectaccessreviews")));
}

#[test]
fn authenticated_users_discover_apis_and_review_themselves() {
    let source = cluster();
    let alice = authenticated("alice");
    for path in ["/api", "/api/v1", "/apis", "/apis/apps/v1", "/openapi/v3", "/version", "/healthz"] {
        assert!(can(&source, Attributes::non_resource(alice.clone(), "get", path)), "{path}");
    }
    assert!(!can(&source, Attributes::non_resource(alice.clone(), "get", "/metrics")));
    assert!(!can(&source, Attributes::non_resource(alice.clone(), "get", "/logs/")));
    for (group, resource) in [
        ("authorization.k8s.io", "selfsubjectaccessreviews"),
        ("authorization.k8s.io", "selfsubjectrulesreviews"),
        ("authentication.k8s.io", "selfsubjectreviews"),
    ] {
        assert!(can(&source, req(&alice, "create", group, resource)), "{resource}");
    }
    assert!(!can(&source, req(&alice, "create", "authorization.k8s.io", "subjectaccessreviews")));
    assert!(!can(&source, req(&alice, "list", "", "pods").in_namespace("default")));

    let rules = rules_for(&source, &alice, "default");
    assert!(rules.iter().any(|r| r.non_resource_urls.as_ref().is_some_and(|u| u.contains(&"/api/*".to_string()))));
}

#[test]
fn cluster_admin_comes_from_system_masters() {
    let source = cluster();
    let root = UserInfo::new("root", ["system:masters", "system:authenticated"]);
    let (decision, reason) =
        authorize(&source, &req(&root, "delete", "apps", "deployments").in_namespace("x").named("y"));
    assert_eq!(decision, Decision::Allow);
    assert_eq!(
        reason,
        r#"RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" to Group "system:masters""#
    );
    assert!(can(&source, req(&root, "escalate", "rbac.authorization.k8s.io", "clusterroles").named("view")));
    assert!(can(&source, Attributes::non_resource(root.clone(), "post", "/logs/anything")));
    assert!(!can(&source, req(&authenticated("root"), "delete", "apps", "deployments").in_namespace("x").named("y")));
}

#[test]
fn monitoring_group_reads_metrics() {
    let source = cluster();
    let prometheus = UserInfo::new("prometheus", ["system:monitoring", "system:authenticated"]);
    assert!(can(&source, Attributes::non_resource(prometheus.clone(), "get", "/metrics")));
    assert!(can(&source, Attributes::non_resource(prometheus.clone(), "get", "/readyz/etcd")));
}

#[test]
fn service_accounts_read_the_issuer_discovery_document() {
    let source = cluster();
    let sa = UserInfo::service_account("default", "app");
    assert!(can(&source, Attributes::non_resource(sa.clone(), "get", "/openid/v1/jwks")));
    assert!(can(&source, Attributes::non_resource(sa, "get", "/.well-known/openid-configuration")));
    let alice = authenticated("alice");
    assert!(!can(&source, Attributes::non_resource(alice, "get", "/openid/v1/jwks")));
}

#[test]
fn view_edit_and_admin_aggregate_in_a_chain() {
    let source = cluster();
    let view = role_rules(&source, "view");
    let edit = role_rules(&source, "edit");
    let admin = role_rules(&source, "admin");
    assert!(!view.is_empty());
    assert!(covers(&edit, &view).0, "edit covers view");
    assert!(covers(&admin, &edit).0, "admin covers edit");
    assert!(!covers(&view, &edit).0);
    assert!(!covers(&edit, &admin).0);
    assert!(covers(&role_rules(&source, "cluster-admin"), &admin).0);

    let mut source = source;
    for (user, role) in [("viewer", "view"), ("editor", "edit"), ("owner", "admin")] {
        let mut binding = crate::builder::role_binding("team", user, role, vec![crate::builder::subject_user(user)]);
        binding.role_ref.kind = "ClusterRole".into();
        source.apply_role_binding(binding);
    }
    let secret =
        |user: &str, verb: &str| req(&authenticated(user), verb, "", "secrets").in_namespace("team").named("s");
    assert!(!can(&source, secret("viewer", "get")));
    assert!(can(&source, secret("editor", "get")));
    assert!(can(&source, secret("editor", "create")));
    assert!(can(&source, req(&authenticated("viewer"), "list", "apps", "deployments").in_namespace("team")));
    // system:aggregated-metrics-reader (metrics-server's role) aggregates into view, edit and admin.
    for user in ["viewer", "editor", "owner"] {
        assert!(
            can(&source, req(&authenticated(user), "list", "metrics.k8s.io", "pods").in_namespace("team")),
            "{user}"
        );
    }
    assert!(!can(&source, req(&authenticated("viewer"), "create", "metrics.k8s.io", "pods").in_namespace("team")));
    assert!(!can(&source, req(&authenticated("nobody"), "get", "metrics.k8s.io", "pods").in_namespace("team")));
    assert!(!can(&source, req(&authenticated("viewer"), "create", "apps", "deployments").in_namespace("team")));
    assert!(can(&source, req(&authenticated("editor"), "create", "apps", "deployments").in_namespace("team")));
    let roles = |user: &str| {
        req(&authenticated(user), "create", "rbac.authorization.k8s.io", "rolebindings").in_namespace("team")
    };
    assert!(!can(&source, roles("editor")));
    assert!(can(&source, roles("owner")));
    // namespace-scoped: nothing in other namespaces
    assert!(!can(&source, req(&authenticated("owner"), "get", "", "pods").in_namespace("other").named("p")));
}

#[test]
fn controllers_act_through_their_service_accounts() {
    let source = cluster();
    let sa = |name: &str| UserInfo::service_account("kube-system", name);
    let deployments = sa("deployment-controller");
    assert!(can(&source, req(&deployments, "create", "apps", "replicasets").in_namespace("default")));
    assert!(can(
        &source,
        req(&deployments, "update", "apps", "deployments")
            .in_namespace("default")
            .named("d")
            .with_subresource("status")
    ));
    assert!(!can(&source, req(&deployments, "create", "", "pods").in_namespace("default")));
    assert!(!can(&source, req(&deployments, "get", "", "secrets").in_namespace("default").named("s")));

    assert!(can(&source, req(&sa("replicaset-controller"), "create", "", "pods").in_namespace("default")));
    assert!(can(
        &source,
        req(&sa("job-controller"), "update", "batch", "jobs")
            .in_namespace("d")
            .named("j")
            .with_subresource("finalizers")
    ));
    assert!(can(
        &source,
        req(&sa("endpointslice-controller"), "create", "discovery.k8s.io", "endpointslices").in_namespace("d")
    ));
    assert!(can(
        &source,
        req(&sa("namespace-controller"), "deletecollection", "apps", "deployments").in_namespace("d")
    ));
    assert!(can(
        &source,
        req(&sa("generic-garbage-collector"), "delete", "example.com", "widgets").in_namespace("d").named("w")
    ));
    assert!(can(
        &source,
        req(&sa("disruption-controller"), "get", "apps", "statefulsets")
            .in_namespace("d")
            .named("s")
            .with_subresource("scale")
    ));
    // the same account name in another namespace gets nothing
    let impostor = UserInfo::service_account("default", "replicaset-controller");
    assert!(!can(&source, req(&impostor, "create", "", "pods").in_namespace("default")));

    let signer = sa("bootstrap-signer");
    assert!(can(&source, req(&signer, "update", "", "configmaps").in_namespace("kube-public").named("cluster-info")));
    assert!(!can(&source, req(&signer, "update", "", "configmaps").in_namespace("kube-public").named("other")));
    assert!(can(&source, req(&signer, "list", "", "secrets").in_namespace("kube-system")));
}

#[test]
fn the_controller_manager_lists_everything_but_writes_little() {
    let source = cluster();
    let kcm = authenticated("system:kube-controller-manager");
    assert!(can(&source, req(&kcm, "watch", "apps", "deployments")));
    assert!(can(
        &source,
        req(&kcm, "create", "", "serviceaccounts").in_namespace("kube-system").with_subresource("token").named("x")
    ));
    assert!(can(
        &source,
        req(&kcm, "update", "coordination.k8s.io", "leases")
            .in_namespace("kube-system")
            .named("kube-controller-manager")
    ));
    assert!(!can(&source, req(&kcm, "delete", "", "pods").in_namespace("default").named("p")));
    assert!(!can(&source, req(&kcm, "get", "", "pods").in_namespace("default").named("p")));
}

#[test]
fn kubelets_get_nothing_from_rbac_alone() {
    let source = cluster();
    let binding = source
        .cluster_role_bindings()
        .into_iter()
        .find(|b| b.metadata.name.as_deref() == Some("system:node"))
        .expect("system:node binding");
    assert!(binding.subjects.is_none());
    let kubelet = UserInfo::new("system:node:n1", ["system:nodes", "system:authenticated"]);
    assert!(!can(&source, req(&kubelet, "get", "", "secrets").in_namespace("default").named("s")));
    assert!(!can(&source, req(&kubelet, "list", "", "pods")));
    // the Node authorizer uses system:node's rules
    let node = role_rules(&source, "system:node");
    assert!(crate::rule::rules_allow(
        &req(&kubelet, "update", "", "pods").named("p").in_namespace("d").with_subresource("status"),
        &node
    ));
    assert!(crate::rule::rules_allow(
        &req(&kubelet, "create", "", "serviceaccounts").named("sa").in_namespace("d").with_subresource("token"),
        &node
    ));
}

#[test]
fn every_bootstrap_object_is_labelled_and_auto_updated() {
    fn check(meta: &ObjectMeta) {
        let name = meta.name.as_deref().unwrap_or_default();
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(labels.get("kubernetes.io/bootstrapping").map(String::as_str), Some("rbac-defaults"), "{name}");
        let annotations = meta.annotations.as_ref().expect("annotations");
        assert_eq!(annotations.get(AUTOUPDATE_ANNOTATION).map(String::as_str), Some("true"), "{name}");
    }
    bootstrap_cluster_roles().iter().for_each(|r| check(&r.metadata));
    bootstrap_cluster_role_bindings().iter().for_each(|b| check(&b.metadata));
    bootstrap_roles().iter().for_each(|r| check(&r.metadata));
    bootstrap_role_bindings().iter().for_each(|b| check(&b.metadata));
}

#[test]
fn names_are_unique_and_every_binding_references_an_existing_role() {
    let roles = bootstrap_cluster_roles();
    let names: BTreeSet<_> = roles.iter().map(|r| r.metadata.name.clone().unwrap()).collect();
    assert_eq!(names.len(), roles.len());
    for expected in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
        "system:node",
        "system:node-proxier",
        "system:kube-scheduler",
        "system:volume-scheduler",
        "system:kube-controller-manager",
        "system:kube-dns",
        "system:auth-delegator",
        "system:monitoring",
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        "system:controller:deployment-controller",
        "system:controller:statefulset-controller",
        "system:controller:daemon-set-controller",
        "system:controller:cronjob-controller",
        "system:controller:endpoint-controller",
        "system:controller:generic-garbage-collector",
        "system:controller:node-controller",
        "system:controller:service-account-controller",
        "system:controller:ttl-controller",
        "system:controller:pv-protection-controller",
    ] {
        assert!(names.contains(expected), "{expected}");
    }

    let bindings = bootstrap_cluster_role_bindings();
    let binding_names: BTreeSet<_> = bindings.iter().map(|b| b.metadata.name.clone().unwrap()).collect();
    assert_eq!(binding_names.len(), bindings.len());
    for binding in &bindings {
        assert_eq!(binding.role_ref.kind, "ClusterRole");
        assert!(names.contains(&binding.role_ref.name), "{}", binding.role_ref.name);
    }
    for binding in controller_role_bindings() {
        let subjects = binding.subjects.unwrap();
        let account = binding.role_ref.name.strip_prefix(CONTROLLER_ROLE_PREFIX).unwrap();
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(subjects[0].namespace.as_deref(), Some("kube-system"));
        assert_eq!(subjects[0].name, account);
    }

    let namespaced: BTreeSet<_> = bootstrap_roles()
        .iter()
        .map(|r| (r.metadata.namespace.clone().unwrap(), r.metadata.name.clone().unwrap()))
        .collect();
    for binding in bootstrap_role_bindings() {
        assert_eq!(binding.role_ref.kind, "Role");
        let key = (binding.metadata.namespace.clone().unwrap(), binding.role_ref.name.clone());
        assert!(namespaced.contains(&key), "{key:?}");
    }
}

#[test]
fn aggregated_roles_start_empty_and_aggregate_to_roles_carry_their_labels() {
    let roles = bootstrap_cluster_roles();
    let find = |name: &str| roles.iter().find(|r| r.metadata.name.as_deref() == Some(name)).unwrap();
    for name in ["admin", "edit", "view"] {
        assert!(find(name).aggregation_rule.is_some());
        assert!(find(name).rules.is_none());
    }
    let labels = |name: &str| find(name).metadata.labels.clone().unwrap();
    assert_eq!(labels("edit").get(AGGREGATE_TO_ADMIN).map(String::as_str), Some("true"));
    assert_eq!(labels("view").get(AGGREGATE_TO_EDIT).map(String::as_str), Some("true"));
    assert_eq!(labels("system:aggregate-to-view").get(AGGREGATE_TO_VIEW).map(String::as_str), Some("true"));
}

#[test]
fn the_hpa_controller_and_the_user_roles_match_upstream_for_autoscalers() {
    let source = cluster();
    let hpa = UserInfo::new(
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
        ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
    );
    let ns = |a: Attributes| a.in_namespace("default");
    for (verb, resource) in [
        ("get", "horizontalpodautoscalers"),
        ("list", "horizontalpodautoscalers"),
        ("watch", "horizontalpodautoscalers"),
    ] {
        assert!(can(&source, ns(req(&hpa, verb, "autoscaling", resource))), "{verb} {resource}");
    }
    assert!(can(
        &source,
        ns(req(&hpa, "update", "autoscaling", "horizontalpodautoscalers").with_subresource("status"))
    ));
    assert!(!can(&source, ns(req(&hpa, "update", "autoscaling", "horizontalpodautoscalers"))));
    for group in ["apps", "", "example.com"] {
        for verb in ["get", "update"] {
            assert!(
                can(&source, ns(req(&hpa, verb, group, "deployments").with_subresource("scale"))),
                "{verb} {group}"
            );
        }
    }
    assert!(can(&source, ns(req(&hpa, "list", "", "pods"))));
    assert!(!can(&source, ns(req(&hpa, "watch", "", "pods"))), "pods come from the shared informers");
    assert!(can(&source, ns(req(&hpa, "list", "metrics.k8s.io", "pods"))));
    assert!(can(&source, ns(req(&hpa, "get", "custom.metrics.k8s.io", "pods"))));
    assert!(can(&source, ns(req(&hpa, "list", "external.metrics.k8s.io", "queue"))));
    assert!(can(&source, ns(req(&hpa, "create", "", "events"))));
    assert!(!can(&source, ns(req(&hpa, "delete", "autoscaling", "horizontalpodautoscalers"))));

    let view: Vec<PolicyRule> = role_rules(&source, "view");
    let edit: Vec<PolicyRule> = role_rules(&source, "edit");
    let grants = |rules: &[PolicyRule], verb: &str, resource: &str| {
        rules.iter().any(|r| {
            r.api_groups.as_ref().is_some_and(|g| g.iter().any(|g| g == "autoscaling"))
                && r.resources.as_ref().is_some_and(|rs| rs.iter().any(|x| x == resource))
                && r.verbs.iter().any(|v| v == verb)
        })
    };
    assert!(
        grants(&view, "watch", "horizontalpodautoscalers") && grants(&view, "get", "horizontalpodautoscalers/status")
    );
    assert!(!grants(&view, "create", "horizontalpodautoscalers"));
    for verb in ["create", "delete", "deletecollection", "patch", "update"] {
        assert!(grants(&edit, verb, "horizontalpodautoscalers"), "edit {verb}");
    }
}
