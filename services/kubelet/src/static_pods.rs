//! Static pods: pod manifests in `--pod-manifest-path`, run by this kubelet
//! without the apiserver, and shown in the API as mirror pods.
//!
//! The directory is read at start and every few seconds. Each manifest
//! becomes a pod with upstream's identity (name `<name>-<node>`, a uid and
//! `kubernetes.io/config.hash` from a hash of the manifest and the node, the
//! `config.source`/`config.seen` annotations, `spec.nodeName` set) and goes to
//! the pod workers like any other pod. A changed manifest is a new pod (new
//! hash, new uid): the old one is stopped, the new one started.
//!
//! Mirror pods are the API's view: a pod of the same name, namespace and spec
//! with `kubernetes.io/config.mirror=<hash>`, owned by the Node. One is
//! created when missing, replaced when stale or being deleted (deleting a
//! mirror pod does not stop the static pod), and deleted with its manifest.
//! The static pod's status is reported on its mirror (see `StatusManager::set_mirror`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};

use crate::status::StatusManager;
use crate::workers::PodWorkers;

pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";
/// How often the manifest directory is read again.
pub const POLL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("decoding {path}: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("{path}: the manifest is a {kind:?}, not a Pod")]
    NotAPod { path: PathBuf, kind: String },
    #[error("{path}: the pod has no metadata.name")]
    NoName { path: PathBuf },
}

/// A pod that the API shows in place of a static pod.
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(CONFIG_MIRROR))
}

/// A pod this kubelet read from its manifest directory.
pub fn is_static(pod: &Pod) -> bool {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(CONFIG_SOURCE)).is_some_and(|s| s == "file")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The static pod a manifest describes, for `node`; `seen` is the `config.seen` annotation.
pub fn static_pod(bytes: &[u8], path: &Path, node: &str, seen: &str) -> Result<Pod, ManifestError> {
    let decode = |message: String| ManifestError::Decode { path: path.to_path_buf(), message };
    // YAML is a superset of JSON: one decoder reads both.
    let value: serde_json::Value = serde_yaml::from_slice(bytes).map_err(|e| decode(e.to_string()))?;
    if let Some(kind) = value.get("kind").and_then(|k| k.as_str()) {
        if kind != "Pod" {
            return Err(ManifestError::NotAPod { path: path.to_path_buf(), kind: kind.to_string() });
        }
    }
    let mut pod: Pod = serde_json::from_value(value).map_err(|e| decode(e.to_string()))?;
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ManifestError::NoName { path: path.to_path_buf() })?;
    // The identity hashes what the manifest says (not how it is formatted) and the node.
    let canonical = serde_json::to_vec(&pod).map_err(|e| decode(e.to_string()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&canonical);
    ctx.update(b"\0");
    ctx.update(node.as_bytes());
    ctx.update(b"\0file");
    let hash = hex(&ctx.finish().as_ref()[..16]);

    pod.metadata.name = Some(format!("{name}-{node}"));
    if pod.metadata.namespace.as_deref().is_none_or(str::is_empty) {
        pod.metadata.namespace = Some("default".into());
    }
    pod.metadata.uid = Some(hash.clone());
    pod.metadata.resource_version = None;
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(CONFIG_SOURCE.into(), "file".into());
    annotations.insert(CONFIG_HASH.into(), hash);
    annotations.insert(CONFIG_SEEN.into(), seen.into());
    annotations.remove(CONFIG_MIRROR);
    pod.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
    pod.status = None;
    Ok(pod)
}

fn config_hash(pod: &Pod) -> Option<&str> {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(CONFIG_HASH)).map(String::as_str)
}

fn key(pod: &Pod) -> (String, String) {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

/// The mirror pod for a static pod.
fn mirror_of(pod: &Pod, owner: &OwnerReference) -> Pod {
    let mut mirror = Pod { metadata: pod.metadata.clone(), spec: pod.spec.clone(), status: None };
    mirror.metadata.uid = None;
    let hash = config_hash(pod).unwrap_or_default().to_string();
    mirror.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(CONFIG_MIRROR.into(), hash);
    mirror.metadata.owner_references = Some(vec![owner.clone()]);
    mirror
}

/// What the source knows of one static pod.
struct Entry {
    pod: Pod,
    /// The uid of its mirror pod, once seen.
    mirror_uid: Option<String>,
}

/// The file source of static pods and their mirror pods.
pub struct StaticPods {
    dir: PathBuf,
    node: String,
    client: kube::Client,
    workers: Arc<PodWorkers>,
    status: Arc<StatusManager>,
    /// Static pods by uid.
    pods: Mutex<HashMap<String, Entry>>,
    /// When each config hash was first seen (the `config.seen` annotation).
    seen: Mutex<HashMap<String, String>>,
    /// The last error per manifest, logged once.
    errors: Mutex<HashMap<PathBuf, String>>,
    node_owner: tokio::sync::Mutex<Option<OwnerReference>>,
}

impl StaticPods {
    pub fn new(
        dir: PathBuf,
        node: String,
        client: kube::Client,
        workers: Arc<PodWorkers>,
        status: Arc<StatusManager>,
    ) -> Arc<StaticPods> {
        Arc::new(StaticPods {
            dir,
            node,
            client,
            workers,
            status,
            pods: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            errors: Mutex::new(HashMap::new()),
            node_owner: tokio::sync::Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The uids of the static pods now in the manifest directory.
    pub fn uids(&self) -> HashSet<String> {
        self.lock().keys().cloned().collect()
    }

    /// Reads the manifests: new pods go to the workers, vanished ones are stopped.
    pub fn scan(&self) {
        let mut found: HashMap<String, Pod> = HashMap::new();
        let mut errors: HashMap<PathBuf, String> = HashMap::new();
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                // Unreadable is not empty: keep what runs.
                tracing::warn!(dir = %self.dir.display(), "reading the static pod manifests: {e}");
                return;
            }
        };
        files.sort();
        for path in files {
            let manifest =
                path.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
                    && !path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            if !manifest || !path.is_file() {
                continue;
            }
            match self.read(&path) {
                Ok(pod) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if found.values().any(|p| key(p) == key(&pod)) {
                        errors.insert(path.clone(), format!("a static pod named {:?} exists already", key(&pod)));
                        continue;
                    }
                    found.insert(uid, pod);
                }
                Err(e) => {
                    errors.insert(path.clone(), e.to_string());
                }
            }
        }
        {
            let mut last = self.errors.lock().unwrap_or_else(|e| e.into_inner());
            for (path, e) in &errors {
                if last.get(path) != Some(e) {
                    tracing::warn!(manifest = %path.display(), "skipping a static pod manifest: {e}");
                }
            }
            *last = errors;
        }
        let mut pods = self.lock();
        let gone: Vec<String> = pods.keys().filter(|uid| !found.contains_key(*uid)).cloned().collect();
        for uid in gone {
            if let Some(e) = pods.remove(&uid) {
                tracing::info!(pod = %crate::pods::pod_name(&e.pod), pod_uid = %uid, "static pod removed; stopping it");
                self.workers.remove(&uid);
                self.status.set_mirror(&uid, None);
            }
        }
        for (uid, pod) in found {
            if pods.contains_key(&uid) {
                continue;
            }
            tracing::info!(pod = %crate::pods::pod_name(&pod), pod_uid = %uid, "static pod added");
            self.workers.update(pod.clone());
            pods.insert(uid, Entry { pod, mirror_uid: None });
        }
        let live: HashSet<String> = pods.values().filter_map(|e| config_hash(&e.pod).map(str::to_string)).collect();
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).retain(|h, _| live.contains(h));
    }

    fn read(&self, path: &Path) -> Result<Pod, ManifestError> {
        let bytes = std::fs::read(path).map_err(|source| ManifestError::Read { path: path.to_path_buf(), source })?;
        let now = jiff::Timestamp::now().to_string();
        // The hash does not depend on `seen`; read once to learn it, then stamp the first-seen time.
        let pod = static_pod(&bytes, path, &self.node, &now)?;
        let hash = config_hash(&pod).unwrap_or_default().to_string();
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner()).entry(hash).or_insert(now).clone();
        let mut pod = pod;
        if let Some(a) = pod.metadata.annotations.as_mut() {
            a.insert(CONFIG_SEEN.into(), seen);
        }
        Ok(pod)
    }

    /// Reads the manifests and syncs the mirror pods, for ever.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.scan();
            if let Err(e) = self.sync_mirrors().await {
                tracing::debug!(node = %self.node, "syncing mirror pods: {e}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn owner(&self) -> Result<OwnerReference, kube::Error> {
        let mut cached = self.node_owner.lock().await;
        if let Some(o) = cached.as_ref() {
            return Ok(o.clone());
        }
        let node = Api::<Node>::all(self.client.clone()).get(&self.node).await?;
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: self.node.clone(),
            uid: node.metadata.uid.unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        *cached = Some(owner.clone());
        Ok(owner)
    }

    /// Makes the API's mirror pods match the static pods.
    async fn sync_mirrors(&self) -> Result<(), kube::Error> {
        let owner = self.owner().await?;
        let all: Api<Pod> = Api::all(self.client.clone());
        let lp = ListParams::default().fields(&format!("spec.nodeName={}", self.node));
        let mut existing: HashMap<(String, String), Pod> =
            all.list(&lp).await?.items.into_iter().map(|p| (key(&p), p)).collect();
        let statics: Vec<Pod> = self.lock().values().map(|e| e.pod.clone()).collect();
        for pod in statics {
            let static_uid = pod.metadata.uid.clone().unwrap_or_default();
            let k = key(&pod);
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &k.0);
            let mut mirror_uid = None;
            match existing.remove(&k) {
                Some(p) if !is_mirror(&p) => {
                    tracing::warn!(pod = %crate::pods::pod_name(&p), "a pod that is not a mirror pod has the static pod's name");
                    continue;
                }
                Some(p) => {
                    let current = p.metadata.annotations.as_ref().and_then(|a| a.get(CONFIG_MIRROR))
                        == config_hash(&pod).map(str::to_string).as_ref();
                    if current && p.metadata.deletion_timestamp.is_none() {
                        mirror_uid = p.metadata.uid.clone();
                        self.adopt_status(&static_uid, &p);
                    } else {
                        tracing::info!(pod = %crate::pods::pod_name(&p), "replacing a stale or deleted mirror pod");
                        self.delete_mirror(&p).await?;
                    }
                }
                None => {}
            }
            if mirror_uid.is_none() {
                match api.create(&PostParams::default(), &mirror_of(&pod, &owner)).await {
                    Ok(created) => {
                        tracing::info!(pod = %crate::pods::pod_name(&created), "created the mirror pod");
                        mirror_uid = created.metadata.uid.clone();
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => {
                        tracing::warn!(pod = %crate::pods::pod_name(&pod), "creating the mirror pod: {e}");
                        continue;
                    }
                }
            }
            let changed = {
                let mut pods = self.lock();
                match pods.get_mut(&static_uid) {
                    Some(e) if e.mirror_uid != mirror_uid => {
                        e.mirror_uid = mirror_uid.clone();
                        true
                    }
                    _ => false,
                }
            };
            if changed {
                // A new mirror has no status yet: the worker reports again, on it.
                self.status.set_mirror(&static_uid, mirror_uid.as_deref());
                self.workers.wake(&static_uid);
            }
        }
        // Mirror pods of static pods that are gone.
        for p in existing.into_values().filter(is_mirror) {
            tracing::info!(pod = %crate::pods::pod_name(&p), "deleting the mirror pod of a removed static pod");
            self.delete_mirror(&p).await?;
        }
        Ok(())
    }

    /// The worker computes conditions against the last reported status, as for any pod.
    fn adopt_status(&self, static_uid: &str, mirror: &Pod) {
        let mut pods = self.lock();
        let Some(e) = pods.get_mut(static_uid) else { return };
        if mirror.status.is_some() && e.pod.status != mirror.status {
            e.pod.status = mirror.status.clone();
            self.workers.update(e.pod.clone());
        }
    }

    async fn delete_mirror(&self, p: &Pod) -> Result<(), kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), p.metadata.namespace.as_deref().unwrap_or("default"));
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: p.metadata.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        match api.delete(p.metadata.name.as_deref().unwrap_or(""), &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str =
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n";

    #[test]
    fn a_manifest_becomes_a_static_pod_with_upstreams_identity() {
        let pod = static_pod(MANIFEST.as_bytes(), Path::new("web.yaml"), "n1", "t0").unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        let a = pod.metadata.annotations.clone().unwrap();
        assert_eq!(a.get(CONFIG_SOURCE).map(String::as_str), Some("file"));
        assert_eq!(a.get(CONFIG_HASH), pod.metadata.uid.as_ref());
        assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn the_uid_follows_the_content_and_the_node_not_the_formatting() {
        let a = static_pod(MANIFEST.as_bytes(), Path::new("a.yaml"), "n1", "t0").unwrap();
        let json = serde_json::to_string(&serde_yaml::from_str::<serde_json::Value>(MANIFEST).unwrap()).unwrap();
        let b = static_pod(json.as_bytes(), Path::new("a.json"), "n1", "t1").unwrap();
        assert_eq!(a.metadata.uid, b.metadata.uid);
        let other_node = static_pod(MANIFEST.as_bytes(), Path::new("a.yaml"), "n2", "t0").unwrap();
        assert_ne!(a.metadata.uid, other_node.metadata.uid);
        let changed = static_pod(MANIFEST.replace("busybox", "nginx").as_bytes(), Path::new("a.yaml"), "n1", "t0");
        assert_ne!(a.metadata.uid, changed.unwrap().metadata.uid);
    }

    #[test]
    fn other_kinds_are_refused() {
        let err = static_pod(b"apiVersion: v1\nkind: Service\nmetadata: {name: x}\n", Path::new("s.yaml"), "n1", "t");
        assert!(matches!(err, Err(ManifestError::NotAPod { .. })));
    }

    #[test]
    fn mirror_pods_carry_the_hash_and_the_node_owner() {
        let pod = static_pod(MANIFEST.as_bytes(), Path::new("web.yaml"), "n1", "t0").unwrap();
        let owner = OwnerReference { kind: "Node".into(), name: "n1".into(), ..Default::default() };
        let m = mirror_of(&pod, &owner);
        assert!(is_mirror(&m));
        assert_eq!(m.metadata.uid, None);
        assert_eq!(m.metadata.annotations.unwrap().get(CONFIG_MIRROR).map(String::as_str), pod.metadata.uid.as_deref());
    }
}
