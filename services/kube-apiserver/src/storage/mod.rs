//! The storage interface over etcd: transactional create/update/delete keyed by
//! mod revision, paginated range reads and prefix watches.
//!
//! Values are the objects' JSON bytes; `metadata.resourceVersion` is never
//! trusted from the stored bytes, it is the key's mod revision.

mod barrier;
mod etcd;

pub use barrier::{KeyRevisionBatcher, RevisionBarrier};
pub use etcd::{EtcdConfig, EtcdStorage};

use bytes::Bytes;

/// Storage failures, mapped once to API errors by the registry.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("key {0} already exists")]
    KeyExists(String),
    #[error("key {0} not found")]
    KeyNotFound(String),
    /// The compare on mod revision failed; carries the current value, if any.
    #[error("precondition failed for key {key}")]
    Conflict { key: String, current: Option<KeyValue> },
    /// The requested revision has been compacted.
    #[error("the requested revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    #[error("the requested revision {0} is in the future")]
    FutureRevision(i64),
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd timed out after {0:?}")]
    Timeout(std::time::Duration),
}

/// One stored key.
#[derive(Clone, Debug)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub mod_revision: i64,
    pub create_revision: i64,
}

/// A page of a range read.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<KeyValue>,
    /// The revision the read was served at.
    pub revision: i64,
    /// Whether more keys follow the last one returned.
    pub more: bool,
    /// How many keys remain after this page (for `remainingItemCount`).
    pub remaining: i64,
}

/// One change seen by a watch.
#[derive(Clone, Debug)]
pub enum WatchChange {
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    Delete {
        key: String,
        revision: i64,
        prev: Option<KeyValue>,
    },
    /// No change, but the store has reached this revision (progress notify).
    Progress {
        revision: i64,
    },
}
