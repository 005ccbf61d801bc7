//! Parsers from JSON scalar text to typed values, one per Fivetran type.
//!
//! They work on the raw text of a JSON value (as sliced from the page) so that
//! the common cases never allocate: an unescaped string is borrowed from the
//! page, a number is parsed straight from its digits. Timestamps are parsed by
//! hand because APIs disagree on the format: `Z`, `+00:00`, `+0000`, any
//! number of fractional digits, `T` or a space between date and time.

use std::borrow::Cow;

/// Unquote a JSON string's raw text, borrowing when it has no escapes.
/// Returns `None` when the text is not a JSON string.
pub fn json_str(raw: &str) -> Option<Cow<'_, str>> {
    let b = raw.as_bytes();
    if b.len() < 2 || b[0] != b'"' || b[b.len() - 1] != b'"' {
        return None;
    }
    let inner = &raw[1..raw.len() - 1];
    if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

/// Text of a scalar for numeric parsing: a JSON number as is, or the content of a JSON string.
pub fn scalar_text(raw: &str) -> Cow<'_, str> {
    match json_str(raw) {
        Some(s) => s,
        None => Cow::Borrowed(raw),
    }
}

/// A boolean: `true`, or a string such as `"true"`, `"T"`, `"1"`, `"yes"`
/// (the Connector SDK's tester reads `t` and `f` as booleans too).
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw {
        "true" => Some(true),
        "false" => Some(false),
        _ => parse_bool_text(&json_str(raw)?),
    }
}

/// A boolean written as text: `true`, `T`, `1`, `yes` (any case) and their opposites.
pub fn parse_bool_text(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" => Some(true),
        "false" | "f" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// Parse an integer; accepts `12`, `"12"`, `12.0` (an integral float) and a
/// boolean (1 or 0, as the SDK's tester writes one into a number column).
pub fn parse_i64(raw: &str) -> Option<i64> {
    match raw {
        "true" => return Some(1),
        "false" => return Some(0),
        _ => {}
    }
    let t = scalar_text(raw);
    let t = t.trim();
    if let Ok(v) = t.parse::<i64>() {
        return Some(v);
    }
    let f: f64 = t.parse().ok()?;
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Some(f as i64)
    } else {
        None
    }
}

pub fn parse_f64(raw: &str) -> Option<f64> {
    match raw {
        "true" => return Some(1.0),
        "false" => return Some(0.0),
        _ => {}
    }
    let t = scalar_text(raw);
    let t = t.trim();
    match t {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => t.parse().ok(),
    }
}

/// Parse a decimal into an i128 scaled by `scale`, checking it fits `precision`
/// digits. Extra fractional digits are rounded half away from zero.
pub fn parse_decimal(raw: &str, precision: u8, scale: i8) -> Option<i128> {
    let t = scalar_text(raw);
    let t = t.trim();
    let (neg, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    // Scientific notation: go through f64 (loses precision only beyond 15 digits).
    if body.contains(['e', 'E']) {
        let f: f64 = t.parse().ok()?;
        let scaled = (f * 10f64.powi(scale as i32)).round();
        if !scaled.is_finite() || scaled.abs() >= 10f64.powi(precision as i32) {
            return None;
        }
        return Some(scaled as i128);
    }
    let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().all(|c| c.is_ascii_digit())
        || !frac_part.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let scale = scale.max(0) as usize;
    let mut v: i128 = 0;
    for c in int_part.bytes() {
        v = v.checked_mul(10)?.checked_add((c - b'0') as i128)?;
    }
    let frac = frac_part.as_bytes();
    for i in 0..scale {
        let d = frac.get(i).map(|c| (c - b'0') as i128).unwrap_or(0);
        v = v.checked_mul(10)?.checked_add(d)?;
    }
    if frac.get(scale).is_some_and(|c| *c >= b'5') {
        v = v.checked_add(1)?;
    }
    if v >= 10i128.pow(precision as u32) {
        return None;
    }
    Some(if neg { -v } else { v })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Days of month `m` (1–12) of year `y`.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// Parse `YYYY-MM-DD`; returns days since the epoch and the bytes consumed.
fn parse_date_prefix(b: &[u8]) -> Option<(i64, usize)> {
    let y = digits(b, 0, 4)? as i64;
    if b.get(4) != Some(&b'-') {
        return None;
    }
    let m = digits(b, 5, 2)?;
    if b.get(7) != Some(&b'-') {
        return None;
    }
    let d = digits(b, 8, 2)?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some((days_from_civil(y, m, d), 10))
}

/// Parse `HH:MM[:SS[.fraction]]` at `b`; returns microseconds of the day and bytes consumed.
fn parse_time(b: &[u8]) -> Option<(i64, usize)> {
    let h = digits(b, 0, 2)?;
    if b.get(2) != Some(&b':') {
        return None;
    }
    let mi = digits(b, 3, 2)?;
    let mut pos = 5;
    let mut s = 0;
    if b.get(5) == Some(&b':') {
        s = digits(b, 6, 2)?;
        pos = 8;
    }
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut micros: i64 = 0;
    if matches!(b.get(pos), Some(b'.') | Some(b',')) {
        pos += 1;
        let start = pos;
        let mut scale = 100_000i64;
        while let Some(c) = b.get(pos).filter(|c| c.is_ascii_digit()) {
            micros += (c - b'0') as i64 * scale;
            scale /= 10;
            pos += 1;
        }
        if pos == start {
            return None;
        }
    }
    let secs = h as i64 * 3600 + mi as i64 * 60 + s.min(59) as i64;
    Some((secs * 1_000_000 + micros, pos))
}

/// Parse a zone suffix: `Z`, `+HH:MM`, `+HHMM`, `+HH`; returns offset seconds.
fn parse_offset(b: &[u8]) -> Option<i64> {
    match b {
        [b'Z'] | [b'z'] => Some(0),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let h = digits(rest, 0, 2)? as i64;
            let m = match rest.len() {
                2 => 0,
                4 => digits(rest, 2, 2)? as i64,
                5 if rest[2] == b':' => digits(rest, 3, 2)? as i64,
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            Some(if *sign == b'-' { -off } else { off })
        }
        _ => None,
    }
}

/// Parse an ISO-8601 timestamp to UTC microseconds since the epoch.
/// A timestamp without a zone is taken as UTC; a bare date is midnight UTC.
pub fn parse_utc_micros(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let (days, mut pos) = parse_date_prefix(b)?;
    let mut micros = 0;
    if pos < b.len() {
        if !matches!(b[pos], b'T' | b't' | b' ') {
            return None;
        }
        pos += 1;
        let (m, n) = parse_time(&b[pos..])?;
        micros = m;
        pos += n;
    }
    let rest = &b[pos..];
    let rest = if rest.first() == Some(&b' ') {
        &rest[1..]
    } else {
        rest
    };
    let offset = if rest.is_empty() {
        0
    } else {
        parse_offset(rest)?
    };
    Some(days * 86_400_000_000 + micros - offset * 1_000_000)
}

/// Parse a zone-less `YYYY-MM-DD[T ]HH:MM[:SS[.f]]` to microseconds since the epoch.
pub fn parse_naive_micros(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let (days, pos) = parse_date_prefix(b)?;
    if pos == b.len() {
        return Some(days * 86_400_000_000);
    }
    if !matches!(b[pos], b'T' | b't' | b' ') {
        return None;
    }
    let (m, n) = parse_time(&b[pos + 1..])?;
    if pos + 1 + n != b.len() {
        return None;
    }
    Some(days * 86_400_000_000 + m)
}

/// Parse `YYYY-MM-DD` to days since the epoch.
pub fn parse_date_days(s: &str) -> Option<i32> {
    let b = s.trim().as_bytes();
    let (days, pos) = parse_date_prefix(b)?;
    if pos != b.len() {
        return None;
    }
    i32::try_from(days).ok()
}

pub use crate::text::format_utc_micros;

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_681_204_365_381_000; // 2023-04-11T09:12:45.381Z

    #[test]
    fn utc_datetime_accepts_every_zone_spelling() {
        for s in [
            "2023-04-11T09:12:45.381Z",
            "2023-04-11T09:12:45.381+00:00",
            "2023-04-11T09:12:45.381+0000",
            "2023-04-11T09:12:45.381+00",
            "2023-04-11 09:12:45.381Z",
            "2023-04-11T09:12:45.381000Z",
            "2023-04-11T09:12:45.381000000Z",
            "2023-04-11T11:12:45.381+02:00",
            "2023-04-11T04:12:45.381-0500",
            "2023-04-11T09:12:45.381",
        ] {
            assert_eq!(parse_utc_micros(s), Some(T), "{s}");
        }
    }

    #[test]
    fn utc_datetime_fraction_of_any_length() {
        let base = parse_utc_micros("2024-05-02T10:14:03Z").unwrap();
        assert_eq!(
            parse_utc_micros("2024-05-02T10:14:03.5Z"),
            Some(base + 500_000)
        );
        assert_eq!(
            parse_utc_micros("2024-05-02T10:14:03.512345Z"),
            Some(base + 512_345)
        );
        assert_eq!(
            parse_utc_micros("2024-05-02T10:14:03.5123456789Z"),
            Some(base + 512_345)
        );
        assert_eq!(
            parse_utc_micros("2016-05-18T17:56:39.975+0000"),
            Some(1_463_594_199_975_000)
        );
        assert_eq!(parse_utc_micros("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc_micros("1969-12-31T23:59:59Z"), Some(-1_000_000));
    }

    #[test]
    fn utc_datetime_rejects_garbage() {
        for s in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-02-30",
            "2023-04-11T25:00:00Z",
            "2023-04-11T09:12:45Q",
            "2023-04-11T09:12:45.Z",
            "2023-04-11T09:12:45+5",
        ] {
            assert_eq!(parse_utc_micros(s), None, "{s}");
        }
    }

    #[test]
    fn naive_and_date() {
        assert_eq!(
            parse_naive_micros("1970-01-02T00:00:01.25"),
            Some(86_401_250_000)
        );
        assert_eq!(parse_naive_micros("1970-01-02T00:00:01Z"), None);
        assert_eq!(parse_date_days("2000-03-01"), Some(11017));
        assert_eq!(parse_date_days("2000-02-29"), Some(11016));
        assert_eq!(parse_date_days("1900-02-29"), None);
    }

    #[test]
    fn numbers_and_decimals() {
        assert_eq!(parse_i64("42"), Some(42));
        assert_eq!(parse_i64("\"42\""), Some(42));
        assert_eq!(parse_i64("42.0"), Some(42));
        assert_eq!(parse_i64("42.5"), None);
        assert_eq!(parse_f64("\"1.5\""), Some(1.5));
        assert_eq!(parse_decimal("123.456", 10, 2), Some(12346));
        assert_eq!(parse_decimal("\"-0.5\"", 3, 1), Some(-5));
        assert_eq!(parse_decimal("12345", 4, 0), None);
        assert_eq!(parse_decimal("1.5e2", 5, 1), Some(1500));
        assert_eq!(parse_decimal("abc", 5, 1), None);
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("\"False\""), Some(false));
        assert_eq!(parse_bool("1"), None);
    }

    #[test]
    fn json_strings_borrow_unless_escaped() {
        assert!(matches!(json_str("\"abc\""), Some(Cow::Borrowed("abc"))));
        assert_eq!(json_str("\"a\\\"b\\u00e9\"").unwrap(), "a\"bé");
        assert_eq!(json_str("12"), None);
    }
}
