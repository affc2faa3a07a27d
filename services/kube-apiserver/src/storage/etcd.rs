//! etcd v3 over gRPC: the only place in the project that talks to etcd.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Identity, SortOrder,
    SortTarget, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};

use super::{KeyValue, ListPage, StorageError, WatchChange};

/// How to reach etcd (`--etcd-servers`, `--etcd-cafile`, ...).
#[derive(Clone, Debug, Default)]
pub struct EtcdConfig {
    pub servers: Vec<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub request_timeout: Duration,
}

/// A connected etcd client. Cheap to clone.
///
/// One client per endpoint: tonic's balancer keeps routing to a dead endpoint,
/// so failover is ours. A request that finds its endpoint unavailable (nothing
/// was sent) moves to the next one; the working endpoint stays current.
#[derive(Clone)]
pub struct EtcdStorage {
    clients: Arc<Vec<Client>>,
    current: Arc<AtomicUsize>,
    timeout: Duration,
}

/// Whether an error means the request never reached a server.
fn unreachable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.code() == tonic::Code::Unavailable,
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

fn to_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        mod_revision: kv.mod_revision(),
        create_revision: kv.create_revision(),
    }
}

/// Maps etcd's "compacted" and "future revision" gRPC errors to typed ones.
fn map_etcd_error(e: etcd_client::Error, requested: i64) -> StorageError {
    if let etcd_client::Error::GRpcStatus(status) = &e {
        let msg = status.message();
        if msg.contains("required revision has been compacted") {
            return StorageError::Compacted { requested, compacted: 0 };
        }
        if msg.contains("required revision is a future revision") {
            return StorageError::FutureRevision(requested);
        }
    }
    StorageError::Etcd(e)
}

/// The smallest key greater than every key with this prefix.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStorage {
    /// Connects to the endpoints; the client balances and fails over between them.
    pub async fn connect(config: &EtcdConfig) -> Result<Self, StorageError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(30), Duration::from_secs(10))
            .with_keep_alive_while_idle(true);
        if config.ca_file.is_some() || config.cert_file.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &config.ca_file {
                let pem = std::fs::read(ca).map_err(|e| {
                    StorageError::Etcd(etcd_client::Error::InvalidArgs(format!("reading --etcd-cafile {ca}: {e}")))
                })?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
                let read = |p: &str| {
                    std::fs::read(p)
                        .map_err(|e| StorageError::Etcd(etcd_client::Error::InvalidArgs(format!("reading {p}: {e}"))))
                };
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            options = options.with_tls(tls);
        }
        let mut clients = Vec::new();
        for server in &config.servers {
            clients.push(Client::connect([server.as_str()], Some(options.clone())).await?);
        }
        if clients.is_empty() {
            return Err(StorageError::Etcd(etcd_client::Error::InvalidArgs("--etcd-servers is empty".into())));
        }
        let timeout = if config.request_timeout.is_zero() { Duration::from_secs(15) } else { config.request_timeout };
        Ok(EtcdStorage { clients: Arc::new(clients), current: Arc::new(AtomicUsize::new(0)), timeout })
    }

    /// Runs `op` against the current endpoint, moving on to the next ones
    /// while endpoints are unreachable.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, StorageError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.clients.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let idx = (start + i) % n;
            match tokio::time::timeout(self.timeout, op(self.clients[idx].clone())).await {
                // A request that timed out may have reached etcd: never retried elsewhere.
                Err(_) => return Err(StorageError::Timeout(self.timeout)),
                Ok(Ok(v)) => {
                    if idx != start {
                        self.current.store(idx, Ordering::Relaxed);
                        tracing::warn!(endpoint = idx, "etcd: failed over to another endpoint");
                    }
                    return Ok(v);
                }
                Ok(Err(e)) if unreachable(&e) => last = Some(e),
                Ok(Err(e)) => return Err(StorageError::Etcd(e)),
            }
        }
        Err(StorageError::Etcd(last.unwrap_or_else(|| etcd_client::Error::InvalidArgs("no etcd endpoint".into()))))
    }

    /// The version etcd reports (`3.4.23`).
    pub async fn version(&self) -> Result<String, StorageError> {
        let status = self.call(|mut c| async move { c.status().await }).await?;
        Ok(status.version().to_string())
    }

    /// The store's current revision.
    pub async fn current_revision(&self) -> Result<i64, StorageError> {
        let resp = self
            .call(|c| async move {
                let options = GetOptions::new().with_count_only().with_serializable();
                c.kv_client().get("/", Some(options)).await
            })
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// A linearizable read of the store's current revision.
    pub async fn linearized_revision(&self) -> Result<i64, StorageError> {
        let resp = self
            .call(|c| async move { c.kv_client().get("\0", Some(GetOptions::new().with_count_only())).await })
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        let resp = self.call(|c| async move { c.kv_client().get(key, None).await }).await?;
        Ok(resp.kvs().first().map(to_kv))
    }

    /// The mod revisions of several keys (absent = `None`) in one
    /// linearizable transaction of keys-only reads (at most 128 keys, etcd's
    /// default --max-txn-ops).
    pub async fn mod_revisions(&self, keys: &[String]) -> Result<Vec<Option<i64>>, StorageError> {
        let ops: Vec<TxnOp> =
            keys.iter().map(|k| TxnOp::get(k.as_str(), Some(GetOptions::new().with_keys_only()))).collect();
        let txn = Txn::new().and_then(ops);
        let resp = self
            .call(|c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await?;
        Ok(resp
            .op_responses()
            .into_iter()
            .map(|op| match op {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.mod_revision()),
                _ => None,
            })
            .collect())
    }

    /// Every key under `prefix` with its mod revision, without values, and
    /// the revision the read was served at.
    pub async fn key_revisions(&self, prefix: &str) -> Result<(Vec<(String, i64)>, i64), StorageError> {
        let resp = self
            .call(|c| async move {
                let options = GetOptions::new()
                    .with_range(prefix_end(prefix))
                    .with_keys_only()
                    .with_sort(SortTarget::Key, SortOrder::Ascend);
                c.kv_client().get(prefix, Some(options)).await
            })
            .await?;
        let keys =
            resp.kvs().iter().map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.mod_revision())).collect();
        Ok((keys, resp.header().map(|h| h.revision()).unwrap_or(0)))
    }

    /// Creates the key only if absent; returns the new revision.
    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64, StorageError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let resp = self
            .call(|c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await?;
        if !resp.succeeded() {
            return Err(StorageError::KeyExists(key.to_string()));
        }
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Replaces the key if its mod revision is still `expected`; returns the new revision.
    pub async fn update(&self, key: &str, value: Vec<u8>, expected: i64) -> Result<i64, StorageError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self
            .call(|c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await?;
        if !resp.succeeded() {
            return Err(self.conflict(key, resp.op_responses()));
        }
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Deletes the key if its mod revision is still `expected`; returns the revision of the delete.
    pub async fn delete(&self, key: &str, expected: i64) -> Result<i64, StorageError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::delete(key, None::<DeleteOptions>)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self
            .call(|c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await?;
        if !resp.succeeded() {
            return Err(self.conflict(key, resp.op_responses()));
        }
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    fn conflict(&self, key: &str, ops: Vec<TxnOpResponse>) -> StorageError {
        let current = ops.into_iter().find_map(|op| match op {
            TxnOpResponse::Get(g) => g.kvs().first().map(to_kv),
            _ => None,
        });
        match current {
            None => StorageError::KeyNotFound(key.to_string()),
            current => StorageError::Conflict { key: key.to_string(), current },
        }
    }

    /// Reads keys under `prefix` from `start` (inclusive), at `revision` (0 = latest).
    pub async fn list(
        &self,
        prefix: &str,
        start: Option<&str>,
        limit: i64,
        revision: i64,
    ) -> Result<ListPage, StorageError> {
        let from = start.unwrap_or(prefix);
        let mut options =
            GetOptions::new().with_range(prefix_end(prefix)).with_sort(SortTarget::Key, SortOrder::Ascend);
        if limit > 0 {
            options = options.with_limit(limit);
        }
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let resp = self
            .call(|c| {
                let options = options.clone();
                async move { c.kv_client().get(from, Some(options)).await }
            })
            .await
            .map_err(|e| match e {
                StorageError::Etcd(e) => map_etcd_error(e, revision),
                other => other,
            })?;
        let items: Vec<KeyValue> = resp.kvs().iter().map(to_kv).collect();
        let remaining = (resp.count() - items.len() as i64).max(0);
        Ok(ListPage { revision: resp.header().map(|h| h.revision()).unwrap_or(0), more: resp.more(), remaining, items })
    }

    /// Watches keys under `prefix` from `start_revision` (inclusive), with previous values.
    pub async fn watch(&self, prefix: &str, start_revision: i64) -> Result<EtcdWatch, StorageError> {
        let options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_prev_key()
            .with_progress_notify()
            .with_start_revision(start_revision);
        let stream = self
            .call(|c| {
                let options = options.clone();
                async move { c.watch_client().watch(prefix, Some(options)).await }
            })
            .await?;
        Ok(EtcdWatch { stream, start_revision })
    }
}

/// A live etcd watch on a prefix.
pub struct EtcdWatch {
    stream: etcd_client::WatchStream,
    start_revision: i64,
}

impl EtcdWatch {
    /// Asks etcd to report its progress (a revision) as soon as possible.
    pub async fn request_progress(&mut self) -> Result<(), StorageError> {
        Ok(self.stream.request_progress().await?)
    }

    /// The next batch of changes; `Ok(None)` when the stream ended.
    pub async fn next(&mut self) -> Result<Option<Vec<WatchChange>>, StorageError> {
        loop {
            let Some(resp) = self.stream.message().await? else {
                return Ok(None);
            };
            if resp.compact_revision() > 0 {
                return Err(StorageError::Compacted {
                    requested: self.start_revision,
                    compacted: resp.compact_revision(),
                });
            }
            if resp.canceled() {
                return Err(StorageError::Etcd(etcd_client::Error::WatchError(format!(
                    "watch canceled: {}",
                    resp.cancel_reason()
                ))));
            }
            let header_rev = resp.header().map(|h| h.revision()).unwrap_or(0);
            if resp.events().is_empty() {
                if resp.created() {
                    continue;
                }
                return Ok(Some(vec![WatchChange::Progress { revision: header_rev }]));
            }
            let mut changes = Vec::with_capacity(resp.events().len());
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let prev = ev.prev_kv().map(to_kv);
                match ev.event_type() {
                    EventType::Put => changes.push(WatchChange::Put { kv: to_kv(kv), prev }),
                    EventType::Delete => changes.push(WatchChange::Delete {
                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                        revision: kv.mod_revision(),
                        prev,
                    }),
                }
            }
            return Ok(Some(changes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
