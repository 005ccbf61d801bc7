//! Concurrent page fetching: the Prefect playground answers every request
//! after 50 ms (a distant API), and 20,000 flow runs (101 pages of 200, plus
//! the flows and deployments) are synced with 1, 4, 8 and 16 pages in flight
//! per endpoint: a first sync into an empty destination, then a rescan (the
//! next sync: every run is read again, only changed ones are written). Prints
//! the time to read the source and to finish the sync, and the speedups over
//! one page at a time.
//!
//! `cargo bench --bench prefect_concurrency`; `ETL_BENCH_FLOW_RUNS`,
//! `ETL_BENCH_LATENCY_MS` change the setup, `ETL_BENCH_FORMAT=parquet` writes
//! a Parquet dataset instead of a DuckDB file, `RUST_LOG` shows the logs.

use std::path::Path;
use std::time::{Duration, Instant};

use etl::config::ConfigReader;
use etl::playground::{Playground, PlaygroundOptions};
use etl::SyncOptions;
use serde_json::json;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (read seconds, sync seconds, rows, requests)
async fn sync(pg: &Playground, out: &Path, concurrency: usize) -> (f64, f64, u64, u64) {
    let mut cfg = pg.prefect_config();
    cfg["concurrency"] = json!(concurrency);
    let cfg = ConfigReader::from_map(cfg.as_object().unwrap().clone());
    let opts = SyncOptions {
        checkpoint_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let t = Instant::now();
    let s = etl::sync("prefect", cfg, out, opts).await.unwrap();
    (s.read_secs, t.elapsed().as_secs_f64(), s.rows, s.requests)
}

fn main() {
    let runs = env("ETL_BENCH_FLOW_RUNS", 20_000) as usize;
    let latency = Duration::from_millis(env("ETL_BENCH_LATENCY_MS", 50));
    if let Ok(filter) = std::env::var("RUST_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let parquet = std::env::var("ETL_BENCH_FORMAT").as_deref() == Ok("parquet");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pg = Playground::start(PlaygroundOptions {
            users: 0,
            flow_runs: runs,
            latency,
            ..Default::default()
        })
        .await
        .unwrap();
        let format = if parquet { "parquet" } else { "duckdb" };
        let mut base = None;
        for concurrency in [1, 4, 8, 16] {
            let dir = tempfile::tempdir().unwrap();
            let out = if parquet {
                dir.path().join("lake")
            } else {
                dir.path().join("bench.duckdb")
            };
            let first = sync(&pg, &out, concurrency).await;
            let rescan = sync(&pg, &out, concurrency).await;
            let (b_first, b_rescan) = *base.get_or_insert((first, rescan));
            for (what, r, b) in [("first", first, b_first), ("rescan", rescan, b_rescan)] {
                println!(
                    "sync/prefect_{runs}_runs_{}ms/{format}/{what}: concurrency {concurrency:>2}: \
                     read {:.2}s ({:.1}x), sync {:.2}s ({:.1}x), {:.0} rows/s, {} rows, {} requests",
                    latency.as_millis(),
                    r.0,
                    b.0 / r.0,
                    r.1,
                    b.1 / r.1,
                    r.2 as f64 / r.1,
                    r.2,
                    r.3,
                );
            }
        }
    });
}
