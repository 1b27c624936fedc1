//! AWS IoT control-plane routes, in the REST shapes boto3's `iot` client speaks: things and
//! thing groups, jobs and their executions, DescribeEndpoint.
//!
//! Owns: paths, request parsing and response shapes for CreateThing (with
//! `attributePayload`), DescribeThing, ListThings, the thing-group membership calls, CreateJob,
//! DescribeJob, GetJobDocument, ListJobs, UpdateJob, CancelJob, DeleteJob, CancelJobExecution,
//! DeleteJobExecution, DescribeJobExecution, ListJobExecutionsForThing and
//! ListJobExecutionsForJob (both by status, paged), DescribeEndpoint; errors as AWS names
//! them. Signatures are not checked. Must not know: the Jobs rules themselves (the cloud's),
//! sockets or hyper.

use super::server::{error, ok, Reply, Request};
use super::Endpoints;
use crate::emulator::cloud::jobs_service::{
    Attributes, ControlError, Execution, Job, JobFilter, JobState, JobUpdate, NewJob,
    PresignedUrlConfig, RetryConfig, TargetSelection, Thing, ThingFilter,
};
use crate::emulator::shared_world::SharedWorld;
use crate::jobs::messages::JobStatus;
use serde_json::{json, Value};

pub(super) const ACCOUNT: &str = "123456789012";
pub(super) const REGION: &str = "us-east-1";

pub(super) fn from_control(e: ControlError) -> Reply {
    let status = match e.code {
        "ResourceNotFoundException" => 404,
        "ResourceAlreadyExistsException"
        | "InvalidStateTransitionException"
        | "ConflictException" => 409,
        "ThrottlingException" => 429,
        _ => 400,
    };
    error(status, e.code, e.message)
}

pub(super) fn thing_arn(thing: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:thing/{thing}")
}

fn job_arn(job_id: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:job/{job_id}")
}

pub(super) fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn thing_id(thing: &str) -> String {
    format!("{:x}", crc32fast::hash(thing.as_bytes()))
}

fn thing_json(t: &Thing) -> Value {
    json!({
        "thingName": t.thing_name,
        "thingArn": thing_arn(&t.thing_name),
        "thingId": thing_id(&t.thing_name),
        "attributes": t.attributes,
        "version": t.version,
    })
}

fn max_results(request: &Request<'_>) -> Result<Option<usize>, Reply> {
    request
        .query_value("maxResults")
        .map(|m| {
            m.parse::<usize>().map_err(|_| {
                error(
                    400,
                    "InvalidRequestException",
                    "maxResults must be a number",
                )
            })
        })
        .transpose()
}

/// The `status` query parameter of the execution listings.
fn execution_status(request: &Request<'_>) -> Result<Option<JobStatus>, Reply> {
    match request.query_value("status") {
        None => Ok(None),
        Some(s) => serde_json::from_value::<JobStatus>(json!(s))
            .map(Some)
            .map_err(|_| {
                error(
                    400,
                    "InvalidRequestException",
                    format!("unknown job execution status {s}"),
                )
            }),
    }
}

fn with_token(mut body: Value, token: Option<String>) -> Value {
    if let Some(t) = token {
        body["nextToken"] = json!(t);
    }
    body
}
/// The fields an execution and its summary share: status, times and number.
fn execution_times_json(e: &Execution) -> Value {
    let mut v = json!({
        "status": e.status,
        "queuedAt": secs(e.queued_at_ms),
        "lastUpdatedAt": secs(e.last_updated_at_ms),
        "executionNumber": e.execution_number,
    });
    if let Some(s) = e.started_at_ms {
        v["startedAt"] = json!(secs(s));
    }
    v
}

fn execution_json(e: &Execution, force_canceled: bool) -> Value {
    let mut v = execution_times_json(e);
    v["jobId"] = json!(e.job_id);
    v["forceCanceled"] = json!(force_canceled);
    v["statusDetails"] = json!({"detailsMap": e.status_details});
    v["thingArn"] = json!(thing_arn(&e.thing_name));
    v["versionNumber"] = json!(e.version_number);
    v
}

fn summary_json(e: &Execution) -> Value {
    let mut v = execution_times_json(e);
    v["retryAttempt"] = json!(e.retry_attempt);
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
    if let Some(p) = &job.presigned_url {
        v["presignedUrlConfig"] = presigned_url_json(p);
    }
    v
}

/// A `presignedUrlConfig` as the API writes it.
pub(super) fn presigned_url_json(p: &PresignedUrlConfig) -> Value {
    let mut config = json!({});
    if let Some(role) = &p.role_arn {
        config["roleArn"] = json!(role);
    }
    if let Some(expires) = p.expires_in_sec {
        config["expiresInSec"] = json!(expires);
    }
    config
}

/// Serves one control-plane request, or `None` when no route here matches its path.
pub fn handle(cloud: &SharedWorld, endpoints: &Endpoints, request: &Request<'_>) -> Option<Reply> {
    let segs = request.segs();
    let query_flag = |k: &str| request.flag(k);
    let reply = match (request.method, segs.as_slice()) {
        ("POST", ["things", thing]) => match request.json() {
            Ok(b) => create_thing(cloud, thing, &b),
            Err(r) => r,
        },
        ("GET", ["things", thing]) => cloud
            .with_jobs(|j| j.describe_thing(thing).map(thing_json))
            .map(|mut t| {
                t["defaultClientId"] = json!(thing);
                ok(t)
            })
            .unwrap_or_else(from_control),
        ("GET", ["things"]) => list_things(cloud, request),
        ("GET", ["endpoint"]) => {
            let address = match request.query_value("endpointType").as_deref() {
                Some("iot:Jobs") => endpoints.jobs_data(),
                _ => endpoints.control(),
            };
            match address {
                Some(a) => ok(json!({"endpointAddress": a.to_string()})),
                None => error(404, "ResourceNotFoundException", "endpoint not being served"),
            }
        }
        ("POST", ["thing-groups", group]) => cloud
            .create_thing_group(group)
            .map(|()| {
                ok(json!({"thingGroupName": group, "thingGroupArn": format!("arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/{group}"), "thingGroupId": thing_id(group)}))
            })
            .unwrap_or_else(from_control),
        ("PUT", ["thing-groups", action @ ("addThingToThingGroup" | "removeThingFromThingGroup")]) => {
            let b = match request.json() {
                Ok(b) => b,
                Err(r) => return Some(r),
            };
            let name_of = |name: &str, arn: &str, marker: &str| {
                b.get(name)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| b.get(arn).and_then(Value::as_str).and_then(|a| a.rsplit_once(marker)).map(|(_, n)| n.to_owned()))
            };
            let (Some(group), Some(thing)) = (name_of("thingGroupName", "thingGroupArn", ":thinggroup/"), name_of("thingName", "thingArn", ":thing/")) else {
                return Some(error(400, "InvalidRequestException", "thingGroupName (or thingGroupArn) and thingName (or thingArn) are required"));
            };
            let result = if *action == "addThingToThingGroup" {
                cloud.add_thing_to_thing_group(&group, &thing)
            } else {
                cloud.remove_thing_from_thing_group(&group, &thing)
            };
            result.map(|()| ok(json!({}))).unwrap_or_else(from_control)
        }
        ("PUT", ["jobs", job_id]) => match request.json() {
            Ok(b) => create_job(cloud, job_id, &b),
            Err(r) => r,
        },
        ("GET", ["jobs"]) => list_jobs(cloud, request),
        ("GET", ["jobs", job_id]) => match cloud.with_jobs(|j| {
            j.job(job_id).map(|job| {
                let mut v = job_json(job);
                super::job_configs::describe(&mut v, job, &j.job_counts(job_id));
                v
            })
        }) {
            Some(job) => ok(json!({"documentSource": Value::Null, "job": job})),
            None => error(404, "ResourceNotFoundException", format!("job {job_id} does not exist")),
        },
        ("GET", ["jobs", job_id, "job-document"]) => {
            match cloud.with_jobs(|j| j.job(job_id).map(|job| job.document.to_string())) {
                Some(document) => ok(json!({"document": document})),
                None => error(404, "ResourceNotFoundException", format!("job {job_id} does not exist")),
            }
        }
        ("PATCH", ["jobs", job_id]) => match request.json() {
            Ok(b) => update_job(cloud, job_id, &b),
            Err(r) => r,
        },
        ("DELETE", ["jobs", job_id]) => {
            let force = query_flag("force");
            cloud
                .jobs_control(|jobs, now| jobs.delete_job(job_id, force, now))
                .map(|()| ok(json!({})))
                .unwrap_or_else(from_control)
        }
        ("PUT", ["jobs", job_id, "cancel"]) => {
            let reason = request.json().ok().and_then(|b| b.get("reasonCode").and_then(Value::as_str).map(str::to_owned));
            cloud
                .cancel_job(job_id, query_flag("force"), reason.as_deref())
                .map(|()| ok(json!({"jobArn": job_arn(job_id), "jobId": job_id})))
                .unwrap_or_else(from_control)
        }
        ("GET", ["jobs", job_id, "things"]) => {
            let (status, max) = match (execution_status(request), max_results(request)) {
                (Ok(s), Ok(m)) => (s, m),
                (Err(r), _) | (_, Err(r)) => return Some(r),
            };
            let token = request.query_value("nextToken");
            cloud
                .with_jobs(|j| {
                    j.list_job_executions_for_job(job_id, status, max, token.as_deref()).map(|page| {
                        let list: Vec<Value> = page
                            .items
                            .into_iter()
                            .map(|e| json!({"thingArn": thing_arn(&e.thing_name), "jobExecutionSummary": summary_json(e)}))
                            .collect();
                        with_token(json!({"executionSummaries": list}), page.next_token)
                    })
                })
                .map(ok)
                .unwrap_or_else(from_control)
        }
        ("GET", ["things", thing, "jobs"]) => {
            let (status, max) = match (execution_status(request), max_results(request)) {
                (Ok(s), Ok(m)) => (s, m),
                (Err(r), _) | (_, Err(r)) => return Some(r),
            };
            let token = request.query_value("nextToken");
            cloud
                .with_jobs(|j| {
                    j.list_job_executions_for_thing(thing, status, None, max, token.as_deref()).map(|page| {
                        let list: Vec<Value> = page
                            .items
                            .into_iter()
                            .map(|e| json!({"jobId": e.job_id, "jobExecutionSummary": summary_json(e)}))
                            .collect();
                        with_token(json!({"executionSummaries": list}), page.next_token)
                    })
                })
                .map(ok)
                .unwrap_or_else(from_control)
        }
        ("GET", ["things", thing, "jobs", job_id]) => {
            let number = request.query_value("executionNumber").and_then(|n| n.parse().ok());
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
            .cancel_job_execution(job_id, thing, query_flag("force"))
            .map(|()| ok(json!({})))
            .unwrap_or_else(from_control),
        ("DELETE", ["things", thing, "jobs", job_id, "executionNumber", n]) => match n.parse() {
            Ok(n) => cloud
                .delete_job_execution(job_id, thing, n, query_flag("force"))
                .map(|()| ok(json!({})))
                .unwrap_or_else(from_control),
            Err(_) => error(400, "InvalidRequestException", "executionNumber must be a number"),
        },
        _ => return None,
    };
    Some(reply)
}

fn create_thing(cloud: &SharedWorld, thing: &str, body: &Value) -> Reply {
    let mut attributes = Attributes::new();
    if let Some(map) = body
        .pointer("/attributePayload/attributes")
        .and_then(Value::as_object)
    {
        for (k, v) in map {
            let Some(v) = v.as_str() else {
                return error(
                    400,
                    "InvalidRequestException",
                    format!("attribute {k} must be a string"),
                );
            };
            attributes.insert(k.clone(), v.to_owned());
        }
    }
    cloud
        .jobs_control(|j, _| j.create_thing_with_attributes(thing, attributes).map(|()| Vec::new()))
        .map(|()| ok(json!({"thingName": thing, "thingArn": thing_arn(thing), "thingId": thing_id(thing)})))
        .unwrap_or_else(from_control)
}

fn list_things(cloud: &SharedWorld, request: &Request<'_>) -> Reply {
    let max = match max_results(request) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let filter = ThingFilter {
        attribute_name: request.query_value("attributeName"),
        attribute_value: request.query_value("attributeValue"),
        use_prefix_attribute_value: request.flag("usePrefixAttributeValue"),
        max_results: max,
        next_token: request.query_value("nextToken"),
    };
    cloud
        .with_jobs(|j| {
            j.list_things(&filter).map(|page| {
                let things: Vec<Value> = page.items.into_iter().map(thing_json).collect();
                with_token(json!({"things": things}), page.next_token)
            })
        })
        .map(ok)
        .unwrap_or_else(from_control)
}

fn list_jobs(cloud: &SharedWorld, request: &Request<'_>) -> Reply {
    let max = match max_results(request) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let status = match request.query_value("status") {
        None => None,
        Some(s) => match JobState::parse(&s) {
            Some(state) => Some(state),
            None => {
                return error(
                    400,
                    "InvalidRequestException",
                    format!("unknown job status {s}"),
                )
            }
        },
    };
    let target_selection = match request.query_value("targetSelection") {
        None => None,
        Some(s) => match TargetSelection::parse(&s) {
            Some(t) => Some(t),
            None => {
                return error(
                    400,
                    "InvalidRequestException",
                    format!("unknown targetSelection {s}"),
                )
            }
        },
    };
    let filter = JobFilter {
        status,
        target_selection,
        thing_group_name: request.query_value("thingGroupName"),
        max_results: max,
        next_token: request.query_value("nextToken"),
    };
    cloud
        .with_jobs(|j| {
            j.list_jobs(&filter).map(|page| {
                let jobs: Vec<Value> = page
                    .items
                    .into_iter()
                    .map(|job| {
                        let full = job_json(job);
                        json!({
                            "jobArn": full["jobArn"],
                            "jobId": full["jobId"],
                            "targetSelection": full["targetSelection"],
                            "status": full["status"],
                            "createdAt": full["createdAt"],
                            "lastUpdatedAt": full["lastUpdatedAt"],
                        })
                    })
                    .collect();
                with_token(json!({"jobs": jobs}), page.next_token)
            })
        })
        .map(ok)
        .unwrap_or_else(from_control)
}

fn update_job(cloud: &SharedWorld, job_id: &str, body: &Value) -> Reply {
    let update = JobUpdate {
        description: body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        in_progress_timeout_minutes: body
            .pointer("/timeoutConfig/inProgressTimeoutInMinutes")
            .and_then(Value::as_i64),
        retry: body
            .get("jobExecutionsRetryConfig")
            .is_some()
            .then(|| retry_config(body)),
    };
    cloud
        .jobs_control(|jobs, now| jobs.update_job(job_id, update, now).map(|()| Vec::new()))
        .map(|()| ok(json!({})))
        .unwrap_or_else(from_control)
}

/// CreateJob from a request body whose `document` is set.
pub(super) fn create_job(cloud: &SharedWorld, job_id: &str, body: &Value) -> Reply {
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
    let presigned_url = match presigned_url_config(body) {
        Ok(p) => p,
        Err(reply) => return reply,
    };
    let configs = match super::job_configs::parse(body, cloud.now()) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let new = NewJob {
        rollout: configs.rollout,
        abort: configs.abort,
        scheduling: configs.scheduling,
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
        presigned_url,
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

/// `presignedUrlConfig` of a CreateJob body (its checks against the document are the Jobs
/// service's).
pub(super) fn presigned_url_config(body: &Value) -> Result<Option<PresignedUrlConfig>, Reply> {
    let Some(c) = body.get("presignedUrlConfig") else {
        return Ok(None);
    };
    let expires_in_sec = match c.get("expiresInSec") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            error(
                400,
                "InvalidRequestException",
                "presignedUrlConfig.expiresInSec must be a whole number of seconds",
            )
        })?),
    };
    Ok(Some(PresignedUrlConfig {
        role_arn: c.get("roleArn").and_then(Value::as_str).map(str::to_owned),
        expires_in_sec,
    }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::http::server::no_route;
    use crate::emulator::{Emulator, EmulatorOptions};
    use std::sync::Arc;

    fn handle(c: &SharedWorld, method: &str, path: &str, query: &str, body: &[u8]) -> Reply {
        let request = Request::new(method, path, query, body);
        super::handle(c, &Endpoints::default(), &request).unwrap_or_else(|| no_route(&request))
    }

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
        assert_eq!((r.status, r["jobId"].as_str()), (200, Some("j1")));
        let r = handle(&c, "PUT", "/jobs/j1", "", body.to_string().as_bytes());
        assert_eq!(
            (r.status, r.error_type),
            (409, Some("ResourceAlreadyExistsException"))
        );
        let r = handle(&c, "GET", "/things/core/jobs/j1", "executionNumber=1", b"");
        assert_eq!(r["execution"]["status"], "QUEUED");
        assert_eq!(r["execution"]["thingArn"], thing_arn("core"));
        let r = handle(&c, "GET", "/things/core/jobs", "status=QUEUED", b"");
        assert_eq!(r["executionSummaries"][0]["jobId"], "j1");
        let r = handle(&c, "PUT", "/jobs/j1/cancel", "force=false", b"{}");
        assert_eq!(r.status, 200);
        let r = handle(&c, "GET", "/things/core/jobs/j1", "", b"");
        assert_eq!(r["execution"]["status"], "CANCELED");
        let r = handle(&c, "GET", "/jobs/j1", "", b"");
        assert_eq!(r["job"]["status"], "CANCELED");
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
            handle(&c, "GET", "/things/core/jobs/cj", "", b"")["execution"]["status"],
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
            handle(&c, "GET", "/things/core/jobs/cj", "", b"")["execution"]["status"],
            "REMOVED"
        );
        assert_eq!(
            handle(&c, "GET", "/jobs/cj", "", b"")["job"]["targetSelection"],
            "CONTINUOUS"
        );
    }

    #[test]
    fn executions_are_counted_and_listed_by_status_in_pages() {
        let c = cloud();
        assert_eq!(handle(&c, "POST", "/things/t2", "", b"{}").status, 200);
        let body = json!({"targets": [thing_arn("core"), thing_arn("t2")], "document": "{}"});
        assert_eq!(
            handle(&c, "PUT", "/jobs/j", "", body.to_string().as_bytes()).status,
            200
        );
        assert_eq!(
            handle(&c, "PUT", "/things/t2/jobs/j/cancel", "", b"").status,
            200
        );
        let job = handle(&c, "GET", "/jobs/j", "", b"");
        let details = &job["job"]["jobProcessDetails"];
        assert_eq!(
            (
                details["numberOfQueuedThings"].as_u64(),
                details["numberOfCanceledThings"].as_u64(),
                details["numberOfSucceededThings"].as_u64()
            ),
            (Some(1), Some(1), Some(0))
        );
        let thing_of = |r: &Reply| -> Vec<String> {
            r["executionSummaries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["thingArn"].as_str().map(str::to_owned))
                .collect()
        };
        let canceled = handle(&c, "GET", "/jobs/j/things", "status=CANCELED", b"");
        assert_eq!(thing_of(&canceled), [thing_arn("t2")]);
        let first = handle(&c, "GET", "/jobs/j/things", "maxResults=1", b"");
        assert_eq!(thing_of(&first), [thing_arn("core")]);
        let token = first["nextToken"].as_str().unwrap_or_default().to_owned();
        let second = handle(
            &c,
            "GET",
            "/jobs/j/things",
            &format!("maxResults=1&nextToken={token}"),
            b"",
        );
        assert_eq!(
            (thing_of(&second), second["nextToken"].as_str()),
            (vec![thing_arn("t2")], None)
        );
        let queued = handle(&c, "GET", "/things/t2/jobs", "status=QUEUED", b"");
        assert_eq!(
            queued["executionSummaries"].as_array().map(Vec::len),
            Some(0)
        );
        assert_eq!(
            handle(&c, "GET", "/jobs/j/things", "status=DONE", b"").error_type,
            Some("InvalidRequestException")
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
    }

    #[test]
    fn things_with_attributes_are_described_and_listed() {
        let c = cloud();
        let body = json!({"attributePayload": {"attributes": {"site": "north", "rack": "7"}}});
        let r = handle(&c, "POST", "/things/t1", "", body.to_string().as_bytes());
        assert_eq!(r.status, 200);
        let r = handle(&c, "GET", "/things/t1", "", b"");
        assert_eq!(
            (r["attributes"]["site"].as_str(), r["version"].as_i64()),
            (Some("north"), Some(1))
        );
        assert_eq!(r["defaultClientId"], "t1");
        let bad = json!({"attributePayload": {"attributes": {"n": 1}}});
        let r = handle(&c, "POST", "/things/t2", "", bad.to_string().as_bytes());
        assert_eq!(r.error_type, Some("InvalidRequestException"));
        let r = handle(
            &c,
            "GET",
            "/things",
            "attributeName=site&attributeValue=north",
            b"",
        );
        let names: Vec<&str> = r["things"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["thingName"].as_str())
            .collect();
        assert_eq!(names, ["t1"]);
        let r = handle(&c, "GET", "/things", "maxResults=1", b"");
        assert_eq!(r["things"].as_array().map(Vec::len), Some(1));
        let token = r["nextToken"].as_str().map(str::to_owned);
        assert!(token.is_some(), "two things, pages of one");
        let r = handle(&c, "GET", "/things/nobody", "", b"");
        assert_eq!(r.status, 404);
        let r = handle(&c, "GET", "/things", "maxResults=many", b"");
        assert_eq!(r.error_type, Some("InvalidRequestException"));
    }

    #[test]
    fn jobs_are_listed_updated_and_deleted() {
        let c = cloud();
        for id in ["a", "b", "c"] {
            let body = json!({"targets": [thing_arn("core")], "document": "{}"});
            assert_eq!(
                handle(
                    &c,
                    "PUT",
                    &format!("/jobs/{id}"),
                    "",
                    body.to_string().as_bytes()
                )
                .status,
                200
            );
        }
        handle(&c, "PUT", "/jobs/b/cancel", "", b"{}");
        let r = handle(&c, "GET", "/jobs", "maxResults=2", b"");
        let ids: Vec<&str> = r["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|j| j["jobId"].as_str())
            .collect();
        assert_eq!((ids, r["nextToken"].as_str()), (vec!["a", "b"], Some("b")));
        let r = handle(&c, "GET", "/jobs", "nextToken=b", b"");
        assert_eq!(r["jobs"][0]["jobId"], "c");
        let r = handle(&c, "GET", "/jobs", "status=CANCELED", b"");
        assert_eq!(r["jobs"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            handle(&c, "GET", "/jobs", "status=NOPE", b"").error_type,
            Some("InvalidRequestException")
        );

        let update =
            json!({"description": "new", "timeoutConfig": {"inProgressTimeoutInMinutes": 5}});
        assert_eq!(
            handle(&c, "PATCH", "/jobs/a", "", update.to_string().as_bytes()).status,
            200
        );
        let doc = handle(&c, "GET", "/jobs/a/job-document", "", b"");
        assert_eq!(doc["document"], "{}");
        let job = handle(&c, "GET", "/jobs/a", "", b"");
        assert_eq!(
            (
                job["job"]["description"].as_str(),
                job["job"]["timeoutConfig"]["inProgressTimeoutInMinutes"].as_i64()
            ),
            (Some("new"), Some(5))
        );
        let bad = json!({"timeoutConfig": {"inProgressTimeoutInMinutes": 0}});
        assert_eq!(
            handle(&c, "PATCH", "/jobs/a", "", bad.to_string().as_bytes()).error_type,
            Some("InvalidRequestException")
        );
        assert_eq!(handle(&c, "PATCH", "/jobs/zz", "", b"{}").status, 404);

        assert_eq!(
            handle(&c, "DELETE", "/jobs/a", "", b"").error_type,
            Some("InvalidStateTransitionException"),
            "an IN_PROGRESS job needs force"
        );
        assert_eq!(
            handle(&c, "DELETE", "/jobs/a", "force=true", b"").status,
            200
        );
        assert_eq!(handle(&c, "GET", "/jobs/a", "", b"").status, 404);
        assert_eq!(
            handle(&c, "GET", "/things/core/jobs/a", "", b"").status,
            404,
            "its executions went too"
        );
        assert_eq!(
            handle(&c, "DELETE", "/jobs/a", "force=true", b"").status,
            404
        );
    }

    #[test]
    fn describe_endpoint_answers_the_bound_listeners() {
        let c = cloud();
        let request = Request::new("GET", "/endpoint", "endpointType=iot%3AData-ATS", b"");
        let none = super::handle(&c, &Endpoints::default(), &request);
        assert_eq!(none.map(|r| r.status), Some(404), "nothing bound yet");
        let endpoints = Endpoints::default();
        endpoints.set(|e| {
            e.control = "127.0.0.1:4000".parse().ok();
            e.jobs_data = "127.0.0.1:4001".parse().ok();
        });
        let r = super::handle(&c, &endpoints, &request).map(|r| r["endpointAddress"].clone());
        assert_eq!(r, Some(json!("127.0.0.1:4000")));
        let jobs = Request::new("GET", "/endpoint", "endpointType=iot%3AJobs", b"");
        let r = super::handle(&c, &endpoints, &jobs).map(|r| r["endpointAddress"].clone());
        assert_eq!(r, Some(json!("127.0.0.1:4001")));
    }
}
