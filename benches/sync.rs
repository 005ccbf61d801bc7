//! End-to-end sync bench: the Userflow playground on 127.0.0.1 → a DuckDB
//! file and a Parquet dataset, through the real HTTP client, decoder, engine
//! and destination. Prints rows/s and peak RSS per phase.
//!
//! Run with `cargo bench --bench sync`. `ETL_BENCH_USERS` sets the size
//! (default 200000), `ETL_BENCH_FORMATS` the destinations (default
//! `duckdb,parquet,delta`; `delta-s3` writes a Delta lake to
//! `s3://etl-bench/` at the S3 endpoint the AWS environment names, for
//! example moto's server from tests/it/delta.rs).
//!
//! Phases per format: a first sync (all inserts), a rescan with nothing
//! changed, and one after 1% of the users changed (Userflow has no
//! updated-since filter, so the connector rescans and re-upserts every
//! user). For Parquet and Delta, a last phase applies the 1% change directly
//! as an incremental source would deliver it (only the changed rows) and
//! reports how many files were rewritten: once for changes clustered in
//! recent sign-ups, once spread at random.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etl::config::ConfigReader;
use etl::decode::{split_array, BatchDecoder, PageContext};
use etl::dest::parquet::ParquetDestination;
use etl::dest::Destination;
use etl::playground::userflow::User;
use etl::playground::{Playground, PlaygroundOptions};
use etl::state::State;
use etl::{OutputFormat, SyncOptions};
use serde_json::{json, Map};

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

/// Reset the peak RSS to the current RSS (Linux `clear_refs` 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The users as the connector would decode them, for direct destination writes.
fn decode(users: &[User]) -> arrow::record_batch::RecordBatch {
    let table = Arc::new(etl::connectors::userflow::users_table());
    let page = serde_json::to_vec(&users.iter().map(User::to_json).collect::<Vec<_>>()).unwrap();
    let ranges = split_array(&page, None).unwrap();
    let ctx = PageContext {
        first_row: 0,
        location: "bench".into(),
        synced_at_micros: chrono::Utc::now().timestamp_micros(),
    };
    BatchDecoder::new(table)
        .decode(&page, &ranges, &ctx)
        .unwrap()
        .batch
}

/// Upsert `users` into the dataset at `root` in one commit; print time and files rewritten.
fn incremental(open: &dyn Fn() -> ParquetDestination, label: &str, users: &[User]) {
    let table = Arc::new(etl::connectors::userflow::users_table());
    let mut d = open();
    d.prepare(std::slice::from_ref(&table)).unwrap();
    let before: BTreeSet<String> = d.files("users").into_iter().collect();
    let batch = decode(users);
    reset_peak_rss();
    let t = Instant::now();
    d.upsert(&table, batch).unwrap();
    d.commit("bench", &State::default()).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let after: BTreeSet<String> = d.files("users").into_iter().collect();
    let partitions = |s: &BTreeSet<String>| -> BTreeSet<String> {
        s.iter()
            .map(|f| f.rsplit_once('/').map_or("", |p| p.0).to_string())
            .collect()
    };
    let rewritten: BTreeSet<&String> = before.difference(&after).collect();
    let touched: BTreeSet<String> = partitions(&rewritten.iter().map(|s| (*s).clone()).collect());
    println!(
        "sync/{}_incremental: {label}: {} rows in {secs:.2}s ({:.0} rows/s); rewrote {} of {} files in {} of {} partitions; peak RSS {:.0} MiB",
        d.describe().split(':').next().unwrap_or_default(),
        users.len(),
        users.len() as f64 / secs,
        rewritten.len(),
        before.len(),
        touched.len(),
        partitions(&before).len(),
        peak_rss_mib()
    );
}

/// The baseline of the first sync and the rescan into DuckDB: the bundled
/// DuckDB itself building the same table (id, email, name, created_at,
/// signed_up_at, raw JSON, _synced_at) from an NDJSON dump of the same
/// users with `read_json_objects`, then the delete + insert merge of the
/// same rows. Seconds of each.
fn duckdb_from_ndjson(users: &[User]) -> (f64, f64) {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("users.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&dump).unwrap());
    for u in users {
        writeln!(f, "{}", u.to_json()).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let conn = duckdb::Connection::open(dir.path().join("from_file.duckdb")).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (id VARCHAR, email VARCHAR, name VARCHAR, created_at TIMESTAMPTZ, \
         signed_up_at TIMESTAMPTZ, raw JSON, _synced_at TIMESTAMPTZ)",
    )
    .unwrap();
    let src = format!(
        "SELECT json->>'id' AS id, json->'attributes'->>'email' AS email, json->'attributes'->>'name' AS name, \
         CAST(json->>'created_at' AS TIMESTAMPTZ) AS created_at, \
         CAST(json->'attributes'->>'signed_up_at' AS TIMESTAMPTZ) AS signed_up_at, json AS raw, now() AS _synced_at \
         FROM read_json_objects('{}', format = 'newline_delimited')",
        dump.display()
    );
    let t = Instant::now();
    conn.execute_batch(&format!("INSERT INTO users {src}"))
        .unwrap();
    let first = t.elapsed().as_secs_f64();
    let t = Instant::now();
    conn.execute_batch(&format!(
        "BEGIN; CREATE TEMP TABLE staged AS {src}; \
         DELETE FROM users WHERE id IN (SELECT id FROM staged); \
         INSERT INTO users SELECT * FROM staged; DROP TABLE staged; COMMIT"
    ))
    .unwrap();
    let merge = t.elapsed().as_secs_f64();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n as usize, users.len());
    println!(
        "sync/userflow_{}/duckdb_from_ndjson: first build {:.0} rows/s ({first:.2}s), delete+insert merge {:.0} rows/s ({merge:.2}s)",
        users.len(),
        users.len() as f64 / first,
        users.len() as f64 / merge
    );
    (first, merge)
}

fn main() {
    // `cargo bench` passes --bench; this harness takes no other flags.
    let users: usize = std::env::var("ETL_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let formats =
        std::env::var("ETL_BENCH_FORMATS").unwrap_or_else(|_| "duckdb,parquet,delta".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pg = Playground::start(PlaygroundOptions { users, ..Default::default() }).await.unwrap();
        println!("sync/userflow_{users}: playground data in this process: {:.0} MiB RSS", peak_rss_mib());
        let originals = Arc::new(pg.userflow().users());
        // etl's DuckDB first sync and unchanged rescan, seconds.
        let mut etl_duckdb: Vec<(&str, f64)> = Vec::new();
        for format in formats.split(',').map(str::trim) {
            let (label, dir) = (format.to_string(), tempfile::tempdir().unwrap());
            let (format, out) = match format {
                "duckdb" => (OutputFormat::DuckDb, dir.path().join("bench.duckdb")),
                "parquet" => (OutputFormat::Parquet, dir.path().join("lake")),
                "delta" => (OutputFormat::Delta, dir.path().join("delta")),
                "delta-s3" => (
                    OutputFormat::Delta,
                    std::path::PathBuf::from(format!("s3://etl-bench/{}", rand::random::<u32>())),
                ),
                other => panic!("ETL_BENCH_FORMATS: unknown format {other}"),
            };
            // Restore the original users, so every format syncs the same data.
            for u in originals.iter() {
                pg.userflow().upsert(&u.id, u.attributes.clone());
            }
            for run in [
                "first sync (all inserts)",
                "rescan, nothing changed",
                "rescan, 1% changed",
            ] {
                if run.ends_with("1% changed") {
                    for u in originals.iter().step_by(100) {
                        let mut attrs = Map::new();
                        attrs.insert("email".into(), json!(format!("changed-{}@example.com", u.id)));
                        pg.userflow().upsert(&u.id, attrs);
                    }
                }
                let cfg = ConfigReader::from_map(pg.userflow_config().as_object().unwrap().clone());
                let opts = SyncOptions {
                    checkpoint_interval: Duration::from_secs(3600),
                    format: Some(format),
                    ..Default::default()
                };
                reset_peak_rss();
                let t = Instant::now();
                let s = etl::sync("userflow", cfg, &out, opts).await.unwrap();
                let secs = t.elapsed().as_secs_f64();
                if format == OutputFormat::DuckDb && !run.ends_with("1% changed") {
                    etl_duckdb.push((run, secs));
                }
                println!(
                    "sync/userflow_{users}/{label}: {run}: {:.0} rows/s ({} rows, {} pages, {} commits, {secs:.2}s), peak RSS {:.0} MiB",
                    s.rows as f64 / secs,
                    s.rows,
                    s.pages,
                    s.commits,
                    peak_rss_mib()
                );
            }
            if format != OutputFormat::DuckDb {
                // The sync wrote the lake's `userflow` schema.
                let root = out.join("userflow");
                let originals = Arc::clone(&originals);
                tokio::task::spawn_blocking(move || {
                    let open = || match format {
                        OutputFormat::Parquet => ParquetDestination::open(&root).unwrap(),
                        _ => {
                            let ns = etl::dest::namespace::Namespace::new(None, "userflow", "userflow").unwrap();
                            ParquetDestination::open_delta(&out.to_string_lossy(), Default::default(), &ns, false).unwrap()
                        }
                    };
                    let change = |u: &User| {
                        let mut u = u.clone();
                        u.attributes.insert("email".into(), json!(format!("again-{}@example.com", u.id)));
                        u
                    };
                    let mut recent: Vec<&User> = originals.iter().collect();
                    recent.sort_by(|a, b| b.created_at.cmp(&a.created_at));
                    let n = originals.len() / 100;
                    let clustered: Vec<User> = recent[..n].iter().map(|u| change(u)).collect();
                    incremental(&open, "1% changed, the most recent sign-ups", &clustered);
                    let spread: Vec<User> = originals.iter().step_by(100).map(change).collect();
                    incremental(&open, "1% changed, spread at random", &spread);
                })
                .await
                .unwrap();
            }
        }
        // Last, so its memory is not in the phases' peak RSS.
        if !etl_duckdb.is_empty() {
            let (first, merge) = duckdb_from_ndjson(&originals);
            for (run, secs) in etl_duckdb {
                let base = if run.starts_with("first") { first } else { merge };
                println!(
                    "sync/userflow_{users}/duckdb: {run}: {:.2}x DuckDB doing the same work from a local NDJSON file",
                    base / secs
                );
            }
        }
    });
}
