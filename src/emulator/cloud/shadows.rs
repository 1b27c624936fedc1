//! Device shadows (classic and named) as the `iot-data` UpdateThingShadow, GetThingShadow
//! and DeleteThingShadow calls see them.
//!
//! Owns: each shadow's `desired` and `reported` documents, merged as AWS merges an update
//! (objects merge key by key, `null` deletes a key, anything else replaces), per-leaf
//! metadata timestamps, the version (+1 per update, `version` in a request must match), the
//! computed `delta`, and the errors (InvalidRequestException, ConflictException,
//! ResourceNotFoundException, RequestEntityTooLargeException over 8 KB of state). Timestamps
//! are epoch seconds. Must not know: the fleet index, the broker or HTTP.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The largest state document (`state` of a request) accepted, in bytes.
pub const MAX_STATE_BYTES: usize = 8 * 1024;

/// A refused shadow call, named like the AWS exception, with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

fn fail(status: u16, code: &'static str, message: impl Into<String>) -> ShadowError {
    ShadowError {
        status,
        code,
        message: message.into(),
    }
}

/// GetThingShadow's and DeleteThingShadow's answer for a shadow that does not exist.
fn no_shadow(thing: &str) -> ShadowError {
    fail(
        404,
        "ResourceNotFoundException",
        format!("no shadow exists with name: '{thing}'"),
    )
}

#[derive(Debug, Clone, Default)]
struct Shadow {
    desired: Value,
    reported: Value,
    meta_desired: Value,
    meta_reported: Value,
    version: u64,
}

/// Every shadow, keyed by (thing, shadow name; "" for the classic shadow).
#[derive(Debug, Default)]
pub struct Shadows {
    shadows: BTreeMap<(String, String), Shadow>,
}

/// Merges `update` into `doc` (and the leaf timestamps into `meta`).
fn merge(doc: &mut Value, meta: &mut Value, update: &Value, ts: u64) {
    match update {
        Value::Object(fields) => {
            if !doc.is_object() {
                *doc = Value::Object(Map::new());
            }
            if !meta.is_object() {
                *meta = Value::Object(Map::new());
            }
            for (k, v) in fields {
                let (Some(d), Some(m)) = (doc.as_object_mut(), meta.as_object_mut()) else {
                    return;
                };
                if v.is_null() {
                    d.remove(k);
                    m.remove(k);
                    continue;
                }
                if v.is_object() {
                    let dv = d.entry(k.clone()).or_insert(Value::Null);
                    let mv = m.entry(k.clone()).or_insert(Value::Null);
                    merge(dv, mv, v, ts);
                } else {
                    d.insert(k.clone(), v.clone());
                    m.insert(k.clone(), stamp(v, ts));
                }
            }
        }
        other => {
            *doc = other.clone();
            *meta = stamp(other, ts);
        }
    }
}

fn stamp(v: &Value, ts: u64) -> Value {
    match v {
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| (k.clone(), stamp(v, ts)))
            .collect(),
        Value::Array(items) => items.iter().map(|v| stamp(v, ts)).collect(),
        _ => json!({"timestamp": ts}),
    }
}

/// What `desired` holds that `reported` does not (AWS's delta).
fn delta(desired: &Value, reported: &Value) -> Option<Value> {
    match (desired, reported) {
        (Value::Object(d), Value::Object(r)) => {
            let out: Map<String, Value> = d
                .iter()
                .filter_map(|(k, v)| match r.get(k) {
                    Some(rv) => delta(v, rv).map(|dv| (k.clone(), dv)),
                    None => Some((k.clone(), v.clone())),
                })
                .collect();
            (!out.is_empty()).then_some(Value::Object(out))
        }
        (d, r) if d == r => None,
        (d, _) => Some(d.clone()),
    }
}

fn present(v: &Value) -> bool {
    v.as_object().is_some_and(|m| !m.is_empty())
}

impl Shadows {
    /// UpdateThingShadow: the response document (what was updated, its metadata, the new
    /// version).
    pub fn update(
        &mut self,
        thing: &str,
        name: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<Value, ShadowError> {
        let body: Value = serde_json::from_slice(payload)
            .map_err(|e| fail(400, "InvalidRequestException", format!("invalid JSON: {e}")))?;
        let Some(state) = body.get("state").filter(|s| s.is_object()) else {
            return Err(fail(
                400,
                "InvalidRequestException",
                "the document needs a state object",
            ));
        };
        if state.to_string().len() > MAX_STATE_BYTES {
            return Err(fail(
                413,
                "RequestEntityTooLargeException",
                format!("state over {MAX_STATE_BYTES} bytes"),
            ));
        }
        for k in state.as_object().into_iter().flat_map(|m| m.keys()) {
            if k != "desired" && k != "reported" {
                return Err(fail(
                    400,
                    "InvalidRequestException",
                    format!("state.{k} is not desired or reported"),
                ));
            }
        }
        let key = (thing.to_owned(), name.to_owned());
        let current = self.shadows.get(&key).map_or(0, |s| s.version);
        if let Some(expected) = body.get("version") {
            if expected.as_u64() != Some(current) {
                return Err(fail(
                    409,
                    "ConflictException",
                    format!("version conflict: the shadow is at {current}"),
                ));
            }
        }
        let ts = now_ms / 1000;
        let shadow = self.shadows.entry(key).or_default();
        let mut metadata = json!({});
        for part in ["desired", "reported"] {
            let Some(update) = state.get(part) else {
                continue;
            };
            let (doc, meta) = if part == "desired" {
                (&mut shadow.desired, &mut shadow.meta_desired)
            } else {
                (&mut shadow.reported, &mut shadow.meta_reported)
            };
            if update.is_null() {
                *doc = Value::Null;
                *meta = Value::Null;
            } else {
                merge(doc, meta, update, ts);
            }
            metadata[part] = stamp(update, ts);
        }
        shadow.version += 1;
        let mut response = json!({
            "state": state,
            "metadata": metadata,
            "version": shadow.version,
            "timestamp": ts,
        });
        if let Some(token) = body.get("clientToken") {
            response["clientToken"] = token.clone();
        }
        Ok(response)
    }

    /// GetThingShadow: state (desired, reported, delta), metadata, version, timestamp.
    pub fn get(&self, thing: &str, name: &str, now_ms: u64) -> Result<Value, ShadowError> {
        let s = self
            .shadows
            .get(&(thing.to_owned(), name.to_owned()))
            .ok_or_else(|| no_shadow(thing))?;
        let mut state = json!({});
        let mut metadata = json!({});
        if present(&s.desired) {
            state["desired"] = s.desired.clone();
            metadata["desired"] = s.meta_desired.clone();
        }
        if present(&s.reported) {
            state["reported"] = s.reported.clone();
            metadata["reported"] = s.meta_reported.clone();
        }
        if let Some(d) = present(&s.desired)
            .then(|| delta(&s.desired, &s.reported))
            .flatten()
        {
            state["delta"] = d;
        }
        Ok(
            json!({"state": state, "metadata": metadata, "version": s.version, "timestamp": now_ms / 1000}),
        )
    }

    /// DeleteThingShadow: the version deleted.
    pub fn delete(&mut self, thing: &str, name: &str, now_ms: u64) -> Result<Value, ShadowError> {
        let s = self
            .shadows
            .remove(&(thing.to_owned(), name.to_owned()))
            .ok_or_else(|| no_shadow(thing))?;
        Ok(json!({"version": s.version, "timestamp": now_ms / 1000}))
    }

    /// The reported state of a shadow (`Null` when there is none).
    pub fn reported(&self, thing: &str, name: &str) -> Value {
        self.shadows
            .get(&(thing.to_owned(), name.to_owned()))
            .map_or(Value::Null, |s| s.reported.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_merge_version_and_delta() {
        let mut s = Shadows::default();
        let r = s
            .update(
                "t",
                "",
                br#"{"state":{"reported":{"fw":{"v":"1"},"ok":true},"desired":{"fw":{"v":"2"}}}}"#,
                5_000,
            )
            .unwrap();
        assert_eq!(
            (r["version"].clone(), r["timestamp"].clone()),
            (json!(1), json!(5))
        );
        assert_eq!(r["metadata"]["reported"]["fw"]["v"]["timestamp"], 5);
        s.update(
            "t",
            "",
            br#"{"state":{"reported":{"ok":null,"stamp":"j1"}},"version":1}"#,
            6_000,
        )
        .unwrap();
        let g = s.get("t", "", 7_000).unwrap();
        assert_eq!(
            g["state"]["reported"],
            json!({"fw": {"v": "1"}, "stamp": "j1"})
        );
        assert_eq!(g["state"]["delta"], json!({"fw": {"v": "2"}}));
        assert_eq!(g["version"], 2);
        let e = s
            .update("t", "", br#"{"state":{"reported":{}},"version":1}"#, 8_000)
            .unwrap_err();
        assert_eq!((e.status, e.code), (409, "ConflictException"));
        for bad in [
            &b"nope"[..],
            br#"{"state":1}"#,
            br#"{"state":{"other":{}}}"#,
        ] {
            assert_eq!(
                s.update("t", "", bad, 0).unwrap_err().code,
                "InvalidRequestException"
            );
        }
        let big = format!(
            r#"{{"state":{{"reported":{{"x":"{}"}}}}}}"#,
            "a".repeat(9000)
        );
        assert_eq!(
            s.update("t", "", big.as_bytes(), 0).unwrap_err().status,
            413
        );
        assert_eq!(s.get("u", "", 0).unwrap_err().status, 404);
        assert_eq!(s.delete("t", "", 0).unwrap()["version"], 2);
        assert_eq!(
            s.get("t", "", 0).unwrap_err().code,
            "ResourceNotFoundException"
        );
    }
}
