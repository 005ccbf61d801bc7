//! Hot-path benches: a page of Userflow users → Arrow RecordBatch, against
//! two baselines on the same users: a `serde_json::Value` parse of the page,
//! and arrow-json's `Decoder` on its NDJSON form (one user per line, the
//! same extracted columns, no `raw`); and the DuckDB merge of staged
//! batches that change every row. Quote ratios between lines of one run.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use etl::connectors::userflow::users_table;
use etl::decode::{envelope, split_array, BatchDecoder, PageContext};
use etl::dest::duckdb::DuckDbDestination;
use etl::dest::Destination;
use etl::state::State;

mod common;
use common::{arrow_json_decode, arrow_json_schema, ndjson, page};

fn ctx() -> PageContext {
    PageContext {
        first_row: 0,
        location: "bench".into(),
        synced_at_micros: 0,
    }
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for rows in [100usize, 20_000] {
        let p = page(rows);
        g.throughput(Throughput::Elements(rows as u64));
        let decoder = BatchDecoder::new(Arc::new(users_table()));
        // The Userflow connector's path: the envelope split in one pass (the
        // records only located), then the decode, whose walk checks each record.
        let data = ["data".to_string()];
        g.bench_function(format!("etl_page_{rows}"), |b| {
            b.iter(|| {
                let ranges = envelope::locate(p.as_bytes(), &data).unwrap().ranges;
                decoder
                    .decode(p.as_bytes(), &ranges, &ctx())
                    .unwrap()
                    .batch
                    .num_rows()
            })
        });
        let ndjson = ndjson(&p);
        let schema = arrow_json_schema();
        g.bench_function(format!("arrow_json_ndjson_baseline_{rows}"), |b| {
            b.iter(|| arrow_json_decode(&schema, &ndjson, rows))
        });
        g.bench_function(format!("serde_json_value_baseline_{rows}"), |b| {
            b.iter(|| {
                serde_json::from_str::<serde_json::Value>(&p).unwrap()["data"]
                    .as_array()
                    .unwrap()
                    .len()
            })
        });
    }
    g.finish();
}

fn merge(c: &mut Criterion) {
    let rows = 100_000;
    let p = page(rows);
    let table = Arc::new(users_table());
    let decoder = BatchDecoder::new(table.clone());
    let ranges = split_array(p.as_bytes(), Some("data")).unwrap();
    let batch = decoder.decode(p.as_bytes(), &ranges, &ctx()).unwrap().batch;
    // The same users, each with a new email: every row is rewritten.
    let email = batch.schema().index_of("email").unwrap();
    let mut columns = batch.columns().to_vec();
    columns[email] = Arc::new(arrow::array::StringArray::from_iter_values(
        (0..rows).map(|i| format!("changed-{i}@example.com")),
    ));
    let changed = arrow::record_batch::RecordBatch::try_new(batch.schema(), columns).unwrap();
    let mut g = c.benchmark_group("duckdb_merge");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows as u64));
    g.bench_function("upsert_100k_into_existing_100k", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let mut d = DuckDbDestination::open(&dir.path().join("b.duckdb")).unwrap();
                d.prepare(std::slice::from_ref(&table)).unwrap();
                d.upsert(&table, batch.clone()).unwrap();
                d.commit("bench", &State::default()).unwrap();
                (dir, d)
            },
            |(dir, mut d)| {
                d.upsert(&table, changed.clone()).unwrap();
                let w = d.commit("bench", &State::default()).unwrap();
                assert_eq!(w.tables["users"].updated, rows as u64);
                (dir, d)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, decode, merge);
criterion_main!(benches);
