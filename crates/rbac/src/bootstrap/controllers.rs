//! One ClusterRole per kube-controller-manager controller, each bound to the
//! controller's service account `kube-system/<controller>` (used when the
//! controller manager runs with `--use-service-account-credentials`).

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule};

use super::{
    cluster_role, events_rule, ADMISSION_REGISTRATION, APPS, AUTHORIZATION, AUTOSCALING, BATCH, CERTIFICATES,
    CUSTOM_METRICS, DISCOVERY, EXTENSIONS, EXTERNAL_METRICS, LEGACY, METRICS, NETWORKING, POLICY, RBAC, STORAGE,
};
use crate::builder::{cluster_role_binding, rule, subject_service_account};

/// Every controller role's name starts with this; the rest names the service account.
pub const CONTROLLER_ROLE_PREFIX: &str = "system:controller:";

fn controller(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    cluster_role(&format!("{CONTROLLER_ROLE_PREFIX}{name}"), rules)
}

/// The controllers' ClusterRoles, unmarked; [`super::bootstrap_cluster_roles`] marks them.
pub(super) fn unmarked_controller_roles() -> Vec<ClusterRole> {
    vec![
        controller(
            "attachdetach-controller",
            vec![
                rule(&["list", "watch"])
                    .groups(&[LEGACY])
                    .resources(&["persistentvolumes", "persistentvolumeclaims"])
                    .build(),
                rule(&["get", "list", "watch"]).groups(&[LEGACY]).resources(&["nodes"]).build(),
                rule(&["patch", "update"]).groups(&[LEGACY]).resources(&["nodes/status"]).build(),
                rule(&["list", "watch"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                events_rule(),
                rule(&["get", "create", "delete", "list", "watch"])
                    .groups(&[STORAGE])
                    .resources(&["volumeattachments"])
                    .build(),
                rule(&["get", "watch", "list"]).groups(&[STORAGE]).resources(&["csidrivers"]).build(),
                rule(&["get", "watch", "list"]).groups(&[STORAGE]).resources(&["csinodes"]).build(),
            ],
        ),
        controller(
            "clusterrole-aggregation-controller",
            // Full power over ClusterRoles, escalate included, to write any aggregate.
            vec![rule(&["escalate", "get", "list", "watch", "update", "patch"])
                .groups(&[RBAC])
                .resources(&["clusterroles"])
                .build()],
        ),
        controller(
            "cronjob-controller",
            vec![
                rule(&["get", "list", "watch", "update"]).groups(&[BATCH]).resources(&["cronjobs"]).build(),
                rule(&["get", "list", "watch", "create", "update", "delete", "patch"])
                    .groups(&[BATCH])
                    .resources(&["jobs"])
                    .build(),
                rule(&["update"]).groups(&[BATCH]).resources(&["cronjobs/status"]).build(),
                rule(&["update"]).groups(&[BATCH]).resources(&["cronjobs/finalizers"]).build(),
                rule(&["list", "watch", "delete"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "daemon-set-controller",
            vec![
                rule(&["get", "list", "watch"]).groups(&[EXTENSIONS, APPS]).resources(&["daemonsets"]).build(),
                rule(&["update"]).groups(&[EXTENSIONS, APPS]).resources(&["daemonsets/status"]).build(),
                rule(&["update"]).groups(&[EXTENSIONS, APPS]).resources(&["daemonsets/finalizers"]).build(),
                rule(&["list", "watch"]).groups(&[LEGACY]).resources(&["nodes"]).build(),
                rule(&["list", "watch", "create", "delete", "patch"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                rule(&["create"]).groups(&[LEGACY]).resources(&["pods/binding"]).build(),
                rule(&["get", "list", "watch", "create", "delete", "update", "patch"])
                    .groups(&[APPS])
                    .resources(&["controllerrevisions"])
                    .build(),
                events_rule(),
            ],
        ),
        controller(
            "deployment-controller",
            vec![
                rule(&["get", "list", "watch", "update"])
                    .groups(&[EXTENSIONS, APPS])
                    .resources(&["deployments"])
                    .build(),
                rule(&["update"]).groups(&[EXTENSIONS, APPS]).resources(&["deployments/status"]).build(),
                rule(&["update"]).groups(&[EXTENSIONS, APPS]).resources(&["deployments/finalizers"]).build(),
                rule(&["get", "list", "watch", "create", "update", "patch", "delete"])
                    .groups(&[APPS, EXTENSIONS])
                    .resources(&["replicasets"])
                    .build(),
                // "update" on pods stays for older clients (kubernetes#36897).
                rule(&["get", "list", "watch", "update"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "disruption-controller",
            vec![
                rule(&["get", "list", "watch"]).groups(&[EXTENSIONS, APPS]).resources(&["deployments"]).build(),
                rule(&["get", "list", "watch"]).groups(&[APPS, EXTENSIONS]).resources(&["replicasets"]).build(),
                rule(&["get", "list", "watch"]).groups(&[LEGACY]).resources(&["replicationcontrollers"]).build(),
                rule(&["get", "list", "watch"]).groups(&[POLICY]).resources(&["poddisruptionbudgets"]).build(),
                rule(&["get", "list", "watch"]).groups(&[APPS]).resources(&["statefulsets"]).build(),
                rule(&["update"]).groups(&[POLICY]).resources(&["poddisruptionbudgets/status"]).build(),
                rule(&["patch", "update"]).groups(&[LEGACY]).resources(&["pods/status"]).build(),
                rule(&["get"]).groups(&["*"]).resources(&["*/scale"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "endpoint-controller",
            vec![
                rule(&["get", "list", "watch"]).groups(&[LEGACY]).resources(&["services", "pods"]).build(),
                rule(&["get", "list", "watch", "create", "update", "delete"])
                    .groups(&[LEGACY])
                    .resources(&["endpoints"])
                    .build(),
                rule(&["create"]).groups(&[LEGACY]).resources(&["endpoints/restricted"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "endpointslice-controller",
            vec![
                rule(&["get", "list", "watch"]).groups(&[LEGACY]).resources(&["services", "pods", "nodes"]).build(),
                // Slices are owned by their Service with blockOwnerDeletion, which needs its finalizers.
                rule(&["update"]).groups(&[LEGACY]).resources(&["services/finalizers"]).build(),
                rule(&["get", "list", "watch", "create", "update", "delete"])
                    .groups(&[DISCOVERY])
                    .resources(&["endpointslices"])
                    .build(),
                events_rule(),
            ],
        ),
        controller(
            "endpointslicemirroring-controller",
            vec![
                rule(&["get", "list", "watch"]).groups(&[LEGACY]).resources(&["services", "endpoints"]).build(),
                rule(&["update"]).groups(&[LEGACY]).resources(&["services/finalizers"]).build(),
                rule(&["update"]).groups(&[LEGACY]).resources(&["endpoints/finalizers"]).build(),
                rule(&["get", "list", "watch", "create", "update", "delete"])
                    .groups(&[DISCOVERY])
                    .resources(&["endpointslices"])
                    .build(),
                events_rule(),
            ],
        ),
        controller(
            "expand-controller",
            vec![
                rule(&["get", "list", "watch", "update", "patch"])
                    .groups(&[LEGACY])
                    .resources(&["persistentvolumes"])
                    .build(),
                rule(&["update", "patch"]).groups(&[LEGACY]).resources(&["persistentvolumeclaims/status"]).build(),
                rule(&["get", "list", "watch"]).groups(&[LEGACY]).resources(&["persistentvolumeclaims"]).build(),
                events_rule(),
                rule(&["get"]).groups(&[LEGACY]).resources(&["services"]).build(),
            ],
        ),
        controller(
            "ephemeral-volume-controller",
            vec![
                rule(&["get", "list", "watch"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                rule(&["update"]).groups(&[LEGACY]).resources(&["pods/finalizers"]).build(),
                rule(&["get", "list", "watch", "create"])
                    .groups(&[LEGACY])
                    .resources(&["persistentvolumeclaims"])
                    .build(),
                events_rule(),
            ],
        ),
        controller(
            "generic-garbage-collector",
            // List, watch, get, update and delete anything, to follow owner references.
            vec![
                rule(&["get", "list", "watch", "patch", "update", "delete"]).groups(&["*"]).resources(&["*"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "horizontal-pod-autoscaler",
            vec![
                rule(&["get", "list", "watch"]).groups(&[AUTOSCALING]).resources(&["horizontalpodautoscalers"]).build(),
                rule(&["update"]).groups(&[AUTOSCALING]).resources(&["horizontalpodautoscalers/status"]).build(),
                rule(&["get", "update"]).groups(&["*"]).resources(&["*/scale"]).build(),
                // Pods come from the controller-manager's shared informers: listing is all upstream grants.
                rule(&["list"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                rule(&["list"]).groups(&[METRICS]).resources(&["pods"]).build(),
                rule(&["get", "list"]).groups(&[CUSTOM_METRICS]).resources(&["*"]).build(),
                rule(&["get", "list"]).groups(&[EXTERNAL_METRICS]).resources(&["*"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "job-controller",
            vec![
                rule(&["get", "list", "watch", "update", "patch"]).groups(&[BATCH]).resources(&["jobs"]).build(),
                rule(&["update"]).groups(&[BATCH]).resources(&["jobs/status"]).build(),
                rule(&["update"]).groups(&[BATCH]).resources(&["jobs/finalizers"]).build(),
                rule(&["list", "watch", "create", "delete", "patch"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "namespace-controller",
            vec![
                rule(&["get", "list", "watch", "delete"]).groups(&[LEGACY]).resources(&["namespaces"]).build(),
                rule(&["update"]).groups(&[LEGACY]).resources(&["namespaces/finalize", "namespaces/status"]).build(),
                // Emptying a namespace means deleting everything in it.
                rule(&["get", "list", "watch", "delete", "deletecollection"]).groups(&["*"]).resources(&["*"]).build(),
            ],
        ),
        controller(
            "node-controller",
            vec![
                rule(&["get", "list", "watch", "update", "delete", "patch"])
                    .groups(&[LEGACY])
                    .resources(&["nodes"])
                    .build(),
                rule(&["patch", "update"]).groups(&[LEGACY]).resources(&["nodes/status"]).build(),
                // Marking and deleting pods of lost nodes.
                rule(&["patch", "update"]).groups(&[LEGACY]).resources(&["pods/status"]).build(),
                rule(&["list", "watch", "get", "delete"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "persistent-volume-binder",
            vec![
                rule(&["get", "list", "watch", "update", "create", "delete"])
                    .groups(&[LEGACY])
                    .resources(&["persistentvolumes"])
                    .build(),
                rule(&["update"]).groups(&[LEGACY]).resources(&["persistentvolumes/status"]).build(),
                rule(&["get", "list", "watch", "update"])
                    .groups(&[LEGACY])
                    .resources(&["persistentvolumeclaims"])
                    .build(),
                rule(&["update"]).groups(&[LEGACY]).resources(&["persistentvolumeclaims/status"]).build(),
                rule(&["list", "watch", "get", "create", "delete"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                rule(&["get", "list", "watch"]).groups(&[STORAGE]).resources(&["storageclasses"]).build(),
                rule(&["list", "watch"]).groups(&[LEGACY]).resources(&["nodes"]).build(),
                events_rule(),
                // The recycler watches its pod's events.
                rule(&["watch"]).groups(&[LEGACY]).resources(&["events"]).build(),
                rule(&["get"]).groups(&[LEGACY]).resources(&["services"]).build(),
            ],
        ),
        controller(
            "pod-garbage-collector",
            vec![
                rule(&["list", "watch", "delete"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                rule(&["get", "list", "watch"]).groups(&[LEGACY]).resources(&["nodes"]).build(),
                rule(&["patch"]).groups(&[LEGACY]).resources(&["pods/status"]).build(),
            ],
        ),
        controller(
            "replicaset-controller",
            vec![
                rule(&["get", "list", "watch", "update"])
                    .groups(&[APPS, EXTENSIONS])
                    .resources(&["replicasets"])
                    .build(),
                rule(&["update"]).groups(&[APPS, EXTENSIONS]).resources(&["replicasets/status"]).build(),
                rule(&["update"]).groups(&[APPS, EXTENSIONS]).resources(&["replicasets/finalizers"]).build(),
                rule(&["list", "watch", "patch", "create", "delete"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "replication-controller",
            vec![
                rule(&["get", "list", "watch", "update"])
                    .groups(&[LEGACY])
                    .resources(&["replicationcontrollers"])
                    .build(),
                rule(&["update"]).groups(&[LEGACY]).resources(&["replicationcontrollers/status"]).build(),
                rule(&["update"]).groups(&[LEGACY]).resources(&["replicationcontrollers/finalizers"]).build(),
                rule(&["list", "watch", "patch", "create", "delete"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "resourcequota-controller",
            // Quota may count anything, so it lists and watches everything.
            vec![
                rule(&["list", "watch"]).groups(&["*"]).resources(&["*"]).build(),
                rule(&["update"]).groups(&[LEGACY]).resources(&["resourcequotas/status"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "route-controller",
            vec![
                rule(&["list", "watch"]).groups(&[LEGACY]).resources(&["nodes"]).build(),
                rule(&["patch"]).groups(&[LEGACY]).resources(&["nodes/status"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "service-account-controller",
            vec![rule(&["create"]).groups(&[LEGACY]).resources(&["serviceaccounts"]).build(), events_rule()],
        ),
        controller(
            "service-controller",
            vec![
                rule(&["get", "list", "watch"]).groups(&[LEGACY]).resources(&["services"]).build(),
                rule(&["patch", "update"]).groups(&[LEGACY]).resources(&["services/status"]).build(),
                rule(&["list", "watch"]).groups(&[LEGACY]).resources(&["nodes"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "service-cidrs-controller",
            vec![
                rule(&["get", "list", "watch", "patch", "update"])
                    .groups(&[NETWORKING])
                    .resources(&["servicecidrs"])
                    .build(),
                rule(&["patch", "update"]).groups(&[NETWORKING]).resources(&["servicecidrs/finalizers"]).build(),
                rule(&["patch", "update"]).groups(&[NETWORKING]).resources(&["servicecidrs/status"]).build(),
                rule(&["get", "list", "watch"]).groups(&[NETWORKING]).resources(&["ipaddresses"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "statefulset-controller",
            vec![
                rule(&["list", "watch"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                rule(&["get", "list", "watch"]).groups(&[APPS]).resources(&["statefulsets"]).build(),
                rule(&["update"]).groups(&[APPS]).resources(&["statefulsets/status"]).build(),
                rule(&["update"]).groups(&[APPS]).resources(&["statefulsets/finalizers"]).build(),
                rule(&["get", "create", "delete", "update", "patch"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                rule(&["get", "create", "delete", "update", "patch", "list", "watch"])
                    .groups(&[APPS])
                    .resources(&["controllerrevisions"])
                    .build(),
                rule(&["get", "create", "list", "watch"])
                    .groups(&[LEGACY])
                    .resources(&["persistentvolumeclaims"])
                    .build(),
                rule(&["update", "delete"]).groups(&[LEGACY]).resources(&["persistentvolumeclaims"]).build(),
                rule(&["update"]).groups(&[LEGACY]).resources(&["pods/finalizers"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "ttl-controller",
            vec![
                rule(&["update", "patch", "list", "watch"]).groups(&[LEGACY]).resources(&["nodes"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "certificate-controller",
            vec![
                rule(&["get", "list", "watch", "delete"])
                    .groups(&[CERTIFICATES])
                    .resources(&["certificatesigningrequests"])
                    .build(),
                rule(&["update"])
                    .groups(&[CERTIFICATES])
                    .resources(&["certificatesigningrequests/status", "certificatesigningrequests/approval"])
                    .build(),
                rule(&["approve"])
                    .groups(&[CERTIFICATES])
                    .resources(&["signers"])
                    .names(&["kubernetes.io/kube-apiserver-client-kubelet"])
                    .build(),
                rule(&["sign"])
                    .groups(&[CERTIFICATES])
                    .resources(&["signers"])
                    .names(&[
                        "kubernetes.io/legacy-unknown",
                        "kubernetes.io/kube-apiserver-client",
                        "kubernetes.io/kube-apiserver-client-kubelet",
                        "kubernetes.io/kubelet-serving",
                    ])
                    .build(),
                rule(&["create"]).groups(&[AUTHORIZATION]).resources(&["subjectaccessreviews"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "pvc-protection-controller",
            vec![
                rule(&["get", "list", "watch", "update"])
                    .groups(&[LEGACY])
                    .resources(&["persistentvolumeclaims"])
                    .build(),
                rule(&["list", "watch", "get"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "pv-protection-controller",
            vec![
                rule(&["get", "list", "watch", "update"]).groups(&[LEGACY]).resources(&["persistentvolumes"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "ttl-after-finished-controller",
            vec![
                rule(&["get", "list", "watch", "delete"]).groups(&[BATCH]).resources(&["jobs"]).build(),
                events_rule(),
            ],
        ),
        controller(
            "root-ca-cert-publisher",
            vec![rule(&["create", "update"]).groups(&[LEGACY]).resources(&["configmaps"]).build(), events_rule()],
        ),
        controller(
            "validatingadmissionpolicy-status-controller",
            vec![
                rule(&["get", "list", "watch"])
                    .groups(&[ADMISSION_REGISTRATION])
                    .resources(&["validatingadmissionpolicies"])
                    .build(),
                rule(&["get", "patch", "update"])
                    .groups(&[ADMISSION_REGISTRATION])
                    .resources(&["validatingadmissionpolicies/status"])
                    .build(),
                events_rule(),
            ],
        ),
        controller(
            "legacy-service-account-token-cleaner",
            vec![
                rule(&["get"])
                    .groups(&[LEGACY])
                    .resources(&["configmaps"])
                    .names(&["kube-apiserver-legacy-service-account-token-tracking"])
                    .build(),
                rule(&["patch", "delete"]).groups(&[LEGACY]).resources(&["secrets"]).build(),
            ],
        ),
        controller(
            "selinux-warning-controller",
            vec![
                events_rule(),
                rule(&["get", "list", "watch"]).groups(&[LEGACY]).resources(&["persistentvolumes"]).build(),
                rule(&["get", "list", "watch"]).groups(&[LEGACY]).resources(&["persistentvolumeclaims"]).build(),
                rule(&["get", "list", "watch"]).groups(&[LEGACY]).resources(&["pods"]).build(),
                rule(&["get", "list", "watch"]).groups(&[STORAGE]).resources(&["csidrivers"]).build(),
            ],
        ),
    ]
}

/// Each controller's `system:controller:<name>` ClusterRole, marked as bootstrap policy.
pub fn controller_roles() -> Vec<ClusterRole> {
    let mut roles = unmarked_controller_roles();
    roles.iter_mut().for_each(|r| super::mark_bootstrap(&mut r.metadata));
    roles
}

/// Each controller role bound to service account `kube-system/<name>`, marked as bootstrap policy.
pub fn controller_role_bindings() -> Vec<ClusterRoleBinding> {
    unmarked_controller_roles()
        .iter()
        .filter_map(|role| {
            let name = role.metadata.name.as_deref()?;
            let account = name.strip_prefix(CONTROLLER_ROLE_PREFIX)?;
            let mut binding = cluster_role_binding(name, vec![subject_service_account("kube-system", account)]);
            super::mark_bootstrap(&mut binding.metadata);
            Some(binding)
        })
        .collect()
}
