//! etl's page decode against arrow-json's `Decoder` in interleaved rounds,
//! for a ratio that a noisy machine does not skew: criterion runs its
//! lines one after the other, and on a shared 2-core VM the same line
//! drifts by ±40% between runs; here each round times both, back to back.
//!
//! The work is `cargo bench --bench decode`'s: a page of Userflow users
//! (the connector's split, records located, then the decode with `raw`)
//! against arrow-json on the same users as NDJSON (the extracted columns,
//! no `raw`). `cargo bench --bench decode_ratio` prints, for 100- and
//! 20,000-row pages, the lowest, median and highest ratio of etl's rows/s
//! to arrow-json's over 11 rounds (etl decodes a 20,000-row page on every
//! core, arrow-json on one). `ETL_BENCH_ROUNDS` sets the rounds.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use etl::connectors::userflow::users_table;
use etl::decode::{envelope, BatchDecoder, PageContext};

/// `n` users shaped like the playground's, as one list page.
fn page(n: usize) -> String {
    let mock = etl::playground::userflow::UserflowMock::generate(n, 7);
    let data: Vec<_> = mock.users().iter().map(|u| u.to_json()).collect();
    serde_json::json!({"object": "list", "data": data, "has_more": false, "url": "/users", "next_page_url": null}).to_string()
}

/// What arrow-json reads of a user (as in the decode bench).
fn arrow_json_schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let attributes = Fields::from(vec![
        Field::new("email", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("signed_up_at", ts(), true),
    ]);
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("attributes", DataType::Struct(attributes), true),
        Field::new("created_at", ts(), true),
    ]))
}

/// Seconds for `iters` runs of `f`.
fn time(iters: usize, mut f: impl FnMut() -> usize) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    t.elapsed().as_secs_f64()
}

fn main() {
    let rounds: usize = std::env::var("ETL_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11)
        .max(1);
    let decoder = BatchDecoder::new(Arc::new(users_table()));
    let schema = arrow_json_schema();
    let data = ["data".to_string()];
    let ctx = PageContext {
        first_row: 0,
        location: "bench".into(),
        synced_at_micros: 0,
    };
    for (rows, iters) in [(100usize, 2_000usize), (20_000, 10)] {
        let p = page(rows);
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        let ndjson: String = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| format!("{u}\n"))
            .collect();
        let etl = || {
            let ranges = envelope::locate(p.as_bytes(), &data).unwrap().ranges;
            decoder
                .decode(p.as_bytes(), &ranges, &ctx)
                .unwrap()
                .batch
                .num_rows()
        };
        let arrow_json = || {
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
            d.flush().unwrap().unwrap().num_rows()
        };
        assert_eq!((etl(), arrow_json()), (rows, rows));
        let mut ratios: Vec<f64> = (0..rounds)
            .map(|_| {
                let etl_secs = time(iters, etl);
                time(iters, arrow_json) / etl_secs
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "decode_ratio/page_{rows}: etl's rows/s / arrow-json's over {rounds} interleaved rounds: lowest {:.2}x, median {:.2}x, highest {:.2}x",
            ratios[0],
            ratios[rounds / 2],
            ratios[rounds - 1]
        );
    }
}
