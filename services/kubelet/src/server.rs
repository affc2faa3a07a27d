//! The kubelet's HTTP endpoints: `/healthz` on the local healthz port, and on
//! the HTTPS port (10250) `/healthz`, `/pods` (what this kubelet runs) and
//! `/containerLogs/<namespace>/<pod>/<container>` from the CRI log files;
//! `/stats/summary`, `/metrics/resource` and `/metrics` (see stats.rs).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};

use crate::workers::PodWorkers;

pub struct Server {
    pub workers: Arc<PodWorkers>,
    pub stats: Arc<crate::stats::StatsProvider>,
    pub metrics: Arc<crate::stats::KubeletMetrics>,
    pub runtime: crate::cri::Runtime,
}

fn text(code: u16, body: impl Into<Bytes>, content_type: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

impl Server {
    /// The endpoints that read the runtime; the rest are answered by `respond`.
    async fn handle<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
        match req.uri().path() {
            "/stats/summary" | "/stats/summary/" => match self.stats.summary().await {
                Ok(s) => text(200, serde_json::to_string(&s).unwrap_or_default(), "application/json"),
                Err(e) => text(500, format!("{e}\n"), "text/plain; charset=utf-8"),
            },
            "/metrics/resource" => text(200, self.stats.resource_metrics().await, PROMETHEUS),
            "/metrics" => match self.metrics.render(&self.runtime).await {
                Ok(body) => text(200, body, "application/openmetrics-text; version=1.0.0; charset=utf-8"),
                Err(e) => text(500, format!("{e}\n"), "text/plain; charset=utf-8"),
            },
            _ => self.respond(req),
        }
    }

    fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        match path {
            "/healthz" | "/healthz/ping" | "/healthz/syncloop" => text(200, "ok", "text/plain; charset=utf-8"),
            "/pods" | "/pods/" => {
                let items: Vec<serde_json::Value> =
                    self.workers.pods().iter().map(|p| serde_json::to_value(p.as_ref()).unwrap_or_default()).collect();
                let list = serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
                text(200, list.to_string(), "application/json")
            }
            p if p.starts_with("/containerLogs/") => self.container_logs(p, req.uri().query().unwrap_or("")),
            _ => text(404, "404 page not found\n", "text/plain; charset=utf-8"),
        }
    }

    fn container_logs(&self, path: &str, query: &str) -> Response<Full<Bytes>> {
        let parts: Vec<&str> = path.trim_start_matches("/containerLogs/").split('/').collect();
        let [ns, name, container] = parts.as_slice() else {
            return text(400, "expected /containerLogs/<namespace>/<pod>/<container>", "text/plain");
        };
        let Some(pod) = self
            .workers
            .pods()
            .into_iter()
            .find(|p| p.metadata.namespace.as_deref() == Some(*ns) && p.metadata.name.as_deref() == Some(*name))
        else {
            return text(404, format!("pod {ns}/{name} not found"), "text/plain");
        };
        let dir = crate::containers::log_directory(&pod).join(container);
        let mut files: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().trim_end_matches(".log").parse::<u32>().ok()?;
                Some((n, e.path()))
            })
            .collect();
        files.sort();
        let previous = query.split('&').any(|kv| kv == "previous=true");
        let pick = if previous { files.iter().rev().nth(1) } else { files.last() };
        let Some((_, file)) = pick else {
            return text(404, format!("no logs for container {container:?}"), "text/plain");
        };
        let tail: Option<usize> =
            query.split('&').find_map(|kv| kv.strip_prefix("tailLines=")).and_then(|v| v.parse().ok());
        let content = crate::logs::tail_text(&file.display().to_string(), tail.unwrap_or(usize::MAX));
        let body = if content.is_empty() { content } else { format!("{content}\n") };
        text(200, body, "text/plain")
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
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.handle(&req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
