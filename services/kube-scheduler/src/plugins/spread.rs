//! PodTopologySpread: `topologySpreadConstraints` with DoNotSchedule as a
//! filter (skew against the least-loaded eligible domain) and ScheduleAnyway
//! as a score, counting matching pods per domain once per attempt.

use std::collections::{BTreeMap, HashMap};

use apimachinery::selector::label::LabelSelector;

use super::node::{effective_taints, tolerated, AffinityState};
use super::{label_selector, Unfit, MAX_NODE_SCORE};
use crate::cache::{Cache, NodeInfo, PodInfo};

pub const REASON_SPREAD: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_MISSING_LABEL: &str = "node(s) didn't match pod topology spread constraints (missing required label)";

struct Constraint {
    max_skew: i64,
    topology_key: String,
    hard: bool,
    min_domains: i64,
    self_match: i64,
    /// Matching pods per domain value, over eligible nodes.
    counts: HashMap<String, i64>,
}

pub struct State {
    constraints: Vec<Constraint>,
}

impl State {
    pub fn new(pod: &PodInfo, cache: &Cache, affinity: &AffinityState) -> Result<Option<State>, Unfit> {
        let Some(specs) = pod.pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_ref()) else {
            return Ok(None);
        };
        if specs.is_empty() {
            return Ok(None);
        }
        let mut constraints = Vec::new();
        let mut selectors: Vec<Option<LabelSelector>> = Vec::new();
        for c in specs {
            let mut spec = c.label_selector.clone().unwrap_or_default();
            // matchLabelKeys: the pod's own values for those keys join the selector.
            for key in c.match_label_keys.iter().flatten() {
                if let Some(v) = pod.labels().get(key) {
                    spec.match_labels.get_or_insert_with(Default::default).insert(key.clone(), v.clone());
                }
            }
            let selector = if c.label_selector.is_some() { label_selector(Some(&spec)) } else { None };
            let self_match = i64::from(selector.as_ref().is_some_and(|s| s.matches(pod.labels())));
            constraints.push(Constraint {
                max_skew: i64::from(c.max_skew),
                topology_key: c.topology_key.clone(),
                hard: c.when_unsatisfiable == "DoNotSchedule",
                min_domains: i64::from(c.min_domains.unwrap_or(1)),
                self_match,
                counts: HashMap::new(),
            });
            selectors.push(selector);
        }
        for node in cache.nodes() {
            let Some(n) = node.node.as_ref() else { continue };
            let labels = n.metadata.labels.as_ref();
            for (i, c) in constraints.iter_mut().enumerate() {
                let spec = &specs[i];
                let Some(domain) = labels.and_then(|l| l.get(&c.topology_key)) else { continue };
                if spec.node_affinity_policy.as_deref() != Some("Ignore") && !affinity.matches(node) {
                    continue;
                }
                if spec.node_taints_policy.as_deref() == Some("Honor")
                    && effective_taints(node)
                        .iter()
                        .any(|t| (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(pod, t))
                {
                    continue;
                }
                let matching = node
                    .pods
                    .iter()
                    .filter(|p| {
                        p.namespace == pod.namespace
                            && !p.is_terminating()
                            && selectors[i].as_ref().is_some_and(|s| s.matches(p.labels()))
                    })
                    .count() as i64;
                *c.counts.entry(domain.clone()).or_default() += matching;
            }
        }
        Ok(Some(State { constraints }))
    }

    pub fn filter(&self, node: &NodeInfo) -> Result<(), Unfit> {
        let empty = BTreeMap::new();
        let labels = node.labels().unwrap_or(&empty);
        for c in self.constraints.iter().filter(|c| c.hard) {
            let Some(domain) = labels.get(&c.topology_key) else {
                return Err(Unfit::unresolvable(REASON_MISSING_LABEL));
            };
            let min =
                if (c.counts.len() as i64) < c.min_domains { 0 } else { c.counts.values().copied().min().unwrap_or(0) };
            let here = c.counts.get(domain).copied().unwrap_or(0);
            if here + c.self_match - min > c.max_skew {
                return Err(Unfit::resolvable(REASON_SPREAD));
            }
        }
        Ok(())
    }

    /// Fewer matching pods in the node's domains scores higher; each constraint
    /// is weighted by the log of its domain count, as upstream does.
    pub fn scores(&self, nodes: &[&NodeInfo]) -> Vec<i64> {
        let soft: Vec<&Constraint> = self.constraints.iter().filter(|c| !c.hard).collect();
        if soft.is_empty() {
            return vec![0; nodes.len()];
        }
        let raw: Vec<Option<f64>> = nodes
            .iter()
            .map(|n| {
                let mut total = 0f64;
                for c in &soft {
                    let domain = n.label(&c.topology_key)?;
                    let weight = ((c.counts.len() + 2) as f64).ln();
                    total += (c.counts.get(domain).copied().unwrap_or(0) + c.max_skew - 1) as f64 * weight;
                }
                Some(total)
            })
            .collect();
        let present: Vec<f64> = raw.iter().flatten().copied().collect();
        let max = present.iter().copied().fold(f64::MIN, f64::max);
        let min = present.iter().copied().fold(f64::MAX, f64::min);
        raw.iter()
            .map(|s| match s {
                None => 0,
                Some(_) if max <= min => MAX_NODE_SCORE,
                Some(s) => (MAX_NODE_SCORE as f64 * (max - s) / (max - min)) as i64,
            })
            .collect()
    }
}
