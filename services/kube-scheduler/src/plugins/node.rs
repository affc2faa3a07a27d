//! Plugins that look at one node at a time: NodeUnschedulable, NodeName,
//! TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit,
//! NodeResourcesBalancedAllocation and ImageLocality.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};

use super::{normalize, FitStrategy, Unfit, MAX_NODE_SCORE};
use crate::cache::{normalize_image, Cache, NodeInfo, PodInfo};

pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";
pub const REASON_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";

fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[])
}

/// Whether a toleration tolerates a taint (upstream's `ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect_ok = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
    if !effect_ok {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => !key.is_empty() && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

pub fn tolerated(pod: &PodInfo, taint: &Taint) -> bool {
    tolerations(pod).iter().any(|t| tolerates(t, taint))
}

/// The node's taints, plus the not-ready or unreachable taint when its Ready
/// condition is not True and the node lifecycle controller has not added it yet.
pub fn effective_taints(node: &NodeInfo) -> Vec<Taint> {
    let Some(n) = node.node.as_ref() else { return Vec::new() };
    let mut taints = n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let implicit = match ready {
        Some("True") => None,
        Some("Unknown") => Some(UNREACHABLE_TAINT),
        _ => Some(NOT_READY_TAINT),
    };
    if let Some(key) = implicit {
        if !taints.iter().any(|t| t.key == key) {
            taints.push(Taint { key: key.into(), effect: "NoSchedule".into(), ..Default::default() });
        }
    }
    taints
}

pub fn unschedulable(pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    let cordoned = node.node.as_ref().and_then(|n| n.spec.as_ref()).and_then(|s| s.unschedulable).unwrap_or(false);
    let taint = Taint { key: UNSCHEDULABLE_TAINT.into(), effect: "NoSchedule".into(), ..Default::default() };
    if cordoned && !tolerated(pod, &taint) {
        return Err(Unfit::unresolvable(REASON_UNSCHEDULABLE));
    }
    Ok(())
}

pub fn node_name(pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(n) if !n.is_empty() && n != node.name => Err(Unfit::unresolvable(REASON_NODE_NAME)),
        _ => Ok(()),
    }
}

pub fn taints(pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    for taint in effective_taints(node) {
        if (taint.effect == "NoSchedule" || taint.effect == "NoExecute") && !tolerated(pod, &taint) {
            return Err(Unfit::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            )));
        }
    }
    Ok(())
}

/// Untolerated PreferNoSchedule taints: fewer is better.
pub fn taint_toleration_scores(pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    let prefer: Vec<&Toleration> = tolerations(pod)
        .iter()
        .filter(|t| t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "PreferNoSchedule"))
        .collect();
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|n| {
            effective_taints(n)
                .iter()
                .filter(|t| t.effect == "PreferNoSchedule" && !prefer.iter().any(|tol| tolerates(tol, t)))
                .count() as i64
        })
        .collect();
    normalize(&mut scores, true);
    scores
}

/// NodeAffinity's parsed view of the pod: `nodeSelector` and required and preferred node affinity.
pub struct AffinityState {
    node_selector: BTreeMap<String, String>,
    required: Option<Vec<NodeSelectorTerm>>,
    preferred: Vec<(i32, NodeSelectorTerm)>,
}

impl AffinityState {
    pub fn new(pod: &PodInfo) -> Result<AffinityState, Unfit> {
        let spec = pod.pod.spec.as_ref();
        let affinity = spec.and_then(|s| s.affinity.as_ref()).and_then(|a| a.node_affinity.as_ref());
        Ok(AffinityState {
            node_selector: spec.and_then(|s| s.node_selector.clone()).unwrap_or_default(),
            required: affinity
                .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
                .map(|r| r.node_selector_terms.clone()),
            preferred: affinity
                .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())
                .map(|p| p.iter().map(|t| (t.weight, t.preference.clone())).collect())
                .unwrap_or_default(),
        })
    }

    /// Whether the node passes `nodeSelector` and required node affinity.
    pub fn matches(&self, node: &NodeInfo) -> bool {
        let empty = BTreeMap::new();
        let labels = node.labels().unwrap_or(&empty);
        if !self.node_selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
        match &self.required {
            Some(terms) => terms.iter().any(|t| term_matches(t, labels, &node.name)),
            None => true,
        }
    }

    pub fn filter(&self, node: &NodeInfo) -> Result<(), Unfit> {
        if self.matches(node) {
            Ok(())
        } else {
            Err(Unfit::unresolvable(REASON_AFFINITY))
        }
    }

    pub fn scores(&self, nodes: &[&NodeInfo]) -> Vec<i64> {
        if self.preferred.is_empty() {
            return vec![0; nodes.len()];
        }
        let empty = BTreeMap::new();
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|n| {
                let labels = n.labels().unwrap_or(&empty);
                self.preferred
                    .iter()
                    .filter(|(_, t)| term_matches(t, labels, &n.name))
                    .map(|(w, _)| i64::from(*w))
                    .sum()
            })
            .collect();
        normalize(&mut scores, false);
        scores
    }
}

/// A node selector term: all of its expressions and fields hold. An empty term matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, Some(node_name)))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a > b),
        "Lt" => matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a < b),
        _ => false,
    }
}

pub fn ports(pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    if pod.host_ports.iter().any(|p| node.used_ports.iter().any(|u| u.conflicts(p))) {
        return Err(Unfit::resolvable(REASON_PORTS));
    }
    Ok(())
}

pub fn resources_fit(pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    let mut reasons = Vec::new();
    let (alloc, used, want) = (&node.allocatable, &node.requested, &pod.requests);
    if used.pods + 1 > alloc.pods {
        reasons.push(REASON_TOO_MANY_PODS.to_string());
    }
    let mut check = |name: &str, want: i64, alloc: i64, used: i64| {
        if want > 0 && want > alloc - used {
            reasons.push(format!("Insufficient {name}"));
        }
    };
    check("cpu", want.milli_cpu, alloc.milli_cpu, used.milli_cpu);
    check("memory", want.memory, alloc.memory, used.memory);
    check("ephemeral-storage", want.ephemeral_storage, alloc.ephemeral_storage, used.ephemeral_storage);
    for (name, v) in &want.scalar {
        check(name, *v, alloc.scalar(name), used.scalar(name));
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Unfit { reasons, resolvable: true })
    }
}

fn requested_and_capacity(pod: &PodInfo, node: &NodeInfo, resource: &str) -> (i64, i64) {
    let (nz, alloc, req) = (&node.non_zero_requested, &node.allocatable, &node.requested);
    match resource {
        "cpu" => (nz.milli_cpu + pod.non_zero.milli_cpu, alloc.milli_cpu),
        "memory" => (nz.memory + pod.non_zero.memory, alloc.memory),
        "ephemeral-storage" => (req.ephemeral_storage + pod.requests.ephemeral_storage, alloc.ephemeral_storage),
        other => (req.scalar(other) + pod.requests.scalar(other), alloc.scalar(other)),
    }
}

/// NodeResourcesFit's score: LeastAllocated (default) or MostAllocated, weighted over the strategy's resources.
pub fn fit_score(pod: &PodInfo, node: &NodeInfo, strategy: &FitStrategy) -> i64 {
    let mut total = 0i64;
    let mut weights = 0i64;
    for (resource, weight) in &strategy.resources {
        let (requested, capacity) = requested_and_capacity(pod, node, resource);
        let score = if capacity <= 0 || requested > capacity {
            0
        } else if strategy.most_allocated {
            requested * MAX_NODE_SCORE / capacity
        } else {
            (capacity - requested) * MAX_NODE_SCORE / capacity
        };
        total += score * weight;
        weights += weight;
    }
    if weights == 0 {
        0
    } else {
        total / weights
    }
}

/// NodeResourcesBalancedAllocation: nodes whose cpu and memory fractions stay close score higher.
pub fn balanced_allocation_score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let fractions: Vec<f64> = ["cpu", "memory"]
        .iter()
        .filter_map(|r| {
            let (requested, capacity) = requested_and_capacity(pod, node, r);
            (capacity > 0).then(|| (requested as f64 / capacity as f64).min(1.0))
        })
        .collect();
    if fractions.len() < 2 {
        return MAX_NODE_SCORE;
    }
    let mean = fractions.iter().sum::<f64>() / fractions.len() as f64;
    let variance = fractions.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / fractions.len() as f64;
    ((1.0 - variance.sqrt()) * MAX_NODE_SCORE as f64) as i64
}

const MIN_IMAGE_THRESHOLD: i64 = 23 * 1024 * 1024;
const MAX_CONTAINER_IMAGE_THRESHOLD: i64 = 1000 * 1024 * 1024;

/// ImageLocality: nodes that already hold the pod's images score higher,
/// scaled by how widely each image is spread (so one node holding a popular image does not attract everything).
pub fn image_locality_score(pod: &PodInfo, node: &NodeInfo, cache: &Cache) -> i64 {
    let Some(spec) = pod.pod.spec.as_ref() else { return 0 };
    let total_nodes = cache.node_count().max(1) as f64;
    let mut sum = 0f64;
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        let Some(image) = c.image.as_deref() else { continue };
        let name = normalize_image(image);
        if let Some(size) = node.images.get(&name) {
            let spread = cache.image_node_count(&name) as f64 / total_nodes;
            sum += *size as f64 * spread;
        }
    }
    let max = MAX_CONTAINER_IMAGE_THRESHOLD * spec.containers.len().max(1) as i64;
    let sum = (sum as i64).clamp(MIN_IMAGE_THRESHOLD, max);
    MAX_NODE_SCORE * (sum - MIN_IMAGE_THRESHOLD) / (max - MIN_IMAGE_THRESHOLD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: Some(value.into()), effect: effect.into(), ..Default::default() }
    }

    #[test]
    fn toleration_matching_follows_upstream() {
        let exists_all = Toleration { operator: Some("Exists".into()), ..Default::default() };
        assert!(tolerates(&exists_all, &taint("a", "b", "NoSchedule")));
        let equal = Toleration {
            key: Some("dedicated".into()),
            value: Some("gpu".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        };
        assert!(tolerates(&equal, &taint("dedicated", "gpu", "NoSchedule")));
        assert!(!tolerates(&equal, &taint("dedicated", "cpu", "NoSchedule")));
        assert!(!tolerates(&equal, &taint("dedicated", "gpu", "NoExecute")));
    }

    #[test]
    fn node_selector_operators() {
        let labels: BTreeMap<String, String> =
            [("disk".to_string(), "ssd".to_string()), ("cores".to_string(), "8".to_string())].into();
        let req = |key: &str, op: &str, values: &[&str]| NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        };
        let term =
            |r: Vec<NodeSelectorRequirement>| NodeSelectorTerm { match_expressions: Some(r), match_fields: None };
        assert!(term_matches(&term(vec![req("disk", "In", &["ssd", "nvme"])]), &labels, "n"));
        assert!(!term_matches(&term(vec![req("disk", "NotIn", &["ssd"])]), &labels, "n"));
        assert!(term_matches(&term(vec![req("cores", "Gt", &["4"])]), &labels, "n"));
        assert!(!term_matches(&term(vec![req("cores", "Lt", &["4"])]), &labels, "n"));
        assert!(term_matches(&term(vec![req("gpu", "DoesNotExist", &[])]), &labels, "n"));
    }
}
