//! Flags of `etl sync` that do not apply to the chosen output or connector
//! are usage errors, never silently ignored.

use etl::Error;

use crate::SyncArgs;

/// Flags that would do nothing here are usage errors, not silently ignored.
pub fn check_flags_apply(a: &SyncArgs, connector: &str) -> Result<(), Error> {
    let format = a
        .format
        .map_or_else(|| etl::OutputFormat::infer(&a.out), Into::into);
    let out = a.out.display();
    let (other, flags): (&str, Vec<&str>) = match format {
        etl::OutputFormat::DuckDb => (
            "Parquet output",
            [
                (!a.partition_by.is_empty(), "--partition-by"),
                (a.compression.is_some(), "--compression"),
                (a.max_file_mib.is_some(), "--max-file-mib"),
            ]
            .into_iter()
            .filter_map(|(set, f)| set.then_some(f))
            .collect(),
        ),
        etl::OutputFormat::Parquet | etl::OutputFormat::Delta => (
            "DuckDB output",
            [
                (a.memory_limit.is_some(), "--memory-limit"),
                (
                    a.duckdb_storage_version.is_some(),
                    "--duckdb-storage-version",
                ),
            ]
            .into_iter()
            .filter_map(|(set, f)| set.then_some(f))
            .collect(),
        ),
    };
    if let Some(f) = flags.first() {
        let what = match format {
            etl::OutputFormat::DuckDb => "a DuckDB file",
            etl::OutputFormat::Parquet => "a Parquet dataset",
            etl::OutputFormat::Delta => "a Delta lake",
        };
        return Err(Error::Usage(format!(
            "{f} applies to {other}, but --out {out} is {what} (a path ending in .duckdb is a DuckDB file; --format chooses)"
        )));
    }
    if a.playground_users.is_some() && !matches!(connector, "userflow" | "egnyte") {
        return Err(Error::Usage(format!(
            "--playground-users applies to the userflow and egnyte playgrounds, not {connector}"
        )));
    }
    if a.playground_flow_runs.is_some() && connector != "prefect" {
        return Err(Error::Usage(format!(
            "--playground-flow-runs applies to the prefect playground, not {connector}"
        )));
    }
    Ok(())
}
