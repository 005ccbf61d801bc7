//! A JSON page split into its envelope and its records in one pass.
//!
//! The page is walked once: at each level of the records' path the object's
//! fields are read, the one on the path is descended into, the others
//! (small: totals, cursors, next-page links) are parsed into values; the
//! records list yields each record's byte range, which the Arrow decoder
//! then reads. Records are only checked to be JSON here, by the
//! [`super::scan`] walk (no values built), never parsed.
//!
//! A page of the wrong shape is walked a second time, slowly, only to say
//! exactly what was expected where.

use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::scan::{Check, Scanner, Why, MAX_DEPTH};
use super::shape::{expect_object, json_kind};

/// A page split into what the API says around the records and the records.
#[derive(Debug)]
pub struct Envelope {
    /// Every field but the records, as values (`Null` when the body is the list).
    pub fields: Value,
    /// Each record's byte range in the page.
    pub ranges: Vec<Range<usize>>,
}

impl Envelope {
    /// The field at `path` (from the top of the answer).
    pub fn at(&self, path: &[String]) -> Option<&Value> {
        path.iter().try_fold(&self.fields, |cur, k| cur.get(k))
    }
}

/// Split `page` at the records list `path` (empty: the body is the list),
/// every record checked to be JSON.
pub fn split(page: &[u8], path: &[String]) -> Result<Envelope, String> {
    split_checking(page, path, Check::Full)
}

/// Split `page` as [`split`] does, but only find where each record (an
/// object or array) ends: for pages whose records all go to
/// [`super::BatchDecoder::decode`], whose walk of each record checks it
/// (a record that is not JSON is an error for the whole page there too).
/// The envelope is checked as in [`split`].
pub fn locate(page: &[u8], path: &[String]) -> Result<Envelope, String> {
    split_checking(page, path, Check::Bounds)
}

fn split_checking(page: &[u8], path: &[String], check: Check) -> Result<Envelope, String> {
    let text = std::str::from_utf8(page).map_err(|e| format!("the answer is not UTF-8: {e}"))?;
    if let Some(head) = path.first() {
        // Cheap, and names what the API sent when it is not an object at all.
        expect_object(text, &format!("{head:?} (records)"))?;
    }
    let mut s = Scanner::new(text);
    let walked = level(&mut s, text, path, 0, check).and_then(|(fields, ranges)| {
        s.end().map_err(|e| e.to_string())?;
        Ok(Envelope { fields, ranges })
    });
    walked.map_err(|e| {
        explain(text, path, "$")
            .err()
            .unwrap_or_else(|| format!("the answer is not valid JSON: {e}"))
    })
}

/// One level of the walk, `depth` containers deep: an object holding the
/// path's next field, or (at the end of the path) the records list. The
/// other fields are parsed into values; records are only walked past.
fn level(
    s: &mut Scanner<'_>,
    text: &str,
    path: &[String],
    depth: usize,
    check: Check,
) -> Result<(Value, Vec<Range<usize>>), String> {
    let Some((head, rest)) = path.split_first() else {
        let items = s.array_items(depth, check).map_err(|e| e.to_string())?;
        return Ok((Value::Null, items));
    };
    if s.ws() != Some(b'{') {
        return Err(format!("expected an object with {head:?}"));
    }
    if depth >= MAX_DEPTH {
        return Err(s.error(Why::Depth).to_string());
    }
    s.pos += 1;
    let mut fields = Map::new();
    let mut list = None;
    let mut more = s.ws() != Some(b'}');
    if !more {
        s.pos += 1;
    }
    while more {
        s.ws();
        let key_at = s.pos;
        let escaped = s.key().map_err(|e| e.to_string())?;
        let key = if escaped {
            serde_json::from_str::<String>(&text[key_at..s.pos]).map_err(|e| e.to_string())?
        } else {
            text[key_at + 1..s.pos - 1].to_string()
        };
        s.expect(b':', Why::Colon).map_err(|e| e.to_string())?;
        if key == *head {
            let (sub, l) = level(s, text, rest, depth + 1, check)?;
            list = Some(l);
            fields.insert(key, sub);
        } else {
            s.ws();
            let at = s.pos;
            s.skip_value(depth + 1).map_err(|e| e.to_string())?;
            let value = serde_json::from_str(&text[at..s.pos]).map_err(|e| e.to_string())?;
            fields.insert(key, value);
        }
        more = match s.ws() {
            Some(b',') => true,
            Some(b'}') => false,
            _ => return Err(s.error(Why::CommaOrBrace).to_string()),
        };
        s.pos += 1;
    }
    let list = list.ok_or_else(|| "no records list".to_string())?;
    Ok((Value::Object(fields), list))
}

/// Why `text` is not a page with records at `path`: the slow walk, run
/// only when the fast one failed.
fn explain(text: &str, path: &[String], at: &str) -> Result<(), String> {
    let Some((head, rest)) = path.split_first() else {
        return serde_json::from_str::<Vec<&RawValue>>(text)
            .map(drop)
            .map_err(|e| match json_kind(text) {
                "an array" => format!("the list of records at {at} is not valid JSON: {e}"),
                kind => format!("expected a list of records at {at}, got {kind}"),
            });
    };
    expect_object(text, &format!("{head:?} (records)")).map_err(|m| {
        if at == "$" {
            m
        } else {
            format!("{m} at {at}")
        }
    })?;
    let fields = serde_json::from_str::<BTreeMap<String, &RawValue>>(text)
        .map_err(|e| format!("the answer is not valid JSON: {e}"))?;
    for (k, v) in &fields {
        if k != head {
            serde_json::from_str::<Value>(v.get())
                .map_err(|e| format!("field {at}.{k} is not valid JSON: {e}"))?;
        }
    }
    let list = fields
        .get(head)
        .ok_or_else(|| format!("the answer has no {head:?} list at {at}"))?;
    explain(list.get(), rest, &format!("{at}.{head}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_at_a_nested_path() {
        let page = br#"{"a": {"items": [{"id": 1}, {"id": 2}], "total": 9}, "n": 2}"#;
        let p = split(page, &["a".into(), "items".into()]).unwrap();
        assert_eq!(&page[p.ranges[1].clone()], br#"{"id": 2}"#);
        assert_eq!(p.at(&["a".into(), "total".into()]), Some(&json!(9)));
        assert_eq!(p.fields["n"], json!(2));
        let e = split(page, &["b".into()]).err().unwrap();
        assert!(e.contains("no \"b\" list"), "{e}");
        let bare = split(br#" [{"id": 1}] "#, &[]).unwrap();
        assert_eq!((bare.fields, bare.ranges.len()), (Value::Null, 1));
    }

    #[test]
    fn a_page_of_the_wrong_shape_says_what_was_expected() {
        let data = ["data".to_string()];
        let e = split(b"[[]]", &data).err().unwrap();
        assert_eq!(
            e,
            "expected an object with \"data\" (records), got an array"
        );
        let e = split(br#"{"data": {"x": 1}}"#, &data).err().unwrap();
        assert_eq!(e, "expected a list of records at $.data, got an object");
        let e = split(br#"{"data": 5}"#, &[]).err().unwrap();
        assert!(e.contains("got an object"), "{e}");
        let e = split(br#"{"data": [], "next": }"#, &data).err().unwrap();
        assert!(e.contains("not valid JSON"), "{e}");
        let e = split(br#"{"data": [1] } x"#, &data).err().unwrap();
        assert!(e.contains("not valid JSON"), "{e}");
        // A record that is not Unicode is left to the decoder, which names its row.
        let p = split(br#"{"data": [{"id": 1}, {"id": 2, "s": "\ud800"}]}"#, &data).unwrap();
        assert_eq!(p.ranges.len(), 2);
    }
}
