//! The garbage collector: a graph of ownerReferences over every resource the
//! apiserver serves (discovered, watched as dynamic objects). It deletes
//! dependents whose owners are all gone, runs foreground deletion (deletes
//! dependents, then drops the owner's `foregroundDeletion` finalizer once no
//! dependent blocks it) and orphaning (strips the ownerReferences, then the
//! `orphan` finalizer).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::discovery::{verbs, ApiResource, Discovery, Scope};
use serde_json::json;

use crate::informer::{Change, Informer};
use crate::queue::WorkQueue;
use crate::util;

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {name}: {source}")]
    Api {
        action: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("discovery: {0}")]
    Discovery(#[source] kube::Error),
}

fn api_err(action: &'static str, name: &str) -> impl FnOnce(kube::Error) -> Error {
    let name = name.to_string();
    move |source| Error::Api { action, name, source }
}

#[derive(Clone)]
struct Kind {
    ar: ApiResource,
    namespaced: bool,
}

#[derive(Clone)]
struct Node {
    kind: Arc<Kind>,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
    resource_version: Option<String>,
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    fn dependents_of(&self, uid: &str) -> Vec<(String, Node)> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d).map(|n| (d.clone(), n.clone())))
            .collect()
    }
}

pub struct GarbageCollector {
    /// Lists and watches (the controller-manager's identity).
    root: kube::Client,
    /// Writes (the collector's own identity).
    client: kube::Client,
    graph: Mutex<Graph>,
    /// (group, kind) → resource, for ownerReferences.
    kinds: RwLock<HashMap<(String, String), Arc<Kind>>>,
    queue: WorkQueue,
    informers: Mutex<Vec<MetaInformer>>,
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

/// How often the collector re-discovers resources (new API groups, CRDs), as upstream's monitor resync.
const RESYNC_PERIOD: Duration = Duration::from_secs(30);

type MetaInformer = Arc<Informer<PartialObjectMeta<DynamicObject>>>;

impl GarbageCollector {
    /// Discovers every deletable, watchable resource and registers an informer for each.
    /// `root` lists and watches; `client` (the collector's own identity) writes.
    pub async fn new(root: kube::Client, client: kube::Client, queue: WorkQueue) -> Result<Arc<Self>, Error> {
        let gc = Arc::new(GarbageCollector {
            root,
            client,
            graph: Default::default(),
            kinds: Default::default(),
            queue,
            informers: Default::default(),
        });
        let added = gc.discover().await?;
        tracing::info!(resources = added.len(), "garbage collector watching every deletable resource");
        Ok(gc)
    }

    /// Runs discovery; registers informers (not yet started) for resources not watched so far.
    async fn discover(self: &Arc<Self>) -> Result<Vec<MetaInformer>, Error> {
        let discovery = Discovery::new(self.client.clone()).run().await.map_err(Error::Discovery)?;
        let mut added = Vec::new();
        let mut kinds = self.kinds.write().unwrap_or_else(|e| e.into_inner());
        let mut informers = self.informers.lock().unwrap_or_else(|e| e.into_inner());
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                let key = (ar.group.clone(), ar.kind.clone());
                if kinds.contains_key(&key) {
                    continue;
                }
                let kind = Arc::new(Kind { ar: ar.clone(), namespaced: caps.scope == Scope::Namespaced });
                kinds.insert(key, kind.clone());
                let ok = [verbs::LIST, verbs::WATCH, verbs::DELETE].iter().all(|v| caps.supports_operation(v));
                if !ok || ar.plural.contains('/') || ar.plural == "events" {
                    continue;
                }
                // Metadata only: owner references, finalizers and deletion are all the graph needs.
                let api = Api::<PartialObjectMeta<DynamicObject>>::all_with(self.root.clone(), &ar);
                let informer = Informer::new_with(api, ar);
                let me = self.clone();
                informer.add_handler(move |c| me.on_change(&kind, c));
                informers.push(informer.clone());
                added.push(informer);
            }
        }
        Ok(added)
    }

    pub fn start_informers(&self) {
        for i in self.informers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            i.start();
        }
    }

    pub async fn wait_synced(&self) {
        let informers: Vec<MetaInformer> = self.informers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for i in informers {
            i.wait_synced().await;
        }
    }

    /// Watches resources that appear later (a new API group, a CRD).
    fn resync_resources(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RESYNC_PERIOD).await;
                match me.discover().await {
                    Ok(added) => {
                        for i in &added {
                            i.start();
                        }
                        if !added.is_empty() {
                            tracing::info!(
                                resources = added.len(),
                                "garbage collector watching newly discovered resources"
                            );
                        }
                    }
                    Err(e) => tracing::warn!("garbage collector re-discovery: {e}"),
                }
            }
        });
    }

    fn on_change(&self, kind: &Arc<Kind>, change: &Change<PartialObjectMeta<DynamicObject>>) {
        let mut g = self.graph.lock().unwrap_or_else(|e| e.into_inner());
        match change {
            Change::Upsert { new, .. } => {
                let Some(uid) = new.metadata.uid.clone() else { return };
                let node = Node {
                    kind: kind.clone(),
                    namespace: new.metadata.namespace.clone(),
                    name: new.metadata.name.clone().unwrap_or_default(),
                    owners: new.metadata.owner_references.clone().unwrap_or_default(),
                    deleting: new.metadata.deletion_timestamp.is_some(),
                    finalizers: new.metadata.finalizers.clone().unwrap_or_default(),
                    resource_version: new.metadata.resource_version.clone(),
                };
                if let Some(old) = g.nodes.get(&uid).cloned() {
                    for o in &old.owners {
                        if let Some(d) = g.dependents.get_mut(&o.uid) {
                            d.remove(&uid);
                        }
                    }
                }
                for o in &node.owners {
                    g.dependents.entry(o.uid.clone()).or_default().insert(uid.clone());
                }
                let has_work = node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND || f == ORPHAN);
                let owner_missing_or_going = node.owners.iter().any(|o| match g.nodes.get(&o.uid) {
                    None => true,
                    Some(owner) => owner.deleting && owner.finalizers.iter().any(|f| f == FOREGROUND),
                });
                // A foreground-deleting owner waits on this dependent's changes.
                for o in &node.owners {
                    if g.nodes.get(&o.uid).is_some_and(|owner| owner.deleting) {
                        self.queue.add(o.uid.clone());
                    }
                }
                g.nodes.insert(uid.clone(), node);
                if has_work || owner_missing_or_going {
                    self.queue.add(uid);
                }
            }
            Change::Deleted(obj) => {
                let Some(uid) = obj.metadata.uid.clone() else { return };
                if let Some(old) = g.nodes.remove(&uid) {
                    for o in &old.owners {
                        if let Some(d) = g.dependents.get_mut(&o.uid) {
                            d.remove(&uid);
                        }
                        self.queue.add(o.uid.clone());
                    }
                }
                if let Some(deps) = g.dependents.get(&uid) {
                    for d in deps {
                        self.queue.add(d.clone());
                    }
                }
            }
        }
    }

    pub fn run(self: &Arc<Self>, workers: usize) {
        self.resync_resources();
        let me = self.clone();
        self.queue.run_workers(workers, move |uid| {
            let me = me.clone();
            async move { me.sync(&uid).await }
        });
    }

    fn api(&self, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        match (kind.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &kind.ar),
            _ => Api::all_with(self.client.clone(), &kind.ar),
        }
    }

    async fn sync(&self, uid: &str) -> Result<Option<Duration>, Error> {
        let (node, dependents) = {
            let g = self.graph.lock().unwrap_or_else(|e| e.into_inner());
            let Some(node) = g.nodes.get(uid).cloned() else {
                // Gone: forget any edges kept for it.
                return Ok(None);
            };
            (node, g.dependents_of(uid))
        };
        if node.deleting && node.finalizers.iter().any(|f| f == ORPHAN) {
            return self.orphan(uid, &node, &dependents).await;
        }
        if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
            return self.foreground(uid, &node, &dependents).await;
        }
        if node.owners.is_empty() || node.deleting {
            return Ok(None);
        }
        self.attempt_to_delete(uid, &node).await
    }

    /// Removes `owner` from every dependent's ownerReferences, then the orphan finalizer.
    async fn orphan(&self, uid: &str, node: &Node, dependents: &[(String, Node)]) -> Result<Option<Duration>, Error> {
        for (dep_uid, dep) in dependents {
            let refs: Vec<&OwnerReference> = dep.owners.iter().filter(|o| o.uid != uid).collect();
            let patch = json!({"metadata": {"ownerReferences": refs, "uid": dep_uid}});
            match self
                .api(&dep.kind, dep.namespace.as_deref())
                .patch(&dep.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {}
                Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => {}
                Err(e) => return Err(api_err("orphaning", &dep.name)(e)),
            }
        }
        self.remove_finalizer(node, ORPHAN).await?;
        Ok(None)
    }

    /// Deletes dependents; drops the finalizer once none with blockOwnerDeletion is left.
    async fn foreground(
        &self,
        uid: &str,
        node: &Node,
        dependents: &[(String, Node)],
    ) -> Result<Option<Duration>, Error> {
        let mut blocking = 0;
        for (dep_uid, dep) in dependents {
            let blocks = dep.owners.iter().any(|o| o.uid == uid && o.block_owner_deletion == Some(true));
            if blocks {
                blocking += 1;
            }
            if !dep.deleting {
                let policy = if blocks { PropagationPolicy::Foreground } else { PropagationPolicy::Background };
                self.delete(dep_uid, dep, policy).await?;
            }
        }
        if blocking > 0 {
            // Dependent deletions come back as events; this retry is only a safety net.
            return Ok(Some(Duration::from_secs(5)));
        }
        self.remove_finalizer(node, FOREGROUND).await?;
        Ok(None)
    }

    async fn delete(&self, uid: &str, node: &Node, policy: PropagationPolicy) -> Result<(), Error> {
        let dp = DeleteParams {
            propagation_policy: Some(policy.clone()),
            preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            ..Default::default()
        };
        match self.api(&node.kind, node.namespace.as_deref()).delete(&node.name, &dp).await {
            Ok(_) => {
                tracing::info!(kind = %node.kind.ar.kind, namespace = ?node.namespace, name = %node.name, ?policy, "deleted dependent");
                Ok(())
            }
            Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(api_err("deleting", &node.name)(e)),
        }
    }

    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> Result<(), Error> {
        let rest: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": node.resource_version}});
        match self
            .api(&node.kind, node.namespace.as_deref())
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if util::api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(api_err("removing the finalizer of", &node.name)(e)),
        }
    }

    /// Whether the owner exists: the graph first, else the apiserver (the graph may lag).
    async fn owner_state(&self, dep: &Node, owner: &OwnerReference) -> Result<OwnerState, Error> {
        let known = self.graph.lock().unwrap_or_else(|e| e.into_inner()).nodes.get(&owner.uid).cloned();
        if let Some(o) = known {
            return Ok(if o.deleting && o.finalizers.iter().any(|f| f == FOREGROUND) {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Solid
            });
        }
        let kind = self
            .kinds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(group_of(&owner.api_version).to_string(), owner.kind.clone()))
            .cloned();
        let Some(kind) = kind else {
            // Unknown kind: never treat as absent.
            return Ok(OwnerState::Solid);
        };
        let ns = if kind.namespaced { dep.namespace.as_deref() } else { None };
        match self.api(&kind, ns).get_opt(&owner.name).await.map_err(api_err("getting owner", &owner.name))? {
            Some(o) if o.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
                let fg = o.metadata.finalizers.iter().flatten().any(|f| f == FOREGROUND);
                Ok(if o.metadata.deletion_timestamp.is_some() && fg {
                    OwnerState::WaitingForDependents
                } else {
                    OwnerState::Solid
                })
            }
            _ => Ok(OwnerState::Dangling),
        }
    }

    /// Upstream's attemptToDeleteItem for an object with owners.
    async fn attempt_to_delete(&self, uid: &str, node: &Node) -> Result<Option<Duration>, Error> {
        let mut solid = Vec::new();
        let mut dangling = Vec::new();
        let mut waiting = Vec::new();
        for o in &node.owners {
            match self.owner_state(node, o).await? {
                OwnerState::Solid => solid.push(o),
                OwnerState::Dangling => dangling.push(o),
                OwnerState::WaitingForDependents => waiting.push(o),
            }
        }
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(None);
            }
            let remaining: Vec<&OwnerReference> =
                node.owners.iter().filter(|o| solid.iter().any(|s| s.uid == o.uid)).collect();
            let patch = json!({"metadata": {"ownerReferences": remaining, "uid": uid}});
            return match self
                .api(&node.kind, node.namespace.as_deref())
                .patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => Ok(None),
                Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => Ok(None),
                Err(e) => Err(api_err("removing dangling owner references of", &node.name)(e)),
            };
        }
        // An owner deleted in the foreground waits for this one: so must this one's dependents.
        let policy = if !waiting.is_empty() {
            PropagationPolicy::Foreground
        } else if node.finalizers.iter().any(|f| f == ORPHAN) {
            PropagationPolicy::Orphan
        } else if node.finalizers.iter().any(|f| f == FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        self.delete(uid, node, policy).await?;
        Ok(None)
    }
}

#[derive(Debug)]
enum OwnerState {
    Solid,
    Dangling,
    WaitingForDependents,
}
