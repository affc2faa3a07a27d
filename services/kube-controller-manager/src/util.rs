//! Helpers every controller shares: keys, controller references, pod
//! readiness, label selectors and creation/deletion expectations.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use apimachinery::selector::label::LabelSelector as Selector;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;

/// `namespace/name`, the work-queue key.
pub fn key_of(meta: &ObjectMeta) -> String {
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true))
}

/// An owner reference with controller=true and blockOwnerDeletion=true.
pub fn new_controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// A metav1.LabelSelector as our selector; an unparsable one selects nothing.
pub fn selector(s: Option<&LabelSelector>) -> Selector {
    let Some(s) = s else { return Selector::nothing() };
    match serde_json::to_value(s)
        .map_err(|e| e.to_string())
        .and_then(|v| Selector::from_json(&v).map_err(|e| e.to_string()))
    {
        Ok(sel) => sel,
        Err(e) => {
            tracing::warn!("invalid label selector: {e}");
            Selector::nothing()
        }
    }
}

pub fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// Not terminal and not being deleted: upstream's FilterActivePods.
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod's Ready condition turned True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Option<jiff::Timestamp>> {
    let cond = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
    (cond.status == "True").then(|| cond.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since + jiff::SignedDuration::from_secs(i64::from(min_ready_seconds)) <= now,
    }
}

/// A kube API error's HTTP code, if it is one.
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

const EXPECTATIONS_TTL: Duration = Duration::from_secs(300);

/// Upstream's ControllerExpectations: creations and deletions a controller
/// issued but has not yet seen through its watch. A controller does not act
/// on an object again until they are all observed (or five minutes pass), so
/// a slow watch never makes it create or delete twice.
#[derive(Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    adds: i64,
    deletes: HashSet<String>,
    at: Instant,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn satisfied(&self, key: &str) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(p) => (p.adds <= 0 && p.deletes.is_empty()) || p.at.elapsed() > EXPECTATIONS_TTL,
        }
    }

    pub fn expect(&self, key: &str, adds: i64, deletes: impl IntoIterator<Item = String>) {
        self.lock().insert(key.into(), Pending { adds, deletes: deletes.into_iter().collect(), at: Instant::now() });
    }

    pub fn creation_observed(&self, key: &str) {
        self.lowered(key, 1);
    }

    pub fn lowered(&self, key: &str, n: i64) {
        if let Some(p) = self.lock().get_mut(key) {
            p.adds -= n;
        }
    }

    pub fn deletion_observed(&self, key: &str, pod_key: &str) {
        if let Some(p) = self.lock().get_mut(key) {
            p.deletes.remove(pod_key);
        }
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_are_satisfied_once_every_creation_and_deletion_is_seen() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"));
        e.expect("ns/rs", 2, ["ns/p1".to_string()]);
        e.creation_observed("ns/rs");
        e.deletion_observed("ns/rs", "ns/p1");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }
}
