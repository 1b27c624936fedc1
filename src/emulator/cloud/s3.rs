//! An emulated S3: buckets, objects, presigned GET URLs with an expiry, and the replacement
//! of the presigned-URL placeholders of job documents when a device reads them.
//!
//! Owns: object state, issuing and checking presigned URLs ([`Presigner`], which the Jobs
//! service holds a copy of to render documents at read time), and the placeholder syntax
//! ([`replace_presigned_placeholders`], [`contains_presigned_placeholder`]). Must not know:
//! HTTP (the shell maps a request's path and query to [`S3::get_presigned`]), the Jobs
//! service's state, or the clock (time comes in as epoch seconds).
//!
//! The URLs have the shape of SigV4 presigned URLs (`X-Amz-Algorithm`, `X-Amz-Date` in
//! `YYYYMMDDTHHMMSSZ`, `X-Amz-Expires`, `X-Amz-Signature`), but the signature is a keyed
//! SipHash (std's hasher) over the method, bucket, key, date and expiry: enough to tell a URL
//! this store issued from an altered one, with no crypto crate for an emulator. An expired or
//! altered URL is answered AccessDenied, which the shell sends as HTTP 403, as S3 does.

use serde_json::Value;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

/// Range of `presignedUrlConfig.expiresInSec` CreateJob accepts.
pub const EXPIRES_IN_RANGE: std::ops::RangeInclusive<u64> = 60..=3600;
/// `expiresInSec` when CreateJob sets none.
pub const DEFAULT_EXPIRES_IN: u64 = 3600;
const PLACEHOLDER_V1: &str = "${aws:iot:s3-presigned-url:";
const PLACEHOLDER_V2: &str = "${aws:iot:s3-presigned-url-v2:";

/// An S3 failure, named like S3's error code, with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} ({status}): {message}")]
pub struct S3Error {
    pub code: &'static str,
    pub status: u16,
    pub message: String,
}

fn s3_error(code: &'static str, status: u16, message: impl Into<String>) -> S3Error {
    S3Error {
        code,
        status,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub data: Vec<u8>,
    pub content_type: String,
    /// Quoted, as S3 sends it.
    pub etag: String,
    pub last_modified: u64,
}

/// The store. Buckets and keys are ordered.
#[derive(Debug, Clone)]
pub struct S3 {
    buckets: BTreeMap<String, BTreeMap<String, Object>>,
    signing_key: u64,
}

impl S3 {
    /// A store whose URLs are signed with `signing_key` (a random value from the shell).
    pub fn new(signing_key: u64) -> Self {
        Self {
            buckets: BTreeMap::new(),
            signing_key,
        }
    }

    /// CreateBucket. Creating a bucket one already has is BucketAlreadyOwnedByYou.
    pub fn create_bucket(&mut self, bucket: &str) -> Result<(), S3Error> {
        let ok = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !ok {
            return Err(s3_error(
                "InvalidBucketName",
                400,
                format!("{bucket:?} is not a valid bucket name"),
            ));
        }
        if self.buckets.contains_key(bucket) {
            return Err(s3_error(
                "BucketAlreadyOwnedByYou",
                409,
                format!("bucket {bucket} exists"),
            ));
        }
        self.buckets.insert(bucket.to_owned(), BTreeMap::new());
        Ok(())
    }

    /// PutObject; returns the ETag.
    pub fn put_object(
        &mut self,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
        content_type: &str,
        now: u64,
    ) -> Result<String, S3Error> {
        if key.is_empty() || key.len() > 1024 {
            return Err(s3_error("KeyTooLongError", 400, "keys are 1 to 1024 bytes"));
        }
        let objects = self
            .buckets
            .get_mut(bucket)
            .ok_or_else(|| no_bucket(bucket))?;
        let mut h = std::hash::DefaultHasher::new();
        data.hash(&mut h);
        let etag = format!("\"{:016x}\"", h.finish());
        objects.insert(
            key.to_owned(),
            Object {
                data,
                content_type: if content_type.is_empty() {
                    "binary/octet-stream".to_owned()
                } else {
                    content_type.to_owned()
                },
                etag: etag.clone(),
                last_modified: now,
            },
        );
        Ok(etag)
    }

    /// GetObject with the owner's credentials.
    pub fn get_object(&self, bucket: &str, key: &str) -> Result<&Object, S3Error> {
        let objects = self.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        objects
            .get(key)
            .ok_or_else(|| s3_error("NoSuchKey", 404, format!("no object {key:?} in {bucket}")))
    }

    /// What issues this store's presigned URLs under `base_url` (`None`: no listener serves
    /// the store, so documents keep their placeholders).
    pub fn presigner(&self, base_url: Option<String>) -> Presigner {
        Presigner {
            signing_key: self.signing_key,
            base_url,
        }
    }

    /// A presigned GET URL for `bucket`/`key` under `base_url` (path style), valid for
    /// `expires_in` seconds from `now`.
    pub fn presign_get(
        &self,
        base_url: &str,
        bucket: &str,
        key: &str,
        now: u64,
        expires_in: u64,
    ) -> String {
        presigned_url(self.signing_key, base_url, bucket, key, now, expires_in)
    }

    /// Serves a GET of `path` (`/<bucket>/<key>`, percent-encoded) with `query` (without `?`)
    /// at `now`: the object when the query is a valid, unexpired presigned URL of that object;
    /// AccessDenied (403) when it is expired, altered or missing.
    pub fn get_presigned(&self, path: &str, query: &str, now: u64) -> Result<&Object, S3Error> {
        let (bucket, key) = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .ok_or_else(|| s3_error("InvalidRequest", 400, "expected /<bucket>/<key>"))?;
        let key = decode(key).ok_or_else(|| s3_error("InvalidURI", 400, "bad key encoding"))?;
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v)
        };
        let denied = |why: &str| s3_error("AccessDenied", 403, why.to_owned());
        let date = param("X-Amz-Date").ok_or_else(|| denied("not a presigned URL"))?;
        let expires: u64 = param("X-Amz-Expires")
            .and_then(|e| e.parse().ok())
            .ok_or_else(|| denied("X-Amz-Expires is missing"))?;
        let signature = param("X-Amz-Signature").ok_or_else(|| denied("not signed"))?;
        if signature != signature_of(self.signing_key, bucket, &key, date, expires) {
            return Err(denied(
                "The request signature we calculated does not match the signature you provided",
            ));
        }
        let signed_at = parse_amz_date(date).ok_or_else(|| denied("bad X-Amz-Date"))?;
        if now > signed_at.saturating_add(expires) {
            return Err(denied("Request has expired"));
        }
        self.get_object(bucket, &key)
    }
}

fn signature_of(signing_key: u64, bucket: &str, key: &str, date: &str, expires: u64) -> String {
    let mut h = std::hash::DefaultHasher::new();
    (signing_key, "GET", bucket, key, date, expires).hash(&mut h);
    let first = h.finish();
    first.hash(&mut h);
    format!("{first:016x}{:016x}", h.finish())
}

fn presigned_url(
    signing_key: u64,
    base_url: &str,
    bucket: &str,
    key: &str,
    now: u64,
    expires_in: u64,
) -> String {
    let date = amz_date(now);
    let signature = signature_of(signing_key, bucket, key, &date, expires_in);
    format!(
        "{}/{bucket}/{}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={date}&X-Amz-Expires={expires_in}&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}",
        base_url.trim_end_matches('/'),
        encode_key(key)
    )
}

/// Issues presigned GET URLs of one [`S3`] store (the same signing key) under the address its
/// listener is bound to.
///
/// Call contract: take it from [`S3::presigner`]; it stays valid as long as the store (the
/// key never changes). Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigner {
    signing_key: u64,
    base_url: Option<String>,
}

impl Presigner {
    /// The base URL presigned URLs point at, when a listener serves the store.
    pub fn base_url(&self) -> Option<&str> {
        self.base_url.as_deref()
    }

    /// `document` as a device reads it at `now` (epoch seconds): every presigned-URL
    /// placeholder in its string values replaced with a URL valid for `expires_in` seconds.
    /// Without a base URL the placeholders are left as they are, with a WARN.
    pub fn render(&self, document: &Value, now: u64, expires_in: u64) -> Value {
        let Some(base_url) = self.base_url.as_deref() else {
            if contains_presigned_placeholder(&document.to_string()) {
                tracing::warn!(
                    "a job document has presigned-URL placeholders but no S3 listener serves the \
                     emulated S3: they are sent as they are"
                );
            }
            return document.clone();
        };
        let mut document = document.clone();
        replace_in_strings(&mut document, &mut |text| {
            if contains_presigned_placeholder(text) {
                *text = replace_with(text, |bucket, key| {
                    presigned_url(self.signing_key, base_url, bucket, key, now, expires_in)
                });
            }
        });
        document
    }
}

/// Applies `f` to every string value of `value` (object keys are left alone).
fn replace_in_strings(value: &mut Value, f: &mut impl FnMut(&mut String)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter_mut().for_each(|v| replace_in_strings(v, f)),
        Value::Object(map) => map.values_mut().for_each(|v| replace_in_strings(v, f)),
        _ => {}
    }
}

/// Whether `text` holds the start of a presigned-URL placeholder (either form).
pub fn contains_presigned_placeholder(text: &str) -> bool {
    text.contains(PLACEHOLDER_V1) || text.contains(PLACEHOLDER_V2)
}

fn no_bucket(bucket: &str) -> S3Error {
    s3_error(
        "NoSuchBucket",
        404,
        format!("bucket {bucket} does not exist"),
    )
}

/// Replaces every `${aws:iot:s3-presigned-url:https://s3.amazonaws.com/<bucket>/<key>}` and
/// `${aws:iot:s3-presigned-url-v2:https://s3.<region>.amazonaws.com/<bucket>/<key>}` (and the
/// older `${aws:iot:s3-presigned-url:<bucket>/<key>}`) in `text` with a URL to `base_url`
/// presigned at `now` for `expires_in` seconds, as the Jobs service does each time a device
/// reads the document. A placeholder whose URL is not of those forms is left as it is.
pub fn replace_presigned_placeholders(
    text: &str,
    store: &S3,
    now: u64,
    expires_in: u64,
    base_url: &str,
) -> String {
    replace_with(text, |bucket, key| {
        store.presign_get(base_url, bucket, key, now, expires_in)
    })
}

/// Replaces each placeholder of `text` naming an S3 object with `url(bucket, key)`.
fn replace_with(text: &str, url: impl Fn(&str, &str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = [PLACEHOLDER_V2, PLACEHOLDER_V1]
            .iter()
            .filter_map(|p| rest.find(p).map(|at| (at, *p)))
            .min_by_key(|(at, p)| (*at, std::cmp::Reverse(p.len())));
        let Some((at, prefix)) = next else {
            out.push_str(rest);
            return out;
        };
        let inner_start = at + prefix.len();
        let Some(len) = rest[inner_start..].find('}') else {
            out.push_str(rest);
            return out;
        };
        let inner = &rest[inner_start..inner_start + len];
        out.push_str(&rest[..at]);
        match s3_location(inner) {
            Some((bucket, key)) => out.push_str(&url(bucket, &key)),
            None => out.push_str(&rest[at..inner_start + len + 1]),
        }
        rest = &rest[inner_start + len + 1..];
    }
}

/// Bucket and key of `https://s3.amazonaws.com/<bucket>/<key>`,
/// `https://s3.<region>.amazonaws.com/<bucket>/<key>` or `<bucket>/<key>`.
fn s3_location(url: &str) -> Option<(&str, String)> {
    let Some(rest) = url.strip_prefix("https://") else {
        let (bucket, key) = url.split_once('/')?;
        let plain = !bucket.is_empty() && !key.is_empty() && !bucket.contains(':');
        return plain.then(|| Some((bucket, decode(key)?))).flatten();
    };
    let (host, path) = rest.split_once('/')?;
    let host_ok = host == "s3.amazonaws.com"
        || host
            .strip_prefix("s3.")
            .and_then(|h| h.strip_suffix(".amazonaws.com"))
            .is_some_and(|region| !region.is_empty() && !region.contains('/'));
    let (bucket, key) = path.split_once('/')?;
    if !host_ok || bucket.is_empty() || key.is_empty() {
        return None;
    }
    Some((bucket, decode(key)?))
}

fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Epoch seconds as `YYYYMMDDTHHMMSSZ` (UTC).
pub fn amz_date(epoch: u64) -> String {
    let secs = epoch % 86_400;
    let (year, month, day) = crate::clock::civil_date((epoch / 86_400) as i64);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The inverse of [`amz_date`].
pub fn parse_amz_date(text: &str) -> Option<u64> {
    let t = text.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    if date.len() != 8 || time.len() != 6 || !t.chars().all(|c| c.is_ascii_digit() || c == 'T') {
        return None;
    }
    let n = |s: &str| s.parse::<i64>().ok();
    let (year, month, day) = (n(&date[..4])?, n(&date[4..6])?, n(&date[6..])?);
    let (h, m, s) = (n(&time[..2])?, n(&time[2..4])?, n(&time[4..])?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days since 1970-01-01 from a civil date (the inverse of the algorithm above).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://127.0.0.1:9000";

    fn store() -> S3 {
        let mut s = S3::new(42);
        s.create_bucket("firmware").unwrap();
        s.put_object("firmware", "v1/image one.bin", b"payload".to_vec(), "", 100)
            .unwrap();
        s
    }

    fn split(url: &str) -> (&str, &str) {
        let rest = url.strip_prefix(BASE).unwrap();
        rest.split_once('?').unwrap()
    }

    #[test]
    fn amz_dates_round_trip() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_764_583_200), "20251201T100000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        for t in [0, 59, 951_782_399, 1_764_583_200, 4_102_444_800] {
            assert_eq!(parse_amz_date(&amz_date(t)), Some(t));
        }
        assert_eq!(parse_amz_date("2025-12-01"), None);
    }

    #[test]
    fn presigned_urls_serve_until_they_expire() {
        let s = store();
        let url = s.presign_get(BASE, "firmware", "v1/image one.bin", 1000, 60);
        assert!(
            url.starts_with("http://127.0.0.1:9000/firmware/v1/image%20one.bin?"),
            "{url}"
        );
        let (path, query) = split(&url);
        assert_eq!(s.get_presigned(path, query, 1000).unwrap().data, b"payload");
        assert_eq!(s.get_presigned(path, query, 1060).unwrap().data, b"payload");
        let e = s.get_presigned(path, query, 1061).unwrap_err();
        assert_eq!((e.code, e.status), ("AccessDenied", 403));
        assert!(e.message.contains("expired"));
        // Altered: another key, a longer expiry, or no signature.
        let e = s
            .get_presigned("/firmware/v1/other.bin", query, 1000)
            .unwrap_err();
        assert_eq!(e.status, 403);
        let longer = query.replace("X-Amz-Expires=60", "X-Amz-Expires=3600");
        assert_eq!(
            s.get_presigned(path, &longer, 2000).unwrap_err().status,
            403
        );
        assert_eq!(s.get_presigned(path, "", 1000).unwrap_err().status, 403);
        // Another store's URL does not work here.
        let other = S3::new(7).presign_get(BASE, "firmware", "v1/image one.bin", 1000, 60);
        let (_, foreign) = split(&other);
        assert_eq!(
            s.get_presigned(path, foreign, 1000).unwrap_err().status,
            403
        );
        // A valid URL for a missing object is NoSuchKey.
        let missing = s.presign_get(BASE, "firmware", "gone", 1000, 60);
        let (p, q) = split(&missing);
        assert_eq!(s.get_presigned(p, q, 1000).unwrap_err().code, "NoSuchKey");
    }

    #[test]
    fn buckets_and_objects() {
        let mut s = store();
        assert_eq!(
            s.create_bucket("firmware").unwrap_err().code,
            "BucketAlreadyOwnedByYou"
        );
        assert_eq!(
            s.create_bucket("Bad_Name").unwrap_err().code,
            "InvalidBucketName"
        );
        assert_eq!(
            s.put_object("nope", "k", vec![], "", 1).unwrap_err().code,
            "NoSuchBucket"
        );
        let e1 = s
            .put_object("firmware", "k", b"a".to_vec(), "text/plain", 1)
            .unwrap();
        let e2 = s
            .put_object("firmware", "k", b"b".to_vec(), "text/plain", 2)
            .unwrap();
        assert_ne!(e1, e2);
        let o = s.get_object("firmware", "k").unwrap();
        assert_eq!((o.data.as_slice(), o.last_modified), (&b"b"[..], 2));
    }

    #[test]
    fn placeholders_are_replaced_at_read_time() {
        let s = store();
        let doc = r#"{"args": ["${aws:iot:s3-presigned-url:https://s3.amazonaws.com/firmware/v1/image%20one.bin}", "/data/f", "${aws:iot:s3-presigned-url-v2:https://s3.eu-west-1.amazonaws.com/firmware/v1/image%20one.bin}", "${aws:iot:s3-presigned-url:https://example.com/x}"]}"#;
        let first = replace_presigned_placeholders(doc, &s, 1000, 60, BASE);
        let later = replace_presigned_placeholders(doc, &s, 1100, 60, BASE);
        assert_ne!(first, later, "each read gets a fresh URL");
        let v: serde_json::Value = serde_json::from_str(&later).unwrap();
        for i in [0, 2] {
            let url = v["args"][i].as_str().unwrap();
            let (path, query) = split(url);
            assert_eq!(s.get_presigned(path, query, 1100).unwrap().data, b"payload");
        }
        assert_eq!(v["args"][1], "/data/f");
        assert_eq!(
            v["args"][3], "${aws:iot:s3-presigned-url:https://example.com/x}",
            "not an S3 URL: left alone"
        );
        assert_eq!(replace_presigned_placeholders("{}", &s, 1, 60, BASE), "{}");
    }

    #[test]
    fn a_presigner_renders_every_string_of_a_document() {
        let s = store();
        let doc = serde_json::json!({
            "url": "${aws:iot:s3-presigned-url:firmware/v1/image%20one.bin}",
            "nested": [{"u": "get ${aws:iot:s3-presigned-url-v2:https://s3.us-west-2.amazonaws.com/firmware/v1/image%20one.bin} now"}],
            "${aws:iot:s3-presigned-url:firmware/k}": 1,
            "n": 7
        });
        let rendered = s.presigner(Some(BASE.into())).render(&doc, 1000, 60);
        let url = rendered["url"].as_str().unwrap();
        let (path, query) = split(url);
        assert_eq!(s.get_presigned(path, query, 1060).unwrap().data, b"payload");
        let text = rendered["nested"][0]["u"].as_str().unwrap();
        let inner = text
            .strip_prefix("get ")
            .unwrap()
            .strip_suffix(" now")
            .unwrap();
        let (path, query) = split(inner);
        assert_eq!(s.get_presigned(path, query, 1000).unwrap().data, b"payload");
        assert_eq!(
            rendered["${aws:iot:s3-presigned-url:firmware/k}"], 1,
            "keys are not values"
        );
        assert_eq!(rendered["n"], 7);
        assert_eq!(s.presigner(None).render(&doc, 1000, 60), doc);
        assert!(contains_presigned_placeholder(&doc.to_string()));
        assert!(!contains_presigned_placeholder(
            &rendered["url"].to_string()
        ));
    }
}
