//! The DuckDB destination's operations, driven directly: same key twice → one
//! row, partial update, soft delete, truncate, new column, rejects in the same
//! commit, and rollback to the last commit.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use etl::batch::Reject;
use etl::dest::duckdb::DuckDbDestination;
use etl::dest::Destination;
use etl::schema::{Column, ColumnType, TableSchema};
use etl::state::State;

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

/// The table as sorted text rows.
fn grid(d: &DuckDbDestination, sql: &str) -> Vec<String> {
    let mut stmt = d.connection().prepare(sql).unwrap();
    let mut out: Vec<String> = stmt
        .query_map([], |r| {
            let mut cells = Vec::new();
            let mut i = 0;
            while let Ok(v) = r.get::<_, duckdb::types::Value>(i) {
                cells.push(format!("{v:?}"));
                i += 1;
            }
            Ok(cells.join("|"))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    out.sort();
    out
}

/// A destination at `path` whose table `three` holds one committed row (a, x, 1).
fn seeded(path: &std::path::Path, t: &Arc<TableSchema>) -> DuckDbDestination {
    let mut d = DuckDbDestination::open(path).unwrap();
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

#[test]
fn sdk_three_operations_example() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = DuckDbDestination::open(&dir.path().join("d.duckdb")).unwrap();
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
        grid(&d, "SELECT id, val1, val2, _etl_deleted FROM three"),
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
        grid(&d, "SELECT count(*) FROM three WHERE NOT _etl_deleted"),
        vec!["BigInt(0)"]
    );
}

#[test]
fn rollback_returns_to_the_last_commit_data_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.duckdb");
    let t = table();
    {
        let mut d = seeded(&path, &t);
        d.upsert(&t, rows(&t, &["a", "b"], &["y", "y"], &[2, 2]))
            .unwrap();
        d.truncate(&t).unwrap();
        d.rollback().unwrap();
        assert_eq!(
            grid(&d, "SELECT id, val1, _etl_deleted FROM three"),
            vec!["Text(\"a\")|Text(\"x\")|Boolean(false)"]
        );
        // Uncommitted work at drop (a crash) is discarded too.
        d.upsert(&t, rows(&t, &["q"], &["q"], &[9])).unwrap();
        d.delete(&t, keys(&t, &["a"])).unwrap();
    }
    let mut d = DuckDbDestination::open(&path).unwrap();
    assert_eq!(
        grid(&d, "SELECT id, val1, _etl_deleted FROM three"),
        vec!["Text(\"a\")|Text(\"x\")|Boolean(false)"]
    );
    assert_eq!(d.load_state("c").unwrap().unwrap(), state(1));
    assert!(d.load_state("other").unwrap().is_none());
}

#[test]
fn a_new_declared_column_evolves_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.duckdb");
    let t = table();
    drop(seeded(&path, &t));

    let mut t2 = (*t).clone();
    t2.columns.push(Column::new(
        "score",
        ColumnType::Decimal {
            precision: 10,
            scale: 2,
        },
    ));
    let t2 = Arc::new(t2);
    let mut d = DuckDbDestination::open(&path).unwrap();
    d.prepare(std::slice::from_ref(&t2)).unwrap();
    let decoder = etl::batch::BatchDecoder::new(t2.clone());
    let page = br#"[{"id": "b", "val1": "y", "val2": 2, "score": "12.5"}]"#;
    let ranges = etl::batch::split_array(page, None).unwrap();
    let ctx = etl::batch::PageContext {
        first_row: 0,
        location: "t".into(),
        synced_at_micros: 0,
    };
    d.upsert(&t2, decoder.decode(page, &ranges, &ctx).unwrap().batch)
        .unwrap();
    d.commit("c", &state(2)).unwrap();
    assert_eq!(
        grid(&d, "SELECT id, CAST(score AS VARCHAR) FROM three"),
        vec!["Text(\"a\")|Null", "Text(\"b\")|Text(\"12.50\")"]
    );
}

#[test]
fn rejects_land_in_the_same_commit() {
    let dir = tempfile::tempdir().unwrap();
    let t = table();
    let mut d = DuckDbDestination::open(&dir.path().join("d.duckdb")).unwrap();
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
        grid(&d, "SELECT table_name, raw, error FROM _etl_rejects"),
        vec!["Text(\"three\")|Text(\"{\\\"id\\\": \\\"x\\\", \\\"val2\\\": \\\"NaN?\\\"}\")|Text(\"column val2: bad\")"]
    );
}

#[test]
fn declared_tables_exist_after_a_commit_that_follows_a_rollback() {
    // Found by the model check: rollback also undoes the CREATE TABLE of prepare().
    let dir = tempfile::tempdir().unwrap();
    let t = table();
    let mut d = DuckDbDestination::open(&dir.path().join("d.duckdb")).unwrap();
    d.prepare(std::slice::from_ref(&t)).unwrap();
    d.rollback().unwrap();
    d.commit("c", &state(1)).unwrap();
    assert_eq!(grid(&d, "SELECT count(*) FROM three"), vec!["BigInt(0)"]);
}
