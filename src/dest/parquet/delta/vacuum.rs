//! `etl vacuum`: delete the data files no current snapshot of a lake's
//! tables needs (replaced by a later commit, or written by a commit that
//! never happened), once they are older than the retention period.
//! delta-rs's vacuum, in its full mode (files the log never named count).

use std::time::Duration;

use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::DeltaTableBuilder;

use super::store::{clean, Location, ObjectIo};
use super::STATE_TABLE;
use crate::error::{Error, Result};

/// Delta's own default retention of removed files (`delta.deletedFileRetentionDuration`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What vacuuming one table did.
#[derive(Debug, Clone)]
pub struct Vacuumed {
    pub schema: String,
    pub table: String,
    /// Files deleted (or, in a dry run, that would be).
    pub files: usize,
}

/// Vacuum every Delta table of `schema` (every schema etl wrote when `None`)
/// in the lake `out`.
pub fn vacuum(
    out: &str,
    schema: Option<&str>,
    retention: Duration,
    dry_run: bool,
) -> Result<Vec<Vacuumed>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("starting the Delta runtime: {e}")))?;
    let loc = Location::parse(out, false)?;
    let lake = ObjectIo {
        base: loc.prefix.clone(),
        loc: loc.clone(),
        rt: rt.handle().clone(),
    };
    let schemas: Vec<String> = match schema {
        Some(s) => vec![s.to_string()],
        None => lake
            .dirs("")?
            .into_iter()
            .filter(|s| {
                lake.any_under(&format!("{s}/{STATE_TABLE}/_delta_log/"))
                    .unwrap_or(false)
            })
            .collect(),
    };
    if schemas.is_empty() {
        return Err(Error::Usage(format!(
            "{out} holds no etl Delta lake (no <schema>/{STATE_TABLE} table): nothing to vacuum"
        )));
    }
    let retention = chrono::Duration::from_std(retention)
        .map_err(|e| Error::Usage(format!("--retention-hours: {e}")))?;
    let mut done = Vec::new();
    for s in &schemas {
        let tables = lake.dirs(s)?;
        if !tables.iter().any(|t| t == STATE_TABLE) {
            return Err(Error::Usage(format!(
                "{out} has no etl schema {s} (no {s}/{STATE_TABLE} table)"
            )));
        }
        for t in tables {
            if !lake.any_under(&format!("{s}/{t}/_delta_log/"))? {
                continue;
            }
            let url = loc.join(&format!("{s}/{t}"));
            let root = loc.root.clone();
            let r = rt.block_on(async move {
                let table = DeltaTableBuilder::from_url(url.clone())?
                    .with_storage_backend(root, url)
                    .load()
                    .await?;
                table
                    .vacuum()
                    .with_retention_period(retention)
                    .with_enforce_retention_duration(false)
                    .with_mode(VacuumMode::Full)
                    .with_dry_run(dry_run)
                    .await
            });
            let (_, metrics) = r.map_err(|e| {
                Error::destination(
                    format!("{}/{s}/{t}", out.trim_end_matches('/')),
                    format!("vacuuming: {}", clean(&e.to_string())),
                )
            })?;
            tracing::debug!(schema = %s, table = %t, files = metrics.files_deleted.len(), dry_run, "vacuumed");
            done.push(Vacuumed {
                schema: s.clone(),
                table: t,
                files: metrics.files_deleted.len(),
            });
        }
    }
    rt.shutdown_background();
    Ok(done)
}
