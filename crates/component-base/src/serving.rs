//! The component's own HTTPS endpoint: `/healthz`, `/livez`, `/readyz` and
//! `/metrics`, on `--secure-port` with a certificate from
//! `--tls-cert-file`/`--tls-private-key-file` or a self-signed one, as
//! upstream's scheduler (10259) and controller-manager (10257) serve them.
//! With [`serve_authorized`] every request is first authenticated and
//! authorized through the apiserver (see [`crate::delegated`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use prometheus_client::registry::Registry;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::delegated::{DelegatedAuth, Refusal};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServingFlags {
    /// The address the health and metrics endpoint listens on.
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    pub bind_address: String,
    /// The HTTPS port of the health and metrics endpoint (0 turns it off).
    #[arg(long = "secure-port")]
    pub secure_port: Option<u16>,
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: Option<String>,
    #[arg(long = "tls-private-key-file")]
    pub tls_private_key_file: Option<String>,
    /// Where a self-signed certificate is written when no certificate is given.
    #[arg(long = "cert-dir")]
    pub cert_dir: Option<String>,
}

/// Serves health and metrics to anyone until the process ends. `component` names the self-signed certificate files.
pub async fn serve(
    flags: &ServingFlags,
    default_port: u16,
    component: &str,
    registry: Arc<Registry>,
) -> anyhow::Result<()> {
    serve_authorized(flags, default_port, component, registry, None).await
}

/// Serves health and metrics until the process ends; with `auth`, each request is authenticated and
/// authorized first (upstream's delegated authentication and authorization).
pub async fn serve_authorized(
    flags: &ServingFlags,
    default_port: u16,
    component: &str,
    registry: Arc<Registry>,
    auth: Option<Arc<DelegatedAuth>>,
) -> anyhow::Result<()> {
    let port = flags.secure_port.unwrap_or(default_port);
    if port == 0 {
        futures::future::pending::<()>().await;
        return Ok(());
    }
    let mut tls = tls_config(flags, component)?;
    if let Some(auth) = &auth {
        tls = auth.tls_config(tls).context("client certificate authentication")?;
    }
    let addr: SocketAddr = format!("{}:{port}", flags.bind_address)
        .parse()
        .or_else(|_| format!("[{}]:{port}", flags.bind_address).parse())
        .with_context(|| format!("--bind-address {:?}", flags.bind_address))?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
    tracing::info!(%addr, "serving healthz and metrics over HTTPS");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        let registry = registry.clone();
        let auth = auth.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else { return };
            // rustls hands over only certificates that chain to --client-ca-file.
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(crate::delegated::user_from_certificate)
                .map(Arc::new);
            let service = hyper::service::service_fn(move |req| {
                let (registry, auth, peer) = (registry.clone(), auth.clone(), peer.clone());
                async move {
                    if let Some(auth) = &auth {
                        if let Err(refusal) = auth.check(&req, peer.as_deref()).await {
                            return Ok::<_, Infallible>(refused(refusal));
                        }
                    }
                    Ok::<_, Infallible>(respond(&req, &registry))
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond<B>(req: &Request<B>, registry: &Registry) -> Response<Full<Bytes>> {
    let (code, content_type, body) = match req.uri().path() {
        "/healthz" | "/livez" | "/readyz" | "/healthz/" | "/livez/" | "/readyz/" => {
            (200, "text/plain; charset=utf-8", "ok".to_string())
        }
        "/metrics" => {
            let mut out = String::new();
            match prometheus_client::encoding::text::encode(&mut out, registry) {
                Ok(()) => (200, "text/plain; version=0.0.4; charset=utf-8", out),
                Err(e) => (500, "text/plain; charset=utf-8", format!("encoding metrics: {e}")),
            }
        }
        _ => (404, "text/plain; charset=utf-8", "404 page not found\n".to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

/// Upstream's Status body for a refused request.
fn refused(refusal: Refusal) -> Response<Full<Bytes>> {
    let (code, reason, message) = match refusal {
        Refusal::Unauthorized => (401, "Unauthorized", "Unauthorized".to_string()),
        Refusal::Forbidden(m) => (403, "Forbidden", m),
        Refusal::Error(m) => (500, "InternalError", m),
    };
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": {}, "code": code,
    });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    resp
}

pub fn tls_config(flags: &ServingFlags, component: &str) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (cert_pem, key_pem) = match (&flags.tls_cert_file, &flags.tls_private_key_file) {
        (Some(c), Some(k)) => (
            std::fs::read(c).with_context(|| format!("reading --tls-cert-file {c}"))?,
            std::fs::read(k).with_context(|| format!("reading --tls-private-key-file {k}"))?,
        ),
        (None, None) => self_signed(flags.cert_dir.as_deref(), component)?,
        _ => anyhow::bail!("--tls-cert-file and --tls-private-key-file must be given together"),
    };
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .context("parsing the serving certificate")?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .context("parsing the serving key")?
        .context("no private key in the key file")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("serving certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A self-signed certificate for localhost, kept in `--cert-dir` when one is given.
fn self_signed(cert_dir: Option<&str>, component: &str) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let paths = cert_dir
        .map(|d| (Path::new(d).join(format!("{component}.crt")), Path::new(d).join(format!("{component}.key"))));
    if let Some((c, k)) = &paths {
        if let (Ok(c), Ok(k)) = (std::fs::read(c), std::fs::read(k)) {
            return Ok((c, k));
        }
    }
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .context("generating a self-signed certificate")?;
    let cert = certified.cert.pem().into_bytes();
    let key = certified.signing_key.serialize_pem().into_bytes();
    if let (Some(dir), Some((c, k))) = (cert_dir, &paths) {
        if std::fs::create_dir_all(dir).is_ok() {
            let _ = std::fs::write(c, &cert);
            let _ = std::fs::write(k, &key);
        }
    }
    Ok((cert, key))
}
