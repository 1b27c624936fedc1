//! The nucleus's IPC authorization, from a component's `accessControl` configuration.
//!
//! Owns: reading `accessControl` (`{service: {policyId: {operations, resources}}}`), matching
//! an operation and resource against it the way the nucleus does (`*` as a glob, MQTT `+` and
//! `#` as wildcards), and `{iot:thingName}` in resources, which the nucleus interpolates only
//! when `interpolateComponentConfiguration` is on. Must not know: IPC frames or sessions.
//!
//! Written by hand: the rules are the nucleus's own (a `*` glob across `/`, MQTT wildcards in
//! resources), which no general glob crate matches exactly.

use crate::topic;
use serde_json::Value;

pub const MQTT_PROXY: &str = "aws.greengrass.ipc.mqttproxy";
pub const PUBSUB: &str = "aws.greengrass.ipc.pubsub";

/// How resources are read.
#[derive(Debug, Clone, Default)]
pub struct Interpolation {
    /// `Some(thing)` when `{iot:thingName}` is replaced (interpolateComponentConfiguration).
    pub thing_name: Option<String>,
}

/// `*` matches any run of characters (slashes included).
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
        || text.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether MQTT filter `resource` covers everything `request` (a name or a filter) names.
fn mqtt_covers(resource: &str, request: &str) -> bool {
    let mut res = resource.split('/');
    let mut req = request.split('/');
    loop {
        match (res.next(), req.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(r)) if r != "#" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn resource_matches(resource: &str, request: &str) -> bool {
    resource == "*"
        || glob(resource, request)
        || (topic::validate_filter(resource).is_ok() && mqtt_covers(resource, request))
}

/// Whether `access_control` lets the component perform `operation` on `resource` of `service`.
pub fn authorized(
    access_control: &Value,
    service: &str,
    operation: &str,
    resource: &str,
    interpolation: &Interpolation,
) -> bool {
    let Some(policies) = access_control.get(service).and_then(Value::as_object) else {
        return false;
    };
    policies.values().any(|policy| {
        let strings = |key: &str| -> Vec<String> {
            policy
                .get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let operation_ok = strings("operations")
            .iter()
            .any(|o| o == "*" || o == operation);
        operation_ok
            && strings("resources").iter().any(|r| {
                let r = match &interpolation.thing_name {
                    Some(thing) => r.replace("{iot:thingName}", thing),
                    None => r.clone(),
                };
                resource_matches(&r, resource)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn acl() -> Value {
        json!({
            MQTT_PROXY: {
                "p1": {"operations": ["aws.greengrass#PublishToIoTCore"], "resources": ["$aws/things/+/jobs/get", "$aws/things/{iot:thingName}/shadow/update"]},
                "p2": {"operations": ["aws.greengrass#SubscribeToIoTCore"], "resources": ["$aws/things/+/jobs/+/get/accepted", "reconnect/+", "logs/*"]}
            }
        })
    }

    #[test]
    fn matching_like_the_nucleus() {
        let none = Interpolation::default();
        let publish = "aws.greengrass#PublishToIoTCore";
        let subscribe = "aws.greengrass#SubscribeToIoTCore";
        assert!(authorized(
            &acl(),
            MQTT_PROXY,
            publish,
            "$aws/things/t1/jobs/get",
            &none
        ));
        assert!(!authorized(
            &acl(),
            MQTT_PROXY,
            publish,
            "$aws/things/t1/jobs/x/update",
            &none
        ));
        assert!(
            !authorized(
                &acl(),
                MQTT_PROXY,
                subscribe,
                "$aws/things/t1/jobs/get",
                &none
            ),
            "wrong operation"
        );
        // A requested filter with a wildcard is covered by a resource wildcard at that level.
        assert!(authorized(
            &acl(),
            MQTT_PROXY,
            subscribe,
            "$aws/things/t1/jobs/+/get/accepted",
            &none
        ));
        assert!(!authorized(
            &acl(),
            MQTT_PROXY,
            subscribe,
            "$aws/things/t1/jobs/#",
            &none
        ));
        assert!(authorized(
            &acl(),
            MQTT_PROXY,
            subscribe,
            "reconnect/t1",
            &none
        ));
        assert!(
            authorized(&acl(), MQTT_PROXY, subscribe, "logs/a/b", &none),
            "glob"
        );
        assert!(
            !authorized(&acl(), PUBSUB, subscribe, "reconnect/t1", &none),
            "other service"
        );
    }

    #[test]
    fn thing_name_variable_needs_interpolation() {
        let publish = "aws.greengrass#PublishToIoTCore";
        let topic = "$aws/things/t1/shadow/update";
        assert!(!authorized(
            &acl(),
            MQTT_PROXY,
            publish,
            topic,
            &Interpolation::default()
        ));
        let on = Interpolation {
            thing_name: Some("t1".into()),
        };
        assert!(authorized(&acl(), MQTT_PROXY, publish, topic, &on));
    }

    #[test]
    fn globs() {
        assert!(glob("a*", "abc"));
        assert!(glob("*c", "abc"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c", "ab"));
        assert!(!glob("abc", "abd"));
    }
}
