//! Bootstrap Roles and RoleBindings in `kube-system` and `kube-public`:
//! leader election for the scheduler and controller manager, the
//! extension-apiserver authentication ConfigMap, and the bootstrap-token controllers.

use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

use super::{events_rule, mark_role_bindings, mark_roles, role, COORDINATION, LEGACY};
use crate::builder::{role_binding, rule, subject_service_account, subject_user};
use crate::user::{KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER};

const KUBE_SYSTEM: &str = "kube-system";
const KUBE_PUBLIC: &str = "kube-public";

fn leader_locking(name: &str) -> Role {
    role(
        KUBE_SYSTEM,
        name,
        vec![
            rule(&["watch", "get", "list", "create", "update"]).groups(&[COORDINATION]).resources(&["leases"]).build(),
            rule(&["watch", "get", "list", "create", "update"])
                .groups(&[COORDINATION])
                .resources(&["leasecandidates"])
                .build(),
        ],
    )
}

/// The bootstrap Roles of `kube-system` and `kube-public`.
pub fn bootstrap_roles() -> Vec<Role> {
    let mut roles = vec![
        // Lets components read the client CA and request-header settings the
        // apiserver publishes for delegated authentication.
        role(
            KUBE_SYSTEM,
            "extension-apiserver-authentication-reader",
            vec![rule(&["get", "list", "watch"])
                .groups(&[LEGACY])
                .resources(&["configmaps"])
                .names(&["extension-apiserver-authentication"])
                .build()],
        ),
        leader_locking("system::leader-locking-kube-controller-manager"),
        leader_locking("system::leader-locking-kube-scheduler"),
        role(
            KUBE_SYSTEM,
            "system:controller:bootstrap-signer",
            vec![rule(&["get", "list", "watch"]).groups(&[LEGACY]).resources(&["secrets"]).build()],
        ),
        role(
            KUBE_SYSTEM,
            "system:controller:cloud-provider",
            vec![rule(&["create", "get", "list", "watch"]).groups(&[LEGACY]).resources(&["configmaps"]).build()],
        ),
        role(
            KUBE_SYSTEM,
            "system:controller:token-cleaner",
            vec![
                rule(&["delete", "get", "list", "watch"]).groups(&[LEGACY]).resources(&["secrets"]).build(),
                events_rule(),
            ],
        ),
        // Signs the cluster-info ConfigMap with bootstrap tokens.
        role(
            KUBE_PUBLIC,
            "system:controller:bootstrap-signer",
            vec![
                rule(&["get", "list", "watch"]).groups(&[LEGACY]).resources(&["configmaps"]).build(),
                rule(&["update"]).groups(&[LEGACY]).resources(&["configmaps"]).names(&["cluster-info"]).build(),
                events_rule(),
            ],
        ),
    ];
    mark_roles(&mut roles);
    roles
}

/// The bootstrap RoleBindings of `kube-system` and `kube-public`.
pub fn bootstrap_role_bindings() -> Vec<RoleBinding> {
    let mut bindings = vec![
        role_binding(
            KUBE_SYSTEM,
            "system::extension-apiserver-authentication-reader",
            "extension-apiserver-authentication-reader",
            vec![subject_user(KUBE_CONTROLLER_MANAGER), subject_user(KUBE_SCHEDULER)],
        ),
        role_binding(
            KUBE_SYSTEM,
            "system::leader-locking-kube-controller-manager",
            "system::leader-locking-kube-controller-manager",
            vec![
                subject_user(KUBE_CONTROLLER_MANAGER),
                subject_service_account(KUBE_SYSTEM, "kube-controller-manager"),
                subject_service_account(KUBE_SYSTEM, "leader-election-controller"),
            ],
        ),
        role_binding(
            KUBE_SYSTEM,
            "system::leader-locking-kube-scheduler",
            "system::leader-locking-kube-scheduler",
            vec![subject_user(KUBE_SCHEDULER), subject_service_account(KUBE_SYSTEM, "kube-scheduler")],
        ),
        role_binding(
            KUBE_SYSTEM,
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            vec![subject_service_account(KUBE_SYSTEM, "bootstrap-signer")],
        ),
        role_binding(
            KUBE_SYSTEM,
            "system:controller:cloud-provider",
            "system:controller:cloud-provider",
            vec![subject_service_account(KUBE_SYSTEM, "cloud-provider")],
        ),
        role_binding(
            KUBE_SYSTEM,
            "system:controller:token-cleaner",
            "system:controller:token-cleaner",
            vec![subject_service_account(KUBE_SYSTEM, "token-cleaner")],
        ),
        role_binding(
            KUBE_PUBLIC,
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            vec![subject_service_account(KUBE_SYSTEM, "bootstrap-signer")],
        ),
    ];
    mark_role_bindings(&mut bindings);
    bindings
}
