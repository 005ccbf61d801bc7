//! Parquet-only promises: a crash at each step of publishing ends in the old
//! or the new commit (never between) and leaves no debris; untouched
//! partitions are never rewritten; files stay within their size bound; the
//! files carry Parquet's own types; the dataset directory is guarded.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use etl::dest::parquet::{CommitStep, ParquetDestination, ParquetOptions};
use etl::dest::Destination;
use etl::schema::{Column, ColumnType, Partitioning, TableSchema, UTC};
use etl::state::State;

use crate::dests::{grid, parquet_views};

const DAY: i64 = 86_400_000_000;

fn events() -> Arc<TableSchema> {
    Arc::new(
        TableSchema::new(
            "events",
            &["id"],
            vec![
                Column::new("id", ColumnType::Long),
                Column::new("ts", ColumnType::UtcDatetime),
                Column::new("body", ColumnType::String),
                Column::raw("raw"),
            ],
        )
        .partitioned_by(Partitioning::parse("ts:day").unwrap()),
    )
}

/// Rows `ids`, each on day `id % days`, with `body`.
fn batch(t: &TableSchema, ids: impl Iterator<Item = i64>, days: i64, body: &str) -> RecordBatch {
    let ids: Vec<i64> = ids.collect();
    RecordBatch::try_new(
        t.arrow_schema(),
        vec![
            Arc::new(Int64Array::from(ids.clone())) as ArrayRef,
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(ids.iter().map(|i| (i % days) * DAY))
                    .with_timezone(UTC),
            ),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("{body}{i}")),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("{{\"id\":{i}}}")),
            )),
        ],
    )
    .unwrap()
}

fn state(n: u64) -> State {
    let mut s = State::default();
    s.streams.insert("events".into(), serde_json::json!(n));
    s
}

fn open(root: &Path) -> ParquetDestination {
    let mut d = ParquetDestination::open(root).unwrap();
    d.prepare(&[events()]).unwrap();
    d
}

/// Every file under `root` (relative), the state directory's lock excluded.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                if rel != "_etl/lock" {
                    out.push(rel);
                }
            }
        }
    }
    out.sort();
    out
}

fn contents(root: &Path) -> Vec<String> {
    grid(
        &parquet_views(root),
        "SELECT id, body, _etl_deleted FROM events",
    )
}

#[test]
fn a_crash_at_any_step_of_a_commit_ends_in_the_old_or_the_new_commit() {
    let t = events();
    // The second commit rewrites day 0, moves rows, adds rows, deletes one.
    let second = |d: &mut ParquetDestination| {
        d.upsert(&t, batch(&t, 0..4, 2, "v2-")).unwrap();
        d.upsert(&t, batch(&t, 100..103, 5, "new-")).unwrap();
        d.delete(
            &t,
            RecordBatch::try_new(
                t.arrow_schema_of(&["id"]).unwrap(),
                vec![Arc::new(Int64Array::from(vec![7])) as ArrayRef],
            )
            .unwrap(),
        )
        .unwrap();
    };
    let reference = tempfile::tempdir().unwrap();
    let (old, new) = {
        let mut d = open(reference.path());
        d.upsert(&t, batch(&t, 0..10, 3, "v1-")).unwrap();
        d.commit("c", &state(1)).unwrap();
        let old = contents(reference.path());
        second(&mut d);
        d.commit("c", &state(2)).unwrap();
        (old, contents(reference.path()))
    };
    assert_ne!(old, new);
    for (step, lands_in_new) in [
        (CommitStep::FilesWritten, false),
        (CommitStep::PendingWritten, true),
        (CommitStep::HalfRenamed, true),
        (CommitStep::Renamed, true),
        (CommitStep::Removed, true),
        (CommitStep::StateWritten, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        {
            let mut d = open(&root);
            d.upsert(&t, batch(&t, 0..10, 3, "v1-")).unwrap();
            d.commit("c", &state(1)).unwrap();
            second(&mut d);
            d.fail_commit_at(step);
            let e = d.commit("c", &state(2)).unwrap_err();
            assert!(e.to_string().contains("simulated crash"), "{e}");
        } // the process "dies" here
        let mut d = open(&root);
        let (want, want_state) = if lands_in_new { (&new, 2) } else { (&old, 1) };
        assert_eq!(&contents(&root), want, "crash at {step:?}");
        assert_eq!(
            d.load_state("c").unwrap().unwrap(),
            state(want_state),
            "{step:?}"
        );
        let files = listing(&root);
        assert!(
            files
                .iter()
                .all(|f| !f.ends_with(".tmp") && !f.contains("pending")),
            "debris after recovery from {step:?}: {files:?}"
        );
        let mut live: Vec<String> = d
            .files("events")
            .iter()
            .map(|f| format!("events/{f}"))
            .collect();
        live.push("_etl/state.json".into());
        live.sort();
        assert_eq!(files, live, "only listed files remain after {step:?}");
        // Rerunning from the recovered state ends exactly where an uninterrupted run does.
        second(&mut d);
        d.commit("c", &state(2)).unwrap();
        assert_eq!(contents(&root), new, "rerun after {step:?}");
        assert_eq!(
            grid(
                &parquet_views(&root),
                "SELECT count(*) - count(DISTINCT id) FROM events"
            ),
            vec!["BigInt(0)"]
        );
    }
}

#[test]
fn untouched_partitions_and_files_are_never_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let t = events();
    let mut d = open(&root);
    d.upsert(&t, batch(&t, 0..3000, 30, "v1-")).unwrap();
    d.commit("c", &state(1)).unwrap();
    let before: BTreeMap<String, std::time::SystemTime> = d
        .files("events")
        .into_iter()
        .map(|f| {
            let m = std::fs::metadata(root.join("events").join(&f)).unwrap();
            (f, m.modified().unwrap())
        })
        .collect();
    assert_eq!(before.len(), 30, "one file per day: {before:?}");
    // 1% of the rows change, all on day 4; one new row lands on day 31.
    d.upsert(&t, batch(&t, (0..30).map(|i| i * 30 + 4), 30, "v2-"))
        .unwrap();
    d.upsert(&t, batch(&t, [5031].into_iter(), 100, "new-"))
        .unwrap();
    let w = d.commit("c", &state(2)).unwrap();
    assert_eq!(
        (w.tables["events"].updated, w.tables["events"].inserted),
        (30, 1)
    );
    let after = d.files("events");
    let kept: Vec<&String> = before.keys().filter(|f| after.contains(f)).collect();
    assert_eq!(kept.len(), 29, "only day 4's file was replaced: {after:?}");
    for f in kept {
        let m = std::fs::metadata(root.join("events").join(f)).unwrap();
        assert_eq!(m.modified().unwrap(), before[f], "{f} untouched");
    }
    assert_eq!(after.len(), 31, "day 4 rewritten, day 31 added: {after:?}");
    assert_eq!(
        grid(&parquet_views(&root), "SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE body LIKE 'v2-%') FROM events"),
        vec!["BigInt(3001)|BigInt(3001)|BigInt(30)"]
    );
}

#[test]
fn files_and_row_groups_stay_within_their_size_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let t = events();
    let opts = ParquetOptions {
        file_bytes: 64 << 10,
        row_group_bytes: 16 << 10,
        compression: parquet::basic::Compression::UNCOMPRESSED,
        ..Default::default()
    };
    let mut d = ParquetDestination::open_with(&root, opts).unwrap();
    d.prepare(std::slice::from_ref(&t)).unwrap();
    for chunk in 0..40 {
        d.upsert(
            &t,
            batch(
                &t,
                chunk * 1000..(chunk + 1) * 1000,
                1,
                "some text to fill the file ",
            ),
        )
        .unwrap();
    }
    d.commit("c", &state(1)).unwrap();
    let files = d.files("events");
    // 40k rows of ~60 bytes: written in slices of 8192 rows, a file closes
    // after the slice that takes it past 64 KiB.
    assert!(files.len() >= 5, "{} files", files.len());
    let conn = parquet_views(&root);
    for f in &files {
        let path = root.join("events").join(f);
        assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20, "{f}");
    }
    assert_eq!(
        grid(&conn, "SELECT count(DISTINCT id) FROM events"),
        vec!["BigInt(40000)"]
    );
}

#[test]
fn files_carry_parquets_own_timestamp_json_and_decimal_types() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let t = events();
    let mut d = open(&root);
    d.upsert(&t, batch(&t, 0..3, 1, "x")).unwrap();
    d.commit("c", &state(1)).unwrap();
    let conn = parquet_views(&root);
    let types = grid(
        &conn,
        &format!(
            "SELECT DISTINCT name, CAST(logical_type AS VARCHAR) FROM parquet_schema('{}/events/**/*.parquet') \
             WHERE name IN ('ts', 'raw')",
            root.display()
        ),
    );
    assert_eq!(types.len(), 2, "{types:?}");
    assert!(
        types[0].contains("\"raw\"") && types[0].contains("JsonType"),
        "{types:?}"
    );
    assert!(
        types[1].contains("\"ts\"")
            && types[1].contains("isAdjustedToUTC=1")
            && types[1].contains("MICROS"),
        "{types:?}"
    );
    // The hive column of a day partition does not shadow the timestamp.
    assert_eq!(
        grid(&conn, "SELECT DISTINCT typeof(ts), ts_day FROM events"),
        vec!["Text(\"TIMESTAMP WITH TIME ZONE\")|Date32(0)"]
    );
}

#[test]
fn a_non_dataset_directory_and_a_second_writer_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let e = ParquetDestination::open(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not an etl Parquet dataset"), "{e}");
    assert!(dir.path().join("notes.txt").exists());

    let root = dir.path().join("lake");
    let _first = ParquetDestination::open(&root).unwrap();
    let e = ParquetDestination::open(&root).err().unwrap().to_string();
    assert!(e.contains("another etl process"), "{e}");
}

#[test]
fn a_newer_state_format_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    drop(open(&root));
    std::fs::write(
        root.join("_etl/state.json"),
        r#"{"format": "etl-parquet", "version": 99, "commit": 1}"#,
    )
    .unwrap();
    let e = ParquetDestination::open(&root).err().unwrap().to_string();
    assert!(e.contains("version 99") && e.contains("upgrade etl"), "{e}");
}

#[test]
fn a_commit_that_fails_in_its_second_table_leaves_the_first_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let t = events();
    let bad = Arc::new(TableSchema::new(
        "zbad",
        &["id"],
        vec![Column::new("id", ColumnType::String)],
    ));
    let mut d = open(&root);
    d.prepare(std::slice::from_ref(&bad)).unwrap();
    d.upsert(&t, batch(&t, 0..10, 3, "v1-")).unwrap();
    d.commit("c", &state(1)).unwrap();
    // "events" is written first (tables commit in name order), then "zbad" fails.
    d.upsert(&t, batch(&t, 0..4, 3, "v2-")).unwrap();
    let loose = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Utf8, true),
    ]));
    let nulls = RecordBatch::try_new(
        loose,
        vec![Arc::new(StringArray::from(vec![None::<&str>])) as ArrayRef],
    )
    .unwrap();
    d.upsert(&bad, nulls).unwrap();
    assert!(d.commit("c", &state(2)).is_err());
    d.rollback().unwrap();
    assert!(
        listing(&root).iter().all(|f| !f.ends_with(".tmp")),
        "{:?}",
        listing(&root)
    );
    // The same destination goes on: its key index was not left pointing at
    // files that never came to be.
    d.upsert(&t, batch(&t, 0..4, 3, "v3-")).unwrap();
    d.commit("c", &state(2)).unwrap();
    assert_eq!(
        grid(&parquet_views(&root), "SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE body LIKE 'v3-%') FROM events"),
        vec!["BigInt(10)|BigInt(10)|BigInt(4)"]
    );
}
