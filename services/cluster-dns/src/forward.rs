//! Forwarding to the upstream resolvers (`--upstream`, or the nameservers
//! of `--resolv-conf`): the client's message is relayed as it is, over the
//! transport it came on, to each upstream in turn until one answers.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream gets to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolvers configured")]
    NoUpstream,
    #[error("no upstream answered: {0}")]
    Failed(String),
    #[error("encoding the query: {0}")]
    Encode(String),
}

#[derive(Debug, Clone)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Forwarder {
        Forwarder { upstreams }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Relays `request` and returns the upstream's response bytes unchanged.
    pub async fn relay(&self, request: &[u8], tcp: bool) -> Result<Vec<u8>, ForwardError> {
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let id = request.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])).unwrap_or(0);
        let mut errors = Vec::new();
        for upstream in &self.upstreams {
            let result =
                if tcp { exchange_tcp(*upstream, request).await } else { exchange_udp(*upstream, request, id).await };
            match result {
                Ok(bytes) => return Ok(bytes),
                Err(e) => errors.push(format!("{upstream}: {e}")),
            }
        }
        Err(ForwardError::Failed(errors.join("; ")))
    }

    /// Asks the upstreams for `name`/`qtype` itself (over UDP, then TCP if the answer was truncated).
    pub async fn resolve(&self, name: &Name, qtype: RecordType) -> Result<Message, ForwardError> {
        let mut q = Message::query();
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(name.clone(), qtype));
        let bytes = q.to_vec().map_err(|e| ForwardError::Encode(e.to_string()))?;
        let resp = self.relay(&bytes, false).await?;
        let mut msg = Message::from_vec(&resp).map_err(|e| ForwardError::Failed(e.to_string()))?;
        if msg.metadata.truncation {
            let resp = self.relay(&bytes, true).await?;
            msg = Message::from_vec(&resp).map_err(|e| ForwardError::Failed(e.to_string()))?;
        }
        Ok(msg)
    }
}

fn is_response_to(bytes: &[u8], id: u16) -> bool {
    bytes.len() >= 12 && u16::from_be_bytes([bytes[0], bytes[1]]) == id && bytes[2] & 0x80 != 0
}

async fn exchange_udp(upstream: SocketAddr, request: &[u8], id: u16) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(request).await?;
    let mut buf = vec![0u8; 65535];
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        loop {
            let n = socket.recv(&mut buf).await?;
            // Anything but the answer to this query (a stray or spoofed datagram) is ignored.
            if is_response_to(&buf[..n], id) {
                return Ok(buf[..n].to_vec());
            }
        }
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

async fn exchange_tcp(upstream: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let mut stream = TcpStream::connect(upstream).await?;
        let len = u16::try_from(request.len())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "request too large"))?;
        let mut out = Vec::with_capacity(request.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(request);
        stream.write_all(&out).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut resp = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut resp).await?;
        Ok(resp)
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::MessageType;

    /// A one-shot upstream on loopback that answers with a fixed A record.
    #[tokio::test]
    async fn relays_to_the_first_upstream_that_answers() {
        let up = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up_addr = up.local_addr().unwrap();
        // A dead upstream first: nothing listens there (bound then dropped).
        let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, peer) = up.recv_from(&mut buf).await.unwrap();
            let mut resp = Message::from_vec(&buf[..n]).unwrap();
            resp.metadata.message_type = MessageType::Response;
            resp.add_answer(hickory_proto::rr::Record::from_rdata(
                resp.queries[0].name().clone(),
                60,
                hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A([192, 0, 2, 1].into())),
            ));
            up.send_to(&resp.to_vec().unwrap(), peer).await.unwrap();
        });
        let f = Forwarder::new(vec![dead, up_addr]);
        let msg = f.resolve(&Name::from_ascii("example.com.").unwrap(), RecordType::A).await.unwrap();
        assert_eq!(msg.answers[0].data.to_string(), "192.0.2.1");
        assert!(matches!(Forwarder::new(Vec::new()).relay(&[0; 12], false).await, Err(ForwardError::NoUpstream)));
    }
}
