//! Authentication and authorization of the kubelet's HTTPS API, as upstream's
//! kubelet does it ("Kubelet authentication/authorization"):
//!
//! - a client certificate verified against `--client-ca-file` names the user
//!   (CN) and its groups (O);
//! - else a bearer token, when `--authentication-token-webhook` is on, is
//!   reviewed by the apiserver (TokenReview, cached for
//!   `--authentication-token-webhook-cache-ttl`); an invalid token is 401
//!   even when anonymous requests are allowed;
//! - else the caller is `system:anonymous` in `system:unauthenticated` when
//!   `--anonymous-auth` allows it, or gets 401.
//!
//! The user is then authorized (`--authorization-mode=Webhook`) by a
//! SubjectAccessReview on `nodes/<subresource>` named after this node, with
//! upstream's mapping of paths to subresources (fine-grained authorization
//! on, as in 1.33): `/stats*` → stats, `/metrics*` → metrics, `/logs*` → log,
//! `/checkpoint*` → checkpoint, `/pods*` and `/runningpods*` → pods then
//! proxy, `/healthz*` → healthz then proxy, `/configz` → configz then proxy,
//! anything else → proxy. Decisions are cached for
//! `--authorization-webhook-cache-(un)authorized-ttl`.
//!
//! The certificate, token and SubjectAccessReview machinery is component-base's
//! (`delegated`), shared with the scheduler's and controller-manager's
//! endpoints; what is here is the kubelet's own: its settings, its switches and
//! its mapping of paths to node subresources.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use component_base::delegated::{Access, AccessReviewer, TokenAuthenticator};
use k8s_openapi::api::authorization::v1::ResourceAttributes;
use serde::Deserialize;

/// The user a verified client certificate names: CN, each O as a group, and
/// `system:authenticated`, as upstream's delegating authenticator adds.
pub use component_base::delegated::{user_from_certificate, Refusal, User};

use crate::options::Options;

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("reading {what} {path}: {source}")]
    Read { what: &'static str, path: String, source: std::io::Error },
    #[error("parsing the KubeletConfiguration {path}: {source}")]
    Config { path: String, source: serde_yaml::Error },
    #[error("{field} {value:?}: {reason}")]
    Invalid { field: &'static str, value: String, reason: String },
    #[error(transparent)]
    ClientCa(#[from] component_base::delegated::ClientCaError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorizationMode {
    AlwaysAllow,
    Webhook,
}

/// The resolved settings: flags over the `--config` file over the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    pub anonymous: bool,
    pub client_ca_file: Option<String>,
    pub token_webhook: bool,
    pub token_cache_ttl: Duration,
    pub mode: AuthorizationMode,
    pub authorized_ttl: Duration,
    pub unauthorized_ttl: Duration,
}

/// The `authentication` and `authorization` parts of a KubeletConfiguration
/// (kubelet.config.k8s.io/v1beta1); its other fields are ignored here.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", default)]
struct ConfigFile {
    authentication: ConfigAuthentication,
    authorization: ConfigAuthorization,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", default)]
struct ConfigAuthentication {
    x509: ConfigX509,
    webhook: ConfigTokenWebhook,
    anonymous: ConfigAnonymous,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", default)]
struct ConfigX509 {
    #[serde(rename = "clientCAFile")]
    client_ca_file: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", default)]
struct ConfigTokenWebhook {
    enabled: Option<bool>,
    #[serde(rename = "cacheTTL")]
    cache_ttl: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct ConfigAnonymous {
    enabled: Option<bool>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", default)]
struct ConfigAuthorization {
    mode: Option<String>,
    webhook: ConfigAuthzWebhook,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", default)]
struct ConfigAuthzWebhook {
    #[serde(rename = "cacheAuthorizedTTL")]
    cache_authorized_ttl: Option<String>,
    #[serde(rename = "cacheUnauthorizedTTL")]
    cache_unauthorized_ttl: Option<String>,
}

fn duration(field: &'static str, value: Option<&str>) -> Result<Option<Duration>, AuthSetupError> {
    value
        .map(|v| {
            apimachinery::duration::parse(v).map_err(|e| AuthSetupError::Invalid {
                field,
                value: v.to_string(),
                reason: e.to_string(),
            })
        })
        .transpose()
}

fn mode(field: &'static str, value: &str) -> Result<AuthorizationMode, AuthSetupError> {
    match value {
        "AlwaysAllow" => Ok(AuthorizationMode::AlwaysAllow),
        "Webhook" => Ok(AuthorizationMode::Webhook),
        _ => Err(AuthSetupError::Invalid {
            field,
            value: value.to_string(),
            reason: "must be AlwaysAllow or Webhook".into(),
        }),
    }
}

impl AuthSettings {
    /// Reads the `--config` file (when given) and applies the flags over it.
    pub fn from_options(opts: &Options) -> Result<AuthSettings, AuthSetupError> {
        let file = match &opts.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| AuthSetupError::Read {
                    what: "--config",
                    path: path.display().to_string(),
                    source,
                })?;
                Some((path.clone(), text))
            }
            None => None,
        };
        Self::resolve(opts, file)
    }

    fn resolve(opts: &Options, file: Option<(PathBuf, String)>) -> Result<AuthSettings, AuthSetupError> {
        let has_file = file.is_some();
        let config: ConfigFile = match file {
            Some((path, text)) if !text.trim().is_empty() => serde_yaml::from_str(&text)
                .map_err(|source| AuthSetupError::Config { path: path.display().to_string(), source })?,
            _ => ConfigFile::default(),
        };
        let (authn, authz) = (&config.authentication, &config.authorization);
        let client_ca_file = opts.client_ca_file.clone().or_else(|| authn.x509.client_ca_file.clone());
        // Upstream's flag defaults are open (anonymous, no token webhook, AlwaysAllow); its
        // config file's defaults are closed. A kubelet given a client CA gets the closed ones.
        let secure = has_file || client_ca_file.is_some();
        let file_mode = authz.mode.as_deref().map(|m| mode("authorization.mode", m)).transpose()?;
        let flag_mode = opts.authorization_mode.as_deref().map(|m| mode("--authorization-mode", m)).transpose()?;
        Ok(AuthSettings {
            anonymous: opts.anonymous_auth.or(authn.anonymous.enabled).unwrap_or(!secure),
            client_ca_file,
            token_webhook: opts.authentication_token_webhook.or(authn.webhook.enabled).unwrap_or(secure),
            token_cache_ttl: opts
                .authentication_token_webhook_cache_ttl
                .or(duration("authentication.webhook.cacheTTL", authn.webhook.cache_ttl.as_deref())?)
                .unwrap_or(Duration::from_secs(120)),
            mode: flag_mode.or(file_mode).unwrap_or(if secure {
                AuthorizationMode::Webhook
            } else {
                AuthorizationMode::AlwaysAllow
            }),
            authorized_ttl: opts
                .authorization_webhook_cache_authorized_ttl
                .or(duration(
                    "authorization.webhook.cacheAuthorizedTTL",
                    authz.webhook.cache_authorized_ttl.as_deref(),
                )?)
                .unwrap_or(Duration::from_secs(300)),
            unauthorized_ttl: opts
                .authorization_webhook_cache_unauthorized_ttl
                .or(duration(
                    "authorization.webhook.cacheUnauthorizedTTL",
                    authz.webhook.cache_unauthorized_ttl.as_deref(),
                )?)
                .unwrap_or(Duration::from_secs(30)),
        })
    }
}

/// The serving configuration with client certificates verified against `ca_file` and
/// optional (bearer-token and anonymous callers still connect).
pub fn with_client_ca(tls: &rustls::ServerConfig, ca_file: &str) -> Result<Arc<rustls::ServerConfig>, AuthSetupError> {
    Ok(component_base::delegated::with_client_ca(tls, Path::new(ca_file))?)
}

/// What a request asks of the node, as upstream's kubelet maps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestAttributes {
    pub verb: &'static str,
    /// Tried in order; the first one allowed lets the request through.
    pub subresources: Vec<&'static str>,
}

fn is_subpath(path: &str, prefix: &str) -> bool {
    path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// The verb from the method and the `nodes` subresources from the path.
pub fn request_attributes(method: &http::Method, path: &str) -> RequestAttributes {
    let streaming = ["/exec", "/attach", "/portForward", "/run"].iter().any(|p| is_subpath(path, p));
    let verb = if streaming {
        // These start commands in containers whatever the method: a WebSocket upgrade is a
        // GET, and `nodes/proxy get` must not be enough to exec (upstream's kubelet#136550).
        "create"
    } else {
        match *method {
            http::Method::POST => "create",
            http::Method::GET => "get",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE => "delete",
            _ => "",
        }
    };
    let mut subresources = Vec::with_capacity(2);
    if is_subpath(path, "/pods") || is_subpath(path, "/runningpods") {
        subresources.push("pods");
    } else if is_subpath(path, "/healthz") {
        subresources.push("healthz");
    } else if is_subpath(path, "/configz") {
        subresources.push("configz");
    }
    subresources.push(if is_subpath(path, "/stats") {
        "stats"
    } else if is_subpath(path, "/metrics") {
        "metrics"
    } else if is_subpath(path, "/logs") {
        "log"
    } else if is_subpath(path, "/checkpoint") {
        "checkpoint"
    } else {
        "proxy"
    });
    RequestAttributes { verb, subresources }
}

/// The kubelet API's authenticator and authorizer.
pub struct KubeletAuth {
    pub settings: AuthSettings,
    authn: TokenAuthenticator,
    authz: AccessReviewer,
    node_name: String,
}

impl KubeletAuth {
    pub fn new(settings: AuthSettings, client: kube::Client, node_name: String) -> KubeletAuth {
        // Bearer tokens are reviewed only with --authentication-token-webhook; accepted and
        // refused ones are both cached for its cache TTL, as upstream's kubelet does.
        let authn = TokenAuthenticator::new(
            settings.token_webhook.then(|| client.clone()),
            settings.token_cache_ttl,
            settings.token_cache_ttl,
            settings.anonymous,
        );
        let authz = AccessReviewer::new(client, settings.authorized_ttl, settings.unauthorized_ttl);
        KubeletAuth { settings, authn, authz, node_name }
    }

    /// Authenticates then authorizes a request; `peer` is the user of its verified client certificate.
    pub async fn check<B>(&self, req: &http::Request<B>, peer: Option<&User>) -> Result<User, Refusal> {
        let user = self.authn.authenticate(req.headers(), peer).await?;
        self.authorize(&user, req.method(), req.uri().path()).await?;
        Ok(user)
    }

    async fn authorize(&self, user: &User, method: &http::Method, path: &str) -> Result<(), Refusal> {
        if self.settings.mode == AuthorizationMode::AlwaysAllow {
            return Ok(());
        }
        let attrs = request_attributes(method, path);
        for subresource in &attrs.subresources {
            let attributes = ResourceAttributes {
                verb: Some(attrs.verb.to_string()),
                version: Some("v1".into()),
                resource: Some("nodes".into()),
                subresource: Some(subresource.to_string()),
                name: Some(self.node_name.clone()),
                ..Default::default()
            };
            match self.authz.allowed(user, Access::Resource(&attributes)).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(user = %user.name, verb = attrs.verb, subresource, "authorization error: {e}");
                    return Err(Refusal::Error(format!(
                        "Authorization error (user={}, verb={}, resource=nodes, subresource={subresource})",
                        user.name, attrs.verb
                    )));
                }
            }
        }
        tracing::debug!(user = %user.name, verb = attrs.verb, subresources = ?attrs.subresources, "Forbidden");
        Err(Refusal::Forbidden(format!(
            "Forbidden (user={}, verb={}, resource=nodes, subresource(s)=[{}])\n",
            user.name,
            attrs.verb,
            attrs.subresources.join(" ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn opts(args: &[&str]) -> Options {
        let mut all = vec!["kubelet"];
        all.extend_from_slice(args);
        Options::try_parse_from(all).unwrap()
    }

    #[test]
    fn paths_map_to_upstreams_node_subresources() {
        let get = http::Method::GET;
        let cases: &[(&http::Method, &str, &str, &[&str])] = &[
            (&get, "/pods", "get", &["pods", "proxy"]),
            (&get, "/pods/", "get", &["pods", "proxy"]),
            (&get, "/runningpods/", "get", &["pods", "proxy"]),
            (&get, "/healthz", "get", &["healthz", "proxy"]),
            (&get, "/configz", "get", &["configz", "proxy"]),
            (&get, "/stats/summary", "get", &["stats"]),
            (&get, "/stats", "get", &["stats"]),
            (&get, "/metrics", "get", &["metrics"]),
            (&get, "/metrics/resource", "get", &["metrics"]),
            (&get, "/logs/syslog", "get", &["log"]),
            (&get, "/containerLogs/default/p/c", "get", &["proxy"]),
            (&get, "/exec/default/p/c", "create", &["proxy"]),
            (&http::Method::POST, "/exec/default/p/c", "create", &["proxy"]),
            (&get, "/attach/default/p/c", "create", &["proxy"]),
            (&get, "/portForward/default/p", "create", &["proxy"]),
            (&http::Method::POST, "/checkpoint/default/p/c", "create", &["checkpoint"]),
            (&http::Method::DELETE, "/statsx", "delete", &["proxy"]),
            (&http::Method::PUT, "/podsx", "update", &["proxy"]),
            (&http::Method::PATCH, "/", "patch", &["proxy"]),
            (&get, "/execute", "get", &["proxy"]),
        ];
        for (method, path, verb, subresources) in cases {
            let a = request_attributes(method, path);
            assert_eq!((a.verb, a.subresources.as_slice()), (*verb, *subresources), "{method} {path}");
        }
    }

    #[test]
    fn defaults_are_open_without_a_client_ca_and_closed_with_one() {
        let open = AuthSettings::resolve(&opts(&[]), None).unwrap();
        assert!(open.anonymous && !open.token_webhook);
        assert_eq!(open.mode, AuthorizationMode::AlwaysAllow);
        let closed = AuthSettings::resolve(&opts(&["--client-ca-file=/ca.crt"]), None).unwrap();
        assert!(!closed.anonymous && closed.token_webhook);
        assert_eq!(closed.mode, AuthorizationMode::Webhook);
        assert_eq!(
            (closed.token_cache_ttl, closed.authorized_ttl, closed.unauthorized_ttl),
            (Duration::from_secs(120), Duration::from_secs(300), Duration::from_secs(30))
        );
        // Flags win over the secure defaults; a bare boolean flag means true.
        let mixed = AuthSettings::resolve(
            &opts(&[
                "--client-ca-file=/ca.crt",
                "--anonymous-auth",
                "--authentication-token-webhook=false",
                "--authorization-mode=AlwaysAllow",
                "--authorization-webhook-cache-unauthorized-ttl=1s",
            ]),
            None,
        )
        .unwrap();
        assert!(mixed.anonymous && !mixed.token_webhook);
        assert_eq!(mixed.mode, AuthorizationMode::AlwaysAllow);
        assert_eq!(mixed.unauthorized_ttl, Duration::from_secs(1));
        assert!(Options::try_parse_from(["kubelet", "--authorization-mode=ABAC"]).is_err());
    }

    #[test]
    fn the_config_file_maps_and_flags_override_it() {
        let yaml = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                    authentication:\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\n  \
                    webhook:\n    enabled: true\n    cacheTTL: 10s\n  anonymous:\n    enabled: true\n\
                    authorization:\n  mode: Webhook\n  webhook:\n    cacheAuthorizedTTL: 1m0s\n    \
                    cacheUnauthorizedTTL: 2s\nmaxPods: 50\n";
        let file = Some((PathBuf::from("k.yaml"), yaml.to_string()));
        let s = AuthSettings::resolve(&opts(&["--anonymous-auth=false"]), file).unwrap();
        assert_eq!(
            s,
            AuthSettings {
                anonymous: false,
                client_ca_file: Some("/etc/kubernetes/pki/ca.crt".into()),
                token_webhook: true,
                token_cache_ttl: Duration::from_secs(10),
                mode: AuthorizationMode::Webhook,
                authorized_ttl: Duration::from_secs(60),
                unauthorized_ttl: Duration::from_secs(2),
            }
        );
        // A config file alone gets its own (closed) defaults, as upstream's does.
        let bare = AuthSettings::resolve(&opts(&[]), Some((PathBuf::from("k.yaml"), "kind: X\n".into()))).unwrap();
        assert!(!bare.anonymous && bare.token_webhook && bare.mode == AuthorizationMode::Webhook);
        let bad = Some((PathBuf::from("k.yaml"), "authorization:\n  mode: ABAC\n".to_string()));
        assert!(matches!(AuthSettings::resolve(&opts(&[]), bad), Err(AuthSetupError::Invalid { .. })));
    }
}
