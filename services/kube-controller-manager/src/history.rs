//! ControllerRevisions: the template history of DaemonSets and StatefulSets
//! (what `kubectl rollout history|undo` reads), one per distinct template,
//! named `<owner>-<hash>`, holding a patch that restores the template.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, PostParams};
use kube::Resource;
use serde_json::json;

use crate::deployment::{equal_ignore_hash, template_hash};
use crate::util;

pub const REVISION_HASH: &str = "controller-revision-hash";

/// The strategic merge patch that puts `template` back.
pub fn revision_data(template: &PodTemplateSpec) -> serde_json::Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// Revisions controlled by `owner_uid`, oldest revision first.
pub fn owned(revisions: &[Arc<ControllerRevision>], ns: &str, owner_uid: &str) -> Vec<Arc<ControllerRevision>> {
    let mut v: Vec<Arc<ControllerRevision>> = revisions
        .iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(ns))
        .filter(|r| util::controller_ref(&r.metadata).is_some_and(|c| c.uid == owner_uid))
        .cloned()
        .collect();
    v.sort_by_key(|r| r.revision);
    v
}

/// The revision for `template`, created (or renumbered as the newest) as needed; returns its hash.
pub async fn ensure<K: Resource<DynamicType = ()>>(
    api: &Api<ControllerRevision>,
    owner: &K,
    revisions: &[Arc<ControllerRevision>],
    template: &PodTemplateSpec,
    collision_count: Option<i32>,
) -> Result<ControllerRevision, kube::Error> {
    let max = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    let existing = revisions.iter().find(|r| template_of(r).is_some_and(|t| equal_ignore_hash(&t, template)));
    if let Some(rev) = existing {
        if rev.revision == max {
            return Ok((**rev).clone());
        }
        // A rollback to an old template: it becomes the newest revision again.
        let mut renumbered = (**rev).clone();
        renumbered.revision = max + 1;
        return api
            .replace(rev.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &renumbered)
            .await;
    }
    let hash = template_hash(template, collision_count);
    let owner_name = owner.meta().name.clone().unwrap_or_default();
    let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(REVISION_HASH.into(), hash.clone());
    let rev = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{owner_name}-{hash}")),
            namespace: owner.meta().namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![util::new_controller_ref(owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(revision_data(template))),
        revision: max + 1,
    };
    match api.create(&PostParams::default(), &rev).await {
        Ok(r) => Ok(r),
        Err(e) if util::api_code(&e) == Some(409) => api.get(rev.metadata.name.as_deref().unwrap_or_default()).await,
        Err(e) => Err(e),
    }
}

pub fn hash_of(rev: &ControllerRevision) -> String {
    rev.metadata.labels.as_ref().and_then(|l| l.get(REVISION_HASH).cloned()).unwrap_or_default()
}

/// Deletes the oldest revisions beyond `limit` that no pod still runs
/// (`live` holds the revisions' hashes or names that pods carry).
pub async fn truncate(
    api: &Api<ControllerRevision>,
    revisions: &[Arc<ControllerRevision>],
    live: &HashSet<String>,
    current: &str,
    limit: i32,
) -> Result<(), kube::Error> {
    let old: Vec<&Arc<ControllerRevision>> = revisions
        .iter()
        .filter(|r| r.metadata.name.as_deref() != Some(current) && !live.contains(&hash_of(r)))
        .collect();
    let excess = old.len().saturating_sub(limit.max(0) as usize);
    for r in old.into_iter().take(excess) {
        match api.delete(r.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if util::api_code(&e) == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
