//! What the decode benches share: a page of Userflow users, its NDJSON
//! form, and arrow-json's decode of it (the baseline etl's decoder is
//! measured against).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;

/// `n` users shaped like the playground's, as one list page.
pub fn page(n: usize) -> String {
    let mock = etl::playground::userflow::UserflowMock::generate(n, 7);
    let data: Vec<_> = mock.users().iter().map(|u| u.to_json()).collect();
    serde_json::json!({"object": "list", "data": data, "has_more": false, "url": "/users", "next_page_url": null}).to_string()
}

/// The page's users as NDJSON, one per line.
pub fn ndjson(page: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(page).unwrap();
    let mut out = String::new();
    for u in v["data"].as_array().unwrap() {
        out.push_str(&u.to_string());
        out.push('\n');
    }
    out
}

/// What arrow-json reads of a user: the columns etl extracts (nested ones
/// through the `attributes` struct), other fields skipped.
pub fn arrow_json_schema() -> SchemaRef {
    use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new(
            "attributes",
            DataType::Struct(Fields::from(vec![
                Field::new("email", DataType::Utf8, true),
                Field::new("name", DataType::Utf8, true),
                Field::new("signed_up_at", ts(), true),
            ])),
            true,
        ),
        Field::new("created_at", ts(), true),
    ]))
}

/// arrow-json's `Decoder` over `ndjson` (`rows` users) into one batch: its rows.
pub fn arrow_json_decode(schema: &SchemaRef, ndjson: &str, rows: usize) -> usize {
    let mut d = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows)
        .build_decoder()
        .unwrap();
    let mut buf = ndjson.as_bytes();
    while !buf.is_empty() {
        let n = d.decode(buf).unwrap();
        assert!(n > 0, "arrow-json made no progress");
        buf = &buf[n..];
    }
    let batch = d.flush().unwrap().unwrap();
    assert_eq!(batch.num_rows(), rows);
    batch.num_rows()
}
