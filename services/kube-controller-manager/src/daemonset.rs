//! The DaemonSet controller: one pod on every node the template selects
//! (nodeSelector, required node affinity, tolerated taints), pinned to its
//! node through node affinity so the scheduler binds it; rolling updates
//! within maxUnavailable (or OnDelete); ControllerRevisions for history.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use component_base::events::{object_ref, EventType, Recorder};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodTemplateSpec, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::history::{self, REVISION_HASH};
use crate::informer::{Change, Factory};
use crate::nodelifecycle::tolerates;
use crate::queue::WorkQueue;
use crate::util::{self, Expectations};

#[derive(Debug, thiserror::Error)]
#[error("{action} for daemonset {ds}: {source}")]
pub struct Error {
    action: &'static str,
    ds: String,
    #[source]
    source: kube::Error,
}

pub struct DaemonSetController {
    client: kube::Client,
    recorder: Recorder,
    daemonsets: Store<DaemonSet>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations,
    queue: WorkQueue,
}

/// The tolerations every daemon pod gets (upstream's AddOrUpdateDaemonPodTolerations).
fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut v = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        v.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    v
}

/// The template with the daemon tolerations added.
fn daemon_template(ds: &DaemonSet) -> PodTemplateSpec {
    let mut t = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let spec = t.spec.get_or_insert_with(Default::default);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for d in daemon_tolerations(spec.host_network == Some(true)) {
        if !tolerations.iter().any(|t| t.key == d.key && t.effect == d.effect) {
            tolerations.push(d);
        }
    }
    t
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.clone().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) =
                (value.and_then(|v| v.parse::<i64>().ok()), values.first().and_then(|b| b.parse::<i64>().ok()))
            else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.clone().unwrap_or_default();
    term.match_expressions.iter().flatten().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && term
            .match_fields
            .iter()
            .flatten()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name.as_str())))
}

/// Whether a daemon pod of `template` belongs on `node`.
pub fn should_run(template: &PodTemplateSpec, node: &Node) -> bool {
    if node.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let spec = template.spec.clone().unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if !spec.node_selector.iter().flatten().all(|(k, v)| labels.get(k) == Some(v)) {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    if let Some(req) = required {
        if !req.node_selector_terms.iter().any(|t| term_matches(t, node)) {
            return false;
        }
    }
    let tolerations = spec.tolerations.unwrap_or_default();
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|taint| tolerations.iter().any(|t| tolerates(t, taint)))
}

/// The node a daemon pod is for: its nodeName, or the node its affinity pins it to.
fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let req =
        spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    req.node_selector_terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(|r| {
        (r.key == "metadata.name" && r.operator == "In").then(|| r.values.as_ref()?.first().cloned()).flatten()
    })
}

fn pod_for(ds: &DaemonSet, template: &PodTemplateSpec, hash: &str, node: &str) -> Pod {
    let mut t = template.clone();
    let tm = t.metadata.take().unwrap_or_default();
    let mut labels = tm.labels.unwrap_or_default();
    labels.insert(REVISION_HASH.into(), hash.into());
    labels.insert("pod-template-generation".into(), ds.metadata.generation.unwrap_or(1).to_string());
    let mut spec = t.spec.unwrap_or_default();
    let pin =
        NodeSelectorRequirement { key: "metadata.name".into(), operator: "In".into(), values: Some(vec![node.into()]) };
    let affinity = spec.affinity.get_or_insert_with(Default::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(Default::default);
    let required =
        node_affinity.required_during_scheduling_ignored_during_execution.get_or_insert_with(Default::default);
    if required.node_selector_terms.is_empty() {
        required.node_selector_terms.push(NodeSelectorTerm::default());
    }
    for term in required.node_selector_terms.iter_mut() {
        term.match_fields = Some(vec![pin.clone()]);
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.metadata.name.as_deref().unwrap_or_default())),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tm.annotations,
            owner_references: Some(vec![util::new_controller_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn pod_hash(p: &Pod) -> Option<&str> {
    p.metadata.labels.as_ref()?.get(REVISION_HASH).map(String::as_str)
}

impl DaemonSetController {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue) -> Arc<Self> {
        let dss = factory.daemonsets();
        let pods = factory.pods();
        let nodes = factory.nodes();
        let this = Arc::new(DaemonSetController {
            recorder: Recorder::new(client.clone(), "daemonset-controller", None),
            client,
            daemonsets: dss.store(),
            pods: pods.store(),
            nodes: nodes.store(),
            revisions: factory.controller_revisions().store(),
            expectations: Expectations::default(),
            queue,
        });
        let q = this.queue.clone();
        dss.add_handler(move |c| {
            if let Change::Upsert { new, .. } = c {
                q.add(util::key_of(&new.metadata));
            }
        });
        let me = this.clone();
        pods.add_handler(move |c| {
            let (old, pod) = match c {
                Change::Upsert { old, new } => (old.clone(), new.clone()),
                Change::Deleted(p) => (None, p.clone()),
            };
            let Some(r) = util::controller_ref(&pod.metadata).filter(|r| r.kind == "DaemonSet") else { return };
            let key = format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), r.name);
            match c {
                Change::Upsert { old: None, .. } => me.expectations.creation_observed(&key),
                Change::Deleted(_) => me.expectations.deletion_observed(&key, &util::key_of(&pod.metadata)),
                Change::Upsert { .. } => {
                    if pod.metadata.deletion_timestamp.is_some()
                        && old.is_some_and(|o| o.metadata.deletion_timestamp.is_none())
                    {
                        me.expectations.deletion_observed(&key, &util::key_of(&pod.metadata));
                    }
                }
            }
            me.queue.add(key);
        });
        let me = this.clone();
        nodes.add_handler(move |_| {
            for ds in me.daemonsets.state() {
                me.queue.add(util::key_of(&ds.metadata));
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

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = util::split_key(key);
        let Some(ds) = self.daemonsets.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let err = |action| {
            let ds = key.to_string();
            move |source| Error { action, ds, source }
        };
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let spec = ds.spec.clone().unwrap_or_default();
        let template = daemon_template(&ds);
        let rev_api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        let revisions = history::owned(&self.revisions.state(), ns, &uid);
        let current = history::ensure(
            &rev_api,
            ds.as_ref(),
            &revisions,
            &spec.template,
            ds.status.as_ref().and_then(|s| s.collision_count),
        )
        .await
        .map_err(err("recording a revision"))?;
        let hash = history::hash_of(&current);

        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter(|p| util::controller_ref(&p.metadata).is_some_and(|r| r.uid == uid))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        for p in &pods {
            by_node.entry(target_node(p).unwrap_or_default()).or_default().push(p.clone());
        }
        let nodes = self.nodes.state();
        let wanted: HashSet<String> =
            nodes.iter().filter(|n| should_run(&template, n)).filter_map(|n| n.metadata.name.clone()).collect();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = jiff::Timestamp::now();

        let rolling = spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()) != Some("OnDelete");
        let rolling_update = spec.update_strategy.as_ref().and_then(|s| s.rolling_update.as_ref());
        let desired = wanted.len();
        // maxSurge rounds up (upstream's GetScaledValueFromIntOrPercent with roundUp).
        let max_surge = match rolling_update.and_then(|r| r.max_surge.clone()) {
            Some(IntOrString::Int(n)) => n.max(0) as usize,
            Some(IntOrString::String(p)) => {
                let pct: f64 = p.trim_end_matches('%').parse().unwrap_or(0.0);
                (pct * desired as f64 / 100.0).ceil().max(0.0) as usize
            }
            None => 0,
        };
        let surge = rolling && max_surge > 0;
        let is_new = |p: &Pod| pod_hash(p) == Some(hash.as_str());

        let mut create: Vec<String> = Vec::new();
        let mut delete: Vec<Arc<Pod>> = Vec::new();
        for node in &wanted {
            let on_node = by_node.get(node).cloned().unwrap_or_default();
            // Failed daemon pods are replaced.
            let (failed, mut running): (Vec<_>, Vec<_>) = on_node.into_iter().partition(|p| util::is_terminal(p));
            delete.extend(failed);
            if running.is_empty() {
                create.push(node.clone());
            } else if running.len() > 1 && !surge {
                running.sort_by(|a, b| crate::replicaset::deletion_order(b, a));
                delete.extend(running.into_iter().skip(1));
            } else if running.len() > 1 {
                // Surging: one old pod may stay beside the oldest new one while the new one is
                // not ready yet; every other pod goes.
                running.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
                let (mut oldest_new, mut oldest_old) = (None, None);
                for p in running {
                    let slot = if is_new(&p) { &mut oldest_new } else { &mut oldest_old };
                    if slot.is_none() {
                        *slot = Some(p);
                    } else {
                        delete.push(p);
                    }
                }
                if let (Some(new), Some(old)) = (&oldest_new, &oldest_old) {
                    if !util::is_ready(old) || util::is_ready(new) {
                        delete.push(old.clone());
                    }
                }
            }
        }
        for (node, on_node) in &by_node {
            if !wanted.contains(node) {
                delete.extend(on_node.iter().cloned());
            }
        }

        // Rolling update: replace old pods while at most maxUnavailable are unavailable, or
        // with maxSurge start the new pod first and remove the old one once the new is available.
        if surge && self.expectations.satisfied(key) {
            let mut surging = 0;
            let mut candidates: Vec<String> = Vec::new();
            for node in &wanted {
                let live: Vec<&Arc<Pod>> = by_node
                    .get(node)
                    .into_iter()
                    .flatten()
                    .filter(|p| !util::is_terminal(p) && !delete.iter().any(|d| d.metadata.uid == p.metadata.uid))
                    .collect();
                let news: Vec<&&Arc<Pod>> = live.iter().filter(|p| is_new(p)).collect();
                let olds: Vec<&&Arc<Pod>> = live.iter().filter(|p| !is_new(p)).collect();
                if news.len() > 1 || olds.len() > 1 {
                    surging += 1;
                    continue;
                }
                match (news.first(), olds.first()) {
                    (_, None) => {}
                    (None, Some(old)) if !util::is_available(old, min_ready, now) => {
                        // Not available anyway: replace it right away, outside the surge budget.
                        create.push(node.clone());
                    }
                    (None, Some(_)) => candidates.push(node.clone()),
                    (Some(new), Some(old)) => {
                        if util::is_available(new, min_ready, now) {
                            delete.push((**old).clone());
                        } else {
                            surging += 1;
                        }
                    }
                }
            }
            let room = max_surge.saturating_sub(surging).min(candidates.len());
            create.extend(candidates.into_iter().take(room));
        } else if rolling && self.expectations.satisfied(key) {
            let max_unavailable = match rolling_update.and_then(|r| r.max_unavailable.clone()) {
                Some(IntOrString::Int(n)) => n,
                Some(IntOrString::String(p)) => {
                    let pct: f64 = p.trim_end_matches('%').parse().unwrap_or(0.0);
                    ((pct * wanted.len() as f64 / 100.0).round() as i32).max(1)
                }
                None => 1,
            }
            .max(1) as usize;
            let mut unavailable = wanted
                .iter()
                .filter(|n| !by_node.get(*n).is_some_and(|ps| ps.iter().any(|p| util::is_available(p, min_ready, now))))
                .count();
            let mut old: Vec<Arc<Pod>> = wanted
                .iter()
                .filter_map(|n| by_node.get(n))
                .flatten()
                .filter(|p| !is_new(p) && !util::is_terminal(p))
                .cloned()
                .collect();
            // Unavailable old pods go first: replacing them costs nothing.
            old.sort_by_key(|p| util::is_available(p, min_ready, now));
            for p in old {
                if util::is_available(&p, min_ready, now) {
                    if unavailable >= max_unavailable {
                        break;
                    }
                    unavailable += 1;
                }
                if !delete.iter().any(|d| d.metadata.uid == p.metadata.uid) {
                    delete.push(p);
                }
            }
        }
        let mut seen = HashSet::new();
        delete.retain(|p| seen.insert(p.metadata.uid.clone()));

        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        if self.expectations.satisfied(key) && (!create.is_empty() || !delete.is_empty()) {
            self.expectations.expect(key, create.len() as i64, delete.iter().map(|p| util::key_of(&p.metadata)));
            // Deletions first: with maxSurge, an old pod whose replacement is available goes
            // before the next node surges, so there are never more than maxSurge extra pods.
            for p in &delete {
                match pod_api.delete(p.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::default()).await {
                    Ok(_) => self.recorder.event(
                        object_ref(ds.as_ref()),
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", p.metadata.name.as_deref().unwrap_or_default()),
                    ),
                    Err(e) => {
                        self.expectations.deletion_observed(key, &util::key_of(&p.metadata));
                        if util::api_code(&e) != Some(404) {
                            self.expectations.lowered(key, create.len() as i64);
                            return Err(err("deleting a daemon pod")(e));
                        }
                    }
                }
            }
            for (i, node) in create.iter().enumerate() {
                match pod_api.create(&PostParams::default(), &pod_for(&ds, &template, &hash, node)).await {
                    Ok(p) => self.recorder.event(
                        object_ref(ds.as_ref()),
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", p.metadata.name.unwrap_or_default()),
                    ),
                    Err(e) => {
                        // Neither this creation nor the ones not tried will be observed.
                        self.expectations.lowered(key, (create.len() - i) as i64);
                        return Err(err("creating a daemon pod")(e));
                    }
                }
            }
        }

        // Status, from what is on the nodes now.
        let deleted: HashSet<Option<String>> = delete.iter().map(|p| p.metadata.uid.clone()).collect();
        let live = |n: &String| -> Vec<Arc<Pod>> {
            by_node.get(n).into_iter().flatten().filter(|p| !deleted.contains(&p.metadata.uid)).cloned().collect()
        };
        let desired = wanted.len() as i32;
        let scheduled = wanted.iter().filter(|n| !live(n).is_empty()).count() as i32;
        let misscheduled = by_node.keys().filter(|n| !wanted.contains(*n)).count() as i32;
        let ready = wanted.iter().filter(|n| live(n).iter().any(|p| util::is_ready(p))).count() as i32;
        let available =
            wanted.iter().filter(|n| live(n).iter().any(|p| util::is_available(p, min_ready, now))).count() as i32;
        let updated =
            wanted.iter().filter(|n| live(n).iter().any(|p| pod_hash(p) == Some(hash.as_str()))).count() as i32;
        let mut status = ds.status.clone().unwrap_or_default();
        status.desired_number_scheduled = desired;
        status.current_number_scheduled = scheduled;
        status.number_misscheduled = misscheduled;
        status.number_ready = ready;
        status.number_available = Some(available);
        status.number_unavailable = Some(desired - available);
        status.updated_number_scheduled = Some(updated);
        status.observed_generation = ds.metadata.generation;
        if Some(&status) != ds.status.as_ref() {
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
            let mut with_status = (*ds).clone();
            with_status.status = Some(status);
            match api.replace_status(name, &PostParams::default(), &with_status).await {
                Ok(_) => {}
                Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => return Ok(Some(Duration::from_millis(200))),
                Err(e) => return Err(err("updating status")(e)),
            }
        }

        let live_hashes: HashSet<String> = pods.iter().filter_map(|p| pod_hash(p).map(String::from)).collect();
        let limit = spec.revision_history_limit.unwrap_or(10);
        let revisions = history::owned(&self.revisions.state(), ns, &uid);
        history::truncate(
            &rev_api,
            &revisions,
            &live_hashes,
            current.metadata.name.as_deref().unwrap_or_default(),
            limit,
        )
        .await
        .map_err(err("trimming history"))?;
        if min_ready > 0 && ready != available {
            return Ok(Some(Duration::from_secs(min_ready as u64)));
        }
        Ok(None)
    }
}
