//! Other programs read what etl writes: DuckDB clients as old as 1.4 open
//! its DuckDB files (they are written in a storage format 1.4 reads), a file
//! asked for in DuckDB 2.0's own format stays in it, and so does an existing
//! file whatever the flag says.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::*;
use crate::pyenv;

/// What DuckDB `version` (from PyPI) says about `db`: the live users and
/// the distinct ids in `raw`, or its error.
fn read_with(version: &str, db: &Path) -> Option<Result<String, String>> {
    let venv = match pyenv::venv(
        &format!("duckdb-{version}"),
        &[&format!("duckdb=={version}")],
    ) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("skipping the DuckDB {version} reader: no Python environment ({e})");
            return None;
        }
    };
    let script = "import duckdb, sys\n\
                  c = duckdb.connect(sys.argv[1], read_only=True)\n\
                  print(duckdb.__version__, c.execute(\"SELECT count(*), count(DISTINCT raw->>'id') FROM users WHERE NOT _etl_deleted\").fetchone())\n";
    Some(pyenv::run(
        Command::new(venv.join("bin").join("python"))
            .arg("-c")
            .arg(script)
            .arg(db),
        Duration::from_secs(120),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn duckdb_1_4_1_5_and_2_0_clients_open_the_file() {
    let pg = playground(300).await;
    let (_d, db) = tmp();
    sync(&pg, &db, json!({}), 1_000_000).await.unwrap();
    // Asked for DuckDB 2.0's own format; then synced again with the default:
    // an existing file keeps the format it was created in.
    let (_d2, db2) = tmp();
    let v2 = etl::SyncOptions {
        duckdb_storage_version: "v2.0.0".into(),
        ..opts(1_000_000)
    };
    etl::sync("userflow", config(&pg, json!({})), &db2, v2)
        .await
        .unwrap();
    sync(&pg, &db2, json!({}), 1_000_000).await.unwrap();
    for version in ["1.4.5", "1.5.6", "2.0.1"] {
        let Some(r) = read_with(version, &db) else {
            return;
        };
        let out = r.unwrap_or_else(|e| panic!("DuckDB {version} cannot read the file: {e}"));
        assert!(out.contains(&format!("{version} (300, 300)")), "{out}");
        let r = read_with(version, &db2).unwrap();
        if version.starts_with('2') {
            assert!(r.unwrap().contains("(300, 300)"));
        } else {
            let e = r.unwrap_err();
            assert!(e.contains("version number"), "DuckDB {version}: {e}");
        }
    }
}
