//! Checks on what a source sent before it is trusted: the shape of a page
//! (an object where the API documents an object), and JSON text that parses
//! but is not Unicode (a lone UTF-16 surrogate escape such as `"\ud800"`,
//! which serde's raw values pass through and which DuckDB and every Parquet
//! reader then refuse).

/// What kind of JSON value `text` starts with, for error messages.
pub fn json_kind(text: &str) -> &'static str {
    match text.trim_start().as_bytes().first() {
        None => "an empty body",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "a number",
        Some(b'<') => "HTML or XML",
        Some(_) => "something that is not JSON",
    }
}

/// `Ok` when `text` is (or at least starts as) a JSON object; otherwise an
/// error such as `expected an object with "data", got an array`. serde's
/// derived structs also accept an array of the fields' values, so a page
/// must pass this before it is deserialised into one.
pub fn expect_object(text: &str, with: &str) -> Result<(), String> {
    if text.trim_start().starts_with('{') {
        Ok(())
    } else {
        Err(format!(
            "expected an object with {with}, got {}",
            json_kind(text)
        ))
    }
}

/// The byte offset of the first `\uXXXX` escape in `raw` (JSON text) that is
/// a UTF-16 surrogate without its partner, if any.
pub fn lone_surrogate(raw: &str) -> Option<usize> {
    let b = raw.as_bytes();
    // Most text has no escapes at all: one fast search decides.
    let mut i = memchr_backslash(b, 0)?;
    while i + 1 < b.len() {
        if b[i] != b'\\' {
            i = memchr_backslash(b, i)?;
            continue;
        }
        if b[i + 1] != b'u' {
            // `\\`, `\"`, `\n`…: two bytes, whatever follows.
            i += 2;
            continue;
        }
        let Some(unit) = hex4(b, i + 2) else {
            i += 2;
            continue;
        };
        match unit {
            0xD800..=0xDBFF => {
                let low = (b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u'))
                    .then(|| hex4(b, i + 8))
                    .flatten();
                match low {
                    Some(0xDC00..=0xDFFF) => i += 12,
                    _ => return Some(i),
                }
            }
            0xDC00..=0xDFFF => return Some(i),
            _ => i += 6,
        }
    }
    None
}

fn memchr_backslash(b: &[u8], from: usize) -> Option<usize> {
    memchr::memchr(b'\\', b.get(from..)?).map(|p| p + from)
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let s = std::str::from_utf8(b.get(at..at + 4)?).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// The message for a lone surrogate at `at` in `raw`.
pub fn surrogate_message(raw: &str, at: usize) -> String {
    let esc = raw.get(at..at + 6).unwrap_or("\\u…");
    format!(
        "invalid Unicode: the escape {esc} is half of a UTF-16 surrogate pair with no other half"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_objects() {
        assert_eq!(
            expect_object("[[]]", "\"data\"").unwrap_err(),
            "expected an object with \"data\", got an array"
        );
        assert!(expect_object(" \n{\"data\": []}", "\"data\"").is_ok());
        assert_eq!(json_kind(""), "an empty body");
        assert_eq!(json_kind("<html>"), "HTML or XML");
        assert_eq!(json_kind("-1"), "a number");
    }

    #[test]
    fn lone_surrogates_are_found_and_pairs_are_not() {
        assert_eq!(lone_surrogate(r#""plain""#), None);
        assert_eq!(lone_surrogate(r#""\ud83d\ude00 ok""#), None, "a pair");
        assert_eq!(lone_surrogate(r#""\u00e9\n\"""#), None);
        assert_eq!(lone_surrogate(r#""\\ud800""#), None, "an escaped backslash");
        assert_eq!(lone_surrogate(r#"{"a": "x\ud800"}"#), Some(8));
        assert_eq!(lone_surrogate(r#""\udc00""#), Some(1), "a lone low half");
        assert_eq!(
            lone_surrogate(r#""\ud800\u0041""#),
            Some(1),
            "high then not low"
        );
        assert_eq!(lone_surrogate(r#""\ud800"#), Some(1), "cut short");
        let raw = r#""ab\uD800""#;
        assert!(surrogate_message(raw, lone_surrogate(raw).unwrap()).contains("\\uD800"));
    }
}
