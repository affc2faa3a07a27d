//! The connect subresources, served by a node's kubelet through this server:
//! `pods/log` (proxied, streamed), `pods/exec` and `pods/attach` (kubectl's
//! `v5.channel.k8s.io`/`v4.channel.k8s.io` WebSocket translated into SPDY/3.1
//! `v4.channel.k8s.io` towards the kubelet, as upstream's stream translator
//! does), `pods/portforward` (kubectl's WebSocket tunnel of SPDY unwrapped
//! into a SPDY upgrade to the kubelet), plain SPDY upgrades (kubectl's
//! fallback) and the older WebSocket channel protocols proxied as they are,
//! and `nodes/proxy`, `pods/proxy`, `services/proxy` (any method, headers,
//! body and status both ways, upgrades piped; a Service's endpoint picked from
//! its EndpointSlices as upstream's `ResourceLocation`).
//!
//! The kubelet is reached at the node's preferred address and its
//! `daemonEndpoints.kubeletEndpoint.port`, with `--kubelet-client-certificate`
//! and, when `--kubelet-certificate-authority` is given, a verified serving
//! certificate (without it, as upstream, the certificate is not verified).

use std::sync::Arc;
use std::time::Duration;

use apimachinery::status::ApiError;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use streaming::channel;
use streaming::spdy::{Event, Session};
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::request::RequestInfo;
use super::{error_response, ApiServer, Body};

#[derive(Debug, thiserror::Error)]
pub enum KubeletClientError {
    #[error("reading {what} {path}: {source}")]
    Read { what: &'static str, path: String, source: std::io::Error },
    #[error("no private key in {0}")]
    NoKey(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// How this server reaches kubelets.
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
    /// `https:` pods and services behind `pods/proxy` and `services/proxy` (as upstream's proxy
    /// transport: no client certificate, the serving certificate not verified).
    proxy_tls: Arc<rustls::ClientConfig>,
    /// `--kubelet-preferred-address-types`.
    preferred: Vec<String>,
}

#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algs)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

fn read_pem(what: &'static str, path: &str) -> Result<Vec<u8>, KubeletClientError> {
    std::fs::read(path).map_err(|source| KubeletClientError::Read { what, path: path.to_string(), source })
}

impl KubeletClient {
    pub fn new(
        cert: Option<&str>,
        key: Option<&str>,
        ca: Option<&str>,
        preferred: Vec<String>,
    ) -> Result<KubeletClient, KubeletClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
        let builder = match ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                let pem = read_pem("--kubelet-certificate-authority", ca)?;
                for c in rustls_pemfile::certs(&mut &pem[..]).flatten() {
                    roots.add(c)?;
                }
                builder.with_root_certificates(roots)
            }
            None => builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny)),
        };
        let mut config = match (cert, key) {
            (Some(cert), Some(key)) => {
                let certs: Vec<_> = rustls_pemfile::certs(&mut &read_pem("--kubelet-client-certificate", cert)?[..])
                    .flatten()
                    .collect();
                let key = rustls_pemfile::private_key(&mut &read_pem("--kubelet-client-key", key)?[..])
                    .ok()
                    .flatten()
                    .ok_or_else(|| KubeletClientError::NoKey(key.to_string()))?;
                builder.with_client_auth_cert(certs, key)?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut proxy = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny))
            .with_no_client_auth();
        proxy.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient { tls: Arc::new(config), proxy_tls: Arc::new(proxy), preferred })
    }

    /// A node's kubelet address: the first address of a `--kubelet-preferred-address-types`
    /// type, and the kubelet port from the node's status.
    pub fn address(&self, node: &Value) -> Option<(String, u16)> {
        let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().unwrap_or(10250);
        let port = u16::try_from(port).ok()?;
        let addresses = node["status"]["addresses"].as_array()?;
        self.preferred.iter().find_map(|kind| {
            addresses
                .iter()
                .find(|a| a["type"].as_str() == Some(kind))
                .and_then(|a| a["address"].as_str())
                .map(|ip| (ip.to_string(), port))
        })
    }

    /// Sends `req` to the kubelet at `addr`; the connection serves upgrades.
    pub(crate) async fn send(
        &self,
        addr: &(String, u16),
        req: Request<http_body_util::Empty<Bytes>>,
    ) -> Result<Response<hyper::body::Incoming>, ApiError> {
        let unreachable = |e: String| ApiError::new(502, "ServiceUnavailable", format!("error dialing backend: {e}"));
        let tcp =
            tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect((addr.0.as_str(), addr.1)))
                .await
                .map_err(|_| unreachable("timeout".into()))?
                .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(addr.0.clone())
            .map_err(|e| unreachable(format!("invalid kubelet address {}: {e}", addr.0)))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "kubelet connection");
            }
        });
        sender.send_request(req).await.map_err(|e| unreachable(e.to_string()))
    }
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "InternalError",
    }
}

/// A kubelet's refusal as a Status (its text as the message, as upstream passes it on).
async fn kubelet_error(resp: Response<hyper::body::Incoming>) -> ApiError {
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        if let Some(m) = v["message"].as_str() {
            return ApiError::new(code, reason_for(code), m.to_string());
        }
    }
    ApiError::new(code, reason_for(code), text)
}

fn object(server: &ApiServer, plural: &str, ns: &str, name: &str) -> Option<Value> {
    let d = server.resources.lookup("", "v1", plural)?;
    Some(server.store.cache(d).get(&d.key(&server.store.root, ns, name))?.value())
}

/// The node's kubelet address: the first address of a preferred type, and the kubelet port.
fn kubelet_address(server: &ApiServer, node_name: &str) -> Result<(String, u16), ApiError> {
    let node = object(server, "nodes", "", node_name)
        .ok_or_else(|| ApiError::not_found(&apimachinery::status::Qualified::new("", "nodes"), node_name))?;
    server.kubelet.address(&node).ok_or_else(|| {
        let known = node["status"]["addresses"].as_array().cloned().unwrap_or_default();
        ApiError::new(503, "ServiceUnavailable", format!("no preferred addresses found; known addresses: {known:?}"))
    })
}

/// The raw query without `container=` (the container moves into the kubelet path).
fn query_without_container(query: Option<&str>) -> String {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("container="))
        .collect::<Vec<_>>()
        .join("&")
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query.unwrap_or("").split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == key).then(|| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
    })
}

/// The pod, its node, and the container a request addresses (defaulted as upstream).
fn pod_target(
    server: &ApiServer,
    ns: &str,
    name: &str,
    container: Option<String>,
) -> Result<(Value, String, String), ApiError> {
    let pod = object(server, "pods", ns, name)
        .ok_or_else(|| ApiError::not_found(&apimachinery::status::Qualified::new("", "pods"), name))?;
    let names = |key: &str| -> Vec<String> {
        pod["spec"][key]
            .as_array()
            .map(|cs| cs.iter().filter_map(|c| c["name"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let containers = names("containers");
    let container = match container.filter(|c| !c.is_empty()) {
        Some(c) => {
            let known = containers.contains(&c)
                || names("initContainers").contains(&c)
                || names("ephemeralContainers").contains(&c);
            if !known {
                return Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}")));
            }
            c
        }
        None => match pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str() {
            Some(c) => c.to_string(),
            None if containers.len() == 1 => containers[0].clone(),
            None => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    containers.join(" ")
                )))
            }
        },
    };
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    Ok((pod, node, container))
}

/// The prefix of the WebSocket subprotocol that carries a bearer token (browsers cannot
/// set `Authorization` on a WebSocket): `base64url.bearer.authorization.k8s.io.<token>`.
pub const BEARER_PROTOCOL_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

/// Why a WebSocket bearer subprotocol was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebSocketTokenError {
    #[error("multiple base64.bearer.authorization tokens specified")]
    Multiple,
    #[error("invalid base64.bearer.authorization token encoding")]
    Encoding,
    #[error("missing additional subprotocol")]
    NoOtherProtocol,
}

/// Upstream's WebSocket protocol authenticator: on a WebSocket upgrade, the token of a
/// `base64url.bearer.authorization.k8s.io.` subprotocol (base64url without padding),
/// which is taken out of `Sec-WebSocket-Protocol` so it is never echoed nor passed on.
/// At least one other subprotocol must remain to be negotiated.
pub fn take_websocket_bearer(headers: &mut http::HeaderMap) -> Result<Option<String>, WebSocketTokenError> {
    use base64::Engine;
    let upgrade = headers.get(http::header::UPGRADE).and_then(|v| v.to_str().ok());
    if !upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return Ok(None);
    }
    let mut token = None;
    let mut others = Vec::new();
    for value in headers.get_all(http::header::SEC_WEBSOCKET_PROTOCOL) {
        for p in value.to_str().unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some(encoded) = p.strip_prefix(BEARER_PROTOCOL_PREFIX) else {
                others.push(p.to_string());
                continue;
            };
            if token.is_some() {
                return Err(WebSocketTokenError::Multiple);
            }
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded)
                .map_err(|_| WebSocketTokenError::Encoding)?;
            token = Some(String::from_utf8(raw).map_err(|_| WebSocketTokenError::Encoding)?);
        }
    }
    let Some(token) = token.filter(|t| !t.is_empty()) else { return Ok(None) };
    if others.is_empty() {
        return Err(WebSocketTokenError::NoOtherProtocol);
    }
    headers.remove(http::header::SEC_WEBSOCKET_PROTOCOL);
    if let Ok(v) = HeaderValue::from_str(&others.join(",")) {
        headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    Ok(Some(token))
}

/// Whether this handler serves `info`'s subresource.
pub fn serves(info: &RequestInfo) -> bool {
    info.group.is_empty()
        && matches!(
            (info.resource.as_str(), info.subresource.as_deref()),
            ("pods", Some("log" | "exec" | "attach" | "portforward" | "proxy")) | ("nodes" | "services", Some("proxy"))
        )
}

pub async fn handle(server: Arc<ApiServer>, req: Request<hyper::body::Incoming>, info: RequestInfo) -> Response<Body> {
    let ns = info.namespace.clone().unwrap_or_default();
    let name = info.name.clone().unwrap_or_default();
    let r = match (info.resource.as_str(), info.subresource.as_deref()) {
        ("pods", Some("log")) => pod_log(&server, &req, &ns, &name).await,
        ("pods", Some(kind @ ("exec" | "attach"))) => exec(&server, req, &ns, &name, kind).await,
        ("pods", Some("portforward")) => port_forward(&server, req, &ns, &name).await,
        ("pods", Some("proxy")) => pod_proxy(&server, req, &ns, &name).await,
        ("services", Some("proxy")) => service_proxy(&server, req, &ns, &name).await,
        ("nodes", Some("proxy")) => node_proxy(&server, req, &name).await,
        _ => Err(ApiError::new(404, "NotFound", "the server could not find the requested resource")),
    };
    r.unwrap_or_else(|e| error_response(&e))
}

fn get(path: String) -> Result<Request<http_body_util::Empty<Bytes>>, ApiError> {
    Request::get(path).body(http_body_util::Empty::new()).map_err(|e| ApiError::internal(e.to_string()))
}

/// Streams a backend response's body to the client, flushing each chunk as it comes.
fn stream_body(resp: Response<hyper::body::Incoming>) -> Response<Body> {
    let (parts, mut body) = resp.into_parts();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data() {
                if tx.send(vec![data]).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut r = Response::new(Body::Stream(rx, Default::default()));
    *r.status_mut() = parts.status;
    if let Some(ct) = parts.headers.get(http::header::CONTENT_TYPE) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, ct.clone());
    }
    r
}

async fn pod_log(
    server: &ApiServer,
    req: &Request<hyper::body::Incoming>,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let query = req.uri().query();
    let (_, node, container) = pod_target(server, ns, name, query_param(query, "container"))?;
    let addr = kubelet_address(server, &node)?;
    let path = format!("/containerLogs/{ns}/{name}/{container}?{}", query_without_container(query));
    let resp = server.kubelet.send(&addr, get(path)?).await?;
    if resp.status() != StatusCode::OK {
        return Err(kubelet_error(resp).await);
    }
    let mut r = stream_body(resp);
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(r)
}

fn header<'a>(req: &'a Request<hyper::body::Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn is_websocket(req: &Request<hyper::body::Incoming>) -> bool {
    header(req, "upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

/// A SPDY upgrade request to the kubelet for `path`, offering `protocol`.
fn spdy_upgrade(path: String, protocol: &str) -> Result<Request<http_body_util::Empty<Bytes>>, ApiError> {
    Request::post(path)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, channel::SPDY_31)
        .header("X-Stream-Protocol-Version", protocol)
        .body(http_body_util::Empty::new())
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Accepts the client's WebSocket with `protocol`; `then` runs on the open socket.
fn accept_websocket<F, Fut>(
    mut req: Request<hyper::body::Incoming>,
    protocol: &'static str,
    then: F,
) -> Result<Response<Body>, ApiError>
where
    F: FnOnce(WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let key = header(&req, "sec-websocket-key").ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key"))?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(http::header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("Sec-WebSocket-Accept", v);
    }
    tokio::spawn(async move {
        match hyper::upgrade::on(&mut req).await {
            Ok(up) => then(WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None).await).await,
            Err(e) => tracing::debug!(error = %e, "client upgrade failed"),
        }
    });
    Ok(r)
}

/// The headers of an upgrade that go to the kubelet and back.
fn upgrade_header(name: &str) -> bool {
    name == "connection"
        || name == "upgrade"
        || name == "x-stream-protocol-version"
        || name.starts_with("sec-websocket-")
}

/// An upgrade this server does not translate goes to the kubelet as it is (method and
/// protocol headers): kubectl's plain SPDY (its fallback), and the older WebSocket channel
/// protocols (`channel.k8s.io`, `base64.channel.k8s.io`...) that the runtime speaks itself,
/// as upstream proxies every upgrade but v5 straight through.
async fn proxy_upgrade(
    server: &ApiServer,
    mut req: Request<hyper::body::Incoming>,
    addr: &(String, u16),
    path: String,
) -> Result<Response<Body>, ApiError> {
    let mut out = Request::builder().method(req.method().clone()).uri(path);
    for (k, v) in req.headers() {
        if upgrade_header(k.as_str()) {
            out = out.header(k, v);
        }
    }
    let out = out.body(http_body_util::Empty::new()).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut resp = server.kubelet.send(addr, out).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(kubelet_error(resp).await);
    }
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (k, v) in resp.headers() {
        if upgrade_header(k.as_str()) {
            r.headers_mut().append(k.clone(), v.clone());
        }
    }
    tokio::spawn(async move {
        let (Ok(up), Ok(down)) = (hyper::upgrade::on(&mut resp).await, hyper::upgrade::on(&mut req).await) else {
            return;
        };
        streaming::pipe::pipe(TokioIo::new(down), TokioIo::new(up), Duration::from_secs(4 * 3600)).await;
    });
    Ok(r)
}

async fn exec(
    server: &ApiServer,
    req: Request<hyper::body::Incoming>,
    ns: &str,
    name: &str,
    kind: &str,
) -> Result<Response<Body>, ApiError> {
    let query = req.uri().query();
    let (_, node, container) = pod_target(server, ns, name, query_param(query, "container"))?;
    let addr = kubelet_address(server, &node)?;
    let path = format!("/{kind}/{ns}/{name}/{container}?{}", query_without_container(query));
    if !is_websocket(&req) {
        if header(&req, "upgrade").is_some() {
            return proxy_upgrade(server, req, &addr, path).await;
        }
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let offered = header(&req, "sec-websocket-protocol").unwrap_or("");
    let Some(protocol) = channel::negotiate(offered, &[channel::V5, channel::V4]) else {
        return proxy_upgrade(server, req, &addr, path).await;
    };
    let flag = |k: &str| query_param(query, k).is_some_and(|v| v == "true" || v == "1");
    let io = Streams { stdin: flag("stdin"), stdout: flag("stdout"), stderr: flag("stderr"), tty: flag("tty") };
    let mut resp = server.kubelet.send(&addr, spdy_upgrade(path, channel::V4)?).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(kubelet_error(resp).await);
    }
    let upstream = hyper::upgrade::on(&mut resp).await.map_err(|e| ApiError::internal(e.to_string()))?;
    let v5 = protocol == channel::V5;
    accept_websocket(req, protocol, move |ws| async move {
        let (session, events) = Session::client(TokioIo::new(upstream));
        if let Err(e) = translate(ws, session, events, io, v5).await {
            tracing::debug!(error = %e, "exec stream ended");
        }
    })
}

#[derive(Clone, Copy, Debug)]
struct Streams {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

#[derive(Debug, thiserror::Error)]
enum TranslateError {
    #[error(transparent)]
    Spdy(#[from] streaming::spdy::SpdyError),
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
}

/// Carries kubectl's channels over the kubelet's SPDY streams and back, and
/// the command's Status from the error stream to channel 3.
async fn translate(
    ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    session: Session,
    mut events: tokio::sync::mpsc::Receiver<Event>,
    io: Streams,
    v5: bool,
) -> Result<(), TranslateError> {
    let (mut ws_tx, mut ws_rx) = ws.split();
    let opened = async {
        let error = session.open(&[("streamtype", "error")]).await?;
        let mut ids = vec![(error, channel::ERROR)];
        let stdin = if io.stdin { Some(session.open(&[("streamtype", "stdin")]).await?) } else { None };
        if io.stdout {
            ids.push((session.open(&[("streamtype", "stdout")]).await?, channel::STDOUT));
        }
        if io.stderr && !io.tty {
            ids.push((session.open(&[("streamtype", "stderr")]).await?, channel::STDERR));
        }
        let resize = if io.tty { Some(session.open(&[("streamtype", "resize")]).await?) } else { None };
        Ok::<_, streaming::spdy::SpdyError>((error, stdin, resize, ids))
    };
    let (error_id, stdin, resize, ids) = match opened.await {
        Ok(v) => v,
        Err(e) => {
            let status = serde_json::to_vec(&channel::failure_status(&e.to_string())).unwrap_or_default();
            let _ = ws_tx.send(Message::binary(channel::encode(channel::ERROR, &status))).await;
            let _ = ws_tx.close().await;
            return Err(e.into());
        }
    };
    let mut status: Vec<u8> = Vec::new();
    let mut client_open = true;
    loop {
        tokio::select! {
            msg = ws_rx.next(), if client_open => match msg {
                Some(Ok(Message::Binary(b))) => match channel::decode(&b) {
                    Some(channel::Message::Data { channel: channel::STDIN, data }) if !data.is_empty() => {
                        if let Some(id) = stdin {
                            session.write(id, data).await?;
                        }
                    }
                    Some(channel::Message::Data { channel: channel::RESIZE, data }) if !data.is_empty() => {
                        if let Some(id) = resize {
                            session.write(id, data).await?;
                        }
                    }
                    Some(channel::Message::Close { channel: channel::STDIN }) if v5 => {
                        if let Some(id) = stdin {
                            session.close_stream(id).await?;
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    client_open = false;
                    break;
                }
                Some(Ok(_)) => {}
            },
            ev = events.recv() => match ev {
                Some(Event::Data { stream_id, data }) if stream_id == error_id => {
                    status.extend_from_slice(&data);
                    if serde_json::from_slice::<Value>(&status).is_ok() {
                        break;
                    }
                }
                Some(Event::Data { stream_id, data }) => {
                    if let Some((_, ch)) = ids.iter().find(|(id, _)| *id == stream_id) {
                        ws_tx.send(Message::binary(channel::encode(*ch, &data))).await?;
                    }
                }
                Some(Event::Fin { stream_id }) if stream_id == error_id => break,
                Some(Event::Closed(_)) | None => break,
                Some(_) => {}
            },
        }
    }
    // What the runtime wrote before its Status is already on its way; anything queued behind it too.
    while let Ok(ev) = events.try_recv() {
        if let Event::Data { stream_id, data } = ev {
            if let Some((_, ch)) = ids.iter().find(|(id, _)| *id == stream_id && *id != error_id) {
                ws_tx.send(Message::binary(channel::encode(*ch, &data))).await?;
            }
        }
    }
    session.shutdown().await;
    if client_open {
        if !status.is_empty() {
            ws_tx.send(Message::binary(channel::encode(channel::ERROR, &status))).await?;
        }
        let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
        let _ = ws_tx.send(Message::Close(Some(close))).await;
        // Let the client read it all and answer the close.
        let _ = tokio::time::timeout(Duration::from_secs(5), async { while ws_rx.next().await.is_some() {} }).await;
    }
    Ok(())
}

async fn port_forward(
    server: &ApiServer,
    req: Request<hyper::body::Incoming>,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let pod = object(server, "pods", ns, name)
        .ok_or_else(|| ApiError::not_found(&apimachinery::status::Qualified::new("", "pods"), name))?;
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    let addr = kubelet_address(server, &node)?;
    let path = format!("/portForward/{ns}/{name}");
    if !is_websocket(&req) {
        if header(&req, "upgrade").is_some() {
            return proxy_upgrade(server, req, &addr, path).await;
        }
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let offered = header(&req, "sec-websocket-protocol").unwrap_or("");
    let Some(protocol) = channel::negotiate(offered, &[channel::PORT_FORWARD_TUNNEL]) else {
        return proxy_upgrade(server, req, &addr, path).await;
    };
    let mut resp = server.kubelet.send(&addr, spdy_upgrade(path, channel::PORT_FORWARD)?).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(kubelet_error(resp).await);
    }
    let upstream = hyper::upgrade::on(&mut resp).await.map_err(|e| ApiError::internal(e.to_string()))?;
    accept_websocket(req, protocol, move |ws| async move { tunnel(ws, TokioIo::new(upstream)).await })
}

/// The WebSocket tunnel: each binary message carries SPDY bytes, both ways.
async fn tunnel<IO>(ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>, upstream: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (mut up_rx, mut up_tx) = tokio::io::split(upstream);
    let to_kubelet = async {
        while let Some(Ok(msg)) = ws_rx.next().await {
            match msg {
                Message::Binary(b) if up_tx.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = up_tx.shutdown().await;
    };
    let from_kubelet = async {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match up_rx.read(&mut buf).await {
                Ok(n) if n > 0 => {
                    if ws_tx.send(Message::binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
        let _ = ws_tx.close().await;
    };
    tokio::join!(to_kubelet, from_kubelet);
}

/// Upstream's `SplitSchemeNamePort`: `name`, `name:port` or `scheme:name:port`
/// with scheme `http`, `https` or empty.
fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https")).then_some((scheme, name, port))
}

/// Where a proxied request goes.
struct Backend {
    https: bool,
    host: String,
    port: u16,
    /// Present the apiserver's kubelet client certificate (the node's own kubelet port).
    kubelet: bool,
    /// What the target is called in errors ("pod", "service", "node").
    what: &'static str,
}

/// The rest of a proxy path after `<prefix>/proxy` (empty when nothing follows).
fn proxy_rest(req: &Request<hyper::body::Incoming>, prefix: &str) -> String {
    let path = req.uri().path();
    path.strip_prefix(prefix).and_then(|r| r.strip_prefix("/proxy")).unwrap_or("").to_string()
}

/// Upstream's redirect of a GET or HEAD of `.../proxy` to `.../proxy/` (so relative links of
/// the backend's page resolve under the proxy), with the query kept.
fn root_redirect(req: &Request<hyper::body::Incoming>) -> Response<Body> {
    let location = match req.uri().query() {
        Some(q) => format!("{}/?{q}", req.uri().path()),
        None => format!("{}/", req.uri().path()),
    };
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the ones a proxy answers for itself.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Request headers that stay here: hop-by-hop ones (but an upgrade's, which go on), the
/// credentials this server consumed (upstream drops them after authentication) and Host.
fn forwarded_request_header(name: &str, upgrade: bool) -> bool {
    if upgrade && (name == "connection" || name == "upgrade") {
        return true;
    }
    !(hop_by_hop(name) || name == "host" || name == "authorization" || name.starts_with("impersonate-"))
}

/// Sends the client's request (method, headers, body) to `backend` at `rest` and passes
/// the answer back as it is: status, headers and a streamed body; an upgrade (a
/// WebSocket to the pod) is piped both ways once the backend switched protocols.
async fn proxy_http(
    server: &ApiServer,
    mut req: Request<hyper::body::Incoming>,
    backend: Backend,
    rest: String,
) -> Result<Response<Body>, ApiError> {
    let upgrade = req.headers().contains_key(http::header::UPGRADE);
    if rest.is_empty() && !upgrade && matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
        return Ok(root_redirect(&req));
    }
    let rest = match (rest.as_str(), req.uri().query()) {
        ("", Some(q)) => format!("/?{q}"),
        ("", None) => "/".to_string(),
        (r, Some(q)) => format!("{r}?{q}"),
        (r, None) => r.to_string(),
    };
    let what = backend.what;
    let unreachable =
        |e: String| ApiError::new(503, "ServiceUnavailable", format!("error trying to reach {what}: {e}"));
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((backend.host.as_str(), backend.port)),
    )
    .await
    .map_err(|_| unreachable(format!("dial tcp {}:{}: i/o timeout", backend.host, backend.port)))?
    .map_err(|e| unreachable(format!("dial tcp {}:{}: {e}", backend.host, backend.port)))?;
    let _ = tcp.set_nodelay(true);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let host_header = if backend.host.contains(':') {
        format!("[{}]:{}", backend.host, backend.port)
    } else {
        format!("{}:{}", backend.host, backend.port)
    };
    let mut out = Request::builder().method(parts.method.clone()).uri(rest).header(http::header::HOST, host_header);
    for (k, v) in parts.headers.iter().filter(|(k, _)| forwarded_request_header(k.as_str(), upgrade)) {
        out = out.header(k, v);
    }
    let out = out.body(body).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut resp = if backend.https {
        let config = if backend.kubelet { server.kubelet.tls.clone() } else { server.kubelet.proxy_tls.clone() };
        let name = rustls::pki_types::ServerName::try_from(backend.host.clone())
            .map_err(|e| unreachable(format!("invalid address {}: {e}", backend.host)))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        send_on(TokioIo::new(tls), out).await.map_err(|e| unreachable(e.to_string()))?
    } else {
        send_on(TokioIo::new(tcp), out).await.map_err(|e| unreachable(e.to_string()))?
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ApiError::internal(format!("the {what} switched protocols unasked")));
        };
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *r.headers_mut() = resp.headers().clone();
        tokio::spawn(async move {
            let (Ok(up), Ok(down)) = (hyper::upgrade::on(&mut resp).await, client_upgrade.await) else {
                return;
            };
            streaming::pipe::pipe(TokioIo::new(down), TokioIo::new(up), Duration::from_secs(4 * 3600)).await;
        });
        return Ok(r);
    }
    Ok(stream_response(resp))
}

/// One request on a fresh HTTP/1.1 connection over `io` (upgrades served).
async fn send_on<IO>(
    io: IO,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<hyper::body::Incoming>, hyper::Error>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "proxy backend connection");
        }
    });
    sender.send_request(req).await
}

/// A backend's response as it is, but for hop-by-hop headers; the body streamed.
fn stream_response(resp: Response<hyper::body::Incoming>) -> Response<Body> {
    let headers = resp.headers().clone();
    let mut r = stream_body(resp);
    r.headers_mut().clear();
    for (k, v) in headers.iter().filter(|(k, _)| !hop_by_hop(k.as_str())) {
        r.headers_mut().append(k.clone(), v.clone());
    }
    r
}

/// `nodes/<[scheme:]name[:port]>/proxy/<path>`: the kubelet's own port over TLS with
/// this server's kubelet client certificate, or another port of the node as asked.
async fn node_proxy(
    server: &ApiServer,
    req: Request<hyper::body::Incoming>,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let (scheme, node, port) =
        split_scheme_name_port(id).ok_or_else(|| ApiError::bad_request(format!("invalid node request {id:?}")))?;
    let (host, kubelet_port) = kubelet_address(server, node)?;
    let rest = proxy_rest(&req, &format!("/api/v1/nodes/{id}"));
    let backend = if port.is_empty() || port == kubelet_port.to_string() {
        Backend { https: true, host, port: kubelet_port, kubelet: true, what: "node" }
    } else {
        let port = port.parse().map_err(|_| ApiError::bad_request(format!("invalid node request {id:?}")))?;
        Backend { https: scheme == "https", host, port, kubelet: false, what: "node" }
    };
    proxy_http(server, req, backend, rest).await
}

/// `pods/<[scheme:]name[:port]>/proxy/<path>`: the pod's IP, at the port given or the
/// first declared container port (upstream's pod `ResourceLocation`).
async fn pod_proxy(
    server: &ApiServer,
    req: Request<hyper::body::Incoming>,
    ns: &str,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let (scheme, pod_name, port) =
        split_scheme_name_port(id).ok_or_else(|| ApiError::bad_request(format!("invalid pod request {id:?}")))?;
    let pod = object(server, "pods", ns, pod_name)
        .ok_or_else(|| ApiError::not_found(&apimachinery::status::Qualified::new("", "pods"), pod_name))?;
    let declared = || {
        pod["spec"]["containers"]
            .as_array()?
            .iter()
            .find_map(|c| c["ports"].as_array()?.first()?["containerPort"].as_u64())
    };
    let https = scheme == "https";
    let port = match port {
        "" => declared().map(|p| p as u16).unwrap_or(if https { 443 } else { 80 }),
        p => p.parse::<u16>().map_err(|_| ApiError::bad_request(format!("invalid pod request {id:?}")))?,
    };
    let ip = pod["status"]["podIP"].as_str().unwrap_or("");
    let proxyable = ip
        .parse::<std::net::IpAddr>()
        .is_ok_and(|a| !(a.is_loopback() || a.is_unspecified() || a.is_multicast() || is_link_local(&a)));
    if !proxyable {
        return Err(ApiError::bad_request("address not allowed"));
    }
    let rest = proxy_rest(&req, &format!("/api/v1/namespaces/{ns}/pods/{id}"));
    let backend = Backend { https, host: ip.to_string(), port, kubelet: false, what: "pod" };
    proxy_http(server, req, backend, rest).await
}

fn is_link_local(a: &std::net::IpAddr) -> bool {
    match a {
        std::net::IpAddr::V4(v4) => v4.is_link_local() || v4.is_broadcast(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// `services/<[scheme:]name[:port]>/proxy/<path>`: upstream's service `ResourceLocation`:
/// a port number names the Service port it belongs to, then a ready endpoint of the
/// Service's EndpointSlices with a port of that name, whose Pod really has that address.
async fn service_proxy(
    server: &ApiServer,
    req: Request<hyper::body::Incoming>,
    ns: &str,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let (scheme, svc_name, port) =
        split_scheme_name_port(id).ok_or_else(|| ApiError::bad_request(format!("invalid service request {id:?}")))?;
    let svc = object(server, "services", ns, svc_name)
        .ok_or_else(|| ApiError::not_found(&apimachinery::status::Qualified::new("", "services"), svc_name))?;
    let (host, port) = service_endpoint(server, ns, svc_name, &svc, port)?;
    let rest = proxy_rest(&req, &format!("/api/v1/namespaces/{ns}/services/{id}"));
    let backend = Backend { https: scheme == "https", host, port, kubelet: false, what: "service" };
    proxy_http(server, req, backend, rest).await
}

/// The address and port a service proxy request goes to.
fn service_endpoint(
    server: &ApiServer,
    ns: &str,
    svc_name: &str,
    svc: &Value,
    port: &str,
) -> Result<(String, u16), ApiError> {
    let unavailable = |m: String| ApiError::new(503, "ServiceUnavailable", m);
    let ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
    let port_name = match port.parse::<u64>() {
        Ok(n) => ports
            .iter()
            .find(|p| p["port"].as_u64() == Some(n))
            .map(|p| p["name"].as_str().unwrap_or("").to_string())
            .ok_or_else(|| unavailable(format!("no service port {n} found for service {svc_name:?}")))?,
        Err(_) => port.to_string(),
    };
    let d = server
        .resources
        .lookup("discovery.k8s.io", "v1", "endpointslices")
        .ok_or_else(|| ApiError::internal("no endpointslices resource"))?;
    let (slices, _) = server.store.cache(d).snapshot(&d.key_prefix(&server.store.root, Some(ns)));
    let mut candidates = Vec::new();
    for slice in slices.iter().map(|s| s.value()) {
        if slice["metadata"]["labels"]["kubernetes.io/service-name"].as_str() != Some(svc_name) {
            continue;
        }
        let Some(target) = slice["ports"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"].as_str().unwrap_or("") == port_name))
            .and_then(|p| p["port"].as_u64())
        else {
            continue;
        };
        for ep in slice["endpoints"].as_array().into_iter().flatten() {
            // A missing `ready` means ready, as the API documents.
            if ep["conditions"]["ready"].as_bool() == Some(false) {
                continue;
            }
            if let Some(addr) = ep["addresses"].as_array().and_then(|a| a.first()).and_then(|a| a.as_str()) {
                candidates.push((addr.to_string(), target as u16, ep["targetRef"].clone()));
            }
        }
    }
    // Start at a pseudo-random candidate, as upstream picks one at random.
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
        as usize;
    let n = candidates.len();
    for i in 0..n {
        let (addr, port, target) = &candidates[(seed + i) % n];
        if endpoint_is_pod(server, ns, addr, target) {
            return Ok((addr.clone(), *port));
        }
        tracing::debug!(%addr, service = svc_name, "endpoint address is not its pod's, skipped");
    }
    Err(unavailable(format!("no endpoints available for service {svc_name:?}")))
}

/// Upstream's `isValidAddress`: an endpoint is proxied to only when it names a Pod of
/// the namespace that has that address (so an EndpointSlice cannot aim this server anywhere).
fn endpoint_is_pod(server: &ApiServer, ns: &str, addr: &str, target: &Value) -> bool {
    if target["kind"].as_str() != Some("Pod") || target["namespace"].as_str().is_some_and(|n| n != ns) {
        return false;
    }
    let Some(pod) = target["name"].as_str().and_then(|name| object(server, "pods", ns, name)) else {
        return false;
    };
    pod["status"]["podIP"].as_str() == Some(addr)
        || pod["status"]["podIPs"].as_array().into_iter().flatten().any(|p| p["ip"].as_str() == Some(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_moves_from_the_query_into_the_path() {
        let q = Some("command=sh&container=c&stdin=true");
        assert_eq!(query_without_container(q), "command=sh&stdin=true");
        assert_eq!(query_param(q, "container").as_deref(), Some("c"));
        assert_eq!(
            query_param(Some("sinceTime=2024-01-01T00%3A00%3A00Z"), "sinceTime").as_deref(),
            Some("2024-01-01T00:00:00Z")
        );
    }

    #[test]
    fn a_bearer_token_rides_in_a_websocket_subprotocol_and_is_taken_out() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        // base64url("tok/en?") without padding: "dG9rL2VuPw".
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.dG9rL2VuPw"),
        );
        h.append(http::header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("v4.channel.k8s.io"));
        assert_eq!(take_websocket_bearer(&mut h), Ok(Some("tok/en?".to_string())));
        let left: Vec<_> = h.get_all(http::header::SEC_WEBSOCKET_PROTOCOL).iter().collect();
        assert_eq!(left, vec!["v5.channel.k8s.io,v4.channel.k8s.io"]);

        let mut only = http::HeaderMap::new();
        only.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        only.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("base64url.bearer.authorization.k8s.io.dG9rL2VuPw"),
        );
        assert_eq!(take_websocket_bearer(&mut only), Err(WebSocketTokenError::NoOtherProtocol));
        only.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v5.channel.k8s.io,base64url.bearer.authorization.k8s.io.%%"),
        );
        assert_eq!(take_websocket_bearer(&mut only), Err(WebSocketTokenError::Encoding));
        // Not a WebSocket: the header means nothing.
        only.remove(http::header::UPGRADE);
        assert_eq!(take_websocket_bearer(&mut only), Ok(None));
    }

    #[test]
    fn proxy_ids_split_as_upstream() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(split_scheme_name_port("web:80"), Some(("", "web", "80")));
        assert_eq!(split_scheme_name_port("https:web:443"), Some(("https", "web", "443")));
        assert_eq!(split_scheme_name_port("https:web:"), Some(("https", "web", "")));
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }
}
