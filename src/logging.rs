//! Logging: one event per line on stdout, readable inside the nucleus's log prefix.
//!
//! Owns: the subscriber, and the level and format (`text` or `json` lines) that configuration
//! can change while the component runs. Must not know: what is logged.
//!
//! The nucleus copies each stdout line into `<ComponentName>.log` behind its own timestamp and
//! level, so text lines carry no timestamp and no colour.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use tracing::Level;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

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
    let text = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .with_filter(filter_fn(|m| {
            !JSON.load(Ordering::Relaxed) && enabled(m.level())
        }));
    let json = tracing_subscriber::fmt::layer()
        .json()
        .with_target(false)
        .with_filter(filter_fn(|m| {
            JSON.load(Ordering::Relaxed) && enabled(m.level())
        }));
    let _ = tracing_subscriber::registry()
        .with(text)
        .with(json)
        .try_init();
    configure(level, format);
}
