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

/// The `_fivetran_id` the Connector SDK's tester gives a row of a table
/// without a primary key: base64 of the SHA-1 of the row's cells as the SDK
/// sends them (`name=repr(cell)`, names after Fivetran naming, in name
/// order, joined by U+001F). A record's top-level fields are the row:
/// strings, numbers and booleans travel as text (`'42'`, `'true'`), floats
/// as Python floats (`2.25`), objects and arrays as `json.dumps` text, null
/// as `None`; of two fields that rename to one name the first is kept.
pub fn fivetran_id(record: &str) -> Result<String, String> {
    use base64::Engine;
    let fields = top_level_cells(record)?;
    let mut row: Vec<(String, String)> = Vec::with_capacity(fields.len());
    for (name, cell) in fields {
        let name = crate::naming::fivetran_column(&name);
        if !row.iter().any(|(n, _)| *n == name) {
            row.push((name, cell));
        }
    }
    row.sort_by(|a, b| a.0.cmp(&b.0));
    let text = row
        .iter()
        .map(|(n, c)| format!("{n}={c}"))
        .collect::<Vec<_>>()
        .join("\u{1f}");
    Ok(base64::engine::general_purpose::STANDARD.encode(Sha1::digest(text.as_bytes())))
}

/// Python's `repr(str)`: single quotes unless the text has a `'` and no
/// `"`; backslash escapes for the quote, `\\`, `\t`, `\n`, `\r` and
/// characters Python does not print (controls, non-space separators,
/// format characters, private use).
pub fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !printable(c) => {
                let u = c as u32;
                if u < 0x100 {
                    out.push_str(&format!("\\x{u:02x}"));
                } else if u < 0x10000 {
                    out.push_str(&format!("\\u{u:04x}"));
                } else {
                    out.push_str(&format!("\\U{u:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `str.isprintable` for one character, without Unicode's list
/// of unassigned code points (those count as printable here).
fn printable(c: char) -> bool {
    let u = c as u32;
    !(u < 0x20
        || (0x7f..=0xa0).contains(&u)
        || u == 0xad
        || (0x600..=0x605).contains(&u)
        || u == 0x61c
        || u == 0x6dd
        || u == 0x70f
        || (0x890..=0x891).contains(&u)
        || u == 0x8e2
        || u == 0x1680
        || u == 0x180e
        || (0x2000..=0x200f).contains(&u)
        || (0x2028..=0x202f).contains(&u)
        || (0x205f..=0x2064).contains(&u)
        || (0x2066..=0x206f).contains(&u)
        || u == 0x3000
        || (0xd800..=0xf8ff).contains(&u)
        || (0xfdd0..=0xfdef).contains(&u)
        || u == 0xfeff
        || (0xfff9..=0xfffb).contains(&u)
        || (u & 0xfffe) == 0xfffe
        || u == 0x110bd
        || u == 0x110cd
        || (0x13430..=0x1343f).contains(&u)
        || (0x1bca0..=0x1bca3).contains(&u)
        || (0x1d173..=0x1d17a).contains(&u)
        || u == 0xe0001
        || (0xe0020..=0xe007f).contains(&u)
        || u >= 0xf0000)
}

/// The record's top-level fields in document order, each as the `repr` of
/// the cell the SDK would send for it.
fn top_level_cells(record: &str) -> Result<Vec<(String, String)>, String> {
    use serde::de::{Deserializer, MapAccess, Visitor};

    struct Fields;
    impl<'de> Visitor<'de> for Fields {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            let mut out: Vec<(String, String)> = Vec::new();
            while let Some(k) = m.next_key::<String>()? {
                let v = m.next_value_seed(Dumps)?;
                let cell = match v {
                    Dumped::Null => "None".to_string(),
                    Dumped::Bool(b) => repr_str(if b { "true" } else { "false" }),
                    Dumped::Int(text) => repr_str(&text),
                    Dumped::Float(f) => repr_float(f),
                    Dumped::Str(s) => repr_str(&s),
                    Dumped::Json(text) => repr_str(&text),
                };
                // json.loads keeps the last value of a repeated key, in the first one's place.
                match out.iter_mut().find(|(n, _)| *n == k) {
                    Some(slot) => slot.1 = cell,
                    None => out.push((k, cell)),
                }
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(record);
    let fields = (&mut de)
        .deserialize_map(Fields)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(fields)
}

/// Python's `repr(float)` (`nan`, `inf` where JSON text would say `NaN`).
fn repr_float(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        float_repr(f)
    }
}

/// A JSON value as the SDK sees it after `json.loads`.
enum Dumped {
    Null,
    Bool(bool),
    /// An integer's digits (Python ints have no limit).
    Int(String),
    Float(f64),
    Str(String),
    /// An object or array as `json.dumps` writes it (document key order).
    Json(String),
}

/// Reads one JSON value into a [`Dumped`].
struct Dumps;

impl<'de> serde::de::DeserializeSeed<'de> for Dumps {
    type Value = Dumped;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Dumped, D::Error> {
        d.deserialize_any(DumpVisitor)
    }
}

struct DumpVisitor;

impl<'de> serde::de::Visitor<'de> for DumpVisitor {
    type Value = Dumped;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Dumped, E> {
        Ok(Dumped::Null)
    }
    fn visit_none<E>(self) -> Result<Dumped, E> {
        Ok(Dumped::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Dumped, E> {
        Ok(Dumped::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Dumped, E> {
        Ok(Dumped::Int(i.to_string()))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Dumped, E> {
        // Beyond a Java long the SDK sends an integer as a float.
        if u > i64::MAX as u64 {
            Ok(Dumped::Float(u as f64))
        } else {
            Ok(Dumped::Int(u.to_string()))
        }
    }
    fn visit_f64<E>(self, f: f64) -> Result<Dumped, E> {
        Ok(Dumped::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Dumped, E> {
        Ok(Dumped::Str(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Dumped, E> {
        Ok(Dumped::Str(s))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Dumped, A::Error> {
        let mut out = String::from("[");
        let mut first = true;
        while let Some(v) = a.next_element_seed(Dumps)? {
            if !first {
                out.push_str(", ");
            }
            first = false;
            write_dumped(&v, &mut out);
        }
        out.push(']');
        Ok(Dumped::Json(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Dumped, A::Error> {
        let mut entries: Vec<(String, Dumped)> = Vec::new();
        while let Some(k) = m.next_key::<String>()? {
            let v = m.next_value_seed(Dumps)?;
            match entries.iter_mut().find(|(n, _)| *n == k) {
                Some(slot) => slot.1 = v,
                None => entries.push((k, v)),
            }
        }
        let mut out = String::from("{");
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_str(k, &mut out);
            out.push_str(": ");
            write_dumped(v, &mut out);
        }
        out.push('}');
        Ok(Dumped::Json(out))
    }
}

/// `json.dumps` of one value.
fn write_dumped(v: &Dumped, out: &mut String) {
    match v {
        Dumped::Null => out.push_str("null"),
        Dumped::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Dumped::Int(t) => out.push_str(t),
        Dumped::Float(f) => out.push_str(&float_repr(*f)),
        Dumped::Str(s) => write_str(s, out),
        Dumped::Json(t) => out.push_str(t),
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

    /// Rows hashed by fivetran-connector-sdk 3.0.0's tester (`fivetran debug`
    /// on a connector that upserted them into a table without a key).
    #[test]
    fn fivetran_ids_as_the_tester_computes_them() {
        assert_eq!(
            fivetran_id(r#"{"Name": "x", "n": 5, "f": 2.25, "none": null, "j": [1, "ü"]}"#)
                .unwrap(),
            "eCLeCLA8MeHpErrPu4u8HRAjKRE="
        );
    }

    #[test]
    fn reprs_like_python() {
        assert_eq!(repr_str("x"), "'x'");
        assert_eq!(repr_str("it's"), "\"it's\"");
        assert_eq!(repr_str("'\""), "'\\'\"'");
        assert_eq!(
            repr_str("a\tb\\c\u{7}é\u{a0}😀"),
            "'a\\tb\\\\c\\x07é\\xa0😀'"
        );
        assert_eq!(repr_str("\u{200b}\u{e000}"), "'\\u200b\\ue000'");
        assert_eq!(repr_float(f64::NAN), "nan");
        assert_eq!(repr_float(1e16), "1e+16");
    }
}
