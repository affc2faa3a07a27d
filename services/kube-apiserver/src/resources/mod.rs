//! The resource table: every built-in resource as a descriptor plus its
//! strategy. Adding a resource is one entry here (and a strategy if it needs
//! more than typed decoding).

mod apps;
mod autoscaling;
mod batch;
mod core;
mod plain;

use std::sync::Arc;

use k8s_openapi::api::{
    apps::v1 as apps_v1, authentication::v1 as authn_v1, authorization::v1 as authz_v1,
    autoscaling::v1 as autoscaling_v1, coordination::v1 as coordination_v1, core::v1 as core_v1,
    discovery::v1 as discovery_v1, events::v1 as events_v1, networking::v1 as networking_v1, policy::v1 as policy_v1,
    rbac::v1 as rbac_v1, scheduling::v1 as scheduling_v1, storage::v1 as storage_v1,
};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope, Resource};
use schemars::JsonSchema;

use crate::registry::strategy::{KindStrategy, Typed};
use crate::registry::{Backing, Conversion, ResourceDescriptor, ReviewKind, ScaleSpec, Subresources};

pub use plain::Plain;

/// Tells namespaced kinds from cluster-scoped ones at compile time.
pub trait Scope {
    const NAMESPACED: bool;
}
impl Scope for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl Scope for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

fn schema_of<T: JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

/// Discovery names and behaviour flags of one entry.
#[derive(Clone, Copy, Default)]
struct Names {
    singular: &'static str,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: Subresources,
    tracks_generation: bool,
    selectable_fields: &'static [&'static str],
    backing: Option<Backing>,
}

fn entry<S>(strategy: S, names: Names) -> ResourceDescriptor
where
    S: KindStrategy,
    S::Object: Resource + JsonSchema,
    <S::Object as Resource>::Scope: Scope,
{
    let definition: &'static str = Box::leak(<S::Object as JsonSchema>::schema_name().into_owned().into_boxed_str());
    ResourceDescriptor {
        group: <S::Object as Resource>::GROUP,
        version: <S::Object as Resource>::VERSION,
        kind: <S::Object as Resource>::KIND,
        plural: <S::Object as Resource>::URL_PATH_SEGMENT,
        singular: names.singular,
        short_names: names.short_names,
        categories: names.categories,
        namespaced: <<S::Object as Resource>::Scope as Scope>::NAMESPACED,
        backing: names.backing.unwrap_or(Backing::Etcd),
        subresources: names.subresources,
        tracks_generation: names.tracks_generation,
        definition,
        selectable_fields: names.selectable_fields,
        strategy: Arc::new(Typed::new(strategy)),
        schema: schema_of::<S::Object>,
        conversion: None,
    }
}

/// An additional served version `T` of `storage` (an entry made by [`entry`]),
/// converted to and from it by `conversion`.
fn served_version<T>(storage: &ResourceDescriptor, conversion: Conversion) -> ResourceDescriptor
where
    T: Resource + JsonSchema,
{
    let definition: &'static str = Box::leak(<T as JsonSchema>::schema_name().into_owned().into_boxed_str());
    ResourceDescriptor {
        group: storage.group,
        version: <T as Resource>::VERSION,
        kind: storage.kind,
        plural: storage.plural,
        singular: storage.singular,
        short_names: storage.short_names,
        categories: storage.categories,
        namespaced: storage.namespaced,
        backing: storage.backing,
        subresources: storage.subresources,
        tracks_generation: storage.tracks_generation,
        definition,
        selectable_fields: storage.selectable_fields,
        strategy: storage.strategy.clone(),
        schema: schema_of::<T>,
        conversion: Some(conversion),
    }
}

fn plain<T>(names: Names) -> ResourceDescriptor
where
    T: Resource + JsonSchema + serde::de::DeserializeOwned + serde::Serialize + Send + 'static,
    T::Scope: Scope,
{
    entry(<Plain<T> as Default>::default(), names)
}

const STATUS: Subresources =
    Subresources { status: true, scale: None, binding: false, eviction: false, finalize: false, token: false };

const fn scaled(selector: &'static str) -> Subresources {
    Subresources {
        status: true,
        scale: Some(ScaleSpec { spec_replicas: "/spec/replicas", status_replicas: "/status/replicas", selector }),
        binding: false,
        eviction: false,
        finalize: false,
        token: false,
    }
}

const ALL: &[&str] = &["all"];

const fn review(singular: &'static str, kind: ReviewKind) -> Names {
    Names {
        singular,
        short_names: &[],
        categories: &[],
        subresources: Subresources {
            status: false,
            scale: None,
            binding: false,
            eviction: false,
            finalize: false,
            token: false,
        },
        tracks_generation: false,
        selectable_fields: &[],
        backing: Some(Backing::Review(kind)),
    }
}

/// Every built-in resource this server serves, in discovery order.
#[allow(clippy::needless_update)] // every entry spells `..Names::default()` alike
pub fn builtin() -> Vec<ResourceDescriptor> {
    let hpa = entry(
        autoscaling::HorizontalPodAutoscalerStrategy,
        Names {
            singular: "horizontalpodautoscaler",
            short_names: &["hpa"],
            categories: ALL,
            subresources: STATUS,
            ..Names::default()
        },
    );
    let hpa_v1 = served_version::<autoscaling_v1::HorizontalPodAutoscaler>(&hpa, autoscaling::V1_CONVERSION);
    vec![
        // core/v1
        entry(
            core::NamespaceStrategy,
            Names {
                singular: "namespace",
                short_names: &["ns"],
                subresources: Subresources { finalize: true, ..STATUS },
                selectable_fields: &["status.phase"],
                ..Names::default()
            },
        ),
        entry(
            core::PodStrategy,
            Names {
                singular: "pod",
                short_names: &["po"],
                categories: ALL,
                subresources: Subresources { binding: true, eviction: true, ..STATUS },
                tracks_generation: true,
                selectable_fields: &[
                    "spec.nodeName",
                    "spec.restartPolicy",
                    "spec.schedulerName",
                    "spec.serviceAccountName",
                    "spec.hostNetwork",
                    "status.phase",
                    "status.podIP",
                    "status.nominatedNodeName",
                ],
                ..Names::default()
            },
        ),
        entry(
            core::ServiceStrategy,
            Names {
                singular: "service",
                short_names: &["svc"],
                categories: ALL,
                subresources: STATUS,
                selectable_fields: &["spec.clusterIP", "spec.type"],
                ..Names::default()
            },
        ),
        plain::<core_v1::Endpoints>(Names { singular: "endpoints", short_names: &["ep"], ..Names::default() }),
        plain::<core_v1::ConfigMap>(Names { singular: "configmap", short_names: &["cm"], ..Names::default() }),
        entry(core::SecretStrategy, Names { singular: "secret", selectable_fields: &["type"], ..Names::default() }),
        plain::<core_v1::ServiceAccount>(Names {
            singular: "serviceaccount",
            short_names: &["sa"],
            subresources: Subresources { token: true, ..Subresources::default() },
            ..Names::default()
        }),
        entry(
            core::NodeStrategy,
            Names {
                singular: "node",
                short_names: &["no"],
                subresources: STATUS,
                selectable_fields: &["spec.unschedulable"],
                ..Names::default()
            },
        ),
        plain::<core_v1::Event>(Names {
            singular: "event",
            short_names: &["ev"],
            selectable_fields: &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            ..Names::default()
        }),
        plain::<core_v1::ReplicationController>(Names {
            singular: "replicationcontroller",
            short_names: &["rc"],
            categories: ALL,
            subresources: scaled("/spec/selector"),
            tracks_generation: true,
            selectable_fields: &["status.replicas"],
            ..Names::default()
        }),
        plain::<core_v1::ResourceQuota>(Names {
            singular: "resourcequota",
            short_names: &["quota"],
            subresources: STATUS,
            ..Names::default()
        }),
        plain::<core_v1::LimitRange>(Names { singular: "limitrange", short_names: &["limits"], ..Names::default() }),
        plain::<core_v1::PersistentVolume>(Names {
            singular: "persistentvolume",
            short_names: &["pv"],
            subresources: STATUS,
            ..Names::default()
        }),
        plain::<core_v1::PersistentVolumeClaim>(Names {
            singular: "persistentvolumeclaim",
            short_names: &["pvc"],
            subresources: STATUS,
            ..Names::default()
        }),
        plain::<core_v1::PodTemplate>(Names { singular: "podtemplate", ..Names::default() }),
        // apps/v1
        entry(
            apps::DeploymentStrategy,
            Names {
                singular: "deployment",
                short_names: &["deploy"],
                categories: ALL,
                subresources: scaled("/spec/selector"),
                tracks_generation: true,
                ..Names::default()
            },
        ),
        entry(
            apps::ReplicaSetStrategy,
            Names {
                singular: "replicaset",
                short_names: &["rs"],
                categories: ALL,
                subresources: scaled("/spec/selector"),
                tracks_generation: true,
                selectable_fields: &["status.replicas"],
                ..Names::default()
            },
        ),
        entry(
            apps::StatefulSetStrategy,
            Names {
                singular: "statefulset",
                short_names: &["sts"],
                categories: ALL,
                subresources: scaled("/spec/selector"),
                tracks_generation: true,
                ..Names::default()
            },
        ),
        entry(
            apps::DaemonSetStrategy,
            Names {
                singular: "daemonset",
                short_names: &["ds"],
                categories: ALL,
                subresources: STATUS,
                tracks_generation: true,
                ..Names::default()
            },
        ),
        plain::<apps_v1::ControllerRevision>(Names { singular: "controllerrevision", ..Names::default() }),
        // autoscaling/v2, and autoscaling/v1 by conversion
        hpa,
        hpa_v1,
        // batch/v1
        entry(
            batch::JobStrategy,
            Names {
                singular: "job",
                categories: ALL,
                subresources: STATUS,
                tracks_generation: true,
                selectable_fields: &["status.successful"],
                ..Names::default()
            },
        ),
        entry(
            batch::CronJobStrategy,
            Names {
                singular: "cronjob",
                short_names: &["cj"],
                categories: ALL,
                subresources: STATUS,
                tracks_generation: true,
                ..Names::default()
            },
        ),
        // coordination.k8s.io/v1
        plain::<coordination_v1::Lease>(Names { singular: "lease", ..Names::default() }),
        // discovery.k8s.io/v1
        plain::<discovery_v1::EndpointSlice>(Names { singular: "endpointslice", ..Names::default() }),
        // events.k8s.io/v1
        plain::<events_v1::Event>(Names {
            singular: "event",
            short_names: &["ev"],
            selectable_fields: &["regarding.kind", "regarding.namespace", "regarding.name", "reason", "type"],
            ..Names::default()
        }),
        // networking.k8s.io/v1
        plain::<networking_v1::NetworkPolicy>(Names {
            singular: "networkpolicy",
            short_names: &["netpol"],
            tracks_generation: true,
            ..Names::default()
        }),
        plain::<networking_v1::Ingress>(Names {
            singular: "ingress",
            short_names: &["ing"],
            subresources: STATUS,
            tracks_generation: true,
            ..Names::default()
        }),
        plain::<networking_v1::IngressClass>(Names { singular: "ingressclass", ..Names::default() }),
        // policy/v1
        plain::<policy_v1::PodDisruptionBudget>(Names {
            singular: "poddisruptionbudget",
            short_names: &["pdb"],
            subresources: STATUS,
            tracks_generation: true,
            ..Names::default()
        }),
        // scheduling.k8s.io/v1
        plain::<scheduling_v1::PriorityClass>(Names {
            singular: "priorityclass",
            short_names: &["pc"],
            ..Names::default()
        }),
        // storage.k8s.io/v1
        plain::<storage_v1::StorageClass>(Names { singular: "storageclass", short_names: &["sc"], ..Names::default() }),
        plain::<storage_v1::CSIDriver>(Names { singular: "csidriver", ..Names::default() }),
        plain::<storage_v1::CSINode>(Names { singular: "csinode", ..Names::default() }),
        plain::<storage_v1::CSIStorageCapacity>(Names { singular: "csistoragecapacity", ..Names::default() }),
        plain::<storage_v1::VolumeAttachment>(Names {
            singular: "volumeattachment",
            subresources: STATUS,
            ..Names::default()
        }),
        // rbac.authorization.k8s.io/v1
        plain::<rbac_v1::Role>(Names { singular: "role", ..Names::default() }),
        plain::<rbac_v1::RoleBinding>(Names { singular: "rolebinding", ..Names::default() }),
        plain::<rbac_v1::ClusterRole>(Names { singular: "clusterrole", ..Names::default() }),
        plain::<rbac_v1::ClusterRoleBinding>(Names { singular: "clusterrolebinding", ..Names::default() }),
        // authentication.k8s.io/v1 and authorization.k8s.io/v1: reviews, never stored.
        plain::<authn_v1::SelfSubjectReview>(review("selfsubjectreview", ReviewKind::SelfSubject)),
        plain::<authn_v1::TokenReview>(review("tokenreview", ReviewKind::Token)),
        plain::<authz_v1::SelfSubjectAccessReview>(review("selfsubjectaccessreview", ReviewKind::SelfSubjectAccess)),
        plain::<authz_v1::SelfSubjectRulesReview>(review("selfsubjectrulesreview", ReviewKind::SelfSubjectRules)),
        plain::<authz_v1::SubjectAccessReview>(review("subjectaccessreview", ReviewKind::SubjectAccess)),
        plain::<authz_v1::LocalSubjectAccessReview>(review("localsubjectaccessreview", ReviewKind::LocalSubjectAccess)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_has_a_unique_path_and_a_definition() {
        let all = builtin();
        let mut seen = std::collections::HashSet::new();
        for r in &all {
            assert!(seen.insert((r.group, r.version, r.plural)), "duplicate {}", r.plural);
            assert!(r.definition.starts_with("io.k8s."), "{}", r.definition);
            assert!(!r.singular.is_empty(), "{} has no singular", r.plural);
        }
        let pods = all.iter().find(|r| r.plural == "pods").unwrap();
        assert!(pods.namespaced);
        let nodes = all.iter().find(|r| r.plural == "nodes").unwrap();
        assert!(!nodes.namespaced);
    }
}
