//! What a failed request says: the kind of failure, the error a connector
//! gets (method, redacted URL, attempts), and the human message picked out of
//! an error body.

use std::fmt;

use reqwest::StatusCode;

use crate::text::truncate_for_display;

/// What went wrong with a request, for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpErrorKind {
    /// The server answered with an error status.
    Status { status: u16, message: String },
    /// No answer: connection refused/reset, DNS, TLS.
    Transport(String),
    /// No complete answer within the timeout.
    Timeout,
    /// The request quota is used up until `resets_in` (seconds) from now.
    Quota {
        status: u16,
        message: String,
        resets_in: Option<u64>,
    },
}

/// A request that failed for good.
#[derive(Debug, Clone, thiserror::Error)]
pub struct HttpError {
    pub method: String,
    pub url: String,
    pub attempts: u32,
    pub kind: HttpErrorKind,
}

impl HttpError {
    /// The failure without method and URL: `HTTP 422: …`, `timed out`.
    pub fn kind_text(&self) -> String {
        kind_text(&self.kind)
    }

    pub fn status(&self) -> Option<u16> {
        match self.kind {
            HttpErrorKind::Status { status, .. } | HttpErrorKind::Quota { status, .. } => {
                Some(status)
            }
            _ => None,
        }
    }

    /// Seconds until the request quota resets, when that is why it failed.
    pub fn quota_resets_in(&self) -> Option<Option<u64>> {
        match self.kind {
            HttpErrorKind::Quota { resets_in, .. } => Some(resets_in),
            _ => None,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.url)?;
        if self.attempts > 1 {
            write!(f, " failed after {} attempts", self.attempts)?;
        }
        match &self.kind {
            HttpErrorKind::Status { status, message } => {
                let reason = StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(f, ": HTTP {status} {reason}")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            HttpErrorKind::Transport(m) => write!(f, ": {m}"),
            HttpErrorKind::Timeout => write!(f, ": timed out"),
            k @ HttpErrorKind::Quota { .. } => write!(f, ": {}", kind_text(k)),
        }
    }
}

pub(super) fn kind_text(kind: &HttpErrorKind) -> String {
    match kind {
        HttpErrorKind::Status { status, message } => format!("HTTP {status}: {message}"),
        HttpErrorKind::Transport(m) => m.clone(),
        HttpErrorKind::Timeout => "timed out".into(),
        HttpErrorKind::Quota {
            status,
            message,
            resets_in,
        } => {
            let when = match resets_in {
                Some(s) => format!(
                    "; it resets in {} ({})",
                    human_duration(*s),
                    crate::text::format_utc_micros(
                        chrono::Utc::now().timestamp_micros() + *s as i64 * 1_000_000
                    )
                ),
                None => String::new(),
            };
            format!("request quota exhausted (HTTP {status}: {message}){when}")
        }
    }
}

/// `3h 12m`, `45s`.
pub fn human_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m"),
    }
}

/// The human message in an error body: common JSON shapes, else the text.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let pick = |v: &serde_json::Value| -> Option<String> {
            match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        // Userflow: {"error": {"code", "message"}}
        if let Some(e) = v.get("error") {
            if let (Some(code), Some(msg)) = (
                e.get("code").and_then(|c| c.as_str()),
                e.get("message").and_then(pick),
            ) {
                return truncate_for_display(&format!("{code}: {msg}"), 500);
            }
            if let Some(s) = pick(e) {
                return truncate_for_display(&s, 500);
            }
        }
        // Prefect/pydantic validation: {"exception_message", "exception_detail": [{"loc", "msg"}]}
        if let Some(details) = v.get("exception_detail").and_then(|d| d.as_array()) {
            let parts: Vec<String> = details
                .iter()
                .filter_map(|d| {
                    let msg = d.get("msg")?.as_str()?;
                    let loc: Vec<String> = d
                        .get("loc")
                        .and_then(|l| l.as_array())
                        .map(|l| {
                            l.iter()
                                .map(|p| p.as_str().map_or(p.to_string(), String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                    Some(if loc.is_empty() {
                        msg.to_string()
                    } else {
                        format!("{}: {msg}", loc.join("."))
                    })
                })
                .collect();
            if !parts.is_empty() {
                let head = v
                    .get("exception_message")
                    .and_then(pick)
                    .unwrap_or_default();
                return truncate_for_display(format!("{head} {}", parts.join("; ")).trim(), 500);
            }
        }
        for key in [
            "detail",
            "message",
            "errorMessage",
            "error_description",
            "exception_message",
            "errors",
        ] {
            if let Some(s) = v.get(key).and_then(pick) {
                return truncate_for_display(&s, 500);
            }
        }
    }
    truncate_for_display(String::from_utf8_lossy(body).trim(), 500)
}
