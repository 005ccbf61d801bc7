//! [`WindowPlan`]: priority-first reading by time windows (the Connector
//! SDK's "priority-first sync"). Each sync reads forward from where the
//! last one ended to now, newest data first, then walks back into history
//! one window at a time until the history limit, optionally only a few
//! windows per sync. Every window is committed with the cursors it moves,
//! so a stopped sync resumes at the window it was reading.
//!
//! State (inside the stream's state, which may hold more):
//!
//! ```json
//! {"incremental_cursor": "2024-…Z", "historical_cursor": "2024-…Z", "historical_limit": "2024-…Z"}
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::decode::values::{format_utc_micros, parse_utc_micros};

/// The window cursors, as saved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// Where the forward read ends (the next sync reads on from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental_cursor: Option<String>,
    /// History is read from here back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub historical_cursor: Option<String>,
    /// Where history ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub historical_limit: Option<String>,
}

/// Where history ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HistoryLimit {
    /// This long before the first sync (fixed then, and kept in the state).
    Back(Duration),
    /// This instant (microseconds since the epoch).
    At(i64),
}

/// One window to read, `[start, end)` in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    /// A forward window (its start includes the lookback) or a history one.
    pub forward: bool,
}

/// What a table reads by windows: their size and lookback, how far back
/// history goes, and how many history windows a sync may read.
#[derive(Debug, Clone, Copy)]
pub struct WindowSpec {
    pub size: Duration,
    pub lookback: Duration,
    pub limit: HistoryLimit,
    pub history_per_sync: Option<u64>,
}

/// The windows of one sync, in order; [`close`](WindowPlan::close) each
/// after reading it, then checkpoint [`state`](WindowPlan::state).
#[derive(Debug, Clone)]
pub struct WindowPlan {
    spec: WindowSpec,
    now: i64,
    forward: i64,
    history: i64,
    limit: i64,
    history_read: u64,
}

impl WindowPlan {
    /// The plan of a sync at `now` (microseconds) from the saved cursors.
    pub fn new(spec: WindowSpec, saved: &WindowState, now: i64) -> Self {
        // Whole seconds: bounds are written in formats without fractions.
        let now = now - now.rem_euclid(1_000_000);
        let size = spec.size.as_micros() as i64;
        let read = |v: &Option<String>| v.as_deref().and_then(parse_utc_micros);
        let limit = match spec.limit {
            HistoryLimit::Back(d) => {
                read(&saved.historical_limit).unwrap_or(now - d.as_micros() as i64)
            }
            HistoryLimit::At(t) => t,
        };
        WindowPlan {
            spec,
            now,
            forward: read(&saved.incremental_cursor).unwrap_or(now - size),
            history: read(&saved.historical_cursor).unwrap_or(now - size),
            limit,
            history_read: 0,
        }
    }

    /// The next window to read, or `None` when this sync is done.
    pub fn next_window(&self) -> Option<Window> {
        let size = self.spec.size.as_micros() as i64;
        if self.forward < self.now {
            let lookback = self.spec.lookback.as_micros() as i64;
            return Some(Window {
                start: self.forward - lookback,
                end: (self.forward + size).min(self.now),
                forward: true,
            });
        }
        let more = self
            .spec
            .history_per_sync
            .is_none_or(|m| self.history_read < m);
        (self.history > self.limit && more).then(|| Window {
            start: (self.history - size).max(self.limit),
            end: self.history,
            forward: false,
        })
    }

    /// `w` was read: move the cursor it advances.
    pub fn close(&mut self, w: Window) {
        if w.forward {
            self.forward = w.end;
        } else {
            self.history = w.start;
            self.history_read += 1;
        }
    }

    /// The cursors to save.
    pub fn state(&self) -> WindowState {
        WindowState {
            incremental_cursor: Some(format_utc_micros(self.forward)),
            historical_cursor: Some(format_utc_micros(self.history)),
            historical_limit: Some(format_utc_micros(self.limit)),
        }
    }

    /// Where the forward read starts this sync.
    pub fn forward_from(&self) -> i64 {
        self.forward
    }

    /// How much history is left to read.
    pub fn history_left(&self) -> Duration {
        Duration::from_micros((self.history - self.limit).max(0) as u64)
    }

    /// History windows read this sync.
    pub fn history_read(&self) -> u64 {
        self.history_read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    fn read_all(plan: &mut WindowPlan) -> Vec<Window> {
        let mut seen = Vec::new();
        while let Some(w) = plan.next_window() {
            seen.push(w);
            plan.close(w);
        }
        seen
    }

    #[test]
    fn forward_first_then_history_back_to_the_limit() {
        let spec = WindowSpec {
            size: Duration::from_secs(24 * 3600),
            lookback: Duration::from_secs(3600),
            limit: HistoryLimit::Back(Duration::from_secs(3 * 24 * 3600)),
            history_per_sync: None,
        };
        let now = 1_000 * 24 * HOUR + 123;
        let mut plan = WindowPlan::new(spec, &WindowState::default(), now);
        let ws = read_all(&mut plan);
        let now = 1_000 * 24 * HOUR;
        // One forward window (yesterday to now, an hour of lookback), then
        // two days of history back to the limit.
        assert_eq!(ws.len(), 3, "{ws:?}");
        assert_eq!(
            (ws[0].start, ws[0].end, ws[0].forward),
            (now - 25 * HOUR, now, true)
        );
        assert_eq!((ws[1].start, ws[1].end), (now - 48 * HOUR, now - 24 * HOUR));
        assert_eq!((ws[2].start, ws[2].end), (now - 72 * HOUR, now - 48 * HOUR));
        assert_eq!(plan.history_left(), Duration::ZERO);
        // The next sync, a day later, reads one forward window and no history.
        let mut next = WindowPlan::new(spec, &plan.state(), now + 24 * HOUR);
        let ws = read_all(&mut next);
        assert_eq!(ws.len(), 1);
        assert_eq!((ws[0].start, ws[0].end), (now - HOUR, now + 24 * HOUR));
    }

    #[test]
    fn a_history_budget_stops_the_walk_and_the_next_sync_goes_on() {
        let spec = WindowSpec {
            size: Duration::from_secs(3600),
            lookback: Duration::ZERO,
            limit: HistoryLimit::At(0),
            history_per_sync: Some(2),
        };
        let now = 10 * HOUR;
        let mut plan = WindowPlan::new(spec, &WindowState::default(), now);
        assert_eq!(read_all(&mut plan).len(), 3);
        assert_eq!(plan.history_read(), 2);
        assert_eq!(plan.history_left(), Duration::from_secs(7 * 3600));
        let mut next = WindowPlan::new(spec, &plan.state(), now);
        let ws = read_all(&mut next);
        assert_eq!((ws[0].start, ws[0].end), (6 * HOUR, 7 * HOUR));
    }
}
