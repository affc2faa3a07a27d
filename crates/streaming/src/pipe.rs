//! Copying between two upgraded connections until both ends close or
//! nothing moves for the idle timeout (`--streaming-connection-idle-timeout`).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a pipe ended.
#[derive(Debug, PartialEq, Eq)]
pub enum PipeEnd {
    /// Both sides closed.
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
}

/// Copies `a` ⇄ `b`, half-closing each direction at its EOF. Returns the bytes
/// copied a→b and b→a, and why it ended.
pub async fn pipe<A, B>(a: A, b: B, idle: Duration) -> (u64, u64, PipeEnd)
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let mut abuf = vec![0u8; 64 * 1024];
    let mut bbuf = vec![0u8; 64 * 1024];
    let (mut a_open, mut b_open) = (true, true);
    let (mut ab, mut ba) = (0u64, 0u64);
    while a_open || b_open {
        tokio::select! {
            r = ar.read(&mut abuf), if a_open => match r {
                Ok(n) if n > 0 => {
                    if bw.write_all(&abuf[..n]).await.is_err() || bw.flush().await.is_err() {
                        break;
                    }
                    ab += n as u64;
                }
                _ => {
                    a_open = false;
                    let _ = bw.shutdown().await;
                }
            },
            r = br.read(&mut bbuf), if b_open => match r {
                Ok(n) if n > 0 => {
                    if aw.write_all(&bbuf[..n]).await.is_err() || aw.flush().await.is_err() {
                        break;
                    }
                    ba += n as u64;
                }
                _ => {
                    b_open = false;
                    let _ = aw.shutdown().await;
                }
            },
            _ = tokio::time::sleep(idle) => return (ab, ba, PipeEnd::Idle),
        }
    }
    (ab, ba, PipeEnd::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_both_ways_and_ends_when_both_close() {
        let (a, mut a_peer) = tokio::io::duplex(1024);
        let (b, mut b_peer) = tokio::io::duplex(1024);
        let task = tokio::spawn(pipe(a, b, Duration::from_secs(5)));
        a_peer.write_all(b"to b").await.unwrap();
        let mut got = [0u8; 4];
        b_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"to b");
        b_peer.write_all(b"to a!").await.unwrap();
        let mut got = [0u8; 5];
        a_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"to a!");
        drop(a_peer);
        drop(b_peer);
        assert_eq!(task.await.unwrap(), (4, 5, PipeEnd::Closed));
    }

    #[tokio::test]
    async fn an_idle_pipe_times_out() {
        let (a, _a_peer) = tokio::io::duplex(1024);
        let (b, _b_peer) = tokio::io::duplex(1024);
        let r = pipe(a, b, Duration::from_millis(100)).await;
        assert_eq!(r.2, PipeEnd::Idle);
    }
}
