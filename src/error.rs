//! Typed errors for every layer, classified by whose fault they are.
//!
//! The CLI maps each error to an exit code ([`Error::exit_code`]): 2 bad
//! arguments or configuration, 3 the source's quota ran out, 4 the
//! destination is busy, 1 any other failure. Every
//! variant names *where* things went wrong: the file and key, the URL, or the
//! table, column and row. Secrets are redacted before an error is built (see
//! [`crate::http::Secret`]), so printing an error is always safe.

use std::path::PathBuf;

/// Library-wide result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is missing, unreadable, not JSON, or a key is invalid.
    #[error("configuration {}: {message}", source_name(.path))]
    Config {
        path: Option<PathBuf>,
        message: String,
    },

    /// The command line asks for something impossible (unknown connector, bad flag combination).
    #[error("{0}")]
    Usage(String),

    /// An HTTP request failed for good (after retries, or with a non-retryable status).
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),

    /// A page or value from the source does not fit the declared schema.
    #[error(transparent)]
    Decode(#[from] crate::decode::DecodeError),

    /// The source answered with something we cannot interpret (malformed page, missing field).
    #[error("{context}: {message}")]
    Source { context: String, message: String },

    /// The destination cannot be used as asked (a file where a dataset
    /// belongs, a directory that is not etl's, a partitioning or a column
    /// type it cannot change to); nothing was written. Fix the command.
    #[error("{message}")]
    Refused { target: String, message: String },

    /// The destination rejected an operation.
    #[error("destination {target}: {message}")]
    Destination { target: String, message: String },

    /// Another process holds the destination (a writer, or a reader holding
    /// the DuckDB file open); nothing was written.
    #[error("destination {target} is busy: {message}")]
    Busy { target: String, message: String },

    /// The source's request quota ran out; everything read until then was
    /// committed, and the next run continues from there.
    #[error("{source}. Everything read until then is committed; run the sync again after the reset to continue")]
    QuotaExhausted { source: crate::http::HttpError },

    /// A complete scan would have soft-deleted too large a share of a
    /// table's rows; what was read is committed, nothing was deleted.
    #[error("{}; nothing was soft-deleted (more than --max-delete-fraction {max_fraction} of the live rows, and the source reported no total that agrees). \
The rows read were committed. If the source really lost these rows, run the sync again with --max-delete-fraction 1", .refused.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; "))]
    DeletesRefused {
        refused: Vec<RefusedDelete>,
        max_fraction: f64,
    },

    /// SIGINT or SIGTERM stopped the sync; the destination was rolled back.
    #[error(
        "interrupted by {signal}: rolled back to the last commit; run the same command to resume"
    )]
    Interrupted { signal: &'static str },

    /// A bug or an unexpected internal condition.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Whose fault an error is, the first thing an orchestrator asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// Arguments, configuration or the spec: fix them and run again. A
    /// signal that stopped the run counts here too.
    User,
    /// The source: its answers, its availability, its quota.
    Source,
    /// The destination: refused, busy or broken.
    Destination,
    /// A bug in etl.
    Internal,
}

/// A soft-deletion of unseen rows the guard refused.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RefusedDelete {
    pub table: String,
    /// Live rows before.
    pub live: u64,
    /// Rows the scan did not see, which would have been soft-deleted.
    pub unseen: u64,
    /// The total the source reported, if any.
    pub source_total: Option<u64>,
}

impl std::fmt::Display for RefusedDelete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "table {}: the scan did not see {} of {} live rows ({:.0}%)",
            self.table,
            self.unseen,
            self.live,
            100.0 * self.unseen as f64 / self.live.max(1) as f64
        )?;
        if let Some(t) = self.source_total {
            write!(f, " while the source said it holds {t}")?;
        }
        Ok(())
    }
}

fn source_name(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "(inline)".to_string(),
    }
}

impl Error {
    /// The process exit code for this error: 2 bad arguments or
    /// configuration, 3 stopped by the source's quota (data committed), 4
    /// the destination is busy (another process has it), 1 any other
    /// failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            _ if self.is_user_error() => 2,
            Error::QuotaExhausted { .. } => 3,
            Error::Busy { .. } => 4,
            // The shell's convention: 128 + the signal's number.
            Error::Interrupted { signal: "SIGINT" } => 130,
            Error::Interrupted { .. } => 143,
            _ => 1,
        }
    }

    /// Whose fault the error is.
    pub fn domain(&self) -> Domain {
        match self {
            Error::Config { .. }
            | Error::Usage(_)
            | Error::Refused { .. }
            | Error::Interrupted { .. } => Domain::User,
            Error::Http(_)
            | Error::Decode(_)
            | Error::Source { .. }
            | Error::QuotaExhausted { .. }
            | Error::DeletesRefused { .. } => Domain::Source,
            Error::Destination { .. } | Error::Busy { .. } => Domain::Destination,
            Error::Internal(_) => Domain::Internal,
        }
    }

    /// Whether running the same sync again, unchanged, may succeed: the
    /// server was unreachable, timed out or failed (after every retry), its
    /// quota resets, the destination was busy, or the run was interrupted.
    /// A bad answer, a bad value, bad configuration or a bug fails again.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Http(e) => match &e.kind {
                crate::http::HttpErrorKind::Transport(_) | crate::http::HttpErrorKind::Timeout => {
                    true
                }
                crate::http::HttpErrorKind::Status { status, .. } => {
                    matches!(status, 408 | 429 | 500..=599)
                }
                crate::http::HttpErrorKind::Quota { .. } => true,
            },
            Error::QuotaExhausted { .. } | Error::Busy { .. } | Error::Interrupted { .. } => true,
            _ => false,
        }
    }

    /// The source's quota ran out (an HTTP error that says so).
    pub fn is_quota(&self) -> bool {
        match self {
            Error::QuotaExhausted { .. } => true,
            Error::Http(e) => e.quota_resets_in().is_some(),
            _ => false,
        }
    }

    /// True when the user can fix this by changing arguments or configuration.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::Config { .. } | Error::Usage(_) | Error::Refused { .. }
        )
    }

    /// Build a configuration error for a file.
    pub fn config(path: Option<&std::path::Path>, message: impl Into<String>) -> Self {
        Error::Config {
            path: path.map(|p| p.to_path_buf()),
            message: message.into(),
        }
    }

    /// Build the refusal of a destination that cannot be used as asked.
    pub fn refused(target: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Refused {
            target: target.into(),
            message: message.to_string(),
        }
    }

    /// Build a destination error.
    pub fn destination(target: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Destination {
            target: target.into(),
            message: message.to_string(),
        }
    }

    /// Build a source (malformed response) error.
    pub fn source(context: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Source {
            context: context.into(),
            message: message.to_string(),
        }
    }
}

pub use crate::text::truncate_for_display;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HttpError, HttpErrorKind};

    fn http(kind: HttpErrorKind) -> Error {
        Error::Http(HttpError {
            method: "GET".into(),
            url: "http://h/x".into(),
            attempts: 3,
            kind,
        })
    }

    #[test]
    fn every_error_says_whose_it_is_and_whether_a_rerun_may_succeed() {
        let status = |s: u16| HttpErrorKind::Status {
            status: s,
            message: String::new(),
        };
        let cases = [
            (Error::Usage("x".into()), Domain::User, false),
            (Error::refused("w.duckdb", "x"), Domain::User, false),
            (Error::config(None, "x"), Domain::User, false),
            (http(HttpErrorKind::Timeout), Domain::Source, true),
            (http(status(503)), Domain::Source, true),
            (http(status(429)), Domain::Source, true),
            (http(status(404)), Domain::Source, false),
            (Error::source("page", "not JSON"), Domain::Source, false),
            (
                Error::Busy {
                    target: "t".into(),
                    message: "m".into(),
                },
                Domain::Destination,
                true,
            ),
            (Error::destination("t", "m"), Domain::Destination, false),
            (Error::Internal("x".into()), Domain::Internal, false),
        ];
        for (e, domain, retryable) in cases {
            assert_eq!((e.domain(), e.retryable()), (domain, retryable), "{e}");
        }
    }
}
