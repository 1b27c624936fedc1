//! The emulator's control API: a local HTTP endpoint in the shape of the AWS IoT control-plane
//! REST API, so boto3 or the AWS CLI pointed at it (`endpoint_url`) can drive the emulator.
//!
//! Owns: routes, request parsing and response shapes for CreateThing, CreateJob, DescribeJob,
//! CancelJob, CancelJobExecution, DeleteJobExecution, DescribeJobExecution,
//! ListJobExecutionsForThing and ListJobExecutionsForJob, errors as AWS writes them
//! (`x-amzn-ErrorType` + `{"message"}`), and the emulator's own `/emulator/...` routes (drop and
//! restore the core's connection, inject throttling). Signatures are not checked.
//! Must not know: the Jobs rules themselves (the cloud's); the HTTP server is hyper.

use super::cloud::jobs_service::{ControlError, Execution, Job, NewJob, RetryConfig};
use super::shared_world::SharedWorld;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// A response before it is put on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    /// AWS exception name, sent as `x-amzn-ErrorType`.
    pub error_type: Option<&'static str>,
    pub body: Value,
}

fn ok(body: Value) -> Reply {
    Reply {
        status: 200,
        error_type: None,
        body,
    }
}

fn error(status: u16, error_type: &'static str, message: impl Into<String>) -> Reply {
    Reply {
        status,
        error_type: Some(error_type),
        body: json!({"message": message.into()}),
    }
}

fn from_control(e: ControlError) -> Reply {
    let status = match e.code {
        "ResourceNotFoundException" => 404,
        "ResourceAlreadyExistsException" | "InvalidStateTransitionException" => 409,
        _ => 400,
    };
    error(status, e.code, e.message)
}

fn thing_arn(thing: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:thing/{thing}")
}

fn job_arn(job_id: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:job/{job_id}")
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        pair.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
    })
}

fn flag(query: &str, key: &str) -> bool {
    query_value(query, key).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn percent_decode(s: &str) -> String {
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

fn execution_json(e: &Execution, force_canceled: bool) -> Value {
    let mut v = json!({
        "jobId": e.job_id,
        "status": e.status,
        "forceCanceled": force_canceled,
        "statusDetails": {"detailsMap": e.status_details},
        "thingArn": thing_arn(&e.thing_name),
        "queuedAt": secs(e.queued_at_ms),
        "lastUpdatedAt": secs(e.last_updated_at_ms),
        "executionNumber": e.execution_number,
        "versionNumber": e.version_number,
    });
    if let Some(s) = e.started_at_ms {
        v["startedAt"] = json!(secs(s));
    }
    v
}

fn summary_json(e: &Execution) -> Value {
    let mut v = json!({
        "status": e.status,
        "queuedAt": secs(e.queued_at_ms),
        "lastUpdatedAt": secs(e.last_updated_at_ms),
        "executionNumber": e.execution_number,
        "retryAttempt": e.retry_attempt,
    });
    if let Some(s) = e.started_at_ms {
        v["startedAt"] = json!(secs(s));
    }
    v
}

fn job_json(job: &Job) -> Value {
    let mut v = json!({
        "jobArn": job_arn(&job.job_id),
        "jobId": job.job_id,
        "targetSelection": if job.continuous { "CONTINUOUS" } else { "SNAPSHOT" },
        "status": job.state.as_str(),
        "forceCanceled": job.force_canceled,
        "targets": job
            .targets
            .iter()
            .map(|t| thing_arn(t))
            .chain(job.target_groups.iter().map(|g| format!("arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/{g}")))
            .collect::<Vec<_>>(),
        "createdAt": secs(job.created_at_ms),
        "lastUpdatedAt": secs(job.last_updated_at_ms),
    });
    if let Some(d) = &job.description {
        v["description"] = json!(d);
    }
    if let Some(ns) = &job.namespace_id {
        v["namespaceId"] = json!(ns);
    }
    if let Some(m) = job.in_progress_timeout_minutes {
        v["timeoutConfig"] = json!({"inProgressTimeoutInMinutes": m});
    }
    v
}

/// Handles one request; pure apart from the cloud's state.
pub fn handle(cloud: &SharedWorld, method: &str, path: &str, query: &str, body: &[u8]) -> Reply {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let json_body = || -> Result<Value, Reply> {
        if body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(body).map_err(|e| {
            error(
                400,
                "InvalidRequestException",
                format!("invalid JSON body: {e}"),
            )
        })
    };
    let result = match (method, segs.as_slice()) {
        ("POST", ["things", thing]) => cloud
            .create_thing(thing)
            .map(|()| ok(json!({"thingName": thing, "thingArn": thing_arn(thing), "thingId": format!("{:x}", crc32fast::hash(thing.as_bytes()))})))
            .unwrap_or_else(from_control),
        ("POST", ["thing-groups", group]) => cloud
            .create_thing_group(group)
            .map(|()| {
                ok(json!({"thingGroupName": group, "thingGroupArn": format!("arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/{group}"), "thingGroupId": format!("{:x}", crc32fast::hash(group.as_bytes()))}))
            })
            .unwrap_or_else(from_control),
        ("PUT", ["thing-groups", action @ ("addThingToThingGroup" | "removeThingFromThingGroup")]) => {
            let b = match json_body() {
                Ok(b) => b,
                Err(r) => return r,
            };
            let name_of = |name: &str, arn: &str, marker: &str| {
                b.get(name)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| b.get(arn).and_then(Value::as_str).and_then(|a| a.rsplit_once(marker)).map(|(_, n)| n.to_owned()))
            };
            let (Some(group), Some(thing)) = (name_of("thingGroupName", "thingGroupArn", ":thinggroup/"), name_of("thingName", "thingArn", ":thing/")) else {
                return error(400, "InvalidRequestException", "thingGroupName (or thingGroupArn) and thingName (or thingArn) are required");
            };
            let result = if *action == "addThingToThingGroup" {
                cloud.add_thing_to_thing_group(&group, &thing)
            } else {
                cloud.remove_thing_from_thing_group(&group, &thing)
            };
            result.map(|()| ok(json!({}))).unwrap_or_else(from_control)
        }
        ("PUT", ["jobs", job_id]) => match json_body() {
            Ok(b) => create_job(cloud, job_id, &b),
            Err(r) => r,
        },
        ("GET", ["jobs", job_id]) => match cloud.with_jobs(|j| j.job(job_id).map(job_json)) {
            Some(job) => ok(json!({"documentSource": Value::Null, "job": job})),
            None => error(404, "ResourceNotFoundException", format!("job {job_id} does not exist")),
        },
        ("PUT", ["jobs", job_id, "cancel"]) => {
            let reason = json_body().ok().and_then(|b| b.get("reasonCode").and_then(Value::as_str).map(str::to_owned));
            cloud
                .cancel_job(job_id, flag(query, "force"), reason.as_deref())
                .map(|()| ok(json!({"jobArn": job_arn(job_id), "jobId": job_id})))
                .unwrap_or_else(from_control)
        }
        ("GET", ["jobs", job_id, "things"]) => {
            let list: Vec<Value> = cloud.with_jobs(|j| {
                j.executions_for_job(job_id)
                    .into_iter()
                    .map(|e| json!({"thingArn": thing_arn(&e.thing_name), "jobExecutionSummary": summary_json(e)}))
                    .collect()
            });
            ok(json!({"executionSummaries": list}))
        }
        ("GET", ["things", thing, "jobs"]) => {
            let status = query_value(query, "status").map(str::to_owned);
            let list: Vec<Value> = cloud.with_jobs(|j| {
                j.executions_for_thing(thing)
                    .iter()
                    .filter(|e| status.as_deref().is_none_or(|s| e.status.as_str() == s))
                    .map(|e| json!({"jobId": e.job_id, "jobExecutionSummary": summary_json(e)}))
                    .collect()
            });
            ok(json!({"executionSummaries": list}))
        }
        ("GET", ["things", thing, "jobs", job_id]) => {
            let number = query_value(query, "executionNumber").and_then(|n| n.parse().ok());
            let found = cloud.with_jobs(|j| {
                let forced = j.job(job_id).is_some_and(|job| job.force_canceled);
                j.execution(job_id, thing, number).map(|e| execution_json(e, forced))
            });
            match found {
                Some(e) => ok(json!({"execution": e})),
                None => error(404, "ResourceNotFoundException", format!("no execution of {job_id} on {thing}")),
            }
        }
        ("PUT", ["things", thing, "jobs", job_id, "cancel"]) => cloud
            .cancel_job_execution(job_id, thing, flag(query, "force"))
            .map(|()| ok(json!({})))
            .unwrap_or_else(from_control),
        ("DELETE", ["things", thing, "jobs", job_id, "executionNumber", n]) => match n.parse() {
            Ok(n) => cloud
                .delete_job_execution(job_id, thing, n, flag(query, "force"))
                .map(|()| ok(json!({})))
                .unwrap_or_else(from_control),
            Err(_) => error(400, "InvalidRequestException", "executionNumber must be a number"),
        },
        ("POST", ["emulator", "nucleus", "disconnect"]) => {
            cloud.disconnect_nucleus();
            ok(json!({"connected": false}))
        }
        ("POST", ["emulator", "nucleus", "reconnect"]) => {
            cloud.reconnect_nucleus(flag(query, "clean"));
            ok(json!({"connected": true, "clean": flag(query, "clean")}))
        }
        ("POST", ["emulator", "things", thing, "throttle"]) => {
            let count = query_value(query, "count").and_then(|c| c.parse().ok()).unwrap_or(1);
            cloud.throttle(thing, count);
            ok(json!({"throttled": count}))
        }
        ("GET", ["emulator", "health"]) => ok(json!({"thing": cloud.thing_name(), "nucleusConnected": cloud.nucleus_connected()})),
        _ => error(404, "ResourceNotFoundException", format!("no route for {method} {path}")),
    };
    if result.status >= 400 {
        tracing::info!(
            method,
            path,
            status = result.status,
            error = result.error_type,
            "control API request refused"
        );
    }
    result
}

fn create_job(cloud: &SharedWorld, job_id: &str, body: &Value) -> Reply {
    let Some(targets) = body.get("targets").and_then(Value::as_array) else {
        return error(400, "InvalidRequestException", "targets is required");
    };
    let mut things = Vec::new();
    let mut groups = Vec::new();
    for t in targets {
        let arn = t.as_str().unwrap_or_default();
        if let Some((_, name)) = arn.rsplit_once(":thing/") {
            things.push(name.to_owned());
        } else if let Some((_, name)) = arn.rsplit_once(":thinggroup/") {
            groups.push(name.to_owned());
        } else {
            return error(
                400,
                "InvalidRequestException",
                format!("target {t} is not a thing or thing group ARN"),
            );
        }
    }
    let continuous = body.get("targetSelection").and_then(Value::as_str) == Some("CONTINUOUS");
    let document = match body.get("document").and_then(Value::as_str) {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(doc) => doc,
            Err(e) => {
                return error(
                    400,
                    "InvalidRequestException",
                    format!("document is not valid JSON: {e}"),
                )
            }
        },
        None => {
            return error(
                400,
                "InvalidRequestException",
                "document is required (documentSource is not emulated)",
            )
        }
    };
    let new = NewJob {
        job_id: job_id.to_owned(),
        targets: things,
        document,
        description: body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        namespace_id: body
            .get("namespaceId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        in_progress_timeout_minutes: body
            .pointer("/timeoutConfig/inProgressTimeoutInMinutes")
            .and_then(Value::as_i64),
        retry: retry_config(body),
        target_groups: groups,
        continuous,
    };
    let description = new.description.clone();
    match cloud.create_job(new) {
        Ok(()) => {
            let mut v = json!({"jobArn": job_arn(job_id), "jobId": job_id});
            if let Some(d) = description {
                v["description"] = json!(d);
            }
            ok(v)
        }
        Err(e) => from_control(e),
    }
}

fn retry_config(body: &Value) -> RetryConfig {
    let mut retry = RetryConfig::default();
    let criteria = body
        .pointer("/jobExecutionsRetryConfig/criteriaList")
        .and_then(Value::as_array);
    for c in criteria.into_iter().flatten() {
        let n = c
            .get("numberOfRetries")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(10) as u32;
        match c.get("failureType").and_then(Value::as_str) {
            Some("FAILED") => retry.failed = n,
            Some("TIMED_OUT") => retry.timed_out = n,
            Some("ALL") => {
                retry.failed = n;
                retry.timed_out = n;
            }
            _ => {}
        }
    }
    retry
}

/// Serves the control API on `addr` until the task is dropped; returns the bound address.
pub async fn serve(
    cloud: Arc<SharedWorld>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "control API accept failed");
                    continue;
                }
            };
            let cloud = Arc::clone(&cloud);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let cloud = Arc::clone(&cloud);
                    async move { Ok::<_, std::convert::Infallible>(respond(&cloud, request).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(error = %e, "control API connection ended");
                }
            });
        }
    });
    Ok((local, task))
}

/// Largest request body accepted (a job document is at most 32 KiB).
const MAX_BODY: usize = 256 * 1024;

async fn respond(cloud: &SharedWorld, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let limited = http_body_util::Limited::new(request.into_body(), MAX_BODY);
    let reply = match limited.collect().await {
        Ok(body) => handle(cloud, &method, &path, &query, &body.to_bytes()),
        Err(e) => error(
            413,
            "InvalidRequestException",
            format!("request body refused: {e}"),
        ),
    };
    let mut response = Response::builder()
        .status(reply.status)
        .header("content-type", "application/json");
    if let Some(t) = reply.error_type {
        response = response.header("x-amzn-ErrorType", t);
    }
    response
        .body(Full::new(Bytes::from(reply.body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"{}"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::{Emulator, EmulatorOptions};

    fn cloud() -> Arc<SharedWorld> {
        let emulator = Emulator::with_options(EmulatorOptions {
            thing: "core".into(),
            clock: crate::emulator::clock::ClockMode::Manual,
            ..EmulatorOptions::default()
        });
        Arc::clone(emulator.world())
    }

    #[test]
    fn create_describe_list_cancel() {
        let c = cloud();
        let body = json!({"targets": [thing_arn("core")], "document": "{\"operation\":\"echo\"}", "description": "d"});
        let r = handle(&c, "PUT", "/jobs/j1", "", body.to_string().as_bytes());
        assert_eq!((r.status, r.body["jobId"].as_str()), (200, Some("j1")));
        let r = handle(&c, "PUT", "/jobs/j1", "", body.to_string().as_bytes());
        assert_eq!(
            (r.status, r.error_type),
            (409, Some("ResourceAlreadyExistsException"))
        );
        let r = handle(&c, "GET", "/things/core/jobs/j1", "executionNumber=1", b"");
        assert_eq!(r.body["execution"]["status"], "QUEUED");
        assert_eq!(r.body["execution"]["thingArn"], thing_arn("core"));
        let r = handle(&c, "GET", "/things/core/jobs", "status=QUEUED", b"");
        assert_eq!(r.body["executionSummaries"][0]["jobId"], "j1");
        let r = handle(&c, "PUT", "/jobs/j1/cancel", "force=false", b"{}");
        assert_eq!(r.status, 200);
        let r = handle(&c, "GET", "/things/core/jobs/j1", "", b"");
        assert_eq!(r.body["execution"]["status"], "CANCELED");
        let r = handle(&c, "GET", "/jobs/j1", "", b"");
        assert_eq!(r.body["job"]["status"], "CANCELED");
    }

    #[test]
    fn emulator_routes_drive_the_connection_and_throttling() {
        let c = cloud();
        assert_eq!(
            handle(&c, "GET", "/emulator/health", "", b"").body["nucleusConnected"],
            true
        );
        handle(&c, "POST", "/emulator/nucleus/disconnect", "", b"");
        assert!(!c.nucleus_connected());
        let r = handle(&c, "POST", "/emulator/nucleus/reconnect", "clean=true", b"");
        assert_eq!(
            (r.body["connected"].as_bool(), r.body["clean"].as_bool()),
            (Some(true), Some(true))
        );
        assert!(c.nucleus_connected());
        let r = handle(&c, "POST", "/emulator/things/core/throttle", "count=2", b"");
        assert_eq!(r.body["throttled"], 2);
        let r = handle(&c, "GET", "/no/such/route", "", b"");
        assert_eq!(r.status, 404);
    }

    #[test]
    fn thing_groups_and_continuous_jobs() {
        let c = cloud();
        assert_eq!(
            handle(&c, "POST", "/thing-groups/fleet", "", b"{}").status,
            200
        );
        let add = json!({"thingGroupName": "fleet", "thingName": "core"}).to_string();
        let body = json!({"targets": ["arn:aws:iot:us-east-1:123456789012:thinggroup/fleet"], "document": "{}", "targetSelection": "CONTINUOUS"});
        assert_eq!(
            handle(&c, "PUT", "/jobs/cj", "", body.to_string().as_bytes()).status,
            200
        );
        assert_eq!(
            handle(&c, "GET", "/things/core/jobs/cj", "", b"").status,
            404,
            "not a member yet"
        );
        assert_eq!(
            handle(
                &c,
                "PUT",
                "/thing-groups/addThingToThingGroup",
                "",
                add.as_bytes()
            )
            .status,
            200
        );
        assert_eq!(
            handle(&c, "GET", "/things/core/jobs/cj", "", b"").body["execution"]["status"],
            "QUEUED"
        );
        handle(
            &c,
            "PUT",
            "/thing-groups/removeThingFromThingGroup",
            "",
            add.as_bytes(),
        );
        assert_eq!(
            handle(&c, "GET", "/things/core/jobs/cj", "", b"").body["execution"]["status"],
            "REMOVED"
        );
        assert_eq!(
            handle(&c, "GET", "/jobs/cj", "", b"").body["job"]["targetSelection"],
            "CONTINUOUS"
        );
    }

    #[test]
    fn errors_look_like_aws() {
        let c = cloud();
        let r = handle(&c, "GET", "/things/core/jobs/nope", "", b"");
        assert_eq!(
            (r.status, r.error_type),
            (404, Some("ResourceNotFoundException"))
        );
        let r = handle(&c, "PUT", "/jobs/x", "", b"{not json");
        assert_eq!(r.error_type, Some("InvalidRequestException"));
        let r = handle(
            &c,
            "PUT",
            "/jobs/x",
            "",
            json!({"targets": ["arn:aws:iot:us-east-1:1:thinggroup/g"], "document": "{}"})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(
            r.error_type,
            Some("ResourceNotFoundException"),
            "no such group"
        );
        let r = handle(
            &c,
            "PUT",
            "/jobs/x",
            "",
            json!({"targets": ["not-an-arn"], "document": "{}"})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(r.error_type, Some("InvalidRequestException"));
        let r = handle(
            &c,
            "PUT",
            "/jobs/x",
            "",
            json!({"targets": [thing_arn("core")], "document": "not json"})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(r.error_type, Some("InvalidRequestException"));
        assert_eq!(percent_decode("a%24next%2"), "a$next%2");
    }
}
