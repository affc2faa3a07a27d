//! The kubelet's HTTP endpoints: `/healthz` on the local healthz port, and on
//! the HTTPS port (10250) `/healthz`, `/pods` (what this kubelet runs),
//! `/containerLogs/<namespace>/<pod>/<container>` from the CRI log files
//! (streamed; see logs.rs), `/exec`, `/attach` and `/portForward` (proxied to
//! the runtime's streaming server; see streaming.rs), and `/stats/summary`,
//! `/metrics/resource` and `/metrics` (see stats.rs). Every request on the
//! HTTPS port is authenticated and authorized first (see server_auth.rs).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};

use crate::workers::PodWorkers;

// Declared here rather than in lib.rs, which is owned elsewhere; it belongs beside server.rs.
#[path = "streaming.rs"]
pub mod streaming;

#[path = "server_auth.rs"]
pub mod server_auth;

/// A response body: whole, or streamed (logs).
pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub struct Server {
    pub workers: Arc<PodWorkers>,
    pub stats: Arc<crate::stats::StatsProvider>,
    pub metrics: Arc<crate::stats::KubeletMetrics>,
    pub runtime: crate::cri::Runtime,
    /// Who may call the HTTPS API.
    pub auth: Arc<server_auth::KubeletAuth>,
}

/// `--streaming-connection-idle-timeout`'s default; see [`set_idle_timeout`].
static IDLE_TIMEOUT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Sets how long an exec/attach/port-forward stream may stay idle (once, at start).
pub fn set_idle_timeout(d: Duration) {
    let _ = IDLE_TIMEOUT.set(d);
}

fn idle_timeout() -> Duration {
    IDLE_TIMEOUT.get().copied().unwrap_or(Duration::from_secs(4 * 3600))
}

pub fn empty() -> Body {
    Full::new(Bytes::new()).boxed()
}

pub fn text(code: u16, body: impl Into<Bytes>, content_type: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

const PLAIN: &str = "text/plain; charset=utf-8";

impl Server {
    /// Authenticates and authorizes a request of the HTTPS port, then serves it.
    async fn serve_authorized(
        &self,
        req: Request<hyper::body::Incoming>,
        peer: Option<&server_auth::User>,
    ) -> Response<Body> {
        match self.auth.check(&req, peer).await {
            Ok(_) => self.handle(req).await,
            Err(server_auth::Refusal::Unauthorized) => text(401, "Unauthorized", PLAIN),
            Err(server_auth::Refusal::Forbidden(msg)) => text(403, msg, PLAIN),
            Err(server_auth::Refusal::Error(msg)) => text(500, msg, PLAIN),
        }
    }

    /// The endpoints that read the runtime; the rest are answered by `respond`.
    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        match path.as_str() {
            "/stats/summary" | "/stats/summary/" => match self.stats.summary().await {
                Ok(s) => text(200, serde_json::to_string(&s).unwrap_or_default(), "application/json"),
                Err(e) => text(500, format!("{e}\n"), PLAIN),
            },
            "/metrics/resource" => text(200, self.stats.resource_metrics().await, PROMETHEUS),
            "/metrics" => match self.metrics.render(&self.runtime).await {
                Ok(body) => text(200, body, "application/openmetrics-text; version=1.0.0; charset=utf-8"),
                Err(e) => text(500, format!("{e}\n"), PLAIN),
            },
            p if p.starts_with("/containerLogs/") => self.container_logs(p, &query).await,
            p if p.starts_with("/exec/") || p.starts_with("/attach/") => self.exec_or_attach(req).await,
            p if p.starts_with("/portForward/") => self.port_forward(req).await,
            _ => self.respond(&req),
        }
    }

    fn respond<B>(&self, req: &Request<B>) -> Response<Body> {
        let path = req.uri().path();
        match path {
            "/healthz" | "/healthz/ping" | "/healthz/syncloop" => text(200, "ok", PLAIN),
            "/pods" | "/pods/" => {
                let items: Vec<serde_json::Value> =
                    self.workers.pods().iter().map(|p| serde_json::to_value(p.as_ref()).unwrap_or_default()).collect();
                let list = serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
                text(200, list.to_string(), "application/json")
            }
            _ => text(404, "404 page not found\n", PLAIN),
        }
    }

    fn find_pod(&self, ns: &str, name: &str) -> Option<Arc<k8s_openapi::api::core::v1::Pod>> {
        self.workers
            .pods()
            .into_iter()
            .find(|p| p.metadata.namespace.as_deref() == Some(ns) && p.metadata.name.as_deref() == Some(name))
    }

    /// The pod's containers named `container`, newest attempt first.
    async fn containers_named(&self, uid: &str, container: &str) -> Vec<crate::cri::Container> {
        let mut found: Vec<crate::cri::Container> = self
            .runtime
            .pod_containers(uid)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.labels.get(crate::labels::CONTAINER_NAME).map(String::as_str) == Some(container))
            .collect();
        found.sort_by_key(|c| std::cmp::Reverse((c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0), c.created_at)));
        found
    }

    /// `/containerLogs/<namespace>/<pod>/<container>` with the PodLogOptions query.
    async fn container_logs(&self, path: &str, query: &str) -> Response<Body> {
        let parts: Vec<&str> = path.trim_start_matches("/containerLogs/").split('/').collect();
        let [ns, name, container] = parts.as_slice() else {
            return text(400, "expected /containerLogs/<namespace>/<pod>/<container>", PLAIN);
        };
        let opts = match crate::logs::LogOptions::from_query(query) {
            Ok(o) => o,
            Err(e) => return text(400, e.to_string(), PLAIN),
        };
        let Some(pod) = self.find_pod(ns, name) else {
            return text(404, format!("pod {ns}/{name} not found"), PLAIN);
        };
        let uid = crate::containers::pod_uid(&pod);
        let found = self.containers_named(&uid, container).await;
        let pick = if opts.previous { found.get(1) } else { found.first() };
        let Some(c) = pick else {
            let msg = if opts.previous {
                format!("previous terminated container {container:?} in pod {name:?} not found")
            } else {
                format!("container {container:?} in pod {name:?} is waiting to start: ContainerCreating")
            };
            return text(400, msg, PLAIN);
        };
        let log_path = match self.runtime.container_status(&c.id).await {
            Ok(Some(s)) if !s.log_path.is_empty() => std::path::PathBuf::from(s.log_path),
            _ => return text(404, format!("no logs for container {container:?} in pod {name:?}"), PLAIN),
        };
        let running = c.state == crate::cri::ContainerState::ContainerRunning as i32 && !opts.previous;
        let (runtime, id) = (self.runtime.clone(), c.id.clone());
        let still: crate::logs::StillRunning = Box::new(move || {
            let (runtime, id) = (runtime.clone(), id.clone());
            Box::pin(async move {
                running
                    && matches!(runtime.container_status(&id).await, Ok(Some(s))
                        if s.state == crate::cri::ContainerState::ContainerRunning as i32)
            })
        });
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        tokio::spawn(crate::logs::stream(log_path, opts, still, tx));
        let frames = futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |b| {
            Ok::<_, Infallible>(hyper::body::Frame::data(b))
        });
        let mut r = Response::new(http_body_util::StreamBody::new(frames).boxed());
        r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(PLAIN));
        r
    }

    /// `/exec|attach/<namespace>/<pod>/[<uid>/]<container>`: proxied to the runtime's streaming server.
    async fn exec_or_attach(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let exec = path.starts_with("/exec/");
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').skip(1).collect();
        let (ns, name, container) = match parts.as_slice() {
            [ns, name, container] | [ns, name, _, container] => (*ns, *name, *container),
            _ => return text(400, "expected /exec/<namespace>/<pod>/<container>", PLAIN),
        };
        let (cmd, io) = streaming::stream_params(req.uri().query().unwrap_or(""));
        if exec && cmd.is_empty() {
            return text(400, "you must specify at least one command for the container", PLAIN);
        }
        let Some(pod) = self.find_pod(ns, name) else {
            return text(404, format!("pod {ns}/{name} not found"), PLAIN);
        };
        let uid = crate::containers::pod_uid(&pod);
        let running = self
            .containers_named(&uid, container)
            .await
            .into_iter()
            .find(|c| c.state == crate::cri::ContainerState::ContainerRunning as i32);
        let Some(c) = running else {
            return text(400, format!("container {container} is not running in pod {name}"), PLAIN);
        };
        let url = if exec { self.runtime.exec(&c.id, cmd, io).await } else { self.runtime.attach(&c.id, io).await };
        match url {
            Ok(url) => streaming::proxy_to_runtime(req, &url, idle_timeout()).await,
            Err(e) => text(500, e.to_string(), PLAIN),
        }
    }

    /// `/portForward/<namespace>/<pod>[/<uid>]`: proxied to the runtime's streaming server.
    async fn port_forward(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let parts: Vec<&str> = path.trim_start_matches("/portForward/").split('/').collect();
        let (ns, name) = match parts.as_slice() {
            [ns, name] | [ns, name, _] => (*ns, *name),
            _ => return text(400, "expected /portForward/<namespace>/<pod>", PLAIN),
        };
        let Some(pod) = self.find_pod(ns, name) else {
            return text(404, format!("pod {ns}/{name} not found"), PLAIN);
        };
        let uid = crate::containers::pod_uid(&pod);
        let sandbox = self
            .runtime
            .pod_sandboxes(&uid)
            .await
            .unwrap_or_default()
            .into_iter()
            .find(|s| s.state == crate::cri::PodSandboxState::SandboxReady as i32);
        let Some(sandbox) = sandbox else {
            return text(400, format!("pod {name} has no running sandbox"), PLAIN);
        };
        match self.runtime.port_forward(&sandbox.id, Vec::new()).await {
            Ok(url) => streaming::proxy_to_runtime(req, &url, idle_timeout()).await,
            Err(e) => text(500, e.to_string(), PLAIN),
        }
    }
}

/// Serves `server` on an HTTPS listener and plain `/healthz` on the healthz address.
pub async fn serve(
    server: Arc<Server>,
    tls: Arc<rustls::ServerConfig>,
    https: std::net::SocketAddr,
    healthz: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let plain = tokio::net::TcpListener::bind(healthz).await?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = plain.accept().await else { continue };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(text(200, "ok", "text/plain; charset=utf-8"))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let listener = tokio::net::TcpListener::bind(https).await?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else { return };
            // rustls hands over only certificates that chain to --client-ca-file.
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(server_auth::user_from_certificate)
                .map(Arc::new);
            let service = hyper::service::service_fn(move |req| {
                let (server, peer) = (server.clone(), peer.clone());
                async move { Ok::<_, Infallible>(server.serve_authorized(req, peer.as_deref()).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
