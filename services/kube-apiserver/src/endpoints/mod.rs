//! The REST endpoints: one generic handler for every resource, plus
//! discovery, OpenAPI, health, version and metrics.

pub mod body;
pub mod discovery;
mod handlers;
pub mod negotiation;
pub mod openapi;
pub mod request;
pub mod streaming;
mod watch;

use std::sync::Arc;
use std::time::Instant;

use apimachinery::status::ApiError;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};

pub use body::Body;

use crate::metrics::Metrics;
use crate::registry::store::Store;
use crate::registry::ResourceTable;

/// Everything a request handler needs.
pub struct ApiServer {
    pub authenticator: crate::authn::Authenticator,
    pub sa_signer: Option<crate::serviceaccount::TokenSigner>,
    pub sa_verifier: crate::serviceaccount::TokenVerifier,
    /// Seconds, from --service-account-max-token-expiration.
    pub max_token_expiration: i64,
    pub authorizer: crate::authz::Authorizer,
    pub store: Arc<Store>,
    pub resources: Arc<ResourceTable>,
    pub openapi: openapi::OpenApi,
    pub metrics: Metrics,
    pub allocator: Option<crate::allocator::Allocator>,
    /// The admission plugins --enable/--disable-admission-plugins chose.
    pub admission: crate::admission::AdmissionChain,
    pub config: ServerInfo,
    /// How pods/log, exec, attach, portforward and the proxies reach kubelets.
    pub kubelet: streaming::KubeletClient,
    /// `metrics.k8s.io`: the scraped kubelet resource metrics.
    pub resource_metrics: crate::metrics_api::MetricsApi,
}

/// Facts reported by `/version` and discovery.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    pub advertise_address: String,
    pub secure_port: u16,
    pub max_request_body_bytes: usize,
}

pub const GIT_VERSION: &str = concat!("v1.33.0+rustkube-", env!("CARGO_PKG_VERSION"));

pub fn json_response(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::full(body.into()));
    *r.status_mut() = code;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn value_response(code: StatusCode, v: &serde_json::Value) -> Response<Body> {
    json_response(code, serde_json::to_vec(v).unwrap_or_default())
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = value_response(code, &e.to_status());
    if let Some(secs) = e.retry_after {
        r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn text_response(code: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::full(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = code;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// The top of the handler chain: non-resource paths, then resources.
pub async fn serve(
    server: Arc<ApiServer>,
    mut req: Request<hyper::body::Incoming>,
    cert_user: Option<Arc<crate::authn::UserInfo>>,
) -> Response<Body> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let token = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_string());
    // No Authorization header: a WebSocket may carry its token as a subprotocol.
    let token = match token {
        Some(t) => Some(t),
        None => match streaming::take_websocket_bearer(req.headers_mut()) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(%path, error = %e, "unauthenticated request");
                server.metrics.observe_request(method.as_str(), "", 401, start.elapsed());
                return error_response(&ApiError::unauthorized("Unauthorized"));
            }
        },
    };
    let creds = crate::authn::Credentials { certificate_user: cert_user.as_deref(), bearer_token: token.as_deref() };
    let user = match authenticate(&server, &creds) {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(%path, error = %e, "unauthenticated request");
            let r = error_response(&ApiError::unauthorized("Unauthorized"));
            server.metrics.observe_request(method.as_str(), "", 401, start.elapsed());
            return r;
        }
    };
    let user = match crate::authn::impersonation(req.headers()) {
        None => user,
        Some(imp) => match authorize_impersonation(&server, &user, &imp) {
            Ok(()) => crate::authn::impersonated_user(&imp),
            Err(e) => {
                server.metrics.observe_request(method.as_str(), "", 403, start.elapsed());
                return error_response(&e);
            }
        },
    };
    req.extensions_mut().insert(Arc::new(user));
    let (verb, resource, response) = route(&server, req).await;
    let code = response.status().as_u16();
    server.metrics.observe_request(&verb, &resource, code, start.elapsed());
    tracing::debug!(%method, %path, code, elapsed_ms = start.elapsed().as_secs_f64() * 1000.0, "request");
    response
}

/// All authenticators: service-account JWTs (whose service account and
/// bound pod must still exist with the same uids), then the static ones.
pub fn authenticate(
    server: &ApiServer,
    creds: &crate::authn::Credentials<'_>,
) -> Result<rbac::UserInfo, crate::authn::AuthnError> {
    use crate::serviceaccount::{user_for, TokenVerifier};
    if let Some(token) = creds.bearer_token {
        if TokenVerifier::looks_like_jwt(token) && !server.sa_verifier.is_empty() {
            let now = jiff::Timestamp::now().as_second();
            return match server.sa_verifier.verify(token, now) {
                Ok(t) if bound_objects_exist(server, &t) => Ok(user_for(&t)),
                _ => Err(crate::authn::AuthnError::InvalidToken),
            };
        }
    }
    server.authenticator.authenticate(creds)
}

/// Whether the service account (and the pod or secret a token is bound to) still exist with the token's uids.
pub(crate) fn bound_objects_exist(server: &ApiServer, t: &crate::serviceaccount::VerifiedToken) -> bool {
    let uid_of = |plural: &str, ns: &str, name: &str| -> Option<String> {
        let d = server.resources.lookup("", "v1", plural)?;
        let obj = server.store.cache(d).get(&d.key(&server.store.root, ns, name))?;
        let v = obj.value();
        v["metadata"]["uid"].as_str().map(String::from)
    };
    if uid_of("serviceaccounts", &t.namespace, &t.name).as_deref() != Some(t.uid.as_str()) {
        return false;
    }
    match &t.bound {
        Some((kind, name, uid)) => {
            let plural = if kind == "Pod" { "pods" } else { "secrets" };
            uid_of(plural, &t.namespace, name).as_deref() == Some(uid.as_str())
        }
        None => true,
    }
}

/// A 403 with upstream's wording for these attributes.
pub fn forbidden(attrs: &rbac::Attributes, reason: &str) -> ApiError {
    let mut message = rbac::forbidden_message(attrs);
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(reason);
    }
    let mut e = ApiError::forbidden(message);
    if attrs.is_resource_request {
        e.details = Some(serde_json::json!({"name": attrs.name, "group": attrs.api_group, "kind": attrs.resource}));
    }
    e
}

/// Upstream's impersonation check: the `impersonate` verb on each user,
/// service account, uid and group asked for.
fn authorize_impersonation(
    server: &ApiServer,
    user: &rbac::UserInfo,
    imp: &crate::authn::Impersonation,
) -> Result<(), ApiError> {
    let mut checks = Vec::new();
    match imp.user.strip_prefix("system:serviceaccount:").and_then(|r| r.split_once(':')) {
        Some((ns, name)) => checks.push(
            rbac::Attributes::resource(user.clone(), "impersonate", "", "serviceaccounts").in_namespace(ns).named(name),
        ),
        None => {
            checks.push(rbac::Attributes::resource(user.clone(), "impersonate", "", "users").named(imp.user.clone()))
        }
    }
    for g in &imp.groups {
        checks.push(rbac::Attributes::resource(user.clone(), "impersonate", "", "groups").named(g.clone()));
    }
    if let Some(uid) = &imp.uid {
        checks.push(
            rbac::Attributes::resource(user.clone(), "impersonate", "authentication.k8s.io", "uids").named(uid.clone()),
        );
    }
    for (key, values) in &imp.extra {
        for v in values {
            checks.push(
                rbac::Attributes::resource(user.clone(), "impersonate", "authentication.k8s.io", "userextras")
                    .with_subresource(key.clone())
                    .named(v.clone()),
            );
        }
    }
    for attrs in checks {
        let (decision, reason) = server.authorizer.authorize(&attrs);
        if decision != rbac::Decision::Allow {
            return Err(forbidden(&attrs, &reason));
        }
    }
    Ok(())
}

fn user_of(req: &Request<hyper::body::Incoming>) -> Arc<rbac::UserInfo> {
    req.extensions().get::<Arc<rbac::UserInfo>>().cloned().unwrap_or_else(|| Arc::new(rbac::UserInfo::default()))
}

async fn route(server: &Arc<ApiServer>, req: Request<hyper::body::Incoming>) -> (String, String, Response<Body>) {
    let path = req.uri().path().to_string();
    let user = user_of(&req);
    let query = request::parse_query(req.uri().query());
    let mut info = request::parse(req.method(), &path, &query);
    // An upgrade through a node's proxy reaches the kubelet's exec, attach and
    // port-forward with this server's own credentials, so it needs `create`
    // like pods/exec rather than the `get` its method implies (stricter than
    // upstream, which only the kubelet's own check would otherwise catch).
    if let Some(i) = info.as_mut() {
        let node_proxy = i.group.is_empty() && i.resource == "nodes" && i.subresource.as_deref() == Some("proxy");
        if node_proxy && req.headers().contains_key(http::header::UPGRADE) {
            i.verb = "create";
        }
    }
    let attrs = match &info {
        Some(i) => rbac::Attributes {
            user: (*user).clone(),
            verb: i.verb.to_string(),
            // A namespace object is authorized within itself, as upstream.
            namespace: match (&i.namespace, i.resource.as_str(), &i.name) {
                (None, "namespaces", Some(n)) if i.group.is_empty() => n.clone(),
                (ns, _, _) => ns.clone().unwrap_or_default(),
            },
            api_group: i.group.clone(),
            api_version: i.version.clone(),
            resource: i.resource.clone(),
            subresource: i.subresource.clone().unwrap_or_default(),
            name: i.name.clone().unwrap_or_default(),
            is_resource_request: true,
            path: path.clone(),
        },
        None => rbac::Attributes::non_resource((*user).clone(), req.method().as_str().to_lowercase(), path.clone()),
    };
    let (decision, reason) = server.authorizer.authorize(&attrs);
    if decision != rbac::Decision::Allow {
        let verb = info.as_ref().map(|i| i.verb.to_string()).unwrap_or_else(|| "get".into());
        return (verb, attrs.resource.clone(), error_response(&forbidden(&attrs, &reason)));
    }
    let nonresource = |r: Response<Body>| ("get".to_string(), String::new(), r);
    match path.as_str() {
        "/healthz" | "/livez" | "/healthz/ping" | "/livez/ping" | "/readyz/ping" => {
            return nonresource(text_response(StatusCode::OK, "ok"))
        }
        "/readyz" | "/healthz/etcd" | "/readyz/etcd" | "/livez/etcd" => {
            let ok = server.store.caches_ready() && server.store.storage.current_revision().await.is_ok();
            let r = if ok {
                text_response(StatusCode::OK, "ok")
            } else {
                text_response(StatusCode::INTERNAL_SERVER_ERROR, "[-]etcd failed: reason withheld\nreadyz check failed")
            };
            return nonresource(r);
        }
        "/version" | "/version/" => {
            return nonresource(value_response(StatusCode::OK, &version_info()));
        }
        "/metrics" => {
            let mut r = Response::new(Body::full(Bytes::from(server.metrics.render(&server.store))));
            r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            return nonresource(r);
        }
        _ => {}
    }
    if path == "/api" || path == "/apis" || path == "/api/" || path == "/apis/" {
        return nonresource(discovery::root(server, &req));
    }
    if path.starts_with("/openapi/") {
        return nonresource(server.openapi.serve(server, &req));
    }
    match info {
        Some(info) => {
            let verb = info.verb.to_string();
            let resource = match &info.subresource {
                Some(s) => format!("{}/{s}", info.resource),
                None => info.resource.clone(),
            };
            if crate::metrics_api::serves(&info) {
                return (verb, resource, crate::metrics_api::handle(server, &req, &info));
            }
            if streaming::serves(&info) {
                return (verb, resource, streaming::handle(server.clone(), req, info).await);
            }
            let r = handlers::handle(server.clone(), req, info, query, user).await;
            (verb, resource, r)
        }
        None => {
            if let Some(r) = discovery::group_or_version(server, &path) {
                return nonresource(r);
            }
            nonresource(error_response(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )))
        }
    }
}

pub fn version_info() -> serde_json::Value {
    serde_json::json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "gitVersion": GIT_VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}
