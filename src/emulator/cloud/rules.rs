//! The emulated AWS IoT rules engine, for the SQL subset the reconnect rule uses.
//!
//! Owns: parsing `SELECT <fields> FROM '<topic filter>' [WHERE startswith(get(<field>, <n>),
//! '<prefix>') | WHERE startswith(<field>, '<prefix>')]`, evaluating it against a publication with AWS's semantics (`get` 0-based, an
//! out-of-range `get` is Undefined and makes the WHERE false), and the republish action's topic
//! template (`${topic(n)}` 1-based, `${field}`), published at QoS 0 by default.
//! Must not know: the broker or jobs. Written by hand: no crate implements IoT SQL.

use super::iot_core::Publication;
use crate::topic;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// A rule with a republish action.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    fields: Vec<String>,
    from: String,
    condition: Option<StartsWith>,
    topic_template: String,
    qos: u8,
}

#[derive(Debug, Clone, PartialEq)]
struct StartsWith {
    field: String,
    /// `get(field, n)`: the n-th element of an array field; `None`: the field itself.
    index: Option<usize>,
    prefix: String,
}

/// Why a rule's SQL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported rule SQL: {0}")]
pub struct RuleError(String);

/// The reconnect rule: republishes a client's `subscribed` events to `reconnect/<clientId>`.
pub const RECONNECT_RULE_SQL: &str =
    "SELECT clientId FROM '$aws/events/subscriptions/subscribed/+' WHERE startswith(get(topics, 0), 'reconnect/')";
pub const RECONNECT_RULE_TOPIC: &str = "reconnect/${topic(5)}";

struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn keyword(&mut self, word: &str) -> bool {
        self.skip_ws();
        let n = word.len();
        let head_matches = self
            .rest
            .get(..n)
            .is_some_and(|h| h.eq_ignore_ascii_case(word));
        let Some(tail) = self.rest.get(n..).filter(|_| head_matches) else {
            return false;
        };
        if tail.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
            return false;
        }
        self.rest = tail;
        true
    }

    fn punct(&mut self, p: char) -> bool {
        self.skip_ws();
        if let Some(r) = self.rest.strip_prefix(p) {
            self.rest = r;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let end = self
            .rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(self.rest.len());
        (end > 0).then(|| {
            let (id, rest) = self.rest.split_at(end);
            self.rest = rest;
            id
        })
    }

    fn string(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let r = self.rest.strip_prefix('\'')?;
        let end = r.find('\'')?;
        self.rest = &r[end + 1..];
        Some(&r[..end])
    }

    fn number(&mut self) -> Option<usize> {
        self.skip_ws();
        let end = self
            .rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(self.rest.len());
        let n = self.rest[..end].parse().ok()?;
        self.rest = &self.rest[end..];
        Some(n)
    }
}

impl Rule {
    /// Parses a rule; `topic_template` is the republish action's topic.
    pub fn parse(name: &str, sql: &str, topic_template: &str, qos: u8) -> Result<Self, RuleError> {
        let err = |what: &str| RuleError(format!("{what} in {sql:?}"));
        let mut c = Cursor { rest: sql };
        if !c.keyword("SELECT") {
            return Err(err("expected SELECT"));
        }
        let mut fields = Vec::new();
        loop {
            if c.punct('*') {
                fields.push("*".to_owned());
            } else {
                fields.push(c.ident().ok_or_else(|| err("expected a field"))?.to_owned());
            }
            if !c.punct(',') {
                break;
            }
        }
        if !c.keyword("FROM") {
            return Err(err("expected FROM"));
        }
        let from = c
            .string()
            .ok_or_else(|| err("expected a quoted topic filter"))?
            .to_owned();
        topic::validate_filter(&from).map_err(|e| err(&e.to_string()))?;
        let condition = if c.keyword("WHERE") {
            if !(c.keyword("startswith") && c.punct('(')) {
                return Err(err(
                    "only WHERE startswith(get(field, n), 'prefix') or startswith(field, 'prefix') is supported",
                ));
            }
            let (field, index) = if c.keyword("get") && c.punct('(') {
                let field = c.ident().ok_or_else(|| err("expected a field"))?.to_owned();
                if !c.punct(',') {
                    return Err(err("expected ,"));
                }
                let index = c.number().ok_or_else(|| err("expected an index"))?;
                if !(c.punct(')') && c.punct(',')) {
                    return Err(err("expected ),"));
                }
                (field, Some(index))
            } else {
                let field = c.ident().ok_or_else(|| err("expected a field"))?.to_owned();
                if !c.punct(',') {
                    return Err(err("expected ,"));
                }
                (field, None)
            };
            let prefix = c
                .string()
                .ok_or_else(|| err("expected a quoted prefix"))?
                .to_owned();
            if !c.punct(')') {
                return Err(err("expected )"));
            }
            Some(StartsWith {
                field,
                index,
                prefix,
            })
        } else {
            None
        };
        c.skip_ws();
        if !c.rest.is_empty() {
            return Err(err("unexpected trailing text"));
        }
        Ok(Self {
            name: name.to_owned(),
            fields,
            from,
            condition,
            topic_template: topic_template.to_owned(),
            qos,
        })
    }

    /// The reconnect rule.
    pub fn reconnect() -> Self {
        Self::parse("reconnect", RECONNECT_RULE_SQL, RECONNECT_RULE_TOPIC, 0)
            .unwrap_or_else(|e| unreachable!("the built-in rule parses: {e}"))
    }

    /// Runs the rule on one publication; `Some` is the republished message.
    pub fn evaluate(&self, publication: &Publication) -> Option<Publication> {
        if !topic::matches(&self.from, &publication.topic) {
            return None;
        }
        let input = Input::parse(&publication.payload)?;
        if let Some(cond) = &self.condition {
            // get() out of range or on a non-array is Undefined; startswith(Undefined) is
            // Undefined; a WHERE that is not true does nothing.
            if !input
                .text(&cond.field, cond.index)?
                .starts_with(&cond.prefix)
            {
                return None;
            }
        }
        let mut selected = Map::new();
        for field in &self.fields {
            if field == "*" {
                selected.extend(input.all());
            } else if let Some(v) = input.field(field) {
                selected.insert(field.clone(), v);
            }
        }
        let topic = self.substitute(&publication.topic, &input)?;
        Some(Publication {
            topic,
            payload: Value::Object(selected).to_string().into_bytes(),
            qos: self.qos,
        })
    }

    fn substitute(&self, topic: &str, input: &Input) -> Option<String> {
        let levels: Vec<&str> = topic.split('/').collect();
        let mut out = String::new();
        let mut rest = self.topic_template.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}')? + start;
            let expr = rest[start + 2..end].trim();
            if let Some(n) = expr
                .strip_prefix("topic(")
                .and_then(|e| e.strip_suffix(')'))
            {
                let n: usize = n.trim().parse().ok()?;
                out.push_str(levels.get(n.checked_sub(1)?)?);
            } else {
                match input.field(expr)? {
                    Value::String(s) => out.push_str(&s),
                    other => out.push_str(&other.to_string()),
                }
            }
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }
}

/// A rule's input message. Most messages are JSON objects whose keys need no unescaping: their
/// top-level fields are kept as raw JSON and only the fields the rule reads are parsed (a rule
/// that sees every lifecycle event of a fleet would otherwise build each whole message). Any
/// other payload is parsed whole.
enum Input<'a> {
    Fields(Fields<'a>),
    Whole(Value),
}

/// An object's top-level fields in the order they came, as raw JSON (keys borrowed, so a key
/// with an escape fails and the payload is parsed whole). A later duplicate key wins, as in a
/// map. A vector, not a map: a lifecycle event has six fields, and a map's allocation cost
/// more than finding one of six.
struct Fields<'a>(Vec<(&'a str, &'a RawValue)>);

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Fields<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry::<&'de str, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(Object)
    }
}

impl<'a> Input<'a> {
    /// `None` when the payload is not JSON.
    fn parse(payload: &'a [u8]) -> Option<Self> {
        if let Ok(fields) = serde_json::from_slice::<Fields>(payload) {
            return Some(Self::Fields(fields));
        }
        serde_json::from_slice(payload).ok().map(Self::Whole)
    }

    /// A top-level field, as a value.
    fn field(&self, name: &str) -> Option<Value> {
        match self {
            Self::Fields(fields) => serde_json::from_str(fields.get(name)?.get()).ok(),
            Self::Whole(value) => value.get(name).cloned(),
        }
    }

    /// A top-level string field, or (`index`) the string at that position of an array field;
    /// `None` when it is missing or not a string. Parses only what it reads: a WHERE on every
    /// lifecycle event of a fleet must not build each message's values.
    fn text(&self, name: &str, index: Option<usize>) -> Option<Cow<'_, str>> {
        fn string(raw: &str) -> Option<Cow<'_, str>> {
            match serde_json::from_str::<&str>(raw) {
                Ok(s) => Some(Cow::Borrowed(s)),
                // Escaped text cannot be borrowed.
                Err(_) => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
            }
        }
        match self {
            Self::Fields(fields) => {
                let raw = fields.get(name)?.get();
                match index {
                    None => string(raw),
                    Some(i) => {
                        let elements: Vec<&'a RawValue> = serde_json::from_str(raw).ok()?;
                        string(elements.get(i)?.get())
                    }
                }
            }
            Self::Whole(value) => {
                let field = value.get(name)?;
                let element = match index {
                    Some(i) => field.as_array()?.get(i)?,
                    None => field,
                };
                element.as_str().map(Cow::Borrowed)
            }
        }
    }

    /// Every top-level field (none when the message is not an object).
    fn all(&self) -> Map<String, Value> {
        match self {
            Self::Fields(fields) => fields
                .0
                .iter()
                .filter_map(|(k, v)| Some(((*k).to_owned(), serde_json::from_str(v.get()).ok()?)))
                .collect(),
            Self::Whole(Value::Object(all)) => all.clone(),
            Self::Whole(_) => Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(client: &str, topics: Value) -> Publication {
        Publication {
            topic: format!("$aws/events/subscriptions/subscribed/{client}"),
            payload: json!({"clientId": client, "timestamp": 1, "eventType": "subscribed", "topics": topics})
                .to_string()
                .into_bytes(),
            qos: 0,
        }
    }

    #[test]
    fn reconnect_rule_republishes_client_id_to_its_topic() {
        let rule = Rule::reconnect();
        let out = rule
            .evaluate(&event("dev-1", json!(["reconnect/dev-1"])))
            .unwrap();
        assert_eq!(out.topic, "reconnect/dev-1");
        assert_eq!(out.payload, br#"{"clientId":"dev-1"}"#);
        assert_eq!(out.qos, 0);
    }

    #[test]
    fn where_startswith_on_a_plain_field() {
        let rule = Rule::parse(
            "callback",
            "SELECT * FROM '$aws/events/jobExecution/+/+' WHERE startswith(jobId, 'callback-')",
            "out/${topic(4)}",
            0,
        )
        .unwrap();
        let execution_event = |job: &str, body: Value| Publication {
            topic: format!("$aws/events/jobExecution/{job}/succeeded"),
            payload: body.to_string().into_bytes(),
            qos: 0,
        };
        let out = rule
            .evaluate(&execution_event(
                "callback-1",
                json!({"jobId": "callback-1", "status": "SUCCEEDED"}),
            ))
            .unwrap();
        assert_eq!(out.topic, "out/callback-1");
        assert!(rule
            .evaluate(&execution_event("other", json!({"jobId": "other"})))
            .is_none());
        assert!(
            rule.evaluate(&execution_event("x", json!({}))).is_none(),
            "a missing field is Undefined"
        );
        assert!(
            rule.evaluate(&execution_event("x", json!({"jobId": 7})))
                .is_none(),
            "startswith of a number is not true"
        );
    }

    #[test]
    fn where_is_false_for_other_first_topics_and_undefined() {
        let rule = Rule::reconnect();
        assert!(rule
            .evaluate(&event("d", json!(["$aws/things/d/jobs/notify-next"])))
            .is_none());
        // Only topics[0] is checked.
        assert!(rule
            .evaluate(&event("d", json!(["a", "reconnect/d"])))
            .is_none());
        assert!(
            rule.evaluate(&event("d", json!([]))).is_none(),
            "get out of range is Undefined"
        );
        assert!(rule.evaluate(&event("d", json!("reconnect/d"))).is_none());
        let other_topic = Publication {
            topic: "$aws/events/presence/connected/d".into(),
            payload: b"{}".to_vec(),
            qos: 0,
        };
        assert!(rule.evaluate(&other_topic).is_none());
    }

    #[test]
    fn where_reads_escaped_text_and_refuses_what_is_not_text() {
        let rule = Rule::reconnect();
        let p = |payload: &[u8]| Publication {
            topic: "$aws/events/subscriptions/subscribed/d".into(),
            payload: payload.to_vec(),
            qos: 0,
        };
        let escaped_value = br#"{"clientId":"d","topics":["reconnect\/d"]}"#;
        assert_eq!(
            rule.evaluate(&p(escaped_value)).unwrap().topic,
            "reconnect/d"
        );
        let escaped_key = br#"{"clientId":"d","topics":["reconnect/d"]}"#;
        assert_eq!(rule.evaluate(&p(escaped_key)).unwrap().topic, "reconnect/d");
        assert!(rule.evaluate(&p(br#"{"topics":[7]}"#)).is_none());
        assert!(rule
            .evaluate(&p(br#"{"topics":[["reconnect/d"]]}"#))
            .is_none());
        assert!(rule
            .evaluate(&p(br#"{"topics":{"0":"reconnect/d"}}"#))
            .is_none());
    }

    #[test]
    fn escaped_keys_and_non_object_payloads_read_as_before() {
        let all = Rule::parse("r", "SELECT * FROM 'a'", "out/${kA}", 0).unwrap();
        let p = |payload: &[u8]| Publication {
            topic: "a".into(),
            payload: payload.to_vec(),
            qos: 0,
        };
        // An escaped key is unescaped (the whole message is parsed).
        let out = all.evaluate(&p(br#"{"k\u0041":"v"}"#)).unwrap();
        assert_eq!(out.payload, br#"{"kA":"v"}"#);
        assert_eq!(out.topic, "out/v");
        // A JSON array selects nothing; text that is not JSON does not fire.
        let star = Rule::parse("r", "SELECT * FROM 'a'", "out", 0).unwrap();
        assert_eq!(star.evaluate(&p(b"[1,2]")).unwrap().payload, b"{}");
        assert!(star.evaluate(&p(b"{\"a\":1} trailing")).is_none());
        let by_field = Rule::parse("r", "SELECT a FROM 'a'", "out/${a}", 0).unwrap();
        assert_eq!(
            by_field.evaluate(&p(br#"{"a":{"x":[1]}}"#)).unwrap().topic,
            r#"out/{"x":[1]}"#
        );
    }

    #[test]
    fn parser_accepts_the_subset_and_refuses_the_rest() {
        let r = Rule::parse("r", "select * from 'a/+' ", "out/${topic(2)}/${k}", 1).unwrap();
        let p = Publication {
            topic: "a/x".into(),
            payload: br#"{"k":"v","n":1}"#.to_vec(),
            qos: 1,
        };
        let out = r.evaluate(&p).unwrap();
        assert_eq!(out.topic, "out/x/v");
        assert_eq!(
            serde_json::from_slice::<Value>(&out.payload).unwrap(),
            json!({"k": "v", "n": 1})
        );
        assert!(Rule::parse("r", "SELECT a FROM 'x' WHERE a = 1", "t", 0).is_err());
        assert!(Rule::parse("r", "SELECT a FROM x", "t", 0).is_err());
        assert!(Rule::parse("r", "SELECT a FROM 'a/#/b'", "t", 0).is_err());
        assert!(Rule::parse("r", "SELECT a FROM 'x' trailing", "t", 0).is_err());
        assert!(
            Rule::parse("r", "SÉLECT a FROM 'x'", "t", 0).is_err(),
            "non-ASCII never panics"
        );
        assert!(Rule::parse("r", "SELECT a FROM 'x' WHERE é", "t", 0).is_err());
    }
}
