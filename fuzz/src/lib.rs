//! The checks behind Cairn's fuzz targets, shared by the libFuzzer binaries
//! (`fuzz_targets/*.rs`, run with `cargo fuzz`) and the stable replay test (`tests/replay.rs`,
//! run with `cargo test`), so a crashing input reproduces without a nightly compiler.
//!
//! Each target takes arbitrary bytes; the first byte or two choose the knobs (a limit, how the
//! input is cut into reads, which message type) and the rest is what a client would send. Beyond
//! "no panic", each checks what the parser promises: a bounded result, progress, no dependence
//! on how the input was cut into reads, and round trips where there is an encoder.

use std::fmt::Debug;

use axum::body::Body;
use bytes::Bytes;
use cairn_resp::request::{self, Parsed, INLINE_MAX, MAX_ARGS};
use futures::StreamExt;
use http::{Method, Uri};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Cuts `data` into reads: one read for seed 0, otherwise pseudo-random sizes of 1..=2*seed.
pub fn chunks(data: &[u8], seed: u8) -> Vec<&[u8]> {
    scaled_chunks(data, seed, 1)
}

/// [`chunks`] with every size times `scale`.
fn scaled_chunks(data: &[u8], seed: u8, scale: usize) -> Vec<&[u8]> {
    if seed == 0 {
        return vec![data];
    }
    let mut out = Vec::new();
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = ((1 + state as usize % (2 * seed as usize)) * scale).min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

/// What a RESP connection makes of a byte stream.
#[derive(Debug, PartialEq, Eq)]
struct RespRun {
    commands: Vec<Vec<Bytes>>,
    error: Option<String>,
    leftover: usize,
}

/// Feeds `reads` to the parser as the connection loop does (parse every whole command in the
/// buffer, then read more) and checks each answer.
fn resp_run(reads: &[&[u8]], max_bulk: usize) -> RespRun {
    let mut buf: Vec<u8> = Vec::new();
    let mut commands = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match request::parse(&buf, max_bulk) {
                Parsed::Incomplete => {
                    // Waiting for more is bounded: an unterminated header or inline line is
                    // refused past INLINE_MAX, so only a multibulk may wait with more than that.
                    assert!(buf.len() <= INLINE_MAX || buf[0] == b'*', "waits on {} bytes of an inline line", buf.len());
                    break;
                }
                Parsed::Error(text) => {
                    assert!(!text.is_empty());
                    // The connection closes here; what else was read does not matter.
                    return RespRun { commands, error: Some(text), leftover: 0 };
                }
                Parsed::Command { consumed, args } => {
                    assert!(consumed > 0, "a command must consume input");
                    assert!(consumed <= buf.len(), "consumed {consumed} of {} bytes", buf.len());
                    check_resp_command(&buf[..consumed], &args, max_bulk);
                    buf.drain(..consumed);
                    if !args.is_empty() {
                        commands.push(args);
                    }
                }
            }
        }
    }
    RespRun { commands, error: None, leftover: buf.len() }
}

fn check_resp_command(raw: &[u8], args: &[Bytes], max_bulk: usize) {
    let total: usize = args.iter().map(Bytes::len).sum();
    assert!(total <= raw.len(), "{total} argument bytes out of a {}-byte request", raw.len());
    if raw[0] == b'*' {
        assert!(args.len() as u64 <= MAX_ARGS as u64);
        for a in args {
            assert!(a.len() <= max_bulk, "a {}-byte bulk with a limit of {max_bulk}", a.len());
        }
        // The arguments, encoded again, parse back to themselves.
        if !args.is_empty() {
            let mut again = format!("*{}\r\n", args.len()).into_bytes();
            for a in args {
                again.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                again.extend_from_slice(a);
                again.extend_from_slice(b"\r\n");
            }
            assert_eq!(request::parse(&again, max_bulk), Parsed::Command { consumed: again.len(), args: args.to_vec() });
        }
    } else {
        // An inline line (and its `\n`) is never longer than Redis's inline limit.
        assert!(raw.len() <= INLINE_MAX + 1, "an inline request of {} bytes", raw.len());
    }
}

/// `resp_request`: the RESP request reader (`protocols/resp/src/request.rs`).
///
/// Byte 0: the bulk limit (low 4 bits: 0 is 1 MiB, n is 3*(n-1) bytes) and, with the high 4
/// bits all set, the rest repeated past INLINE_MAX so the "too big" paths are reached. Byte 1: how the
/// stream is cut into reads. The commands found must not depend on the cut (when the stream
/// is shorter than INLINE_MAX, where Redis's own answers start to depend on read sizes).
pub fn resp_request(data: &[u8]) {
    let [mode, cut, input @ ..] = data else { return };
    let max_bulk = match mode & 0x0f {
        0 => 1 << 20,
        n => (usize::from(n) - 1) * 3,
    };
    let owned;
    let input = if mode & 0xf0 == 0xf0 && !input.is_empty() {
        owned = input.iter().copied().cycle().take(INLINE_MAX + 1 + input.len()).collect::<Vec<u8>>();
        &owned[..]
    } else {
        input
    };
    let whole = resp_run(&[input], max_bulk);
    // Reads of a few bytes each over 64 KiB would re-scan the buffer for every byte (the parser
    // keeps no state between calls), which is slow but not what this target looks for.
    let scale = if input.len() > INLINE_MAX { 1024 } else { 1 };
    let split = resp_run(&scaled_chunks(input, *cut, scale), max_bulk);
    if input.len() <= INLINE_MAX {
        assert_eq!(whole, split, "the commands depend on how the input was cut");
    } else {
        let n = whole.commands.len().min(split.commands.len());
        assert_eq!(whole.commands[..n], split.commands[..n]);
    }
}

/// Go's `url.PathUnescape` on a path: `%` needs exactly two hex digits. None also for a
/// result that is not UTF-8 (which Cairn refuses).
pub fn go_path_unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (h, l) = (*b.get(i + 1)?, *b.get(i + 2)?);
            if !h.is_ascii_hexdigit() || !l.is_ascii_hexdigit() {
                return None;
            }
            let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(h) * 16 + hex(l));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `v2_request`: the etcd v2 keys request parsing (`protocols/http/src/v2/keys.rs`): the key
/// path, the query string and a url-encoded body into the request model.
///
/// Byte 0 chooses the method; up to the first `\n` is the request target after `/v2/keys`
/// (path and query), the rest (when there is a `\n`) the form body.
pub fn v2_request(data: &[u8]) {
    use cairn_http::fuzzing::{parse_key_request, Form};
    let Some((&m, rest)) = data.split_first() else { return };
    let methods = [Method::GET, Method::HEAD, Method::PUT, Method::POST, Method::DELETE, Method::PATCH];
    let method = &methods[usize::from(m) % methods.len()];
    let (target, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(nl) => (&rest[..nl], Some(&rest[nl + 1..])),
        None => (rest, None),
    };
    let mut raw = b"/v2/keys".to_vec();
    raw.extend_from_slice(target);
    // Only what hyper would hand over as a request target.
    let Ok(uri) = Uri::try_from(raw) else { return };
    let form = Form::from_parts(body, uri.query());
    let first = |key: &str| -> Option<String> {
        let body_pairs = body.map(|b| form_pairs(b)).unwrap_or_default();
        let query_pairs = uri.query().map(|q| form_pairs(q.as_bytes())).unwrap_or_default();
        body_pairs.into_iter().chain(query_pairs).find(|(k, _)| k == key).map(|(_, v)| v)
    };
    let decoded = go_path_unescape(uri.path().strip_prefix("/v2/keys").unwrap_or(""));
    match parse_key_request(method, &uri, &form) {
        Ok(r) => {
            assert!(decoded.is_some(), "accepted the path {:?}, which Go refuses to unescape", uri.path());
            let p = &r.path;
            assert!(p.starts_with('/'), "{p:?}");
            assert!(p == "/" || !p.ends_with('/'), "{p:?}");
            assert!(!p.contains("//"), "{p:?}");
            assert!(p.split('/').all(|seg| seg != "." && seg != ".."), "{p:?}");
            assert!(!r.wait || *method == Method::GET || *method == Method::HEAD);
            assert_ne!(r.prev_value.as_deref(), Some(""));
            if r.refresh {
                assert!(r.ttl.is_some() && r.value.is_empty());
            }
            assert_eq!(r.ttl, first("ttl").filter(|t| !t.is_empty()).map(|t| t.parse::<u64>().expect("ttl accepted as a number")));
            assert_eq!(r.value, first("value").unwrap_or_default());
        }
        Err(e) => {
            assert!(e.status().is_client_error(), "{e:?}");
            assert!(!e.cause.is_empty(), "{e:?}");
            if decoded.is_none() {
                assert_eq!(e.code, 210, "a bad path escape is an invalid form: {e:?}");
            }
        }
    }
}

fn form_pairs(b: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(b).into_owned().collect()
}

/// A body of the given reads, as hyper would hand it to a handler.
fn body_of(reads: &[&[u8]]) -> Body {
    let owned: Vec<Result<Bytes, std::io::Error>> = reads.iter().map(|r| Ok(Bytes::copy_from_slice(r))).collect();
    Body::from_stream(futures::stream::iter(owned))
}

/// One message type of the gateway: its JSON decodes, encodes back to JSON and protobuf, and
/// reads back to the same message.
fn gateway_message<T>(json: &[u8])
where
    T: DeserializeOwned + Serialize + prost::Message + Default + PartialEq + Debug,
{
    if let Ok(v) = cairn_http::fuzzing::parse_json::<T>(json) {
        let text = serde_json::to_vec(&v).expect("a decoded request encodes as JSON");
        let back: T = cairn_http::fuzzing::parse_json(&text).expect("a request's own JSON decodes");
        assert_eq!(back, v, "JSON round trip of {}", String::from_utf8_lossy(&text));
        let wire = v.encode_to_vec();
        assert_eq!(T::decode(&wire[..]).expect("a request's own protobuf decodes"), v);
    }
}

/// The request stream of a bidirectional call (`json_values`): fed in reads, it yields the
/// same messages as the whole body parsed at once, ends after at most one error, and never
/// holds a value larger than its limit.
fn gateway_stream<T>(json: &[u8], cut: u8, limit: usize)
where
    T: DeserializeOwned + Serialize + prost::Message + Default + PartialEq + Debug + Send + 'static,
{
    let items: Vec<Result<T, String>> =
        futures::executor::block_on(cairn_http::fuzzing::json_values::<T>(body_of(&chunks(json, cut)), limit).collect());
    if let Some(pos) = items.iter().position(Result::is_err) {
        assert_eq!(pos, items.len() - 1, "the stream goes on after an error");
    }
    let got: Vec<&T> = items.iter().filter_map(|r| r.as_ref().ok()).collect();
    let whole: Vec<T> = serde_json::Deserializer::from_slice(json).into_iter::<T>().map_while(Result::ok).collect();
    if json.len() <= limit {
        assert_eq!(got, whole.iter().collect::<Vec<_>>(), "the messages depend on how the body was cut");
    } else {
        assert!(got.len() <= whole.len());
        assert_eq!(got, whole[..got.len()].iter().collect::<Vec<_>>());
    }
}

/// `read_limited`: the whole body, or TooLarge once it passes the limit.
fn body_limit(data: &[u8], cut: u8, limit: usize) {
    use cairn_http::fuzzing::{read_limited, BodyError};
    match futures::executor::block_on(read_limited(body_of(&chunks(data, cut)), limit)) {
        Ok(b) => {
            assert!(data.len() <= limit);
            assert_eq!(&b[..], data);
        }
        Err(BodyError::TooLarge(n)) => {
            assert!(data.len() > limit);
            assert_eq!(n, limit);
        }
        Err(e) => panic!("reading an in-memory body failed: {e:?}"),
    }
}

/// `gateway_json`: the v3 JSON gateway's decoding (`protocols/http/src/gateway.rs`, through
/// `body.rs`): the proto3 JSON mapping of every request type the gateway accepts, the request
/// stream of watch and lease keep-alive, and the body size limit.
///
/// Byte 0: which message type (or, from 0xf0 up, the stream and body readers); byte 1: how the
/// body is cut into reads and the size limit; the rest: the body.
pub fn gateway_json(data: &[u8]) {
    use cairn_etcd_v3::pb::etcdserverpb as pb;
    use cairn_etcd_v3::pb::v3electionpb as el;
    use cairn_etcd_v3::pb::v3lockpb as lk;
    let [sel, knob, json @ ..] = data else { return };
    let limit = match knob & 0x0f {
        0 => 1 << 20,
        n => usize::from(n) * 16,
    };
    let cut = knob >> 4;
    match sel {
        0 => gateway_message::<pb::RangeRequest>(json),
        1 => gateway_message::<pb::PutRequest>(json),
        2 => gateway_message::<pb::DeleteRangeRequest>(json),
        3 => gateway_message::<pb::TxnRequest>(json),
        4 => gateway_message::<pb::CompactionRequest>(json),
        5 => gateway_message::<pb::LeaseGrantRequest>(json),
        6 => gateway_message::<pb::LeaseRevokeRequest>(json),
        7 => gateway_message::<pb::LeaseTimeToLiveRequest>(json),
        8 => gateway_message::<pb::LeaseLeasesRequest>(json),
        9 => gateway_message::<pb::WatchRequest>(json),
        10 => gateway_message::<pb::LeaseKeepAliveRequest>(json),
        11 => gateway_message::<pb::MemberAddRequest>(json),
        12 => gateway_message::<pb::MemberRemoveRequest>(json),
        13 => gateway_message::<pb::MemberUpdateRequest>(json),
        14 => gateway_message::<pb::MemberListRequest>(json),
        15 => gateway_message::<pb::MemberPromoteRequest>(json),
        16 => gateway_message::<pb::AlarmRequest>(json),
        17 => gateway_message::<pb::StatusRequest>(json),
        18 => gateway_message::<pb::DefragmentRequest>(json),
        19 => gateway_message::<pb::HashRequest>(json),
        20 => gateway_message::<pb::HashKvRequest>(json),
        21 => gateway_message::<pb::MoveLeaderRequest>(json),
        22 => gateway_message::<pb::DowngradeRequest>(json),
        23 => gateway_message::<pb::SnapshotRequest>(json),
        24 => gateway_message::<lk::LockRequest>(json),
        25 => gateway_message::<lk::UnlockRequest>(json),
        26 => gateway_message::<el::CampaignRequest>(json),
        27 => gateway_message::<el::ProclaimRequest>(json),
        28 => gateway_message::<el::LeaderRequest>(json),
        29 => gateway_message::<el::ResignRequest>(json),
        0xf0..=0xf7 => gateway_stream::<pb::WatchRequest>(json, cut, limit),
        0xf8..=0xfd => gateway_stream::<pb::LeaseKeepAliveRequest>(json, cut, limit),
        0xfe..=0xff => body_limit(json, cut, limit),
        _ => gateway_message::<pb::TxnRequest>(json),
    }
}
