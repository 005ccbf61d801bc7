//! The end-of-sync report on stdout: the text summary, or `--summary json`.

use etl::Error;

use crate::SummaryFormat;

/// The end-of-sync report on stdout, for every outcome: the summary as text
/// (after a failure, only when something was committed), or one JSON object.
pub fn report(
    format: SummaryFormat,
    started: std::time::Instant,
    connector: &str,
    out: &std::path::Path,
    stats: &etl::RunStats,
    outcome: &Result<etl::SyncSummary, Error>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let elapsed = started.elapsed().as_secs_f64();
    let committed = stats.committed();
    let summary = match outcome {
        Ok(s) => etl::SyncSummary {
            // The command's wall time, playground start and all.
            elapsed_secs: elapsed,
            ..s.clone()
        },
        Err(_) => etl::SyncSummary {
            connector: connector.to_string(),
            destination: out.display().to_string(),
            tables: committed.tables.clone(),
            rejected: committed.rejected,
            rows: stats.stream.rows.load(Relaxed),
            pages: stats.stream.pages.load(Relaxed),
            requests: stats.http.requests.load(Relaxed),
            retries: stats.http.retries.load(Relaxed),
            bytes: stats.http.bytes.load(Relaxed),
            waited_secs: stats.http.waited_ms.load(Relaxed) as f64 / 1e3,
            token_refreshes: stats.http.token_refreshes.load(Relaxed),
            commits: committed.commits,
            read_secs: 0.0,
            elapsed_secs: elapsed,
        },
    };
    match format {
        SummaryFormat::Text => match outcome {
            Ok(_) => out!("{summary}"),
            Err(_) if committed.commits > 0 => {
                out!("stopped early; committed before that:\n{summary}")
            }
            Err(_) => {}
        },
        SummaryFormat::Json => {
            let error = outcome.as_ref().err();
            let status = etl::runs::status_of(&outcome.as_ref().map(|_| ()));
            let quota_resets_at = match error {
                Some(Error::QuotaExhausted { source }) => source
                    .quota_resets_in()
                    .flatten()
                    .map(|s| chrono::Utc::now().timestamp_micros() + s as i64 * 1_000_000),
                _ => None,
            };
            let v = serde_json::json!({
                "status": status,
                "exit_code": error.map_or(0, |e| e.exit_code()),
                "error": error.map(|e| e.to_string()),
                "error_domain": error.map(|e| e.domain()),
                "retryable": error.map(|e| e.retryable()),
                "connector": summary.connector,
                "destination": summary.destination,
                "tables": summary.tables,
                "rejected": summary.rejected,
                "rows_read": summary.rows,
                "pages": summary.pages,
                "requests": summary.requests,
                "retries": summary.retries,
                "bytes_received": summary.bytes,
                "waited_secs": summary.waited_secs,
                "token_refreshes": summary.token_refreshes,
                "commits": summary.commits,
                "last_commit": committed.last_at_micros.map(|at| serde_json::json!({
                    "at": etl::decode::values::format_utc_micros(at),
                    "state": committed.last_state,
                })),
                "read_secs": summary.read_secs,
                "elapsed_secs": summary.elapsed_secs,
                "quota_resets_at": quota_resets_at.map(etl::decode::values::format_utc_micros),
            });
            out!("{v}");
        }
    }
}
