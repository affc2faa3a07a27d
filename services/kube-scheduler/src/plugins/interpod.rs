//! InterPodAffinity: required and preferred pod affinity and anti-affinity by
//! topology key, including existing pods' anti-affinity against the incoming
//! pod (symmetry). PreFilter counts matching pods per topology pair once, so
//! each node is then checked with a few map lookups.

use std::collections::{BTreeMap, HashMap, HashSet};

use apimachinery::selector::label::LabelSelector;
use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};

use super::{label_selector, Unfit, MAX_NODE_SCORE};
use crate::cache::{Cache, NodeInfo, PodInfo};

pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

/// Hard affinity of existing pods counts toward scores with this weight (upstream's `hardPodAffinityWeight`).
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

type Pair = (String, String);

/// One parsed affinity term.
pub struct Term {
    selector: Option<LabelSelector>,
    /// None: every namespace.
    namespaces: Option<HashSet<String>>,
    topology_key: String,
}

impl Term {
    pub fn new(term: &PodAffinityTerm, own_namespace: &str) -> Term {
        let selector = label_selector(term.label_selector.as_ref());
        let listed: HashSet<String> = term.namespaces.iter().flatten().cloned().collect();
        let namespaces = match (&term.namespace_selector, listed.is_empty()) {
            // An empty namespaceSelector selects every namespace.
            (Some(sel), _)
                if sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
                    && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty()) =>
            {
                None
            }
            (_, true) => Some([own_namespace.to_string()].into()),
            (_, false) => Some(listed),
        };
        Term { selector, namespaces, topology_key: term.topology_key.clone() }
    }

    pub fn matches(&self, pod: &PodInfo) -> bool {
        self.namespaces.as_ref().is_none_or(|n| n.contains(&pod.namespace))
            && self.selector.as_ref().is_some_and(|s| s.matches(pod.labels()))
    }
}

fn terms_of(pod: &Pod, anti: bool, required: bool) -> Vec<(i64, PodAffinityTerm)> {
    let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let (req, pref) = if anti {
        let a = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        (
            a.and_then(|a| a.required_during_scheduling_ignored_during_execution.clone()),
            a.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.clone()),
        )
    } else {
        let a = affinity.and_then(|a| a.pod_affinity.as_ref());
        (
            a.and_then(|a| a.required_during_scheduling_ignored_during_execution.clone()),
            a.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.clone()),
        )
    };
    if required {
        req.unwrap_or_default().into_iter().map(|t| (1, t)).collect()
    } else {
        pref.unwrap_or_default().into_iter().map(|w| (i64::from(w.weight), w.pod_affinity_term)).collect()
    }
}

fn parse(pod: &PodInfo, anti: bool, required: bool) -> Vec<(i64, Term)> {
    terms_of(&pod.pod, anti, required).iter().map(|(w, t)| (*w, Term::new(t, &pod.namespace))).collect()
}

pub struct State {
    affinity: Vec<Term>,
    anti_affinity: Vec<Term>,
    /// Per required affinity term: topology pair → matching pods.
    affinity_counts: Vec<HashMap<Pair, i64>>,
    anti_affinity_counts: HashMap<Pair, i64>,
    existing_anti_affinity_counts: HashMap<Pair, i64>,
    /// Whether any existing pod matches all required affinity terms anywhere.
    any_affinity_match: bool,
    self_matches_affinity: bool,
    scores: HashMap<Pair, i64>,
}

impl State {
    pub fn new(pod: &PodInfo, cache: &Cache) -> State {
        let affinity: Vec<Term> = parse(pod, false, true).into_iter().map(|(_, t)| t).collect();
        let anti_affinity: Vec<Term> = parse(pod, true, true).into_iter().map(|(_, t)| t).collect();
        let preferred = parse(pod, false, false);
        let preferred_anti = parse(pod, true, false);
        let mut state = State {
            affinity_counts: vec![HashMap::new(); affinity.len()],
            self_matches_affinity: !affinity.is_empty() && affinity.iter().all(|t| t.matches(pod)),
            affinity,
            anti_affinity,
            anti_affinity_counts: HashMap::new(),
            existing_anti_affinity_counts: HashMap::new(),
            any_affinity_match: false,
            scores: HashMap::new(),
        };
        let empty = BTreeMap::new();
        for node in cache.nodes() {
            if node.node.is_none() {
                continue;
            }
            let labels = node.labels().unwrap_or(&empty);
            let pair = |key: &str| labels.get(key).map(|v| (key.to_string(), v.clone()));
            for existing in &node.pods {
                if existing.uid == pod.uid {
                    continue;
                }
                let mut all = !state.affinity.is_empty();
                for (i, term) in state.affinity.iter().enumerate() {
                    if term.matches(existing) {
                        if let Some(p) = pair(&term.topology_key) {
                            *state.affinity_counts[i].entry(p).or_default() += 1;
                        }
                    } else {
                        all = false;
                    }
                }
                state.any_affinity_match |= all;
                for term in &state.anti_affinity {
                    if term.matches(existing) {
                        if let Some(p) = pair(&term.topology_key) {
                            *state.anti_affinity_counts.entry(p).or_default() += 1;
                        }
                    }
                }
                for (w, term) in &preferred {
                    if term.matches(existing) {
                        if let Some(p) = pair(&term.topology_key) {
                            *state.scores.entry(p).or_default() += w;
                        }
                    }
                }
                for (w, term) in &preferred_anti {
                    if term.matches(existing) {
                        if let Some(p) = pair(&term.topology_key) {
                            *state.scores.entry(p).or_default() -= w;
                        }
                    }
                }
                if !existing.has_pod_affinity() {
                    continue;
                }
                // The existing pod's own terms, evaluated against the incoming pod.
                for (_, term) in parse(existing, true, true) {
                    if term.matches(pod) {
                        if let Some(p) = pair(&term.topology_key) {
                            *state.existing_anti_affinity_counts.entry(p).or_default() += 1;
                        }
                    }
                }
                for (_, term) in parse(existing, false, true) {
                    if term.matches(pod) {
                        if let Some(p) = pair(&term.topology_key) {
                            *state.scores.entry(p).or_default() += HARD_POD_AFFINITY_WEIGHT;
                        }
                    }
                }
                for (w, term) in parse(existing, false, false) {
                    if term.matches(pod) {
                        if let Some(p) = pair(&term.topology_key) {
                            *state.scores.entry(p).or_default() += w;
                        }
                    }
                }
                for (w, term) in parse(existing, true, false) {
                    if term.matches(pod) {
                        if let Some(p) = pair(&term.topology_key) {
                            *state.scores.entry(p).or_default() -= w;
                        }
                    }
                }
            }
        }
        state
    }

    pub fn filter(&self, _pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let empty = BTreeMap::new();
        let labels = node.labels().unwrap_or(&empty);
        let count = |map: &HashMap<Pair, i64>, key: &str| {
            labels.get(key).and_then(|v| map.get(&(key.to_string(), v.clone()))).copied().unwrap_or(0)
        };
        if labels
            .iter()
            .any(|(k, v)| self.existing_anti_affinity_counts.get(&(k.clone(), v.clone())).is_some_and(|c| *c > 0))
        {
            return Err(Unfit::resolvable(REASON_EXISTING_ANTI_AFFINITY));
        }
        if self.anti_affinity.iter().any(|t| count(&self.anti_affinity_counts, &t.topology_key) > 0) {
            return Err(Unfit::resolvable(REASON_ANTI_AFFINITY));
        }
        for (i, term) in self.affinity.iter().enumerate() {
            if !labels.contains_key(&term.topology_key) {
                return Err(Unfit::unresolvable(REASON_AFFINITY));
            }
            if count(&self.affinity_counts[i], &term.topology_key) > 0 {
                continue;
            }
            // The first pod of a group that selects itself may go anywhere with the topology key.
            if !self.any_affinity_match && self.self_matches_affinity {
                continue;
            }
            return Err(Unfit::unresolvable(REASON_AFFINITY));
        }
        Ok(())
    }

    pub fn scores(&self, nodes: &[&NodeInfo]) -> Vec<i64> {
        if self.scores.is_empty() {
            return vec![0; nodes.len()];
        }
        let raw: Vec<i64> = nodes
            .iter()
            .map(|n| {
                n.labels()
                    .map(|l| l.iter().filter_map(|(k, v)| self.scores.get(&(k.clone(), v.clone()))).sum())
                    .unwrap_or(0)
            })
            .collect();
        let (min, max) = (raw.iter().copied().min().unwrap_or(0), raw.iter().copied().max().unwrap_or(0));
        if max == min {
            return vec![0; nodes.len()];
        }
        raw.iter().map(|s| MAX_NODE_SCORE * (s - min) / (max - min)).collect()
    }
}
