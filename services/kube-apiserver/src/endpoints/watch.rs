//! HTTP watches served from the watch cache: a chunked stream of
//! `{"type","object"}` lines, bookmarks, and ERROR events for expired versions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use apimachinery::status::ApiError;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::handlers::{list_filter, partial_metadata, table_for};
use super::negotiation::Output;
use super::request::RequestInfo;
use super::{ApiServer, Body};
use crate::cache::{encode_line, Broadcast, CacheError, CachedObject, EventType, WatchEvent};
use crate::registry::{Conversion, ResourceDescriptor, Served};

type Filter = crate::registry::ObjectFilter;

const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);
/// Most events written to a watcher in one chunk.
const MAX_BATCH: usize = 256;

/// How one watcher wants its events shaped.
#[derive(Clone)]
struct Shape {
    output: Output,
    include: String,
    d: Arc<ResourceDescriptor>,
    /// Set when the client watches another version than the stored one.
    conversion: Option<Conversion>,
}

impl Shape {
    fn line(&self, event_type: &str, ev: Option<&WatchEvent>, obj: &CachedObject, first: &mut bool) -> Bytes {
        match self.output {
            Output::Table | Output::PartialMetadata => {
                let value = obj.value();
                let shaped = if self.output == Output::Table {
                    let t = table_for(&self.d, &[&value], &self.include, *first);
                    *first = false;
                    t
                } else {
                    partial_metadata(&value)
                };
                let bytes = serde_json::to_vec(&shaped).unwrap_or_default();
                encode_line(event_type, &bytes)
            }
            _ => match (ev, self.conversion) {
                (_, Some(c)) => {
                    let converted = (c.from_storage)(&obj.value());
                    encode_line(event_type, &serde_json::to_vec(&converted).unwrap_or_default())
                }
                // The shared, encoded-once line.
                (Some(ev), None) if ev.event_type.as_str() == event_type => ev.json_line(),
                _ => encode_line(event_type, &obj.json),
            },
        }
    }
}

pub async fn serve(
    server: &Arc<ApiServer>,
    served: &Served,
    info: &RequestInfo,
    query: &HashMap<String, String>,
    output: Output,
) -> Result<Response<Body>, ApiError> {
    // Events come from the storage version's cache; bookmarks name the served version.
    let d = &served.storage;
    let filter = list_filter(d, query, info.name.as_deref())?;
    let namespace = info.namespace.clone().filter(|_| d.namespaced);
    let rv = query.get("resourceVersion").map(String::as_str).unwrap_or("");
    let send_initial = match query.get("sendInitialEvents").map(String::as_str) {
        Some("true") => true,
        Some("false") | None => false,
        Some(other) => return Err(ApiError::bad_request(format!("invalid sendInitialEvents: {other}"))),
    };
    let bookmarks = query.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    if send_initial && !bookmarks {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            &[apimachinery::status::FieldError::forbidden(
                "allowWatchBookmarks",
                "allowWatchBookmarks must be set to true when sendInitialEvents is true",
            )],
        ));
    }
    let timeout = match query.get("timeoutSeconds").map(String::as_str) {
        Some(t) if !t.is_empty() => Duration::from_secs(
            t.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t}")))?,
        ),
        // Upstream picks a random timeout in [min-request-timeout, 2x).
        _ => Duration::from_secs(1800 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 7),
    };
    let after: Option<i64> = match rv {
        "" | "0" => None,
        s => Some(s.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?),
    };
    let shape = Shape {
        output,
        include: query.get("includeObject").cloned().unwrap_or_else(|| "Metadata".into()),
        d: d.clone(),
        conversion: served.conversion(),
    };
    let cache = server.store.cache(d).clone();
    if !cache.is_ready() {
        tokio::time::timeout(Duration::from_secs(5), cache.wait_ready())
            .await
            .map_err(|_| ApiError::too_many_requests("the watch cache is not ready yet", 1))?;
    }
    // sendInitialEvents with a version: state as of that version (we serve
    // the current state, which is not older), then the end bookmark.
    let subscribe_from = if send_initial { None } else { after };
    let (tx, rx) = mpsc::channel::<Vec<Bytes>>(16);
    let mut response = Response::new(Body::Stream(rx, Default::default()));
    *response.status_mut() = StatusCode::OK;
    let ct = match output {
        Output::Table | Output::PartialMetadata => "application/json",
        _ => "application/json",
    };
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    response.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    let sub = match subscribe_from {
        Some(rv) if rv > cache.revision() => {
            // A version the cache has not seen yet: wait for it (bounded).
            cache.wait_for_revision(rv, Duration::from_secs(3)).await.map_err(|e| ApiError::timeout(e.to_string()))?;
            cache.subscribe(Some(rv))
        }
        other => cache.subscribe(other),
    };
    let sub = match sub {
        Ok(sub) => sub,
        Err(CacheError::TooOld { requested, .. }) => {
            // Older than the window: etcd may still have the history.
            let storage = server.store.storage.clone();
            let prefix = d.key_prefix(&server.store.root, namespace.as_deref());
            let d2 = d.clone();
            tokio::spawn(async move {
                if let Err(e) =
                    stream_from_etcd(storage, d2, prefix, requested, filter, shape, tx.clone(), timeout).await
                {
                    let status = e.to_status();
                    let line = encode_line("ERROR", &serde_json::to_vec(&status).unwrap_or_default());
                    let _ = tx.send(vec![line]).await;
                }
            });
            return Ok(response);
        }
        Err(e @ CacheError::TooLarge { .. }) => return Err(ApiError::timeout(e.to_string())),
        Err(e @ CacheError::NotReady(_)) => return Err(ApiError::too_many_requests(e.to_string(), 1)),
    };
    let prefix = d.key_prefix(&server.store.root, namespace.as_deref());
    let d2 = served.served().clone();
    tokio::spawn(async move {
        let mut w = Watcher { tx, filter, prefix, shape, bookmarks, first: true, last_rv: sub.revision, d: d2 };
        w.run(sub.initial, sub.receiver, send_initial, timeout).await;
    });
    Ok(response)
}

/// What a watcher sees of a change, given whether the object matches its
/// selectors now and did before: upstream turns a change into or out of the
/// selection into ADDED or DELETED.
fn visible_type(t: EventType, now: bool, before: bool) -> Option<&'static str> {
    match t {
        EventType::Added if now => Some("ADDED"),
        EventType::Modified if now && before => Some("MODIFIED"),
        EventType::Modified if now => Some("ADDED"),
        EventType::Modified if before => Some("DELETED"),
        EventType::Deleted if now || before => Some("DELETED"),
        _ => None,
    }
}

struct Watcher {
    tx: mpsc::Sender<Vec<Bytes>>,
    filter: Option<Filter>,
    prefix: String,
    shape: Shape,
    bookmarks: bool,
    first: bool,
    last_rv: i64,
    d: Arc<ResourceDescriptor>,
}

impl Watcher {
    fn matches(&self, obj: &CachedObject) -> bool {
        obj.key.starts_with(&self.prefix) && self.filter.as_ref().is_none_or(|f| f(&obj.attrs))
    }

    /// This watcher's line for an event, if its filter lets it through.
    fn project(&mut self, ev: &WatchEvent) -> Option<Bytes> {
        let now = self.matches(&ev.object);
        let before = ev.prev.as_ref().is_some_and(|p| self.matches(p));
        let t = visible_type(ev.event_type, now, before)?;
        let mut first = self.first;
        let line = self.shape.line(t, Some(ev), &ev.object, &mut first);
        self.first = first;
        Some(line)
    }

    fn bookmark(&self, rv: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.d.kind, "apiVersion": self.d.api_version(), "metadata": meta});
        encode_line("BOOKMARK", &serde_json::to_vec(&obj).unwrap_or_default())
    }

    async fn send(&self, b: Bytes) -> bool {
        self.tx.send(vec![b]).await.is_ok()
    }

    async fn send_batch(&self, batch: Vec<Bytes>) -> bool {
        self.tx.send(batch).await.is_ok()
    }

    async fn run(
        &mut self,
        initial: Vec<Arc<WatchEvent>>,
        mut rx: broadcast::Receiver<Broadcast>,
        send_initial: bool,
        timeout: Duration,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        for ev in &initial {
            if let Some(line) = self.project(ev) {
                if !self.send(line).await {
                    return;
                }
            }
            self.last_rv = self.last_rv.max(ev.resource_version);
        }
        if send_initial && !self.send(self.bookmark(self.last_rv, true)).await {
            return;
        }
        let mut bookmark_tick = tokio::time::interval(BOOKMARK_INTERVAL);
        bookmark_tick.tick().await;
        let mut progress_rv = self.last_rv;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    if self.bookmarks {
                        let _ = self.send(self.bookmark(progress_rv.max(self.last_rv), false)).await;
                    }
                    return;
                }
                _ = self.tx.closed() => return,
                _ = bookmark_tick.tick() => {
                    if self.bookmarks && !self.send(self.bookmark(progress_rv.max(self.last_rv), false)).await {
                        return;
                    }
                }
                msg = rx.recv() => {
                    // Everything already queued goes out as one chunk: one
                    // write (and one TLS record) instead of one per event.
                    let mut batch: Vec<Bytes> = Vec::new();
                    let mut next = Some(msg);
                    while let Some(msg) = next.take() {
                        match msg {
                            Ok(Broadcast::Event(ev)) => {
                                self.last_rv = self.last_rv.max(ev.resource_version);
                                if let Some(line) = self.project(&ev) {
                                    batch.push(line);
                                }
                            }
                            Ok(Broadcast::Progress(rv)) => progress_rv = rv,
                            // Too slow or the cache was rebuilt: end; the client resumes from its last version.
                            Ok(Broadcast::Reset)
                            | Err(broadcast::error::RecvError::Lagged(_))
                            | Err(broadcast::error::RecvError::Closed) => {
                                if !batch.is_empty() {
                                    let _ = self.send_batch(batch).await;
                                }
                                return;
                            }
                        }
                        if batch.len() < MAX_BATCH {
                            next = match rx.try_recv() {
                                Ok(m) => Some(Ok(m)),
                                Err(broadcast::error::TryRecvError::Empty) => None,
                                Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(broadcast::error::RecvError::Lagged(n))),
                                Err(broadcast::error::TryRecvError::Closed) => Some(Err(broadcast::error::RecvError::Closed)),
                            };
                        }
                    }
                    if !batch.is_empty() && !self.send_batch(batch).await {
                        return;
                    }
                }
            }
        }
    }
}

/// Serves a watch from a version older than the cache window straight from
/// etcd, which keeps history until compaction.
#[allow(clippy::too_many_arguments)]
async fn stream_from_etcd(
    storage: crate::storage::EtcdStorage,
    d: Arc<ResourceDescriptor>,
    prefix: String,
    after: i64,
    filter: Option<Filter>,
    shape: Shape,
    tx: mpsc::Sender<Vec<Bytes>>,
    timeout: Duration,
) -> Result<(), ApiError> {
    use crate::cache::Cacher;
    use crate::storage::{KeyValue, StorageError, WatchChange};
    let mut w = storage.watch(&prefix, after + 1).await.map_err(|e| ApiError::internal(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = true;
    let matches = |o: &CachedObject| filter.as_ref().is_none_or(|f| f(&o.attrs));
    loop {
        let batch = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
            _ = tx.closed() => return Ok(()),
            b = w.next() => b,
        };
        let batch = match batch {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(()),
            Err(StorageError::Compacted { .. }) => {
                return Err(ApiError::expired(format!("too old resource version: {after}")));
            }
            Err(e) => return Err(ApiError::internal(e.to_string())),
        };
        for change in batch {
            let (t, obj, prev) = match change {
                WatchChange::Progress { .. } => continue,
                WatchChange::Put { kv, prev } => {
                    let Some(obj) = Cacher::to_cached(&d, &kv) else {
                        continue;
                    };
                    let prev = prev.and_then(|p| Cacher::to_cached(&d, &p));
                    (if prev.is_some() { EventType::Modified } else { EventType::Added }, obj, prev)
                }
                WatchChange::Delete { revision, prev, .. } => {
                    let Some(p) = prev else { continue };
                    let kv = KeyValue { mod_revision: revision, ..p.clone() };
                    let Some(obj) = Cacher::to_cached(&d, &kv) else {
                        continue;
                    };
                    (EventType::Deleted, obj, Cacher::to_cached(&d, &p))
                }
            };
            let now = matches(&obj);
            let before = prev.as_ref().is_some_and(|p| matches(p));
            let Some(name) = visible_type(t, now, before) else { continue };
            let line = shape.line(name, None, &obj, &mut first);
            if tx.send(vec![line]).await.is_err() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_into_and_out_of_a_selection_become_added_and_deleted() {
        assert_eq!(visible_type(EventType::Modified, true, false), Some("ADDED"));
        assert_eq!(visible_type(EventType::Modified, false, true), Some("DELETED"));
        assert_eq!(visible_type(EventType::Modified, true, true), Some("MODIFIED"));
        assert_eq!(visible_type(EventType::Modified, false, false), None);
        assert_eq!(visible_type(EventType::Deleted, false, true), Some("DELETED"));
        assert_eq!(visible_type(EventType::Added, false, false), None);
    }
}
