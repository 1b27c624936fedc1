//! Target `document`: job document classification and parsing ([`classify`]).
//!
//! Input: JSON text (a JSON dictionary helps the fuzzer). Properties:
//! - classification is a function of the document's value: the same after a trip through
//!   JSON text, and never a panic;
//! - a document is ours exactly when it is an object with `operation`, or with both `steps`
//!   and `version`; then it either parses or yields a non-empty rejection reason, and that
//!   reason fits into statusDetails unchanged in meaning (the limits are applied without loss
//!   of the message's start);
//! - what parses is safe to run: every handler and command is a plain file name inside the
//!   handler directory, at most [`MAX_STEPS`] steps, time limits within 7 days, no empty argv.

use greengrass_jobs_handler::jobs::document::*;
use greengrass_jobs_handler::jobs::status_details;
use serde_json::Value;
use std::time::Duration;

fn safe_step(step: &Step) {
    match &step.action {
        StepAction::RunHandler { handler, path, .. } => {
            assert!(check_file_name(handler).is_ok(), "handler {handler:?}");
            if let Some(p) = path {
                assert!(!p.is_empty());
            }
        }
        StepAction::RunCommand { argv } => {
            let first = argv.first().expect("a command has a program");
            assert!(check_file_name(first).is_ok(), "program {first:?}");
            assert!(argv.iter().all(|a| !a.is_empty() && a.trim() == a));
        }
    }
    if let Some(t) = step.timeout {
        assert!(
            t > Duration::ZERO && t <= Duration::from_secs(7 * 86_400),
            "{t:?}"
        );
    }
}

pub fn check(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let ownership = classify(Some(&value));
    let text = serde_json::to_string(&value).expect("a parsed value serialises");
    let again: Value = serde_json::from_str(&text).expect("serialised JSON parses");
    assert_eq!(
        classify(Some(&again)),
        ownership,
        "classification changed after a JSON round trip"
    );

    let shaped_like_ours = value.as_object().is_some_and(|m| {
        m.contains_key("operation") || (m.contains_key("steps") && m.contains_key("version"))
    });
    match &ownership {
        Ownership::Foreign => assert!(!shaped_like_ours, "a document of ours classified foreign"),
        Ownership::OursMalformed(reason) => {
            assert!(shaped_like_ours, "a foreign document rejected as ours");
            assert!(!reason.trim().is_empty(), "rejection without a reason");
            let bounded = status_details::value_head(reason);
            let start: String = reason
                .chars()
                .take(64)
                .filter(|c| !c.is_control())
                .collect();
            assert!(
                bounded.starts_with(start.trim_end()),
                "the reason's start was lost"
            );
        }
        Ownership::Ours(JobDocument::Operation {
            operation,
            arguments,
            raw,
        }) => {
            assert_eq!(raw, &value);
            assert_eq!(
                value.get("operation").and_then(Value::as_str),
                Some(operation.as_str())
            );
            assert!(!operation.is_empty());
            assert!(!arguments.contains_key("operation"));
            assert_eq!(
                arguments.len() + 1,
                value.as_object().map_or(0, |m| m.len())
            );
        }
        Ownership::Ours(JobDocument::Steps(doc)) => {
            assert!(shaped_like_ours);
            assert!(doc.steps.len() <= MAX_STEPS);
            assert!(!doc.steps.is_empty() || doc.final_step.is_some());
            doc.steps
                .iter()
                .chain(doc.final_step.iter())
                .for_each(safe_step);
        }
    }
    if let Ownership::Ours(doc) = &ownership {
        assert!(!doc.label().is_empty());
    }
}
