//! kube-apiserver: the Kubernetes API over etcd.
//!
//! TLS → route → decode → admission → strategy → storage → encode. One generic
//! path serves every resource; see [`registry`] and [`endpoints`].
#![forbid(unsafe_code)]

pub mod admission;
pub mod allocator;
pub mod authn;
pub mod authz;
pub mod bootstrap;
pub mod cache;
pub mod endpoints;
pub mod escalation;
pub mod metrics;
pub mod metrics_api;
pub mod options;
pub mod podsecurity;
pub mod quota;
pub mod registry;
pub mod resources;
pub mod reviews;
pub mod serviceaccount;
pub mod storage;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::endpoints::{ApiServer, ServerInfo};
use crate::options::Options;
use crate::registry::store::Store;
use crate::registry::ResourceTable;
use crate::storage::{EtcdConfig, EtcdStorage};

/// The address other components should use to reach this server.
fn advertise_address(o: &Options) -> String {
    if let Some(a) = &o.advertise_address {
        return a.clone();
    }
    if o.bind_address != "0.0.0.0" && o.bind_address != "::" {
        return o.bind_address.clone();
    }
    // The address of the default route's interface, found without sending anything.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("10.255.255.255:1")?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

/// Parses a Go-style duration (`24h`, `90m`, `3600s`, `1h30m`) into seconds.
pub fn parse_duration_secs(s: &str) -> anyhow::Result<i64> {
    let mut total = 0i64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().with_context(|| format!("invalid duration {s:?}"))?;
        num.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => anyhow::bail!("invalid duration {s:?}"),
        };
    }
    if !num.is_empty() {
        anyhow::bail!("invalid duration {s:?}: missing unit");
    }
    Ok(total)
}

/// Connects to etcd, starts the watch caches, bootstraps, and serves until the process ends.
pub async fn run(options: Options) -> anyhow::Result<()> {
    // Flags are checked before anything is started.
    let admission = admission::AdmissionChain::new(
        &options.enable_admission_plugins,
        &options.disable_admission_plugins,
        &options.admission_config(),
    )?;
    tracing::info!(plugins = ?admission.names(), "admission chain");
    authz::parse_modes(&options.authorization_mode)?;
    let etcd = EtcdStorage::connect(&EtcdConfig {
        servers: options.etcd_servers.clone(),
        ca_file: options.etcd_cafile.clone(),
        cert_file: options.etcd_certfile.clone(),
        key_file: options.etcd_keyfile.clone(),
        request_timeout: Duration::from_secs(15),
    })
    .await
    .with_context(|| format!("connecting to etcd at {:?}", options.etcd_servers))?;
    // Wait for etcd to answer before serving.
    let mut tries = 0;
    loop {
        match etcd.current_revision().await {
            Ok(_) => break,
            Err(e) if tries < 60 => {
                tries += 1;
                tracing::warn!(error = %e, "etcd not reachable yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).context("etcd did not become reachable"),
        }
    }
    let root = options.etcd_prefix.trim_end_matches('/').to_string();
    let resources = Arc::new(ResourceTable::new(resources::builtin()));
    let store = Arc::new(Store::new(etcd.clone(), root.clone(), resources.clone()));
    store.detect_storage_features().await;
    store.start_caches();
    tokio::time::timeout(Duration::from_secs(60), store.wait_caches_ready())
        .await
        .context("watch caches did not become ready")?;
    let advertise = advertise_address(&options);
    let allocator =
        allocator::Allocator::new(etcd, root, &options.service_cluster_ip_range, &options.service_node_port_range)
            .map_err(|e| anyhow::anyhow!(e))?;
    let mut sans = vec![advertise.clone(), allocator.first_ip().to_string()];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        sans.push(h.trim().to_string());
    }
    let authenticator = authn::Authenticator::new(options.token_auth_file.as_deref(), options.anonymous_auth)
        .context("--token-auth-file")?;
    let issuers = options.service_account_issuer.clone();
    let audiences = if options.api_audiences.is_empty() { issuers.clone() } else { options.api_audiences.clone() };
    let mut verify_keys = options.service_account_key_file.clone();
    if verify_keys.is_empty() {
        verify_keys.extend(options.service_account_signing_key_file.clone());
    }
    let sa_verifier = serviceaccount::TokenVerifier::from_files(&verify_keys, issuers.clone(), audiences)
        .context("--service-account-key-file")?;
    let sa_signer = match &options.service_account_signing_key_file {
        Some(path) => Some(
            serviceaccount::TokenSigner::from_file(path, issuers.first().map(String::as_str).unwrap_or_default())
                .context("--service-account-signing-key-file")?,
        ),
        None => None,
    };
    let max_token_expiration = parse_duration_secs(&options.service_account_max_token_expiration)
        .context("--service-account-max-token-expiration")?;
    let modes = authz::parse_modes(&options.authorization_mode)?;
    let authorizer = authz::Authorizer::new(modes, store.clone());
    let kubelet = endpoints::streaming::KubeletClient::new(
        options.kubelet_client_certificate.as_deref(),
        options.kubelet_client_key.as_deref(),
        options.kubelet_certificate_authority.as_deref(),
        options.kubelet_preferred_address_types.clone(),
    )
    .context("kubelet client (--kubelet-client-certificate, --kubelet-certificate-authority)")?;
    let resource_metrics = metrics_api::MetricsApi::new().context("resource metrics")?;
    let server = Arc::new(ApiServer {
        authenticator,
        sa_signer,
        sa_verifier,
        max_token_expiration,
        authorizer,
        store,
        resources,
        openapi: Default::default(),
        metrics: Default::default(),
        allocator: Some(allocator),
        admission,
        config: ServerInfo {
            advertise_address: advertise.clone(),
            secure_port: options.secure_port,
            max_request_body_bytes: options.max_request_bytes,
        },
        kubelet,
        resource_metrics,
    });
    bootstrap::ensure(&server).await.context("bootstrapping system objects")?;
    bootstrap::ensure_rbac_policy(&server).await.context("bootstrapping the RBAC policy")?;
    let tls = tls::server_config(
        options.tls_cert_file.as_deref(),
        options.tls_private_key_file.as_deref(),
        &options.cert_dir,
        &sans,
        options.client_ca_file.as_deref(),
    )?;
    let addr: SocketAddr = format!("{}:{}", options.bind_address, options.secure_port)
        .parse()
        .or_else(|_| format!("[{}]:{}", options.bind_address, options.secure_port).parse())
        .with_context(|| format!("invalid --bind-address {}", options.bind_address))?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
    tracing::info!(%addr, advertise = %advertise, "serving securely");
    serve(listener, tls, server).await
}

/// Accepts TLS connections and serves HTTP/1.1 and HTTP/2 on them.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    server: Arc<ApiServer>,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            // The verified client certificate names the user for every request on this connection.
            let cert_user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(authn::user_from_certificate)
                .map(Arc::new);
            let svc = hyper::service::service_fn(move |req| {
                let server = server.clone();
                let cert_user = cert_user.clone();
                async move { Ok::<_, std::convert::Infallible>(endpoints::serve(server, req, cert_user).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // With upgrades: exec, attach and port-forward switch protocols on this connection.
            if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
