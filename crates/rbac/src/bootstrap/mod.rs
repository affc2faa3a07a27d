//! The default RBAC policy a fresh cluster starts with, as data: upstream
//! v1.33's bootstrap ClusterRoles, ClusterRoleBindings, per-controller roles and
//! the kube-system/kube-public Roles, with each component's least privilege.
//!
//! Feature-gated rules follow v1.33's default gates: on for
//! `MultiCIDRServiceAllocator` (GA), `KubeletFineGrainedAuthz` and
//! `SELinuxChangePolicy` (beta); off for `DynamicResourceAllocation`,
//! `ClusterTrustBundle`, `VolumeAttributesClass`, `StorageVersionAPI` and
//! `StorageVersionMigrator`.
//!
//! `system:node` is bound to no one, as upstream has done since 1.8: kubelets
//! (user `system:node:<name>` in group `system:nodes`) get their access from
//! the Node authorizer, which grants `system:node`'s rules narrowed to the
//! objects bound to that node; the empty binding stays so reconciliation can
//! strip subjects older clusters added.
//!
//! Every object carries the label `kubernetes.io/bootstrapping: rbac-defaults`
//! and the annotation `rbac.authorization.kubernetes.io/autoupdate: "true"`, so
//! the apiserver's reconciliation may restore missing permissions on start.

mod controllers;
mod namespaced;

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::builder::{cluster_role_binding, object_meta, rule, subject_group, subject_service_account, subject_user};
use crate::user;

pub use controllers::{controller_role_bindings, controller_roles, CONTROLLER_ROLE_PREFIX};
pub use namespaced::{bootstrap_role_bindings, bootstrap_roles};

/// The label on every bootstrap object.
pub const BOOTSTRAPPING_LABEL: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");
/// The annotation that lets the apiserver reconcile a bootstrap object on start.
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";

pub const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
pub const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
pub const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

pub(crate) const READ: &[&str] = &["get", "list", "watch"];
pub(crate) const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
pub(crate) const READ_WRITE: &[&str] =
    &["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];

pub(crate) const LEGACY: &str = "";
pub(crate) const APPS: &str = "apps";
pub(crate) const AUTHENTICATION: &str = "authentication.k8s.io";
pub(crate) const AUTHORIZATION: &str = "authorization.k8s.io";
pub(crate) const AUTOSCALING: &str = "autoscaling";
pub(crate) const BATCH: &str = "batch";
pub(crate) const CERTIFICATES: &str = "certificates.k8s.io";
pub(crate) const COORDINATION: &str = "coordination.k8s.io";
pub(crate) const DISCOVERY: &str = "discovery.k8s.io";
pub(crate) const EVENTS: &str = "events.k8s.io";
pub(crate) const EXTENSIONS: &str = "extensions";
pub(crate) const NETWORKING: &str = "networking.k8s.io";
pub(crate) const NODE: &str = "node.k8s.io";
pub(crate) const POLICY: &str = "policy";
pub(crate) const RBAC: &str = "rbac.authorization.k8s.io";
pub(crate) const STORAGE: &str = "storage.k8s.io";
pub(crate) const ADMISSION_REGISTRATION: &str = "admissionregistration.k8s.io";
pub(crate) const METRICS: &str = "metrics.k8s.io";
pub(crate) const CUSTOM_METRICS: &str = "custom.metrics.k8s.io";
pub(crate) const EXTERNAL_METRICS: &str = "external.metrics.k8s.io";

/// Creating and updating events, in both event APIs.
pub(crate) fn events_rule() -> PolicyRule {
    rule(&["create", "update", "patch"]).groups(&[LEGACY, EVENTS]).resources(&["events"]).build()
}

/// Adds the bootstrap label and autoupdate annotation.
pub(crate) fn mark_bootstrap(meta: &mut ObjectMeta) {
    let (key, value) = BOOTSTRAPPING_LABEL;
    meta.labels.get_or_insert_with(BTreeMap::new).insert(key.into(), value.into());
    meta.annotations.get_or_insert_with(BTreeMap::new).insert(AUTOUPDATE_ANNOTATION.into(), "true".into());
}

pub(crate) fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    labelled_cluster_role(name, &[], rules)
}

fn labelled_cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole { metadata: object_meta(None, name, labels), rules: Some(rules), aggregation_rule: None }
}

/// A ClusterRole whose rules the aggregation controller fills from the
/// ClusterRoles labelled `aggregate_from: "true"`.
fn aggregated_cluster_role(name: &str, labels: &[(&str, &str)], aggregate_from: &str) -> ClusterRole {
    let selector = LabelSelector {
        match_labels: Some([(aggregate_from.to_string(), "true".to_string())].into()),
        ..Default::default()
    };
    ClusterRole {
        metadata: object_meta(None, name, labels),
        rules: None,
        aggregation_rule: Some(AggregationRule { cluster_role_selectors: Some(vec![selector]) }),
    }
}

/// `system:node`'s rules: what a kubelet needs, before the Node authorizer and
/// the NodeRestriction admission plugin narrow them to its own node's objects.
pub fn node_rules() -> Vec<PolicyRule> {
    vec![
        // API access checks; these creates do not mutate.
        rule(&["create"]).groups(&[AUTHENTICATION]).resources(&["tokenreviews"]).build(),
        rule(&["create"])
            .groups(&[AUTHORIZATION])
            .resources(&["subjectaccessreviews", "localsubjectaccessreviews"])
            .build(),
        // Services for pods' environment variables.
        rule(READ).groups(&[LEGACY]).resources(&["services"]).build(),
        // Registering and updating its own Node.
        rule(&["create", "get", "list", "watch"]).groups(&[LEGACY]).resources(&["nodes"]).build(),
        rule(&["update", "patch"]).groups(&[LEGACY]).resources(&["nodes/status"]).build(),
        rule(&["update", "patch"]).groups(&[LEGACY]).resources(&["nodes"]).build(),
        rule(&["create", "update", "patch"]).groups(&[LEGACY]).resources(&["events"]).build(),
        // Pods bound to it, mirror pods, their status and evictions.
        rule(READ).groups(&[LEGACY]).resources(&["pods"]).build(),
        rule(&["create", "delete"]).groups(&[LEGACY]).resources(&["pods"]).build(),
        rule(&["update", "patch"]).groups(&[LEGACY]).resources(&["pods/status"]).build(),
        rule(&["create"]).groups(&[LEGACY]).resources(&["pods/eviction"]).build(),
        // Secrets, configmaps and volumes its pods reference.
        rule(READ).groups(&[LEGACY]).resources(&["secrets", "configmaps"]).build(),
        rule(&["get"]).groups(&[LEGACY]).resources(&["persistentvolumeclaims", "persistentvolumes"]).build(),
        rule(&["get"]).groups(&[LEGACY]).resources(&["endpoints"]).build(),
        // Rotating its own client certificate.
        rule(&["create", "get", "list", "watch"])
            .groups(&[CERTIFICATES])
            .resources(&["certificatesigningrequests"])
            .build(),
        // Its heartbeat lease.
        rule(&["get", "create", "update", "patch", "delete"]).groups(&[COORDINATION]).resources(&["leases"]).build(),
        rule(&["get"]).groups(&[STORAGE]).resources(&["volumeattachments"]).build(),
        // Service account tokens for its pods.
        rule(&["create"]).groups(&[LEGACY]).resources(&["serviceaccounts/token"]).build(),
        // Volume expansion status.
        rule(&["get", "update", "patch"]).groups(&[LEGACY]).resources(&["persistentvolumeclaims/status"]).build(),
        rule(&["get", "watch", "list"]).groups(&[STORAGE]).resources(&["csidrivers"]).build(),
        rule(&["get", "create", "update", "patch", "delete"]).groups(&[STORAGE]).resources(&["csinodes"]).build(),
        rule(&["get", "list", "watch"]).groups(&[NODE]).resources(&["runtimeclasses"]).build(),
    ]
}

fn general_cluster_roles() -> Vec<ClusterRole> {
    vec![
        // Can do anything.
        cluster_role(
            "cluster-admin",
            vec![rule(&["*"]).groups(&["*"]).resources(&["*"]).build(), rule(&["*"]).urls(&["*"]).build()],
        ),
        // Enough to tell whether the server is up and to discover its APIs.
        cluster_role(
            "system:discovery",
            vec![rule(&["get"])
                .urls(&[
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/version",
                    "/version/",
                    "/openapi",
                    "/openapi/*",
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                ])
                .build()],
        ),
        cluster_role(
            "system:monitoring",
            vec![rule(&["get"])
                .urls(&[
                    "/metrics",
                    "/metrics/slis",
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/livez/*",
                    "/readyz/*",
                    "/healthz/*",
                ])
                .build()],
        ),
        // What any user may learn about themselves.
        cluster_role(
            "system:basic-user",
            vec![
                rule(&["create"])
                    .groups(&[AUTHORIZATION])
                    .resources(&["selfsubjectaccessreviews", "selfsubjectrulesreviews"])
                    .build(),
                rule(&["create"]).groups(&[AUTHENTICATION]).resources(&["selfsubjectreviews"]).build(),
            ],
        ),
        // Insensitive cluster information, even for anonymous requests.
        cluster_role(
            "system:public-info-viewer",
            vec![rule(&["get"]).urls(&["/livez", "/readyz", "/healthz", "/version", "/version/"]).build()],
        ),
        // Namespace admin: edit plus granting permissions within the namespace.
        aggregated_cluster_role("admin", &[], AGGREGATE_TO_ADMIN),
        // Every user-level action in a namespace, short of roles, quota and status.
        aggregated_cluster_role("edit", &[(AGGREGATE_TO_ADMIN, "true")], AGGREGATE_TO_EDIT),
        // Read-only access to non-escalating resources in a namespace.
        aggregated_cluster_role("view", &[(AGGREGATE_TO_EDIT, "true")], AGGREGATE_TO_VIEW),
        labelled_cluster_role(
            "system:aggregate-to-admin",
            &[(AGGREGATE_TO_ADMIN, "true")],
            vec![
                rule(&["create"]).groups(&[AUTHORIZATION]).resources(&["localsubjectaccessreviews"]).build(),
                rule(READ_WRITE).groups(&[RBAC]).resources(&["roles", "rolebindings"]).build(),
            ],
        ),
        labelled_cluster_role("system:aggregate-to-edit", &[(AGGREGATE_TO_EDIT, "true")], aggregate_to_edit_rules()),
        labelled_cluster_role("system:aggregate-to-view", &[(AGGREGATE_TO_VIEW, "true")], aggregate_to_view_rules()),
        // The resource metrics API (metrics-server's role; this apiserver serves metrics.k8s.io itself).
        labelled_cluster_role(
            "system:aggregated-metrics-reader",
            &[(AGGREGATE_TO_ADMIN, "true"), (AGGREGATE_TO_EDIT, "true"), (AGGREGATE_TO_VIEW, "true")],
            vec![rule(READ).groups(&[METRICS]).resources(&["pods", "nodes"]).build()],
        ),
        cluster_role(
            "system:heapster",
            vec![
                rule(READ).groups(&[LEGACY]).resources(&["events", "pods", "nodes", "namespaces"]).build(),
                rule(READ).groups(&[EXTENSIONS]).resources(&["deployments"]).build(),
            ],
        ),
        cluster_role("system:node", node_rules()),
        cluster_role(
            "system:node-problem-detector",
            vec![
                rule(&["get"]).groups(&[LEGACY]).resources(&["nodes"]).build(),
                rule(&["patch"]).groups(&[LEGACY]).resources(&["nodes/status"]).build(),
                events_rule(),
            ],
        ),
        // Full access to the kubelet API.
        cluster_role(
            "system:kubelet-api-admin",
            vec![
                rule(READ).groups(&[LEGACY]).resources(&["nodes"]).build(),
                rule(&["proxy"]).groups(&[LEGACY]).resources(&["nodes"]).build(),
                rule(&["*"])
                    .groups(&[LEGACY])
                    .resources(&[
                        "nodes/proxy",
                        "nodes/metrics",
                        "nodes/stats",
                        "nodes/log",
                        "nodes/healthz",
                        "nodes/pods",
                        "nodes/configz",
                    ])
                    .build(),
            ],
        ),
        // TLS bootstrapping: a kubelet asking for its first client certificate.
        cluster_role(
            "system:node-bootstrapper",
            vec![rule(&["create", "get", "list", "watch"])
                .groups(&[CERTIFICATES])
                .resources(&["certificatesigningrequests"])
                .build()],
        ),
        // Delegated authentication and authorization (extension apiservers).
        cluster_role(
            "system:auth-delegator",
            vec![
                rule(&["create"]).groups(&[AUTHENTICATION]).resources(&["tokenreviews"]).build(),
                rule(&["create"]).groups(&[AUTHORIZATION]).resources(&["subjectaccessreviews"]).build(),
            ],
        ),
        // The aggregator must see whether the services it proxies to exist.
        cluster_role(
            "system:kube-aggregator",
            vec![rule(READ).groups(&[LEGACY]).resources(&["services", "endpoints"]).build()],
        ),
        cluster_role(
            "system:persistent-volume-provisioner",
            vec![
                rule(&["get", "list", "watch", "create", "delete"])
                    .groups(&[LEGACY])
                    .resources(&["persistentvolumes"])
                    .build(),
                rule(&["get", "list", "watch", "update"])
                    .groups(&[LEGACY])
                    .resources(&["persistentvolumeclaims"])
                    .build(),
                rule(READ).groups(&[STORAGE]).resources(&["storageclasses"]).build(),
                rule(&["watch"]).groups(&[LEGACY]).resources(&["events"]).build(),
                events_rule(),
            ],
        ),
        cluster_role("system:kube-controller-manager", kube_controller_manager_rules()),
        cluster_role(
            "system:kube-dns",
            vec![rule(&["list", "watch"]).groups(&[LEGACY]).resources(&["endpoints", "services"]).build()],
        ),
        cluster_role("system:kube-scheduler", kube_scheduler_rules()),
        cluster_role(
            "system:volume-scheduler",
            vec![
                rule(READ_UPDATE).groups(&[LEGACY]).resources(&["persistentvolumes"]).build(),
                rule(READ).groups(&[STORAGE]).resources(&["storageclasses"]).build(),
                rule(READ_UPDATE).groups(&[LEGACY]).resources(&["persistentvolumeclaims"]).build(),
            ],
        ),
        cluster_role("system:node-proxier", node_proxier_rules()),
        // Lets service accounts read the OIDC discovery document and keys.
        cluster_role(
            "system:service-account-issuer-discovery",
            vec![rule(&["get"]).urls(&["/.well-known/openid-configuration", "/openid/v1/jwks"]).build()],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![rule(&["create"])
                .groups(&[CERTIFICATES])
                .resources(&["certificatesigningrequests/nodeclient"])
                .build()],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![rule(&["create"])
                .groups(&[CERTIFICATES])
                .resources(&["certificatesigningrequests/selfnodeclient"])
                .build()],
        ),
        signer_approver(
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            "kubernetes.io/kube-apiserver-client",
        ),
        signer_approver(
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            "kubernetes.io/kube-apiserver-client-kubelet",
        ),
        signer_approver("system:certificates.k8s.io:kubelet-serving-approver", "kubernetes.io/kubelet-serving"),
        signer_approver("system:certificates.k8s.io:legacy-unknown-approver", "kubernetes.io/legacy-unknown"),
    ]
}

const READ_UPDATE: &[&str] = &["get", "list", "watch", "update", "patch"];

fn signer_approver(name: &str, signer: &str) -> ClusterRole {
    cluster_role(
        name,
        vec![rule(&["approve"]).groups(&[CERTIFICATES]).resources(&["signers"]).names(&[signer]).build()],
    )
}

fn aggregate_to_edit_rules() -> Vec<PolicyRule> {
    vec![
        // Reading the resources that can escalate (exec, secrets) is an edit power.
        rule(READ)
            .groups(&[LEGACY])
            .resources(&["pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets", "services/proxy"])
            .build(),
        rule(&["impersonate"]).groups(&[LEGACY]).resources(&["serviceaccounts"]).build(),
        rule(WRITE)
            .groups(&[LEGACY])
            .resources(&["pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"])
            .build(),
        rule(&["create"]).groups(&[LEGACY]).resources(&["pods/eviction"]).build(),
        rule(WRITE)
            .groups(&[LEGACY])
            .resources(&[
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/proxy",
                "persistentvolumeclaims",
                "configmaps",
                "secrets",
                "events",
            ])
            .build(),
        rule(&["create"]).groups(&[LEGACY]).resources(&["serviceaccounts/token"]).build(),
        rule(WRITE)
            .groups(&[APPS])
            .resources(&[
                "statefulsets",
                "statefulsets/scale",
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "replicasets",
                "replicasets/scale",
            ])
            .build(),
        rule(WRITE).groups(&[AUTOSCALING]).resources(&["horizontalpodautoscalers"]).build(),
        rule(WRITE).groups(&[BATCH]).resources(&["jobs", "cronjobs"]).build(),
        rule(WRITE)
            .groups(&[EXTENSIONS])
            .resources(&[
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "ingresses",
                "replicasets",
                "replicasets/scale",
                "replicationcontrollers/scale",
                "networkpolicies",
            ])
            .build(),
        rule(WRITE).groups(&[POLICY]).resources(&["poddisruptionbudgets"]).build(),
        rule(WRITE).groups(&[NETWORKING]).resources(&["networkpolicies", "ingresses"]).build(),
        rule(READ_WRITE).groups(&[COORDINATION]).resources(&["leases"]).build(),
    ]
}

fn aggregate_to_view_rules() -> Vec<PolicyRule> {
    vec![
        rule(READ)
            .groups(&[LEGACY])
            .resources(&[
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
            ])
            .build(),
        rule(READ)
            .groups(&[LEGACY])
            .resources(&[
                "limitranges",
                "resourcequotas",
                "bindings",
                "events",
                "pods/status",
                "resourcequotas/status",
                "namespaces/status",
                "replicationcontrollers/status",
                "pods/log",
            ])
            .build(),
        // Reading namespaces at namespace scope means reading this namespace:
        // it tells a user which namespaces they can use.
        rule(READ).groups(&[LEGACY]).resources(&["namespaces"]).build(),
        rule(READ).groups(&[DISCOVERY]).resources(&["endpointslices"]).build(),
        rule(READ)
            .groups(&[APPS])
            .resources(&[
                "controllerrevisions",
                "statefulsets",
                "statefulsets/status",
                "statefulsets/scale",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/status",
                "deployments/scale",
                "replicasets",
                "replicasets/status",
                "replicasets/scale",
            ])
            .build(),
        rule(READ)
            .groups(&[AUTOSCALING])
            .resources(&["horizontalpodautoscalers", "horizontalpodautoscalers/status"])
            .build(),
        rule(READ).groups(&[BATCH]).resources(&["jobs", "jobs/status", "cronjobs", "cronjobs/status"]).build(),
        rule(READ)
            .groups(&[EXTENSIONS])
            .resources(&[
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "ingresses",
                "ingresses/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "replicationcontrollers/scale",
                "networkpolicies",
            ])
            .build(),
        rule(READ).groups(&[POLICY]).resources(&["poddisruptionbudgets", "poddisruptionbudgets/status"]).build(),
        rule(READ).groups(&[NETWORKING]).resources(&["networkpolicies", "ingresses", "ingresses/status"]).build(),
    ]
}

/// The controller manager's own identity: enough to start its informers and
/// hand each controller a service-account token of its own
/// (`--use-service-account-credentials`).
fn kube_controller_manager_rules() -> Vec<PolicyRule> {
    vec![
        events_rule(),
        // Leader election.
        rule(&["create"]).groups(&[COORDINATION]).resources(&["leases"]).build(),
        rule(&["get", "update"])
            .groups(&[COORDINATION])
            .resources(&["leases"])
            .names(&["kube-controller-manager"])
            .build(),
        // Service accounts and tokens for the controllers.
        rule(&["create"]).groups(&[LEGACY]).resources(&["secrets", "serviceaccounts"]).build(),
        rule(&["delete"]).groups(&[LEGACY]).resources(&["secrets"]).build(),
        rule(&["get"]).groups(&[LEGACY]).resources(&["namespaces", "secrets", "serviceaccounts", "configmaps"]).build(),
        rule(&["update"]).groups(&[LEGACY]).resources(&["secrets", "serviceaccounts"]).build(),
        // Delegated authentication and authorization of its secure port.
        rule(&["create"]).groups(&[AUTHENTICATION]).resources(&["tokenreviews"]).build(),
        rule(&["create"]).groups(&[AUTHORIZATION]).resources(&["subjectaccessreviews"]).build(),
        // Shared informers over every resource.
        rule(&["list", "watch"]).groups(&["*"]).resources(&["*"]).build(),
        rule(&["create"]).groups(&[LEGACY]).resources(&["serviceaccounts/token"]).build(),
    ]
}

fn kube_scheduler_rules() -> Vec<PolicyRule> {
    vec![
        events_rule(),
        // Leader election.
        rule(&["create"]).groups(&[COORDINATION]).resources(&["leases"]).build(),
        rule(&["get", "update"]).groups(&[COORDINATION]).resources(&["leases"]).names(&["kube-scheduler"]).build(),
        rule(READ).groups(&[LEGACY]).resources(&["nodes"]).build(),
        rule(&["get", "list", "watch", "delete"]).groups(&[LEGACY]).resources(&["pods"]).build(),
        // Binding pods to nodes.
        rule(&["create"]).groups(&[LEGACY]).resources(&["pods/binding", "bindings"]).build(),
        rule(&["patch", "update"]).groups(&[LEGACY]).resources(&["pods/status"]).build(),
        // Spreading and affinity.
        rule(READ).groups(&[LEGACY]).resources(&["replicationcontrollers", "services"]).build(),
        rule(READ).groups(&[APPS, EXTENSIONS]).resources(&["replicasets"]).build(),
        rule(READ).groups(&[APPS]).resources(&["statefulsets"]).build(),
        // Preemption honours disruption budgets.
        rule(READ).groups(&[POLICY]).resources(&["poddisruptionbudgets"]).build(),
        // Volume binding and limits.
        rule(READ).groups(&[LEGACY]).resources(&["persistentvolumeclaims", "persistentvolumes"]).build(),
        // Delegated authentication and authorization of its secure port.
        rule(&["create"]).groups(&[AUTHENTICATION]).resources(&["tokenreviews"]).build(),
        rule(&["create"]).groups(&[AUTHORIZATION]).resources(&["subjectaccessreviews"]).build(),
        rule(READ).groups(&[STORAGE]).resources(&["csinodes"]).build(),
        rule(READ).groups(&[LEGACY]).resources(&["namespaces"]).build(),
        rule(READ).groups(&[STORAGE]).resources(&["csidrivers"]).build(),
        rule(READ).groups(&[STORAGE]).resources(&["csistoragecapacities"]).build(),
    ]
}

fn node_proxier_rules() -> Vec<PolicyRule> {
    vec![
        rule(&["list", "watch"]).groups(&[LEGACY]).resources(&["services", "endpoints"]).build(),
        rule(READ).groups(&[LEGACY]).resources(&["nodes"]).build(),
        events_rule(),
        rule(&["list", "watch"]).groups(&[DISCOVERY]).resources(&["endpointslices"]).build(),
        // Traffic to unallocated service IPs is dropped (MultiCIDRServiceAllocator).
        rule(&["list", "watch"]).groups(&[NETWORKING]).resources(&["servicecidrs"]).build(),
    ]
}

/// Every bootstrap ClusterRole: the general ones (cluster-admin, admin/edit/view
/// and their aggregate-to roles, the system:* component roles) and each
/// controller's `system:controller:*` role. `admin`, `edit` and `view` come with
/// no rules: run [`crate::aggregate`] to fill them.
pub fn bootstrap_cluster_roles() -> Vec<ClusterRole> {
    let mut roles = general_cluster_roles();
    roles.extend(controller_roles());
    for role in &mut roles {
        mark_bootstrap(&mut role.metadata);
    }
    roles
}

fn general_cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    vec![
        cluster_role_binding("cluster-admin", vec![subject_group(user::SYSTEM_PRIVILEGED_GROUP)]),
        cluster_role_binding("system:monitoring", vec![subject_group(user::MONITORING_GROUP)]),
        cluster_role_binding("system:discovery", vec![subject_group(user::ALL_AUTHENTICATED)]),
        cluster_role_binding("system:basic-user", vec![subject_group(user::ALL_AUTHENTICATED)]),
        cluster_role_binding(
            "system:public-info-viewer",
            vec![subject_group(user::ALL_AUTHENTICATED), subject_group(user::ALL_UNAUTHENTICATED)],
        ),
        cluster_role_binding("system:node-proxier", vec![subject_user(user::KUBE_PROXY)]),
        cluster_role_binding("system:kube-controller-manager", vec![subject_user(user::KUBE_CONTROLLER_MANAGER)]),
        cluster_role_binding("system:kube-dns", vec![subject_service_account("kube-system", "kube-dns")]),
        cluster_role_binding("system:kube-scheduler", vec![subject_user(user::KUBE_SCHEDULER)]),
        cluster_role_binding("system:volume-scheduler", vec![subject_user(user::KUBE_SCHEDULER)]),
        // Deliberately empty: kubelets are authorized by the Node authorizer.
        cluster_role_binding("system:node", vec![]),
        // Every in-cluster workload may read the OIDC discovery endpoints.
        cluster_role_binding(
            "system:service-account-issuer-discovery",
            vec![subject_group(user::ALL_SERVICE_ACCOUNTS_GROUP)],
        ),
    ]
}

/// Every bootstrap ClusterRoleBinding: the general ones and each controller's,
/// binding `system:controller:<name>` to service account `kube-system/<name>`.
pub fn bootstrap_cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    let mut bindings = general_cluster_role_bindings();
    bindings.extend(controller_role_bindings());
    for binding in &mut bindings {
        mark_bootstrap(&mut binding.metadata);
    }
    bindings
}

/// A namespaced bootstrap Role.
pub(crate) fn role(namespace: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
    Role { metadata: object_meta(Some(namespace), name, &[]), rules: Some(rules) }
}

/// Marks namespaced bootstrap objects.
pub(crate) fn mark_roles(roles: &mut [Role]) {
    roles.iter_mut().for_each(|r| mark_bootstrap(&mut r.metadata));
}

pub(crate) fn mark_role_bindings(bindings: &mut [RoleBinding]) {
    bindings.iter_mut().for_each(|b| mark_bootstrap(&mut b.metadata));
}

#[cfg(test)]
mod tests;
