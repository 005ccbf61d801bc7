//! Text for messages and state: the leaf every layer may use (errors,
//! decoding, HTTP) without depending on each other.

/// Shorten a value for an error message, so a multi-megabyte field never floods a log.
pub fn truncate_for_display(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// Format UTC microseconds as RFC 3339 with a `Z` (for state and logs).
pub fn format_utc_micros(micros: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        None => micros.to_string(),
    }
}
