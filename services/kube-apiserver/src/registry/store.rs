//! The generic store: create, get, list, update, delete and watch for every
//! resource, in one fixed order (system meta → name → prepare → validate →
//! admission → etcd txn → storage errors mapped once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use apimachinery::status::{ApiError, FieldError};
use bytes::Bytes;
use serde_json::{json, Value};

use super::meta::{self, NameRule};
use super::{ResourceDescriptor, ResourceTable};
use crate::cache::{stamp_resource_version, CachedObject, Cacher};
use crate::storage::{EtcdStorage, KeyValue, StorageError};

/// `fieldValidation` query parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other} (supported values: Ignore, Warn, Strict)"
            ))),
        }
    }
}

/// Options shared by writes.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
}

/// `DeleteOptions`, from the body or the query.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub orphan_dependents: Option<bool>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// Which part of the object a write targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Main,
    Status,
    /// A system write that may change spec and status together (binding, finalize).
    All,
}

/// The outcome of a write: the object and warnings for the client.
#[derive(Debug)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    pub created: bool,
}

/// The outcome of a delete.
#[derive(Debug)]
pub struct Deleted {
    pub object: Value,
    /// True when the object is gone; false when deletion is pending (graceful or finalizers).
    pub removed: bool,
}

/// Options of a list.
#[derive(Clone, Default)]
pub struct ListOptions {
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub limit: i64,
    pub continue_token: Option<String>,
    /// Filter run on each candidate object.
    pub filter: Option<super::ObjectFilter>,
}

impl std::fmt::Debug for ListOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListOptions")
            .field("resource_version", &self.resource_version)
            .field("limit", &self.limit)
            .field("continue_token", &self.continue_token)
            .field("filtered", &self.filter.is_some())
            .finish()
    }
}

/// A list result: item JSON bytes in key order, and list metadata.
#[derive(Debug)]
pub struct ListResult {
    pub items: Vec<Arc<CachedObject>>,
    pub resource_version: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

/// Maximum object size stored (etcd's default request limit is 1.5 MiB).
const MAX_OBJECT_BYTES: usize = 1536 * 1024;
const MAX_UPDATE_RETRIES: usize = 16;

/// The generic registry store.
pub struct Store {
    pub storage: EtcdStorage,
    barrier: Arc<crate::storage::RevisionBarrier>,
    key_revisions: Arc<crate::storage::KeyRevisionBatcher>,
    /// Whether etcd's progress notifications can be trusted for consistent
    /// reads from the cache (etcd ≥ 3.4.31 / ≥ 3.5.13; etcd-io/etcd#15220).
    consistent_reads_from_cache: std::sync::atomic::AtomicBool,
    pub root: String,
    pub resources: Arc<ResourceTable>,
    caches: HashMap<(String, String), Arc<Cacher>>,
}

fn map_storage(d: &ResourceDescriptor, name: &str, e: StorageError) -> ApiError {
    match e {
        StorageError::KeyExists(_) => ApiError::already_exists(&d.qualified(), name),
        StorageError::KeyNotFound(_) => ApiError::not_found(&d.qualified(), name),
        StorageError::Conflict { .. } => ApiError::stale_object(&d.qualified(), name),
        StorageError::Compacted { .. } => {
            ApiError::expired("The resourceVersion for the provided list is too old.".to_string())
        }
        StorageError::FutureRevision(rv) => ApiError::timeout(format!("Too large resource version: {rv}")),
        StorageError::Etcd(e) => ApiError::internal(format!("etcd: {e}")),
        StorageError::Timeout(t) => ApiError::timeout(format!("etcd request timed out after {t:?}")),
    }
}

/// Decodes stored bytes, stamping the key's mod revision.
fn decode_kv(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("decoding stored object {}: {e}", kv.key)))?;
    stamp_resource_version(&mut v, kv.mod_revision);
    Ok(v)
}

/// Serializes for storage: without resourceVersion (the mod revision is authoritative).
fn encode_for_storage(obj: &Value) -> Result<Vec<u8>, ApiError> {
    let mut obj = obj.clone();
    if let Some(Value::Object(m)) = obj.get_mut("metadata") {
        m.remove("resourceVersion");
    }
    let bytes = serde_json::to_vec(&obj).map_err(|e| ApiError::internal(e.to_string()))?;
    if bytes.len() > MAX_OBJECT_BYTES {
        return Err(ApiError::request_entity_too_large("etcdserver: request is too large"));
    }
    Ok(bytes)
}

pub fn name_rule(d: &ResourceDescriptor) -> NameRule {
    match (d.group, d.plural) {
        ("", "namespaces") => NameRule::Label,
        ("", "services") => NameRule::Rfc1035Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

/// What `fieldValidation` makes of fields decoding dropped: an error
/// (Strict), warnings (Warn) or nothing (Ignore).
pub fn unknown_field_warnings(unknown: &[String], validation: FieldValidation) -> Result<Vec<String>, ApiError> {
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let msgs = unknown.iter().map(|f| format!("unknown field \"{f}\""));
    match validation {
        FieldValidation::Strict => {
            Err(ApiError::bad_request(format!("strict decoding error: {}", msgs.collect::<Vec<_>>().join(", "))))
        }
        FieldValidation::Warn => Ok(msgs.collect()),
        FieldValidation::Ignore => Ok(Vec::new()),
    }
}

/// The continue token: base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":"<key suffix>"}`.
pub fn encode_continue(revision: i64, start: &str) -> String {
    let body = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start}).to_string();
    base64_encode(body.as_bytes())
}

pub fn decode_continue(token: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token}"));
    let raw = base64_decode(token).ok_or_else(bad)?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(bad());
    }
    let rv = v["rv"].as_i64().ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?.to_string();
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rv, start))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut buf = 0u32;
    let mut bits = 0;
    for c in input.bytes() {
        if c == b'=' {
            break;
        }
        let v = B64.iter().position(|x| *x == c)? as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

impl Store {
    pub fn new(storage: EtcdStorage, root: String, resources: Arc<ResourceTable>) -> Self {
        let caches = resources
            .resources
            .iter()
            .filter(|d| d.is_stored())
            .map(|d| ((d.group.to_string(), d.plural.to_string()), Cacher::new(d.clone(), &root)))
            .collect();
        let barrier = crate::storage::RevisionBarrier::start(storage.clone());
        let key_revisions = crate::storage::KeyRevisionBatcher::start(storage.clone());
        Store {
            storage,
            barrier,
            key_revisions,
            consistent_reads_from_cache: std::sync::atomic::AtomicBool::new(false),
            root,
            resources,
            caches,
        }
    }

    /// Starts one watch cache per resource.
    pub fn start_caches(&self) {
        for c in self.caches.values() {
            tokio::spawn(c.clone().run(self.storage.clone()));
        }
    }

    pub async fn wait_caches_ready(&self) {
        for c in self.caches.values() {
            c.wait_ready().await;
        }
    }

    pub fn caches_ready(&self) -> bool {
        self.caches.values().all(|c| c.is_ready())
    }

    pub fn cache(&self, d: &ResourceDescriptor) -> &Arc<Cacher> {
        // Every descriptor of the table has a cache (built in `new`).
        &self.caches[&(d.group.to_string(), d.plural.to_string())]
    }

    pub fn caches(&self) -> impl Iterator<Item = &Arc<Cacher>> {
        self.caches.values()
    }

    fn key(&self, d: &ResourceDescriptor, ns: &str, name: &str) -> String {
        d.key(&self.root, ns, name)
    }

    /// Reads the current object from etcd.
    pub async fn get(&self, d: &ResourceDescriptor, ns: &str, name: &str) -> Result<Value, ApiError> {
        let key = self.key(d, ns, name);
        match self.storage.get(&key).await.map_err(|e| map_storage(d, name, e))? {
            Some(kv) => decode_kv(&kv),
            None => Err(ApiError::not_found(&d.qualified(), name)),
        }
    }

    /// A consistent get served from the watch cache once it has caught up
    /// with etcd's current revision; falls back to etcd.
    pub async fn get_consistent(&self, d: &ResourceDescriptor, ns: &str, name: &str) -> Result<Bytes, ApiError> {
        let cache = self.cache(d);
        let key = self.key(d, ns, name);
        if cache.is_ready() {
            if self.reads_from_cache() {
                if let Some(rev) = self.barrier.current().await {
                    if cache.wait_for_revision(rev, Duration::from_secs(3)).await.is_ok() {
                        return match cache.get(&key) {
                            Some(o) => Ok(o.json.clone()),
                            None => Err(ApiError::not_found(&d.qualified(), name)),
                        };
                    }
                }
            } else {
                // Without trustworthy progress notifications: ask etcd for the
                // key's mod revision only, and use the cached bytes when they
                // are that version.
                match self.key_revisions.mod_revision(&key).await {
                    Ok(None) => return Err(ApiError::not_found(&d.qualified(), name)),
                    Ok(Some(rev)) => {
                        if let Some(o) = cache.get(&key).filter(|o| o.resource_version == rev) {
                            return Ok(o.json.clone());
                        }
                    }
                    Err(()) => {}
                }
            }
        }
        let v = self.get(d, ns, name).await?;
        Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
    }

    /// Decides from etcd's version whether consistent reads may be served
    /// from the watch cache.
    pub async fn detect_storage_features(&self) {
        let version = self.storage.version().await.unwrap_or_default();
        let ok = progress_notify_is_reliable(&version);
        self.consistent_reads_from_cache.store(ok, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(etcd = %version, consistent_reads_from_cache = ok, "storage features");
    }

    fn reads_from_cache(&self) -> bool {
        self.consistent_reads_from_cache.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A get with `resourceVersion=0`: any cached version will do.
    pub async fn get_cached(&self, d: &ResourceDescriptor, ns: &str, name: &str) -> Result<Bytes, ApiError> {
        let cache = self.cache(d);
        if cache.is_ready() {
            if let Some(o) = cache.get(&self.key(d, ns, name)) {
                return Ok(o.json.clone());
            }
            return Err(ApiError::not_found(&d.qualified(), name));
        }
        let v = self.get(d, ns, name).await?;
        Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
    }

    /// Normalizes, checks unknown fields and applies the generic create path.
    pub async fn create(
        &self,
        d: &ResourceDescriptor,
        ns: &str,
        obj: Value,
        opts: &WriteOptions,
        admit: impl Fn(&Value) -> Result<(), ApiError>,
    ) -> Result<Written, ApiError> {
        let (mut obj, mut warnings) = self.normalize(d, obj, opts.field_validation)?;
        check_type_meta(d, &obj)?;
        if d.namespaced {
            let body_ns = meta::namespace(&obj).to_string();
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta::metadata_mut(&mut obj).insert("namespace".into(), Value::String(ns.to_string()));
        } else {
            meta::metadata_mut(&mut obj).remove("namespace");
        }
        meta::generate_name(&mut obj);
        meta::fill_on_create(&mut obj, d.tracks_generation);
        if d.subresources.status && !d.strategy.keeps_status_on_create() {
            if let Value::Object(m) = &mut obj {
                m.remove("status");
            }
        }
        d.strategy.prepare_for_create(&mut obj);
        let name = meta::name(&obj).to_string();
        let mut errs = meta::validate_object_meta(&obj, d.namespaced, name_rule(d));
        errs.extend(d.strategy.validate(&obj));
        if !errs.is_empty() {
            return Err(ApiError::invalid(d.group, d.kind, &name, &errs));
        }
        warnings.extend(d.strategy.warnings(&obj));
        admit(&obj)?;
        let key = self.key(d, ns, &name);
        let bytes = encode_for_storage(&obj)?;
        if opts.dry_run {
            // Upstream checks existence for dry-run creates too.
            if self.storage.get(&key).await.map_err(|e| map_storage(d, &name, e))?.is_some() {
                return Err(ApiError::already_exists(&d.qualified(), &name));
            }
            return Ok(Written { object: obj, warnings, created: true });
        }
        let rev = self.storage.create(&key, bytes).await.map_err(|e| map_storage(d, &name, e))?;
        self.cache(d).note_written(rev);
        stamp_resource_version(&mut obj, rev);
        Ok(Written { object: obj, warnings, created: true })
    }

    /// Decodes into the kind's type; reports unknown fields per `fieldValidation`.
    pub fn normalize(
        &self,
        d: &ResourceDescriptor,
        obj: Value,
        validation: FieldValidation,
    ) -> Result<(Value, Vec<String>), ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        let n = d.strategy.normalize(obj)?;
        let warnings = unknown_field_warnings(&n.unknown_fields, validation)?;
        Ok((n.object, warnings))
    }

    /// The generic update: reads the current object, asks `mutate` for the new
    /// one, runs the strategy and writes with a compare on the mod revision,
    /// retrying on conflicts unless the caller pinned a resourceVersion.
    #[allow(clippy::too_many_arguments)]
    pub async fn update<F>(
        &self,
        d: &ResourceDescriptor,
        ns: &str,
        name: &str,
        target: Target,
        opts: &WriteOptions,
        mut mutate: F,
        admit: impl Fn(&Value, Option<&Value>) -> Result<(), ApiError>,
    ) -> Result<Written, ApiError>
    where
        F: FnMut(Option<&Value>) -> Result<Value, ApiError>,
    {
        let key = self.key(d, ns, name);
        for _ in 0..MAX_UPDATE_RETRIES {
            let current = self.storage.get(&key).await.map_err(|e| map_storage(d, name, e))?;
            let Some(current) = current else {
                if target == Target::Main && d.strategy.allow_create_on_update() {
                    let new = mutate(None)?;
                    return self.create(d, ns, new, opts, |o| admit(o, None)).await;
                }
                return Err(ApiError::not_found(&d.qualified(), name));
            };
            let old = decode_kv(&current)?;
            let input = mutate(Some(&old))?;
            let pinned = meta::resource_version(&input).map(String::from);
            if let Some(rv) = &pinned {
                if rv != &current.mod_revision.to_string() {
                    return Err(ApiError::stale_object(&d.qualified(), name));
                }
            } else if !d.strategy.allow_unconditional_update() {
                return Err(ApiError::invalid(
                    d.group,
                    d.kind,
                    name,
                    &[FieldError::invalid("metadata.resourceVersion", "", "must be specified for an update")],
                ));
            }
            let (mut new, mut warnings) = self.normalize(d, input, opts.field_validation)?;
            check_type_meta(d, &new)?;
            if meta::name(&new) != name
                || (d.namespaced && !meta::namespace(&new).is_empty() && meta::namespace(&new) != ns)
            {
                if meta::name(&new).is_empty() {
                    meta::metadata_mut(&mut new).insert("name".into(), Value::String(name.to_string()));
                } else {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        meta::name(&new)
                    )));
                }
            }
            if d.namespaced {
                meta::metadata_mut(&mut new).insert("namespace".into(), Value::String(ns.to_string()));
            }
            match target {
                Target::Main if d.subresources.status => {
                    set_or_remove(&mut new, "status", old.get("status"));
                }
                Target::Status => {
                    // Writes to /status change only status (and may touch labels/annotations).
                    let mut merged = old.clone();
                    set_or_remove(&mut merged, "status", new.get("status"));
                    for k in ["labels", "annotations"] {
                        let v = new["metadata"].get(k).cloned();
                        match v {
                            Some(v) => meta::metadata_mut(&mut merged).insert(k.into(), v),
                            None => meta::metadata_mut(&mut merged).remove(k),
                        };
                    }
                    new = merged;
                }
                Target::Main | Target::All => {}
            }
            meta::carry_on_update(&mut new, &old, d.tracks_generation);
            if target == Target::Main {
                d.strategy.prepare_for_update(&mut new, &old);
            }
            let mut errs = meta::validate_object_meta(&new, d.namespaced, name_rule(d));
            errs.extend(meta::validate_object_meta_update(&new, &old));
            errs.extend(d.strategy.validate(&new));
            errs.extend(d.strategy.validate_update(&new, &old));
            if meta::is_terminating(&old) {
                let old_f = meta::finalizers(&old);
                for f in meta::finalizers(&new) {
                    if !old_f.contains(&f) {
                        errs.push(FieldError::forbidden(
                            "metadata.finalizers",
                            format!("no new finalizers can be added if the object is being deleted, found new finalizers [\"{f}\"]"),
                        ));
                    }
                }
            }
            if !errs.is_empty() {
                return Err(ApiError::invalid(d.group, d.kind, name, &errs));
            }
            warnings.extend(d.strategy.warnings(&new));
            admit(&new, Some(&old))?;
            stamp_resource_version(&mut new, current.mod_revision);
            if new == old {
                // Nothing changed: no write, the current version is the answer.
                return Ok(Written { object: old, warnings, created: false });
            }
            if opts.dry_run {
                return Ok(Written { object: new, warnings, created: false });
            }
            // A terminating object whose last finalizer is gone is removed.
            if meta::is_terminating(&new)
                && meta::finalizers(&new).is_empty()
                && !d.strategy.pending_finalization(&new)
                && new["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) == 0
            {
                match self.storage.delete(&key, current.mod_revision).await {
                    Ok(rev) => {
                        self.cache(d).note_written(rev);
                        stamp_resource_version(&mut new, rev);
                        return Ok(Written { object: new, warnings, created: false });
                    }
                    Err(StorageError::Conflict { .. }) if pinned.is_none() => continue,
                    Err(e) => return Err(map_storage(d, name, e)),
                }
            }
            let bytes = encode_for_storage(&new)?;
            match self.storage.update(&key, bytes, current.mod_revision).await {
                Ok(rev) => {
                    self.cache(d).note_written(rev);
                    stamp_resource_version(&mut new, rev);
                    return Ok(Written { object: new, warnings, created: false });
                }
                Err(StorageError::Conflict { .. }) if pinned.is_none() => continue,
                Err(e) => return Err(map_storage(d, name, e)),
            }
        }
        Err(ApiError::conflict(&d.qualified(), name, "too many conflicting updates; please try again"))
    }

    /// Deletes, gracefully when the kind asks for it or finalizers remain.
    pub async fn delete(
        &self,
        d: &ResourceDescriptor,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let key = self.key(d, ns, name);
        for _ in 0..MAX_UPDATE_RETRIES {
            let Some(current) = self.storage.get(&key).await.map_err(|e| map_storage(d, name, e))? else {
                return Err(ApiError::not_found(&d.qualified(), name));
            };
            let mut obj = decode_kv(&current)?;
            if let Some(uid) = &opts.precondition_uid {
                let actual = obj["metadata"]["uid"].as_str().unwrap_or_default();
                if uid != actual {
                    return Err(ApiError::conflict(
                        &d.qualified(),
                        name,
                        &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_resource_version {
                if rv != &current.mod_revision.to_string() {
                    return Err(ApiError::conflict(
                        &d.qualified(),
                        name,
                        &format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                            current.mod_revision
                        ),
                    ));
                }
            }
            let grace = d.strategy.grace_period(&obj, opts.grace_period_seconds).max(0);
            let mut finalizers = meta::finalizers(&obj);
            let policy = opts.propagation_policy.as_deref().or(match opts.orphan_dependents {
                Some(true) => Some("Orphan"),
                _ => None,
            });
            let mut changed_finalizers = false;
            match policy {
                Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => {
                    finalizers.push("orphan".into());
                    changed_finalizers = true;
                }
                Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                    finalizers.push("foregroundDeletion".into());
                    changed_finalizers = true;
                }
                Some("Orphan" | "Foreground" | "Background") | None => {}
                Some(other) => {
                    return Err(ApiError::invalid(
                        d.group,
                        d.kind,
                        name,
                        &[FieldError::not_supported(
                            "propagationPolicy",
                            other,
                            &["Foreground", "Background", "Orphan"],
                        )],
                    ))
                }
            }
            let pending = !finalizers.is_empty() || d.strategy.pending_finalization(&obj);
            if pending || grace > 0 {
                let already = meta::is_terminating(&obj);
                let old_grace = obj["metadata"]["deletionGracePeriodSeconds"].as_i64();
                let shorten = already && old_grace.is_some_and(|g| grace < g);
                if already && !shorten && !changed_finalizers {
                    if grace == 0 && !pending {
                        // fall through to removal below
                    } else {
                        return Ok(Deleted { object: obj, removed: false });
                    }
                } else {
                    let m = meta::metadata_mut(&mut obj);
                    if !already || shorten {
                        m.insert("deletionTimestamp".into(), Value::String(meta::rfc3339_after(grace)));
                        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    }
                    if finalizers.is_empty() {
                        m.remove("finalizers");
                    } else {
                        m.insert("finalizers".into(), json!(finalizers));
                    }
                    d.strategy.mark_terminating(&mut obj);
                    if opts.dry_run {
                        return Ok(Deleted { object: obj, removed: false });
                    }
                    let bytes = encode_for_storage(&obj)?;
                    match self.storage.update(&key, bytes, current.mod_revision).await {
                        Ok(rev) => {
                            self.cache(d).note_written(rev);
                            stamp_resource_version(&mut obj, rev);
                            return Ok(Deleted { object: obj, removed: false });
                        }
                        Err(StorageError::Conflict { .. }) => continue,
                        Err(e) => return Err(map_storage(d, name, e)),
                    }
                }
            }
            if opts.dry_run {
                return Ok(Deleted { object: obj, removed: true });
            }
            match self.storage.delete(&key, current.mod_revision).await {
                Ok(rev) => {
                    self.cache(d).note_written(rev);
                    stamp_resource_version(&mut obj, rev);
                    return Ok(Deleted { object: obj, removed: true });
                }
                Err(StorageError::Conflict { .. }) => continue,
                Err(e) => return Err(map_storage(d, name, e)),
            }
        }
        Err(ApiError::conflict(&d.qualified(), name, "too many conflicting updates; please try again"))
    }

    /// Lists objects, from the watch cache when the requested consistency
    /// allows it, else from etcd page by page.
    pub async fn list(
        &self,
        d: &ResourceDescriptor,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let prefix = d.key_prefix(&self.root, ns);
        let cache = self.cache(d);
        let rv = opts.resource_version.as_deref().unwrap_or("");
        let rv_match = opts.resource_version_match.as_deref().unwrap_or("");
        let requested: Option<i64> = if rv.is_empty() {
            None
        } else {
            Some(rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?)
        };
        match rv_match {
            "" | "NotOlderThan" | "Exact" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\""
            )))
            }
        }
        if !rv_match.is_empty() && requested.is_none() {
            return Err(ApiError::bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided"));
        }
        if opts.continue_token.is_some() && (requested.is_some_and(|r| r != 0) || !rv_match.is_empty()) {
            return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
        }
        if let Some(token) = &opts.continue_token {
            let (revision, start) = decode_continue(token)?;
            return self.list_etcd(d, &prefix, Some(format!("{prefix}{start}")), revision, opts).await;
        }
        if rv_match == "Exact" {
            return self.list_etcd(d, &prefix, None, requested.unwrap_or(0), opts).await;
        }
        // Served from the cache: RV=0 (any), RV=N not older than N, and
        // consistent reads once the cache has caught up with etcd.
        if cache.is_ready() {
            let wanted = match requested {
                Some(n) => Some(n),
                None if self.reads_from_cache() => self.barrier.current().await,
                None => None,
            };
            if let Some(wanted) = wanted {
                if cache.wait_for_revision(wanted, Duration::from_secs(3)).await.is_ok() {
                    let (items, revision) = cache.snapshot(&prefix);
                    return Ok(page_from_snapshot(items, revision, &prefix, opts));
                }
            } else if requested.is_none() {
                // Consistent without progress notifications: the snapshot is
                // served when etcd's keys and mod revisions, read after the
                // request arrived, are exactly the snapshot's.
                for _ in 0..3 {
                    let (items, _) = cache.snapshot(&prefix);
                    let Ok((keys, revision)) = self.storage.key_revisions(&prefix).await else {
                        break;
                    };
                    let same = keys.len() == items.len()
                        && keys.iter().zip(&items).all(|((k, r), o)| *k == o.key && *r == o.resource_version);
                    if same {
                        return Ok(page_from_snapshot(items, revision, &prefix, opts));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        self.list_etcd(d, &prefix, None, 0, opts).await
    }

    async fn list_etcd(
        &self,
        d: &ResourceDescriptor,
        prefix: &str,
        start: Option<String>,
        revision: i64,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let limit = opts.limit.max(0);
        let mut items = Vec::new();
        let mut revision = revision;
        let mut start = start;
        let page_size = if limit > 0 { limit.max(50) } else { 5000 };
        loop {
            let page = self
                .storage
                .list(prefix, start.as_deref(), if limit > 0 { page_size + 1 } else { page_size }, revision)
                .await
                .map_err(|e| match e {
                    StorageError::Compacted { .. } => ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ),
                    e => map_storage(d, "", e),
                })?;
            // A continued list reports the revision it is pinned to.
            if revision == 0 {
                revision = page.revision;
            }
            let n = page.items.len();
            for (i, kv) in page.items.iter().enumerate() {
                if limit > 0 && items.len() as i64 == limit {
                    // One more matching candidate exists: hand out a continue token.
                    let last: &Arc<CachedObject> = &items[items.len() - 1];
                    let suffix = last.key.strip_prefix(prefix).unwrap_or(&last.key).to_string();
                    let remaining = (page.remaining + (n - i) as i64).max(1);
                    let token = encode_continue(revision, &format!("{suffix}\0"));
                    let remaining = if opts.filter.is_some() { None } else { Some(remaining) };
                    return Ok(ListResult {
                        items,
                        resource_version: revision,
                        continue_token: Some(token),
                        remaining,
                    });
                }
                let Some(obj) = Cacher::to_cached(d, kv) else {
                    continue;
                };
                if opts.filter.as_ref().is_none_or(|f| f(&obj.attrs)) {
                    items.push(obj);
                }
            }
            if !page.more {
                break;
            }
            match page.items.last() {
                Some(last) => start = Some(format!("{}\0", last.key)),
                None => break,
            }
        }
        Ok(ListResult { items, resource_version: revision, continue_token: None, remaining: None })
    }
}

/// etcd fixed its requested progress notifications (etcd-io/etcd#15220 and
/// the follow-up for watches without events) in 3.4.31 and 3.5.13.
pub fn progress_notify_is_reliable(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    match (major, minor) {
        (3, 4) => patch >= 31,
        (3, 5) => patch >= 13,
        (3, m) => m >= 6,
        (m, _) => m > 3,
    }
}

fn page_from_snapshot(items: Vec<Arc<CachedObject>>, revision: i64, prefix: &str, opts: &ListOptions) -> ListResult {
    let filtered: Vec<Arc<CachedObject>> = match &opts.filter {
        Some(f) => items.into_iter().filter(|o| f(&o.attrs)).collect(),
        None => items,
    };
    // RV=0 lists ignore the limit, as upstream's cache does.
    let limit = if opts.resource_version.as_deref() == Some("0") { 0 } else { opts.limit };
    if limit > 0 && filtered.len() as i64 > limit {
        let total = filtered.len() as i64;
        let page: Vec<Arc<CachedObject>> = filtered.into_iter().take(limit as usize).collect();
        let last = &page[page.len() - 1];
        let suffix = last.key.strip_prefix(prefix).unwrap_or(&last.key).to_string();
        let token = encode_continue(revision, &format!("{suffix}\0"));
        let remaining = if opts.filter.is_some() { None } else { Some(total - limit) };
        return ListResult { items: page, resource_version: revision, continue_token: Some(token), remaining };
    }
    ListResult { items: filtered, resource_version: revision, continue_token: None, remaining: None }
}

fn set_or_remove(obj: &mut Value, field: &str, v: Option<&Value>) {
    if let Value::Object(m) = obj {
        match v {
            Some(v) => m.insert(field.into(), v.clone()),
            None => m.remove(field),
        };
    }
}

/// The body's apiVersion/kind, when given, must be the resource's.
fn check_type_meta(d: &ResourceDescriptor, obj: &Value) -> Result<(), ApiError> {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    if !kind.is_empty() && kind != d.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            d.kind
        )));
    }
    if !api_version.is_empty() && api_version != d.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            d.api_version()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistent_reads_from_cache_need_a_fixed_etcd() {
        assert!(!progress_notify_is_reliable("3.4.23"));
        assert!(progress_notify_is_reliable("3.4.31"));
        assert!(!progress_notify_is_reliable("3.5.12"));
        assert!(progress_notify_is_reliable("3.5.13"));
        assert!(progress_notify_is_reliable("3.6.0"));
        assert!(!progress_notify_is_reliable(""));
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "ns/name\0");
        assert_eq!(decode_continue(&t).unwrap(), (42, "ns/name\0".to_string()));
        assert!(decode_continue("not-a-token!").is_err());
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
    }
}
