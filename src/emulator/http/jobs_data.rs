//! The `iot-jobs-data` plane over HTTP, on its own listener (its paths collide with the control
//! plane's `/things/{thingName}/jobs`): GetPendingJobExecutions, DescribeJobExecution,
//! StartNextPendingJobExecution and UpdateJobExecution, through the Jobs service's typed data
//! plane (the same calls the MQTT topics make).
//!
//! Owns: paths, request bodies as the serde types of [`crate::jobs::messages`], and the HTTP
//! status and exception name of each rejection. Must not know: the Jobs rules, sockets or
//! hyper.

use super::server::{error, ok, Reply, Request};
use crate::emulator::cloud::jobs_service::{JobsService, Output, Rejection};
use crate::emulator::shared_world::SharedWorld;
use crate::jobs::messages::{ErrorCode, StatusDetails, UpdateRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn rejected(r: Rejection) -> Reply {
    let (status, name) = match r.code {
        ErrorCode::ResourceNotFound => (404, "ResourceNotFoundException"),
        ErrorCode::RequestThrottled => (429, "ThrottlingException"),
        ErrorCode::TerminalStateReached => (410, "TerminalStateException"),
        ErrorCode::InvalidStateTransition | ErrorCode::VersionMismatch => {
            (409, "InvalidStateTransitionException")
        }
        ErrorCode::InternalError => (503, "ServiceUnavailableException"),
        _ => (400, "InvalidRequestException"),
    };
    error(status, name, format!("{}: {}", r.code.as_str(), r.message))
}

/// Runs one data-plane call, sends what it publishes and answers its response as JSON.
fn call<T: Serialize>(
    cloud: &SharedWorld,
    f: impl FnOnce(&mut JobsService, u64) -> Result<(T, Vec<Output>), Rejection>,
) -> Reply {
    let answer = cloud.with(|w| {
        w.jobs_call(|jobs, now| {
            Ok(match f(jobs, now) {
                Ok((t, out)) => (Ok(t), out),
                Err(r) => (Err(r), Vec::new()),
            })
        })
    });
    match answer {
        Ok(Ok(response)) => match serde_json::to_value(response) {
            Ok(v) => ok(v),
            Err(e) => error(503, "ServiceUnavailableException", e.to_string()),
        },
        Ok(Err(r)) => rejected(r),
        Err(e) => super::aws_iot::from_control(e),
    }
}

fn body<T: for<'de> Deserialize<'de>>(request: &Request<'_>) -> Result<T, Reply> {
    let value: Value = request.json()?;
    serde_json::from_value(value).map_err(|e| {
        error(
            400,
            "InvalidRequestException",
            format!("invalid request body: {e}"),
        )
    })
}

/// StartNextPendingJobExecution's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartNextBody {
    #[serde(default)]
    status_details: Option<StatusDetails>,
    #[serde(default)]
    step_timeout_in_minutes: Option<i64>,
}

/// The jobs-data listener's router.
pub fn handle(cloud: &SharedWorld, request: &Request<'_>) -> Reply {
    let segs = request.segs();
    match (request.method, segs.as_slice()) {
        ("GET", ["things", thing, "jobs"]) => call(cloud, |jobs, now| {
            jobs.get_pending_job_executions(thing, now)
        }),
        ("PUT", ["things", thing, "jobs", "$next"]) => match body::<StartNextBody>(request) {
            Ok(b) => call(cloud, |jobs, now| {
                jobs.start_next_pending_job_execution(
                    thing,
                    b.status_details,
                    b.step_timeout_in_minutes,
                    now,
                )
            }),
            Err(r) => r,
        },
        ("GET", ["things", thing, "jobs", job_id]) => {
            let number = match request
                .query_value("executionNumber")
                .map(|n| n.parse::<i64>())
            {
                None => None,
                Some(Ok(n)) => Some(n),
                Some(Err(_)) => {
                    return error(
                        400,
                        "InvalidRequestException",
                        "executionNumber must be a number",
                    )
                }
            };
            let include = request
                .query_value("includeJobDocument")
                .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
            call(cloud, |jobs, now| {
                jobs.describe_job_execution(thing, job_id, number, include, now)
            })
        }
        ("POST", ["things", thing, "jobs", job_id]) => match body::<UpdateRequest>(request) {
            Ok(update) => call(cloud, |jobs, now| {
                jobs.update_job_execution(thing, job_id, &update, now)
            }),
            Err(r) => r,
        },
        _ => super::server::no_route(request),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::clock::ClockMode;
    use crate::emulator::cloud::jobs_service::NewJob;
    use crate::emulator::http::server::ReplyBody;
    use crate::emulator::{Emulator, EmulatorOptions};
    use serde_json::json;

    fn req<'a>(method: &'a str, path: &'a str, query: &'a str, body: &'a [u8]) -> Request<'a> {
        Request::new(method, path, query, body)
    }

    /// An emulator on the manual clock with the thing `dev`.
    fn manual_emulator() -> Emulator {
        let e = Emulator::with_options(EmulatorOptions {
            thing: "core".into(),
            clock: ClockMode::Manual,
            ..EmulatorOptions::default()
        });
        e.world().create_thing("dev").unwrap();
        e
    }

    #[test]
    fn a_device_runs_a_job_over_http() {
        let e = manual_emulator();
        let w = e.world();
        w.create_job(NewJob {
            job_id: "j".into(),
            targets: vec!["dev".into()],
            document: json!({"operation": "echo"}),
            ..NewJob::default()
        })
        .unwrap();
        let r = handle(w, &req("GET", "/things/dev/jobs", "", b""));
        assert_eq!(r["queuedJobs"][0]["jobId"], "j");
        let r = handle(w, &req("GET", "/things/dev/jobs/j", "", b""));
        assert_eq!(r["execution"]["jobDocument"]["operation"], "echo");
        let r = handle(
            w,
            &req(
                "PUT",
                "/things/dev/jobs/$next",
                "",
                br#"{"statusDetails": {"step": "1"}}"#,
            ),
        );
        assert_eq!(r["execution"]["status"], "IN_PROGRESS");
        let update = json!({"status": "SUCCEEDED", "expectedVersion": 99}).to_string();
        let r = handle(w, &req("POST", "/things/dev/jobs/j", "", update.as_bytes()));
        assert_eq!(
            (r.status, r.error_type),
            (409, Some("InvalidStateTransitionException")),
            "version mismatch"
        );
        let update = json!({"status": "SUCCEEDED", "includeJobExecutionState": true}).to_string();
        let r = handle(w, &req("POST", "/things/dev/jobs/j", "", update.as_bytes()));
        assert_eq!(r["executionState"]["status"], "SUCCEEDED");
        let r = handle(w, &req("GET", "/things/dev/jobs/j", "", b""));
        assert_eq!(
            (r.status, r.error_type),
            (410, Some("TerminalStateException"))
        );
        let r = handle(w, &req("GET", "/things/ghost/jobs", "", b""));
        assert_eq!(r.status, 404);
        let r = handle(
            w,
            &req("POST", "/things/dev/jobs/j", "", br#"{"status": "BOGUS"}"#),
        );
        assert_eq!(r.error_type, Some("InvalidRequestException"));
        let r = handle(
            w,
            &req("GET", "/things/dev/jobs/j", "executionNumber=x", b""),
        );
        assert_eq!(r.error_type, Some("InvalidRequestException"));
    }

    #[test]
    fn documents_read_over_http_carry_urls_to_the_s3_listener() {
        let e = manual_emulator();
        let w = e.world();
        let s3 = |method: &'static str, path: &'static str, body: &'static [u8]| {
            crate::emulator::http::s3::handle(w, &req(method, path, "", body))
        };
        assert_eq!(s3("PUT", "/firmware", b"").status, 200);
        assert_eq!(s3("PUT", "/firmware/image.bin", b"image").status, 200);
        let placeholder = "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/firmware/image.bin}";
        w.create_job(NewJob {
            job_id: "j".into(),
            targets: vec!["dev".into()],
            document: json!({"url": placeholder}),
            presigned_url: Some(crate::emulator::cloud::jobs_service::PresignedUrlConfig {
                role_arn: Some("arn:aws:iam::123456789012:role/presign".into()),
                expires_in_sec: Some(60),
            }),
            ..NewJob::default()
        })
        .unwrap();
        // No S3 listener bound yet: the placeholder is sent as it is.
        let r = handle(w, &req("GET", "/things/dev/jobs/j", "", b""));
        assert_eq!(r["execution"]["jobDocument"]["url"], placeholder);

        w.with(|w| w.set_s3_base_url(Some("http://127.0.0.1:4566".into())));
        let r = handle(w, &req("GET", "/things/dev/jobs/j", "", b""));
        let url = r["execution"]["jobDocument"]["url"]
            .as_str()
            .unwrap()
            .to_owned();
        let (path, query) = url
            .strip_prefix("http://127.0.0.1:4566")
            .and_then(|u| u.split_once('?'))
            .expect("a presigned URL to the listener");
        let get = || crate::emulator::http::s3::handle(w, &req("GET", path, query, b""));
        let fresh = get();
        assert_eq!(fresh.status, 200);
        assert!(matches!(&fresh.body, ReplyBody::Bytes(b, _) if b == b"image"));
        w.advance(61_000);
        assert_eq!(get().status, 403, "61 s later");
    }
}
