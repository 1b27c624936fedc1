//! Arbitrary JSON for structured targets: values built from fuzzer bytes, with object keys drawn
//! mostly from the names the project's wire shapes use, so that the fuzzer reaches the code
//! behind successful deserialisation instead of stopping at "unknown shape".

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{Map, Value};

/// Member names of the IPC model, its error payloads and the Jobs API.
pub const KEYS: &[&str] = &[
    "message",
    "_message",
    "_errorCode",
    "_service",
    "topicName",
    "payload",
    "qos",
    "messageContext",
    "topic",
    "jsonMessage",
    "binaryMessage",
    "context",
    "publishMessage",
    "receiveMode",
    "componentName",
    "keyPath",
    "value",
    "configurationUpdateEvent",
    "state",
    "authToken",
    "userProperties",
    "key",
    "payloadFormat",
    "retain",
    "contentType",
    "correlationData",
    "messageExpiryIntervalSeconds",
    "responseTopic",
    "execution",
    "jobId",
    "status",
    "statusDetails",
    "versionNumber",
    "executionNumber",
    "jobDocument",
    "clientToken",
    "code",
    "executionState",
    "queuedJobs",
    "inProgressJobs",
    "jobs",
    "operation",
    "steps",
    "version",
];

/// String values worth trying: enum spellings and ids of the shapes above.
const STRINGS: &[&str] = &[
    "0",
    "1",
    "RUNNING",
    "ERRORED",
    "QUEUED",
    "IN_PROGRESS",
    "SUCCEEDED",
    "FAILED",
    "REJECTED",
    "ServiceError",
    "UnauthorizedError",
    "ResourceNotFoundError",
    "InvalidArgumentsError",
    "aws.greengrass#GreengrassCoreIPC",
    "a/b",
    "",
    "eA==",
];

/// Builds a value of at most `depth` levels.
pub fn value(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Value> {
    let kind = if depth == 0 {
        u.int_in_range(0..=4)?
    } else {
        u.int_in_range(0..=6)?
    };
    Ok(match kind {
        0 => Value::Null,
        1 => Value::Bool(bool::arbitrary(u)?),
        2 => match u.int_in_range(0..=2)? {
            0 => Value::from(i64::arbitrary(u)?),
            1 => Value::from(u64::arbitrary(u)?),
            _ => {
                serde_json::Number::from_f64(f64::arbitrary(u)?).map_or(Value::Null, Value::Number)
            }
        },
        3 => Value::String(if bool::arbitrary(u)? {
            (*u.choose(STRINGS)?).to_owned()
        } else {
            String::arbitrary(u)?
        }),
        4 => Value::String(base64_of(&Vec::<u8>::arbitrary(u)?)),
        5 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array(
                (0..n)
                    .map(|_| value(u, depth - 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        _ => Value::Object(object(u, depth - 1)?),
    })
}

/// Builds an object whose members are at most `depth` levels deep.
pub fn object(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Map<String, Value>> {
    let n = u.int_in_range(0..=6)?;
    let mut map = Map::new();
    for _ in 0..n {
        let key = if u.ratio(7, 8)? {
            (*u.choose(KEYS)?).to_owned()
        } else {
            String::arbitrary(u)?
        };
        map.insert(key, value(u, depth)?);
    }
    Ok(map)
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
