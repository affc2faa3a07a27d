//! SPDY/3.1 as Kubernetes uses it (the framing of moby/spdystream): control
//! frames for streams and the session, data frames per stream, and header
//! blocks compressed with one zlib context per direction, primed with the
//! SPDY/3 dictionary. Flow control frames are read and ignored, as the Go
//! peers neither enforce windows nor send updates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("SPDY connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    #[error("SPDY header block: {0}")]
    Compression(String),
    #[error("SPDY stream {0} was reset with status {1}")]
    Reset(u32, u32),
    #[error("SPDY connection closed")]
    Closed,
}

pub type Result<T> = std::result::Result<T, SpdyError>;

pub const FLAG_FIN: u8 = 0x01;
const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;
/// RST_STREAM status: the stream was refused.
pub const REFUSED_STREAM: u32 = 3;
/// RST_STREAM status: the stream was cancelled.
pub const CANCEL: u32 = 5;
/// The largest data frame this side writes.
pub const MAX_DATA_FRAME: usize = 64 * 1024;
/// The largest decompressed header block accepted.
const MAX_HEADER_BLOCK: usize = 1024 * 1024;

/// Header names (lowercase) and values, in order.
pub type Headers = Vec<(String, String)>;

/// One SPDY/3.1 frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream { stream_id: u32, associated_to: u32, priority: u8, flags: u8, headers: Headers },
    SynReply { stream_id: u32, flags: u8, headers: Headers },
    RstStream { stream_id: u32, status: u32 },
    Settings { flags: u8, entries: Vec<(u8, u32, u32)> },
    Ping { id: u32 },
    GoAway { last_good_stream_id: u32, status: u32 },
    Headers { stream_id: u32, flags: u8, headers: Headers },
    WindowUpdate { stream_id: u32, delta: u32 },
    Data { stream_id: u32, flags: u8, data: Bytes },
}

/// The SPDY/3 header compression dictionary: length-prefixed common header
/// names and values, then a run of common strings (1423 bytes, Adler-32 0xe3c6a7c2).
pub fn dictionary() -> &'static [u8] {
    static DICT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
            "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
            "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
            "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
            "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        );
        let mut d = Vec::with_capacity(1423);
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(TAIL.as_bytes());
        d
    })
}

/// The compression state of one direction pair: what this side writes and what it reads.
pub struct HeaderCodec {
    deflate: Compress,
    inflate: Decompress,
}

impl Default for HeaderCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCodec {
    pub fn new() -> HeaderCodec {
        let mut deflate = Compress::new(Compression::default(), true);
        // Only fails for a stream already started; this one is new.
        let _ = deflate.set_dictionary(dictionary());
        HeaderCodec { deflate, inflate: Decompress::new(true) }
    }

    pub fn encode(&mut self, headers: &[(String, String)]) -> Result<Vec<u8>> {
        let mut block = Vec::new();
        block.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            block.extend_from_slice(&(name.len() as u32).to_be_bytes());
            block.extend_from_slice(name.as_bytes());
            block.extend_from_slice(&(value.len() as u32).to_be_bytes());
            block.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut pos = 0;
        loop {
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&block[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            pos += (self.deflate.total_in() - before) as usize;
            if pos >= block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(256);
        }
    }

    pub fn decode(&mut self, compressed: &[u8]) -> Result<Headers> {
        let mut out: Vec<u8> = Vec::with_capacity(compressed.len() * 4 + 256);
        let mut pos = 0;
        loop {
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            match self.inflate.decompress_vec(&compressed[pos..], &mut out, FlushDecompress::Sync) {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(dictionary()).map_err(|e| SpdyError::Compression(e.to_string()))?;
                }
                Err(e) => return Err(SpdyError::Compression(e.to_string())),
            }
            pos += (self.inflate.total_in() - before_in) as usize;
            let progressed = self.inflate.total_in() != before_in || self.inflate.total_out() != before_out;
            if out.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError::Compression("header block too large".into()));
            }
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
                continue;
            }
            if pos >= compressed.len() || !progressed {
                break;
            }
        }
        parse_header_block(&out)
    }
}

fn parse_header_block(b: &[u8]) -> Result<Headers> {
    let bad = || SpdyError::Protocol("truncated header block".into());
    let mut pos = 0usize;
    let u32_at = |pos: &mut usize| -> Result<u32> {
        let v = b.get(*pos..*pos + 4).ok_or_else(bad)?;
        *pos += 4;
        Ok(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    };
    let count = u32_at(&mut pos)?;
    let mut headers = Vec::new();
    for _ in 0..count {
        let n = u32_at(&mut pos)? as usize;
        let name = b.get(pos..pos.saturating_add(n)).ok_or_else(bad)?;
        pos += n;
        let n = u32_at(&mut pos)? as usize;
        let value = b.get(pos..pos.saturating_add(n)).ok_or_else(bad)?;
        pos += n;
        headers.push((String::from_utf8_lossy(name).into_owned(), String::from_utf8_lossy(value).into_owned()));
    }
    Ok(headers)
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + payload.len());
    v.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    v.extend_from_slice(&kind.to_be_bytes());
    v.push(flags);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    v.extend_from_slice(payload);
    v
}

impl Frame {
    /// The frame's bytes; header blocks go through `codec`.
    pub fn encode(&self, codec: &mut HeaderCodec) -> Result<Vec<u8>> {
        Ok(match self {
            Frame::SynStream { stream_id, associated_to, priority, flags, headers } => {
                let mut p = Vec::new();
                p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&(associated_to & 0x7fff_ffff).to_be_bytes());
                p.push((priority & 0x7) << 5);
                p.push(0);
                p.extend(codec.encode(headers)?);
                control(SYN_STREAM, *flags, &p)
            }
            Frame::SynReply { stream_id, flags, headers } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend(codec.encode(headers)?);
                control(SYN_REPLY, *flags, &p)
            }
            Frame::Headers { stream_id, flags, headers } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend(codec.encode(headers)?);
                control(HEADERS, *flags, &p)
            }
            Frame::RstStream { stream_id, status } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(RST_STREAM, 0, &p)
            }
            Frame::Settings { flags, entries } => {
                let mut p = (entries.len() as u32).to_be_bytes().to_vec();
                for (f, id, value) in entries {
                    p.push(*f);
                    p.extend_from_slice(&id.to_be_bytes()[1..]);
                    p.extend_from_slice(&value.to_be_bytes());
                }
                control(SETTINGS, *flags, &p)
            }
            Frame::Ping { id } => control(PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good_stream_id, status } => {
                let mut p = (last_good_stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(GOAWAY, 0, &p)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
                control(WINDOW_UPDATE, 0, &p)
            }
            Frame::Data { stream_id, flags, data } => {
                if data.len() > 0xff_ffff {
                    return Err(SpdyError::Protocol("data frame too large".into()));
                }
                let mut v = Vec::with_capacity(8 + data.len());
                v.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                v.push(*flags);
                v.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                v.extend_from_slice(data);
                v
            }
        })
    }

    /// Reads one frame; `Ok(None)` at a clean end of the connection.
    pub async fn read<R: AsyncRead + Unpin>(r: &mut R, codec: &mut HeaderCodec) -> Result<Option<Frame>> {
        let mut head = [0u8; 8];
        match r.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut p = vec![0u8; len];
        r.read_exact(&mut p).await?;
        if head[0] & 0x80 == 0 {
            let stream_id = be32(&head, 0) & 0x7fff_ffff;
            return Ok(Some(Frame::Data { stream_id, flags, data: Bytes::from(p) }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        let kind = u16::from_be_bytes([head[2], head[3]]);
        if version != VERSION {
            return Err(SpdyError::Protocol(format!("unsupported SPDY version {version}")));
        }
        let need = |n: usize| {
            if len < n {
                Err(SpdyError::Protocol(format!("control frame {kind} too short ({len} bytes)")))
            } else {
                Ok(())
            }
        };
        Ok(Some(match kind {
            SYN_STREAM => {
                need(10)?;
                Frame::SynStream {
                    stream_id: be32(&p, 0) & 0x7fff_ffff,
                    associated_to: be32(&p, 4) & 0x7fff_ffff,
                    priority: p[8] >> 5,
                    flags,
                    headers: codec.decode(&p[10..])?,
                }
            }
            SYN_REPLY => {
                need(4)?;
                Frame::SynReply { stream_id: be32(&p, 0) & 0x7fff_ffff, flags, headers: codec.decode(&p[4..])? }
            }
            HEADERS => {
                need(4)?;
                Frame::Headers { stream_id: be32(&p, 0) & 0x7fff_ffff, flags, headers: codec.decode(&p[4..])? }
            }
            RST_STREAM => {
                need(8)?;
                Frame::RstStream { stream_id: be32(&p, 0) & 0x7fff_ffff, status: be32(&p, 4) }
            }
            SETTINGS => {
                need(4)?;
                let n = be32(&p, 0) as usize;
                need(4 + n.saturating_mul(8))?;
                let entries = (0..n)
                    .map(|i| {
                        let at = 4 + i * 8;
                        (p[at], u32::from_be_bytes([0, p[at + 1], p[at + 2], p[at + 3]]), be32(&p, at + 4))
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                need(4)?;
                Frame::Ping { id: be32(&p, 0) }
            }
            GOAWAY => {
                need(4)?;
                let status = if len >= 8 { be32(&p, 4) } else { 0 };
                Frame::GoAway { last_good_stream_id: be32(&p, 0) & 0x7fff_ffff, status }
            }
            WINDOW_UPDATE => {
                need(8)?;
                Frame::WindowUpdate { stream_id: be32(&p, 0) & 0x7fff_ffff, delta: be32(&p, 4) & 0x7fff_ffff }
            }
            other => return Err(SpdyError::Protocol(format!("unknown control frame type {other}"))),
        }))
    }
}

/// What the session's reader saw, in the order it arrived on the connection.
#[derive(Debug)]
pub enum Event {
    Data {
        stream_id: u32,
        data: Bytes,
    },
    /// The peer half-closed the stream.
    Fin {
        stream_id: u32,
    },
    Reset {
        stream_id: u32,
        status: u32,
    },
    /// The connection ended (with the error, if it was not a clean end).
    Closed(Option<String>),
}

struct Writer {
    io: Box<dyn AsyncWrite + Send + Unpin>,
    codec: HeaderCodec,
}

struct Shared {
    writer: tokio::sync::Mutex<Writer>,
    replies: Mutex<HashMap<u32, oneshot::Sender<Result<()>>>>,
    next_id: AtomicU32,
}

/// The client end of a SPDY session: it opens the streams (odd ids) and
/// reads every frame in one task, which reports stream data in order.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

impl Session {
    /// Starts a session on an upgraded connection; events arrive on the receiver.
    pub fn client<IO>(io: IO) -> (Session, mpsc::Receiver<Event>)
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(io);
        let shared = Arc::new(Shared {
            writer: tokio::sync::Mutex::new(Writer { io: Box::new(writer), codec: HeaderCodec::new() }),
            replies: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(1),
        });
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(read_loop(shared.clone(), reader, tx));
        (Session { shared }, rx)
    }

    async fn send(&self, frame: Frame) -> Result<()> {
        let mut w = self.shared.writer.lock().await;
        let Writer { io, codec } = &mut *w;
        let bytes = frame.encode(codec)?;
        io.write_all(&bytes).await?;
        io.flush().await?;
        Ok(())
    }

    /// Opens a stream with `headers` and waits for the peer's SYN_REPLY.
    pub async fn open(&self, headers: &[(&str, &str)]) -> Result<u32> {
        let stream_id = self.shared.next_id.fetch_add(2, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut r) = self.shared.replies.lock() {
            r.insert(stream_id, tx);
        }
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.send(Frame::SynStream { stream_id, associated_to: 0, priority: 0, flags: 0, headers }).await?;
        rx.await.map_err(|_| SpdyError::Closed)??;
        Ok(stream_id)
    }

    /// Writes `data` on a stream, in frames of at most [`MAX_DATA_FRAME`].
    pub async fn write(&self, stream_id: u32, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(MAX_DATA_FRAME) {
            self.send(Frame::Data { stream_id, flags: 0, data: Bytes::copy_from_slice(chunk) }).await?;
        }
        Ok(())
    }

    /// Half-closes a stream (its reader sees EOF).
    pub async fn close_stream(&self, stream_id: u32) -> Result<()> {
        self.send(Frame::Data { stream_id, flags: FLAG_FIN, data: Bytes::new() }).await
    }

    pub async fn reset(&self, stream_id: u32, status: u32) -> Result<()> {
        self.send(Frame::RstStream { stream_id, status }).await
    }

    /// Says goodbye and shuts the connection's write side.
    pub async fn shutdown(&self) {
        let last = self.shared.next_id.load(Ordering::Relaxed).saturating_sub(2);
        let _ = self.send(Frame::GoAway { last_good_stream_id: last, status: 0 }).await;
        let _ = self.shared.writer.lock().await.io.shutdown().await;
    }
}

async fn read_loop<R: AsyncRead + Unpin>(shared: Arc<Shared>, mut reader: R, events: mpsc::Sender<Event>) {
    let session = Session { shared: shared.clone() };
    let mut codec = HeaderCodec::new();
    let end = loop {
        let frame = match Frame::read(&mut reader, &mut codec).await {
            Ok(Some(f)) => f,
            Ok(None) => break None,
            Err(e) => break Some(e.to_string()),
        };
        let sent = match frame {
            Frame::Data { stream_id, flags, data } => {
                let mut ok = true;
                if !data.is_empty() {
                    ok = events.send(Event::Data { stream_id, data }).await.is_ok();
                }
                if flags & FLAG_FIN != 0 {
                    ok = events.send(Event::Fin { stream_id }).await.is_ok();
                }
                ok
            }
            Frame::SynReply { stream_id, flags, .. } => {
                if let Some(tx) = shared.replies.lock().ok().and_then(|mut r| r.remove(&stream_id)) {
                    let _ = tx.send(Ok(()));
                }
                flags & FLAG_FIN == 0 || events.send(Event::Fin { stream_id }).await.is_ok()
            }
            Frame::RstStream { stream_id, status } => {
                if let Some(tx) = shared.replies.lock().ok().and_then(|mut r| r.remove(&stream_id)) {
                    let _ = tx.send(Err(SpdyError::Reset(stream_id, status)));
                }
                events.send(Event::Reset { stream_id, status }).await.is_ok()
            }
            Frame::Ping { id } => session.send(Frame::Ping { id }).await.is_ok(),
            Frame::SynStream { stream_id, .. } => session.reset(stream_id, REFUSED_STREAM).await.is_ok(),
            Frame::GoAway { .. } | Frame::Settings { .. } | Frame::Headers { .. } | Frame::WindowUpdate { .. } => true,
        };
        if !sent {
            break None;
        }
    };
    if let Some(e) = &end {
        tracing::debug!(error = %e, "SPDY session ended");
    }
    if let Ok(mut r) = shared.replies.lock() {
        for (_, tx) in r.drain() {
            let _ = tx.send(Err(SpdyError::Closed));
        }
    }
    let _ = events.send(Event::Closed(end)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adler32(b: &[u8]) -> u32 {
        let (mut a, mut s) = (1u32, 0u32);
        for &x in b {
            a = (a + u32::from(x)) % 65521;
            s = (s + a) % 65521;
        }
        (s << 16) | a
    }

    #[test]
    fn the_dictionary_is_the_spdy3_one() {
        assert_eq!(dictionary().len(), 1423);
        assert_eq!(adler32(dictionary()), 0xe3c6_a7c2);
    }

    #[test]
    fn header_blocks_round_trip_across_frames_of_one_context() {
        let (mut a, mut b) = (HeaderCodec::new(), HeaderCodec::new());
        for i in 0..5 {
            let h: Headers = vec![("streamtype".into(), "stdout".into()), ("requestid".into(), i.to_string())];
            let wire = a.encode(&h).unwrap();
            // The first block names the dictionary in its zlib header.
            if i == 0 {
                assert_eq!(wire[1] & 0x20, 0x20, "FDICT set");
            }
            assert_eq!(b.decode(&wire).unwrap(), h);
        }
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let (mut enc, mut dec) = (HeaderCodec::new(), HeaderCodec::new());
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 2,
                flags: 0,
                headers: vec![("streamtype".into(), "error".into())],
            },
            Frame::SynReply { stream_id: 1, flags: FLAG_FIN, headers: vec![] },
            Frame::Data { stream_id: 1, flags: FLAG_FIN, data: Bytes::from_static(b"hello") },
            Frame::RstStream { stream_id: 3, status: CANCEL },
            Frame::Settings { flags: 0, entries: vec![(0, 7, 65536)] },
            Frame::Ping { id: 2 },
            Frame::GoAway { last_good_stream_id: 5, status: 0 },
            Frame::WindowUpdate { stream_id: 1, delta: 1000 },
        ];
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend(f.encode(&mut enc).unwrap());
        }
        let mut r = &wire[..];
        for f in &frames {
            assert_eq!(&Frame::read(&mut r, &mut dec).await.unwrap().unwrap(), f);
        }
        assert!(Frame::read(&mut r, &mut dec).await.unwrap().is_none());
    }

    /// A stand-in for the Go server side: replies to every stream, echoes
    /// stdin to stdout, and closes stdout when stdin closes.
    async fn echo_server(io: tokio::io::DuplexStream) {
        let (mut r, mut w) = tokio::io::split(io);
        let (mut rd, mut wr) = (HeaderCodec::new(), HeaderCodec::new());
        let (mut stdin, mut stdout) = (0, 0);
        while let Ok(Some(f)) = Frame::read(&mut r, &mut rd).await {
            let out = match f {
                Frame::SynStream { stream_id, headers, .. } => {
                    match headers.iter().find(|(k, _)| k == "streamtype").map(|(_, v)| v.as_str()) {
                        Some("stdin") => stdin = stream_id,
                        Some("stdout") => stdout = stream_id,
                        _ => {}
                    }
                    vec![Frame::SynReply { stream_id, flags: 0, headers: vec![] }, Frame::Ping { id: 2 }]
                }
                Frame::Data { stream_id, flags, data } if stream_id == stdin => {
                    let mut v = vec![Frame::Data { stream_id: stdout, flags: 0, data }];
                    if flags & FLAG_FIN != 0 {
                        v.push(Frame::Data { stream_id: stdout, flags: FLAG_FIN, data: Bytes::new() });
                    }
                    v
                }
                _ => vec![],
            };
            for f in out {
                w.write_all(&f.encode(&mut wr).unwrap()).await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_client_session_opens_streams_writes_and_sees_fin() {
        let (a, b) = tokio::io::duplex(1 << 16);
        tokio::spawn(echo_server(b));
        let (s, mut events) = Session::client(a);
        let stdin = s.open(&[("streamType", "stdin")]).await.unwrap();
        let stdout = s.open(&[("streamType", "stdout")]).await.unwrap();
        assert_eq!((stdin, stdout), (1, 3));
        let big = vec![7u8; 200_000];
        s.write(stdin, &big).await.unwrap();
        s.close_stream(stdin).await.unwrap();
        let mut got = Vec::new();
        loop {
            match events.recv().await.unwrap() {
                Event::Data { stream_id, data } => {
                    assert_eq!(stream_id, stdout);
                    got.extend_from_slice(&data);
                }
                Event::Fin { stream_id } => {
                    assert_eq!(stream_id, stdout);
                    break;
                }
                e => panic!("{e:?}"),
            }
        }
        assert_eq!(got, big);
        s.shutdown().await;
    }
}
