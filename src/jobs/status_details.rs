//! Fitting `statusDetails` into what the Jobs service accepts.
//!
//! Owns: the service's limits on statusDetails (keys 1–128 characters of `[a-zA-Z0-9:_-]`,
//! values 1–1024 characters without control characters) and our own cap on the number of
//! entries, and turning arbitrary output into entries that respect them — on character
//! boundaries, never splitting a multi-byte character. Must not know: where the output came from.

use super::messages::StatusDetails;

pub const MAX_KEY_CHARS: usize = 128;
pub const MAX_VALUE_CHARS: usize = 1024;
/// The data plane states no count limit; CancelJobExecution allows 10, so stay within that.
pub const MAX_ENTRIES: usize = 10;
/// Marks text that was cut.
const ELLIPSIS: &str = "…";

/// A key the service accepts: invalid characters become `_`, cut to 128 characters.
pub fn key(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_KEY_CHARS)
        .collect();
    if cleaned.is_empty() {
        "_".to_owned()
    } else {
        cleaned
    }
}

/// A value the service accepts: control characters (newlines included) become spaces or are
/// dropped, and the text keeps its **beginning**, cut to 1024 characters.
pub fn value_head(raw: &str) -> String {
    let clean = clean(raw);
    if clean.chars().count() <= MAX_VALUE_CHARS {
        return non_empty(clean);
    }
    let mut head: String = clean.chars().take(MAX_VALUE_CHARS - 1).collect();
    head.push_str(ELLIPSIS);
    head
}

/// Like [`value_head`] but keeps the **end** of the text (the last lines of output matter most).
pub fn value_tail(raw: &str) -> String {
    let clean = clean(raw);
    let count = clean.chars().count();
    if count <= MAX_VALUE_CHARS {
        return non_empty(clean);
    }
    let tail: String = clean.chars().skip(count - (MAX_VALUE_CHARS - 1)).collect();
    format!("{ELLIPSIS}{tail}")
}

fn clean(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\n' | '\t' => out.push(' '),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.trim_end().to_owned()
}

fn non_empty(s: String) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s
    }
}

/// Makes a whole map acceptable: keys and values fixed, at most [`MAX_ENTRIES`] entries
/// (the first ones by key order are kept and a `truncated` entry says how many were dropped).
pub fn bounded(details: &StatusDetails) -> StatusDetails {
    let mut out = StatusDetails::new();
    let total = details.len();
    for (k, v) in details {
        if out.len() == MAX_ENTRIES - usize::from(total > MAX_ENTRIES) {
            break;
        }
        out.insert(key(k), value_head(v));
    }
    if total > MAX_ENTRIES {
        out.insert(
            "truncated".into(),
            format!("{} more entries dropped", total - (MAX_ENTRIES - 1)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_fit() {
        assert_eq!(key("exit code"), "exit_code");
        assert_eq!(key(""), "_");
        assert_eq!(key(&"k".repeat(300)).len(), MAX_KEY_CHARS);
        assert_eq!(value_head("a\nb\r\n\u{7}c"), "a b c");
        assert_eq!(value_head(""), "-");
        assert_eq!(value_head("\n\n"), "-");
    }

    #[test]
    fn multi_byte_text_is_cut_on_character_boundaries() {
        let text = "é€😀".repeat(1000);
        let head = value_head(&text);
        assert_eq!(head.chars().count(), MAX_VALUE_CHARS);
        assert!(head.ends_with(ELLIPSIS));
        let tail = value_tail(&text);
        assert_eq!(tail.chars().count(), MAX_VALUE_CHARS);
        assert!(tail.starts_with(ELLIPSIS));
        assert!(tail.ends_with('😀'));
    }

    #[test]
    fn entry_count_is_capped() {
        let many: StatusDetails = (0..25)
            .map(|i| (format!("k{i:02}"), "v".to_owned()))
            .collect();
        let b = bounded(&many);
        assert_eq!(b.len(), MAX_ENTRIES);
        assert_eq!(b["truncated"], "16 more entries dropped");
        let few: StatusDetails = [("a b".to_owned(), "x\ny".to_owned())].into();
        assert_eq!(bounded(&few), [("a_b".to_owned(), "x y".to_owned())].into());
    }
}
