//! The emulated S3 over HTTP, path style, on its own listener: CreateBucket (`PUT /{bucket}`),
//! PutObject (`PUT /{bucket}/{key}`), GetObject (`GET /{bucket}/{key}`, with the owner's
//! credentials or a presigned URL's query), errors as S3 writes them (XML `<Error>`).
//!
//! Owns: those paths, the object's response headers and the XML error body. Must not know:
//! how URLs are signed or checked (the cloud's [`crate::emulator::cloud::s3`], whose store
//! the world holds), sockets or hyper. Request signatures of the owner's calls are not
//! checked, as elsewhere.

use super::server::{Reply, ReplyBody, Request};
use crate::emulator::cloud::s3::{S3Error, S3};
use crate::emulator::shared_world::SharedWorld;

/// The S3 listener's router: the world's store at the world's time.
pub fn handle(world: &SharedWorld, request: &Request<'_>) -> Reply {
    world.with(|w| {
        let now = w.now() / 1000;
        route(w.s3_mut(), request, now)
    })
}

/// One S3 request on `store` at `now` (epoch seconds).
pub fn route(store: &mut S3, request: &Request<'_>, now: u64) -> Reply {
    let Some((bucket, key)) = split(request) else {
        return s3_reply_error(S3Error {
            code: "InvalidRequest",
            status: 400,
            message: "expected /<bucket> or /<bucket>/<key>".into(),
        });
    };
    let result = match (request.method, key.as_deref()) {
        ("PUT", None) => store.create_bucket(&bucket).map(|()| {
            let mut r = empty(200);
            r.headers.push(("location", format!("/{bucket}")));
            r
        }),
        ("PUT", Some(key)) => store
            .put_object(
                &bucket,
                key,
                request.body.to_vec(),
                request.content_type.unwrap_or_default(),
                now,
            )
            .map(|etag| {
                let mut r = empty(200);
                r.headers.push(("etag", etag));
                r
            }),
        ("GET", Some(key)) => {
            let object = if request.query.contains("X-Amz-Signature=") {
                store.get_presigned(request.path, request.query, now)
            } else {
                store.get_object(&bucket, key)
            };
            object.map(|o| Reply {
                status: 200,
                error_type: None,
                body: ReplyBody::Bytes(o.data.clone(), content_type_of(&o.content_type)),
                headers: vec![("etag", o.etag.clone())],
            })
        }
        _ => Err(S3Error {
            code: "MethodNotAllowed",
            status: 405,
            message: format!("{} is not emulated here", request.method),
        }),
    };
    result.unwrap_or_else(s3_reply_error)
}

/// Bucket and key (percent-decoded) of a path-style request.
fn split(request: &Request<'_>) -> Option<(String, Option<String>)> {
    let (bucket, key) = request.segments.split_first()?;
    if bucket.is_empty() {
        return None;
    }
    let key = key.join("/");
    Some((bucket.clone(), (!key.is_empty()).then_some(key)))
}

/// Content types are kept as `&'static str` in replies; the common ones are named, anything
/// else is served as `binary/octet-stream`.
fn content_type_of(stored: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "application/json",
        "application/octet-stream",
        "application/x-sh",
        "text/plain",
        "text/x-shellscript",
    ];
    KNOWN
        .iter()
        .find(|k| **k == stored)
        .copied()
        .unwrap_or("binary/octet-stream")
}

fn empty(status: u16) -> Reply {
    Reply {
        status,
        error_type: None,
        body: ReplyBody::Bytes(Vec::new(), "application/xml"),
        headers: Vec::new(),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn s3_reply_error(e: S3Error) -> Reply {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>",
        e.code,
        xml_escape(&e.message)
    );
    Reply {
        status: e.status,
        error_type: None,
        body: ReplyBody::Bytes(body.into_bytes(), "application/xml"),
        headers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(r: &Reply) -> String {
        match &r.body {
            ReplyBody::Bytes(b, _) => String::from_utf8_lossy(b).into_owned(),
            ReplyBody::Json(v) => v.to_string(),
        }
    }

    #[test]
    fn buckets_objects_and_presigned_gets() {
        let mut s3 = S3::new(7);
        let now = 1_800_000_000;
        assert_eq!(
            route(&mut s3, &Request::new("PUT", "/artifacts", "", b""), now).status,
            200
        );
        let put = Request::new("PUT", "/artifacts/dir/run.sh", "", b"echo hi")
            .with_content_type(Some("text/x-shellscript"));
        let r = route(&mut s3, &put, now);
        assert!(r.headers.iter().any(|(n, _)| *n == "etag"), "{r:?}");
        let r = route(
            &mut s3,
            &Request::new("GET", "/artifacts/dir/run.sh", "", b""),
            now,
        );
        assert_eq!((r.status, bytes(&r)), (200, "echo hi".to_owned()));
        assert!(matches!(r.body, ReplyBody::Bytes(_, "text/x-shellscript")));

        let url = s3.presign_get("http://s3", "artifacts", "dir/run.sh", now, 60);
        let (path, query) = url.trim_start_matches("http://s3").split_once('?').unwrap();
        let fresh = route(&mut s3, &Request::new("GET", path, query, b""), now + 60);
        assert_eq!(bytes(&fresh), "echo hi");
        let expired = route(&mut s3, &Request::new("GET", path, query, b""), now + 61);
        assert_eq!(expired.status, 403);
        assert!(bytes(&expired).contains("<Code>AccessDenied</Code>"));
        let altered = query.replace("X-Amz-Expires=60", "X-Amz-Expires=3600");
        assert_eq!(
            route(&mut s3, &Request::new("GET", path, &altered, b""), now).status,
            403
        );

        let r = route(&mut s3, &Request::new("GET", "/nobucket/k", "", b""), now);
        assert!(r.status == 404 && bytes(&r).contains("NoSuchBucket"));
        assert_eq!(
            route(
                &mut s3,
                &Request::new("DELETE", "/artifacts/k", "", b""),
                now
            )
            .status,
            405
        );
        assert_eq!(
            route(&mut s3, &Request::new("GET", "/", "", b""), now).status,
            400
        );
    }
}
