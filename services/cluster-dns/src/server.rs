//! DNS over UDP and TCP: one question per message, answered from the
//! current [`Zone`] or relayed to the upstream resolvers.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::forward::Forwarder;
use crate::zone::{Lookup, Zone};

/// The UDP payload this server offers through EDNS (the DNS flag day's value).
pub const EDNS_PAYLOAD: u16 = 1232;
/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// How many CNAMEs are followed inside the zone.
const MAX_CNAME_CHAIN: usize = 8;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub proto: String,
    /// `cluster` (answered from the zone) or `forward`.
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RcodeLabels {
    pub rcode: String,
}

pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub responses: Family<RcodeLabels, Counter>,
    pub duration: Histogram,
    pub services: Gauge,
    pub zone_updates: Counter,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            requests: Family::default(),
            responses: Family::default(),
            duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            services: Gauge::default(),
            zone_updates: Counter::default(),
        };
        registry.register("cluster_dns_requests", "DNS requests by transport and by who answered", m.requests.clone());
        registry.register("cluster_dns_responses", "DNS responses by response code", m.responses.clone());
        registry.register("cluster_dns_request_duration_seconds", "Time to answer a request", m.duration.clone());
        registry.register("cluster_dns_zone_services", "Services in the zone", m.services.clone());
        registry.register("cluster_dns_zone_updates", "Rebuilds of the zone from the API", m.zone_updates.clone());
        m
    }
}

/// What the listeners share: the zone (None until the caches are synced), the forwarder, metrics.
pub struct Handler {
    pub zone: RwLock<Option<Arc<Zone>>>,
    pub domain: String,
    pub forwarder: Forwarder,
    pub metrics: Metrics,
}

impl Handler {
    pub fn new(domain: &str, forwarder: Forwarder, metrics: Metrics) -> Handler {
        Handler { zone: RwLock::new(None), domain: domain.trim_end_matches('.').to_lowercase(), forwarder, metrics }
    }

    pub fn set_zone(&self, zone: Zone) {
        self.metrics.services.set(zone.service_count() as i64);
        self.metrics.zone_updates.inc();
        if let Ok(mut z) = self.zone.write() {
            *z = Some(Arc::new(zone));
        }
    }

    fn current(&self) -> Option<Arc<Zone>> {
        self.zone.read().ok().and_then(|z| z.clone())
    }

    /// The response to one request, or None when none is due (not a query, or unparseable without a header).
    pub async fn handle(&self, request: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let start = Instant::now();
        let out = self.respond(request, tcp).await;
        self.metrics.duration.observe(start.elapsed().as_secs_f64());
        if let Some(bytes) = &out {
            self.metrics.responses.get_or_create(&RcodeLabels { rcode: rcode_name(bytes).into() }).inc();
        }
        out
    }

    async fn respond(&self, request: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let proto = if tcp { "tcp" } else { "udp" };
        let req = match Message::from_vec(request) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "malformed request");
                // FORMERR when at least the header is there.
                if request.len() < 12 {
                    return None;
                }
                let id = u16::from_be_bytes([request[0], request[1]]);
                if request[2] & 0x80 != 0 {
                    return None;
                }
                return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr).to_vec().ok();
            }
        };
        if req.metadata.message_type != MessageType::Query {
            return None;
        }
        if req.metadata.op_code != OpCode::Query {
            return error_response(&req, ResponseCode::NotImp);
        }
        let [query] = req.queries.as_slice() else { return error_response(&req, ResponseCode::FormErr) };
        let lower = query.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
        let zone = self.current();
        let lookup = match &zone {
            Some(z) => z.lookup(query.name(), query.query_type()),
            // Before the first sync the zone's names cannot be answered yet; the rest can be forwarded.
            None if in_domain(&lower, &self.domain) => {
                self.count(proto, "cluster");
                return error_response(&req, ResponseCode::ServFail);
            }
            None => Lookup::Forward,
        };
        if lookup == Lookup::Forward {
            self.count(proto, "forward");
            return Some(match self.forwarder.relay(request, tcp).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::debug!(name = %lower, error = %e, "forwarding failed");
                    error_response(&req, ResponseCode::ServFail)?
                }
            });
        }
        self.count(proto, "cluster");
        let zone = zone?;
        let mut resp = response_to(&req);
        resp.metadata.authoritative = true;
        self.fill(&zone, &mut resp, query, lookup).await;
        encode(resp, &req, tcp)
    }

    fn count(&self, proto: &str, source: &str) {
        self.metrics.requests.get_or_create(&RequestLabels { proto: proto.into(), source: source.into() }).inc();
    }

    /// Puts the lookup's records into `resp`, following ExternalName CNAMEs in the zone or upstream.
    async fn fill(&self, zone: &Zone, resp: &mut Message, query: &Query, mut lookup: Lookup) {
        let qtype = query.query_type();
        for _ in 0..MAX_CNAME_CHAIN {
            match lookup {
                Lookup::Answer { answers, additionals } => {
                    resp.answers.extend(answers);
                    resp.additionals.extend(additionals);
                    return;
                }
                Lookup::NoData => {
                    resp.authorities.push(zone.soa());
                    return;
                }
                Lookup::NxDomain => {
                    // After a CNAME the answer stays NOERROR only if something was found; RFC 6604 keeps the last rcode.
                    resp.metadata.response_code = ResponseCode::NXDomain;
                    resp.authorities.push(zone.soa());
                    return;
                }
                Lookup::Forward => return,
                Lookup::Cname { record, target } => {
                    resp.answers.push(*record);
                    if matches!(qtype, RecordType::CNAME | RecordType::ANY) {
                        return;
                    }
                    let lower = target.to_ascii().trim_end_matches('.').to_ascii_lowercase();
                    if zone.contains(&lower) {
                        lookup = zone.lookup(&target, qtype);
                        continue;
                    }
                    // Out of the zone: the upstream resolvers resolve the target (CoreDNS does the same).
                    match self.forwarder.resolve(&target, qtype).await {
                        Ok(upstream) => {
                            resp.answers.extend(upstream.answers);
                            resp.metadata.response_code = upstream.metadata.response_code;
                        }
                        Err(e) => tracing::debug!(target = %lower, error = %e, "resolving an ExternalName target"),
                    }
                    return;
                }
            }
        }
    }
}

/// The response code of a response's header, as DNS tools print it (the metrics' label).
fn rcode_name(bytes: &[u8]) -> &'static str {
    match bytes.get(3).map(|b| b & 0x0f) {
        Some(0) => "NOERROR",
        Some(1) => "FORMERR",
        Some(2) => "SERVFAIL",
        Some(3) => "NXDOMAIN",
        Some(4) => "NOTIMP",
        Some(5) => "REFUSED",
        _ => "OTHER",
    }
}

fn in_domain(name: &str, domain: &str) -> bool {
    name == domain || name.strip_suffix(domain).is_some_and(|p| p.ends_with('.'))
}

fn response_to(req: &Message) -> Message {
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.metadata.checking_disabled = req.metadata.checking_disabled;
    resp.add_queries(req.queries.iter().cloned());
    if req.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        resp.set_edns(edns);
    }
    resp
}

fn error_response(req: &Message, code: ResponseCode) -> Option<Vec<u8>> {
    let mut resp = response_to(req);
    resp.metadata.response_code = code;
    resp.to_vec().ok()
}

/// Serializes `resp`; over UDP, a response larger than the client takes is truncated (TC set, the client retries over TCP).
fn encode(resp: Message, req: &Message, tcp: bool) -> Option<Vec<u8>> {
    let bytes = resp.to_vec().ok()?;
    let limit = match &req.edns {
        Some(e) => e.max_payload().clamp(512, EDNS_PAYLOAD) as usize,
        None => 512,
    };
    if tcp || bytes.len() <= limit {
        return Some(bytes);
    }
    resp.truncate().to_vec().ok()
}

/// Answers UDP requests on `socket` until the process ends.
pub async fn serve_udp(socket: Arc<UdpSocket>, handler: Arc<Handler>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "udp receive");
                continue;
            }
        };
        let request = buf[..n].to_vec();
        let (socket, handler) = (socket.clone(), handler.clone());
        tokio::spawn(async move {
            if let Some(resp) = handler.handle(&request, false).await {
                if let Err(e) = socket.send_to(&resp, peer).await {
                    tracing::debug!(%peer, error = %e, "udp send");
                }
            }
        });
    }
}

/// Answers TCP connections (length-prefixed messages, in order) until the process ends.
pub async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "tcp accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(e) = tcp_connection(stream, &handler).await {
                tracing::trace!(%peer, error = %e, "tcp connection ended");
            }
        });
    }
}

async fn tcp_connection(mut stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let mut request = vec![0u8; u16::from_be_bytes(len) as usize];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut request))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request body"))??;
        let Some(resp) = handler.handle(&request, true).await else { continue };
        let Ok(n) = u16::try_from(resp.len()) else { continue };
        let mut out = Vec::with_capacity(resp.len() + 2);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&resp);
        stream.write_all(&out).await?;
    }
}

/// `host`, `host:port` or `[v6]:port` (default port 53) as a socket address.
pub fn parse_server(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    s.parse::<std::net::IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

/// The `nameserver` lines of a resolv.conf (link-local addresses with a zone are skipped).
pub fn resolv_conf_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()).flatten()
        })
        .filter_map(parse_server)
        .collect()
}

/// A name from a string for queries (`example.com` → `example.com.`).
pub fn query_name(s: &str) -> Option<Name> {
    let s = if s.ends_with('.') { s.to_string() } else { format!("{s}.") };
    Name::from_ascii(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::Forwarder;
    use k8s_openapi::api::core::v1::{Service, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn handler(upstreams: Vec<SocketAddr>) -> Handler {
        let h = Handler::new("cluster.local", Forwarder::new(upstreams), Metrics::new(&mut Registry::default()));
        let svc = Service {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some("kubernetes".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec { cluster_ip: Some("10.96.0.1".into()), ..Default::default() }),
            ..Default::default()
        };
        h.set_zone(Zone::build("cluster.local", 5, 1, [&svc], []));
        h
    }

    fn query(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(query_name(name).unwrap(), qtype));
        if edns {
            m.set_edns(Edns::new());
        }
        m.to_vec().unwrap()
    }

    #[tokio::test]
    async fn answers_keep_the_id_and_question_and_are_authoritative() {
        let h = handler(Vec::new());
        let req = query("kubernetes.default.svc.cluster.local", RecordType::A, true);
        let resp = Message::from_vec(&h.handle(&req, false).await.unwrap()).unwrap();
        let req = Message::from_vec(&req).unwrap();
        assert_eq!(resp.metadata.id, req.metadata.id);
        assert_eq!(resp.metadata.message_type, MessageType::Response);
        assert!(resp.metadata.authoritative && resp.metadata.recursion_available);
        assert_eq!(resp.queries, req.queries);
        assert_eq!(resp.answers.len(), 1);
        assert_eq!(resp.answers[0].data.to_string(), "10.96.0.1");
        assert!(resp.edns.is_some());

        let resp = Message::from_vec(
            &h.handle(&query("nope.default.svc.cluster.local", RecordType::A, false), false).await.unwrap(),
        )
        .unwrap();
        assert_eq!(resp.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(resp.authorities.len(), 1, "the SOA for negative caching");
    }

    #[tokio::test]
    async fn no_upstream_is_servfail_and_garbage_is_formerr_or_dropped() {
        let h = handler(Vec::new());
        let resp =
            Message::from_vec(&h.handle(&query("example.com", RecordType::A, false), false).await.unwrap()).unwrap();
        assert_eq!(resp.metadata.response_code, ResponseCode::ServFail);
        assert!(h.handle(&[1, 2, 3], false).await.is_none());
        let resp =
            Message::from_vec(&h.handle(&[0xab, 0xcd, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 9], false).await.unwrap()).unwrap();
        assert_eq!((resp.metadata.id, resp.metadata.response_code), (0xabcd, ResponseCode::FormErr));
    }

    #[test]
    fn resolv_conf_and_server_addresses() {
        let servers =
            resolv_conf_servers("# c\nsearch a b\nnameserver 10.0.0.2\nnameserver ::1\nnameserver fe80::1%eth0\n");
        assert_eq!(servers, ["10.0.0.2:53".parse().unwrap(), "[::1]:53".parse().unwrap()]);
        assert_eq!(parse_server("127.0.0.1:5353"), Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(parse_server("nonsense"), None);
    }
}
