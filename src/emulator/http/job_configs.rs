//! The REST shapes of a job's rollout, abort and scheduling configurations: reading them from
//! CreateJob's body (`jobExecutionsRolloutConfig`, `abortConfig`, `schedulingConfig`) and
//! writing them, with `jobProcessDetails`, into DescribeJob's `job`.
//!
//! Owns: field names and JSON types of those structures, and an InvalidRequestException for a
//! field of the wrong type or value. Must not know: what the configurations do (the Jobs
//! service's rollout, abort and scheduling), sockets or hyper.

use super::server::{error, Reply};
use crate::emulator::cloud::jobs_service::{
    AbortCriterion, ExponentialRate, FailureType, Job, RateIncreaseCriteria, RolloutConfig,
    SchedulingConfig, StatusCounts,
};
use serde_json::{json, Value};

/// The three configurations of a CreateJob body.
pub struct JobConfigs {
    pub rollout: RolloutConfig,
    pub abort: Vec<AbortCriterion>,
    pub scheduling: Option<SchedulingConfig>,
}

fn bad(message: impl Into<String>) -> Reply {
    error(400, "InvalidRequestException", message)
}

fn u32_field(v: &Value, name: &str) -> Result<Option<u32>, Reply> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad(format!("{name} must be a non-negative integer"))),
    }
}

fn rollout(body: &Value) -> Result<RolloutConfig, Reply> {
    let Some(r) = body.get("jobExecutionsRolloutConfig") else {
        return Ok(RolloutConfig::default());
    };
    let exponential = match r.get("exponentialRate") {
        None | Some(Value::Null) => None,
        Some(e) => {
            let base = u32_field(e, "baseRatePerMinute")?
                .ok_or_else(|| bad("exponentialRate.baseRatePerMinute is required"))?;
            let factor = e
                .get("incrementFactor")
                .and_then(Value::as_f64)
                .ok_or_else(|| bad("exponentialRate.incrementFactor is required"))?;
            let c = e
                .get("rateIncreaseCriteria")
                .ok_or_else(|| bad("exponentialRate.rateIncreaseCriteria is required"))?;
            let criteria = match (
                u32_field(c, "numberOfNotifiedThings")?,
                u32_field(c, "numberOfSucceededThings")?,
            ) {
                (Some(n), None) => RateIncreaseCriteria::NotifiedThings(n),
                (None, Some(n)) => RateIncreaseCriteria::SucceededThings(n),
                _ => {
                    return Err(bad(
                        "rateIncreaseCriteria needs exactly one of numberOfNotifiedThings and numberOfSucceededThings",
                    ))
                }
            };
            Some(ExponentialRate {
                base_rate_per_minute: base,
                increment_factor: factor,
                criteria,
            })
        }
    };
    Ok(RolloutConfig {
        maximum_per_minute: u32_field(r, "maximumPerMinute")?,
        exponential,
    })
}

fn abort(body: &Value) -> Result<Vec<AbortCriterion>, Reply> {
    let Some(list) = body.pointer("/abortConfig/criteriaList") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| bad("abortConfig.criteriaList must be a list"))?;
    let mut out = Vec::new();
    for c in list {
        if c.get("action").and_then(Value::as_str) != Some("CANCEL") {
            return Err(bad("abort criteria action must be CANCEL"));
        }
        let failure_type = c
            .get("failureType")
            .and_then(Value::as_str)
            .and_then(FailureType::parse)
            .ok_or_else(|| bad("failureType must be FAILED, REJECTED, TIMED_OUT or ALL"))?;
        let threshold_percentage = c
            .get("thresholdPercentage")
            .and_then(Value::as_f64)
            .ok_or_else(|| bad("thresholdPercentage is required"))?;
        let min_number_of_executed_things = u32_field(c, "minNumberOfExecutedThings")?
            .ok_or_else(|| bad("minNumberOfExecutedThings is required"))?;
        out.push(AbortCriterion {
            failure_type,
            threshold_percentage,
            min_number_of_executed_things,
        });
    }
    Ok(out)
}

fn scheduling(body: &Value, now_ms: u64) -> Result<Option<SchedulingConfig>, Reply> {
    let Some(s) = body.get("schedulingConfig").filter(|s| !s.is_null()) else {
        return Ok(None);
    };
    let text = |name: &str| -> Result<Option<&str>, Reply> {
        match s.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| bad(format!("schedulingConfig.{name} must be a string"))),
        }
    };
    let mut windows = Vec::new();
    for w in s
        .get("maintenanceWindows")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let start = w
            .get("startTime")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("maintenanceWindows[].startTime is required"))?;
        let minutes = u32_field(w, "durationInMinutes")?
            .ok_or_else(|| bad("maintenanceWindows[].durationInMinutes is required"))?;
        windows.push((start.to_owned(), minutes));
    }
    SchedulingConfig::new(
        text("startTime")?,
        text("endTime")?,
        text("endBehavior")?,
        &windows,
        now_ms,
    )
    .map(Some)
    .map_err(super::aws_iot::from_control)
}

/// Reads the configurations of a CreateJob body; times are checked against `now_ms`.
pub fn parse(body: &Value, now_ms: u64) -> Result<JobConfigs, Reply> {
    Ok(JobConfigs {
        rollout: rollout(body)?,
        abort: abort(body)?,
        scheduling: scheduling(body, now_ms)?,
    })
}

/// Adds the configurations, `jobProcessDetails`, `reasonCode`, `comment` and `completedAt`
/// to DescribeJob's `job`.
pub fn describe(v: &mut Value, job: &Job, counts: &StatusCounts) {
    let r = &job.rollout;
    if r.maximum_per_minute.is_some() || r.exponential.is_some() {
        let mut c = json!({});
        if let Some(m) = r.maximum_per_minute {
            c["maximumPerMinute"] = json!(m);
        }
        if let Some(e) = r.exponential {
            let criteria = match e.criteria {
                RateIncreaseCriteria::NotifiedThings(n) => json!({"numberOfNotifiedThings": n}),
                RateIncreaseCriteria::SucceededThings(n) => json!({"numberOfSucceededThings": n}),
            };
            c["exponentialRate"] = json!({
                "baseRatePerMinute": e.base_rate_per_minute,
                "incrementFactor": e.increment_factor,
                "rateIncreaseCriteria": criteria,
            });
        }
        v["jobExecutionsRolloutConfig"] = c;
    }
    if !job.abort.is_empty() {
        let list: Vec<Value> = job
            .abort
            .iter()
            .map(|c| {
                json!({
                    "failureType": c.failure_type.as_str(),
                    "action": "CANCEL",
                    "thresholdPercentage": c.threshold_percentage,
                    "minNumberOfExecutedThings": c.min_number_of_executed_things,
                })
            })
            .collect();
        v["abortConfig"] = json!({"criteriaList": list});
    }
    if let Some(s) = &job.scheduling {
        let mut c = json!({});
        if let Some((t, _)) = &s.start_time {
            c["startTime"] = json!(t);
        }
        if let Some((t, _)) = &s.end_time {
            c["endTime"] = json!(t);
        }
        if let Some(b) = s.end_behavior {
            c["endBehavior"] = json!(b.as_str());
        }
        if !s.maintenance_windows.is_empty() {
            c["maintenanceWindows"] = s
                .maintenance_windows
                .iter()
                .map(|w| json!({"startTime": w.start.as_str(), "durationInMinutes": w.duration_minutes}))
                .collect();
        }
        v["schedulingConfig"] = c;
    }
    v["jobProcessDetails"] = counts.process_details();
    if let Some(r) = &job.reason_code {
        v["reasonCode"] = json!(r);
    }
    if let Some(c) = &job.comment {
        v["comment"] = json!(c);
    }
    if let Some(c) = job.completed_at_ms {
        v["completedAt"] = json!(super::aws_iot::secs(c));
    }
}
