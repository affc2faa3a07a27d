//! Coalesced linearizable reads of etcd's current revision.
//!
//! A consistent read from the watch cache needs a revision read from etcd
//! that started after the request arrived. Concurrent requests share one
//! such read: each waits for the first read that began after its arrival, so
//! a burst of gets costs etcd one round trip, not one per get.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};

use super::EtcdStorage;

/// Hands out etcd's current revision to many waiters with few reads.
pub struct RevisionBarrier {
    started: AtomicU64,
    wanted: Notify,
    /// (id of the read that finished, its revision; 0 when it failed).
    done: watch::Sender<(u64, i64)>,
}

impl RevisionBarrier {
    /// Starts the reader task.
    pub fn start(storage: EtcdStorage) -> Arc<Self> {
        let barrier = Arc::new(RevisionBarrier {
            started: AtomicU64::new(0),
            wanted: Notify::new(),
            done: watch::channel((0, 0)).0,
        });
        let b = barrier.clone();
        tokio::spawn(async move {
            loop {
                b.wanted.notified().await;
                let id = b.started.fetch_add(1, Ordering::SeqCst) + 1;
                let revision = storage.linearized_revision().await.unwrap_or(0);
                b.done.send_replace((id, revision));
            }
        });
        barrier
    }

    /// A revision at least as new as any write finished before this call.
    /// `None` when etcd could not be read.
    pub async fn current(&self) -> Option<i64> {
        let mut rx = self.done.subscribe();
        // Any read numbered above what has started so far begins after now.
        let need = self.started.load(Ordering::SeqCst) + 1;
        self.wanted.notify_one();
        let got = rx.wait_for(|(id, _)| *id >= need).await.ok().map(|r| r.1)?;
        (got > 0).then_some(got)
    }
}

/// Coalesces the keys-only freshness checks of concurrent gets: requests that
/// arrive while a transaction is in flight go together in the next one.
/// A reply to one freshness check: the key's mod revision, `Err` when etcd failed.
type Reply = tokio::sync::oneshot::Sender<Result<Option<i64>, ()>>;

pub struct KeyRevisionBatcher {
    tx: tokio::sync::mpsc::Sender<(String, Reply)>,
}

/// etcd's default `--max-txn-ops`.
const MAX_BATCH: usize = 128;

impl KeyRevisionBatcher {
    pub fn start(storage: EtcdStorage) -> Arc<Self> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, Reply)>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                let keys: Vec<String> = batch.iter().map(|(k, _)| k.clone()).collect();
                match storage.mod_revisions(&keys).await {
                    Ok(revs) => {
                        for ((_, reply), rev) in batch.into_iter().zip(revs) {
                            let _ = reply.send(Ok(rev));
                        }
                    }
                    Err(_) => {
                        for (_, reply) in batch {
                            let _ = reply.send(Err(()));
                        }
                    }
                }
            }
        });
        Arc::new(KeyRevisionBatcher { tx })
    }

    /// The key's current mod revision (`Ok(None)`: absent); `Err` when etcd failed.
    pub async fn mod_revision(&self, key: &str) -> Result<Option<i64>, ()> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx.send((key.to_string(), reply)).await.map_err(|_| ())?;
        rx.await.unwrap_or(Err(()))
    }
}
