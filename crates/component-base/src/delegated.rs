//! Delegated authentication and authorization of a component's HTTPS
//! endpoint, as upstream's `DelegatingAuthenticationOptions` and
//! `DelegatingAuthorizationOptions` do it for kube-scheduler and
//! kube-controller-manager:
//!
//! - a client certificate verified against `--client-ca-file` names the user
//!   (CN) and its groups (O);
//! - else a bearer token is reviewed by the apiserver (TokenReview through
//!   `--authentication-kubeconfig`, cached for
//!   `--authentication-token-webhook-cache-ttl`); a token the apiserver does
//!   not know is 401;
//! - else the caller is `system:anonymous` in `system:unauthenticated`.
//!
//! Paths in `--authorization-always-allow-paths` (a trailing `*` matches a
//! prefix) and members of `system:masters` are always allowed; anything else
//! is authorized by a SubjectAccessReview of the non-resource path and the
//! lower-cased method through `--authorization-kubeconfig`, cached for
//! `--authorization-webhook-cache-(un)authorized-ttl`. Both kubeconfigs
//! default to the component's `--kubeconfig`.
//!
//! The pieces are public for the kubelet's API, which authenticates the same
//! way (with its own anonymous and token-webhook switches) and authorizes by
//! resource attributes instead: [`with_client_ca`], [`user_from_certificate`],
//! [`TokenAuthenticator`], [`AccessReviewer`], [`bearer_token`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use rustls::pki_types::CertificateDer;

use crate::client::ClientFlags;

/// Entries each cache holds at most (expired ones are dropped first, then all).
const CACHE_LIMIT: usize = 4096;

/// The group that is allowed everything without asking the apiserver (upstream's default `AlwaysAllowGroups`).
const PRIVILEGED_GROUP: &str = "system:masters";

/// Upstream's delegated authentication and authorization flags.
#[derive(clap::Args, Debug, Clone)]
pub struct DelegatedAuthFlags {
    /// A kubeconfig with the right to create tokenreviews.authentication.k8s.io (default: --kubeconfig).
    #[arg(long = "authentication-kubeconfig")]
    pub authentication_kubeconfig: Option<PathBuf>,
    /// A kubeconfig with the right to create subjectaccessreviews.authorization.k8s.io (default: --kubeconfig).
    #[arg(long = "authorization-kubeconfig")]
    pub authorization_kubeconfig: Option<PathBuf>,
    /// Client certificates signed by one of these authorities are authenticated as their CN and O.
    #[arg(long = "client-ca-file")]
    pub client_ca_file: Option<PathBuf>,
    /// Accepted for compatibility: requests are not authenticated by proxy headers here.
    #[arg(long = "requestheader-client-ca-file")]
    pub requestheader_client_ca_file: Option<String>,
    /// Paths served without authorization; a trailing `*` matches a prefix.
    #[arg(long = "authorization-always-allow-paths", value_delimiter = ',', default_value = "/healthz,/readyz,/livez")]
    pub always_allow_paths: Vec<String>,
    /// How long a token's review is kept.
    #[arg(long = "authentication-token-webhook-cache-ttl", default_value = "10s", value_parser = crate::duration_flag)]
    pub token_cache_ttl: Duration,
    /// How long an allowed request's review is kept.
    #[arg(long = "authorization-webhook-cache-authorized-ttl", default_value = "10s", value_parser = crate::duration_flag)]
    pub authorized_ttl: Duration,
    /// How long a denied request's review is kept.
    #[arg(long = "authorization-webhook-cache-unauthorized-ttl", default_value = "10s", value_parser = crate::duration_flag)]
    pub unauthorized_ttl: Duration,
    /// Accepted for compatibility: the client CA is only read from --client-ca-file.
    #[arg(long = "authentication-skip-lookup", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub authentication_skip_lookup: Option<bool>,
    /// Accepted for compatibility: the client CA is only read from --client-ca-file.
    #[arg(long = "authentication-tolerate-lookup-failure", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub authentication_tolerate_lookup_failure: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    ClientCa(#[from] ClientCaError),
    #[error("{flag} {path}: {source}")]
    Kubeconfig { flag: &'static str, path: String, source: anyhow::Error },
}

/// Why the client CA could not be set up on the serving configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientCaError {
    #[error("reading --client-ca-file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("no certificate in --client-ca-file {0}")]
    NoCa(String),
    #[error("--client-ca-file {path}: {source}")]
    Ca { path: String, source: rustls::Error },
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// The serving configuration with client certificates verified against `ca_file` and optional
/// (bearer-token and anonymous callers still connect).
pub fn with_client_ca(tls: &rustls::ServerConfig, ca_file: &Path) -> Result<Arc<rustls::ServerConfig>, ClientCaError> {
    let path = ca_file.display().to_string();
    let pem = std::fs::read(ca_file).map_err(|source| ClientCaError::Read { path: path.clone(), source })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|source| ClientCaError::Read { path: path.clone(), source })?;
        roots.add(cert).map_err(|source| ClientCaError::Ca { path: path.clone(), source })?;
    }
    if roots.is_empty() {
        return Err(ClientCaError::NoCa(path));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(tls.cert_resolver.clone());
    config.alpn_protocols = tls.alpn_protocols.clone();
    Ok(Arc::new(config))
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("{kind} to the apiserver: {source}")]
    Api { kind: &'static str, source: kube::Error },
    #[error("the TokenReview came back without a user")]
    NoUser,
}

/// Who is calling.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    pub fn anonymous() -> User {
        User { name: "system:anonymous".into(), groups: vec!["system:unauthenticated".into()], ..Default::default() }
    }
}

/// The user a verified client certificate names: CN, and each O as a group (no implied groups).
pub fn certificate_subject(cert: &CertificateDer<'_>) -> Option<User> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok()).map(String::from).collect();
    Some(User { name, groups, ..Default::default() })
}

/// The user a verified client certificate names: CN, each O as a group, and `system:authenticated`.
pub fn user_from_certificate(cert: &CertificateDer<'_>) -> Option<User> {
    let mut user = certificate_subject(cert)?;
    if !user.groups.iter().any(|g| g == "system:authenticated") {
        user.groups.push("system:authenticated".into());
    }
    Some(user)
}

/// Why a request is not served.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401.
    Unauthorized,
    /// 403 with upstream's message.
    Forbidden(String),
    /// 500: the apiserver could not be asked.
    Error(String),
}

struct Cache<V> {
    entries: Mutex<HashMap<Vec<u8>, (Instant, V)>>,
}

impl<V: Clone> Cache<V> {
    fn new() -> Self {
        Cache { entries: Mutex::new(HashMap::new()) }
    }

    fn get(&self, key: &[u8]) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|(until, _)| *until > Instant::now()).map(|(_, v)| v.clone())
    }

    fn put(&self, key: Vec<u8>, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_LIMIT {
            let now = Instant::now();
            entries.retain(|_, (until, _)| *until > now);
            // Mostly live entries: start over rather than scan the whole map again a few inserts later.
            if entries.len() >= CACHE_LIMIT * 3 / 4 {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now() + ttl, value));
    }
}

/// Authenticates a request by its verified client certificate, else its bearer token (TokenReview through
/// the apiserver, cached), else as `system:anonymous` when that is allowed.
pub struct TokenAuthenticator {
    /// None: bearer tokens are not reviewed (and the caller is anonymous or refused).
    client: Option<kube::Client>,
    anonymous: bool,
    success_ttl: Duration,
    failure_ttl: Duration,
    /// A token's user, or None for a token the apiserver refused.
    tokens: Cache<Option<User>>,
}

impl TokenAuthenticator {
    /// `client` reviews bearer tokens (None: they are ignored); a token's user is kept for `success_ttl`, a
    /// refused token for `failure_ttl` (zero: not kept); `anonymous` lets callers with neither certificate
    /// nor token through as `system:anonymous`.
    pub fn new(
        client: Option<kube::Client>,
        success_ttl: Duration,
        failure_ttl: Duration,
        anonymous: bool,
    ) -> TokenAuthenticator {
        TokenAuthenticator { client, anonymous, success_ttl, failure_ttl, tokens: Cache::new() }
    }

    /// The caller of a request; `peer` is the user of its verified client certificate. A token the
    /// apiserver does not know is 401 even when anonymous callers are allowed.
    pub async fn authenticate(&self, headers: &http::HeaderMap, peer: Option<&User>) -> Result<User, Refusal> {
        if let Some(user) = peer {
            return Ok(user.clone());
        }
        if let Some(client) = &self.client {
            if let Some(token) = bearer_token(headers) {
                return match self.review_token(client, token).await {
                    Ok(Some(user)) => Ok(user),
                    Ok(None) => Err(Refusal::Unauthorized),
                    Err(e) => {
                        tracing::warn!("authenticating a request: {e}");
                        Err(Refusal::Unauthorized)
                    }
                };
            }
        }
        if self.anonymous {
            return Ok(User::anonymous());
        }
        Err(Refusal::Unauthorized)
    }

    /// The token's user by TokenReview (cached), or None when the apiserver does not know it.
    async fn review_token(&self, client: &kube::Client, token: &str) -> Result<Option<User>, ReviewError> {
        // Keyed by the token's digest: tokens are not kept in memory longer than needed.
        let key = ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref().to_vec();
        if let Some(user) = self.tokens.get(&key) {
            return Ok(user);
        }
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_string()), audiences: None },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|source| ReviewError::Api { kind: "TokenReview", source })?;
        let user = match answer.status.filter(|s| s.authenticated == Some(true)) {
            None => None,
            Some(status) => {
                let info = status.user.ok_or(ReviewError::NoUser)?;
                let user = User {
                    name: info.username.unwrap_or_default(),
                    uid: info.uid.unwrap_or_default(),
                    groups: info.groups.unwrap_or_default(),
                    extra: info.extra.unwrap_or_default(),
                };
                if user.name.is_empty() {
                    return Err(ReviewError::NoUser);
                }
                Some(user)
            }
        };
        let ttl = if user.is_some() { self.success_ttl } else { self.failure_ttl };
        self.tokens.put(key, user.clone(), ttl);
        Ok(user)
    }
}

/// What a SubjectAccessReview asks about.
#[derive(Clone, Copy, Debug)]
pub enum Access<'a> {
    Resource(&'a ResourceAttributes),
    NonResource(&'a NonResourceAttributes),
}

/// Asks the apiserver whether a user may do something (SubjectAccessReview), caching its answers.
pub struct AccessReviewer {
    client: kube::Client,
    authorized_ttl: Duration,
    unauthorized_ttl: Duration,
    decisions: Cache<bool>,
}

impl AccessReviewer {
    /// Allowed answers are kept for `authorized_ttl`, denied ones for `unauthorized_ttl` (zero: not kept).
    pub fn new(client: kube::Client, authorized_ttl: Duration, unauthorized_ttl: Duration) -> AccessReviewer {
        AccessReviewer { client, authorized_ttl, unauthorized_ttl, decisions: Cache::new() }
    }

    /// Whether `user` may do `access`, by SubjectAccessReview (cached).
    pub async fn allowed(&self, user: &User, access: Access<'_>) -> Result<bool, ReviewError> {
        let (resource, non_resource) = match access {
            Access::Resource(a) => (Some(a.clone()), None),
            Access::NonResource(a) => (None, Some(a.clone())),
        };
        let key = serde_json::to_vec(&(user, &resource, &non_resource)).unwrap_or_default();
        if let Some(allowed) = self.decisions.get(&key) {
            return Ok(allowed);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                groups: Some(user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                resource_attributes: resource,
                non_resource_attributes: non_resource,
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|source| ReviewError::Api { kind: "SubjectAccessReview", source })?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        let ttl = if allowed { self.authorized_ttl } else { self.unauthorized_ttl };
        self.decisions.put(key, allowed, ttl);
        Ok(allowed)
    }
}

/// The endpoint's authenticator and authorizer.
pub struct DelegatedAuth {
    authn: TokenAuthenticator,
    authz: AccessReviewer,
    client_ca_file: Option<PathBuf>,
    always_allow_paths: Vec<String>,
}

/// The client a review flag names, or the component's own `default` without it.
async fn client_from(
    flag: &'static str,
    path: Option<&PathBuf>,
    client: &ClientFlags,
    default: &kube::Client,
) -> Result<kube::Client, SetupError> {
    let Some(p) = path else { return Ok(default.clone()) };
    let flags = ClientFlags { kubeconfig: Some(p.clone()), master: None, ..client.clone() };
    flags.client().await.map_err(|source| SetupError::Kubeconfig { flag, path: p.display().to_string(), source })
}

impl DelegatedAuth {
    /// Builds the review clients from the flags; without its kubeconfig flag each is the
    /// component's own `own_client` (built from `client`), not a second connection pool.
    pub async fn new(
        flags: &DelegatedAuthFlags,
        client: &ClientFlags,
        own_client: &kube::Client,
    ) -> Result<DelegatedAuth, SetupError> {
        let authn_path = flags.authentication_kubeconfig.as_ref();
        let authn = client_from("--authentication-kubeconfig", authn_path, client, own_client).await?;
        let authz_path = flags.authorization_kubeconfig.as_ref();
        let authz = client_from("--authorization-kubeconfig", authz_path, client, own_client).await?;
        Ok(DelegatedAuth::with_clients(flags, authn, authz))
    }

    pub fn with_clients(flags: &DelegatedAuthFlags, authn: kube::Client, authz: kube::Client) -> DelegatedAuth {
        DelegatedAuth {
            // Refused tokens are kept as long as accepted ones, as upstream's delegated authenticator does.
            authn: TokenAuthenticator::new(Some(authn), flags.token_cache_ttl, flags.token_cache_ttl, true),
            authz: AccessReviewer::new(authz, flags.authorized_ttl, flags.unauthorized_ttl),
            client_ca_file: flags.client_ca_file.clone(),
            always_allow_paths: flags.always_allow_paths.iter().filter(|p| !p.is_empty()).cloned().collect(),
        }
    }

    /// The serving configuration with client certificates verified against `--client-ca-file` and optional
    /// (bearer-token and anonymous callers still connect); `tls` unchanged without a client CA.
    pub fn tls_config(&self, tls: Arc<rustls::ServerConfig>) -> Result<Arc<rustls::ServerConfig>, SetupError> {
        match &self.client_ca_file {
            Some(ca_file) => Ok(with_client_ca(&tls, ca_file)?),
            None => Ok(tls),
        }
    }

    /// Authenticates then authorizes a request; `peer` is the user of its verified client certificate.
    pub async fn check<B>(&self, req: &http::Request<B>, peer: Option<&User>) -> Result<User, Refusal> {
        let user = self.authn.authenticate(req.headers(), peer).await?;
        self.authorize(&user, req.method(), req.uri().path()).await?;
        Ok(user)
    }

    fn always_allowed(&self, path: &str) -> bool {
        self.always_allow_paths.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => p == path,
        })
    }

    async fn authorize(&self, user: &User, method: &http::Method, path: &str) -> Result<(), Refusal> {
        if self.always_allowed(path) || user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            return Ok(());
        }
        let verb = method.as_str().to_ascii_lowercase();
        let attributes = NonResourceAttributes { path: Some(path.to_string()), verb: Some(verb.clone()) };
        match self.authz.allowed(user, Access::NonResource(&attributes)).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::debug!(user = %user.name, verb, path, "Forbidden");
                Err(Refusal::Forbidden(format!("forbidden: User {:?} cannot {verb} path {path:?}", user.name)))
            }
            Err(e) => {
                tracing::error!(user = %user.name, verb, path, "authorization error: {e}");
                Err(Refusal::Error(format!("Authorization error (user={}, verb={verb}, path={path})", user.name)))
            }
        }
    }
}

/// `Authorization: Bearer <token>`, when present and not empty.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        auth: DelegatedAuthFlags,
    }

    #[test]
    fn defaults_are_upstreams() {
        let f = Flags::try_parse_from(["x"]).unwrap().auth;
        assert_eq!(f.always_allow_paths, ["/healthz", "/readyz", "/livez"]);
        assert_eq!(
            (f.token_cache_ttl, f.authorized_ttl, f.unauthorized_ttl),
            (Duration::from_secs(10), Duration::from_secs(10), Duration::from_secs(10))
        );
        let f = Flags::try_parse_from(["x", "--authorization-always-allow-paths=/healthz,/debug/*"]).unwrap().auth;
        assert_eq!(f.always_allow_paths, ["/healthz", "/debug/*"]);
    }

    #[test]
    fn bearer_tokens_are_parsed() {
        let mut h = http::HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer  abc "));
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
        h.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn certificates_name_the_user_and_its_groups() {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "devs");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let subject = certificate_subject(cert.der()).unwrap();
        assert_eq!((subject.name.as_str(), subject.groups.as_slice()), ("alice", ["devs".to_string()].as_slice()));
        let user = user_from_certificate(cert.der()).unwrap();
        assert_eq!(user.groups, ["devs", "system:authenticated"]);
    }

    #[test]
    fn the_cache_expires_and_keeps_nothing_for_a_zero_ttl() {
        let cache = Cache::new();
        cache.put(b"a".to_vec(), 1, Duration::from_secs(60));
        cache.put(b"b".to_vec(), 2, Duration::ZERO);
        cache.put(b"c".to_vec(), 3, Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!((cache.get(b"a"), cache.get(b"b"), cache.get(b"c")), (Some(1), None, None));
    }
}
