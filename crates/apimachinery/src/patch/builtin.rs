//! Patch strategies of the built-in API types.
//!
//! [`PATCH_STRATEGIES`] lists upstream's `patchStrategy`/`patchMergeKey`
//! struct tags for every built-in type served by Kubernetes v1.33, keyed by
//! OpenAPI definition name and JSON field name. [`annotate_openapi_schemas`]
//! writes them into OpenAPI schemas as `x-kubernetes-patch-strategy` and
//! `x-kubernetes-patch-merge-key`, which is where upstream publishes them and
//! where [`SchemaPatchMeta`](super::SchemaPatchMeta) reads them back.
//!
//! Lists without tags (`PodSpec.tolerations`, `Container.args`, ...) are
//! atomic for strategic merge patch: a patch replaces them whole.
//!
//! [`TYPE_GRAPH`] links each type to the types of its fields, limited to the
//! paths that lead to a tagged field, so [`BuiltinPatchMeta`] can drive
//! strategic merge patch for built-in kinds without any OpenAPI document.

use serde_json::{Map, Value};

use super::meta::{PatchMeta, PatchStrategy};

/// (definition, field, strategy, merge key or `""`), sorted by definition.
///
/// Collected from the `+patchStrategy`/`+patchMergeKey` markers of the
/// k8s.io/api, apimachinery, apiextensions-apiserver and kube-aggregator
/// types, limited to the group versions and fields that v1.33 serves.
/// `EphemeralContainer` carries the fields of the embedded `EphemeralContainerCommon`.
#[rustfmt::skip]
pub const PATCH_STRATEGIES: &[(&str, &str, &str, &str)] = &[
    ("io.k8s.api.admissionregistration.v1.MutatingWebhook", "matchConditions", "merge", "name"),
    ("io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration", "webhooks", "merge", "name"),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "matchConditions", "merge", "name"),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "variables", "merge", "name"),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "matchConditions", "merge", "name"),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration", "webhooks", "merge", "name"),
    ("io.k8s.api.admissionregistration.v1alpha1.MutatingAdmissionPolicySpec", "matchConditions", "merge", "name"),
    ("io.k8s.api.admissionregistration.v1beta1.ValidatingAdmissionPolicySpec", "matchConditions", "merge", "name"),
    ("io.k8s.api.admissionregistration.v1beta1.ValidatingAdmissionPolicySpec", "variables", "merge", "name"),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "merge", "type"),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "retainKeys", ""),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "merge", "type"),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "merge", "type"),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "merge", "type"),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", "merge", "type"),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "merge", "type"),
    ("io.k8s.api.core.v1.ComponentStatus", "conditions", "merge", "type"),
    ("io.k8s.api.core.v1.Container", "env", "merge", "name"),
    ("io.k8s.api.core.v1.Container", "ports", "merge", "containerPort"),
    ("io.k8s.api.core.v1.Container", "volumeDevices", "merge", "devicePath"),
    ("io.k8s.api.core.v1.Container", "volumeMounts", "merge", "mountPath"),
    ("io.k8s.api.core.v1.ContainerStatus", "allocatedResourcesStatus", "merge", "name"),
    ("io.k8s.api.core.v1.ContainerStatus", "volumeMounts", "merge", "mountPath"),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", "merge", "name"),
    ("io.k8s.api.core.v1.EphemeralContainer", "ports", "merge", "containerPort"),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", "merge", "devicePath"),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", "merge", "mountPath"),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", "merge", "type"),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", ""),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", "merge", "type"),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", "merge", "type"),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", "merge", "type"),
    ("io.k8s.api.core.v1.PodSpec", "containers", "merge", "name"),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "merge", "name"),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", "ip"),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "merge", "name"),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "merge", "name"),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", "merge,retainKeys", "name"),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", "merge", "name"),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "merge", "topologyKey"),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "merge,retainKeys", "name"),
    ("io.k8s.api.core.v1.PodStatus", "conditions", "merge", "type"),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "merge", "ip"),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "merge", "ip"),
    ("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", "merge,retainKeys", "name"),
    ("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", "merge", "type"),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", "merge", "name"),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", "port"),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", "merge", "type"),
    ("io.k8s.api.flowcontrol.v1.FlowSchemaStatus", "conditions", "merge", "type"),
    ("io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus", "conditions", "merge", "type"),
    ("io.k8s.api.networking.v1.ServiceCIDRStatus", "conditions", "merge", "type"),
    ("io.k8s.api.networking.v1beta1.ServiceCIDRStatus", "conditions", "merge", "type"),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector", "replace", ""),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", "merge", "type"),
    ("io.k8s.api.resource.v1alpha3.ResourceClaimStatus", "reservedFor", "merge", "uid"),
    ("io.k8s.api.resource.v1beta1.ResourceClaimStatus", "reservedFor", "merge", "uid"),
    ("io.k8s.api.resource.v1beta2.ResourceClaimStatus", "reservedFor", "merge", "uid"),
    ("io.k8s.api.storage.v1.CSINodeSpec", "drivers", "merge", "name"),
    ("io.k8s.api.storagemigration.v1alpha1.StorageVersionMigrationList", "items", "merge", "type"),
    ("io.k8s.api.storagemigration.v1alpha1.StorageVersionMigrationStatus", "conditions", "merge", "type"),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "x-kubernetes-validations", "merge", "rule"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", "merge", ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "merge", "uid"),
    ("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus", "conditions", "merge", "type"),
];

/// (definition, field, definition of the field's type, whether the field is a
/// map whose values have that type), sorted by definition and field. For list
/// fields the type is the element type. Only fields on a path to a field of
/// [`PATCH_STRATEGIES`] are listed; generated from the v1.33 API types.
#[rustfmt::skip]
pub const TYPE_GRAPH: &[(&str, &str, &str, bool)] = &[
    ("io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration", "webhooks", "io.k8s.api.admissionregistration.v1.MutatingWebhook", false),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicy", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicy", "spec", "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", false),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyBinding", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration", "webhooks", "io.k8s.api.admissionregistration.v1.ValidatingWebhook", false),
    ("io.k8s.api.admissionregistration.v1alpha1.MutatingAdmissionPolicy", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.admissionregistration.v1alpha1.MutatingAdmissionPolicy", "spec", "io.k8s.api.admissionregistration.v1alpha1.MutatingAdmissionPolicySpec", false),
    ("io.k8s.api.admissionregistration.v1alpha1.MutatingAdmissionPolicyBinding", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.admissionregistration.v1beta1.ValidatingAdmissionPolicy", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.admissionregistration.v1beta1.ValidatingAdmissionPolicy", "spec", "io.k8s.api.admissionregistration.v1beta1.ValidatingAdmissionPolicySpec", false),
    ("io.k8s.api.admissionregistration.v1beta1.ValidatingAdmissionPolicyBinding", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.apiserverinternal.v1alpha1.StorageVersion", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.apps.v1.ControllerRevision", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.apps.v1.DaemonSet", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.apps.v1.DaemonSet", "spec", "io.k8s.api.apps.v1.DaemonSetSpec", false),
    ("io.k8s.api.apps.v1.DaemonSet", "status", "io.k8s.api.apps.v1.DaemonSetStatus", false),
    ("io.k8s.api.apps.v1.DaemonSetSpec", "template", "io.k8s.api.core.v1.PodTemplateSpec", false),
    ("io.k8s.api.apps.v1.Deployment", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.apps.v1.Deployment", "spec", "io.k8s.api.apps.v1.DeploymentSpec", false),
    ("io.k8s.api.apps.v1.Deployment", "status", "io.k8s.api.apps.v1.DeploymentStatus", false),
    ("io.k8s.api.apps.v1.DeploymentSpec", "template", "io.k8s.api.core.v1.PodTemplateSpec", false),
    ("io.k8s.api.apps.v1.ReplicaSet", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.apps.v1.ReplicaSet", "spec", "io.k8s.api.apps.v1.ReplicaSetSpec", false),
    ("io.k8s.api.apps.v1.ReplicaSet", "status", "io.k8s.api.apps.v1.ReplicaSetStatus", false),
    ("io.k8s.api.apps.v1.ReplicaSetSpec", "template", "io.k8s.api.core.v1.PodTemplateSpec", false),
    ("io.k8s.api.apps.v1.StatefulSet", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.apps.v1.StatefulSet", "spec", "io.k8s.api.apps.v1.StatefulSetSpec", false),
    ("io.k8s.api.apps.v1.StatefulSet", "status", "io.k8s.api.apps.v1.StatefulSetStatus", false),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "template", "io.k8s.api.core.v1.PodTemplateSpec", false),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "volumeClaimTemplates", "io.k8s.api.core.v1.PersistentVolumeClaim", false),
    ("io.k8s.api.authentication.v1.SelfSubjectReview", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.authentication.v1.TokenRequest", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.authentication.v1.TokenReview", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.authorization.v1.LocalSubjectAccessReview", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.authorization.v1.SelfSubjectAccessReview", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.authorization.v1.SelfSubjectRulesReview", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.authorization.v1.SubjectAccessReview", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.autoscaling.v1.Scale", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler", "status", "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", false),
    ("io.k8s.api.batch.v1.CronJob", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.batch.v1.CronJob", "spec", "io.k8s.api.batch.v1.CronJobSpec", false),
    ("io.k8s.api.batch.v1.CronJobSpec", "jobTemplate", "io.k8s.api.batch.v1.JobTemplateSpec", false),
    ("io.k8s.api.batch.v1.Job", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.batch.v1.Job", "spec", "io.k8s.api.batch.v1.JobSpec", false),
    ("io.k8s.api.batch.v1.Job", "status", "io.k8s.api.batch.v1.JobStatus", false),
    ("io.k8s.api.batch.v1.JobSpec", "template", "io.k8s.api.core.v1.PodTemplateSpec", false),
    ("io.k8s.api.batch.v1.JobTemplateSpec", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.batch.v1.JobTemplateSpec", "spec", "io.k8s.api.batch.v1.JobSpec", false),
    ("io.k8s.api.certificates.v1.CertificateSigningRequest", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.certificates.v1alpha1.ClusterTrustBundle", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.certificates.v1beta1.ClusterTrustBundle", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.coordination.v1.Lease", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.coordination.v1alpha2.LeaseCandidate", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.coordination.v1beta1.LeaseCandidate", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.Binding", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.ComponentStatus", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.ConfigMap", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.Endpoints", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.EphemeralVolumeSource", "volumeClaimTemplate", "io.k8s.api.core.v1.PersistentVolumeClaimTemplate", false),
    ("io.k8s.api.core.v1.Event", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.LimitRange", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.Namespace", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.Namespace", "status", "io.k8s.api.core.v1.NamespaceStatus", false),
    ("io.k8s.api.core.v1.Node", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.Node", "spec", "io.k8s.api.core.v1.NodeSpec", false),
    ("io.k8s.api.core.v1.Node", "status", "io.k8s.api.core.v1.NodeStatus", false),
    ("io.k8s.api.core.v1.PersistentVolume", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.PersistentVolumeClaim", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.PersistentVolumeClaim", "status", "io.k8s.api.core.v1.PersistentVolumeClaimStatus", false),
    ("io.k8s.api.core.v1.PersistentVolumeClaimTemplate", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.Pod", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.Pod", "spec", "io.k8s.api.core.v1.PodSpec", false),
    ("io.k8s.api.core.v1.Pod", "status", "io.k8s.api.core.v1.PodStatus", false),
    ("io.k8s.api.core.v1.PodSpec", "containers", "io.k8s.api.core.v1.Container", false),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "io.k8s.api.core.v1.EphemeralContainer", false),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "io.k8s.api.core.v1.Container", false),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "io.k8s.api.core.v1.Volume", false),
    ("io.k8s.api.core.v1.PodStatus", "containerStatuses", "io.k8s.api.core.v1.ContainerStatus", false),
    ("io.k8s.api.core.v1.PodStatus", "ephemeralContainerStatuses", "io.k8s.api.core.v1.ContainerStatus", false),
    ("io.k8s.api.core.v1.PodStatus", "initContainerStatuses", "io.k8s.api.core.v1.ContainerStatus", false),
    ("io.k8s.api.core.v1.PodTemplate", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.PodTemplate", "template", "io.k8s.api.core.v1.PodTemplateSpec", false),
    ("io.k8s.api.core.v1.PodTemplateSpec", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.PodTemplateSpec", "spec", "io.k8s.api.core.v1.PodSpec", false),
    ("io.k8s.api.core.v1.ReplicationController", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.ReplicationController", "spec", "io.k8s.api.core.v1.ReplicationControllerSpec", false),
    ("io.k8s.api.core.v1.ReplicationController", "status", "io.k8s.api.core.v1.ReplicationControllerStatus", false),
    ("io.k8s.api.core.v1.ReplicationControllerSpec", "template", "io.k8s.api.core.v1.PodTemplateSpec", false),
    ("io.k8s.api.core.v1.ResourceQuota", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.Secret", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.Service", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.Service", "spec", "io.k8s.api.core.v1.ServiceSpec", false),
    ("io.k8s.api.core.v1.Service", "status", "io.k8s.api.core.v1.ServiceStatus", false),
    ("io.k8s.api.core.v1.ServiceAccount", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.core.v1.Volume", "ephemeral", "io.k8s.api.core.v1.EphemeralVolumeSource", false),
    ("io.k8s.api.discovery.v1.EndpointSlice", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.events.v1.Event", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.flowcontrol.v1.FlowSchema", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.flowcontrol.v1.FlowSchema", "status", "io.k8s.api.flowcontrol.v1.FlowSchemaStatus", false),
    ("io.k8s.api.flowcontrol.v1.PriorityLevelConfiguration", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.flowcontrol.v1.PriorityLevelConfiguration", "status", "io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus", false),
    ("io.k8s.api.networking.v1.IPAddress", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.networking.v1.Ingress", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.networking.v1.IngressClass", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.networking.v1.NetworkPolicy", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.networking.v1.ServiceCIDR", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.networking.v1.ServiceCIDR", "status", "io.k8s.api.networking.v1.ServiceCIDRStatus", false),
    ("io.k8s.api.networking.v1beta1.IPAddress", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.networking.v1beta1.ServiceCIDR", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.networking.v1beta1.ServiceCIDR", "status", "io.k8s.api.networking.v1beta1.ServiceCIDRStatus", false),
    ("io.k8s.api.node.v1.RuntimeClass", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.policy.v1.Eviction", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.policy.v1.PodDisruptionBudget", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.policy.v1.PodDisruptionBudget", "spec", "io.k8s.api.policy.v1.PodDisruptionBudgetSpec", false),
    ("io.k8s.api.policy.v1.PodDisruptionBudget", "status", "io.k8s.api.policy.v1.PodDisruptionBudgetStatus", false),
    ("io.k8s.api.rbac.v1.ClusterRole", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.rbac.v1.ClusterRoleBinding", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.rbac.v1.Role", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.rbac.v1.RoleBinding", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1alpha3.DeviceClass", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1alpha3.DeviceTaintRule", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1alpha3.ResourceClaim", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1alpha3.ResourceClaim", "status", "io.k8s.api.resource.v1alpha3.ResourceClaimStatus", false),
    ("io.k8s.api.resource.v1alpha3.ResourceClaimTemplate", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1alpha3.ResourceClaimTemplate", "spec", "io.k8s.api.resource.v1alpha3.ResourceClaimTemplateSpec", false),
    ("io.k8s.api.resource.v1alpha3.ResourceClaimTemplateSpec", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1alpha3.ResourceSlice", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1beta1.DeviceClass", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1beta1.ResourceClaim", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1beta1.ResourceClaim", "status", "io.k8s.api.resource.v1beta1.ResourceClaimStatus", false),
    ("io.k8s.api.resource.v1beta1.ResourceClaimTemplate", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1beta1.ResourceClaimTemplate", "spec", "io.k8s.api.resource.v1beta1.ResourceClaimTemplateSpec", false),
    ("io.k8s.api.resource.v1beta1.ResourceClaimTemplateSpec", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1beta1.ResourceSlice", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1beta2.DeviceClass", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1beta2.ResourceClaim", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1beta2.ResourceClaim", "status", "io.k8s.api.resource.v1beta2.ResourceClaimStatus", false),
    ("io.k8s.api.resource.v1beta2.ResourceClaimTemplate", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1beta2.ResourceClaimTemplate", "spec", "io.k8s.api.resource.v1beta2.ResourceClaimTemplateSpec", false),
    ("io.k8s.api.resource.v1beta2.ResourceClaimTemplateSpec", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.resource.v1beta2.ResourceSlice", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.scheduling.v1.PriorityClass", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.storage.v1.CSIDriver", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.storage.v1.CSINode", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.storage.v1.CSINode", "spec", "io.k8s.api.storage.v1.CSINodeSpec", false),
    ("io.k8s.api.storage.v1.CSIStorageCapacity", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.storage.v1.StorageClass", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.storage.v1.VolumeAttachment", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.storage.v1alpha1.VolumeAttributesClass", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.storage.v1beta1.VolumeAttributesClass", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.storagemigration.v1alpha1.StorageVersionMigration", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.api.storagemigration.v1alpha1.StorageVersionMigration", "status", "io.k8s.api.storagemigration.v1alpha1.StorageVersionMigrationStatus", false),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition", "spec", "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionSpec", false),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionSpec", "versions", "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion", false),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion", "schema", "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceValidation", false),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceValidation", "openAPIV3Schema", "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", false),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "allOf", "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", false),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "anyOf", "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", false),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "definitions", "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", true),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "not", "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", false),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "oneOf", "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", false),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "patternProperties", "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", true),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "properties", "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", true),
    ("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService", "metadata", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", false),
    ("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService", "status", "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus", false),
];

/// The built-in strategy of `field` in `definition`, if upstream declares one.
pub fn strategy_for(definition: &str, field: &str) -> Option<PatchStrategy> {
    let i = PATCH_STRATEGIES.binary_search_by(|(d, f, _, _)| (*d, *f).cmp(&(definition, field))).ok()?;
    let (_, _, strategy, key) = PATCH_STRATEGIES[i];
    PatchStrategy::parse(strategy, key).ok()
}

/// Patch metadata for the built-in kinds from [`PATCH_STRATEGIES`] and
/// [`TYPE_GRAPH`], for when no OpenAPI schemas are at hand. Fields off the
/// graph have no strategies anywhere below them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinPatchMeta {
    definition: &'static str,
    /// Positioned at a map field: every key holds a `definition`.
    map_values: bool,
}

impl BuiltinPatchMeta {
    /// The meta of a definition such as `io.k8s.api.apps.v1.Deployment`;
    /// `None` when neither table mentions it (use [`NoPatchMeta`](super::NoPatchMeta)).
    pub fn new(definition: &str) -> Option<Self> {
        let mut known = TYPE_GRAPH.iter().map(|(d, ..)| *d).chain(PATCH_STRATEGIES.iter().map(|(d, ..)| *d));
        let definition = known.find(|d| *d == definition)?;
        Some(BuiltinPatchMeta { definition, map_values: false })
    }

    pub fn definition(&self) -> &'static str {
        self.definition
    }
}

impl PatchMeta for BuiltinPatchMeta {
    fn strategy(&self, name: &str) -> Option<PatchStrategy> {
        if self.map_values {
            return None;
        }
        strategy_for(self.definition, name)
    }

    fn field(&self, name: &str) -> Option<Box<dyn PatchMeta + '_>> {
        if self.map_values {
            return Some(Box::new(BuiltinPatchMeta { definition: self.definition, map_values: false }));
        }
        let i = TYPE_GRAPH.binary_search_by(|(d, f, ..)| (*d, *f).cmp(&(self.definition, name))).ok()?;
        let (_, _, child, is_map) = TYPE_GRAPH[i];
        Some(Box::new(BuiltinPatchMeta { definition: child, map_values: is_map }))
    }
}

/// Adds `x-kubernetes-patch-strategy` (and `x-kubernetes-patch-merge-key`
/// when there is one) to the properties of `schemas` (a `components.schemas`
/// or `definitions` map) named in [`PATCH_STRATEGIES`]. Definitions or
/// properties the schemas lack are skipped. Returns how many properties were annotated.
pub fn annotate_openapi_schemas(schemas: &mut Map<String, Value>) -> usize {
    let mut annotated = 0;
    for (definition, field, strategy, merge_key) in PATCH_STRATEGIES {
        let Some(Value::Object(property)) =
            schemas.get_mut(*definition).and_then(|d| d.get_mut("properties")).and_then(|p| p.get_mut(*field))
        else {
            continue;
        };
        property.insert("x-kubernetes-patch-strategy".into(), Value::String(strategy.to_string()));
        if !merge_key.is_empty() {
            property.insert("x-kubernetes-patch-merge-key".into(), Value::String(merge_key.to_string()));
        }
        annotated += 1;
    }
    annotated
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::{MergeStrategy, PatchMeta, SchemaPatchMeta};
    use serde_json::json;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(PATCH_STRATEGIES.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
        assert!(TYPE_GRAPH.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
    }

    #[test]
    fn builtin_meta_walks_from_kinds_to_tagged_fields() {
        let deployment = BuiltinPatchMeta::new("io.k8s.api.apps.v1.Deployment").unwrap();
        let spec = deployment.field("spec").unwrap();
        assert!(spec.strategy("strategy").unwrap().retain_keys);
        let template = spec.field("template").unwrap();
        let pod_spec = template.field("spec").unwrap();
        assert_eq!(pod_spec.strategy("containers"), Some(PatchStrategy::merge(Some("name"))));
        let container = pod_spec.field("containers").unwrap();
        assert_eq!(container.strategy("env"), Some(PatchStrategy::merge(Some("name"))));
        assert!(container.field("env").is_none());
        let meta = deployment.field("metadata").unwrap();
        assert_eq!(meta.strategy("finalizers"), Some(PatchStrategy::merge(None)));
        assert!(BuiltinPatchMeta::new("io.k8s.api.core.v1.ConfigMap").is_some());
        assert!(BuiltinPatchMeta::new("example.com.v1.Widget").is_none());
    }

    #[test]
    fn builtin_meta_follows_map_values() {
        let crd =
            BuiltinPatchMeta::new("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps").unwrap();
        let nested = crd.field("properties").unwrap();
        assert_eq!(nested.strategy("x-kubernetes-validations"), None);
        let prop = nested.field("spec").unwrap();
        assert_eq!(prop.strategy("x-kubernetes-validations"), Some(PatchStrategy::merge(Some("rule"))));
    }

    #[test]
    fn builtin_meta_drives_a_strategic_merge_patch() {
        let meta = BuiltinPatchMeta::new("io.k8s.api.core.v1.Pod").unwrap();
        let original = json!({"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "image": "a:2"}]}});
        let out = crate::patch::strategic_merge_patch(&original, &patch, &meta).unwrap();
        assert_eq!(out["spec"]["containers"], json!([{"name": "a", "image": "a:2"}, {"name": "b", "image": "b:1"}]));
    }

    #[test]
    fn table_entries_are_unique_and_parse() {
        let mut seen = std::collections::HashSet::new();
        for (d, f, s, k) in PATCH_STRATEGIES {
            assert!(seen.insert((d, f)), "duplicate {d}.{f}");
            assert!(d.starts_with("io.k8s."), "{d}");
            PatchStrategy::parse(s, k).unwrap_or_else(|e| panic!("{d}.{f}: {e}"));
        }
    }

    #[test]
    fn well_known_fields_have_upstream_strategies() {
        let containers = strategy_for("io.k8s.api.core.v1.PodSpec", "containers").unwrap();
        assert_eq!(containers, PatchStrategy::merge(Some("name")));
        let volumes = strategy_for("io.k8s.api.core.v1.PodSpec", "volumes").unwrap();
        assert!(volumes.retain_keys);
        assert_eq!(volumes.merge_key.as_deref(), Some("name"));
        assert_eq!(
            strategy_for("io.k8s.api.core.v1.Container", "ports").unwrap().merge_key.as_deref(),
            Some("containerPort")
        );
        assert_eq!(
            strategy_for("io.k8s.api.core.v1.Container", "volumeMounts").unwrap().merge_key.as_deref(),
            Some("mountPath")
        );
        assert_eq!(
            strategy_for("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers"),
            Some(PatchStrategy::merge(None))
        );
        assert_eq!(
            strategy_for("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences")
                .unwrap()
                .merge_key
                .as_deref(),
            Some("uid")
        );
        assert_eq!(strategy_for("io.k8s.api.core.v1.ServiceSpec", "ports").unwrap().merge_key.as_deref(), Some("port"));
        assert_eq!(
            strategy_for("io.k8s.api.core.v1.NodeStatus", "addresses").unwrap().merge_key.as_deref(),
            Some("type")
        );
        let strategy = strategy_for("io.k8s.api.apps.v1.DeploymentSpec", "strategy").unwrap();
        assert!(strategy.retain_keys);
        assert_eq!(strategy.strategy, MergeStrategy::Default);
        assert_eq!(
            strategy_for("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector").unwrap().strategy,
            MergeStrategy::Replace
        );
        // Tolerations have no merge key upstream: they are atomic.
        assert_eq!(strategy_for("io.k8s.api.core.v1.PodSpec", "tolerations"), None);
    }

    #[test]
    fn annotation_writes_extensions_that_schema_meta_reads_back() {
        let mut schemas = json!({
            "io.k8s.api.core.v1.PodSpec": {"properties": {
                "containers": {"type": "array", "items": {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}},
                "tolerations": {"type": "array"}
            }},
            "io.k8s.api.core.v1.Container": {"properties": {"env": {"type": "array"}}}
        });
        let schemas = schemas.as_object_mut().unwrap();
        assert_eq!(annotate_openapi_schemas(schemas), 2);
        assert_eq!(
            schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert!(schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["tolerations"]
            .get("x-kubernetes-patch-strategy")
            .is_none());
        let meta = SchemaPatchMeta::new(schemas, "io.k8s.api.core.v1.PodSpec").unwrap();
        assert_eq!(meta.strategy("containers"), Some(PatchStrategy::merge(Some("name"))));
        assert_eq!(meta.field("containers").unwrap().strategy("env"), Some(PatchStrategy::merge(Some("name"))));
    }
}
