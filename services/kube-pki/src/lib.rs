//! A cluster's PKI and kubeconfigs, in kubeadm's layout under one directory
//! (`/etc/kubernetes` by default).
//!
//! [`init`] writes three CAs (cluster, etcd, front proxy), the apiserver's serving and client
//! certificates, etcd's serving certificate, the service-account signing key pair, one client
//! kubeconfig per component with the upstream identities, and the first node's kubelet serving
//! certificate. A rerun keeps every CA and key and every certificate that still fits the options;
//! it writes only what is missing or no longer fits, and says so in its [`Report`].
//! [`node`] adds another node's kubelet credentials; [`user_kubeconfig`] makes a user's kubeconfig.
//!
//! Every key is ECDSA P-256, stored as PKCS#8 (`PRIVATE KEY`) with mode 0600; service-account
//! tokens are therefore signed with ES256 and `sa.pub` is a `PUBLIC KEY` (SubjectPublicKeyInfo) PEM.

#![forbid(unsafe_code)]

pub mod cert;
pub mod cli;
mod fs;
pub mod kubeconfig;
pub mod options;
pub mod paths;
mod pki;
pub mod report;

use std::path::PathBuf;

pub use options::{Cidr, Endpoint, InitOptions, NodeOptions, UserOptions};
pub use pki::{init, node, user_kubeconfig};
pub use report::{Action, Entry, Report};

/// Everything that can stop [`init`], [`node`] or [`user_kubeconfig`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option is malformed; nothing was written.
    #[error("invalid {option}: {reason}")]
    InvalidOption { option: &'static str, reason: String },
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key file exists but cannot be read as a private key. Keys are never replaced.
    #[error("reading private key {}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    /// A CA on disk cannot be used as is. CAs are never replaced, since every certificate
    /// and kubeconfig handed out depends on them.
    #[error("CA {}: {reason}", path.display())]
    Ca { path: PathBuf, reason: String },
    /// The CA needed to sign is not there (`node` and `kubeconfig` need a prior `init`),
    /// or only its certificate is (an external CA, whose leaves this tool cannot issue).
    #[error("{} is missing; run `kube-pki init` first, and keep the CA's key beside its certificate", path.display())]
    MissingCa { path: PathBuf },
    #[error("kubeconfig {}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kubeconfig::KubeconfigError,
    },
    /// `node` or `kubeconfig` got no server URL and found no admin.conf to take it from.
    #[error("no API server URL: pass --server, or run `kube-pki init` to write {}", path.display())]
    NoServer { path: PathBuf },
    #[error("issuing {what}")]
    Sign {
        what: String,
        #[source]
        source: rcgen::Error,
    },
}
