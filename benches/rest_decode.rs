//! The REST connector's CPU per page: a page of 200 records (seven declared
//! fields, three undeclared ones the connector infers) from envelope to
//! Arrow batch, with the incremental cursor's largest value.
//!
//! * `parse_once`: what the connector does now: the envelope and the
//!   records' byte ranges in one pass, then one decode that also notices
//!   the cursor and the inferred columns' types (a decoder kept per table).
//! * `parsed_three_times`: what it did before the source framework, kept
//!   here as the baseline: a `RawValue` walk of the envelope, every record
//!   parsed again into a `serde_json::Value` (for inference and the cursor),
//!   a decoder built for the page, then the Arrow decode.
//!
//! Quote the ratio between the two lines of one run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etl::decode::observe::Watch;
use etl::decode::{envelope, infer, range_in, BatchDecoder, PageContext};
use etl::schema::{Column, ColumnType, TableSchema};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

const ROWS: usize = 200;

fn page() -> Vec<u8> {
    let data: Vec<Value> = (0..ROWS)
        .map(|i| {
            json!({
                "id": format!("user-{i:06}"),
                "name": format!("User number {i}"),
                "email": format!("user{i}@example.com"),
                "address": format!("{i} Main Street, Springfield"),
                "company": "Initech",
                "createdAt": "2024-01-02T03:04:05Z",
                "updatedAt": format!("2024-03-{:02}T10:{:02}:00Z", 1 + i % 28, i % 60),
                "score": i as f64 * 0.5,
                "active": i % 3 == 0,
                "tags": ["a", "b"],
            })
        })
        .collect();
    serde_json::to_vec(&json!({"data": data, "total": 10_000, "offset": 0})).unwrap()
}

/// The table after the first page: declared columns, then the inferred ones.
fn table() -> Arc<TableSchema> {
    let mut cols: Vec<Column> = [
        ("id", ColumnType::String),
        ("name", ColumnType::String),
        ("email", ColumnType::String),
        ("address", ColumnType::String),
        ("company", ColumnType::String),
        ("createdAt", ColumnType::UtcDatetime),
        ("updatedAt", ColumnType::UtcDatetime),
    ]
    .iter()
    .map(|(n, t)| Column::new(n, *t))
    .collect();
    for (n, t) in inferred() {
        cols.push(Column::new(&n, t));
    }
    cols.push(Column::synced_at("_synced_at"));
    Arc::new(TableSchema::new("user", &["id"], cols))
}

fn inferred() -> Vec<(String, ColumnType)> {
    vec![
        ("score".into(), ColumnType::Float),
        ("active".into(), ColumnType::Boolean),
        ("tags".into(), ColumnType::Json),
    ]
}

fn ctx() -> PageContext {
    PageContext {
        first_row: 0,
        location: "bench".into(),
        synced_at_micros: 0,
    }
}

/// The pre-framework split: envelope fields as values, each record's range,
/// and each record parsed again into a value.
fn old_split(page: &[u8]) -> (Value, Vec<Range<usize>>, Vec<Value>) {
    let text = std::str::from_utf8(page).unwrap();
    let fields: BTreeMap<String, &RawValue> = serde_json::from_str(text).unwrap();
    let mut env = Map::new();
    let mut list: Vec<&RawValue> = Vec::new();
    for (k, v) in fields {
        if k == "data" {
            list = serde_json::from_str(v.get()).unwrap();
            env.insert(k, Value::Null);
        } else {
            env.insert(k, serde_json::from_str(v.get()).unwrap());
        }
    }
    let ranges = list.iter().map(|v| range_in(page, v)).collect();
    let records = list
        .iter()
        .map(|v| serde_json::from_str(v.get()).unwrap_or(Value::Null))
        .collect();
    (Value::Object(env), ranges, records)
}

fn rest_page(c: &mut Criterion) {
    let p = page();
    let schema = table();
    let mut g = c.benchmark_group("rest_page");
    g.throughput(Throughput::Elements(ROWS as u64));

    let watch = Watch {
        infer: true,
        inferred: Arc::new(inferred().into_iter().collect::<HashMap<_, _>>()),
        declared: Arc::new(
            schema
                .columns
                .iter()
                .map(|c| c.name.clone())
                .filter(|n| !inferred().iter().any(|(k, _)| k == n))
                .collect::<HashSet<_>>(),
        ),
        cursor: Some(("updatedAt".into(), |a: &str, b: &str| a.cmp(b))),
        fields: false,
    };
    let decoder = BatchDecoder::new(schema.clone()).with_watch(watch);
    g.bench_function(format!("parse_once_{ROWS}"), |b| {
        b.iter(|| {
            let env = envelope::split(&p, &["data".to_string()]).unwrap();
            let d = decoder.decode(&p, &env.ranges, &ctx()).unwrap();
            assert!(!d.observed.stale());
            (
                d.batch.num_rows(),
                d.observed.cursor_max,
                env.fields.get("total").cloned(),
            )
        })
    });

    g.bench_function(format!("parsed_three_times_{ROWS}"), |b| {
        b.iter(|| {
            let (env, ranges, records) = old_split(&p);
            // Inference: every field of every record typed from its value.
            let mut seen: Vec<(String, ColumnType)> = inferred();
            let mut max: Option<String> = None;
            for r in &records {
                let Some(obj) = r.as_object() else { continue };
                for (k, v) in obj {
                    if let Some(ty) = infer::value_type(v) {
                        if let Some((_, old)) = seen.iter_mut().find(|(n, _)| n == k) {
                            *old = infer::widen(*old, ty);
                        } else if schema.column(k).is_none() {
                            seen.push((k.clone(), ty));
                        }
                    }
                }
                if let Some(Value::String(c)) = r.get("updatedAt") {
                    if max.as_ref().is_none_or(|m| c > m) {
                        max = Some(c.clone());
                    }
                }
            }
            let decoder = BatchDecoder::new(Arc::new((*schema).clone()));
            let d = decoder.decode(&p, &ranges, &ctx()).unwrap();
            (
                d.batch.num_rows(),
                max,
                env.get("total").cloned(),
                seen.len(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, rest_page);
criterion_main!(benches);
