//! Reading a describe answer whose job document does not decode.
//!
//! Owns: reading the execution's identity and state with the document left as raw text (the
//! raw-value scanner of `serde_json` has no recursion limit, unlike its value parser), and the
//! rule for when such a document **may be ours**: its raw text is a JSON object whose top-level
//! members include `"operation"`, or both `"steps"` and `"version"` — the same members that make
//! a decodable document ours ([`super::document::classify`]). A Greengrass deployment or
//! another agent's document has neither and is never touched. Must not know: what to do with
//! the execution (that is the engine's).

use super::messages::{JobExecution, JobStatus, StatusDetails, Timestamp};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow)]
    execution: Option<Execution<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Execution<'a> {
    job_id: String,
    status: JobStatus,
    #[serde(default)]
    status_details: Option<StatusDetails>,
    #[serde(default)]
    queued_at: Option<Timestamp>,
    #[serde(default)]
    version_number: i64,
    #[serde(default)]
    execution_number: i64,
    #[serde(borrow)]
    job_document: Option<&'a RawValue>,
}

/// The execution of a describe answer (without its document) and the document's raw text.
/// `None` when even that cannot be read, or when the answer holds no document.
pub fn read(payload: &[u8]) -> Option<(JobExecution, Box<RawValue>)> {
    let response: Response<'_> = serde_json::from_slice(payload).ok()?;
    let e = response.execution?;
    let document = e.job_document?.to_owned();
    let execution = JobExecution {
        job_id: e.job_id,
        thing_name: None,
        job_document: None,
        status: e.status,
        status_details: e.status_details,
        queued_at: e.queued_at,
        started_at: None,
        last_updated_at: None,
        approximate_seconds_before_timed_out: None,
        version_number: e.version_number,
        execution_number: e.execution_number,
    };
    Some((execution, document))
}

/// Whether an undecodable document has the top-level members of one of our forms.
pub fn may_be_ours(raw_document: &str) -> bool {
    let Ok(members) = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw_document) else {
        return false;
    };
    members.contains_key("operation")
        || (members.contains_key("steps") && members.contains_key("version"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn deep_documents_are_read_raw() {
        let doc = format!(r#"{{"operation": "echo", "deep": {}}}"#, nested(200));
        assert!(serde_json::from_str::<serde_json::Value>(&doc).is_err());
        assert!(may_be_ours(&doc));
        let payload = format!(
            r#"{{"clientToken": "t", "execution": {{"jobId": "j", "status": "QUEUED", "versionNumber": 3, "executionNumber": 2, "jobDocument": {doc}}}}}"#
        );
        let (e, raw) = read(payload.as_bytes()).expect("readable");
        assert_eq!(
            (e.job_id.as_str(), e.version_number, e.execution_number),
            ("j", 3, 2)
        );
        assert_eq!(raw.get(), doc);
    }

    #[test]
    fn only_our_forms_may_be_ours() {
        let deep = nested(200);
        assert!(may_be_ours(&format!(
            r#"{{"version": "1", "steps": {deep}}}"#
        )));
        assert!(!may_be_ours(&format!(r#"{{"steps": {deep}}}"#)));
        assert!(!may_be_ours(&format!(
            r#"{{"deploymentId": "d", "components": {deep}}}"#
        )));
        assert!(!may_be_ours(&deep));
        assert!(!may_be_ours("not json"));
    }
}
