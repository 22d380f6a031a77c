//! A socket writer that gathers small writes until the protocol flushes, and writes a large
//! one together with what was gathered in one `writev`.
//!
//! Why: HTTP/2 (the `h2` crate) copies a DATA frame into its own write buffer only when the
//! frame is small: under 256 bytes when the socket takes vectored writes, under 1 KiB when it
//! does not. A larger frame is written at once, with a write of its own. A gRPC answer that
//! carries a key-value is larger than 256 bytes, so with vectored writes every read's answer
//! cost a `writev` of its own (1.1 per serializable read at 100 clients), even when many
//! answers were ready together. Reported as not vectored, the answers under 1 KiB that are
//! ready together leave in one write, as etcd's gRPC server (grpc-go) sends them.
//!
//! Without vectored writes `h2` hands a larger frame over in two writes (its header, then
//! its payload); a plain buffer would then write twice (or copy big payloads). Here a write
//! that does not fit is sent in one `writev` behind what was gathered, so a large value still
//! costs one system call per frame.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered before a write goes out with them instead of joining them.
const GATHER_BYTES: usize = 8 << 10;

/// Wraps a socket; reads pass through.
pub struct WriteCoalescing<S> {
    inner: S,
    gathered: Vec<u8>,
}

impl<S> WriteCoalescing<S> {
    pub fn new(inner: S) -> Self {
        WriteCoalescing { inner, gathered: Vec::new() }
    }

    #[cfg(test)]
    fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncWrite + Unpin> WriteCoalescing<S> {
    /// Writes out everything gathered.
    fn poll_write_gathered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.gathered.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.gathered))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.gathered.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteCoalescing<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteCoalescing<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.gathered.len() + buf.len() <= GATHER_BYTES {
            if this.gathered.capacity() == 0 {
                this.gathered.reserve_exact(GATHER_BYTES);
            }
            this.gathered.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        // Too large to gather: it goes out behind what was gathered, in one system call.
        while !this.gathered.is_empty() {
            let slices = [IoSlice::new(&this.gathered), IoSlice::new(buf)];
            let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let from_gathered = n.min(this.gathered.len());
            this.gathered.drain(..from_gathered);
            if n > from_gathered {
                return Poll::Ready(Ok(n - from_gathered));
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_gathered(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_gathered(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    /// Not vectored: see the module comment.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Records each write call the wrapper makes.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        /// Most bytes one write call takes (to exercise partial writes).
        limit: Option<usize>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let n = self.limit.map_or(buf.len(), |l| l.min(buf.len()));
            self.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(mut self: Pin<&mut Self>, _: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
            let mut all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if let Some(l) = self.limit {
                all.truncate(l);
            }
            let n = all.len();
            self.writes.push(all);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn small_writes_leave_together_at_the_flush() {
        let mut w = WriteCoalescing::new(Recorder::default());
        w.write_all(b"one ").await.unwrap();
        w.write_all(b"two ").await.unwrap();
        w.write_all(b"three").await.unwrap();
        assert!(w.get_ref().writes.is_empty(), "nothing written before the flush");
        w.flush().await.unwrap();
        assert_eq!(w.get_ref().writes, vec![b"one two three".to_vec()]);
        assert_eq!(w.get_ref().flushes, 1);
    }

    #[tokio::test]
    async fn a_large_write_leaves_in_one_call_behind_the_gathered_bytes() {
        let mut w = WriteCoalescing::new(Recorder::default());
        w.write_all(b"header").await.unwrap();
        let payload = vec![7u8; GATHER_BYTES * 2];
        w.write_all(&payload).await.unwrap();
        let mut expected = b"header".to_vec();
        expected.extend_from_slice(&payload);
        assert_eq!(w.get_ref().writes, vec![expected], "one write call for both");
        w.flush().await.unwrap();
        assert_eq!(w.get_ref().writes.len(), 1, "nothing left to write at the flush");
    }

    #[tokio::test]
    async fn partial_writes_keep_the_order_of_the_bytes() {
        let mut w = WriteCoalescing::new(Recorder { limit: Some(1000), ..Default::default() });
        let mut sent = Vec::new();
        for i in 0..40u8 {
            let chunk = vec![i; 37 + 211 * (i as usize % 5)];
            sent.extend_from_slice(&chunk);
            w.write_all(&chunk).await.unwrap();
        }
        let big = vec![0xee; GATHER_BYTES + 123];
        sent.extend_from_slice(&big);
        w.write_all(&big).await.unwrap();
        w.write_all(b"tail").await.unwrap();
        sent.extend_from_slice(b"tail");
        w.shutdown().await.unwrap();
        let written: Vec<u8> = w.get_ref().writes.concat();
        assert_eq!(written, sent);
    }

    #[tokio::test]
    async fn over_a_socket_the_peer_reads_what_was_written() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut w = WriteCoalescing::new(a);
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let writer = tokio::spawn(async move {
            for chunk in data.chunks(700) {
                w.write_all(chunk).await.unwrap();
            }
            w.shutdown().await.unwrap();
            data
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, writer.await.unwrap());
        assert!(!WriteCoalescing::new(tokio::io::duplex(1).0).is_write_vectored());
    }
}
