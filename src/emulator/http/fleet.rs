//! AWS IoT control-plane routes for the fleet: UpdateThing (`PATCH /things/{thingName}`),
//! GetIndexingConfiguration / UpdateIndexingConfiguration (`GET`/`POST /indexing/config`),
//! SearchIndex (`POST /indices/search`), CreateDynamicThingGroup
//! (`POST /dynamic-thing-groups/{name}`), DescribeThingGroup (`GET /thing-groups/{name}`)
//! and ListThingsInThingGroup (`GET /thing-groups/{name}/things`), in the REST shapes of the
//! API reference.
//!
//! Owns: paths, request parsing, response shapes and error statuses of these calls. Must not
//! know: the index, the query language or the Jobs rules (the cloud's), sockets or hyper.

use super::aws_iot::from_control;
use super::server::{error, ok, Reply, Request};
use crate::emulator::cloud::fleet_index::IndexingMode;
use crate::emulator::cloud::jobs_service::{Attributes, ControlError};
use crate::emulator::shared_world::SharedWorld;
use serde_json::{json, Value};

fn group_arn(g: &str) -> String {
    format!("arn:aws:iot:us-east-1:123456789012:thinggroup/{g}")
}

fn group_id(g: &str) -> String {
    format!("{:x}", crc32fast::hash(g.as_bytes()))
}

fn reply(e: ControlError) -> Reply {
    match e.code {
        "InvalidQueryException" | "IndexNotReadyException" => error(400, e.code, e.message),
        "VersionConflictException" => error(409, e.code, e.message),
        _ => from_control(e),
    }
}

fn max_results(request: &Request<'_>, body: Option<&Value>) -> Result<Option<usize>, Reply> {
    if let Some(m) = body.and_then(|b| b.get("maxResults")) {
        return m.as_u64().map(|m| Some(m as usize)).ok_or_else(|| {
            error(
                400,
                "InvalidRequestException",
                "maxResults must be a number",
            )
        });
    }
    request
        .query_value("maxResults")
        .map(|m| {
            m.parse().map_err(|_| {
                error(
                    400,
                    "InvalidRequestException",
                    "maxResults must be a number",
                )
            })
        })
        .transpose()
}

/// Serves a fleet route, or `None` when no route here matches.
pub fn handle(cloud: &SharedWorld, request: &Request<'_>) -> Option<Reply> {
    let segs = request.segs();
    let body = || request.json();
    let r = match (request.method, segs.as_slice()) {
        ("PATCH", ["things", thing]) => {
            let b = match body() {
                Ok(b) => b,
                Err(r) => return Some(r),
            };
            let mut attributes = Attributes::new();
            for (k, v) in b
                .pointer("/attributePayload/attributes")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let Some(v) = v.as_str() else {
                    return Some(error(
                        400,
                        "InvalidRequestException",
                        format!("attribute {k} must be a string"),
                    ));
                };
                attributes.insert(k.clone(), v.to_owned());
            }
            let merge = b
                .pointer("/attributePayload/merge")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let expected = b.get("expectedVersion").and_then(Value::as_i64);
            cloud
                .jobs_control(|j, now| j.update_thing(thing, attributes, merge, expected, now))
                .map(|()| ok(json!({})))
                .unwrap_or_else(reply)
        }
        ("GET", ["indexing", "config"]) => {
            let mode = cloud.with_jobs(|j| j.indexing_mode());
            ok(json!({
                "thingIndexingConfiguration": {
                    "thingIndexingMode": mode.as_str(),
                    "thingConnectivityIndexingMode": "OFF",
                },
                "thingGroupIndexingConfiguration": {"thingGroupIndexingMode": "OFF"},
            }))
        }
        ("POST", ["indexing", "config"]) => {
            let b = match body() {
                Ok(b) => b,
                Err(r) => return Some(r),
            };
            let Some(mode) = b.pointer("/thingIndexingConfiguration/thingIndexingMode") else {
                return Some(ok(json!({})));
            };
            let Some(mode) = mode.as_str().and_then(IndexingMode::parse) else {
                return Some(error(
                    400,
                    "InvalidRequestException",
                    "thingIndexingMode must be OFF, REGISTRY or REGISTRY_AND_SHADOW",
                ));
            };
            cloud
                .jobs_control(|j, now| j.set_indexing_mode(mode, now))
                .map(|()| ok(json!({})))
                .unwrap_or_else(reply)
        }
        ("POST", ["indices", "search"]) => {
            let b = match body() {
                Ok(b) => b,
                Err(r) => return Some(r),
            };
            let Some(query) = b.get("queryString").and_then(Value::as_str) else {
                return Some(error(
                    400,
                    "InvalidRequestException",
                    "queryString is required",
                ));
            };
            let max = match max_results(request, Some(&b)) {
                Ok(m) => m,
                Err(r) => return Some(r),
            };
            let token = b.get("nextToken").and_then(Value::as_str);
            cloud
                .with_jobs(|j| {
                    j.search_index(query, max, token).map(|page| {
                        let things: Vec<Value> = page
                            .items
                            .iter()
                            .map(|t| {
                                let mut v = json!({
                                    "thingName": t.name,
                                    "thingId": format!("{:x}", crc32fast::hash(t.name.as_bytes())),
                                    "thingGroupNames": j.thing_groups_of(&t.name),
                                    "attributes": t.attributes,
                                });
                                if j.shadows_indexed() && !t.reported.is_empty() {
                                    v["shadow"] =
                                        json!(json!({"reported": t.reported}).to_string());
                                }
                                v
                            })
                            .collect();
                        let mut v = json!({"things": things, "thingGroups": []});
                        if let Some(n) = page.next_token {
                            v["nextToken"] = json!(n);
                        }
                        v
                    })
                })
                .map(ok)
                .unwrap_or_else(reply)
        }
        ("POST", ["dynamic-thing-groups", group]) => {
            let b = match body() {
                Ok(b) => b,
                Err(r) => return Some(r),
            };
            let Some(query) = b
                .get("queryString")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                return Some(error(
                    400,
                    "InvalidRequestException",
                    "queryString is required",
                ));
            };
            cloud
                .jobs_control(|j, now| j.create_dynamic_thing_group(group, &query, now))
                .map(|()| {
                    ok(json!({
                        "thingGroupName": group,
                        "thingGroupArn": group_arn(group),
                        "thingGroupId": group_id(group),
                        "indexName": "AWS_Things",
                        "queryString": query,
                        "queryVersion": "2017-09-30",
                    }))
                })
                .unwrap_or_else(reply)
        }
        ("GET", ["thing-groups", group]) => cloud
            .with_jobs(|j| j.describe_thing_group(group))
            .map(|g| {
                let mut v = json!({
                    "thingGroupName": g.name,
                    "thingGroupArn": group_arn(&g.name),
                    "thingGroupId": group_id(&g.name),
                    "version": 1,
                    "thingGroupProperties": {},
                    "thingGroupMetadata": {},
                });
                if let Some(q) = g.query {
                    v["indexName"] = json!("AWS_Things");
                    v["queryString"] = json!(q);
                    v["queryVersion"] = json!("2017-09-30");
                    v["status"] = json!("ACTIVE");
                }
                ok(v)
            })
            .unwrap_or_else(reply),
        ("GET", ["thing-groups", group, "things"]) => {
            let max = match max_results(request, None) {
                Ok(m) => m,
                Err(r) => return Some(r),
            };
            let token = request.query_value("nextToken");
            cloud
                .with_jobs(|j| j.list_things_in_thing_group(group, max, token.as_deref()))
                .map(|page| {
                    let mut v = json!({"things": page.items});
                    if let Some(n) = page.next_token {
                        v["nextToken"] = json!(n);
                    }
                    ok(v)
                })
                .unwrap_or_else(reply)
        }
        _ => return None,
    };
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::cloud::rules::Rule;
    use crate::emulator::{Emulator, EmulatorOptions};

    fn call(c: &SharedWorld, method: &str, path: &str, body: Value) -> Reply {
        let text = body.to_string();
        let request = Request::new(method, path, "", text.as_bytes());
        handle(c, &request)
            .or_else(|| super::super::iot_data::handle(c, &request))
            .or_else(|| super::super::account::handle(c, &request))
            .or_else(|| {
                super::super::aws_iot::handle(c, &super::super::Endpoints::default(), &request)
            })
            .expect("a route")
    }

    #[test]
    fn shadow_stamps_join_a_dynamic_group_and_job_events_reach_a_rule() {
        let e = Emulator::with_options(EmulatorOptions {
            thing: "core".into(),
            clock: crate::emulator::clock::ClockMode::Manual,
            ..EmulatorOptions::default()
        });
        let c = e.world();
        let r = call(
            c,
            "POST",
            "/dynamic-thing-groups/g",
            json!({"queryString": "shadow.reported.k:v"}),
        );
        assert_eq!(r.status, 400, "indexing is off");
        let mode =
            json!({"thingIndexingConfiguration": {"thingIndexingMode": "REGISTRY_AND_SHADOW"}});
        assert_eq!(call(c, "POST", "/indexing/config", mode).status, 200);
        assert_eq!(
            call(c, "GET", "/indexing/config", json!({}))["thingIndexingConfiguration"]
                ["thingIndexingMode"],
            "REGISTRY_AND_SHADOW"
        );
        let r = call(
            c,
            "POST",
            "/dynamic-thing-groups/g",
            json!({"queryString": "shadow.reported.k:v"}),
        );
        assert_eq!(r["queryString"], "shadow.reported.k:v");
        let job = json!({"targets": ["arn:aws:iot:us-east-1:123456789012:thinggroup/g"], "document": "{}", "targetSelection": "CONTINUOUS"});
        assert_eq!(call(c, "PUT", "/jobs/j", job).status, 200);
        let events = json!({"eventConfigurations": {"JOB_EXECUTION": {"Enabled": true}}});
        assert_eq!(
            call(c, "PATCH", "/event-configurations", events).status,
            200
        );
        let rule = Rule::parse(
            "ev",
            "SELECT status FROM '$aws/events/jobExecution/+/+'",
            "seen/${topic(4)}",
            0,
        )
        .unwrap();
        c.with(|w| w.put_rule(rule));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&seen);
        let _guard = c.tap().subscribe(
            "seen/#",
            0,
            false,
            Box::new(move |topic, m: &crate::ipc::model::MqttMessage| {
                sink.lock()
                    .unwrap()
                    .push((topic.to_owned(), m.payload().to_vec()));
                true
            }),
        );

        let r = call(
            c,
            "POST",
            "/things/core/shadow",
            json!({"state": {"reported": {"k": "v"}}}),
        );
        assert_eq!(r["version"], 1);
        assert_eq!(
            call(c, "GET", "/things/core/shadow", json!({}))["state"]["reported"]["k"],
            "v"
        );
        assert_eq!(
            call(c, "GET", "/thing-groups/g/things", json!({}))["things"],
            json!(["core"])
        );
        assert_eq!(
            call(c, "GET", "/thing-groups/g", json!({}))["status"],
            "ACTIVE"
        );
        let r = call(
            c,
            "POST",
            "/indices/search",
            json!({"queryString": "thingName:co*"}),
        );
        assert_eq!(r["things"][0]["thingName"], "core");
        assert!(r["things"][0]["shadow"]
            .as_str()
            .is_some_and(|s| s.contains("\"k\"")));
        let r = call(
            c,
            "POST",
            "/indices/search",
            json!({"queryString": "thingName:(a"}),
        );
        assert_eq!(r.error_type, Some("InvalidQueryException"));

        // The join gave core an execution; its end is an event the rule republishes.
        let r = call(c, "GET", "/things/core/jobs/j", json!({}));
        assert_eq!(r["execution"]["status"], "QUEUED");
        c.cancel_job("j", false, None).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].0, "seen/j");
        assert_eq!(
            serde_json::from_slice::<Value>(&seen[0].1).unwrap(),
            json!({"status": "CANCELED"})
        );

        let r = call(
            c,
            "PATCH",
            "/things/core",
            json!({"attributePayload": {"attributes": {"a": "1"}}, "expectedVersion": 9}),
        );
        assert_eq!(r.error_type, Some("VersionConflictException"));
        assert_eq!(
            call(
                c,
                "PATCH",
                "/things/core",
                json!({"attributePayload": {"attributes": {"a": "1"}}})
            )
            .status,
            200
        );
    }
}
