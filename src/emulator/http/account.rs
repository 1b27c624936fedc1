//! The account-level routes: the emulator's quota settings (`GET`/`POST /emulator/quotas`)
//! and the AWS IoT event configuration (UpdateEventConfigurations `PATCH
//! /event-configurations`, DescribeEventConfigurations `GET /event-configurations`).
//!
//! Owns: paths, query and body parsing, response shapes. Must not know: what the quotas or
//! events do (the Jobs service's), sockets or hyper.

use super::aws_iot::{from_control, secs};
use super::server::{error, ok, Reply, Request};
use crate::emulator::cloud::jobs_service::AccountQuotas;
use crate::emulator::shared_world::SharedWorld;
use serde_json::{json, Value};

fn quotas_json(q: AccountQuotas) -> Value {
    json!({
        "maximumJobExecutionsPerMinute": q.max_job_executions_per_minute,
        "maxConcurrentJobs": q.max_concurrent_jobs,
    })
}

/// Serves an account route, or `None` when the path is not one.
pub fn handle(cloud: &SharedWorld, request: &Request<'_>) -> Option<Reply> {
    let segs = request.segs();
    let reply = match (request.method, segs.as_slice()) {
        ("GET", ["emulator", "quotas"]) => ok(quotas_json(cloud.with_jobs(|j| j.quotas()))),
        ("POST", ["emulator", "quotas"]) => {
            // `?maximumJobExecutionsPerMinute=N&maxConcurrentJobs=N`; `0` or `none` lifts one.
            let read = |key: &str| -> Result<Option<Option<u64>>, Reply> {
                match request.query_value(key).as_deref() {
                    None => Ok(None),
                    Some("none" | "0") => Ok(Some(None)),
                    Some(v) => v.parse().map(|n| Some(Some(n))).map_err(|_| {
                        error(
                            400,
                            "InvalidRequestException",
                            format!("{key} must be a number"),
                        )
                    }),
                }
            };
            let (rate, concurrent) = match (
                read("maximumJobExecutionsPerMinute"),
                read("maxConcurrentJobs"),
            ) {
                (Ok(r), Ok(c)) => (r, c),
                (Err(e), _) | (_, Err(e)) => return Some(e),
            };
            cloud
                .with(|w| {
                    let mut q = w.jobs().quotas();
                    if let Some(r) = rate {
                        q.max_job_executions_per_minute =
                            r.map(|n| n.min(u64::from(u32::MAX)) as u32);
                    }
                    if let Some(c) = concurrent {
                        q.max_concurrent_jobs = c.map(|n| n as usize);
                    }
                    w.jobs_mut().set_quotas(q).map(|()| q)
                })
                .map(|q| ok(quotas_json(q)))
                .unwrap_or_else(from_control)
        }
        ("GET", ["event-configurations"]) => cloud.with_jobs(|j| {
            let c = j.event_configurations();
            let mut v = json!({"eventConfigurations": c.describe()});
            if let Some(t) = c.created_ms {
                v["creationDate"] = json!(secs(t));
            }
            if let Some(t) = c.last_modified_ms {
                v["lastModifiedDate"] = json!(secs(t));
            }
            ok(v)
        }),
        ("PATCH", ["event-configurations"]) => {
            let body = match request.json() {
                Ok(b) => b,
                Err(r) => return Some(r),
            };
            let mut changes = Vec::new();
            for (name, c) in body
                .get("eventConfigurations")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let Some(on) = c.get("Enabled").and_then(Value::as_bool) else {
                    return Some(error(
                        400,
                        "InvalidRequestException",
                        format!("eventConfigurations.{name}.Enabled must be a boolean"),
                    ));
                };
                changes.push((name.clone(), on));
            }
            cloud
                .jobs_control(|j, now| {
                    j.update_event_configurations(&changes, now)
                        .map(|()| Vec::new())
                })
                .map(|()| ok(json!({})))
                .unwrap_or_else(from_control)
        }
        _ => return None,
    };
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::{Emulator, EmulatorOptions};

    fn call(c: &SharedWorld, method: &str, path: &str, query: &str, body: &str) -> Reply {
        handle(c, &Request::new(method, path, query, body.as_bytes())).expect("a route")
    }

    #[test]
    fn quotas_and_event_configurations_round_trip() {
        let e = Emulator::with_options(EmulatorOptions {
            thing: "core".into(),
            clock: crate::emulator::clock::ClockMode::Manual,
            ..EmulatorOptions::default()
        });
        let c = e.world();
        let r = call(
            c,
            "POST",
            "/emulator/quotas",
            "maximumJobExecutionsPerMinute=500&maxConcurrentJobs=3",
            "",
        );
        assert_eq!(r["maximumJobExecutionsPerMinute"], 500);
        assert_eq!(
            call(c, "GET", "/emulator/quotas", "", "")["maxConcurrentJobs"],
            3
        );
        let r = call(c, "POST", "/emulator/quotas", "maxConcurrentJobs=none", "");
        assert_eq!(
            (
                r["maxConcurrentJobs"].clone(),
                r["maximumJobExecutionsPerMinute"].clone()
            ),
            (Value::Null, json!(500))
        );
        assert_eq!(
            call(c, "POST", "/emulator/quotas", "maxConcurrentJobs=x", "").status,
            400
        );

        let r = call(c, "GET", "/event-configurations", "", "");
        assert_eq!(r["eventConfigurations"]["JOB"]["Enabled"], false);
        let body = json!({"eventConfigurations": {"JOB": {"Enabled": true}, "JOB_EXECUTION": {"Enabled": true}}});
        assert_eq!(
            call(c, "PATCH", "/event-configurations", "", &body.to_string()).status,
            200
        );
        let r = call(c, "GET", "/event-configurations", "", "");
        assert_eq!(r["eventConfigurations"]["JOB_EXECUTION"]["Enabled"], true);
        assert!(r["lastModifiedDate"].is_number());
        let bad = json!({"eventConfigurations": {"JOBS": {"Enabled": true}}});
        assert_eq!(
            call(c, "PATCH", "/event-configurations", "", &bad.to_string()).error_type,
            Some("InvalidRequestException")
        );
    }
}
