//! Pages and page URLs: splitting an answer into its envelope and its
//! records (checked for the shape the spec expects), the `Link` header's next
//! URL, and query parameters set on a URL.

use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::{Map, Value};
use url::Url;

use crate::batch::range_in;

/// `url` with `k` set to `v` (replacing it if present).
pub(super) fn with_param(url: &Url, k: &str, v: &str) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(pk, _)| pk != k)
        .map(|(a, b)| (a.into_owned(), b.into_owned()))
        .collect();
    let mut u = url.clone();
    {
        let mut q = u.query_pairs_mut();
        q.clear();
        for (a, b) in &pairs {
            q.append_pair(a, b);
        }
        q.append_pair(k, v);
    }
    u
}

/// `first` with its query replaced by `param=token` alone (a scroll request).
pub(super) fn token_only(first: &Url, param: &str, token: &str) -> Url {
    let mut u = first.clone();
    u.set_query(None);
    u.query_pairs_mut().append_pair(param, token);
    u
}

/// The `rel="next"` target of a `Link` header.
pub(super) fn link_next(headers: &reqwest::header::HeaderMap) -> Option<String> {
    for h in headers.get_all(reqwest::header::LINK) {
        let Ok(h) = h.to_str() else { continue };
        for part in h.split(',') {
            let mut bits = part.split(';');
            let target = bits.next()?.trim();
            if bits.any(|b| {
                let b = b.trim().replace(' ', "");
                b == "rel=\"next\"" || b == "rel=next"
            }) {
                return Some(
                    target
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string(),
                );
            }
        }
    }
    None
}

/// A page split into what the API says around the records and the records.
pub(super) struct SplitPage {
    /// Every field but the records, as values (`Null` when the body is the list).
    pub envelope: Value,
    /// Each record's byte range in the page.
    pub ranges: Vec<Range<usize>>,
    /// Each record as a value; `Null` for one that is not valid JSON text
    /// (a lone surrogate escape, say), which the decoder then reports by row.
    pub records: Vec<Value>,
}

/// Split `page` at the records list `path` (empty: the body is the list).
/// The records are parsed one by one, so one bad record is an error naming
/// its row (or a quarantined row), not an unreadable page.
pub(super) fn split_page(page: &[u8], path: &[String]) -> std::result::Result<SplitPage, String> {
    use serde_json::value::RawValue;
    let text = std::str::from_utf8(page).map_err(|e| format!("the answer is not UTF-8: {e}"))?;
    fn walk<'p>(
        text: &'p str,
        path: &[String],
        at: &str,
    ) -> std::result::Result<(Value, Vec<&'p RawValue>), String> {
        let Some((head, rest)) = path.split_first() else {
            let list: Vec<&'p RawValue> = serde_json::from_str(text).map_err(|e| {
                match crate::batch::shape::json_kind(text) {
                    "an array" => format!("the list of records at {at} is not valid JSON: {e}"),
                    kind => format!("expected a list of records at {at}, got {kind}"),
                }
            })?;
            return Ok((Value::Null, list));
        };
        crate::batch::shape::expect_object(text, &format!("{head:?} (records)")).map_err(|m| {
            if at == "$" {
                m
            } else {
                format!("{m} at {at}")
            }
        })?;
        let fields: Vec<(String, &'p RawValue)> =
            serde_json::from_str::<BTreeMap<String, &'p RawValue>>(text)
                .map_err(|e| format!("the answer is not valid JSON: {e}"))?
                .into_iter()
                .collect();
        let mut env = Map::new();
        let mut list = None;
        for (k, v) in fields {
            if &k == head {
                let (sub, l) = walk(v.get(), rest, &format!("{at}.{k}"))?;
                list = Some(l);
                env.insert(k, sub);
            } else {
                let parsed = serde_json::from_str(v.get())
                    .map_err(|e| format!("field {at}.{k} is not valid JSON: {e}"))?;
                env.insert(k, parsed);
            }
        }
        let list = list.ok_or_else(|| format!("the answer has no {head:?} list at {at}"))?;
        Ok((Value::Object(env), list))
    }
    let (envelope, list) = walk(text, path, "$")?;
    Ok(SplitPage {
        envelope,
        ranges: list.iter().map(|v| range_in(page, v)).collect(),
        records: list
            .iter()
            .map(|v| serde_json::from_str(v.get()).unwrap_or(Value::Null))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::at;
    use super::*;
    use serde_json::json;

    #[test]
    fn link_header_next() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            r#"<https://x/api?page=1>; rel="prev", <https://x/api?page=3>; rel="next""#
                .parse()
                .unwrap(),
        );
        assert_eq!(link_next(&h).as_deref(), Some("https://x/api?page=3"));
    }

    #[test]
    fn records_at_a_nested_path() {
        let page = br#"{"a": {"items": [{"id": 1}, {"id": 2}], "total": 9}, "n": 2}"#;
        let p = split_page(page, &["a".into(), "items".into()]).unwrap();
        assert_eq!(&page[p.ranges[1].clone()], br#"{"id": 2}"#);
        assert_eq!(p.records[0], json!({"id": 1}));
        assert_eq!(
            at(&p.envelope, &["a".into(), "total".into()]),
            Some(&json!(9))
        );
        assert_eq!(p.envelope["n"], json!(2));
        let e = split_page(page, &["b".into()]).err().unwrap();
        assert!(e.contains("no \"b\" list"), "{e}");
    }

    #[test]
    fn a_page_of_the_wrong_shape_says_what_was_expected() {
        let data = ["data".to_string()];
        let e = split_page(b"[[]]", &data).err().unwrap();
        assert_eq!(
            e,
            "expected an object with \"data\" (records), got an array"
        );
        let e = split_page(br#"{"data": {"x": 1}}"#, &data).err().unwrap();
        assert_eq!(e, "expected a list of records at $.data, got an object");
        let e = split_page(br#"{"data": 5}"#, &[]).err().unwrap();
        assert!(e.contains("got an object"), "{e}");
        // A record that is not Unicode is left to the decoder, which names its row.
        let p = split_page(br#"{"data": [{"id": 1}, {"id": 2, "s": "\ud800"}]}"#, &data).unwrap();
        assert_eq!(p.records[1], Value::Null);
        assert_eq!(p.ranges.len(), 2);
    }
}
