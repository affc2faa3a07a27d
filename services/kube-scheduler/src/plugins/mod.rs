//! The scheduling framework's plugins with upstream's names, order and
//! default weights. A profile runs the PreFilter step once per pod
//! ([`Profile::prepare`]), the filters per node until one fails, and the
//! weighted, normalized scores over the feasible nodes.

pub mod interpod;
pub mod node;
pub mod spread;
pub mod volume;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as LabelSelectorSpec;

use crate::cache::{Cache, NodeInfo, PodInfo};

/// Upstream's highest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    NodeUnschedulable,
    NodeName,
    TaintToleration,
    NodeAffinity,
    NodePorts,
    NodeResourcesFit,
    NodeVolumeLimits,
    VolumeBinding,
    VolumeZone,
    PodTopologySpread,
    InterPodAffinity,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Score {
    TaintToleration,
    NodeAffinity,
    PodTopologySpread,
    InterPodAffinity,
    NodeResourcesFit,
    NodeResourcesBalancedAllocation,
    ImageLocality,
}

impl Filter {
    /// Upstream's default filter order.
    pub const DEFAULT: [Filter; 11] = [
        Filter::NodeUnschedulable,
        Filter::NodeName,
        Filter::TaintToleration,
        Filter::NodeAffinity,
        Filter::NodePorts,
        Filter::NodeResourcesFit,
        Filter::NodeVolumeLimits,
        Filter::VolumeBinding,
        Filter::VolumeZone,
        Filter::PodTopologySpread,
        Filter::InterPodAffinity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Filter::NodeUnschedulable => "NodeUnschedulable",
            Filter::NodeName => "NodeName",
            Filter::TaintToleration => "TaintToleration",
            Filter::NodeAffinity => "NodeAffinity",
            Filter::NodePorts => "NodePorts",
            Filter::NodeResourcesFit => "NodeResourcesFit",
            Filter::NodeVolumeLimits => "NodeVolumeLimits",
            Filter::VolumeBinding => "VolumeBinding",
            Filter::VolumeZone => "VolumeZone",
            Filter::PodTopologySpread => "PodTopologySpread",
            Filter::InterPodAffinity => "InterPodAffinity",
        }
    }

    pub fn from_name(name: &str) -> Option<Filter> {
        Filter::DEFAULT.into_iter().find(|f| f.name() == name)
    }
}

impl Score {
    /// Upstream's default score plugins and weights.
    pub const DEFAULT: [(Score, i64); 7] = [
        (Score::TaintToleration, 3),
        (Score::NodeAffinity, 2),
        (Score::PodTopologySpread, 2),
        (Score::InterPodAffinity, 2),
        (Score::NodeResourcesFit, 1),
        (Score::NodeResourcesBalancedAllocation, 1),
        (Score::ImageLocality, 1),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Score::TaintToleration => "TaintToleration",
            Score::NodeAffinity => "NodeAffinity",
            Score::PodTopologySpread => "PodTopologySpread",
            Score::InterPodAffinity => "InterPodAffinity",
            Score::NodeResourcesFit => "NodeResourcesFit",
            Score::NodeResourcesBalancedAllocation => "NodeResourcesBalancedAllocation",
            Score::ImageLocality => "ImageLocality",
        }
    }

    pub fn from_name(name: &str) -> Option<Score> {
        Score::DEFAULT.into_iter().map(|(s, _)| s).find(|s| s.name() == name)
    }
}

/// How NodeResourcesFit scores: upstream's `scoringStrategy`.
#[derive(Clone, Debug, PartialEq)]
pub struct FitStrategy {
    pub most_allocated: bool,
    /// Resource names and weights (cpu and memory, weight 1, by default).
    pub resources: Vec<(String, i64)>,
}

impl Default for FitStrategy {
    fn default() -> Self {
        FitStrategy { most_allocated: false, resources: vec![("cpu".into(), 1), ("memory".into(), 1)] }
    }
}

/// A scheduler profile: its name and plugin set.
#[derive(Clone, Debug)]
pub struct Profile {
    pub scheduler_name: String,
    pub filters: Vec<Filter>,
    pub scores: Vec<(Score, i64)>,
    pub fit: FitStrategy,
    /// The profile's own `percentageOfNodesToScore`, over the global one.
    pub percentage_of_nodes_to_score: Option<u32>,
}

impl Profile {
    pub fn default_named(name: &str) -> Profile {
        Profile {
            scheduler_name: name.to_string(),
            filters: Filter::DEFAULT.to_vec(),
            scores: Score::DEFAULT.to_vec(),
            fit: FitStrategy::default(),
            percentage_of_nodes_to_score: None,
        }
    }
}

/// Why a node cannot take the pod: upstream's status reasons, and whether
/// evicting pods from the node could change that (for preemption).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unfit {
    pub reasons: Vec<String>,
    pub resolvable: bool,
}

impl Unfit {
    pub fn unresolvable(reason: impl Into<String>) -> Unfit {
        Unfit { reasons: vec![reason.into()], resolvable: false }
    }
    pub fn resolvable(reason: impl Into<String>) -> Unfit {
        Unfit { reasons: vec![reason.into()], resolvable: true }
    }
}

/// What PreFilter computes once per scheduling attempt.
pub struct CycleState<'a> {
    pub pod: &'a PodInfo,
    pub node_affinity: node::AffinityState,
    pub interpod: Option<interpod::State>,
    pub spread: Option<spread::State>,
    pub volumes: Option<volume::State>,
    pub volume_limits: Option<volume::Limits>,
    pub volume_index: &'a volume::VolumeIndex,
}

impl Profile {
    /// PreFilter: the pod's parsed constraints and the cluster-wide counts
    /// that pod (anti-)affinity and topology spreading need. An error here
    /// makes every node unfit with that reason.
    pub fn prepare<'a>(&self, pod: &'a PodInfo, cache: &'a Cache) -> Result<CycleState<'a>, Unfit> {
        let node_affinity = node::AffinityState::new(pod)?;
        let interpod = if (self.filters.contains(&Filter::InterPodAffinity)
            || self.scores.iter().any(|(s, _)| *s == Score::InterPodAffinity))
            && (pod.has_pod_affinity() || cache.has_affinity_pods())
        {
            Some(interpod::State::new(pod, cache))
        } else {
            None
        };
        let spread = spread::State::new(pod, cache, &node_affinity)?;
        let volumes = if self.filters.iter().any(|f| matches!(f, Filter::VolumeBinding | Filter::VolumeZone)) {
            volume::State::new(pod, &cache.volumes)?
        } else {
            None
        };
        let volume_limits = if self.filters.contains(&Filter::NodeVolumeLimits) {
            volume::Limits::new(pod, &cache.volumes)?
        } else {
            None
        };
        Ok(CycleState { pod, node_affinity, interpod, spread, volumes, volume_limits, volume_index: &cache.volumes })
    }

    /// Runs the filters in order; the first that fails decides.
    pub fn filter(&self, state: &CycleState<'_>, node: &NodeInfo) -> Result<(), Unfit> {
        for f in &self.filters {
            match f {
                Filter::NodeUnschedulable => node::unschedulable(state.pod, node)?,
                Filter::NodeName => node::node_name(state.pod, node)?,
                Filter::TaintToleration => node::taints(state.pod, node)?,
                Filter::NodeAffinity => state.node_affinity.filter(node)?,
                Filter::NodePorts => node::ports(state.pod, node)?,
                Filter::NodeResourcesFit => node::resources_fit(state.pod, node)?,
                Filter::NodeVolumeLimits => {
                    if let Some(l) = &state.volume_limits {
                        l.filter(node, state.volume_index)?
                    }
                }
                Filter::VolumeBinding => {
                    if let Some(v) = &state.volumes {
                        v.filter_binding(node)?
                    }
                }
                Filter::VolumeZone => {
                    if let Some(v) = &state.volumes {
                        v.filter_zone(node)?
                    }
                }
                Filter::PodTopologySpread => {
                    if let Some(s) = &state.spread {
                        s.filter(node)?
                    }
                }
                Filter::InterPodAffinity => {
                    if let Some(s) = &state.interpod {
                        s.filter(state.pod, node)?
                    }
                }
            }
        }
        Ok(())
    }

    /// The weighted sum of every score plugin, each normalized to 0..=100.
    pub fn score(&self, state: &CycleState<'_>, nodes: &[&NodeInfo], cache: &Cache) -> Vec<i64> {
        let mut total = vec![0i64; nodes.len()];
        for (plugin, weight) in &self.scores {
            let scores: Vec<i64> = match plugin {
                Score::TaintToleration => node::taint_toleration_scores(state.pod, nodes),
                Score::NodeAffinity => state.node_affinity.scores(nodes),
                Score::PodTopologySpread => match &state.spread {
                    Some(s) => s.scores(nodes),
                    None => continue,
                },
                Score::InterPodAffinity => match &state.interpod {
                    Some(s) => s.scores(nodes),
                    None => continue,
                },
                Score::NodeResourcesFit => nodes.iter().map(|n| node::fit_score(state.pod, n, &self.fit)).collect(),
                Score::NodeResourcesBalancedAllocation => {
                    nodes.iter().map(|n| node::balanced_allocation_score(state.pod, n)).collect()
                }
                Score::ImageLocality => nodes.iter().map(|n| node::image_locality_score(state.pod, n, cache)).collect(),
            };
            for (t, s) in total.iter_mut().zip(scores) {
                *t += s * weight;
            }
        }
        total
    }
}

/// Scales raw scores so the largest is 100 (upstream's DefaultNormalizeScore);
/// `reverse` makes the smallest raw score the best.
pub fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

/// A label selector from the API; `None` (absent) selects nothing, as in affinity terms.
pub fn label_selector(spec: Option<&LabelSelectorSpec>) -> Option<apimachinery::selector::label::LabelSelector> {
    let spec = spec?;
    let value = serde_json::to_value(spec).ok()?;
    apimachinery::selector::label::LabelSelector::from_json(&value).ok()
}

pub fn labels_match(
    selector: &apimachinery::selector::label::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.matches(labels)
}
