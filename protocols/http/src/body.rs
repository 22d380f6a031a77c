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
pub fn json_values<T: DeserializeOwned + Send + 'static>(
    body: Body,
    limit: usize,
) -> impl Stream<Item = Result<T, String>> + Send + 'static {
    let data = body.into_data_stream();
    futures::stream::unfold((data, BytesMut::new(), false), move |(mut data, mut buf, done)| async move {
        if done {
            return None;
        }
        loop {
            if !only_whitespace(&buf) {
                let (parsed, used) = {
                    let mut values = serde_json::Deserializer::from_slice(&buf).into_iter::<T>();
                    let next = values.next();
                    (next, values.byte_offset())
                };
                match parsed {
                    Some(Ok(v)) => {
                        buf.advance(used);
                        return Some((Ok(v), (data, buf, false)));
                    }
                    Some(Err(e)) if e.is_eof() => {}
                    Some(Err(e)) => return Some((Err(e.to_string()), (data, buf, true))),
                    None => {}
                }
            }
            if buf.len() > limit {
                return Some((Err(format!("request larger than {limit} bytes")), (data, buf, true)));
            }
            match data.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Some((Err(e.to_string()), (data, buf, true))),
                None if only_whitespace(&buf) => return None,
                None => return Some((Err("unexpected EOF".into()), (data, buf, true))),
            }
        }
    })
}

/// An empty (or blank) body stands for the default message, as in etcd's gateway.
pub fn parse_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, String> {
    if only_whitespace(bytes) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}
