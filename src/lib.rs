//! `etl`: pull SaaS APIs into a local DuckDB file or Parquet dataset, merged by primary key,
//! incrementally, with data and state committed together.
//!
//! The library is split by role: [`config`] (checked once, no I/O),
//! [`schema`] (tables as data), [`http`] (retries, auth, rate budgets),
//! [`source`] (the connector framework: emitting, paginators, ordered
//! fetching), [`decode`] (pages → Arrow), [`connectors`] (sources), [`dest`]
//! (destinations), [`state`], [`engine`] (streams → writer → commits) and
//! [`playground`] (local mocks of every API). The `etl` binary is a thin CLI
//! over [`sync`].

// Errors carry their full context (table, column, row, value, URL) by value;
// they are on the cold path (one ends a sync), so their size does not matter.
#![allow(clippy::result_large_err)]
// serde_json::json! of the mocks' full Prefect objects nests deeper than the default.
#![recursion_limit = "256"]

pub mod config;
pub mod connectors;
pub mod decode;
pub mod dest;
pub mod engine;
pub mod error;
pub mod http;
pub mod naming;
pub mod playground;
pub mod progress;
pub mod runs;
pub mod schema;
pub mod source;
pub mod state;
pub mod text;

use std::path::Path;
use std::sync::Arc;

pub use crate::engine::{OutputFormat, RunStats, SyncOptions, SyncSummary};
pub use crate::error::{Error, Result};

use crate::config::ConfigReader;
use crate::dest::duckdb::DuckDbDestination;
use crate::dest::namespace::Namespace;
use crate::dest::parquet::delta::store as delta_store;
use crate::dest::parquet::ParquetDestination;
use crate::dest::Destination;
use crate::naming::Naming;

/// Run one sync of `connector` with `config` into `out`: a DuckDB file or a
/// Parquet dataset directory (`opts.format`, or inferred from the path).
pub async fn sync(
    connector: &str,
    config: ConfigReader,
    out: &Path,
    opts: SyncOptions,
) -> Result<SyncSummary> {
    sync_with(connector, config, out, opts, Arc::new(RunStats::default())).await
}

/// [`sync`], counting into `stats`, which the caller can read whatever the
/// outcome (what was committed before a failure) or while it runs.
pub async fn sync_with(
    connector: &str,
    config: ConfigReader,
    out: &Path,
    opts: SyncOptions,
    stats: Arc<RunStats>,
) -> Result<SyncSummary> {
    let info = connectors::find(connector).ok_or_else(|| unknown_connector(connector))?;
    let conn = (info.build)(config, stats.http.clone())?;
    let format = opts.format.unwrap_or_else(|| OutputFormat::infer(out));
    // Checked before anything is opened or created, against the names the
    // tables land with (`etl schema` shows them).
    let mut renamer = naming::Renamer::new(opts.naming.unwrap_or_default());
    let tables: Vec<Arc<schema::TableSchema>> =
        conn.tables().iter().map(|t| renamer.table(t)).collect();
    let opts = SyncOptions {
        tables: opts
            .tables
            .as_ref()
            .map(|asked| select_tables(conn.as_ref(), &tables, asked))
            .transpose()?,
        ..opts
    };
    for (table, spec) in &opts.parquet.partition_overrides {
        let Some(t) = tables.iter().find(|t| &t.name == table) else {
            return Err(Error::Usage(format!(
                "--partition-by names table {table:?}, which connector {connector} does not have (see `etl schema {connector}`)"
            )));
        };
        if let Some(p) = spec {
            p.check(t)
                .map_err(|e| Error::Usage(format!("--partition-by {table}={p}: {e}")))?;
        }
    }
    if format == OutputFormat::DuckDb && out.is_dir() {
        return Err(Error::Usage(format!(
            "--out {} is a directory; give a DuckDB file path such as warehouse.duckdb, or --format parquet",
            out.display()
        )));
    }
    let ns = Namespace::new(opts.schema.as_deref(), &conn.default_schema(), conn.name())?;
    // Opening a destination is blocking I/O; keep it off the async workers.
    let (dest, naming) = {
        let (path, opts, ns) = (out.to_path_buf(), opts.clone(), ns.clone());
        tokio::task::spawn_blocking(move || open_destination(&path, format, &opts, &ns))
            .await
            .map_err(|e| Error::Internal(format!("opening the destination panicked: {e}")))??
    };
    let started = chrono::Utc::now().timestamp_micros();
    let run_opts = SyncOptions {
        naming: Some(naming),
        ..opts.clone()
    };
    let outcome = engine::run_sync(conn, dest, run_opts, stats.clone()).await;
    // The writer has closed the destination: reopen it for the run's row.
    let status = runs::status_of(&outcome.as_ref().map(|_| ()));
    let error = outcome.as_ref().err().map(|e| e.to_string());
    let (name, path) = (info.name.to_string(), out.to_path_buf());
    let recorded = tokio::task::spawn_blocking(move || -> Result<()> {
        let (mut dest, naming) = open_destination(&path, format, &opts, &ns)?;
        runs::record(dest.as_mut(), naming, &name, started, &stats, status, error)
    })
    .await;
    match recorded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not record the run in {}", runs::RUNS_TABLE)
        }
        Err(e) => tracing::warn!(error = %e, "recording the run panicked"),
    }
    outcome
}

/// Open the destination of a sync, with the naming its tables are written
/// with: `--naming`, else the one the schema was written with, else
/// Fivetran's. A `--naming` other than the schema's is refused.
fn open_destination(
    path: &Path,
    format: OutputFormat,
    opts: &SyncOptions,
    ns: &Namespace,
) -> Result<(Box<dyn Destination>, Naming)> {
    let mut dest = open_format(path, format, opts, ns)?;
    let recorded = dest.recorded_naming()?;
    let naming = match (opts.naming, recorded) {
        (Some(asked), Some(was)) if asked != was => {
            return Err(Error::Usage(format!(
                "{} was written with --naming {was}; a sync with --naming {asked} would mix both \
                 in one schema: pass --naming {was}, or write into another schema (--schema NAME)",
                dest.describe()
            )))
        }
        (asked, was) => asked.or(was).unwrap_or_default(),
    };
    if recorded != Some(naming) {
        dest.record_naming(naming)?;
    }
    Ok((dest, naming))
}

fn open_format(
    path: &Path,
    format: OutputFormat,
    opts: &SyncOptions,
    ns: &Namespace,
) -> Result<Box<dyn Destination>> {
    Ok(match format {
        OutputFormat::DuckDb => Box::new(DuckDbDestination::open_in(
            path,
            opts.memory_limit.as_deref(),
            &opts.duckdb_storage_version,
            ns,
            true,
        )?),
        OutputFormat::Parquet if delta_store::is_remote(&path.to_string_lossy()) => {
            return Err(Error::Usage(format!(
                "--out {}: object storage holds Delta tables only; pass --format delta",
                path.display()
            )))
        }
        OutputFormat::Parquet => Box::new(ParquetDestination::open_in(
            path,
            opts.parquet.clone(),
            ns,
            true,
        )?),
        OutputFormat::Delta => Box::new(ParquetDestination::open_delta(
            &path.to_string_lossy(),
            opts.parquet.clone(),
            ns,
            true,
        )?),
    })
}

/// Open the namespace `ns` of the destination that `out` already holds
/// (for `etl state` and `etl reset`); an error when it holds none, so
/// nothing is created by mistake.
pub fn open_existing(
    out: &Path,
    format: Option<OutputFormat>,
    ns: &Namespace,
) -> Result<Box<dyn Destination>> {
    let format = format.unwrap_or_else(|| OutputFormat::infer(out));
    Ok(match format {
        OutputFormat::DuckDb if out.is_file() => Box::new(DuckDbDestination::open_in(
            out,
            None,
            crate::dest::duckdb::DEFAULT_STORAGE_VERSION,
            ns,
            false,
        )?),
        OutputFormat::DuckDb => {
            return Err(Error::Usage(format!(
                "there is no DuckDB file at {}",
                out.display()
            )))
        }
        OutputFormat::Parquet if out.is_dir() => Box::new(ParquetDestination::open_in(
            out,
            Default::default(),
            ns,
            false,
        )?),
        OutputFormat::Parquet => {
            return Err(Error::Usage(format!(
                "there is no etl Parquet dataset at {} (a DuckDB file's path ends in .duckdb)",
                out.display()
            )))
        }
        OutputFormat::Delta => Box::new(ParquetDestination::open_delta(
            &out.to_string_lossy(),
            Default::default(),
            ns,
            false,
        )?),
    })
}

/// The connector's own names of the tables `asked` names (`--tables`: as
/// they land, or as the connector calls them), refusing unknown names and a
/// table read for the records of another that is not asked for too.
fn select_tables(
    conn: &dyn connectors::Connector,
    landed: &[Arc<schema::TableSchema>],
    asked: &[String],
) -> Result<Vec<String>> {
    let own = conn.tables();
    let mut picked = Vec::new();
    for a in asked {
        let found = own
            .iter()
            .zip(landed)
            .find(|(o, l)| &o.name == a || &l.name == a);
        let Some((o, _)) = found else {
            let names: Vec<&str> = landed.iter().map(|t| t.name.as_str()).collect();
            return Err(Error::Usage(format!(
                "--tables names {a:?}, which connector {} does not have; its tables: {}",
                conn.name(),
                names.join(", ")
            )));
        };
        if !picked.contains(&o.name) {
            picked.push(o.name.clone());
        }
    }
    if picked.is_empty() {
        return Err(Error::Usage("--tables names no table".into()));
    }
    for p in &picked {
        if let Some(parent) = conn.read_for_each_record_of(p) {
            if !picked.contains(&parent) {
                return Err(Error::Usage(format!(
                    "--tables: table {p} is read for each record of {parent}; add {parent} to --tables"
                )));
            }
        }
    }
    Ok(picked)
}

/// The error for a connector name nobody registered.
pub fn unknown_connector(name: &str) -> Error {
    let names: Vec<&str> = connectors::registry().iter().map(|c| c.name).collect();
    Error::Usage(format!(
        "unknown connector {name:?}; available: {}",
        names.join(", ")
    ))
}
