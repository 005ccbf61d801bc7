//! Memory and speed of the CSV export connector's streaming read.
//!
//! The playground (in this process) streams a generated RFC 4180 export of
//! N rows (~174 bytes each, quoted fields with embedded newlines, CRLF, a
//! BOM); the connector downloads and parses it into Arrow batches, which
//! are dropped (no destination: what is measured is the connector). Peak
//! RSS (`VmHWM`) is read after each size; flat memory means the 1 GB export
//! peaks where the small one does.
//!
//! `cargo bench --bench csv_export` (sizes: `ETL_BENCH_CSV_ROWS=500000,6200000`).

use std::sync::Arc;
use std::time::Instant;

use etl::config::ConfigReader;
use etl::connectors::csv_export::{CsvConfig, CsvExport};
use etl::http::HttpMetrics;
use etl::playground::{Playground, PlaygroundOptions};

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    // `cargo bench` passes --bench; a filter that does not match skips it.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"csv_export".contains(a.as_str()))
    {
        return;
    }
    let sizes: Vec<u64> = std::env::var("ETL_BENCH_CSV_ROWS")
        .unwrap_or_else(|_| "500000,2000000,6200000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pg = Playground::start(PlaygroundOptions { users: 10, flow_runs: 10, ..Default::default() })
            .await
            .unwrap();
        println!("csv_export streaming read (batches dropped; peak RSS of the whole process)");
        for rows in sizes {
            let cfg = serde_json::json!({"url": format!("{}/export/csv?rows={rows}", pg.url())});
            let cfg = CsvConfig::validate(ConfigReader::from_map(cfg.as_object().unwrap().clone())).unwrap();
            let conn = CsvExport::new(cfg, Arc::new(HttpMetrics::default()));
            let started = Instant::now();
            let mut bytes = 0usize;
            let n = conn
                .read_export(0, None, |b, _| {
                    bytes += b.get_array_memory_size();
                    async { Ok(()) }
                })
                .await
                .unwrap();
            let secs = started.elapsed().as_secs_f64();
            assert_eq!(n, rows);
            println!(
                "  {rows:>9} rows (~{:.2} GB of CSV): {:.0} rows/s, peak RSS {:.0} MB (Arrow built: {:.1} GB)",
                rows as f64 * 174.3 / 1e9,
                rows as f64 / secs,
                peak_rss_mb(),
                bytes as f64 / 1e9
            );
        }
    });
}
