//! VolumeBinding and VolumeZone for pods with PersistentVolumeClaims: the
//! claims must exist; a bound volume's node affinity and zone labels must
//! admit the node; an unbound claim of an immediate-binding class keeps the
//! pod pending until a volume is bound to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use super::node::term_matches;
use super::Unfit;
use crate::cache::{NodeInfo, PodInfo};

pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const REASON_ZONE: &str = "node(s) had no available volume zone";
pub const REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

const ZONE_LABELS: [&str; 4] = [
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
];

/// Claims, volumes and classes, mirrored from their watches.
#[derive(Default)]
pub struct VolumeIndex {
    pub claims: HashMap<String, Arc<PersistentVolumeClaim>>,
    pub volumes: HashMap<String, Arc<PersistentVolume>>,
    pub classes: HashMap<String, Arc<StorageClass>>,
}

/// The bound volumes a pod uses.
pub struct State {
    volumes: Vec<Arc<PersistentVolume>>,
}

impl State {
    /// PreFilter: resolves every claim, or says why the pod cannot be placed anywhere.
    pub fn new(pod: &PodInfo, index: &VolumeIndex) -> Result<Option<State>, Unfit> {
        let claims: Vec<&str> = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()))
            .collect();
        if claims.is_empty() {
            return Ok(None);
        }
        let mut volumes = Vec::new();
        for claim in claims {
            let Some(pvc) = index.claims.get(&format!("{}/{claim}", pod.namespace)) else {
                return Err(Unfit::unresolvable(format!("persistentvolumeclaim \"{claim}\" not found")));
            };
            if pvc.metadata.deletion_timestamp.is_some() {
                return Err(Unfit::unresolvable(format!("persistentvolumeclaim \"{claim}\" is being deleted")));
            }
            match pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()).filter(|v| !v.is_empty()) {
                Some(volume) => match index.volumes.get(volume) {
                    Some(pv) => volumes.push(pv.clone()),
                    None => {
                        return Err(Unfit::unresolvable(format!(
                            "persistentvolumeclaim \"{claim}\" bound to non-existent persistentvolume \"{volume}\""
                        )))
                    }
                },
                None => {
                    let class = pvc.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("");
                    let delayed = index
                        .classes
                        .get(class)
                        .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
                    if !delayed {
                        return Err(Unfit::unresolvable(REASON_UNBOUND_IMMEDIATE));
                    }
                }
            }
        }
        Ok(Some(State { volumes }))
    }

    /// VolumeBinding's node check: each bound volume's required node affinity admits the node.
    pub fn filter_binding(&self, node: &NodeInfo) -> Result<(), Unfit> {
        let empty = BTreeMap::new();
        let labels = node.labels().unwrap_or(&empty);
        for pv in &self.volumes {
            let required = pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref());
            if let Some(req) = required {
                if !req.node_selector_terms.iter().any(|t| term_matches(t, labels, &node.name)) {
                    return Err(Unfit::unresolvable(REASON_NODE_CONFLICT));
                }
            }
        }
        Ok(())
    }

    /// VolumeZone: a volume labelled with zones or regions only goes to nodes in one of them.
    pub fn filter_zone(&self, node: &NodeInfo) -> Result<(), Unfit> {
        let empty = BTreeMap::new();
        let labels = node.labels().unwrap_or(&empty);
        for pv in &self.volumes {
            for key in ZONE_LABELS {
                let Some(wanted) = pv.metadata.labels.as_ref().and_then(|l| l.get(key)) else { continue };
                // Upstream writes several zones as `a__b`.
                let ok = labels.get(key).is_some_and(|v| wanted.split("__").any(|w| w == v));
                if !ok {
                    return Err(Unfit::unresolvable(REASON_ZONE));
                }
            }
        }
        Ok(())
    }
}
