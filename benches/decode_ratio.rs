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

mod common;
use common::{arrow_json_decode, arrow_json_schema, ndjson, page};

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
        let ndjson = ndjson(&p);
        let etl = || {
            let ranges = envelope::locate(p.as_bytes(), &data).unwrap().ranges;
            decoder
                .decode(p.as_bytes(), &ranges, &ctx)
                .unwrap()
                .batch
                .num_rows()
        };
        let arrow_json = || arrow_json_decode(&schema, &ndjson, rows);
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
