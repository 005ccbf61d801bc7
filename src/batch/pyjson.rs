//! The Connector SDK's row hash: `sha1(json.dumps(row, sort_keys=True))`,
//! byte for byte as Python writes it (separators `", "` and `": "`, ASCII
//! only with `\uXXXX` escapes, `repr` floats, `null`/`true`/`false`), so a
//! table without a primary key gets the same `_etl_id` the SDK's `hashes`
//! example computes.

use serde_json::Value;
use sha1::{Digest, Sha1};

/// `json.dumps(v, sort_keys=True)`.
pub fn dumps_sorted(v: &Value) -> String {
    let mut out = String::new();
    write_value(v, &mut out);
    out
}

/// SHA-1 (hex) of the record's `json.dumps(record, sort_keys=True)`.
pub fn row_hash(record: &Value) -> String {
    hex::encode(Sha1::digest(dumps_sorted(record).as_bytes()))
}

fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) => out.push_str(&float_repr(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_str(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            // Python sorts keys by code point: the order of their UTF-8 bytes.
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(k, out);
                out.push_str(": ");
                write_value(&m[k], out);
            }
            out.push('}');
        }
    }
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that round-trip, fixed
/// notation for 1e-4 ≤ |x| < 1e16, else `d.ddde+XX`.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` prints the shortest round-trip digits: "-1.2345e-5".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let s = if exp < 0 {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        } else if exp + 1 >= n {
            format!("{}{}.0", digits, "0".repeat((exp + 1 - n) as usize))
        } else {
            let (a, b) = digits.split_at((exp + 1) as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        format!(
            "{sign}{m}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The five vectors of the SDK's `hashes` example (SDK_PATTERNS.md §2).
    #[test]
    fn the_sdk_hashes_example_vectors() {
        let cases = [
            (
                json!({"email": "john.doe@example.com", "first_name": "John", "last_name": "Doe", "updated_at": "2007-12-03T10:15:30Z"}),
                "9507eb591ddb60eb68452d06cf70696d8d5e8140",
            ),
            (
                json!({"email": "john.doe@example.com", "first_name": "John", "last_name": "Doe", "updated_at": "2008-02-13T03:30:50Z"}),
                "7d09ec9c2cfa02549a329a36fcd0221b1ea020ab",
            ),
            (
                json!({"email": null, "first_name": "John", "last_name": "Doe", "updated_at": "2008-02-13T03:30:50Z"}),
                "f01ca16d545bf1af5a8bbce87acc622101e1a992",
            ),
            (
                json!({"email": null, "first_name": "Joe", "last_name": "Smith", "updated_at": "2014-05-10T00:00:30Z"}),
                "a211fe507efd31c94e30e91fc8883b4a68605d3d",
            ),
            (
                json!({"first_name": "Jane", "last_name": "Dalton", "updated_at": null}),
                "aa1f248cbe6e71e1f36db2f09c5b68a2fbe3febb",
            ),
        ];
        for (row, hash) in cases {
            assert_eq!(row_hash(&row), hash, "{row}");
        }
    }

    #[test]
    fn writes_like_python_json_dumps() {
        let v = json!({"b": [1, 2.5, true, null], "a": "é\n\"x\"😀", "c": {"z": 1e-5, "y": 1e16, "x": 100.0, "w": 0.0001}});
        assert_eq!(
            dumps_sorted(&v),
            r#"{"a": "\u00e9\n\"x\"\ud83d\ude00", "b": [1, 2.5, true, null], "c": {"w": 0.0001, "x": 100.0, "y": 1e+16, "z": 1e-05}}"#
        );
        assert_eq!(float_repr(123456789.125), "123456789.125");
        assert_eq!(float_repr(-1.5e-7), "-1.5e-07");
        assert_eq!(float_repr(1.2345e20), "1.2345e+20");
        assert_eq!(float_repr(0.1), "0.1");
    }
}
