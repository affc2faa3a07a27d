//! The connect subresources, served by a node's kubelet through this server:
//! `pods/log` (proxied, streamed), `pods/exec` and `pods/attach` (kubectl's
//! `v5.channel.k8s.io`/`v4.channel.k8s.io` WebSocket translated into SPDY/3.1
//! `v4.channel.k8s.io` towards the kubelet, as upstream's stream translator
//! does), `pods/portforward` (kubectl's WebSocket tunnel of SPDY unwrapped
//! into a SPDY upgrade to the kubelet), plain SPDY upgrades (kubectl's
//! fallback) proxied as they are, and `nodes/proxy`, `pods/proxy`.
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
        Ok(KubeletClient { tls: Arc::new(config), preferred })
    }

    /// Sends `req` to the kubelet at `addr`; the connection serves upgrades.
    async fn send(
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
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().unwrap_or(10250) as u16;
    let addresses = node["status"]["addresses"].as_array().cloned().unwrap_or_default();
    for kind in &server.kubelet.preferred {
        if let Some(a) = addresses.iter().find(|a| a["type"].as_str() == Some(kind)) {
            if let Some(ip) = a["address"].as_str() {
                return Ok((ip.to_string(), port));
            }
        }
    }
    Err(ApiError::new(
        503,
        "ServiceUnavailable",
        format!("no preferred addresses found; known addresses: {addresses:?}"),
    ))
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

/// Whether this handler serves `info`'s subresource.
pub fn serves(info: &RequestInfo) -> bool {
    info.group.is_empty()
        && matches!(
            (info.resource.as_str(), info.subresource.as_deref()),
            ("pods", Some("log" | "exec" | "attach" | "portforward" | "proxy")) | ("nodes", Some("proxy"))
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

/// kubectl's plain SPDY (its fallback): the upgrade goes to the kubelet as it is.
async fn proxy_upgrade(
    server: &ApiServer,
    mut req: Request<hyper::body::Incoming>,
    addr: &(String, u16),
    path: String,
) -> Result<Response<Body>, ApiError> {
    let mut out = Request::post(path);
    for (k, v) in req.headers() {
        let n = k.as_str();
        if n == "connection" || n == "upgrade" || n == "x-stream-protocol-version" {
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
        let n = k.as_str();
        if n == "connection" || n == "upgrade" || n == "x-stream-protocol-version" {
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
    let protocol = channel::negotiate(offered, &[channel::V5, channel::V4])
        .ok_or_else(|| ApiError::bad_request(format!("unable to upgrade: no supported protocol in {offered:?}")))?;
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
    let protocol = channel::negotiate(offered, &[channel::PORT_FORWARD_TUNNEL])
        .ok_or_else(|| ApiError::bad_request(format!("unable to upgrade: no supported protocol in {offered:?}")))?;
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

/// The rest of a proxy path after `/proxy`, with the query.
fn proxy_rest(req: &Request<hyper::body::Incoming>) -> String {
    let path = req.uri().path();
    let rest = path.split_once("/proxy").map(|(_, r)| r).unwrap_or("");
    let rest = if rest.is_empty() { "/" } else { rest };
    match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    }
}

async fn node_proxy(
    server: &ApiServer,
    req: Request<hyper::body::Incoming>,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let (node, port) = match name.rsplit_once(':') {
        Some((n, p)) => (n, p.parse::<u16>().ok()),
        None => (name, None),
    };
    let mut addr = kubelet_address(server, node)?;
    if let Some(p) = port {
        addr.1 = p;
    }
    let resp = server.kubelet.send(&addr, get(proxy_rest(&req))?).await?;
    Ok(stream_body(resp))
}

/// `pods/<name[:port]>/proxy/<path>`: plain HTTP to the pod's IP.
async fn pod_proxy(
    server: &ApiServer,
    req: Request<hyper::body::Incoming>,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let (pod_name, port) = match name.rsplit_once(':') {
        Some((n, p)) => (n, p.parse::<u16>().map_err(|_| ApiError::bad_request(format!("invalid port {p}")))?),
        None => (name, 80),
    };
    let pod = object(server, "pods", ns, pod_name)
        .ok_or_else(|| ApiError::not_found(&apimachinery::status::Qualified::new("", "pods"), pod_name))?;
    let ip = pod["status"]["podIP"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::new(503, "ServiceUnavailable", format!("pod {pod_name} has no IP")))?
        .to_string();
    let unreachable = |e: String| ApiError::new(503, "ServiceUnavailable", format!("error trying to reach pod: {e}"));
    let tcp = tokio::net::TcpStream::connect((ip.as_str(), port)).await.map_err(|e| unreachable(e.to_string()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let out = Request::builder()
        .method(req.method().clone())
        .uri(proxy_rest(&req))
        .header(http::header::HOST, format!("{ip}:{port}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = sender.send_request(out).await.map_err(|e| unreachable(e.to_string()))?;
    Ok(stream_body(resp))
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
}
