//! The disruption controller: keeps each PodDisruptionBudget's status
//! (expected pods, current/desired healthy, disruptionsAllowed and the
//! DisruptionAllowed condition), which the apiserver's eviction checks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::informer::{Change, Factory};
use crate::queue::WorkQueue;
use crate::util;

/// Entries of status.disruptedPods older than this are dropped (upstream's DeletionTimeout).
const DELETION_TIMEOUT: i64 = 120;

#[derive(Debug, thiserror::Error)]
#[error("{action} for pdb {pdb}: {source}")]
pub struct Error {
    action: &'static str,
    pdb: String,
    #[source]
    source: kube::Error,
}

pub struct DisruptionController {
    client: kube::Client,
    pdbs: Store<PodDisruptionBudget>,
    pods: Store<Pod>,
    replicasets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    queue: WorkQueue,
}

fn matching_pdbs(pdbs: &Store<PodDisruptionBudget>, pod: &Pod) -> Vec<String> {
    let labels = util::labels(&pod.metadata);
    pdbs.state()
        .iter()
        .filter(|p| p.metadata.namespace == pod.metadata.namespace)
        .filter(|p| util::selector(p.spec.as_ref().and_then(|s| s.selector.as_ref())).matches(&labels))
        .map(|p| util::key_of(&p.metadata))
        .collect()
}

impl DisruptionController {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue) -> Arc<Self> {
        let pdbs = factory.pod_disruption_budgets();
        let pods = factory.pods();
        let this = Arc::new(DisruptionController {
            client,
            pdbs: pdbs.store(),
            pods: pods.store(),
            replicasets: factory.replicasets().store(),
            deployments: factory.deployments().store(),
            queue,
        });
        let q = this.queue.clone();
        pdbs.add_handler(move |c| {
            if let Change::Upsert { new, .. } = c {
                q.add(util::key_of(&new.metadata));
            }
        });
        let me = this.clone();
        pods.add_handler(move |c| {
            let (old, new) = match c {
                Change::Upsert { old, new } => (old.clone(), new.clone()),
                Change::Deleted(p) => (None, p.clone()),
            };
            for p in old.iter().chain(Some(&new)) {
                for key in matching_pdbs(&me.pdbs, p) {
                    me.queue.add(key);
                }
            }
        });
        this
    }

    pub fn run(self: &Arc<Self>, workers: usize) {
        let me = self.clone();
        self.queue.run_workers(workers, move |key| {
            let me = me.clone();
            async move { me.sync(&key).await }
        });
    }

    /// The scale of the workload controlling `pod` (a Deployment through its ReplicaSet).
    async fn controller_scale(&self, pod: &Pod, ns: &str) -> Result<Option<(String, i32)>, kube::Error> {
        let Some(r) = util::controller_ref(&pod.metadata) else { return Ok(None) };
        match r.kind.as_str() {
            "ReplicaSet" => {
                let Some(rs) = self.replicasets.get(&ObjectRef::new(&r.name).within(ns)) else { return Ok(None) };
                if let Some(d) = util::controller_ref(&rs.metadata).filter(|d| d.kind == "Deployment") {
                    if let Some(dep) = self.deployments.get(&ObjectRef::new(&d.name).within(ns)) {
                        let n = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                        return Ok(Some((d.uid.clone(), n)));
                    }
                }
                Ok(Some((r.uid.clone(), rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))))
            }
            "StatefulSet" => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
                Ok(api.get_opt(&r.name).await?.map(|s| (r.uid.clone(), s.spec.and_then(|s| s.replicas).unwrap_or(1))))
            }
            _ => Ok(None),
        }
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = util::split_key(key);
        let Some(pdb) = self.pdbs.get(&ObjectRef::new(name).within(ns)) else { return Ok(None) };
        let err = |action| {
            let pdb = key.to_string();
            move |source| Error { action, pdb, source }
        };
        let spec = pdb.spec.clone().unwrap_or_default();
        let sel = util::selector(spec.selector.as_ref());
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns) && sel.matches(&util::labels(&p.metadata)))
            .collect();
        let healthy =
            pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none() && util::is_ready(p)).count() as i32;

        let by_scale = spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)));
        let (expected, desired) = if by_scale {
            let mut scales: HashMap<String, i32> = HashMap::new();
            for p in &pods {
                match self.controller_scale(p, ns).await.map_err(err("reading a controller's scale"))? {
                    Some((uid, n)) => {
                        scales.insert(uid, n);
                    }
                    // Upstream refuses to compute a budget over uncontrolled pods; count them one each.
                    None => {
                        scales.insert(p.metadata.uid.clone().unwrap_or_default(), 1);
                    }
                }
            }
            let expected: i32 = scales.values().sum();
            let desired = match (&spec.max_unavailable, &spec.min_available) {
                (Some(mu), _) => expected - resolve(mu, expected, true),
                (None, Some(ma)) => resolve(ma, expected, true),
                (None, None) => expected,
            };
            (expected, desired.max(0))
        } else {
            let min = match &spec.min_available {
                Some(IntOrString::Int(n)) => *n,
                _ => 0,
            };
            (pods.len() as i32, min)
        };
        let now = jiff::Timestamp::now();
        let disrupted: BTreeMap<String, Time> = pdb
            .status
            .as_ref()
            .and_then(|s| s.disrupted_pods.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, t)| t.0 + jiff::SignedDuration::from_secs(DELETION_TIMEOUT) > now)
            .filter(|(pod, _)| {
                pods.iter().any(|p| p.metadata.name.as_deref() == Some(pod) && p.metadata.deletion_timestamp.is_none())
            })
            .collect();
        let allowed = (healthy - desired - disrupted.len() as i32).max(0);
        let old = pdb.status.clone().unwrap_or_default();
        let (cond_status, reason) =
            if allowed > 0 { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
        let transition = old
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "DisruptionAllowed" && c.status == cond_status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        let status = PodDisruptionBudgetStatus {
            current_healthy: healthy,
            desired_healthy: desired,
            expected_pods: expected,
            disruptions_allowed: allowed,
            disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
            observed_generation: pdb.metadata.generation,
            conditions: Some(vec![Condition {
                type_: "DisruptionAllowed".into(),
                status: cond_status.into(),
                reason: reason.into(),
                message: String::new(),
                last_transition_time: transition,
                observed_generation: pdb.metadata.generation,
            }]),
        };
        if status != old {
            let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), ns);
            let mut updated = (*pdb).clone();
            updated.status = Some(status);
            match api.replace_status(name, &PostParams::default(), &updated).await {
                Ok(_) => {}
                Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => return Ok(Some(Duration::from_millis(200))),
                Err(e) => return Err(err("updating status")(e)),
            }
        }
        Ok(None)
    }
}

fn resolve(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let exact = pct * f64::from(total) / 100.0;
            (if round_up { exact.ceil() } else { exact.floor() }) as i32
        }
    }
}
