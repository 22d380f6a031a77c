//! Reading request bodies: whole (with a size limit) or as a stream of JSON values.

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Larger than the limit (bytes).
    TooLarge(usize),
    /// The connection failed while reading.
    Read(String),
}

/// The whole body, refused once it grows past `limit` bytes.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut data = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn only_whitespace(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_whitespace)
}

/// The JSON values of a body, one after another as they arrive (what etcd's gateway reads on
/// its bidirectional streams). A value larger than `limit` bytes, invalid JSON or a value cut
/// short by the end of the body ends the stream with an error.
///
/// The buffer is parsed again only when [`ValueEnd`] sees a value end, or when it has doubled
/// since the last try (which finds invalid JSON early): parsing it on every read made a value
/// sent in many small reads cost time quadratic in its size.
pub fn json_values<T: DeserializeOwned + Send + 'static>(
    body: Body,
    limit: usize,
) -> impl Stream<Item = Result<T, String>> + Send + 'static {
    let data = body.into_data_stream();
    let start = (data, BytesMut::new(), ValueEnd::default(), 0usize, false);
    futures::stream::unfold(start, move |(mut data, mut buf, mut end, mut tried, done)| async move {
        if done {
            return None;
        }
        let mut eof = false;
        loop {
            if end.scan(&buf) || eof || (!buf.is_empty() && buf.len() >= 2 * tried) {
                tried = buf.len();
                let (parsed, used) = {
                    let mut values = serde_json::Deserializer::from_slice(&buf).into_iter::<T>();
                    let next = values.next();
                    (next, values.byte_offset())
                };
                match parsed {
                    Some(Ok(v)) => {
                        buf.advance(used);
                        return Some((Ok(v), (data, buf, ValueEnd::default(), 0, false)));
                    }
                    Some(Err(e)) if e.is_eof() => {}
                    Some(Err(e)) => return Some((Err(e.to_string()), (data, buf, end, tried, true))),
                    None => {}
                }
            }
            if eof {
                if only_whitespace(&buf) {
                    return None;
                }
                return Some((Err("unexpected EOF".into()), (data, buf, end, tried, true)));
            }
            if buf.len() > limit {
                return Some((Err(format!("request larger than {limit} bytes")), (data, buf, end, tried, true)));
            }
            match data.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Some((Err(e.to_string()), (data, buf, end, tried, true))),
                None => eof = true,
            }
        }
    })
}

/// Finds where the first JSON value of a growing buffer may end, looking at each byte once:
/// brackets are counted outside strings (their matching is left to the parser).
#[derive(Debug, Default)]
struct ValueEnd {
    /// How many bytes of the buffer were looked at.
    seen: usize,
    started: bool,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// The value may be whole (or is not an object, array or string: let the parser say).
    done: bool,
}

impl ValueEnd {
    fn scan(&mut self, buf: &[u8]) -> bool {
        while !self.done && self.seen < buf.len() {
            let b = buf[self.seen];
            self.seen += 1;
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    self.done = self.depth == 0;
                }
            } else if !self.started {
                if b.is_ascii_whitespace() {
                    continue;
                }
                self.started = true;
                match b {
                    b'{' | b'[' => self.depth = 1,
                    b'"' => self.in_string = true,
                    _ => self.done = true,
                }
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        self.done = self.depth == 0;
                    }
                    _ => {}
                }
            }
        }
        self.done
    }
}

/// An empty (or blank) body stands for the default message, as in etcd's gateway.
pub fn parse_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, String> {
    if only_whitespace(bytes) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(reads: Vec<&'static [u8]>, limit: usize) -> Vec<Result<serde_json::Value, String>> {
        let body = Body::from_stream(futures::stream::iter(reads.into_iter().map(|r| Ok::<_, std::io::Error>(Bytes::from_static(r)))));
        futures::executor::block_on(json_values::<serde_json::Value>(body, limit).collect())
    }

    #[test]
    fn values_arrive_whole_whatever_the_reads() {
        let got = values(vec![b"{\"a\":", b"\"}\\\"{\"", b"}  [1,", b"{}]", b" \"x\" ", b"{"], 100);
        let want: Vec<Result<serde_json::Value, String>> =
            vec![Ok(serde_json::json!({"a": "}\"{"})), Ok(serde_json::json!([1, {}])), Ok(serde_json::json!("x")), Err("unexpected EOF".into())];
        assert_eq!(got, want);
        assert_eq!(values(vec![b" \n"], 100), vec![]);
        assert!(matches!(&values(vec![b"{x", b"}"], 100)[..], [Err(e)] if e.contains("key must be a string")), "invalid JSON is seen at once");
        assert!(matches!(&values(vec![b"[1", b",2,", b"3"], 4)[..], [Err(e)] if e.contains("larger than 4")));
    }

    /// Regression: a 256 KiB value in 1-byte reads was parsed again on every read (about
    /// 3 * 10^10 bytes looked at: minutes); now each byte is scanned once.
    #[test]
    fn a_value_in_tiny_reads_takes_linear_time() {
        let mut json = b"{\"key\":\"".to_vec();
        json.extend(std::iter::repeat_n(b'a', 256 * 1024));
        json.extend_from_slice(b"\"}");
        let reads: Vec<Result<Bytes, std::io::Error>> = json.iter().map(|&b| Ok(Bytes::copy_from_slice(&[b]))).collect();
        let body = Body::from_stream(futures::stream::iter(reads));
        let started = std::time::Instant::now();
        let got: Vec<Result<serde_json::Value, String>> = futures::executor::block_on(json_values(body, 1 << 20).collect());
        assert_eq!(got.len(), 1);
        assert!(got[0].is_ok());
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
    }
}
