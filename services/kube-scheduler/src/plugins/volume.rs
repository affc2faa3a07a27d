//! VolumeBinding and VolumeZone for pods with PersistentVolumeClaims: the
//! claims must exist; a bound volume's node affinity and zone labels must
//! admit the node; an unbound claim of an immediate-binding class keeps the
//! pod pending until a volume is bound to it. NodeVolumeLimits (upstream's
//! CSILimits): a node's CSINode caps how many volumes of each CSI driver its
//! pods may use at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{CSINode, StorageClass};

use super::node::term_matches;
use super::Unfit;
use crate::cache::{NodeInfo, PodInfo};

pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const REASON_ZONE: &str = "node(s) had no available volume zone";
pub const REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const REASON_MAX_VOLUME_COUNT: &str = "node(s) exceed max volume count";

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
    /// CSINodes by node name, for the per-driver volume limits.
    pub csinodes: HashMap<String, Arc<CSINode>>,
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

/// NodeVolumeLimits' PreFilter result: the CSI volumes the new pod uses,
/// by unique name (driver and handle), with their drivers.
pub struct Limits {
    new: HashMap<String, String>,
}

impl Limits {
    /// `None` when the pod uses no CSI volume (the filter passes everywhere).
    pub fn new(pod: &PodInfo, index: &VolumeIndex) -> Result<Option<Limits>, Unfit> {
        let mut new = HashMap::new();
        csi_volumes(&pod.pod, index, true, &mut new)?;
        Ok((!new.is_empty()).then_some(Limits { new }))
    }

    /// The node's CSINode limits (`spec.drivers[].allocatable.count`) against
    /// the unique volumes its pods already use plus the new pod's; a volume
    /// shared with a pod already there counts once. No CSINode, or no limit
    /// for a driver, means no limit.
    pub fn filter(&self, node: &NodeInfo, index: &VolumeIndex) -> Result<(), Unfit> {
        let Some(csinode) = index.csinodes.get(&node.name) else { return Ok(()) };
        let limits: HashMap<&str, i64> = csinode
            .spec
            .drivers
            .iter()
            .filter_map(|d| Some((d.name.as_str(), i64::from(d.allocatable.as_ref()?.count?))))
            // Only the new pod's drivers can go over their limit.
            .filter(|(driver, _)| self.new.values().any(|d| d == driver))
            .collect();
        if limits.is_empty() {
            return Ok(());
        }
        let mut attached = HashMap::new();
        for p in &node.pods {
            // A pod already placed with a claim gone is not this pod's problem.
            let _ = csi_volumes(&p.pod, index, false, &mut attached);
        }
        let mut counts: HashMap<&str, i64> = HashMap::new();
        for driver in attached.values() {
            *counts.entry(driver.as_str()).or_default() += 1;
        }
        let mut new_counts: HashMap<&str, i64> = HashMap::new();
        for (unique, driver) in &self.new {
            if !attached.contains_key(unique) {
                *new_counts.entry(driver.as_str()).or_default() += 1;
            }
        }
        for (driver, n) in new_counts {
            if let Some(max) = limits.get(driver) {
                if counts.get(driver).copied().unwrap_or(0) + n > *max {
                    return Err(Unfit::resolvable(REASON_MAX_VOLUME_COUNT));
                }
            }
        }
        Ok(())
    }
}

/// Collects a pod's CSI volumes as unique name -> driver: claims bound to a CSI
/// volume (`driver/handle`), unbound claims by their class's provisioner,
/// generic ephemeral volumes through their claims, and inline CSI volumes.
/// A missing claim is an error only for the pod being scheduled.
fn csi_volumes(pod: &Pod, index: &VolumeIndex, new_pod: bool, out: &mut HashMap<String, String>) -> Result<(), Unfit> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    for v in pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        let claim = if let Some(c) = &v.persistent_volume_claim {
            c.claim_name.clone()
        } else if v.ephemeral.is_some() {
            format!("{pod_name}-{}", v.name)
        } else {
            if let Some(csi) = &v.csi {
                out.insert(format!("{}/{namespace}/{pod_name}/{}", csi.driver, v.name), csi.driver.clone());
            }
            continue;
        };
        let Some(pvc) = index.claims.get(&format!("{namespace}/{claim}")) else {
            if new_pod {
                return Err(Unfit::unresolvable(format!("persistentvolumeclaim \"{claim}\" not found")));
            }
            continue;
        };
        let spec = pvc.spec.as_ref();
        match spec.and_then(|s| s.volume_name.as_deref()).filter(|n| !n.is_empty()) {
            Some(volume) => {
                let csi = index.volumes.get(volume).and_then(|pv| pv.spec.as_ref()).and_then(|s| s.csi.as_ref());
                if let Some(csi) = csi {
                    out.insert(format!("{}/{}", csi.driver, csi.volume_handle), csi.driver.clone());
                }
            }
            None => {
                let class = spec.and_then(|s| s.storage_class_name.as_deref()).unwrap_or("");
                if let Some(sc) = index.classes.get(class) {
                    out.insert(format!("{}/{namespace}-{claim}", sc.provisioner), sc.provisioner.clone());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, claims: &[&str], inline: &[&str]) -> Arc<PodInfo> {
        let mut volumes: Vec<serde_json::Value> = claims
            .iter()
            .map(|c| serde_json::json!({"name": format!("v-{c}"), "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        volumes.extend(inline.iter().map(|d| serde_json::json!({"name": format!("i-{d}"), "csi": {"driver": d}})));
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "uid": name},
            "spec": {"containers": [], "volumes": volumes},
        }))
        .unwrap();
        Arc::new(PodInfo::new(Arc::new(pod)))
    }

    fn index(limit: i32) -> VolumeIndex {
        let mut index = VolumeIndex::default();
        for n in ["a", "b", "c"] {
            let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("pv-{n}")},
                "spec": {"csi": {"driver": "ebs.csi.example.com", "volumeHandle": format!("vol-{n}")}},
            }))
            .unwrap();
            let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
                "metadata": {"name": n, "namespace": "ns"},
                "spec": {"volumeName": format!("pv-{n}")},
            }))
            .unwrap();
            index.volumes.insert(format!("pv-{n}"), Arc::new(pv));
            index.claims.insert(format!("ns/{n}"), Arc::new(pvc));
        }
        let csinode: CSINode = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "node"},
            "spec": {"drivers": [
                {"name": "ebs.csi.example.com", "nodeID": "node", "allocatable": {"count": limit}},
                {"name": "unlimited.example.com", "nodeID": "node"},
            ]},
        }))
        .unwrap();
        index.csinodes.insert("node".into(), Arc::new(csinode));
        index
    }

    #[test]
    fn counts_unique_csi_volumes_per_driver() {
        let index = index(2);
        let mut node = NodeInfo { name: "node".into(), ..Default::default() };
        node.add_pod(pod("one", &["a"], &[]));
        // A second volume fits; a shared one counts once; a third distinct one does not fit.
        let two = Limits::new(&pod("p", &["b"], &[]), &index).unwrap().unwrap();
        assert_eq!(two.filter(&node, &index), Ok(()));
        let shared = Limits::new(&pod("p", &["a", "b"], &[]), &index).unwrap().unwrap();
        assert_eq!(shared.filter(&node, &index), Ok(()));
        let three = Limits::new(&pod("p", &["b", "c"], &[]), &index).unwrap().unwrap();
        assert_eq!(three.filter(&node, &index), Err(Unfit::resolvable(REASON_MAX_VOLUME_COUNT)));
        // Inline CSI volumes count for their driver; a driver without a limit is unlimited.
        let inline = Limits::new(&pod("p", &["b"], &["ebs.csi.example.com"]), &index).unwrap().unwrap();
        assert!(inline.filter(&node, &index).is_err());
        let unlimited = Limits::new(&pod("p", &[], &["unlimited.example.com"]), &index).unwrap().unwrap();
        assert_eq!(unlimited.filter(&node, &index), Ok(()));
        // Another node without a CSINode has no limits.
        let other = NodeInfo { name: "other".into(), ..Default::default() };
        assert_eq!(three.filter(&other, &index), Ok(()));
        // No CSI volumes: nothing to check; a missing claim is unresolvable.
        assert!(Limits::new(&pod("p", &[], &[]), &index).unwrap().is_none());
        assert!(Limits::new(&pod("p", &["nope"], &[]), &index).is_err());
    }
}
