//! [`CursorScan`]: a stream read incrementally, from where the last sync's
//! cursor (a UTC instant) stands, usually less a lookback for late writes.
//! Pages are checkpointed with the *old* cursor and where the read stands,
//! so an interrupted read resumes there and misses nothing; the cursor
//! moves only when a read ends, and only as far as its evidence allows
//! ([`CursorEnd`]): a read that saw the list move keeps the old cursor and
//! reads the same range again next time (merges are idempotent).
//!
//! State (version 2):
//!
//! ```json
//! {"v": 2, "cursor": "2024-…Z", "cursor_us": 1733011200000000, "scan": {…where the read stands}, "count": 2000}
//! {"v": 2, "cursor": "2024-…Z", "cursor_us": 1733011200000000, "stable": true, "count": 2000}
//! ```
//!
//! The states written before versions existed had the same keys.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{load, now_micros, to_value, STATE_VERSION};
use crate::decode::values::format_utc_micros;
use crate::error::Result;
use crate::source::emit::Emitter;
use crate::state::State;

/// What an incremental stream's state holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved<P> {
    #[serde(default)]
    v: u32,
    /// The cursor, for people (`cursor_us` is what is read back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor_us: Option<i64>,
    /// Where an interrupted read stands.
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    scan: Option<P>,
    /// How many rows the source had at the last read (bounds how far ahead
    /// the next one fetches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    /// Whether the last read saw the list hold still.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stable: Option<bool>,
}

impl<P> Default for Saved<P> {
    fn default() -> Self {
        Saved {
            v: STATE_VERSION,
            cursor: None,
            cursor_us: None,
            scan: None,
            count: None,
            stable: None,
        }
    }
}

impl<P> Saved<P> {
    fn with_cursor(cursor_us: Option<i64>) -> Self {
        Saved {
            cursor: cursor_us.map(format_utc_micros),
            cursor_us,
            ..Default::default()
        }
    }
}

/// How a read ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CursorEnd {
    /// The new cursor; `None` keeps the old one (the read proved nothing).
    pub advance_to: Option<i64>,
    /// Whether the list held still during the read (kept for the curious).
    pub stable: bool,
    /// The source's row count, when the read learnt it.
    pub count: Option<u64>,
}

/// One incremental read of one stream; `P` is where the read stands after
/// a page (an offset, a list position).
pub struct CursorScan<P> {
    stream: String,
    cursor_us: Option<i64>,
    resume: Option<P>,
    count: Option<u64>,
    began_us: i64,
}

impl<P: Serialize + DeserializeOwned + Clone> CursorScan<P> {
    /// Begin reading `stream` from its saved cursor, resuming the read its
    /// saved state left unfinished.
    pub fn begin(state: &State, stream: &str) -> Result<Self> {
        let saved: Saved<P> = load(state, stream, "an incremental read")?;
        if let Some(c) = saved.cursor_us {
            tracing::debug!(stream, cursor = %format_utc_micros(c), "reading changes since the cursor");
        }
        Ok(CursorScan {
            stream: stream.to_string(),
            cursor_us: saved.cursor_us,
            resume: saved.scan,
            count: saved.count,
            began_us: now_micros(),
        })
    }

    /// The saved cursor (`None`: never read to the end, read everything).
    pub fn cursor_us(&self) -> Option<i64> {
        self.cursor_us
    }

    /// Where to read from: the cursor less `lookback`.
    pub fn since(&self, lookback: std::time::Duration) -> Option<i64> {
        self.cursor_us.map(|c| c - lookback.as_micros() as i64)
    }

    /// Where an interrupted read stopped (`None`: from the start).
    pub fn resume_at(&self) -> Option<&P> {
        self.resume.as_ref()
    }

    /// The source's row count the last read saw.
    pub fn previous_count(&self) -> Option<u64> {
        self.count
    }

    /// When this read began (by this machine's clock).
    pub fn began_us(&self) -> i64 {
        self.began_us
    }

    /// Checkpoint a page: the cursor stays, the read stands at `at` (`None`:
    /// a read that cannot resume).
    pub async fn page(&self, emit: &Emitter, at: Option<P>) -> Result<()> {
        let saved = Saved {
            scan: at,
            count: self.count,
            ..Saved::with_cursor(self.cursor_us)
        };
        emit.checkpoint(&self.stream, to_value(&saved)?).await
    }

    /// The read reached its end: save the new cursor (or keep the old one).
    pub async fn finish(self, emit: &Emitter, end: CursorEnd) -> Result<()> {
        let cursor_us = end.advance_to.or(self.cursor_us);
        let saved: Saved<P> = Saved {
            count: end.count.or(self.count),
            stable: Some(end.stable),
            ..Saved::with_cursor(cursor_us)
        };
        if !end.stable {
            tracing::warn!(stream = %self.stream, "the list moved during the read; the next sync reads the same range again");
        }
        emit.checkpoint(&self.stream, to_value(&saved)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Offset {
        offset: u64,
    }

    #[test]
    fn states_written_before_versions_are_read() {
        let old = json!({"scan": {"offset": 400}, "cursor_us": 5, "count": 2000});
        let s: Saved<Offset> = serde_json::from_value(old).unwrap();
        assert_eq!(s.scan, Some(Offset { offset: 400 }));
        assert_eq!((s.cursor_us, s.count, s.v), (Some(5), Some(2000), 0));
        let done = json!({"cursor": "x", "cursor_us": 7, "stable": false});
        let s: Saved<Offset> = serde_json::from_value(done).unwrap();
        assert_eq!(
            (s.cursor_us, s.stable, s.scan),
            (Some(7), Some(false), None)
        );
    }

    #[test]
    fn the_written_state_names_the_cursor_for_people() {
        let s: Saved<Offset> = Saved {
            scan: Some(Offset { offset: 3 }),
            ..Saved::with_cursor(Some(1_733_011_200_000_000))
        };
        assert_eq!(
            to_value(&s).unwrap(),
            json!({"v": 2, "cursor": "2024-12-01T00:00:00.000000Z", "cursor_us": 1_733_011_200_000_000i64, "scan": {"offset": 3}})
        );
        let none: Saved<Offset> = Saved::with_cursor(None);
        assert_eq!(to_value(&none).unwrap(), json!({"v": 2}));
    }
}
