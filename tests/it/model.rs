//! Model check (STYLE habit 10): random operation sequences applied to a
//! `BTreeMap` model and to each destination (DuckDB, and Parquet with a
//! partitioning that rows move across) must leave the same rows. Includes
//! crashes (drop without commit, reopen) and rollbacks.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use etl::dest::parquet::ParquetOptions;
use etl::schema::{Column, ColumnType, Partitioning, TableSchema};
use etl::state::State;
use proptest::prelude::*;

use crate::dests::{reader, Kind};

#[derive(Debug, Clone)]
enum Op {
    Upsert(Vec<(u8, Option<String>, Option<i64>)>),
    Update(u8, Option<String>),
    Delete(Vec<u8>),
    Truncate,
    Commit,
    Rollback,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..6;
    prop_oneof![
        4 => prop::collection::vec((key.clone(), prop::option::of("[a-z]{0,3}"), prop::option::of(-5i64..5)), 1..6).prop_map(Op::Upsert),
        1 => (key.clone(), prop::option::of("[a-z]{0,3}")).prop_map(|(k, v)| Op::Update(k, v)),
        1 => prop::collection::vec(key, 1..3).prop_map(Op::Delete),
        1 => Just(Op::Truncate),
        2 => Just(Op::Commit),
        1 => Just(Op::Rollback),
        1 => Just(Op::Crash),
    ]
}

/// id → (val1, val2, deleted)
type Model = BTreeMap<String, (Option<String>, Option<i64>, bool)>;

fn table() -> Arc<TableSchema> {
    Arc::new(
        TableSchema::new(
            "t",
            &["id"],
            vec![
                Column::new("id", ColumnType::String),
                Column::new("val1", ColumnType::String),
                Column::new("val2", ColumnType::Long),
            ],
        )
        // Upserts move rows between partitions; tiny files force several per partition.
        .partitioned_by(Partitioning::parse("val1").unwrap()),
    )
}

fn id(k: u8) -> String {
    format!("k{k}")
}

/// Every row of `t`, deleted ones included.
fn rows(conn: &duckdb::Connection) -> Model {
    // A Parquet table exists once a commit wrote it.
    let exists: i64 = conn
        .query_row(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 't'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if exists == 0 {
        return Model::new();
    }
    let mut stmt = conn
        .prepare("SELECT id, val1, val2, _etl_deleted FROM t")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn run(kind: Kind, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = kind.path(dir.path());
    let t = table();
    let open = || {
        let opts = ParquetOptions {
            file_bytes: 1,
            ..Default::default()
        };
        let mut d = kind.open_with(&path, opts);
        d.prepare(std::slice::from_ref(&t)).unwrap();
        d
    };
    let mut d = open();
    let (mut committed, mut pending) = (Model::new(), Model::new());
    for op in ops {
        match op {
            Op::Upsert(rows) => {
                let ids: Vec<String> = rows.iter().map(|r| id(r.0)).collect();
                let v1: Vec<Option<String>> = rows.iter().map(|r| r.1.clone()).collect();
                let v2: Vec<Option<i64>> = rows.iter().map(|r| r.2).collect();
                let cols: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from(ids.clone())),
                    Arc::new(StringArray::from(v1.clone())),
                    Arc::new(Int64Array::from(v2.clone())),
                ];
                d.upsert(&t, RecordBatch::try_new(t.arrow_schema(), cols).unwrap())
                    .unwrap();
                for ((i, a), b) in ids.into_iter().zip(v1).zip(v2) {
                    pending.insert(i, (a, b, false));
                }
            }
            Op::Update(k, v) => {
                let cols: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from(vec![id(k)])),
                    Arc::new(StringArray::from(vec![v.clone()])),
                ];
                d.update(
                    &t,
                    RecordBatch::try_new(t.arrow_schema_of(&["id", "val1"]).unwrap(), cols)
                        .unwrap(),
                )
                .unwrap();
                if let Some(row) = pending.get_mut(&id(k)) {
                    row.0 = v;
                }
            }
            Op::Delete(keys) => {
                let ids: Vec<String> = keys.iter().map(|k| id(*k)).collect();
                let cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from(ids.clone()))];
                d.delete(
                    &t,
                    RecordBatch::try_new(t.arrow_schema_of(&["id"]).unwrap(), cols).unwrap(),
                )
                .unwrap();
                for i in ids {
                    if let Some(row) = pending.get_mut(&i) {
                        row.2 = true;
                    }
                }
            }
            Op::Truncate => {
                d.truncate(&t).unwrap();
                pending.values_mut().for_each(|r| r.2 = true);
            }
            Op::Commit => {
                d.commit("m", &State::default()).unwrap();
                committed = pending.clone();
            }
            Op::Rollback => {
                d.rollback().unwrap();
                pending = committed.clone();
            }
            Op::Crash => {
                drop(d);
                d = open();
                pending = committed.clone();
                assert_eq!(
                    d.read(rows),
                    committed,
                    "after a crash only committed rows remain"
                );
            }
        }
    }
    d.commit("m", &State::default()).unwrap();
    drop(d);
    assert_eq!(rows(&reader(&path)), pending);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn duckdb_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(Kind::DuckDb, ops);
    }

    #[test]
    fn parquet_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(Kind::Parquet, ops);
    }
}
