use super::*;
use crate::schema::Column;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};

/// Userflow's users table plus a LONG column `n` (index 7) for numeric cases.
fn users_table(on_bad_row: OnBadRow) -> Arc<TableSchema> {
    let mut t = crate::connectors::userflow::users_table();
    t.columns.push(Column::new("n", ColumnType::Long));
    t.on_bad_row = on_bad_row;
    Arc::new(t)
}

fn ctx() -> PageContext {
    PageContext {
        first_row: 100,
        location: "http://x/users".into(),
        synced_at_micros: 7,
    }
}

const PAGE: &str = r#"{"data": [
  {"id": "u1", "attributes": {"email": "a@x.io", "name": "A\"da", "signed_up_at": "2023-04-11T09:12:44Z"},
   "created_at": "2023-04-11T09:12:45.381Z", "n": 5},
  {"id": "u2", "attributes": null, "created_at": "2023-04-11T09:12:45+0000", "n": "6"}
], "has_more": false}"#;

#[test]
fn decodes_nested_paths_raw_bytes_and_synced_at() {
    let d = BatchDecoder::new(users_table(OnBadRow::Fail));
    let records = split_array(PAGE.as_bytes(), Some("data")).unwrap();
    let out = d.decode(PAGE.as_bytes(), &records, &ctx()).unwrap();
    let b = out.batch;
    assert_eq!(b.num_rows(), 2);
    let email = b.column(1).as_string::<i32>();
    assert_eq!(email.value(0), "a@x.io");
    assert!(email.is_null(1));
    assert_eq!(b.column(2).as_string::<i32>().value(0), "A\"da");
    let created = b.column(3).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(created.value(0), 1_681_204_365_381_000);
    assert_eq!(created.value(1), 1_681_204_365_000_000);
    assert_eq!(b.column(7).as_primitive::<Int64Type>().value(1), 6);
    // raw is the record's own bytes, whitespace and all.
    let raw = b.column(5).as_string::<i32>();
    assert_eq!(
        raw.value(1),
        r#"{"id": "u2", "attributes": null, "created_at": "2023-04-11T09:12:45+0000", "n": "6"}"#
    );
    assert_eq!(
        b.column(6)
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        7
    );
}

#[test]
fn type_violation_names_table_column_row_and_value() {
    let page = r#"[{"id": "u1", "created_at": "2023-04-11T09:12:45Z"}, {"id": "u2", "created_at": "yesterday"}]"#;
    let d = BatchDecoder::new(users_table(OnBadRow::Fail));
    let records = split_array(page.as_bytes(), None).unwrap();
    let e = d.decode(page.as_bytes(), &records, &ctx()).unwrap_err();
    assert_eq!(e.table, "users");
    assert_eq!(e.column.as_deref(), Some("created_at"));
    assert_eq!(e.row, Some(101));
    assert_eq!(e.value.as_deref(), Some("\"yesterday\""));
    let msg = e.to_string();
    assert!(
        msg.contains("column created_at")
            && msg.contains("row 101")
            && msg.contains("UTC_DATETIME"),
        "{msg}"
    );
}

#[test]
fn missing_primary_key_is_an_error() {
    let page = r#"[{"created_at": "2023-04-11T09:12:45Z"}]"#;
    let d = BatchDecoder::new(users_table(OnBadRow::Fail));
    let records = split_array(page.as_bytes(), None).unwrap();
    let e = d.decode(page.as_bytes(), &records, &ctx()).unwrap_err();
    assert!(e.message.contains("primary key"), "{e}");
    assert_eq!(e.column.as_deref(), Some("id"));
}

#[test]
fn quarantine_sets_bad_rows_aside() {
    let page = r#"[{"id": "u1", "n": 1}, {"id": "u2", "n": "x"}, {"id": "u3", "n": 3}, 5]"#;
    let d = BatchDecoder::new(users_table(OnBadRow::Quarantine));
    let records = split_array(page.as_bytes(), None).unwrap();
    let out = d.decode(page.as_bytes(), &records, &ctx()).unwrap();
    assert_eq!(out.batch.num_rows(), 2);
    assert_eq!(out.rejects.len(), 2);
    assert_eq!(out.rejects[0].raw, r#"{"id": "u2", "n": "x"}"#);
    assert!(
        out.rejects[0].error.contains("column n"),
        "{}",
        out.rejects[0].error
    );
    assert!(out.rejects[1].error.contains("not a JSON object"));
}

#[test]
fn large_pages_decode_in_parallel_chunks_in_order() {
    let mut page = String::from("[");
    for i in 0..10_000 {
        if i > 0 {
            page.push(',');
        }
        page.push_str(&format!(r#"{{"id":"u{i}","n":{i}}}"#));
    }
    page.push(']');
    let d = BatchDecoder::new(users_table(OnBadRow::Fail));
    let records = split_array(page.as_bytes(), None).unwrap();
    let out = d.decode(page.as_bytes(), &records, &ctx()).unwrap();
    let n = out.batch.column(7).as_primitive::<Int64Type>();
    assert_eq!(n.len(), 10_000);
    assert!((0..10_000).all(|i| n.value(i) == i as i64));
}

#[test]
fn every_type_decodes() {
    let t = Arc::new(TableSchema::new(
        "all",
        &["id"],
        vec![
            Column::new("id", ColumnType::Long),
            Column::new("b", ColumnType::Boolean),
            Column::new("s", ColumnType::Short),
            Column::new("i", ColumnType::Int),
            Column::new(
                "dec",
                ColumnType::Decimal {
                    precision: 10,
                    scale: 2,
                },
            ),
            Column::new("f", ColumnType::Float),
            Column::new("d", ColumnType::Double),
            Column::new("nd", ColumnType::NaiveDate),
            Column::new("ndt", ColumnType::NaiveDatetime),
            Column::new("bin", ColumnType::Binary),
            Column::new("x", ColumnType::Xml),
            Column::new("j", ColumnType::Json),
        ],
    ));
    let page = r#"[{"id": 1, "b": true, "s": 7, "i": 70000, "dec": "12.345", "f": 1.5, "d": 2.25,
        "nd": "2024-01-02", "ndt": "2024-01-02T03:04:05.5", "bin": "aGk=", "x": "<a/>", "j": {"k": [1, 2]}}]"#;
    let d = BatchDecoder::new(t);
    let records = split_array(page.as_bytes(), None).unwrap();
    let b = d.decode(page.as_bytes(), &records, &ctx()).unwrap().batch;
    assert_eq!(
        b.column(4)
            .as_primitive::<arrow::datatypes::Decimal128Type>()
            .value(0),
        1235
    );
    assert_eq!(b.column(9).as_binary::<i32>().value(0), b"hi");
    assert_eq!(b.column(11).as_string::<i32>().value(0), r#"{"k": [1, 2]}"#);
    // A SHORT that overflows is a type error.
    let page = r#"[{"id": 1, "s": 70000}]"#;
    let records = split_array(page.as_bytes(), None).unwrap();
    assert!(d
        .decode(page.as_bytes(), &records, &ctx())
        .unwrap_err()
        .to_string()
        .contains("SHORT"));
}

#[test]
fn split_array_reports_malformed_pages() {
    assert!(split_array(b"{\"data\": [1,", Some("data"))
        .unwrap_err()
        .contains("JSON"));
    assert!(split_array(b"{\"other\": []}", Some("data"))
        .unwrap_err()
        .contains("\"data\""));
    assert_eq!(
        split_array(b"{\"data\": null}", Some("data"))
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn one_walk_reads_the_first_of_repeated_keys_and_unescapes_keys() {
    let page = r#"[
      {"id": "u1", "attributes": {"email": "a@x", "email": "b@x"}, "attributes": {"name": "late"}, "n": 1, "n": 2},
      {"id": "u2", "attributes": {"na\u006de": "N", "deep": [[{"email": "no"}]]}, "n": null}
    ]"#;
    let d = BatchDecoder::new(users_table(OnBadRow::Fail));
    let records = split_array(page.as_bytes(), None).unwrap();
    let b = d.decode(page.as_bytes(), &records, &ctx()).unwrap().batch;
    let email = b.column(1).as_string::<i32>();
    assert_eq!(email.value(0), "a@x");
    assert!(email.is_null(1), "a path is read only where it leads");
    let name = b.column(2).as_string::<i32>();
    assert!(name.is_null(0), "the second `attributes` is not read");
    assert_eq!(name.value(1), "N");
    let n = b.column(7).as_primitive::<Int64Type>();
    assert_eq!((n.value(0), n.is_null(1)), (1, true));
}

#[test]
fn records_that_are_not_json_fail_the_page_naming_their_row() {
    // Ranges handed over by a connector are walked again, not trusted; a
    // record that is not JSON is a broken page even where bad rows are
    // quarantined (a record that is JSON but no object is a bad row).
    let page = r#"{"id": "u1"} {"id": "u2",} {"id": "u3"} x"#;
    let d = BatchDecoder::new(users_table(OnBadRow::Quarantine));
    for (records, row, why) in [
        (vec![0..12, 13..26, 27..39], 101, "expected a string key"),
        (vec![0..12, 27..39, 40..41], 102, "expected a value"),
    ] {
        let e = d.decode(page.as_bytes(), &records, &ctx()).unwrap_err();
        assert_eq!(e.row, Some(row));
        assert_eq!(e.location.as_deref(), Some("http://x/users"));
        assert!(
            e.message.contains("record is not valid JSON") && e.message.contains(why),
            "{e}"
        );
    }
    let bad_key = r#"[{"id": "u1", "\ud800": 1}]"#;
    let records = split_array(bad_key.as_bytes(), None).unwrap();
    let out = d.decode(bad_key.as_bytes(), &records, &ctx()).unwrap();
    assert_eq!((out.batch.num_rows(), out.rejects.len()), (0, 1));
}

#[test]
fn located_records_are_those_split_finds() {
    let data = ["data".to_string()];
    let page = r#"{"data": [{"id": "a\"]}", "n": [1, {"x": "}"}]}, 7, "s", {}, [[]], {"q": "\\"}], "has_more": true}"#;
    let split = envelope::split(page.as_bytes(), &data).unwrap();
    let located = envelope::locate(page.as_bytes(), &data).unwrap();
    assert_eq!(split.ranges, located.ranges);
    assert_eq!(split.fields, located.fields);
    assert_eq!(split.ranges.len(), 6);
    // A record only located is checked by the decoder.
    let broken = r#"{"data": [{"id": "u1", "n": tru}], "has_more": false}"#;
    assert!(envelope::split(broken.as_bytes(), &data).is_err());
    let ranges = envelope::locate(broken.as_bytes(), &data).unwrap().ranges;
    let d = BatchDecoder::new(users_table(OnBadRow::Quarantine));
    assert!(d.decode(broken.as_bytes(), &ranges, &ctx()).is_err());
}

#[test]
fn nesting_is_bounded_in_pages_and_records() {
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let page = format!(r#"{{"data": [{{"id": "u1", "x": {}}}]}}"#, deep(125));
    assert_eq!(split_array(page.as_bytes(), Some("data")).unwrap().len(), 1);
    let page = format!(r#"{{"data": [{{"id": "u1", "x": {}}}]}}"#, deep(126));
    let e = split_array(page.as_bytes(), Some("data")).unwrap_err();
    assert!(e.contains("nesting deeper than 128 levels"), "{e}");
    let e = envelope::split(page.as_bytes(), &["data".to_string()]).unwrap_err();
    assert!(e.contains("nesting deeper than 128 levels"), "{e}");
}
