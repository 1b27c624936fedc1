//! Topic-rule routes: CreateTopicRule, GetTopicRule, ListTopicRules and DeleteTopicRule with
//! the SQL subset of [`crate::emulator::cloud::rules`] and one republish action.
//!
//! Owns: paths and shapes of those routes and the payloads rules were created with (what
//! GetTopicRule answers). Must not know: how rules are evaluated (the cloud's), sockets or
//! hyper.

use super::aws_iot::{secs, ACCOUNT, REGION};
use super::server::{error, ok, Reply, Request};
use crate::emulator::cloud::rules::Rule;
use crate::emulator::shared_world::SharedWorld;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What a rule was created with, for GetTopicRule and ListTopicRules.
#[derive(Debug, Clone)]
struct RuleRecord {
    sql: String,
    topic_pattern: String,
    actions: Value,
    description: Option<String>,
    created_at_ms: u64,
}

/// The payloads of the rules created over HTTP, by name.
///
/// Call contract: the world holds the rules themselves; a rule the world no longer has is
/// not reported, and a built-in rule (installed without a payload) is reported by name.
#[derive(Debug, Default)]
pub struct TopicRules {
    records: Mutex<BTreeMap<String, RuleRecord>>,
}

fn rule_arn(name: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:rule/{name}")
}

fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The quoted topic filter after FROM, for `topicPattern`.
fn topic_pattern(sql: &str) -> String {
    sql.split_once('\'')
        .and_then(|(before, rest)| {
            before
                .to_ascii_uppercase()
                .contains("FROM")
                .then(|| rest.split_once('\'').map(|(t, _)| t.to_owned()))
                .flatten()
        })
        .unwrap_or_default()
}

impl TopicRules {
    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RuleRecord>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves a `/rules` request, or `None` when the path is not one of them.
    pub fn handle(&self, world: &SharedWorld, request: &Request<'_>) -> Option<Reply> {
        let segs = request.segs();
        let reply = match (request.method, segs.as_slice()) {
            ("POST", ["rules", name]) => match request.json() {
                Ok(body) => self.create(world, name, &body),
                Err(r) => r,
            },
            ("GET", ["rules", name]) => self.get(world, name),
            ("DELETE", ["rules", name]) => {
                if world.with(|w| w.delete_rule(name)).is_some() {
                    self.records().remove(*name);
                    ok(json!({}))
                } else {
                    error(
                        404,
                        "UnauthorizedException",
                        format!("rule {name} does not exist"),
                    )
                }
            }
            ("GET", ["rules"]) => self.list(world),
            _ => return None,
        };
        Some(reply)
    }

    fn create(&self, world: &SharedWorld, name: &str, body: &Value) -> Reply {
        if !valid_name(name) {
            return error(
                400,
                "InvalidRequestException",
                format!("rule name {name:?} must be 1 to 128 of [a-zA-Z0-9_]"),
            );
        }
        // The body is the TopicRulePayload itself (the operation's payload member).
        let payload = body;
        let Some(sql) = payload.get("sql").and_then(Value::as_str) else {
            return error(400, "InvalidRequestException", "sql is required");
        };
        if payload.get("ruleDisabled").and_then(Value::as_bool) == Some(true) {
            return error(
                400,
                "InvalidRequestException",
                "disabled rules are not emulated",
            );
        }
        let actions = payload.get("actions").and_then(Value::as_array);
        let republish: Vec<&Value> = actions
            .into_iter()
            .flatten()
            .filter_map(|a| a.get("republish"))
            .collect();
        let [republish] = republish.as_slice() else {
            return error(
                400,
                "InvalidRequestException",
                "exactly one republish action is emulated",
            );
        };
        if actions.map_or(0, Vec::len) != 1 {
            return error(
                400,
                "InvalidRequestException",
                "only the republish action is emulated",
            );
        }
        let Some(topic) = republish.get("topic").and_then(Value::as_str) else {
            return error(
                400,
                "InvalidRequestException",
                "republish.topic is required",
            );
        };
        let qos = match republish.get("qos").and_then(Value::as_u64).unwrap_or(0) {
            q @ (0 | 1) => q as u8,
            q => {
                return error(
                    400,
                    "InvalidRequestException",
                    format!("republish qos {q} is not 0 or 1"),
                )
            }
        };
        let rule = match Rule::parse(name, sql, topic, qos) {
            Ok(rule) => rule,
            Err(e) => return error(400, "SqlParseException", e.to_string()),
        };
        let exists = world.with(|w| {
            let exists = w.rules().any(|r| r.name == name);
            if !exists {
                w.put_rule(rule);
            }
            exists
        });
        if exists {
            return error(
                409,
                "ResourceAlreadyExistsException",
                format!("rule {name} already exists"),
            );
        }
        self.records().insert(
            name.to_owned(),
            RuleRecord {
                sql: sql.to_owned(),
                topic_pattern: topic_pattern(sql),
                actions: json!([{"republish": {"topic": topic, "qos": qos}}]),
                description: payload
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                created_at_ms: world.now(),
            },
        );
        ok(json!({}))
    }

    fn get(&self, world: &SharedWorld, name: &str) -> Reply {
        if !world.with(|w| w.rules().any(|r| r.name == name)) {
            return error(
                404,
                "UnauthorizedException",
                format!("rule {name} does not exist"),
            );
        }
        let mut rule =
            json!({"ruleName": name, "ruleDisabled": false, "awsIotSqlVersion": "2016-03-23"});
        if let Some(r) = self.records().get(name) {
            rule["sql"] = json!(r.sql);
            rule["actions"] = r.actions.clone();
            rule["createdAt"] = json!(secs(r.created_at_ms));
            if let Some(d) = &r.description {
                rule["description"] = json!(d);
            }
        }
        ok(json!({"ruleArn": rule_arn(name), "rule": rule}))
    }

    fn list(&self, world: &SharedWorld) -> Reply {
        let names: Vec<String> = world.with(|w| w.rules().map(|r| r.name.clone()).collect());
        let records = self.records();
        let rules: Vec<Value> = names
            .iter()
            .map(|name| {
                let mut v =
                    json!({"ruleArn": rule_arn(name), "ruleName": name, "ruleDisabled": false});
                if let Some(r) = records.get(name) {
                    v["topicPattern"] = json!(r.topic_pattern);
                    v["createdAt"] = json!(secs(r.created_at_ms));
                }
                v
            })
            .collect();
        ok(json!({"rules": rules}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::clock::ClockMode;
    use crate::emulator::http::server::no_route;
    use crate::emulator::{Emulator, EmulatorOptions};

    fn call(rules: &TopicRules, e: &Emulator, method: &str, path: &str, body: &Value) -> Reply {
        let text = body.to_string();
        let request = Request::new(method, path, "", text.as_bytes());
        rules
            .handle(e.world(), &request)
            .unwrap_or_else(|| no_route(&request))
    }

    fn payload(sql: &str, topic: &str) -> Value {
        json!({"sql": sql, "actions": [{"republish": {"topic": topic, "roleArn": "arn:aws:iam::1:role/r"}}]})
    }

    #[test]
    fn rules_are_created_read_listed_and_deleted() {
        let e = Emulator::with_options(EmulatorOptions {
            clock: ClockMode::Manual,
            ..EmulatorOptions::default()
        });
        let rules = TopicRules::default();
        let body = payload("SELECT * FROM 'sensors/+/temp'", "copy/${topic(2)}");
        assert_eq!(
            call(&rules, &e, "POST", "/rules/copy_temps", &body).status,
            200
        );
        assert_eq!(
            call(&rules, &e, "POST", "/rules/copy_temps", &body).error_type,
            Some("ResourceAlreadyExistsException")
        );
        let r = call(&rules, &e, "GET", "/rules/copy_temps", &json!({}));
        assert_eq!(r["rule"]["sql"], "SELECT * FROM 'sensors/+/temp'");
        assert_eq!(
            r["rule"]["actions"][0]["republish"]["topic"],
            "copy/${topic(2)}"
        );
        let r = call(&rules, &e, "GET", "/rules", &json!({}));
        let names: Vec<&str> = r["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["ruleName"].as_str())
            .collect();
        assert_eq!(names, ["copy_temps", "reconnect"], "with the built-in rule");
        assert_eq!(r["rules"][0]["topicPattern"], "sensors/+/temp");
        assert_eq!(
            call(&rules, &e, "DELETE", "/rules/copy_temps", &json!({})).status,
            200
        );
        assert_eq!(
            call(&rules, &e, "GET", "/rules/copy_temps", &json!({})).status,
            404
        );
        assert!(e
            .world()
            .with(|w| w.rules().all(|r| r.name != "copy_temps")));
    }

    #[test]
    fn a_rule_created_over_http_republishes() {
        let e = Emulator::with_options(EmulatorOptions {
            clock: ClockMode::Manual,
            ..EmulatorOptions::default()
        });
        let rules = TopicRules::default();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&seen);
        let _guard = e.world().tap().subscribe(
            "copy/#",
            0,
            false,
            Box::new(move |topic, _: &crate::ipc::model::MqttMessage| {
                sink.lock().unwrap().push(topic.to_owned());
                true
            }),
        );
        let body = payload("SELECT * FROM 'sensors/+/temp'", "copy/${topic(2)}");
        assert_eq!(
            call(&rules, &e, "POST", "/rules/copy_temps", &body).status,
            200
        );
        e.world()
            .operator_publish("sensors/s1/temp", b"{\"t\": 20}", 0);
        e.world().operator_publish("sensors/s1/humidity", b"{}", 0);
        assert_eq!(*seen.lock().unwrap(), ["copy/s1"]);
        call(&rules, &e, "DELETE", "/rules/copy_temps", &json!({}));
        e.world().operator_publish("sensors/s2/temp", b"{}", 0);
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "a deleted rule republishes nothing"
        );
    }

    #[test]
    fn unsupported_rules_are_refused() {
        let e = Emulator::with_options(EmulatorOptions {
            clock: ClockMode::Manual,
            reconnect_rule: false,
            ..EmulatorOptions::default()
        });
        let rules = TopicRules::default();
        let bad_sql = payload("SELECT nonsense", "t");
        assert_eq!(
            call(&rules, &e, "POST", "/rules/r1", &bad_sql).error_type,
            Some("SqlParseException")
        );
        let lambda =
            json!({"sql": "SELECT * FROM 'a'", "actions": [{"lambda": {"functionArn": "x"}}]});
        assert_eq!(
            call(&rules, &e, "POST", "/rules/r2", &lambda).error_type,
            Some("InvalidRequestException")
        );
        let bad_name = payload("SELECT * FROM 'a'", "b");
        assert_eq!(
            call(&rules, &e, "POST", "/rules/bad-name", &bad_name).error_type,
            Some("InvalidRequestException")
        );
        assert_eq!(
            e.world().with(|w| w.rules().count()),
            0,
            "nothing installed"
        );
    }
}
