//! `exec`, `attach` and `portForward`: the kubelet asks the runtime (CRI
//! Exec/Attach/PortForward) for a URL on its streaming server, sends the
//! client's upgrade request there, and once both sides switched protocols
//! copies bytes between them. The client's protocol (SPDY/3.1 with
//! `v4.channel.k8s.io` or `portforward.k8s.io`, or a channel.k8s.io
//! WebSocket) goes through untouched; the apiserver translates kubectl's.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use crate::server::{text, Body};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("invalid streaming URL {0:?} from the runtime")]
    Url(String),
    #[error("connecting to the runtime's streaming server: {0}")]
    Connect(#[from] std::io::Error),
    #[error("talking to the runtime's streaming server: {0}")]
    Http(#[from] hyper::Error),
    #[error("building the request: {0}")]
    Request(#[from] http::Error),
}

/// The query of an exec or attach request: the command and which streams.
pub fn stream_params(query: &str) -> (Vec<String>, crate::cri::StreamIo) {
    let mut cmd = Vec::new();
    let mut io = crate::cri::StreamIo::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        let on = v == "true" || v == "1";
        match k {
            "command" => cmd.push(v),
            "stdin" | "input" => io.stdin = on,
            "stdout" | "output" => io.stdout = on,
            "stderr" | "error" => io.stderr = on,
            "tty" => io.tty = on,
            _ => {}
        }
    }
    // A terminal merges stderr into stdout; the runtime refuses both.
    if io.tty {
        io.stderr = false;
    }
    (cmd, io)
}

fn percent_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Headers of the upgrade that go to the runtime and back.
fn hop_header(name: &http::HeaderName) -> bool {
    let n = name.as_str();
    n == "connection" || n == "upgrade" || n == "x-stream-protocol-version" || n.starts_with("sec-websocket-")
}

/// Sends `req`'s upgrade to `url` on the runtime's streaming server and
/// pipes the two upgraded connections; a refusal is passed back as is.
pub async fn proxy_to_runtime(mut req: Request<hyper::body::Incoming>, url: &str, idle: Duration) -> Response<Body> {
    match forward(&mut req, url).await {
        Ok((status, headers, upstream)) => {
            let Some(upstream) = upstream else {
                let mut r = text(status.as_u16(), headers.1, "text/plain; charset=utf-8");
                *r.status_mut() = status;
                return r;
            };
            let mut resp = Response::new(crate::server::empty());
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            for (k, v) in headers.0.iter().filter(|(k, _)| hop_header(k)) {
                resp.headers_mut().append(k.clone(), v.clone());
            }
            tokio::spawn(async move {
                let downstream = match hyper::upgrade::on(&mut req).await {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::debug!(error = %e, "client upgrade failed");
                        return;
                    }
                };
                let (a, b, end) = streaming::pipe::pipe(TokioIo::new(downstream), TokioIo::new(upstream), idle).await;
                tracing::debug!(to_runtime = a, from_runtime = b, ?end, "stream ended");
            });
            resp
        }
        Err(e) => text(500, format!("{e}\n"), "text/plain; charset=utf-8"),
    }
}

type Forwarded = (StatusCode, (http::HeaderMap, Bytes), Option<hyper::upgrade::Upgraded>);

async fn forward(req: &mut Request<hyper::body::Incoming>, url: &str) -> Result<Forwarded, StreamError> {
    let uri: http::Uri = url.parse().map_err(|_| StreamError::Url(url.to_string()))?;
    let authority = uri.authority().ok_or_else(|| StreamError::Url(url.to_string()))?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((authority.host().trim_matches(['[', ']']), port)).await?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "runtime streaming connection");
        }
    });
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut out =
        Request::builder().method(req.method().clone()).uri(path).header(http::header::HOST, authority.as_str());
    for (k, v) in req.headers().iter().filter(|(k, _)| hop_header(k)) {
        out = out.header(k, v);
    }
    let out = out.body(http_body_util::Empty::<Bytes>::new())?;
    let mut resp = sender.send_request(out).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Ok((status, (headers, body), None));
    }
    let headers = resp.headers().clone();
    let upgraded = hyper::upgrade::on(&mut resp).await?;
    Ok((StatusCode::SWITCHING_PROTOCOLS, (headers, Bytes::new()), Some(upgraded)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_parameters_as_kubectl_sends_them() {
        let (cmd, io) =
            stream_params("command=sh&command=-c&command=echo%20out%3B+exit+3&stdin=true&stdout=true&stderr=true");
        assert_eq!(cmd, vec!["sh", "-c", "echo out; exit 3"]);
        assert!(io.stdin && io.stdout && io.stderr && !io.tty);
        let (_, io) = stream_params("command=sh&stdout=1&stderr=1&tty=1");
        assert!(io.tty && io.stdout && !io.stderr, "a tty has no separate stderr");
    }
}
