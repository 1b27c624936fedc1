//! Logging: one event per line on stdout, readable inside the nucleus's log prefix.
//!
//! Owns: the subscriber, and the level and format (`text` or `json` lines) that configuration
//! can change while the component runs. Must not know: what is logged.
//!
//! The nucleus copies each stdout line into `<ComponentName>.log` behind its own timestamp and
//! level, so text lines carry no timestamp and no colour.
//!
//! Written by hand on `tracing`'s `Subscriber` trait rather than with `tracing-subscriber`: the
//! component logs events only (no spans), to one place, in one of two line formats, and
//! `tracing-subscriber`'s registry, layers and formatters cost about a tenth of the binary the
//! size target allows. The emulator and the tests keep using `tracing-subscriber`.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata};

static LEVEL: AtomicU8 = AtomicU8::new(2);
static JSON: AtomicBool = AtomicBool::new(false);

fn rank(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 0,
        Level::WARN => 1,
        Level::INFO => 2,
        Level::DEBUG => 3,
        Level::TRACE => 4,
    }
}

fn enabled(level: &Level) -> bool {
    rank(level) <= LEVEL.load(Ordering::Relaxed)
}

/// Sets the level (`error` … `trace`) and format (`text` or `json`); unknown values are
/// reported and leave the setting as it was.
pub fn configure(level: &str, format: &str) {
    match level.trim().to_ascii_lowercase().parse::<Level>() {
        Ok(l) => LEVEL.store(rank(&l), Ordering::Relaxed),
        Err(_) => tracing::error!(level, "unknown logLevel; keeping the current one"),
    }
    match format.trim().to_ascii_lowercase().as_str() {
        "text" | "" => JSON.store(false, Ordering::Relaxed),
        "json" => JSON.store(true, Ordering::Relaxed),
        other => tracing::error!(
            format = other,
            "unknown logFormat (text or json); keeping the current one"
        ),
    }
}

/// Installs the subscriber; `level` and `format` as in [`configure`].
pub fn init(level: &str, format: &str) {
    let subscriber = LineSubscriber::new(|line: &[u8]| {
        // A closed or full stdout loses the line; the component goes on.
        let _ = std::io::stdout().lock().write_all(line);
    });
    let _ = tracing::subscriber::set_global_default(subscriber);
    configure(level, format);
}

/// Where a finished line goes.
type LineSink = Box<dyn Fn(&[u8]) + Send + Sync>;

/// Formats each enabled event as one line (text or JSON, as [`configure`] last said) and hands
/// it, newline included, to `out`. Spans are accepted and ignored: the component has none.
pub struct LineSubscriber {
    out: LineSink,
}

impl LineSubscriber {
    pub fn new(out: impl Fn(&[u8]) + Send + Sync + 'static) -> Self {
        Self { out: Box::new(out) }
    }
}

impl tracing::Subscriber for LineSubscriber {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The level changes at run time: ask on every event, never cache a verdict.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        enabled(metadata.level())
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let level = *event.metadata().level();
        let line = if JSON.load(Ordering::Relaxed) {
            json_line(level, event)
        } else {
            text_line(level, event)
        };
        (self.out)(line.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// `LEVEL message name=value …`, the level right-aligned to five characters; strings quoted.
fn text_line(level: Level, event: &Event<'_>) -> String {
    struct Text {
        message: String,
        fields: String,
    }
    impl Visit for Text {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                self.message.push_str(value);
            } else {
                self.record_debug(field, &value);
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if field.name() == "message" {
                let _ = write!(self.message, "{value:?}");
            } else {
                let _ = write!(self.fields, " {}={value:?}", field.name());
            }
        }
    }
    let mut text = Text {
        message: String::new(),
        fields: String::new(),
    };
    event.record(&mut text);
    format!("{:>5} {}{}\n", level.as_str(), text.message, text.fields)
}

/// `{"timestamp":…,"level":…,"fields":{"message":…,…}}`: numbers and booleans as JSON values,
/// anything else as a string.
fn json_line(level: Level, event: &Event<'_>) -> String {
    struct Json(serde_json::Map<String, serde_json::Value>);
    impl Json {
        fn put(&mut self, field: &Field, value: impl Into<serde_json::Value>) {
            self.0.insert(field.name().to_owned(), value.into());
        }
    }
    impl Visit for Json {
        fn record_i64(&mut self, field: &Field, value: i64) {
            self.put(field, value);
        }
        fn record_u64(&mut self, field: &Field, value: u64) {
            self.put(field, value);
        }
        fn record_f64(&mut self, field: &Field, value: f64) {
            self.put(field, value);
        }
        fn record_bool(&mut self, field: &Field, value: bool) {
            self.put(field, value);
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.put(field, value);
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.put(field, format!("{value:?}"));
        }
    }
    let mut fields = Json(serde_json::Map::new());
    event.record(&mut fields);
    let line = serde_json::json!({
        "timestamp": rfc3339(SystemTime::now()),
        "level": level.as_str(),
        "fields": fields.0,
    });
    format!("{line}\n")
}

/// UTC time as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let rest = secs % 86_400;
    let (year, month, day) = crate::clock::civil_date((secs / 86_400) as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3_600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Runs `f` under a [`LineSubscriber`] and returns the lines it wrote. The level and format
    /// are process-wide: one test sets both and checks both.
    fn lines(f: impl FnOnce()) -> Vec<String> {
        let written = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = Arc::clone(&written);
        let subscriber = LineSubscriber::new(move |line| {
            sink.lock().unwrap().extend_from_slice(line);
        });
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn lines_follow_the_configured_level_and_format() {
        configure("info", "text");
        let text = lines(|| {
            tracing::info!(job_id = %"job-1", attempt = 3, token = "t-1", "request timed out");
            tracing::debug!("not at info");
            tracing::warn!("a \"quoted\" message");
        });
        assert_eq!(
            text,
            [
                " INFO request timed out job_id=job-1 attempt=3 token=\"t-1\"",
                " WARN a \"quoted\" message",
            ]
        );
        // The level changes at run time, also for a call site seen before.
        configure("debug", "json");
        let json = lines(|| {
            for _ in 0..2 {
                tracing::debug!(attempt = 3, ok = true, reason = %"x", "retrying");
            }
        });
        configure("info", "text");
        assert_eq!(json.len(), 2, "{json:?}");
        let line: serde_json::Value = serde_json::from_str(&json[0]).unwrap();
        assert_eq!(line["level"], "DEBUG");
        assert_eq!(
            line["fields"],
            serde_json::json!({"message": "retrying", "attempt": 3, "ok": true, "reason": "x"})
        );
        let stamp = line["timestamp"].as_str().unwrap();
        assert_eq!(stamp.len(), "2026-12-01T15:50:00.000000Z".len(), "{stamp}");
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let at = |secs: u64, micros: u64| {
            rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_825_599, 7), "2000-02-29T11:59:59.000007Z");
        assert_eq!(at(1_796_131_845, 123_456), "2026-12-01T13:30:45.123456Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
    }
}
