//! Job documents: which jobs belong to this handler, and what they ask for.
//!
//! Owns: recognising our documents and parsing them into a [`JobDocument`], with a reason for
//! every document of ours that cannot run. Must not know: how operations or handlers run, or
//! the MQTT API.
//!
//! Two forms are ours:
//! - the compact form `{"operation": "<name>", ...arguments}`;
//! - the AWS IoT Device Client schema `{"version", "steps": [{"action": {...}}], "finalStep",
//!   "includeStdOut"}` with `runHandler` and `runCommand` actions, so existing documents work
//!   unchanged.
//!
//! Any other document is foreign (the nucleus delivers Greengrass deployments as jobs on the
//! same thing): the handler never starts, updates or reports it.

use serde_json::{Map, Value};
use std::time::Duration;

/// The largest job document the service accepts (characters).
pub const MAX_DOCUMENT_CHARS: usize = 32_768;
/// The most steps a document may have.
pub const MAX_STEPS: usize = 64;

/// A parsed document of ours.
#[derive(Debug, Clone, PartialEq)]
pub enum JobDocument {
    /// `{"operation": ..., ...}`: a built-in, a handler named like the operation, or a worker.
    Operation {
        operation: String,
        /// Every other member of the document.
        arguments: Map<String, Value>,
        /// The whole document, as given to a handler or worker.
        raw: Value,
    },
    /// Device Client schema.
    Steps(StepsDocument),
}

impl JobDocument {
    /// A short name for logs.
    pub fn label(&self) -> String {
        match self {
            Self::Operation { operation, .. } => operation.clone(),
            Self::Steps(s) => format!(
                "{} step(s)",
                s.steps.len() + usize::from(s.final_step.is_some())
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepsDocument {
    pub version: String,
    /// Put each step's stdout tail into statusDetails.
    pub include_stdout: bool,
    pub steps: Vec<Step>,
    /// Runs after the steps, whether they succeeded or not; its failure fails the job.
    pub final_step: Option<Step>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub action: StepAction,
    /// Lines of stderr tolerated before the step counts as failed (`None`: any amount).
    pub allow_stderr: Option<u64>,
    pub ignore_failure: bool,
    /// Our extension: a per-step time limit (capped by the handler's configuration).
    pub timeout: Option<Duration>,
    /// The user the step asks to run as (`runAsUser`; `None` when absent or empty). For
    /// `runHandler` it is also the handler's first argument, as in the Device Client.
    pub run_as_user: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepAction {
    /// An executable in the handler directory (or a subdirectory named by `path`).
    RunHandler {
        handler: String,
        args: Vec<String>,
        path: Option<String>,
    },
    /// `command` split on unescaped commas; the first element names an executable in the
    /// handler directory, or an absolute path the device owner allows (no shell, no PATH
    /// lookup).
    RunCommand { argv: Vec<String> },
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
    if let Some(operation) = members.get("operation") {
        return match compact(operation, members) {
            Ok(doc) => Ownership::Ours(doc),
            Err(reason) => Ownership::OursMalformed(reason),
        };
    }
    if members.contains_key("steps") && members.contains_key("version") {
        return match steps_document(members) {
            Ok(doc) => Ownership::Ours(JobDocument::Steps(doc)),
            Err(reason) => Ownership::OursMalformed(reason),
        };
    }
    Ownership::Foreign
}

fn compact(operation: &Value, members: &Map<String, Value>) -> Result<JobDocument, String> {
    let Some(name) = operation.as_str() else {
        return Err(format!(
            "\"operation\" must be a string, found {}",
            json_kind(operation)
        ));
    };
    if name.is_empty() || name.chars().count() > 128 {
        return Err("\"operation\" must be 1 to 128 characters".to_owned());
    }
    let mut arguments = members.clone();
    arguments.remove("operation");
    Ok(JobDocument::Operation {
        operation: name.to_owned(),
        arguments,
        raw: Value::Object(members.clone()),
    })
}

fn steps_document(members: &Map<String, Value>) -> Result<StepsDocument, String> {
    let version = match members.get("version") {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("\"version\" must be a string".into()),
    };
    let include_stdout = flag(members.get("includeStdOut"), "includeStdOut")?.unwrap_or(false);
    let Some(Value::Array(raw_steps)) = members.get("steps") else {
        return Err("\"steps\" must be an array".into());
    };
    if raw_steps.len() > MAX_STEPS {
        return Err(format!("at most {MAX_STEPS} steps are allowed"));
    }
    let steps = raw_steps
        .iter()
        .enumerate()
        .map(|(i, s)| step(s).map_err(|e| format!("steps[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let final_step = match members.get("finalStep") {
        None | Some(Value::Null) => None,
        Some(s) => Some(step(s).map_err(|e| format!("finalStep: {e}"))?),
    };
    if steps.is_empty() && final_step.is_none() {
        return Err("the document has no steps".into());
    }
    if members
        .get("conditions")
        .is_some_and(|c| !matches!(c, Value::Array(a) if a.is_empty()))
    {
        return Err("\"conditions\" are not supported by this handler".into());
    }
    Ok(StepsDocument {
        version,
        include_stdout,
        steps,
        final_step,
    })
}

fn step(value: &Value) -> Result<Step, String> {
    let action = value
        .get("action")
        .and_then(Value::as_object)
        .ok_or("\"action\" must be an object")?;
    let name = action
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("unnamed")
        .to_owned();
    let kind = action
        .get("type")
        .and_then(Value::as_str)
        .ok_or("\"action.type\" must be a string")?;
    let input = action
        .get("input")
        .and_then(Value::as_object)
        .ok_or("\"action.input\" must be an object")?;
    let step_action = match kind {
        "runHandler" => {
            let handler = input
                .get("handler")
                .and_then(Value::as_str)
                .ok_or("\"input.handler\" must be a string")?;
            check_file_name(handler)?;
            let args = match input.get("args") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        Value::Number(n) => Ok(n.to_string()),
                        Value::Bool(b) => Ok(b.to_string()),
                        other => Err(format!(
                            "\"input.args\" must hold strings, found {}",
                            json_kind(other)
                        )),
                    })
                    .collect::<Result<_, _>>()?,
                Some(other) => {
                    return Err(format!(
                        "\"input.args\" must be an array, found {}",
                        json_kind(other)
                    ))
                }
            };
            let path = match input.get("path").and_then(Value::as_str) {
                None | Some("") | Some("default") => None,
                Some(p) => Some(p.to_owned()),
            };
            StepAction::RunHandler {
                handler: handler.to_owned(),
                args,
                path,
            }
        }
        "runCommand" => {
            let command = input
                .get("command")
                .and_then(Value::as_str)
                .ok_or("\"input.command\" must be a string")?;
            let argv = split_command(command);
            let first = argv.first().ok_or("\"input.command\" is empty")?;
            check_command_name(first)?;
            StepAction::RunCommand { argv }
        }
        other => {
            return Err(format!(
                "unsupported action type {other:?} (runHandler and runCommand are supported)"
            ))
        }
    };
    let allow_stderr = match action.get("allowStdErr") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .ok_or("\"allowStdErr\" must be a non-negative integer")?,
        ),
        Some(Value::String(s)) => Some(
            s.trim()
                .parse()
                .map_err(|_| "\"allowStdErr\" must be a non-negative integer")?,
        ),
        Some(Value::Bool(true)) => None,
        Some(Value::Bool(false)) => Some(0),
        Some(_) => return Err("\"allowStdErr\" must be a non-negative integer".into()),
    };
    let ignore_failure =
        flag(action.get("ignoreStepFailure"), "ignoreStepFailure")?.unwrap_or(false);
    let timeout = match action
        .get("timeoutSeconds")
        .or_else(|| input.get("timeoutSeconds"))
    {
        None | Some(Value::Null) => None,
        Some(v) => {
            // A string holds a JSON number ("30", "1.5"), read by the JSON parser the
            // document came through (the standard library's own float parser would add its
            // tables, about 15 KB, to the component for this one field).
            let secs = v
                .as_f64()
                .or_else(|| {
                    v.as_str()
                        .and_then(|s| serde_json::from_str::<f64>(s.trim()).ok())
                })
                .filter(|s| *s > 0.0 && *s <= 7.0 * 86_400.0)
                .ok_or("\"timeoutSeconds\" must be a positive number of seconds up to 7 days")?;
            Some(Duration::from_secs_f64(secs))
        }
    };
    let run_as_user = match action.get("runAsUser") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) if u.is_empty() => None,
        Some(Value::String(u)) => {
            check_user_name(u)?;
            Some(u.clone())
        }
        Some(other) => {
            return Err(format!(
                "\"runAsUser\" must be a string, found {}",
                json_kind(other)
            ))
        }
    };
    Ok(Step {
        name,
        action: step_action,
        allow_stderr,
        ignore_failure,
        timeout,
        run_as_user,
    })
}

/// A `runAsUser` value: a POSIX user name (letters, digits, `.`, `_`, `-`, not starting with
/// `-`), at most 256 characters as the service allows.
pub fn check_user_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("\"runAsUser\" {name:?} is not a valid user name"))
    }
}

/// The program of a `runCommand`: a handler name, or an absolute path without `.` or `..`
/// components (whether it may run is the device's configuration, checked when it runs).
pub fn check_command_name(name: &str) -> Result<(), String> {
    let path = std::path::Path::new(name);
    if path.is_absolute() {
        let clean = !name.contains('\0')
            && path
                .components()
                .skip(1)
                .all(|c| matches!(c, std::path::Component::Normal(_)))
            && !name.contains("/./")
            && !name.ends_with('/');
        if clean {
            return Ok(());
        }
        return Err(format!(
            "command {name:?} must be a handler name or a plain absolute path"
        ));
    }
    check_file_name(name)
}

/// A handler name: one path component, no traversal, no hidden files.
pub fn check_file_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "handler name {name:?} must be a plain file name inside the handler directory"
        ))
    }
}

/// Splits a Device Client `command` on commas; `\,` is a literal comma.
pub fn split_command(command: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                chars.next();
                if let Some(last) = out.last_mut() {
                    last.push(',');
                }
            }
            ',' => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn flag(value: Option<&Value>, name: &str) -> Result<Option<bool>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(format!("\"{name}\" must be true or false")),
    }
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
    fn operation_names_are_limited_in_characters_not_bytes() {
        let long_text = "é".repeat(128);
        let doc = json!({ "operation": long_text });
        assert!(matches!(classify(Some(&doc)), Ownership::Ours(_)));
        let doc = json!({ "operation": "é".repeat(129) });
        assert!(
            matches!(classify(Some(&doc)), Ownership::OursMalformed(r) if r.contains("128 characters"))
        );
    }

    #[test]
    fn ownership_by_document_format() {
        let doc = json!({"operation": "add", "a": 1, "b": 2});
        match classify(Some(&doc)) {
            Ownership::Ours(JobDocument::Operation {
                operation,
                arguments,
                raw,
            }) => {
                assert_eq!(operation, "add");
                assert_eq!(arguments.get("a"), Some(&json!(1)));
                assert!(!arguments.contains_key("operation"));
                assert_eq!(raw, doc);
            }
            other => panic!("{other:?}"),
        }
        let deployment =
            json!({"deploymentId": "d-1", "components": {}, "configurationArn": "arn"});
        assert_eq!(classify(Some(&deployment)), Ownership::Foreign);
        assert_eq!(classify(Some(&json!("text"))), Ownership::Foreign);
        assert_eq!(
            classify(Some(&json!({"steps": []}))),
            Ownership::Foreign,
            "no version: not the Device Client schema"
        );
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

    #[test]
    fn device_client_documents_parse_unchanged() {
        let doc = json!({
            "version": "1.0",
            "includeStdOut": "true",
            "conditions": [],
            "steps": [{"action": {"name": "Display Hello World", "type": "runHandler",
                "input": {"handler": "echo.sh", "args": ["Hello", "World"], "path": "default"},
                "runAsUser": "user", "allowStdErr": 8, "ignoreStepFailure": "true"}},
                {"action": {"name": "cmd", "type": "runCommand", "input": {"command": "echo.sh,a\\,b, c"}}}],
            "finalStep": {"action": {"name": "bye", "type": "runHandler", "input": {"handler": "bye.sh"}}}
        });
        let Ownership::Ours(JobDocument::Steps(s)) = classify(Some(&doc)) else {
            panic!("ours")
        };
        assert!(s.include_stdout);
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.steps[0].allow_stderr, Some(8));
        assert!(s.steps[0].ignore_failure);
        assert_eq!(
            s.steps[0].action,
            StepAction::RunHandler {
                handler: "echo.sh".into(),
                args: vec!["Hello".into(), "World".into()],
                path: None
            }
        );
        assert_eq!(
            s.steps[1].action,
            StepAction::RunCommand {
                argv: vec!["echo.sh".into(), "a,b".into(), "c".into()]
            }
        );
        assert_eq!(s.steps[0].run_as_user.as_deref(), Some("user"));
        assert_eq!(s.steps[1].run_as_user, None);
        assert_eq!(s.final_step.unwrap().name, "bye");
    }

    #[test]
    fn run_command_may_name_an_absolute_program_and_empty_run_as_user_is_unset() {
        let doc = json!({"version": "1.0", "steps": [{"action": {"name": "ls", "type": "runCommand",
            "input": {"command": "/bin/ls,-l"}, "runAsUser": ""}}]});
        let Ownership::Ours(JobDocument::Steps(s)) = classify(Some(&doc)) else {
            panic!("ours")
        };
        assert_eq!(
            s.steps[0].action,
            StepAction::RunCommand {
                argv: vec!["/bin/ls".into(), "-l".into()]
            }
        );
        assert_eq!(s.steps[0].run_as_user, None);
    }

    #[test]
    fn a_step_timeout_is_a_number_or_a_string_holding_one() {
        let timeout = |t: Value| {
            let doc = json!({"version": "1.0", "steps": [{"action": {"type": "runHandler",
                "input": {"handler": "x"}, "timeoutSeconds": t}}]});
            match classify(Some(&doc)) {
                Ownership::Ours(JobDocument::Steps(s)) => Ok(s.steps[0].timeout),
                Ownership::OursMalformed(reason) => Err(reason),
                other => panic!("{doc} judged {other:?}"),
            }
        };
        assert_eq!(timeout(json!(30)), Ok(Some(Duration::from_secs(30))));
        assert_eq!(
            timeout(json!(" 1.5 ")),
            Ok(Some(Duration::from_millis(1500)))
        );
        assert_eq!(timeout(json!("2e1")), Ok(Some(Duration::from_secs(20))));
        assert_eq!(timeout(json!(null)), Ok(None));
        for bad in [
            json!("0"),
            json!("-5"),
            json!("NaN"),
            json!("inf"),
            json!("1e9"),
            json!("ten"),
            json!(""),
            json!(true),
        ] {
            let reason = timeout(bad.clone()).expect_err("refused");
            assert!(reason.contains("timeoutSeconds"), "{bad}: {reason}");
        }
    }

    #[test]
    fn malformed_documents_of_ours_get_reasons() {
        let cases = [
            json!({"version": "1.0", "steps": "no"}),
            json!({"version": "1.0", "steps": []}),
            json!({"version": "1.0", "steps": [{"action": {"type": "runHandler", "input": {"handler": "../evil"}}}]}),
            json!({"version": "1.0", "steps": [{"action": {"type": "runHandler", "input": {"handler": "/bin/sh"}}}]}),
            json!({"version": "1.0", "steps": [{"action": {"type": "runCommand", "input": {"command": "/usr/bin/../bin/rm,-rf,/"}}}]}),
            json!({"version": "1.0", "steps": [{"action": {"type": "runCommand", "input": {"command": "bin/rm"}}}]}),
            json!({"version": "1.0", "steps": [{"action": {"type": "runHandler", "input": {"handler": "x"}, "runAsUser": "root; rm -rf /"}}]}),
            json!({"version": "1.0", "steps": [{"action": {"type": "runHandler", "input": {"handler": "x"}, "runAsUser": "-u"}}]}),
            json!({"version": "1.0", "steps": [{"action": {"type": "runHandler", "input": {"handler": "x"}, "runAsUser": 0}}]}),
            json!({"version": "1.0", "steps": [{"action": {"type": "shell", "input": {}}}]}),
            json!({"version": "1.0", "steps": [{"action": {"type": "runHandler", "input": {"handler": "x", "args": [{}]}}}]}),
            json!({"version": "1.0", "steps": [{"action": {"type": "runHandler", "input": {"handler": "x"}, "allowStdErr": "many"}}]}),
            json!({"version": "1.0", "conditions": [{"key": "os"}], "steps": [{"action": {"type": "runHandler", "input": {"handler": "x"}}}]}),
        ];
        for doc in cases {
            assert!(
                matches!(classify(Some(&doc)), Ownership::OursMalformed(_)),
                "{doc}"
            );
        }
    }
}
