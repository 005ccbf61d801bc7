//! The destination conformance suite (STYLE habit 10): the same tests run
//! against DuckDB and Parquet — same key twice → one row, partial update,
//! soft delete, truncate, new column, rejects in the same commit, rollback and
//! crash to the last commit, a failed write leaving the destination as it was,
//! rows changing partition, and every Fivetran type read back with DuckDB.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use etl::decode::Reject;
use etl::schema::{Column, ColumnType, PartitionTransform, Partitioning, TableSchema, UTC};
use etl::state::State;

use crate::dests::{for_both_destinations, AnyDest, Kind};

fn table() -> Arc<TableSchema> {
    Arc::new(TableSchema::new(
        "three",
        &["id"],
        vec![
            Column::new("id", ColumnType::String),
            Column::new("val1", ColumnType::String),
            Column::new("val2", ColumnType::Long),
        ],
    ))
}

fn rows(t: &TableSchema, ids: &[&str], v1: &[&str], v2: &[i64]) -> RecordBatch {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids.to_vec())),
        Arc::new(StringArray::from(v1.to_vec())),
        Arc::new(Int64Array::from(v2.to_vec())),
    ];
    RecordBatch::try_new(t.arrow_schema(), cols).unwrap()
}

fn keys(t: &TableSchema, ids: &[&str]) -> RecordBatch {
    RecordBatch::try_new(
        t.arrow_schema_of(&["id"]).unwrap(),
        vec![Arc::new(StringArray::from(ids.to_vec())) as ArrayRef],
    )
    .unwrap()
}

/// A destination whose table `three` holds one committed row (a, x, 1).
fn seeded(kind: Kind, path: &std::path::Path, t: &Arc<TableSchema>) -> AnyDest {
    let mut d = kind.open(path);
    d.prepare(std::slice::from_ref(t)).unwrap();
    d.upsert(t, rows(t, &["a"], &["x"], &[1])).unwrap();
    d.commit("c", &state(1)).unwrap();
    d
}

fn state(n: u64) -> State {
    let mut s = State::default();
    s.streams
        .insert("three".into(), serde_json::json!({"n": n}));
    s
}

for_both_destinations!(
    sdk_three_operations_example,
    rollback_and_crash_return_to_the_last_commit_data_and_state,
    a_new_declared_column_evolves_the_table,
    rejects_land_in_the_same_commit,
    declared_tables_exist_after_a_commit_that_follows_a_rollback,
    a_failed_write_leaves_the_destination_as_it_was,
    a_row_that_changes_partition_keeps_one_copy,
    every_fivetran_type_reads_back_with_its_type,
    rows_upserted_unchanged_are_spared_by_the_sweep_and_seen_entries_stay_bounded,
    a_counted_sweep_deletes_what_was_counted_and_looks_again_after_other_commits,
);

fn sdk_three_operations_example(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let mut d = kind.open(&kind.path(dir.path()));
    let t = table();
    d.prepare(std::slice::from_ref(&t)).unwrap();
    d.upsert(&t, rows(&t, &["a", "b", "c"], &["a", "b", "c"], &[0, 1, 2]))
        .unwrap();
    // Same key twice within one commit: the last version wins, one row.
    d.upsert(&t, rows(&t, &["a"], &["a2"], &[10])).unwrap();
    d.update(
        &t,
        RecordBatch::try_new(
            t.arrow_schema_of(&["id", "val1"]).unwrap(),
            vec![
                Arc::new(StringArray::from(vec!["b"])) as ArrayRef,
                Arc::new(StringArray::from(vec!["abc"])) as ArrayRef,
            ],
        )
        .unwrap(),
    )
    .unwrap();
    d.delete(&t, keys(&t, &["c", "zz"])).unwrap();
    let w = d.commit("sdk", &state(1)).unwrap();
    assert_eq!(w.tables["three"].inserted, 3);
    assert_eq!(w.tables["three"].updated, 1, "the partial update");
    assert_eq!(
        w.tables["three"].deleted, 1,
        "an unknown key deletes nothing"
    );
    assert_eq!(
        d.grid("SELECT id, val1, val2, _etl_deleted FROM three"),
        vec![
            "Text(\"a\")|Text(\"a2\")|BigInt(10)|Boolean(false)",
            "Text(\"b\")|Text(\"abc\")|BigInt(1)|Boolean(false)",
            "Text(\"c\")|Text(\"c\")|BigInt(2)|Boolean(true)",
        ]
    );
    assert_eq!(d.load_state("sdk").unwrap().unwrap(), state(1));

    // An upsert of a deleted key revives it; truncate soft-deletes everything.
    d.upsert(&t, rows(&t, &["c"], &["c2"], &[3])).unwrap();
    let w = d.commit("sdk", &state(2)).unwrap();
    assert_eq!(w.tables["three"].updated, 1);
    d.truncate(&t).unwrap();
    let w = d.commit("sdk", &state(3)).unwrap();
    assert_eq!(w.tables["three"].deleted, 3);
    assert_eq!(
        d.grid("SELECT count(*), count(DISTINCT id) FROM three WHERE _etl_deleted"),
        vec!["BigInt(3)|BigInt(3)"]
    );
    // Rows upserted after a truncate in the same commit stay live.
    d.truncate(&t).unwrap();
    d.upsert(&t, rows(&t, &["d"], &["d"], &[4])).unwrap();
    d.commit("sdk", &state(4)).unwrap();
    assert_eq!(
        d.grid("SELECT id FROM three WHERE NOT _etl_deleted"),
        vec!["Text(\"d\")"]
    );
}

fn rollback_and_crash_return_to_the_last_commit_data_and_state(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let path = kind.path(dir.path());
    let t = table();
    {
        let mut d = seeded(kind, &path, &t);
        d.upsert(&t, rows(&t, &["a", "b"], &["y", "y"], &[2, 2]))
            .unwrap();
        d.truncate(&t).unwrap();
        d.rollback().unwrap();
        assert_eq!(
            d.grid("SELECT id, val1, _etl_deleted FROM three"),
            vec!["Text(\"a\")|Text(\"x\")|Boolean(false)"]
        );
        // Uncommitted work at drop (a crash) is discarded too.
        d.upsert(&t, rows(&t, &["q"], &["q"], &[9])).unwrap();
        d.delete(&t, keys(&t, &["a"])).unwrap();
    }
    let mut d = kind.open(&path);
    assert_eq!(
        d.grid("SELECT id, val1, _etl_deleted FROM three"),
        vec!["Text(\"a\")|Text(\"x\")|Boolean(false)"]
    );
    assert_eq!(d.load_state("c").unwrap().unwrap(), state(1));
    assert!(d.load_state("other").unwrap().is_none());
}

fn a_new_declared_column_evolves_the_table(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let path = kind.path(dir.path());
    let t = table();
    drop(seeded(kind, &path, &t));

    let mut t2 = (*t).clone();
    t2.columns.push(Column::new(
        "score",
        ColumnType::Decimal {
            precision: 10,
            scale: 2,
        },
    ));
    let t2 = Arc::new(t2);
    let mut d = kind.open(&path);
    d.prepare(std::slice::from_ref(&t2)).unwrap();
    let decoder = etl::decode::BatchDecoder::new(t2.clone());
    let page = br#"[{"id": "b", "val1": "y", "val2": 2, "score": "12.5"}]"#;
    let ranges = etl::decode::split_array(page, None).unwrap();
    let ctx = etl::decode::PageContext {
        first_row: 0,
        location: "t".into(),
        synced_at_micros: 0,
    };
    d.upsert(&t2, decoder.decode(page, &ranges, &ctx).unwrap().batch)
        .unwrap();
    d.commit("c", &state(2)).unwrap();
    assert_eq!(
        d.grid("SELECT id, CAST(score AS VARCHAR) FROM three"),
        vec!["Text(\"a\")|Null", "Text(\"b\")|Text(\"12.50\")"]
    );
}

fn rejects_land_in_the_same_commit(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let t = table();
    let mut d = kind.open(&kind.path(dir.path()));
    d.prepare(std::slice::from_ref(&t)).unwrap();
    let rej = Reject {
        table: "three".into(),
        raw: r#"{"id": "x", "val2": "NaN?"}"#.into(),
        error: "column val2: bad".into(),
    };
    d.reject(std::slice::from_ref(&rej)).unwrap();
    d.rollback().unwrap();
    d.reject(&[rej]).unwrap();
    let w = d.commit("c", &state(1)).unwrap();
    assert_eq!(w.rejected, 1);
    assert_eq!(
        d.grid("SELECT table_name, raw, error, rejected_at IS NOT NULL FROM _etl_rejects"),
        vec!["Text(\"three\")|Text(\"{\\\"id\\\": \\\"x\\\", \\\"val2\\\": \\\"NaN?\\\"}\")|Text(\"column val2: bad\")|Boolean(true)"]
    );
}

fn declared_tables_exist_after_a_commit_that_follows_a_rollback(kind: Kind) {
    // Found by the model check: rollback also undid the CREATE TABLE of prepare().
    let dir = tempfile::tempdir().unwrap();
    let t = table();
    let mut d = kind.open(&kind.path(dir.path()));
    d.prepare(std::slice::from_ref(&t)).unwrap();
    d.rollback().unwrap();
    d.commit("c", &state(1)).unwrap();
    assert_eq!(
        d.grid("SELECT count(*), max(val2) FROM three"),
        vec!["BigInt(0)|Null"]
    );
}

fn a_failed_write_leaves_the_destination_as_it_was(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let path = kind.path(dir.path());
    let t = table();
    let mut d = seeded(kind, &path, &t);
    // A batch whose key column holds a null (a connector bug) fails the commit.
    let loose = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("val1", DataType::Utf8, true),
        Field::new("val2", DataType::Int64, true),
    ]));
    let bad = RecordBatch::try_new(
        loose,
        vec![
            Arc::new(StringArray::from(vec![Some("b"), None])) as ArrayRef,
            Arc::new(StringArray::from(vec!["y", "y"])),
            Arc::new(Int64Array::from(vec![2, 2])),
        ],
    )
    .unwrap();
    d.upsert(&t, rows(&t, &["a"], &["changed"], &[5])).unwrap();
    let e = match d.upsert(&t, bad) {
        Err(e) => e,
        Ok(()) => d.commit("c", &state(2)).expect_err("a null key is refused"),
    }
    .to_string();
    assert!(e.contains("three") && e.contains("id"), "{e}");
    d.rollback().unwrap();
    let committed = vec!["Text(\"a\")|Text(\"x\")|BigInt(1)|Boolean(false)"];
    let sql = "SELECT id, val1, val2, _etl_deleted FROM three";
    assert_eq!(d.grid(sql), committed);
    drop(d);
    let mut d = kind.open(&path);
    assert_eq!(d.grid(sql), committed);
    assert_eq!(d.load_state("c").unwrap().unwrap(), state(1));
    // And it still takes good writes.
    d.prepare(std::slice::from_ref(&t)).unwrap();
    d.upsert(&t, rows(&t, &["b"], &["y"], &[2])).unwrap();
    d.commit("c", &state(2)).unwrap();
    assert_eq!(d.grid("SELECT count(*) FROM three"), vec!["BigInt(2)"]);
}

/// Events partitioned by the UTC day of `at` (and, in Parquet, laid out so).
fn events(spec: Partitioning) -> Arc<TableSchema> {
    Arc::new(
        TableSchema::new(
            "events",
            &["id"],
            vec![
                Column::new("id", ColumnType::Long),
                Column::new("ts", ColumnType::UtcDatetime),
                Column::new("region", ColumnType::String),
            ],
        )
        .partitioned_by(spec),
    )
}

fn event_rows(t: &TableSchema, rows: &[(i64, Option<i64>, Option<&str>)]) -> RecordBatch {
    let day = 86_400_000_000i64;
    RecordBatch::try_new(
        t.arrow_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
            Arc::new(
                TimestampMicrosecondArray::from(
                    rows.iter()
                        .map(|r| r.1.map(|d| d * day + 3_600_000_000))
                        .collect::<Vec<_>>(),
                )
                .with_timezone(UTC),
            ),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

fn a_row_that_changes_partition_keeps_one_copy(kind: Kind) {
    for spec in [
        Partitioning {
            column: "ts".into(),
            transform: PartitionTransform::Day,
        },
        Partitioning {
            column: "region".into(),
            transform: PartitionTransform::Identity,
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = kind.path(dir.path());
        let t = events(spec.clone());
        let mut d = kind.open(&path);
        d.prepare(std::slice::from_ref(&t)).unwrap();
        d.upsert(
            &t,
            event_rows(
                &t,
                &[
                    (1, Some(0), Some("eu")),
                    (2, Some(0), Some("us/east")),
                    (3, Some(1), Some("eu")),
                    (4, None, None),
                ],
            ),
        )
        .unwrap();
        d.commit("c", &state(1)).unwrap();
        // 1 moves to another day and region; 4 leaves the null partition; 5 is new.
        d.upsert(
            &t,
            event_rows(
                &t,
                &[
                    (1, Some(2), Some("us/east")),
                    (4, Some(1), Some("eu")),
                    (5, Some(2), Some("ap")),
                ],
            ),
        )
        .unwrap();
        d.delete(
            &t,
            RecordBatch::try_new(
                t.arrow_schema_of(&["id"]).unwrap(),
                vec![Arc::new(Int64Array::from(vec![3])) as ArrayRef],
            )
            .unwrap(),
        )
        .unwrap();
        d.commit("c", &state(2)).unwrap();
        assert_eq!(
            d.grid("SELECT id, CAST(ts AS VARCHAR), region, _etl_deleted FROM events"),
            vec![
                "BigInt(1)|Text(\"1970-01-03 01:00:00+00\")|Text(\"us/east\")|Boolean(false)",
                "BigInt(2)|Text(\"1970-01-01 01:00:00+00\")|Text(\"us/east\")|Boolean(false)",
                "BigInt(3)|Text(\"1970-01-02 01:00:00+00\")|Text(\"eu\")|Boolean(true)",
                "BigInt(4)|Text(\"1970-01-02 01:00:00+00\")|Text(\"eu\")|Boolean(false)",
                "BigInt(5)|Text(\"1970-01-03 01:00:00+00\")|Text(\"ap\")|Boolean(false)",
            ],
            "{spec}"
        );
        if kind != Kind::DuckDb {
            let mut files = d.parquet().files("events");
            files.sort();
            let dirs: std::collections::BTreeSet<&str> = files
                .iter()
                .map(|f| f.rsplit_once('/').unwrap().0)
                .collect();
            let want: Vec<&str> = if spec.transform == PartitionTransform::Day {
                vec![
                    "ts_day=1970-01-01",
                    "ts_day=1970-01-02",
                    "ts_day=1970-01-03",
                ]
            } else {
                vec![
                    "region_value=ap",
                    "region_value=eu",
                    "region_value=us%2Feast",
                ]
            };
            assert_eq!(dirs.into_iter().collect::<Vec<_>>(), want, "{files:?}");
        }
    }
}

fn every_fivetran_type_reads_back_with_its_type(kind: Kind) {
    let types = [
        ("b", "BOOLEAN"),
        ("s", "SHORT"),
        ("i", "INT"),
        ("l", "LONG"),
        ("dec", "DECIMAL(12,3)"),
        ("f", "FLOAT"),
        ("d", "DOUBLE"),
        ("nd", "NAIVE_DATE"),
        ("ndt", "NAIVE_DATETIME"),
        ("utc", "UTC_DATETIME"),
        ("bin", "BINARY"),
        ("x", "XML"),
        ("str", "STRING"),
        ("j", "JSON"),
    ];
    let mut cols = vec![Column::new("id", ColumnType::Long)];
    cols.extend(
        types
            .iter()
            .map(|(n, ty)| Column::new(n, ColumnType::parse(ty).unwrap())),
    );
    let t = Arc::new(TableSchema::new("typed", &["id"], cols));
    let page = r#"[
        {"id": 1, "b": true, "s": -7, "i": 70000, "l": 9007199254740993, "dec": "12345.678",
         "f": 1.5, "d": 2.25, "nd": "2024-02-29", "ndt": "2024-02-29T23:59:59.123456",
         "utc": "2024-02-29T23:59:59.5+02:00", "bin": "aGk=", "x": "<a>1</a>",
         "str": "é \" \\ 😀", "j": {"k": [1, null, "two"]}},
        {"id": 2}
    ]"#
    .as_bytes();
    let decoder = etl::decode::BatchDecoder::new(t.clone());
    let ranges = etl::decode::split_array(page, None).unwrap();
    let ctx = etl::decode::PageContext {
        first_row: 0,
        location: "t".into(),
        synced_at_micros: 0,
    };
    let batch = decoder.decode(page, &ranges, &ctx).unwrap().batch;
    let dir = tempfile::tempdir().unwrap();
    let mut d = kind.open(&kind.path(dir.path()));
    d.prepare(std::slice::from_ref(&t)).unwrap();
    d.upsert(&t, batch).unwrap();
    d.commit("c", &state(1)).unwrap();
    let names: Vec<&str> = types.iter().map(|(n, _)| *n).collect();
    let typeofs: Vec<String> = names.iter().map(|n| format!("typeof({n})")).collect();
    // Delta has no JSON type: JSON lands as its text.
    let json = if kind == Kind::Delta {
        "VARCHAR"
    } else {
        "JSON"
    };
    assert_eq!(
        d.grid(&format!("SELECT {} FROM typed LIMIT 1", typeofs.join(", "))),
        vec![format!("Text(\"BOOLEAN\")|Text(\"SMALLINT\")|Text(\"INTEGER\")|Text(\"BIGINT\")|Text(\"DECIMAL(12,3)\")|\
              Text(\"FLOAT\")|Text(\"DOUBLE\")|Text(\"DATE\")|Text(\"TIMESTAMP\")|Text(\"TIMESTAMP WITH TIME ZONE\")|\
              Text(\"BLOB\")|Text(\"VARCHAR\")|Text(\"VARCHAR\")|Text(\"{json}\")")]
    );
    let texts: Vec<String> = names
        .iter()
        .map(|n| format!("CAST({n} AS VARCHAR)"))
        .collect();
    assert_eq!(
        d.grid(&format!("SELECT id, {} FROM typed", texts.join(", "))),
        vec![
            "BigInt(1)|Text(\"true\")|Text(\"-7\")|Text(\"70000\")|Text(\"9007199254740993\")|Text(\"12345.678\")|\
             Text(\"1.5\")|Text(\"2.25\")|Text(\"2024-02-29\")|Text(\"2024-02-29 23:59:59.123456\")|\
             Text(\"2024-02-29 21:59:59.5+00\")|Text(\"hi\")|Text(\"<a>1</a>\")|Text(\"é \\\" \\\\ 😀\")|\
             Text(\"{\\\"k\\\": [1, null, \\\"two\\\"]}\")"
                .to_string(),
            "BigInt(2)|Null|Null|Null|Null|Null|Null|Null|Null|Null|Null|Null|Null|Null|Null".to_string(),
        ]
    );
    let _ = TimeUnit::Microsecond;
}

/// Rows upserted as they are write nothing and keep their sync time; the
/// sweep of unseen rows spares the ones seen since its cut-off, then forgets
/// the table's seen entries; a table never swept holds a bounded number.
fn rows_upserted_unchanged_are_spared_by_the_sweep_and_seen_entries_stay_bounded(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let t = Arc::new(TableSchema::new(
        "seen_t",
        &["id"],
        vec![
            Column::new("id", ColumnType::String),
            Column::new("v", ColumnType::Long),
            Column::synced_at("_synced_at"),
        ],
    ));
    let n = 1_500usize;
    let batch = |ids: std::ops::Range<usize>, at: i64| {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                ids.clone().map(|i| format!("k{i}")),
            )),
            Arc::new(Int64Array::from_iter_values(ids.clone().map(|i| i as i64))),
            Arc::new(TimestampMicrosecondArray::from(vec![at; ids.len()]).with_timezone(UTC)),
        ];
        RecordBatch::try_new(t.arrow_schema(), cols).unwrap()
    };
    let mut d = kind.open(&kind.path(dir.path()));
    d.prepare(std::slice::from_ref(&t)).unwrap();
    d.upsert(&t, batch(0..n, 1_000)).unwrap();
    assert_eq!(
        d.commit("c", &state(1)).unwrap().tables["seen_t"].inserted,
        n as u64
    );
    let seen = |d: &AnyDest| {
        d.read(|c| {
            let has = c
                .query_row(
                    "SELECT count(*) FROM information_schema.tables WHERE table_name = '_etl_seen'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap();
            match has {
                0 => 0,
                _ => c
                    .query_row(
                        "SELECT count(*) FROM _etl_seen WHERE table_name = 'seen_t'",
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                    .unwrap(),
            }
        })
    };
    // Five rescans with nothing changed, never swept (a cursor's lookback).
    for i in 1..=5 {
        d.upsert(&t, batch(0..n, 1_000 + i)).unwrap();
        let c = d.commit("c", &state(1 + i as u64)).unwrap().tables["seen_t"];
        assert_eq!(
            (c.inserted, c.updated, c.unchanged),
            (0, 0, n as u64),
            "{kind:?} rescan {i}"
        );
        let held = seen(&d);
        assert!(
            (n as i64..=2 * n as i64).contains(&held),
            "{kind:?} rescan {i}: {held} seen entries"
        );
    }
    let stamps = d.grid("SELECT DISTINCT epoch_us(_synced_at) FROM seen_t");
    assert_eq!(stamps, ["BigInt(1000)"], "no row was rewritten");
    // A scan from 2_000 that saw all but k0 (unchanged), and changed k1.
    let mut b = batch(1..n, 2_000);
    b = {
        let mut cols = b.columns().to_vec();
        let v: Vec<i64> = (1..n as i64).map(|i| if i == 1 { -1 } else { i }).collect();
        cols[1] = Arc::new(Int64Array::from(v));
        RecordBatch::try_new(b.schema(), cols).unwrap()
    };
    d.upsert(&t, b).unwrap();
    d.delete_older_than(&t, "_synced_at", 2_000).unwrap();
    let c = d.commit("c", &state(9)).unwrap().tables["seen_t"];
    assert_eq!(
        (c.inserted, c.updated, c.deleted, c.unchanged),
        (0, 1, 1, n as u64 - 2),
        "{kind:?}"
    );
    assert_eq!(
        d.grid(&format!("SELECT id FROM seen_t WHERE {}", "_etl_deleted")),
        ["Text(\"k0\")"]
    );
    assert_eq!(seen(&d), 0, "the sweep used the table's seen entries up");
}

/// A scan seen unchanged over several commits, counted, then swept: the
/// count and the sweep agree on the one unseen row. Counted, then changed by
/// another commit (which sees the unseen row after all) before the sweep:
/// the sweep does not trust the old count, and deletes nothing.
fn a_counted_sweep_deletes_what_was_counted_and_looks_again_after_other_commits(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let t = Arc::new(TableSchema::new(
        "counted_t",
        &["id"],
        vec![
            Column::new("id", ColumnType::String),
            Column::new("v", ColumnType::Long),
            Column::synced_at("_synced_at"),
        ],
    ));
    let n = 3_000usize;
    let batch = |ids: &[usize], v: i64, at: i64| {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("k{i}")),
            )),
            Arc::new(Int64Array::from_iter_values(
                ids.iter().map(|&i| i as i64 + v),
            )),
            Arc::new(TimestampMicrosecondArray::from(vec![at; ids.len()]).with_timezone(UTC)),
        ];
        RecordBatch::try_new(t.arrow_schema(), cols).unwrap()
    };
    let all: Vec<usize> = (0..n).collect();
    let mut d = kind.open(&kind.path(dir.path()));
    d.prepare(std::slice::from_ref(&t)).unwrap();
    d.upsert(&t, batch(&all, 0, 1_000)).unwrap();
    d.commit("c", &state(1)).unwrap();
    // A scan from 2_000 in three commits, seeing all but k7, unchanged.
    for (i, part) in all.chunks(1_000).enumerate() {
        let seen: Vec<usize> = part.iter().copied().filter(|&k| k != 7).collect();
        d.upsert(&t, batch(&seen, 0, 2_000)).unwrap();
        d.commit("c", &state(2 + i as u64)).unwrap();
    }
    assert_eq!(
        d.live_and_stale(&t, "_synced_at", 2_000).unwrap(),
        (n as u64, 1),
        "{kind:?}"
    );
    d.delete_older_than(&t, "_synced_at", 2_000).unwrap();
    let c = d.commit("c", &state(5)).unwrap().tables["counted_t"];
    assert_eq!((c.deleted, c.updated, c.inserted), (1, 0, 0), "{kind:?}");
    let deleted = |d: &AnyDest| d.grid("SELECT id FROM counted_t WHERE _etl_deleted ORDER BY id");
    assert_eq!(deleted(&d), ["Text(\"k7\")"], "{kind:?}");

    // A scan from 3_000 seeing all but k9 (k7 is gone already), counted …
    let seen: Vec<usize> = all.iter().copied().filter(|&k| k != 7 && k != 9).collect();
    d.upsert(&t, batch(&seen, 0, 3_000)).unwrap();
    d.commit("c", &state(6)).unwrap();
    assert_eq!(
        d.live_and_stale(&t, "_synced_at", 3_000).unwrap(),
        (n as u64 - 1, 1),
        "{kind:?}"
    );
    // … then another commit changes k5, adds k{n} and sees k9 after all,
    // before the sweep: which the sweep counts again, deleting nothing.
    d.upsert(&t, batch(&[5, n], 100, 3_000)).unwrap();
    d.upsert(&t, batch(&[9], 0, 3_000)).unwrap();
    let c = d.commit("c", &state(7)).unwrap().tables["counted_t"];
    assert_eq!((c.inserted, c.updated, c.unchanged), (1, 1, 1), "{kind:?}");
    d.delete_older_than(&t, "_synced_at", 3_000).unwrap();
    let c = d
        .commit("c", &state(8))
        .unwrap()
        .tables
        .get("counted_t")
        .copied();
    assert_eq!(c.map_or(0, |c| c.deleted), 0, "{kind:?}");
    assert_eq!(deleted(&d), ["Text(\"k7\")"], "{kind:?}");
    assert_eq!(
        d.grid("SELECT count(*) FROM counted_t WHERE NOT _etl_deleted"),
        [format!("BigInt({n})")],
        "{kind:?}"
    );
}
