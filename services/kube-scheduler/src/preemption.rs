//! DefaultPreemption: when no node fits a pod, find the node where evicting
//! the fewest, least important lower-priority pods makes it fit, preferring
//! victims whose PodDisruptionBudgets allow the disruption (upstream's
//! candidate ordering: fewest PDB violations, then lowest highest victim
//! priority, then lowest priority sum, then fewest victims).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::plugins::{label_selector, Profile, Unfit};

pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
    violations: usize,
}

pub enum Outcome {
    Preempt(Candidate),
    /// Not attempted (the reason goes into the pod's message), or nothing to say.
    NotEligible(Option<String>),
    /// Attempted; per-node reasons for the message.
    NoCandidate(HashMap<String, usize>),
}

/// Whether the pod may preempt now: not with `preemptionPolicy: Never`, and
/// not while victims of an earlier preemption on its nominated node are still terminating.
fn eligible(pod: &PodInfo, cache: &Cache) -> Result<(), Option<String>> {
    let spec = pod.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err(Some("not eligible due to preemptionPolicy=Never.".into()));
    }
    let nominated = pod.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()).filter(|n| !n.is_empty());
    if let Some(node) = nominated.and_then(|n| cache.node(n)) {
        if node.pods.iter().any(|p| p.is_terminating() && p.priority < pod.priority) {
            return Err(None);
        }
    }
    Ok(())
}

pub fn find(
    profile: &Profile,
    pod: &PodInfo,
    cache: &Cache,
    statuses: &HashMap<String, Unfit>,
    pdbs: &[Arc<PodDisruptionBudget>],
) -> Outcome {
    if let Err(reason) = eligible(pod, cache) {
        return Outcome::NotEligible(reason);
    }
    let mut reasons: HashMap<String, usize> = HashMap::new();
    let mut best: Option<Candidate> = None;
    for (name, unfit) in statuses {
        if !unfit.resolvable {
            *reasons.entry(NOT_HELPFUL.into()).or_default() += 1;
            continue;
        }
        let Some(node) = cache.node(name) else { continue };
        match candidate(profile, pod, node, cache, pdbs) {
            Some(c) => {
                if best.as_ref().is_none_or(|b| better(&c, b)) {
                    best = Some(c);
                }
            }
            None => *reasons.entry(NO_VICTIMS.into()).or_default() += 1,
        }
    }
    match best {
        Some(c) => Outcome::Preempt(c),
        None => Outcome::NoCandidate(reasons),
    }
}

fn key(c: &Candidate) -> (usize, i32, i64, usize) {
    let highest = c.victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN);
    let sum: i64 = c.victims.iter().map(|v| i64::from(v.priority)).sum();
    (c.violations, highest, sum, c.victims.len())
}

fn better(a: &Candidate, b: &Candidate) -> bool {
    key(a) < key(b)
}

fn candidate(
    profile: &Profile,
    pod: &PodInfo,
    node: &NodeInfo,
    cache: &Cache,
    pdbs: &[Arc<PodDisruptionBudget>],
) -> Option<Candidate> {
    let mut trial = node.clone();
    let mut lower: Vec<Arc<PodInfo>> = node.pods.iter().filter(|p| p.priority < pod.priority).cloned().collect();
    if lower.is_empty() {
        return None;
    }
    for p in &lower {
        trial.remove_pod(&p.uid);
    }
    let state = profile.prepare(pod, cache).ok()?;
    profile.filter(&state, &trial).ok()?;
    // Most important first, so they are the ones spared.
    lower.sort_by_key(|p| std::cmp::Reverse(p.priority));
    let mut allowed: HashMap<usize, i32> = HashMap::new();
    let (violating, safe): (Vec<_>, Vec<_>) = lower.into_iter().partition(|p| {
        let mut violates = false;
        for (i, pdb) in pdbs.iter().enumerate() {
            if pdb_selects(pdb, p) {
                let left =
                    allowed.entry(i).or_insert_with(|| pdb.status.as_ref().map(|s| s.disruptions_allowed).unwrap_or(0));
                *left -= 1;
                if *left < 0 {
                    violates = true;
                }
            }
        }
        violates
    });
    let mut victims = Vec::new();
    let mut violations = 0;
    for (p, is_violating) in violating.into_iter().map(|p| (p, true)).chain(safe.into_iter().map(|p| (p, false))) {
        trial.add_pod(p.clone());
        if profile.filter(&state, &trial).is_err() {
            trial.remove_pod(&p.uid);
            if is_violating {
                violations += 1;
            }
            victims.push(p);
        }
    }
    Some(Candidate { node: node.name.clone(), victims, violations })
}

fn pdb_selects(pdb: &PodDisruptionBudget, pod: &PodInfo) -> bool {
    if pdb.metadata.namespace.as_deref() != Some(pod.namespace.as_str()) {
        return false;
    }
    let selector = label_selector(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()));
    selector.is_some_and(|s| !s.is_empty() && s.matches(pod.labels()))
}
