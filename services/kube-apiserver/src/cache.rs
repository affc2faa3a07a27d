//! The watch cache: per resource, one etcd watch feeding an in-memory store of
//! current objects and a bounded ring of recent events.
//!
//! Client watches and `resourceVersion=0` lists are served from here. Each
//! object version is serialized once (with its resourceVersion) and shared as
//! `Bytes` by every list and watcher; each event's wire line is encoded once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::registry::{ObjectAttrs, ResourceDescriptor};
use crate::storage::{EtcdStorage, KeyValue, StorageError, WatchChange};

/// One version of one object, ready to send.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub resource_version: i64,
    /// The object's JSON with `metadata.resourceVersion` set.
    pub json: Bytes,
    pub attrs: ObjectAttrs,
}

impl CachedObject {
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, with the version before it (for selector transitions).
#[derive(Debug)]
pub struct WatchEvent {
    pub event_type: EventType,
    pub object: Arc<CachedObject>,
    pub prev: Option<Arc<CachedObject>>,
    pub resource_version: i64,
    line: OnceLock<Bytes>,
}

impl WatchEvent {
    pub fn new(event_type: EventType, object: Arc<CachedObject>, prev: Option<Arc<CachedObject>>) -> Self {
        let resource_version = object.resource_version;
        WatchEvent { event_type, object, prev, resource_version, line: OnceLock::new() }
    }

    /// `{"type":"ADDED","object":{...}}\n`, encoded once for every watcher.
    pub fn json_line(&self) -> Bytes {
        self.line.get_or_init(|| encode_line(self.event_type.as_str(), &self.object.json)).clone()
    }
}

pub fn encode_line(event_type: &str, object: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(object.len() + 32);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(event_type.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    buf.extend_from_slice(object);
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

/// What the cache broadcasts to watchers.
#[derive(Clone, Debug)]
pub enum Broadcast {
    Event(Arc<WatchEvent>),
    /// The cache has seen everything up to this revision.
    Progress(i64),
    /// The cache was rebuilt from a fresh list; watchers must end.
    Reset,
}

struct CacheState {
    objects: BTreeMap<String, Arc<CachedObject>>,
    events: VecDeque<Arc<WatchEvent>>,
    capacity: usize,
    /// The revision the cache reflects.
    revision: i64,
    /// Events after this revision are all in the ring.
    window_start: i64,
}

/// Why a cache read or watch could not be served.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld { requested: i64, oldest: i64 },
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLarge { requested: i64, current: i64 },
    #[error("the watch cache for {0} is not ready")]
    NotReady(String),
}

/// A subscription: events newer than the requested version, then live ones.
pub struct Subscription {
    pub initial: Vec<Arc<WatchEvent>>,
    pub receiver: broadcast::Receiver<Broadcast>,
    pub revision: i64,
}

/// The watch cache of one resource.
pub struct Cacher {
    pub resource: Arc<ResourceDescriptor>,
    prefix: String,
    state: RwLock<CacheState>,
    sender: broadcast::Sender<Broadcast>,
    revision_tx: watch::Sender<i64>,
    ready_tx: watch::Sender<bool>,
    /// Asks the etcd watch for a progress report now (a reader waits for a revision).
    progress_wanted: tokio::sync::Notify,
    /// The newest revision this server wrote under the prefix: what a reader
    /// that must see its own writes waits for (see `caught_up_with_own_writes`).
    written: std::sync::atomic::AtomicI64,
}

const DEFAULT_CAPACITY: usize = 1024;
const BROADCAST_CAPACITY: usize = 4096;

impl Cacher {
    pub fn new(resource: Arc<ResourceDescriptor>, root: &str) -> Arc<Self> {
        let prefix = resource.key_prefix(root, None);
        let (sender, _) = broadcast::channel(BROADCAST_CAPACITY);
        Arc::new(Cacher {
            resource,
            prefix,
            state: RwLock::new(CacheState {
                objects: BTreeMap::new(),
                events: VecDeque::new(),
                capacity: DEFAULT_CAPACITY,
                revision: 0,
                window_start: 0,
            }),
            sender,
            revision_tx: watch::channel(0).0,
            ready_tx: watch::channel(false).0,
            progress_wanted: tokio::sync::Notify::new(),
            written: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// Records a write this server made at `revision`.
    pub fn note_written(&self, revision: i64) {
        self.written.fetch_max(revision, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits (bounded) until the cache holds every write this server made to
    /// the resource: an admission check that reads the cache (quota, say)
    /// then sees an object created a moment ago through this server.
    pub async fn caught_up_with_own_writes(&self, limit: Duration) -> Result<(), CacheError> {
        let written = self.written.load(std::sync::atomic::Ordering::SeqCst);
        self.wait_for_revision(written, limit).await
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn is_ready(&self) -> bool {
        *self.ready_tx.borrow()
    }

    pub fn revision(&self) -> i64 {
        self.state.read().map(|s| s.revision).unwrap_or(0)
    }

    /// Builds a cached object from a stored key, stamping its resourceVersion.
    pub fn to_cached(resource: &ResourceDescriptor, kv: &KeyValue) -> Option<Arc<CachedObject>> {
        let mut value: Value = serde_json::from_slice(&kv.value).ok()?;
        stamp_resource_version(&mut value, kv.mod_revision);
        let attrs = ObjectAttrs::from_object(resource, &value);
        let json = Bytes::from(serde_json::to_vec(&value).ok()?);
        Some(Arc::new(CachedObject { key: kv.key.clone(), resource_version: kv.mod_revision, json, attrs }))
    }

    /// Runs the cache forever: list, then watch; relists if the watch is lost
    /// beyond recovery.
    pub async fn run(self: Arc<Self>, storage: EtcdStorage) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.list_and_watch(&storage).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(resource = %self.resource.group_resource(), error = %e, "watch cache lost its watch");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn list_and_watch(&self, storage: &EtcdStorage) -> Result<(), StorageError> {
        let (objects, revision) = self.list_all(storage).await?;
        {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            let had_watchers = st.revision > 0;
            st.objects = objects;
            st.events.clear();
            st.revision = revision;
            st.window_start = revision;
            if had_watchers {
                let _ = self.sender.send(Broadcast::Reset);
            }
        }
        self.revision_tx.send_replace(revision);
        self.ready_tx.send_replace(true);
        tracing::debug!(resource = %self.resource.group_resource(), revision, "watch cache ready");
        self.watch_from(storage, revision).await
    }

    async fn list_all(
        &self,
        storage: &EtcdStorage,
    ) -> Result<(BTreeMap<String, Arc<CachedObject>>, i64), StorageError> {
        let mut objects = BTreeMap::new();
        let mut revision = 0;
        let mut start: Option<String> = None;
        loop {
            let page = storage.list(&self.prefix, start.as_deref(), 5000, revision).await?;
            revision = page.revision;
            for kv in &page.items {
                if let Some(obj) = Self::to_cached(&self.resource, kv) {
                    objects.insert(kv.key.clone(), obj);
                }
            }
            if !page.more {
                break;
            }
            let Some(last) = page.items.last() else { break };
            start = Some(format!("{}\0", last.key));
        }
        Ok((objects, revision))
    }

    async fn watch_from(&self, storage: &EtcdStorage, revision: i64) -> Result<(), StorageError> {
        let mut w = storage.watch(&self.prefix, revision + 1).await?;
        let mut progress = tokio::time::interval(Duration::from_secs(5));
        progress.tick().await;
        loop {
            tokio::select! {
                batch = w.next() => {
                    let Some(batch) = batch? else { return Ok(()) };
                    self.apply(batch);
                }
                _ = progress.tick() => {
                    w.request_progress().await?;
                }
                _ = self.progress_wanted.notified() => {
                    w.request_progress().await?;
                }
            }
        }
    }

    /// Applies a batch of storage changes: updates the store, appends to the
    /// ring and broadcasts, all under one lock so subscriptions never miss or
    /// repeat an event.
    pub fn apply(&self, batch: Vec<WatchChange>) {
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        let mut new_revision = st.revision;
        for change in batch {
            let event = match change {
                WatchChange::Progress { revision } => {
                    if revision > st.revision {
                        st.revision = revision;
                        new_revision = revision;
                        let _ = self.sender.send(Broadcast::Progress(revision));
                    }
                    continue;
                }
                WatchChange::Put { kv, .. } => {
                    let Some(obj) = Self::to_cached(&self.resource, &kv) else {
                        continue;
                    };
                    let prev = st.objects.insert(kv.key.clone(), obj.clone());
                    let t = if prev.is_some() { EventType::Modified } else { EventType::Added };
                    WatchEvent::new(t, obj, prev)
                }
                WatchChange::Delete { key, revision, prev } => {
                    let cached_prev = st.objects.remove(&key);
                    // The deleted object as last seen, at the delete's revision.
                    let last = match (&cached_prev, prev) {
                        (Some(p), _) => restamp(&self.resource, p, revision),
                        (None, Some(kv)) => {
                            let kv = KeyValue { mod_revision: revision, ..kv };
                            match Self::to_cached(&self.resource, &kv) {
                                Some(o) => o,
                                None => continue,
                            }
                        }
                        (None, None) => continue,
                    };
                    WatchEvent::new(EventType::Deleted, last, cached_prev)
                }
            };
            let event = Arc::new(event);
            st.revision = st.revision.max(event.resource_version);
            new_revision = st.revision;
            if st.events.len() >= st.capacity {
                if let Some(old) = st.events.pop_front() {
                    st.window_start = old.resource_version;
                }
            }
            st.events.push_back(event.clone());
            let _ = self.sender.send(Broadcast::Event(event));
        }
        drop(st);
        self.revision_tx.send_if_modified(|r| {
            if new_revision > *r {
                *r = new_revision;
                true
            } else {
                false
            }
        });
    }

    /// Waits until the cache has seen `revision` (bounded), as upstream does
    /// before serving a read at a version newer than the cache.
    pub async fn wait_for_revision(&self, revision: i64, limit: Duration) -> Result<(), CacheError> {
        let mut rx = self.revision_tx.subscribe();
        if *rx.borrow() >= revision {
            return Ok(());
        }
        self.progress_wanted.notify_one();
        let reached = tokio::time::timeout(limit, rx.wait_for(|r| *r >= revision)).await.is_ok_and(|r| r.is_ok());
        if reached {
            Ok(())
        } else {
            Err(CacheError::TooLarge { requested: revision, current: self.revision() })
        }
    }

    pub async fn wait_ready(&self) {
        let mut rx = self.ready_tx.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Subscribes from `after` (exclusive). `None` means "now, with the current
    /// state as synthetic ADDED events".
    pub fn subscribe(&self, after: Option<i64>) -> Result<Subscription, CacheError> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        if !self.is_ready() {
            return Err(CacheError::NotReady(self.resource.group_resource()));
        }
        let receiver = self.sender.subscribe();
        let initial = match after {
            None => st.objects.values().map(|o| Arc::new(WatchEvent::new(EventType::Added, o.clone(), None))).collect(),
            Some(rv) => {
                if rv < st.window_start {
                    return Err(CacheError::TooOld { requested: rv, oldest: st.window_start + 1 });
                }
                if rv > st.revision {
                    return Err(CacheError::TooLarge { requested: rv, current: st.revision });
                }
                st.events.iter().filter(|e| e.resource_version > rv).cloned().collect()
            }
        };
        Ok(Subscription { initial, receiver, revision: st.revision })
    }

    /// A consistent snapshot of the current objects under `prefix` (a
    /// namespace prefix or the whole resource) and the revision it reflects.
    pub fn snapshot(&self, prefix: &str) -> (Vec<Arc<CachedObject>>, i64) {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        let items = st
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (items, st.revision)
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        st.objects.get(key).cloned()
    }

    pub fn len(&self) -> usize {
        self.state.read().map(|s| s.objects.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub fn stamp_resource_version(value: &mut Value, revision: i64) {
    if let Some(Value::Object(m)) = value.get_mut("metadata") {
        m.insert("resourceVersion".into(), Value::String(revision.to_string()));
    } else if let Value::Object(root) = value {
        root.insert("metadata".into(), serde_json::json!({"resourceVersion": revision.to_string()}));
    }
}

fn restamp(resource: &ResourceDescriptor, obj: &CachedObject, revision: i64) -> Arc<CachedObject> {
    let mut value = obj.value();
    stamp_resource_version(&mut value, revision);
    let json = serde_json::to_vec(&value).map(Bytes::from).unwrap_or_else(|_| obj.json.clone());
    let attrs = ObjectAttrs::from_object(resource, &value);
    Arc::new(CachedObject { key: obj.key.clone(), resource_version: revision, json, attrs })
}
