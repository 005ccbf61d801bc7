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
                  print(duckdb.__version__, c.execute(\"SELECT count(*), count(DISTINCT raw->>'id') FROM userflow.users WHERE NOT _etl_deleted\").fetchone())\n";
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

const SPARK_AND_POLARS: &str = "pyspark-4.0.5-polars-2.1.0";

/// Spark (`mergeSchema`, as docs/destinations.md says) and polars (its
/// pyarrow dataset of the files' unified schema) read a synced dataset whose
/// schema evolved (a column inferred in a later sync) exactly as DuckDB
/// does; polars reads a JSON column's text with its one-liner.
#[tokio::test(flavor = "multi_thread")]
async fn spark_and_polars_read_the_parquet_dataset_as_duckdb_does() {
    use etl::playground::{Playground, PlaygroundOptions};
    let venv = match pyenv::venv(
        SPARK_AND_POLARS,
        &["pyspark==4.0.5", "polars==2.1.0", "pyarrow"],
    ) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("skipping the Spark and polars readers: no Python environment ({e})");
            return;
        }
    };
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let spec = crate::fivetran::spec_path("fivetran_offset");
    fivetran_named(&spec, pg.rest_config(), &lake)
        .await
        .unwrap();
    // Ten users gain a field: the next sync infers a column only its files have.
    {
        let mut users = pg.fivetran().users.lock().unwrap();
        for u in users.iter_mut().take(10) {
            u["plan"] = serde_json::json!("pro");
            u["updatedAt"] = serde_json::json!(etl::playground::fivetran::ts(
                chrono::Utc::now().timestamp()
            ));
        }
    }
    fivetran_named(&spec, pg.rest_config(), &lake)
        .await
        .unwrap();
    // And a dataset with a JSON column.
    let users = playground(50).await;
    let lake2 = dir.path().join("lake2");
    etl::sync(
        "userflow",
        config(&users, serde_json::json!({})),
        &lake2,
        opts(1_000_000),
    )
    .await
    .unwrap();

    let duck = crate::dests::grid(
        &crate::dests::reader(&lake),
        "SELECT id || '|' || coalesce(plan, '-') || '|' || CAST(epoch_us(updated_at) AS VARCHAR) FROM \"user\" WHERE NOT _fivetran_deleted",
    );
    assert_eq!(duck.len(), 200);
    let script = r#"
import glob, json, sys
import pyarrow as pa, pyarrow.dataset as ds, pyarrow.parquet as pq
import polars as pl
from pyspark.sql import SparkSession

lake, lake2 = sys.argv[1], sys.argv[2]
spark = (SparkSession.builder.master("local[1]").appName("etl-test")
         .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
         .config("spark.driver.host", "127.0.0.1").config("spark.sql.session.timeZone", "UTC")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
users = spark.read.option("mergeSchema", "true").parquet(f"{lake}/user").where("NOT _fivetran_deleted")
spark_rows = sorted(f"{r.id}|{r.plan or '-'}|{r.us}" for r in
    users.selectExpr("id", "plan", "CAST(unix_micros(updated_at) AS STRING) AS us").collect())

def etl_dataset(path):
    files = glob.glob(f"{path}/**/*.parquet", recursive=True)
    first = ds.dataset(path, format="parquet", partitioning="hive")
    schema = pa.unify_schemas([pq.read_schema(f) for f in files] + [first.schema])
    return ds.dataset(path, format="parquet", partitioning="hive", schema=schema)

live = pl.scan_pyarrow_dataset(etl_dataset(f"{lake}/user")).filter(~pl.col("_fivetran_deleted")).collect()
polars_rows = sorted(f"{i}|{p or '-'}|{int(u.timestamp() * 1_000_000)}" for i, p, u in
    live.select("id", "plan", "updated_at").iter_rows())

raw = pl.read_parquet(glob.glob(f"{lake2}/users/**/*.parquet", recursive=True))
ids = raw.select(pl.col("raw").to_physical().str.json_path_match("$.id").alias("j"), "id")
print(json.dumps({"spark": spark_rows, "polars": polars_rows,
                  "json_ids_match": ids.filter(pl.col("j") == pl.col("id")).height,
                  "json_rows": ids.height}))
"#;
    let out = pyenv::run(
        Command::new(venv.join("bin").join("python"))
            // Spark binds to loopback only.
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .arg("-c")
            .arg(script)
            // Each connector's tables are in a dataset of their own.
            .arg(lake.join("fivetran_offset"))
            .arg(lake2.join("userflow")),
        Duration::from_secs(600),
    )
    .unwrap_or_else(|e| panic!("Spark/polars failed: {e}"));
    let json_line = out
        .rfind("{\"spark\"")
        .map(|i| out[i..].lines().next().unwrap_or(""))
        .unwrap_or_else(|| panic!("no result: {out}"));
    let v: serde_json::Value = serde_json::from_str(json_line).unwrap();
    let mut duck: Vec<String> = duck
        .iter()
        .map(|t| {
            t.trim_start_matches("Text(\"")
                .trim_end_matches("\")")
                .to_string()
        })
        .collect();
    duck.sort();
    let list = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(list("spark"), duck, "Spark differs from DuckDB");
    assert_eq!(list("polars"), duck, "polars differs from DuckDB");
    assert_eq!(duck.iter().filter(|r| r.contains("|pro|")).count(), 10);
    assert_eq!(
        (v["json_ids_match"].as_u64(), v["json_rows"].as_u64()),
        (Some(50), Some(50))
    );
}

/// A REST spec synced with the default (Fivetran) naming, as the docs read it.
async fn fivetran_named(
    spec: &str,
    mut config: serde_json::Value,
    out: &std::path::Path,
) -> etl::Result<etl::SyncSummary> {
    config["spec"] = serde_json::json!(spec);
    let c = etl::config::ConfigReader::from_map(config.as_object().unwrap().clone());
    let o = etl::SyncOptions {
        naming: None,
        ..opts(1_000_000)
    };
    etl::sync("rest", c, out, o).await
}
