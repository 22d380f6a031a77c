//! Replies, and their encoding in the protocol version the connection chose (HELLO).
//!
//! Commands answer a protocol-neutral [`Reply`]; [`encode`] writes it as RESP2 or RESP3 with the
//! `redis-protocol` crate's encoders. RESP2 has no map, push or verbatim types: maps become flat
//! arrays, pushes arrays and verbatim strings bulk strings, as redis-server does. RESP2's null
//! array (`*-1`, what EXEC answers when a watched key changed) is the one frame written by hand,
//! since `redis-protocol`'s RESP2 `Null` is the null bulk string.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as F2;
use redis_protocol::resp3::types::{BytesFrame as F3, FrameMap, VerbatimStringFormat};

/// One reply, whatever the protocol version.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK` and friends.
    Simple(String),
    /// An error line; the text includes its code (`ERR ...`, `WRONGPASS ...`).
    Error(String),
    Int(i64),
    Bulk(Bytes),
    /// The null bulk string (a missing key).
    Nil,
    /// The null array (EXEC after a watched key changed).
    NilArray,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    /// Out-of-band data (pub/sub messages in RESP3).
    Push(Vec<Reply>),
    /// Text a human reads (INFO, CLIENT INFO): verbatim `txt` in RESP3.
    Verbatim(String),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Simple("OK".into())
    }

    pub fn err(text: impl Into<String>) -> Reply {
        Reply::Error(text.into())
    }

    pub fn bulk(b: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(b.as_ref()))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

/// Appends `reply` to `out` in protocol version `proto` (2 or 3).
pub fn encode(out: &mut BytesMut, reply: &Reply, proto: u8) {
    if proto >= 3 {
        let frame = to_resp3(reply);
        // Encoding into a growing buffer cannot fail for frames built here.
        let _ = redis_protocol::resp3::encode::complete::extend_encode(out, &frame, false);
    } else if let Reply::NilArray = reply {
        out.extend_from_slice(b"*-1\r\n");
    } else if let Reply::Array(items) = reply {
        // Arrays are written element by element so a nested null array keeps its RESP2 form.
        out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
        for item in items {
            encode(out, item, proto);
        }
    } else {
        let frame = to_resp2(reply);
        let _ = redis_protocol::resp2::encode::extend_encode(out, &frame, false);
    }
}

fn to_resp2(reply: &Reply) -> F2 {
    match reply {
        Reply::Simple(s) => F2::SimpleString(Bytes::from(s.clone())),
        Reply::Error(e) => F2::Error(e.clone().into()),
        Reply::Int(i) => F2::Integer(*i),
        Reply::Bulk(b) => F2::BulkString(b.clone()),
        Reply::Nil | Reply::NilArray => F2::Null,
        Reply::Array(items) | Reply::Push(items) => F2::Array(items.iter().map(to_resp2).collect()),
        Reply::Map(pairs) => F2::Array(pairs.iter().flat_map(|(k, v)| [to_resp2(k), to_resp2(v)]).collect()),
        Reply::Verbatim(s) => F2::BulkString(Bytes::from(s.clone())),
    }
}

fn to_resp3(reply: &Reply) -> F3 {
    match reply {
        Reply::Simple(s) => F3::SimpleString { data: Bytes::from(s.clone()), attributes: None },
        Reply::Error(e) => F3::SimpleError { data: e.clone().into(), attributes: None },
        Reply::Int(i) => F3::Number { data: *i, attributes: None },
        Reply::Bulk(b) => F3::BlobString { data: b.clone(), attributes: None },
        Reply::Nil | Reply::NilArray => F3::Null,
        Reply::Array(items) => F3::Array { data: items.iter().map(to_resp3).collect(), attributes: None },
        Reply::Push(items) => F3::Push { data: items.iter().map(to_resp3).collect(), attributes: None },
        Reply::Map(pairs) => {
            let mut map = FrameMap::with_capacity(pairs.len());
            for (k, v) in pairs {
                map.insert(to_resp3(k), to_resp3(v));
            }
            F3::Map { data: map, attributes: None }
        }
        Reply::Verbatim(s) => F3::VerbatimString {
            data: Bytes::from(s.clone()),
            format: VerbatimStringFormat::Text,
            attributes: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, proto: u8) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(&mut out, r, proto);
        out.to_vec()
    }

    #[test]
    fn resp2_frames_are_redis_bytes() {
        assert_eq!(enc(&Reply::ok(), 2), b"+OK\r\n");
        assert_eq!(enc(&Reply::err("ERR syntax error"), 2), b"-ERR syntax error\r\n");
        assert_eq!(enc(&Reply::Int(-3), 2), b":-3\r\n");
        assert_eq!(enc(&Reply::bulk("ab"), 2), b"$2\r\nab\r\n");
        assert_eq!(enc(&Reply::Nil, 2), b"$-1\r\n");
        assert_eq!(enc(&Reply::NilArray, 2), b"*-1\r\n");
        assert_eq!(enc(&Reply::Array(vec![Reply::Int(1), Reply::Nil]), 2), b"*2\r\n:1\r\n$-1\r\n");
        assert_eq!(enc(&Reply::Map(vec![(Reply::bulk("a"), Reply::Int(1))]), 2), b"*2\r\n$1\r\na\r\n:1\r\n");
    }

    #[test]
    fn resp3_frames_are_redis_bytes() {
        assert_eq!(enc(&Reply::Nil, 3), b"_\r\n");
        assert_eq!(enc(&Reply::Map(vec![(Reply::bulk("a"), Reply::Int(1))]), 3), b"%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&Reply::Push(vec![Reply::bulk("m")]), 3), b">1\r\n$1\r\nm\r\n");
        assert_eq!(enc(&Reply::Verbatim("x".into()), 3), b"=5\r\ntxt:x\r\n");
    }
}
