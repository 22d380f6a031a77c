//! Accepts the malformed HTTP/2 `:authority` values that real etcd clients send.
//!
//! etcdctl 3.4 sends the endpoint URL itself (`http://127.0.0.1:2379`) as the authority of its
//! per-endpoint calls (`endpoint status`, `endpoint health`, ...), and clientv3 3.5.0 sends
//! `#initially=[...]` on every call. Go's gRPC server ignores the authority; the `h2` crate under
//! tonic rejects such a request with a stream reset and offers no switch to relax that. So each
//! client connection is read through this filter, which decodes the request header blocks
//! (HPACK), turns a URL-shaped authority into its `host:port` (or drops an authority that is not
//! one at all), and re-encodes the blocks for `h2`.
//!
//! Decoding and re-encoding every header block costs more CPU than the rest of a small request
//! (measured: about a fifth of the server's CPU on serializable reads), and the clients that
//! need it show it on their first request: a connection's first header block decides. If its
//! authority is well-formed, the block and everything after it pass through untouched (so `h2`
//! reads the client's own HPACK state); if not, every block of the connection is decoded and
//! re-encoded, which keeps the HPACK tables on both sides of the filter consistent. Connections
//! that do not start with the HTTP/2 preface (HTTP/1.1) pass through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The largest frame payload `h2` accepts by default (SETTINGS_MAX_FRAME_SIZE).
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// A header block larger than this is refused (h2's own header list limit is 16 KiB).
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// A header block being collected across HEADERS and CONTINUATION frames.
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

enum Mode {
    /// Waiting for the first bytes to tell HTTP/2 from anything else.
    Preface,
    /// HTTP/2, before the first header block is complete.
    FirstBlock,
    /// HTTP/2 from a client that sent a malformed authority: every header block is re-encoded.
    Repairing,
    Passthrough,
}

/// A connection whose request headers get a well-formed `:authority`.
pub struct LenientAuthority<S> {
    inner: S,
    mode: Mode,
    raw: BytesMut,
    ready: BytesMut,
    pending: Option<PendingBlock>,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
    eof: bool,
}

impl<S> LenientAuthority<S> {
    pub fn new(inner: S) -> Self {
        LenientAuthority {
            inner,
            mode: Mode::Preface,
            raw: BytesMut::with_capacity(16 * 1024),
            ready: BytesMut::with_capacity(16 * 1024),
            pending: None,
            decoder: Decoder::new(),
            encoder: Encoder::new(),
            eof: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Moves what can be moved from `raw` to `ready`; false when more input is needed.
    fn process(&mut self) -> io::Result<bool> {
        match self.mode {
            Mode::Passthrough => {
                if self.raw.is_empty() {
                    return Ok(false);
                }
                let all = self.raw.split();
                self.ready.extend_from_slice(&all);
                Ok(true)
            }
            Mode::Preface => {
                let n = self.raw.len().min(PREFACE.len());
                if self.raw[..n] != PREFACE[..n] {
                    self.mode = Mode::Passthrough;
                    return Ok(true);
                }
                if n < PREFACE.len() {
                    return Ok(false);
                }
                let preface = self.raw.split_to(PREFACE.len());
                self.ready.extend_from_slice(&preface);
                self.mode = Mode::FirstBlock;
                Ok(true)
            }
            Mode::FirstBlock | Mode::Repairing => {
                if self.raw.len() < FRAME_HEADER_LEN {
                    return Ok(false);
                }
                let len = (usize::from(self.raw[0]) << 16) | (usize::from(self.raw[1]) << 8) | usize::from(self.raw[2]);
                if self.raw.len() < FRAME_HEADER_LEN + len {
                    return Ok(false);
                }
                let kind = self.raw[3];
                let flags = self.raw[4];
                let stream_id = u32::from_be_bytes([self.raw[5], self.raw[6], self.raw[7], self.raw[8]]) & 0x7fff_ffff;
                let frame = self.raw.split_to(FRAME_HEADER_LEN + len);
                match kind {
                    TYPE_HEADERS => self.headers_frame(stream_id, flags, &frame[FRAME_HEADER_LEN..])?,
                    TYPE_CONTINUATION if self.pending.as_ref().is_some_and(|p| p.stream_id == stream_id) => {
                        let pending = self.pending.as_mut().expect("checked above");
                        pending.block.extend_from_slice(&frame[FRAME_HEADER_LEN..]);
                        if pending.block.len() > MAX_HEADER_BLOCK {
                            return Err(io::Error::other("request header block too large"));
                        }
                        if flags & FLAG_END_HEADERS != 0 {
                            self.finish_block()?;
                        }
                    }
                    // Anything else, including protocol violations, is h2's to judge.
                    _ => self.ready.extend_from_slice(&frame),
                }
                Ok(true)
            }
        }
    }

    fn headers_frame(&mut self, stream_id: u32, flags: u8, payload: &[u8]) -> io::Result<()> {
        let bad = || io::Error::other("malformed HEADERS frame");
        let mut body = payload;
        let mut pad = 0usize;
        if flags & FLAG_PADDED != 0 {
            pad = usize::from(*body.first().ok_or_else(bad)?);
            body = &body[1..];
        }
        let mut priority = None;
        if flags & FLAG_PRIORITY != 0 {
            let p: [u8; 5] = body.get(..5).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
            priority = Some(p);
            body = &body[5..];
        }
        let fragment = body.get(..body.len().checked_sub(pad).ok_or_else(bad)?).ok_or_else(bad)?;
        self.pending = Some(PendingBlock {
            stream_id,
            end_stream: flags & FLAG_END_STREAM != 0,
            priority,
            block: fragment.to_vec(),
        });
        if flags & FLAG_END_HEADERS != 0 {
            self.finish_block()?;
        }
        Ok(())
    }

    fn finish_block(&mut self) -> io::Result<()> {
        let p = self.pending.take().expect("a block is pending");
        let mut headers = self
            .decoder
            .decode(&p.block)
            .map_err(|e| io::Error::other(format!("undecodable request headers: {e:?}")))?;
        let malformed = headers
            .iter()
            .any(|(name, value)| name.as_slice() == b":authority" && repair_authority(value).as_ref() != Some(value));
        let block = if matches!(self.mode, Mode::FirstBlock) && !malformed {
            // The client's own bytes: h2's HPACK table follows the client's from here on.
            self.mode = Mode::Passthrough;
            p.block.clone()
        } else {
            self.mode = Mode::Repairing;
            headers.retain_mut(|(name, value)| {
                if name.as_slice() != b":authority" {
                    return true;
                }
                match repair_authority(value) {
                    Some(fixed) => {
                        *value = fixed;
                        true
                    }
                    None => false,
                }
            });
            self.encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())))
        };

        let prefix = p.priority.map_or(0, |_| 5);
        let first_len = block.len().min(MAX_FRAME_PAYLOAD - prefix);
        let (first, mut rest) = block.split_at(first_len);
        let mut flags = 0;
        if p.end_stream {
            flags |= FLAG_END_STREAM;
        }
        if p.priority.is_some() {
            flags |= FLAG_PRIORITY;
        }
        if rest.is_empty() {
            flags |= FLAG_END_HEADERS;
        }
        self.put_frame_header(prefix + first.len(), TYPE_HEADERS, flags, p.stream_id);
        if let Some(pr) = p.priority {
            self.ready.put_slice(&pr);
        }
        self.ready.put_slice(first);
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME_PAYLOAD));
            let flags = if after.is_empty() { FLAG_END_HEADERS } else { 0 };
            self.put_frame_header(chunk.len(), TYPE_CONTINUATION, flags, p.stream_id);
            self.ready.put_slice(chunk);
            rest = after;
        }
        Ok(())
    }

    fn put_frame_header(&mut self, len: usize, kind: u8, flags: u8, stream_id: u32) {
        self.ready.put_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
        self.ready.put_u32(stream_id);
    }
}

/// `host:port` for a valid authority or a URL; `None` when nothing usable is in it.
fn repair_authority(value: &[u8]) -> Option<Vec<u8>> {
    if http::uri::Authority::try_from(value).is_ok() {
        return Some(value.to_vec());
    }
    let text = std::str::from_utf8(value).ok()?;
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    let host = after_scheme.split('/').next()?;
    http::uri::Authority::try_from(host).ok().map(|a| a.as_str().as_bytes().to_vec())
}

impl<S: AsyncRead + Unpin> AsyncRead for LenientAuthority<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if matches!(this.mode, Mode::Passthrough) && this.ready.is_empty() && this.raw.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.process()? {
                continue;
            }
            if this.eof {
                // Whatever is left is an incomplete frame: hand it over as it is.
                if !this.raw.is_empty() {
                    let rest = this.raw.split();
                    this.ready.extend_from_slice(&rest);
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut tmp = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut tmp) {
                Poll::Ready(Ok(())) => {
                    if tmp.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.raw.extend_from_slice(tmp.filled());
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LenientAuthority<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for LenientAuthority<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn headers_frame(block: &[u8], flags: u8, stream: u32) -> Vec<u8> {
        let mut f = vec![(block.len() >> 16) as u8, (block.len() >> 8) as u8, block.len() as u8, TYPE_HEADERS, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(block);
        f
    }

    async fn filtered(input: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        LenientAuthority::new(input.as_slice()).read_to_end(&mut out).await.unwrap();
        out
    }

    fn decode_all_header_blocks(mut bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut dec = Decoder::new();
        bytes = &bytes[PREFACE.len()..];
        let mut out = Vec::new();
        while bytes.len() >= 9 {
            let len = (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
            if bytes[3] == TYPE_HEADERS {
                out.push(dec.decode(&bytes[9..9 + len]).unwrap());
            }
            bytes = &bytes[9 + len..];
        }
        out
    }

    #[tokio::test]
    async fn url_authorities_become_host_port_and_junk_is_dropped() {
        let mut enc = Encoder::new();
        let mut input = PREFACE.to_vec();
        let h1: Vec<(&[u8], &[u8])> = vec![(b":method", b"POST"), (b":authority", b"http://127.0.0.1:2379"), (b":path", b"/x")];
        input.extend(headers_frame(&enc.encode(h1), FLAG_END_HEADERS, 1));
        // A data frame passes untouched.
        input.extend_from_slice(&[0, 0, 2, 0, 1, 0, 0, 0, 1, 7, 7]);
        let h2: Vec<(&[u8], &[u8])> = vec![(b":method", b"POST"), (b":authority", b"#initially=[http://a:1]"), (b":path", b"/x")];
        input.extend(headers_frame(&enc.encode(h2), FLAG_END_HEADERS | FLAG_END_STREAM, 3));
        let out = filtered(input).await;
        let blocks = decode_all_header_blocks(&out);
        assert_eq!(blocks.len(), 2);
        assert!(blocks[0].contains(&(b":authority".to_vec(), b"127.0.0.1:2379".to_vec())));
        assert!(!blocks[1].iter().any(|(n, _)| n == b":authority"));
        assert!(out.windows(11).any(|w| w == [0, 0, 2, 0, 1, 0, 0, 0, 1, 7, 7]));
    }

    #[tokio::test]
    async fn blocks_split_over_continuation_frames_are_joined() {
        let mut enc = Encoder::new();
        let long = vec![b'v'; 100];
        let h: Vec<(&[u8], &[u8])> = vec![(b":authority", b"http://h:1/"), (b"x-long", &long)];
        let block = enc.encode(h);
        let (a, b) = block.split_at(10);
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(a, 0, 5));
        let mut cont = vec![0, 0, b.len() as u8, TYPE_CONTINUATION, FLAG_END_HEADERS, 0, 0, 0, 5];
        cont.extend_from_slice(b);
        input.extend(cont);
        let blocks = decode_all_header_blocks(&filtered(input).await);
        assert_eq!(blocks[0][0], (b":authority".to_vec(), b"h:1".to_vec()));
        assert_eq!(blocks[0][1].1, long);
    }

    #[tokio::test]
    async fn a_connection_whose_first_authority_is_well_formed_passes_through() {
        let mut enc = Encoder::new();
        let mut input = PREFACE.to_vec();
        // SETTINGS before the first block, as clients send it.
        input.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let h1: Vec<(&[u8], &[u8])> = vec![(b":method", b"POST"), (b":authority", b"127.0.0.1:2379"), (b":path", b"/x")];
        input.extend(headers_frame(&enc.encode(h1), FLAG_END_HEADERS, 1));
        input.extend_from_slice(&[0, 0, 2, 0, 1, 0, 0, 0, 1, 7, 7]);
        let h2: Vec<(&[u8], &[u8])> = vec![(b":method", b"POST"), (b":authority", b"127.0.0.1:2379"), (b":path", b"/y")];
        input.extend(headers_frame(&enc.encode(h2), FLAG_END_HEADERS | FLAG_END_STREAM, 3));
        assert_eq!(filtered(input.clone()).await, input, "byte for byte");
    }

    #[tokio::test]
    async fn http1_passes_through() {
        let req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(filtered(req.clone()).await, req);
    }
}
