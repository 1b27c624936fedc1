//! The HTTP shell around the emulator's routes: a hyper listener that turns each request into
//! a [`Request`] (method, decoded path segments, query, body), hands it to a pure router and
//! writes the [`Reply`] back as AWS writes responses (`x-amzn-ErrorType` + `{"message"}`).
//!
//! Owns: binding, connections, the body size limit, percent-decoding and query parsing.
//! Must not know: any route, the Jobs rules or the world.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::Response;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// One request, decoded: what every route sees.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The raw path, as sent.
    pub path: &'a str,
    /// Path segments, percent-decoded (an empty path gives one empty segment).
    pub segments: Vec<String>,
    /// The raw query string (without `?`).
    pub query: &'a str,
    pub body: &'a [u8],
    /// The `content-type` header, if any.
    pub content_type: Option<&'a str>,
}

impl<'a> Request<'a> {
    pub fn new(method: &'a str, path: &'a str, query: &'a str, body: &'a [u8]) -> Self {
        let segments = path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        Self {
            method,
            path,
            segments,
            query,
            body,
            content_type: None,
        }
    }

    /// The request with its `content-type` header.
    pub fn with_content_type(mut self, content_type: Option<&'a str>) -> Self {
        self.content_type = content_type;
        self
    }

    /// The segments as `&str`, for slice patterns.
    pub fn segs(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }

    /// The first value of query parameter `key`, percent-decoded.
    pub fn query_value(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            pair.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| percent_decode(&v.replace('+', " ")))
        })
    }

    /// Whether query parameter `key` is `true` (any case).
    pub fn flag(&self, key: &str) -> bool {
        self.query_value(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// The body as JSON; an empty body is `{}`.
    pub fn json(&self) -> Result<Value, Reply> {
        if self.body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(self.body).map_err(|e| {
            error(
                400,
                "InvalidRequestException",
                format!("invalid JSON body: {e}"),
            )
        })
    }
}

/// A response before it is put on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    /// AWS exception name, sent as `x-amzn-ErrorType`.
    pub error_type: Option<&'static str>,
    pub body: ReplyBody,
    /// Further response headers (S3's `ETag`, `Last-Modified`).
    pub headers: Vec<(&'static str, String)>,
}

/// What a reply carries.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyBody {
    Json(Value),
    /// Raw bytes with their content type (S3 objects).
    Bytes(Vec<u8>, &'static str),
}

impl Reply {
    /// The JSON body, or `Value::Null` for a raw one.
    pub fn json(&self) -> &Value {
        static NULL: Value = Value::Null;
        match &self.body {
            ReplyBody::Json(v) => v,
            ReplyBody::Bytes(..) => &NULL,
        }
    }
}

impl std::ops::Index<&str> for Reply {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        &self.json()[key]
    }
}

/// A 200 with a JSON body.
pub fn ok(body: Value) -> Reply {
    Reply {
        status: 200,
        error_type: None,
        body: ReplyBody::Json(body),
        headers: Vec::new(),
    }
}

/// An AWS-style error.
pub fn error(status: u16, error_type: &'static str, message: impl Into<String>) -> Reply {
    Reply {
        status,
        error_type: Some(error_type),
        body: ReplyBody::Json(json!({"message": message.into()})),
        headers: Vec::new(),
    }
}

/// The answer for a path no route serves.
pub fn no_route(request: &Request<'_>) -> Reply {
    error(
        404,
        "ResourceNotFoundException",
        format!("no route for {} {}", request.method, request.path),
    )
}

/// Decodes `%XX` escapes; a malformed escape is kept as is.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Largest request body accepted (a job document is at most 32 KiB; S3 objects are small
/// test artifacts).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// A pure router: state and request in, reply out.
pub type Router<S> = fn(&S, &Request<'_>) -> Reply;

/// Serves `router` over `state` on `addr` until the task is dropped; returns the bound address.
pub async fn serve<S: Send + Sync + 'static>(
    state: Arc<S>,
    addr: SocketAddr,
    name: &'static str,
    router: Router<S>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(listener = name, error = %e, "accept failed");
                    continue;
                }
            };
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                        let state = Arc::clone(&state);
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                respond(&*state, name, router, request).await,
                            )
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(listener = name, error = %e, "connection ended");
                }
            });
        }
    });
    Ok((local, task))
}

async fn respond<S>(
    state: &S,
    name: &'static str,
    router: Router<S>,
    request: hyper::Request<Incoming>,
) -> Response<Full<Bytes>> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let content_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let limited = http_body_util::Limited::new(request.into_body(), MAX_BODY);
    let reply = match limited.collect().await {
        Ok(body) => {
            let body = body.to_bytes();
            let request = Request::new(&method, &path, &query, &body)
                .with_content_type(content_type.as_deref());
            router(state, &request)
        }
        Err(e) => error(
            413,
            "InvalidRequestException",
            format!("request body refused: {e}"),
        ),
    };
    if reply.status >= 400 {
        tracing::info!(
            listener = name,
            method,
            path,
            status = reply.status,
            error = reply.error_type,
            "request refused"
        );
    }
    let mut response = Response::builder().status(reply.status);
    if let Some(t) = reply.error_type {
        response = response.header("x-amzn-ErrorType", t);
    }
    for (name, value) in &reply.headers {
        response = response.header(*name, value);
    }
    let (content_type, bytes) = match reply.body {
        ReplyBody::Json(v) => ("application/json", Bytes::from(v.to_string())),
        ReplyBody::Bytes(b, t) => (t, Bytes::from(b)),
    };
    response
        .header("content-type", content_type)
        .body(Full::new(bytes))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"{}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_paths_and_queries() {
        assert_eq!(percent_decode("a%24next%2"), "a$next%2");
        let r = Request::new("GET", "/topics/a%2Fb", "qos=1&x=a%20b&force=TRUE", b"");
        assert_eq!(r.segs(), ["topics", "a/b"]);
        assert_eq!(r.query_value("x").as_deref(), Some("a b"));
        assert!(r.flag("force"));
        assert!(!r.flag("clean"));
        assert_eq!(r.json().ok(), Some(json!({})));
        let bad = Request::new("PUT", "/", "", b"{");
        assert_eq!(
            bad.json().err().and_then(|r| r.error_type),
            Some("InvalidRequestException")
        );
    }
}
