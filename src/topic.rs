//! MQTT topic names and filters.
//!
//! Owns: validating topic names and filters, and matching a name against a filter with the
//! `+` and `#` wildcards, including MQTT's rule that wildcards do not match `$`-topics from the
//! first level. Must not know: who subscribes or what is delivered.
//!
//! Written by hand: matching is a few lines, and the crates that have it are whole MQTT clients.

/// Why a topic name or filter is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is longer than {0} bytes")]
    TooLong(usize),
    #[error("topic name {0:?} contains a wildcard")]
    WildcardInName(String),
    #[error("topic filter {0:?} uses a wildcard inside a level or '#' before the last level")]
    BadWildcard(String),
    #[error("topic contains a NUL character")]
    Nul,
}

/// Longest topic MQTT can carry.
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Checks a topic name to publish on: no wildcards.
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    validate_common(name)?;
    if name.contains(['+', '#']) {
        return Err(TopicError::WildcardInName(name.to_owned()));
    }
    Ok(())
}

/// Checks a topic filter to subscribe to: `+` fills a whole level, `#` only the last one.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    validate_common(filter)?;
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let bad_plus = level.contains('+') && *level != "+";
        let bad_hash = level.contains('#') && (*level != "#" || i + 1 != levels.len());
        if bad_plus || bad_hash {
            return Err(TopicError::BadWildcard(filter.to_owned()));
        }
    }
    Ok(())
}

fn validate_common(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong(MAX_TOPIC_LEN));
    }
    if topic.contains('\0') {
        return Err(TopicError::Nul);
    }
    Ok(())
}

/// Whether `name` matches `filter`. Both are assumed valid.
pub fn matches(filter: &str, name: &str) -> bool {
    // MQTT 3.1.1 §4.7.2: a filter starting with a wildcard does not match `$` topics.
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    if filter == name {
        // Every level equals itself (and a wildcard level matches its own text).
        return true;
    }
    let (mut filters, mut names) = (Some(filter.as_bytes()), Some(name.as_bytes()));
    loop {
        match (next_level(&mut filters), next_level(&mut names)) {
            (Some(b"#"), _) => return true,
            (Some(b"+"), Some(_)) => {}
            (Some(f), Some(n)) if f == n => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The next `/`-separated level of `rest` (`None` once the last level was taken), as
/// `str::split('/')` yields them, without its per-call searcher set-up.
fn next_level<'a>(rest: &mut Option<&'a [u8]>) -> Option<&'a [u8]> {
    let s = (*rest)?;
    match s.iter().position(|&b| b == b'/') {
        Some(i) => {
            *rest = Some(&s[i + 1..]);
            Some(&s[..i])
        }
        None => {
            *rest = None;
            Some(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_mqtt() {
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(matches("a/+", "a/b"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("#", "a/b"));
        assert!(matches("+/+", "/b"));
        assert!(!matches("a/b/#", "a/c"));
        assert!(matches(
            "$aws/events/subscriptions/subscribed/+",
            "$aws/events/subscriptions/subscribed/thing"
        ));
        assert!(!matches("#", "$aws/things/t/jobs/notify-next"));
        assert!(!matches("+/things/t", "$aws/things/t"));
    }

    #[test]
    fn validation() {
        assert!(validate_name("a/b").is_ok());
        assert_eq!(validate_name(""), Err(TopicError::Empty));
        assert!(matches!(
            validate_name("a/+"),
            Err(TopicError::WildcardInName(_))
        ));
        assert!(validate_filter("a/+/#").is_ok());
        assert!(validate_filter("a/b+").is_err());
        assert!(validate_filter("a/#/b").is_err());
        assert!(validate_filter("a#").is_err());
        assert!(validate_filter(&"a".repeat(MAX_TOPIC_LEN + 1)).is_err());
    }
}
