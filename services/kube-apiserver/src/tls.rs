//! The serving certificate: from files, or self-signed into `--cert-dir`.

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Loads or creates the serving certificate and returns a rustls config.
pub fn server_config(
    cert_file: Option<&str>,
    key_file: Option<&str>,
    cert_dir: &str,
    sans: &[String],
    client_ca_file: Option<&str>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (cert_pem, key_pem) = match (cert_file, key_file) {
        (Some(c), Some(k)) => (
            std::fs::read(c).with_context(|| format!("reading --tls-cert-file {c}"))?,
            std::fs::read(k).with_context(|| format!("reading --tls-private-key-file {k}"))?,
        ),
        (None, None) => self_signed(cert_dir, sans)?,
        _ => anyhow::bail!("--tls-cert-file and --tls-private-key-file must be given together"),
    };
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .context("parsing the serving certificate")?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .context("parsing the serving key")?
        .context("no private key in the key file")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca_file {
        // Client certificates are verified against the CA when presented;
        // requests without one go on to token or anonymous authentication.
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading --client-ca-file {path}"))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots.add(cert.context("parsing --client-ca-file")?).context("adding a client CA")?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).context("serving certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Upstream writes `apiserver.crt`/`apiserver.key` into the cert dir and reuses them.
fn self_signed(cert_dir: &str, sans: &[String]) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let cert_path = std::path::Path::new(cert_dir).join("apiserver.crt");
    let key_path = std::path::Path::new(cert_dir).join("apiserver.key");
    if let (Ok(c), Ok(k)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) {
        return Ok((c, k));
    }
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ];
    names.extend(sans.iter().cloned());
    names.dedup();
    let certified = rcgen::generate_simple_self_signed(names).context("generating a self-signed certificate")?;
    let cert = certified.cert.pem().into_bytes();
    let key = certified.signing_key.serialize_pem().into_bytes();
    if std::fs::create_dir_all(cert_dir).is_ok() {
        let _ = std::fs::write(&cert_path, &cert);
        let _ = std::fs::write(&key_path, &key);
    }
    Ok((cert, key))
}
