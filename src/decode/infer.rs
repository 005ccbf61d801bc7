//! The types of columns nobody declared, inferred from their values as the
//! Connector SDK 3.0's tester infers them, so undeclared columns land with
//! the tester's types.
//!
//! The SDK sends strings, integers and booleans as text, so text is typed
//! by its shape: `true`/`false`/`t`/`f` a BOOLEAN, an integer (no plus
//! sign, no leading zero) a LONG, a decimal point a DOUBLE, `YYYY-MM-DD` a
//! NAIVE_DATE, a date and time a NAIVE_DATETIME or, with `Z` or an offset
//! after a `T`, a UTC_DATETIME; anything else a STRING. A JSON float is a
//! FLOAT (the SDK sends Python floats as Java floats), an object or array
//! JSON, and null or an empty string says nothing. Values of one column
//! widen along BOOLEAN < LONG < FLOAT < DOUBLE and NAIVE_DATE <
//! NAIVE_DATETIME < UTC_DATETIME; JSON takes anything; any other pair is
//! a STRING.

use serde_json::Value;

use crate::schema::ColumnType;

/// The type one value suggests; `None`: null or an empty string.
pub fn value_type(v: &Value) -> Option<ColumnType> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(_) => ColumnType::Boolean,
        Value::Number(n) if n.is_i64() => ColumnType::Long,
        // Beyond a Java long the SDK sends an integer as a float.
        Value::Number(_) => ColumnType::Float,
        Value::String(s) => return text_type(s),
        Value::Array(_) | Value::Object(_) => ColumnType::Json,
    })
}

/// The type a piece of text suggests (the tester's rules for text cells).
pub fn text_type(s: &str) -> Option<ColumnType> {
    if s.is_empty() {
        return None;
    }
    if matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "t" | "f"
    ) {
        return Some(ColumnType::Boolean);
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        // No leading zeros unless negative; it must fit a long.
        if !s.starts_with('-') && digits.len() > 1 && digits.starts_with('0') {
            return Some(ColumnType::String);
        }
        return Some(if s.parse::<i64>().is_ok() {
            ColumnType::Long
        } else {
            ColumnType::String
        });
    }
    if s == "NaN" || s == "Infinity" {
        return Some(ColumnType::Double);
    }
    if is_float(s) {
        return Some(if s.parse::<f64>().is_ok_and(f64::is_finite) {
            ColumnType::Double
        } else {
            ColumnType::String
        });
    }
    Some(moment_type(s).unwrap_or(ColumnType::String))
}

/// `[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?`
fn is_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    if i >= b.len() || b[i] != b'.' {
        return false;
    }
    i += 1;
    let frac_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if int_digits == 0 && i == frac_start {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

/// A date, or a date and time with an optional `Z`/`±hh:mm` (which needs
/// the `T` separator); `None` when the text has neither shape, a STRING
/// when it has the shape of an impossible date or time.
fn moment_type(s: &str) -> Option<ColumnType> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(part).ok()?.parse().ok())?
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let valid_date = (1..=12).contains(&month)
        && day >= 1
        && day <= super::values::days_in_month(year as i64, month);
    if b.len() == 10 {
        return Some(if valid_date {
            ColumnType::NaiveDate
        } else {
            ColumnType::String
        });
    }
    let sep = *b.get(10)?;
    if !matches!(sep, b'T' | b't' | b' ') {
        return None;
    }
    let (hour, minute) = (num(11, 2)?, num(14, 2)?);
    if b.get(13) != Some(&b':') {
        return None;
    }
    let mut i = 16;
    let mut second = 0;
    if b.get(i) == Some(&b':') {
        second = num(i + 1, 2)?;
        i += 3;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j == start || j - start > 9 {
                return None;
            }
            i = j;
        }
    }
    let offset = match &b[i..] {
        [] => false,
        [b'Z'] => true,
        [sign, h1, h2, b':', m1, m2]
            if matches!(sign, b'+' | b'-')
                && [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) =>
        {
            true
        }
        _ => return None,
    };
    if !valid_date || hour > 23 || minute > 59 || second > 59 || (offset && sep == b' ') {
        return Some(ColumnType::String);
    }
    Some(if offset {
        ColumnType::UtcDatetime
    } else {
        ColumnType::NaiveDatetime
    })
}

/// The type of a column of type `old` that gets a value of type `new`: as
/// [`merge`], except that a text column never becomes JSON (text cannot be
/// re-read as JSON, so objects join the text instead).
pub fn widen(old: ColumnType, new: ColumnType) -> ColumnType {
    match merge(old, new) {
        ColumnType::Json if old != ColumnType::Json => ColumnType::String,
        wider => wider,
    }
}

/// The type that holds values of both (the tester's least common supertype).
pub fn merge(a: ColumnType, b: ColumnType) -> ColumnType {
    use ColumnType::*;
    if a == b {
        return a;
    }
    if a == Json || b == Json {
        return Json;
    }
    let number = |t: ColumnType| {
        [Boolean, Short, Int, Long, Float, Double]
            .iter()
            .position(|x| *x == t)
    };
    let moment = |t: ColumnType| {
        [NaiveDate, NaiveDatetime, UtcDatetime]
            .iter()
            .position(|x| *x == t)
    };
    match ((number(a), number(b)), (moment(a), moment(b))) {
        ((Some(x), Some(y)), _) => {
            if x >= y {
                a
            } else {
                b
            }
        }
        (_, (Some(x), Some(y))) => {
            if x >= y {
                a
            } else {
                b
            }
        }
        _ => String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use ColumnType::*;

    /// What the tester's `_text_type` gives (fivetran-connector-sdk 3.0.0).
    #[test]
    fn text_as_the_tester_types_it() {
        let cases = [
            ("true", Some(Boolean)),
            ("T", Some(Boolean)),
            ("f", Some(Boolean)),
            ("yes", Some(String)),
            ("123", Some(Long)),
            ("-0123", Some(Long)),
            ("0123", Some(String)),
            ("0", Some(Long)),
            ("+5", Some(String)),
            ("99999999999999999999", Some(String)),
            ("1.5", Some(Double)),
            (".5", Some(Double)),
            ("5.", Some(Double)),
            ("1.5e3", Some(Double)),
            ("1e3", Some(String)),
            ("NaN", Some(Double)),
            ("2024-01-02", Some(NaiveDate)),
            ("2024-02-30", Some(String)),
            ("2024-01-02T03:04:05", Some(NaiveDatetime)),
            ("2024-01-02 03:04", Some(NaiveDatetime)),
            ("2024-01-02T03:04:05.123456Z", Some(UtcDatetime)),
            ("2024-01-02T03:04:05+02:00", Some(UtcDatetime)),
            ("2024-01-02 03:04:05Z", Some(String)),
            ("2024-01-02T25:00:00", Some(String)),
            ("2024-01-02T03:04:05+0200", Some(String)),
            ("hello", Some(String)),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(text_type(text), want, "{text:?}");
        }
    }

    #[test]
    fn values_and_widening() {
        assert_eq!(value_type(&json!(5)), Some(Long));
        assert_eq!(value_type(&json!(2.25)), Some(Float));
        assert_eq!(value_type(&json!(true)), Some(Boolean));
        assert_eq!(value_type(&json!({"a": 1})), Some(Json));
        assert_eq!(value_type(&json!(null)), None);
        assert_eq!(merge(Boolean, Long), Long);
        assert_eq!(merge(Long, Float), Float);
        assert_eq!(merge(Double, Float), Double);
        assert_eq!(merge(NaiveDate, UtcDatetime), UtcDatetime);
        assert_eq!(merge(Long, NaiveDate), String);
        assert_eq!(merge(String, Json), Json);
    }
}
