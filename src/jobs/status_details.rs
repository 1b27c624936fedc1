//! Fitting `statusDetails` into what the Jobs service accepts.
//!
//! Owns: the service's limits on statusDetails (keys 1–128 characters of `[a-zA-Z0-9:_-]`,
//! values of 1–1024 characters matching `[^\p{C}]+`) and our own cap on the number of entries,
//! and turning arbitrary output into entries that respect them — on character boundaries, never
//! splitting a multi-byte character. Must not know: where the output came from.
//!
//! Which characters: every character of Unicode general category C — control (Cc), format
//! (Cf: U+200B, U+202E, U+FEFF…), private use (Co), unassigned (Cn) and surrogates (Cs, which
//! a Rust `char` cannot hold) — is removed; tab and newline become a space first so that lines
//! stay apart. Which characters those are is [`unicode_other`]'s table, checked there against
//! the `unicode-properties` crate for every code point.
//!
//! Which length: the service counts characters, and its implementation counts UTF-16 code
//! units, where a supplementary-plane character (an emoji, U+1F600) is a surrogate pair and may
//! count twice. To be safe whichever way it counts, a value here holds at most 1024 UTF-16 code
//! units: a supplementary-plane character costs two, every other character one.

mod unicode_other;

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

/// The length the 1024 limit is checked against: UTF-16 code units (see the module doc).
pub fn service_length(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// A value the service accepts: characters of category C removed (tab and newline become
/// spaces), and the text keeps its **beginning**, cut to 1024 UTF-16 code units.
pub fn value_head(raw: &str) -> String {
    let clean = clean(raw);
    if service_length(&clean) <= MAX_VALUE_CHARS {
        return non_empty(clean);
    }
    let mut head = String::new();
    let mut used = service_length(ELLIPSIS);
    for c in clean.chars() {
        used += c.len_utf16();
        if used > MAX_VALUE_CHARS {
            break;
        }
        head.push(c);
    }
    head.push_str(ELLIPSIS);
    head
}

/// Like [`value_head`] but keeps the **end** of the text (the last lines of output matter most).
pub fn value_tail(raw: &str) -> String {
    let clean = clean(raw);
    if service_length(&clean) <= MAX_VALUE_CHARS {
        return non_empty(clean);
    }
    let mut kept = Vec::new();
    let mut used = service_length(ELLIPSIS);
    for c in clean.chars().rev() {
        used += c.len_utf16();
        if used > MAX_VALUE_CHARS {
            break;
        }
        kept.push(c);
    }
    let tail: String = kept.into_iter().rev().collect();
    format!("{ELLIPSIS}{tail}")
}

/// Whether the service's pattern `[^\p{C}]` allows this character.
pub fn allowed_in_value(c: char) -> bool {
    unicode_other::allowed(c)
}

fn clean(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\n' | '\t' => out.push(' '),
            c if allowed_in_value(c) => out.push(c),
            _ => {}
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
        assert!(service_length(&head) <= MAX_VALUE_CHARS);
        assert!(service_length(&head) >= MAX_VALUE_CHARS - 1);
        assert!(head.ends_with(ELLIPSIS));
        let tail = value_tail(&text);
        assert!(service_length(&tail) <= MAX_VALUE_CHARS);
        assert!(service_length(&tail) >= MAX_VALUE_CHARS - 1);
        assert!(tail.starts_with(ELLIPSIS));
        assert!(tail.ends_with('😀'));
    }

    #[test]
    fn every_character_of_category_c_is_removed() {
        // Format (Cf), private use (Co, in the BMP and plane 15), unassigned (Cn), control (Cc).
        let raw = "a\u{200B}b\u{202E}c\u{FEFF}d\u{E000}e\u{F0041}f\u{0378}g\u{7F}h\u{85}i";
        assert_eq!(value_head(raw), "abcdefghi");
        assert_eq!(value_tail(raw), "abcdefghi");
        // Letters, marks, symbols and separators of other scripts stay.
        assert_eq!(value_head("é ü 中 😀 \u{2028} x"), "é ü 中 😀 \u{2028} x");
        assert_eq!(value_head("\u{200B}"), "-");
    }

    #[test]
    fn supplementary_plane_characters_count_as_two() {
        let emoji = "😀".repeat(600);
        let head = value_head(&emoji);
        assert!(
            service_length(&head) <= MAX_VALUE_CHARS,
            "{}",
            service_length(&head)
        );
        assert_eq!(head.chars().count(), 512, "511 emoji and the ellipsis");
        let tail = value_tail(&emoji);
        assert!(service_length(&tail) <= MAX_VALUE_CHARS);
        // Exactly 1024 units of BMP text is kept whole.
        let bmp = "中".repeat(MAX_VALUE_CHARS);
        assert_eq!(value_head(&bmp), bmp);
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
