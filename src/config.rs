//! The component's settings, read from its Greengrass configuration.
//!
//! Owns: the configuration keys, their defaults, and tolerant parsing (numbers may arrive as
//! strings from YAML recipes; `{iot:thingName}` may arrive uninterpolated). A bad value is
//! logged and replaced by its default; it never stops the component.
//! Must not know: IPC or the engine's internals.

use crate::exec::bridge::BridgeConfig;
use crate::exec::job_executor::ExecSettings;
use crate::exec::permissions::Permissions;
use crate::exec::steps::Limits;
use crate::jobs::engine::EngineConfig;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Every configuration key the component reads (the recipe gives each a default).
pub const CONFIGURATION_KEYS: &[&str] = &[
    "thingName",
    "reconnectTopic",
    "jitterMaxMs",
    "responseTimeoutMs",
    "maxBackoffMs",
    "safetyPollSeconds",
    "deafExitSeconds",
    "deafExitWithoutStatusSeconds",
    "stepTimeoutMinutes",
    "maxConcurrentJobs",
    "handlerDirectory",
    "stepTimeoutSeconds",
    "jobTimeoutSeconds",
    "workerOperations",
    "workerRequestTopicPrefix",
    "workerReplyTopic",
    "workerTimeoutSeconds",
    "rebootCommand",
    "rebootWaitSeconds",
    "journalPath",
    "logLevel",
    "logFormat",
    "runAsUsers",
    "runCommandAllowList",
    "handlerPath",
    "downloadRoots",
];

/// Environment variable the nucleus sets to the core device's thing name.
pub const ENV_THING_NAME: &str = "AWS_IOT_THING_NAME";
const THING_PLACEHOLDER: &str = "{iot:thingName}";

/// Everything the component needs to run, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub engine: EngineConfig,
    pub exec: ExecSettings,
    /// Worker components served over local pub/sub (`None` when no operation is configured).
    pub bridge: Option<BridgeConfig>,
    pub journal_path: PathBuf,
    pub log_level: String,
    pub log_format: String,
}

/// PATH given to handler processes unless `handlerPath` says otherwise (nothing else of the
/// component's environment is passed).
pub const HANDLER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Environment variable that tells handlers where they may write downloaded files: the
/// `downloadRoots` setting as absolute paths joined by `:`.
pub const ENV_DOWNLOAD_ROOTS: &str = "GGJH_DOWNLOAD_ROOTS";

/// Why the component cannot run at all.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no valid thing name: set the configuration key thingName or run under the nucleus ({ENV_THING_NAME})")]
    NoThingName,
}

fn text(config: &Value, key: &str) -> Option<String> {
    match config.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::String(_) | Value::Null => None,
        other => {
            tracing::error!(key, value = %other, "configuration value must be a string; using the default");
            None
        }
    }
}

fn number(config: &Value, key: &str) -> Option<u64> {
    let value = config.get(key)?;
    let parsed = match value {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Null => return None,
        _ => None,
    };
    if parsed.is_none() {
        tracing::error!(key, value = %value, "configuration value must be a non-negative number; using the default");
    }
    parsed
}

fn string_list(config: &Value, key: &str) -> Option<Vec<String>> {
    match config.get(key)? {
        Value::Array(items) => {
            let list: Option<Vec<String>> = items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect();
            if list.is_none() {
                tracing::error!(
                    key,
                    "configuration value must be a list of strings; ignored"
                );
            }
            list
        }
        Value::Null => None,
        other => {
            tracing::error!(key, value = %other, "configuration value must be a list of strings; ignored");
            None
        }
    }
}

/// Absolute, `..`-free paths from a list setting; relative entries are taken from the work
/// directory. Anything else is logged and dropped.
fn absolute_paths(
    config: &Value,
    key: &str,
    default: &[&str],
    allow_relative: bool,
) -> Vec<PathBuf> {
    let listed = string_list(config, key)
        .unwrap_or_else(|| default.iter().map(|s| (*s).to_owned()).collect());
    let work = std::env::current_dir().ok();
    listed
        .into_iter()
        .filter_map(|entry| {
            let path = PathBuf::from(&entry);
            let clean = !entry.is_empty()
                && !entry.contains(':')
                && path
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::RootDir));
            let path = match (clean, path.is_absolute(), &work) {
                (true, true, _) => Some(path),
                (true, false, Some(w)) if allow_relative => Some(w.join(path)),
                _ => None,
            };
            if path.is_none() {
                tracing::error!(key, %entry, "not an absolute path without \"..\" or \":\"; ignored");
            }
            path
        })
        .collect()
}

/// Whether `name` is a thing name AWS IoT accepts: 1 to 128 characters of `[a-zA-Z0-9:_-]`.
/// Anything else would put MQTT wildcards or levels into the Jobs topics built from it.
pub fn valid_thing_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// A thing name, or `None` (logged) when it is not one AWS IoT accepts.
fn checked_thing_name(name: String, source: &str) -> Option<String> {
    if valid_thing_name(&name) {
        Some(name)
    } else {
        tracing::error!(thing_name = %name, source, "not a valid thing name ([a-zA-Z0-9:_-], 1 to 128 characters); ignored");
        None
    }
}

/// Resolves settings from the component configuration and the thing name from the nucleus.
pub fn settings(config: &Value, env_thing_name: Option<&str>) -> Result<Settings, ConfigError> {
    let thing_name = text(config, "thingName")
        .filter(|t| t != THING_PLACEHOLDER)
        .and_then(|t| checked_thing_name(t, "thingName"))
        .or_else(|| {
            env_thing_name
                .filter(|t| !t.is_empty())
                .and_then(|t| checked_thing_name(t.to_owned(), ENV_THING_NAME))
        })
        .ok_or(ConfigError::NoThingName)?;
    let mut engine = EngineConfig::new(&thing_name);
    let thing_name = thing_name.clone();
    if let Some(topic) = text(config, "reconnectTopic") {
        let topic = topic.replace(THING_PLACEHOLDER, &thing_name);
        if crate::topic::validate_name(&topic).is_ok() {
            engine.reconnect_topic = topic;
        } else {
            tracing::error!(%topic, "reconnectTopic is not a valid topic name; using the default");
        }
    }
    if let Some(ms) = number(config, "jitterMaxMs") {
        engine.max_jitter = Duration::from_millis(ms.min(3_600_000));
    }
    if let Some(ms) = number(config, "responseTimeoutMs") {
        engine.response_timeout = Duration::from_millis(ms.clamp(100, 600_000));
    }
    if let Some(ms) = number(config, "maxBackoffMs") {
        engine.max_backoff = Duration::from_millis(ms.max(1000));
    }
    if let Some(s) = number(config, "safetyPollSeconds") {
        engine.safety_poll = (s > 0).then(|| Duration::from_secs(s.clamp(60, 7 * 86_400)));
    }
    if let Some(s) = number(config, "deafExitSeconds") {
        engine.deaf_exit_after = Duration::from_secs(s.max(1));
    }
    if let Some(s) = number(config, "deafExitWithoutStatusSeconds") {
        engine.deaf_exit_unknown_after = Duration::from_secs(s.max(1));
    }
    if let Some(n) = number(config, "maxConcurrentJobs") {
        engine.max_concurrent_jobs = n.clamp(1, 16) as usize;
    }
    if let Some(m) = number(config, "stepTimeoutMinutes") {
        engine.step_timeout_minutes = (m > 0).then_some(m.min(10_080) as i64);
    }
    let log_level = text(config, "logLevel").unwrap_or_else(|| "info".to_owned());
    let secs = |key: &str, default: u64, max: u64| {
        Duration::from_secs(number(config, key).unwrap_or(default).clamp(1, max))
    };
    let exec = ExecSettings {
        handler_dir: Some(PathBuf::from(
            text(config, "handlerDirectory").unwrap_or_else(|| "handlers".to_owned()),
        )),
        limits: Limits {
            step_timeout: secs("stepTimeoutSeconds", 3600, 7 * 86_400),
            job_timeout: secs("jobTimeoutSeconds", 6 * 3600, 7 * 86_400),
            env: vec![
                (
                    "PATH".to_owned(),
                    text(config, "handlerPath").unwrap_or_else(|| HANDLER_PATH.to_owned()),
                ),
                ("AWS_IOT_THING_NAME".to_owned(), thing_name.clone()),
                (
                    ENV_DOWNLOAD_ROOTS.to_owned(),
                    absolute_paths(config, "downloadRoots", &["downloads"], true)
                        .iter()
                        .map(|p| p.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(":"),
                ),
            ],
        },
        reboot_command: string_list(config, "rebootCommand"),
        reboot_wait: secs("rebootWaitSeconds", 300, 3600),
        permissions: Permissions {
            run_as_users: string_list(config, "runAsUsers")
                .unwrap_or_default()
                .into_iter()
                .filter(|u| {
                    let ok = crate::jobs::document::check_user_name(u).is_ok();
                    if !ok {
                        tracing::error!(key = "runAsUsers", user = %u, "not a valid user name; ignored");
                    }
                    ok
                })
                .collect(),
            run_command_allow_list: absolute_paths(config, "runCommandAllowList", &[], false),
        },
    };
    let workers = string_list(config, "workerOperations").unwrap_or_default();
    let bridge = (!workers.is_empty()).then(|| BridgeConfig {
        operations: workers,
        request_prefix: text(config, "workerRequestTopicPrefix")
            .unwrap_or_else(|| "greengrass-jobs-handler/request".to_owned()),
        reply_topic: text(config, "workerReplyTopic")
            .unwrap_or_else(|| "greengrass-jobs-handler/reply/{iot:thingName}".to_owned())
            .replace(THING_PLACEHOLDER, &thing_name),
        timeout: secs("workerTimeoutSeconds", 600, 7 * 86_400),
        thing_name: thing_name.clone(),
    });
    let journal_path = PathBuf::from(
        text(config, "journalPath").unwrap_or_else(|| "journal/jobs.journal".to_owned()),
    );
    let log_format = text(config, "logFormat").unwrap_or_else(|| "text".to_owned());
    Ok(Settings {
        engine,
        exec,
        bridge,
        journal_path,
        log_level,
        log_format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_overrides() {
        let s = settings(&json!({}), Some("core-1")).unwrap();
        assert_eq!(s.engine.thing_name, "core-1");
        assert_eq!(s.engine.reconnect_topic, "reconnect/core-1");
        assert_eq!(s.engine.safety_poll, None);
        assert_eq!(s.engine.deaf_exit_after, Duration::from_secs(3600));
        assert_eq!(
            s.engine.deaf_exit_unknown_after,
            Duration::from_secs(21_600)
        );
        let s = settings(
            &json!({"deafExitSeconds": "120", "deafExitWithoutStatusSeconds": 600}),
            Some("core-1"),
        )
        .unwrap();
        assert_eq!(s.engine.deaf_exit_after, Duration::from_secs(120));
        assert_eq!(s.engine.deaf_exit_unknown_after, Duration::from_secs(600));
        let s = settings(
            &json!({"thingName": "{iot:thingName}", "reconnectTopic": "fleet/{iot:thingName}/up",
                    "jitterMaxMs": "250", "safetyPollSeconds": 600, "stepTimeoutMinutes": 30, "logLevel": "debug"}),
            Some("core-2"),
        )
        .unwrap();
        assert_eq!(s.engine.thing_name, "core-2");
        assert_eq!(s.engine.reconnect_topic, "fleet/core-2/up");
        assert_eq!(s.engine.max_jitter, Duration::from_millis(250));
        assert_eq!(s.engine.safety_poll, Some(Duration::from_secs(600)));
        assert_eq!(s.engine.step_timeout_minutes, Some(30));
        assert_eq!(s.log_level, "debug");
    }

    #[test]
    fn bad_values_fall_back_and_missing_thing_is_an_error() {
        let s = settings(
            &json!({"jitterMaxMs": "lots", "reconnectTopic": "a/+", "safetyPollSeconds": -5}),
            Some("t"),
        )
        .unwrap();
        assert_eq!(s.engine.max_jitter, EngineConfig::new("t").max_jitter);
        assert_eq!(s.engine.reconnect_topic, "reconnect/t");
        assert!(settings(&json!({}), None).is_err());
        let s = settings(
            &json!({"runCommandAllowList": ["/usr/bin/uptime", "uptime", "/usr/../bin/rm", "/a:b"],
                    "runAsUsers": ["svc", "bad user"], "downloadRoots": ["/data/in", "../up"]}),
            Some("t"),
        )
        .unwrap();
        assert_eq!(
            s.exec.permissions.run_command_allow_list,
            vec![PathBuf::from("/usr/bin/uptime")]
        );
        assert_eq!(s.exec.permissions.run_as_users, vec!["svc".to_owned()]);
        let roots = s
            .exec
            .limits
            .env
            .iter()
            .find(|(k, _)| k == ENV_DOWNLOAD_ROOTS);
        assert_eq!(roots.map(|(_, v)| v.as_str()), Some("/data/in"));
        assert!(settings(&json!({"thingName": "{iot:thingName}"}), None).is_err());
    }
}
