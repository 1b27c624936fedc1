//! Job documents: which jobs belong to this handler, and what they ask for.
//!
//! Owns: recognising our documents and parsing them into a [`JobDocument`].
//! Must not know: how operations run, or the MQTT API.
//!
//! Ownership: the nucleus delivers Greengrass deployments as IoT jobs on the same thing, and
//! other agents may too. A job is ours only when its document is a JSON object with an
//! `"operation"` member (the compact form, `{"operation": "<name>", ...arguments}`). Any other
//! document is foreign: the handler never starts, updates or reports it.

use serde_json::{Map, Value};

/// The largest job document the service accepts (characters).
pub const MAX_DOCUMENT_CHARS: usize = 32_768;

/// A parsed document of ours.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDocument {
    /// The operation to run, e.g. `echo` or `add`.
    pub operation: String,
    /// Every other member of the document, passed to the operation.
    pub arguments: Map<String, Value>,
}

/// What a document means for this handler.
#[derive(Debug, Clone, PartialEq)]
pub enum Ownership {
    Ours(JobDocument),
    /// Ours, but unusable: answered with REJECTED and this reason.
    OursMalformed(String),
    /// Not ours: leave the job alone.
    Foreign,
}

/// Classifies a job document (absent documents are foreign).
pub fn classify(document: Option<&Value>) -> Ownership {
    let Some(Value::Object(members)) = document else {
        return Ownership::Foreign;
    };
    let Some(operation) = members.get("operation") else {
        return Ownership::Foreign;
    };
    let Some(name) = operation.as_str() else {
        return Ownership::OursMalformed(format!(
            "\"operation\" must be a string, found {}",
            json_kind(operation)
        ));
    };
    if name.is_empty() || name.len() > 128 {
        return Ownership::OursMalformed("\"operation\" must be 1 to 128 characters".to_owned());
    }
    let mut arguments = members.clone();
    arguments.remove("operation");
    Ownership::Ours(JobDocument {
        operation: name.to_owned(),
        arguments,
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ownership_by_document_format() {
        let doc = json!({"operation": "add", "a": 1, "b": 2});
        match classify(Some(&doc)) {
            Ownership::Ours(d) => {
                assert_eq!(d.operation, "add");
                assert_eq!(d.arguments.get("a"), Some(&json!(1)));
                assert!(!d.arguments.contains_key("operation"));
            }
            other => panic!("{other:?}"),
        }
        // A Greengrass deployment document, and other shapes, are not ours.
        let deployment =
            json!({"deploymentId": "d-1", "components": {}, "configurationArn": "arn"});
        assert_eq!(classify(Some(&deployment)), Ownership::Foreign);
        assert_eq!(classify(Some(&json!("text"))), Ownership::Foreign);
        assert_eq!(classify(None), Ownership::Foreign);
        assert!(matches!(
            classify(Some(&json!({"operation": 5}))),
            Ownership::OursMalformed(_)
        ));
        assert!(matches!(
            classify(Some(&json!({"operation": ""}))),
            Ownership::OursMalformed(_)
        ));
    }
}
