//! `etl vacuum`: housekeeping of a Delta lake.

use clap::Args;
use etl::dest::parquet::delta::vacuum::{vacuum as run_vacuum, DEFAULT_RETENTION};
use etl::Error;

#[derive(Args)]
pub struct VacuumArgs {
    /// The Delta lake: a directory or s3://bucket/prefix.
    #[arg(long, short = 'o', value_name = "PATH")]
    out: String,
    /// Only this schema's tables (default: every schema etl wrote there).
    #[arg(long, value_name = "NAME")]
    schema: Option<String>,
    /// Keep files replaced less than this many hours ago, so readers of
    /// recent versions (time travel, long queries) still find them.
    #[arg(long, value_name = "HOURS", default_value_t = DEFAULT_RETENTION.as_secs() / 3600)]
    retention_hours: u64,
    /// List what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn vacuum(a: VacuumArgs) -> Result<(), Error> {
    let retention = std::time::Duration::from_secs(a.retention_hours * 3600);
    let done = run_vacuum(&a.out, a.schema.as_deref(), retention, a.dry_run)?;
    let verb = if a.dry_run { "would delete" } else { "deleted" };
    let mut total = 0;
    for v in &done {
        total += v.files;
        out!("{}.{}: {verb} {} files", v.schema, v.table, v.files);
    }
    out!(
        "{} tables vacuumed, {verb} {total} files older than {} hours",
        done.len(),
        a.retention_hours
    );
    Ok(())
}
