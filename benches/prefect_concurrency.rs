//! Concurrent page fetching: the Prefect playground answers every request
//! after 50 ms (a distant API), and 20,000 flow runs (100 pages of 200) are
//! synced with 1, 4, 8 and 16 pages in flight per endpoint. Prints rows/s and
//! the speedup over one page at a time. `cargo bench --bench prefect_concurrency`;
//! `ETL_BENCH_FLOW_RUNS` and `ETL_BENCH_LATENCY_MS` change the setup.

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

fn main() {
    let runs = env("ETL_BENCH_FLOW_RUNS", 20_000) as usize;
    let latency = Duration::from_millis(env("ETL_BENCH_LATENCY_MS", 50));
    if let Ok(filter) = std::env::var("RUST_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pg = Playground::start(PlaygroundOptions { users: 0, flow_runs: runs, latency, ..Default::default() })
            .await
            .unwrap();
        let mut base: Option<(f64, f64)> = None;
        for concurrency in [1, 4, 8, 16] {
            let dir = tempfile::tempdir().unwrap();
            // ETL_BENCH_FORMAT=parquet writes a Parquet dataset instead.
            let out = match std::env::var("ETL_BENCH_FORMAT").as_deref() {
                Ok("parquet") => dir.path().join("lake"),
                _ => dir.path().join("bench.duckdb"),
            };
            let mut cfg = pg.prefect_config();
            cfg["concurrency"] = json!(concurrency);
            let cfg = ConfigReader::from_map(cfg.as_object().unwrap().clone());
            let opts = SyncOptions { checkpoint_interval: Duration::from_secs(3600), ..Default::default() };
            let t = Instant::now();
            let s = etl::sync("prefect", cfg, &out, opts).await.unwrap();
            let secs = t.elapsed().as_secs_f64();
            let (base_secs, base_read) = *base.get_or_insert((secs, s.read_secs));
            println!(
                "sync/prefect_{runs}_runs_{}ms: concurrency {concurrency:>2}: {:.0} rows/s ({} rows, {} requests), \
                 read {:.2}s (speedup {:.1}x), sync {secs:.2}s (speedup {:.1}x)",
                latency.as_millis(),
                s.rows as f64 / secs,
                s.rows,
                s.requests,
                s.read_secs,
                base_read / s.read_secs,
                base_secs / secs
            );
        }
    });
}
