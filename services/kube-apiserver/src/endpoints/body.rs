//! The response body: a whole buffer, or a stream of chunks (watches).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::mpsc;

/// A response body: full bytes or a channel of chunk batches. A batch is a
/// list of shared buffers (watch events encoded once for all watchers),
/// written as separate frames so nothing is copied per watcher.
pub enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Vec<Bytes>>, VecDeque<Bytes>),
}

impl Body {
    pub fn full(b: Bytes) -> Self {
        Body::Full(Some(b))
    }

    pub fn empty() -> Self {
        Body::Full(None)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx, pending) => {
                if let Some(b) = pending.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(batch)) => {
                        pending.extend(batch);
                        Poll::Ready(pending.pop_front().map(|b| Ok(Frame::data(b))))
                    }
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Body::Full(Some(b)) => http_body::SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => http_body::SizeHint::with_exact(0),
            Body::Stream(..) => http_body::SizeHint::default(),
        }
    }
}
