//! What every component except the apiserver shares, in the spirit of
//! upstream's `k8s.io/component-base` and client-go's tools: a client built
//! from `--kubeconfig`, leader election on a `coordination.k8s.io/v1` Lease,
//! the HTTPS health and metrics endpoint, core/v1 event recording, and
//! logging set up from `--v`.
#![forbid(unsafe_code)]

pub mod client;
pub mod delegated;
pub mod events;
pub mod leader_election;
pub mod serving;

pub use client::ClientFlags;
pub use delegated::{DelegatedAuth, DelegatedAuthFlags};
pub use leader_election::{LeaderElectionFlags, LeaderElector};

/// Go-duration flag values (`15s`, `1m30s`) for clap.
pub fn duration_flag(s: &str) -> Result<std::time::Duration, String> {
    apimachinery::duration::parse(s).map_err(|e| e.to_string())
}

/// Sets up `tracing` from `RUST_LOG`, or else from upstream's `--v` verbosity.
pub fn init_logging(verbosity: u8) {
    let level = match verbosity {
        0 | 1 => "info",
        2..=4 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},hyper=info,rustls=info,tower=info")));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
