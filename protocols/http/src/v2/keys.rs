//! `/v2/keys/<path>`: etcd v2's request parameters and answers (status, headers, JSON).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

use super::error::*;
use super::model::{clean, dir_prefix, file_key, Event};
use cairn_api::PermType;
use super::store::{Outcome, PutArgs, PutMode};
use super::V2;
use crate::body::{read_limited, BodyError};
use crate::Store;

/// Form values as Go's `r.Form` holds them: body values first, then the query's.
pub struct Form(Vec<(String, String)>);

impl Form {
    /// The form of a request: the pairs of a url-encoded `body` (when there is one) first, then
    /// those of the `query` string, as Go's `r.ParseForm` orders them.
    pub fn from_parts(body: Option<&[u8]>, query: Option<&str>) -> Form {
        let mut pairs = Vec::new();
        if let Some(body) = body {
            pairs.extend(form_urlencoded::parse(body).into_owned());
        }
        if let Some(q) = query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Form(pairs)
    }
    fn first(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    fn value(&self, key: &str) -> &str {
        self.first(key).unwrap_or("")
    }
    fn has(&self, key: &str) -> bool {
        self.first(key).is_some()
    }
    /// Go's strconv.ParseBool on the first value; absent is false.
    fn bool(&self, key: &str, code: u32, cause: &str) -> Result<bool, V2Error> {
        match self.first(key) {
            None => Ok(false),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
            Some(_) => Err(V2Error::request(code, cause)),
        }
    }
    /// Go's strconv.ParseUint on the first value; absent is 0.
    fn uint(&self, key: &str, code: u32, cause: &str) -> Result<u64, V2Error> {
        match self.first(key) {
            None => Ok(0),
            Some(v) => v.parse::<u64>().map_err(|_| V2Error::request(code, cause)),
        }
    }
}

/// A parsed keys request (etcd's `parseKeyRequest`).
#[derive(Debug)]
pub struct KeyRequest {
    pub path: String,
    pub value: String,
    pub dir: bool,
    pub prev_value: Option<String>,
    pub prev_index: u64,
    pub prev_exist: Option<bool>,
    pub wait: bool,
    pub wait_index: u64,
    pub recursive: bool,
    pub quorum: bool,
    pub stream: bool,
    pub refresh: bool,
    pub ttl: Option<u64>,
    pub no_value_on_success: bool,
}

/// The request's parameters from its method, URI and form; no I/O (the fuzz target
/// `v2_request` calls it directly).
pub fn parse(method: &Method, uri: &Uri, form: &Form) -> Result<KeyRequest, V2Error> {
    let raw = uri.path().strip_prefix("/v2/keys").unwrap_or("");
    let decoded = percent_decode(raw).ok_or_else(|| V2Error::request(INVALID_FORM, "invalid URL escape in the key path"))?;
    let path = clean(&decoded);
    let prev_index = form.uint("prevIndex", INDEX_NAN, "invalid value for \"prevIndex\"")?;
    let wait_index = form.uint("waitIndex", INDEX_NAN, "invalid value for \"waitIndex\"")?;
    let recursive = form.bool("recursive", INVALID_FIELD, "invalid value for \"recursive\"")?;
    form.bool("sorted", INVALID_FIELD, "invalid value for \"sorted\"")?;
    let wait = form.bool("wait", INVALID_FIELD, "invalid value for \"wait\"")?;
    let dir = form.bool("dir", INVALID_FIELD, "invalid value for \"dir\"")?;
    let quorum = form.bool("quorum", INVALID_FIELD, "invalid value for \"quorum\"")?;
    let stream = form.bool("stream", INVALID_FIELD, "invalid value for \"stream\"")?;
    if wait && method != Method::GET && method != Method::HEAD {
        return Err(V2Error::request(INVALID_FIELD, "\"wait\" can only be used with GET requests"));
    }
    let prev_value = form.first("prevValue").map(str::to_string);
    if prev_value.as_deref() == Some("") {
        return Err(V2Error::request(PREV_VALUE_REQUIRED, "\"prevValue\" cannot be empty"));
    }
    let no_value_on_success = form.bool("noValueOnSuccess", INVALID_FIELD, "invalid value for \"noValueOnSuccess\"")?;
    let ttl = if form.value("ttl").is_empty() {
        None
    } else {
        Some(form.uint("ttl", TTL_NAN, "invalid value for \"ttl\"")?)
    };
    let prev_exist = if form.has("prevExist") {
        Some(form.bool("prevExist", INVALID_FIELD, "invalid value for prevExist")?)
    } else {
        None
    };
    let mut refresh = false;
    if form.has("refresh") {
        refresh = form.bool("refresh", INVALID_FIELD, "invalid value for refresh")?;
        if refresh {
            if !form.value("value").is_empty() {
                return Err(V2Error::request(REFRESH_VALUE, "A value was provided on a refresh"));
            }
            if ttl.is_none() {
                return Err(V2Error::request(REFRESH_TTL_REQUIRED, "No TTL value set"));
            }
        }
    }
    Ok(KeyRequest {
        path,
        value: form.value("value").to_string(),
        dir,
        prev_value,
        prev_index,
        prev_exist,
        wait,
        wait_index,
        recursive,
        quorum,
        stream,
        refresh,
        ttl,
        no_value_on_success,
    })
}

/// Percent-decoding of a URL path; None for a malformed escape (as Go's URL parser refuses).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            // Two hex digits exactly: from_str_radix alone would take a sign (`%+1`).
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn read_form(method: &Method, headers: &HeaderMap, uri: &Uri, body: Body, limit: usize) -> Result<Form, V2Error> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let mut bytes = None;
    if is_form && matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        bytes = Some(read_limited(body, limit).await.map_err(|e| match e {
            BodyError::TooLarge(n) => {
                let mut err = V2Error::request(INVALID_FORM, format!("request body larger than {n} bytes"));
                err.status_override = Some(StatusCode::PAYLOAD_TOO_LARGE);
                err
            }
            BodyError::Read(e) => V2Error::request(INVALID_FORM, e),
        })?);
    }
    Ok(Form::from_parts(bytes.as_deref(), uri.query()))
}

/// X-Etcd-Cluster-Id, X-Raft-Index and X-Raft-Term.
async fn raft_headers<S: Store>(store: &S, with_raft: bool) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Ok(s) = store.status().await {
        let num = |v: u64| HeaderValue::from_str(&v.to_string()).unwrap_or(HeaderValue::from_static("0"));
        out.push((HeaderName::from_static("x-etcd-cluster-id"), HeaderValue::from_str(&format!("{:x}", s.header.cluster_id)).unwrap_or(HeaderValue::from_static("0"))));
        if with_raft {
            out.push((HeaderName::from_static("x-raft-index"), num(s.raft_index)));
            out.push((HeaderName::from_static("x-raft-term"), num(s.raft_term)));
        }
    }
    out
}

fn with_headers(mut resp: Response, headers: Vec<(HeaderName, HeaderValue)>) -> Response {
    for (k, v) in headers {
        resp.headers_mut().insert(k, v);
    }
    resp
}

fn event_json(e: &Event) -> Vec<u8> {
    let mut body = serde_json::to_vec(e).unwrap_or_default();
    body.push(b'\n');
    body
}

fn answer(outcome: Outcome, no_value_on_success: bool) -> Response {
    let status = if outcome.created() { StatusCode::CREATED } else { StatusCode::OK };
    let mut event = outcome.event;
    if no_value_on_success && matches!(event.action, "set" | "compareAndSwap" | "create" | "update") {
        event.node = None;
        event.prev_node = None;
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/json".to_string()), (HeaderName::from_static("x-etcd-index"), outcome.index.to_string())],
        event_json(&event),
    )
        .into_response()
}

/// etcd v2's way of saying who the client is: HTTP basic auth (`curl -u user:password`).
pub(super) fn basic_auth(headers: &HeaderMap) -> Result<cairn_api::Credentials, V2Error> {
    use base64::Engine;
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(cairn_api::Credentials::None) };
    let decoded = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    match decoded.as_deref().and_then(|s| s.split_once(':')) {
        Some((name, password)) => {
            Ok(cairn_api::Credentials::Password { name: name.to_string(), password: password.to_string() })
        }
        None => Err(V2Error::unauthorized(cairn_api::StoreError::AuthFailed)),
    }
}

pub async fn keys<S: Store>(State(v2): State<Arc<V2<S>>>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let store = v2.keys.store.clone();
    match handle(&v2, &method, &uri, &headers, body).await {
        Ok(resp) => with_headers(resp, raft_headers(&store, true).await),
        Err(e) => with_headers(e.into_response(), raft_headers(&store, false).await),
    }
}

async fn handle<S: Store>(v2: &Arc<V2<S>>, method: &Method, uri: &Uri, headers: &HeaderMap, body: Body) -> Result<Response, V2Error> {
    if !matches!(*method, Method::GET | Method::HEAD | Method::PUT | Method::POST | Method::DELETE) {
        return Ok((StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, HEAD, PUT, POST, DELETE")], "Method Not Allowed").into_response());
    }
    let form = read_form(method, headers, uri, body, v2.body_limit).await?;
    let r = parse(method, uri, &form)?;
    // v2 permissions are by path, as etcd v2's were: a request needs READ (GET) or WRITE on
    // the node's key and everything under it. The v2 operation itself also looks at parent
    // directories, which a user allowed only below them could not read, so it runs on the
    // server's handle once the path is allowed.
    let caller = v2.keys.store.for_caller(basic_auth(headers)?).await.map_err(V2Error::unauthorized)?;
    let need = if matches!(*method, Method::GET | Method::HEAD) { PermType::Read } else { PermType::Write };
    let below = dir_prefix(&r.path);
    caller.check_access(&file_key(&r.path), &[], need).map_err(V2Error::unauthorized)?;
    caller.check_access(&below, &cairn_api::prefix_range_end(&below), need).map_err(V2Error::unauthorized)?;
    let keys = &v2.keys;
    match *method {
        Method::GET | Method::HEAD if r.wait => {
            let (index, events) = keys.clone().watch(r.path, r.recursive, r.wait_index).await?;
            let limit = if r.stream { usize::MAX } else { 1 };
            let lines = events.take(limit).map(|e| Ok::<_, std::convert::Infallible>(event_json(&e)));
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .header("x-etcd-index", index.to_string())
                .body(Body::from_stream(lines))
                .unwrap_or_default())
        }
        Method::GET | Method::HEAD => Ok(answer(keys.get(&r.path, r.recursive, r.quorum).await?, false)),
        Method::PUT | Method::POST => {
            let mode = if *method == Method::POST {
                PutMode::Unique
            } else {
                match (r.prev_exist, &r.prev_value, r.prev_index) {
                    (Some(false), _, _) => PutMode::Create,
                    (Some(true), None, 0) => PutMode::Update,
                    (_, None, 0) => PutMode::Set,
                    (_, pv, pi) => PutMode::Cas { prev_value: pv.clone().unwrap_or_default(), prev_index: pi },
                }
            };
            let args = PutArgs { path: r.path, value: r.value, dir: r.dir, ttl: r.ttl, refresh: r.refresh, mode };
            Ok(answer(keys.put(args).await?, r.no_value_on_success))
        }
        _ => {
            let cad = (r.prev_value.is_some() || r.prev_index > 0).then(|| (r.prev_value.clone().unwrap_or_default(), r.prev_index));
            Ok(answer(keys.delete(&r.path, r.dir, r.recursive, cad).await?, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(q: &str) -> Form {
        Form(form_urlencoded::parse(q.as_bytes()).into_owned().collect())
    }

    #[test]
    fn bad_parameters_get_etcds_codes() {
        let uri: Uri = "/v2/keys/a".parse().unwrap();
        let code = |q: &str, m: Method| parse(&m, &uri, &form(q)).err().map(|e| (e.code, e.index));
        assert_eq!(code("ttl=abc", Method::PUT), Some((TTL_NAN, 0)));
        assert_eq!(code("ttl=-1", Method::PUT), Some((TTL_NAN, 0)));
        assert_eq!(code("prevIndex=x", Method::PUT), Some((INDEX_NAN, 0)));
        assert_eq!(code("waitIndex=1.5", Method::GET), Some((INDEX_NAN, 0)));
        assert_eq!(code("recursive=yes", Method::GET), Some((INVALID_FIELD, 0)));
        assert_eq!(code("wait=true", Method::PUT), Some((INVALID_FIELD, 0)));
        assert_eq!(code("prevValue=", Method::PUT), Some((PREV_VALUE_REQUIRED, 0)));
        assert_eq!(code("refresh=true&value=x&ttl=5", Method::PUT), Some((REFRESH_VALUE, 0)));
        assert_eq!(code("refresh=true", Method::PUT), Some((REFRESH_TTL_REQUIRED, 0)));
        assert_eq!(code("ttl=&value=1", Method::PUT), None, "an empty ttl removes the TTL");
        assert_eq!(code("recursive=True&sorted=1", Method::GET), None);
    }

    #[test]
    fn paths_are_decoded_and_cleaned() {
        let f = form("");
        let p = |u: &str| parse(&Method::GET, &u.parse().unwrap(), &f).map(|r| r.path);
        assert_eq!(p("/v2/keys").unwrap(), "/");
        assert_eq!(p("/v2/keys/a%20b//c/").unwrap(), "/a b/c");
        assert_eq!(p("/v2/keys/../../x").unwrap(), "/x");
        assert_eq!(p("/v2/keys/a%zz").unwrap_err().code, INVALID_FORM);
        // Go refuses a sign after `%` (from_str_radix alone took `%+1`); checked by fuzz/v2_request.
        assert_eq!(p("/v2/keys/a%+1").unwrap_err().code, INVALID_FORM);
        assert_eq!(p("/v2/keys/a%2").unwrap_err().code, INVALID_FORM);
    }
}
