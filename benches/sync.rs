//! End-to-end sync bench: the Userflow playground on 127.0.0.1 → a DuckDB
//! file, through the real HTTP client, decoder, engine and destination.
//! Prints rows/s and the process's peak RSS. Run with `cargo bench --bench sync`;
//! `ETL_BENCH_USERS` sets the size (default 200000).

use std::time::{Duration, Instant};

use etl::config::ConfigReader;
use etl::playground::{Playground, PlaygroundOptions};
use etl::SyncOptions;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    // `cargo bench` passes --bench; this harness takes no other flags.
    let users: usize = std::env::var("ETL_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pg = Playground::start(PlaygroundOptions { users, ..Default::default() }).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bench.duckdb");
        let rss_before = peak_rss_mib();
        for run in ["first sync (all inserts)", "second sync (all matched)"] {
            let cfg = ConfigReader::from_map(pg.userflow_config().as_object().unwrap().clone());
            let opts = SyncOptions { checkpoint_interval: Duration::from_secs(3600), ..Default::default() };
            let t = Instant::now();
            let s = etl::sync("userflow", cfg, &db, opts).await.unwrap();
            let secs = t.elapsed().as_secs_f64();
            println!(
                "sync/userflow_{users}: {run}: {:.0} rows/s ({} rows, {} pages, {} commits, {secs:.2}s)",
                s.rows as f64 / secs,
                s.rows,
                s.pages,
                s.commits
            );
        }
        println!(
            "sync/userflow_{users}: peak RSS {:.0} MiB (playground data in the same process: {:.0} MiB before syncing)",
            peak_rss_mib(),
            rss_before
        );
    });
}
