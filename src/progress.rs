//! Progress of a running sync: a live line on a terminal (rows per table,
//! pages, requests, retries, rate, time), and off a terminal an INFO log
//! line at most every few seconds, so a long sync is never silent.
//!
//! Log lines printed while the live line is shown go above it
//! ([`LogWriter`]), so neither tears the other.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::RunStats;

/// The live line, while one is shown.
static LIVE: OnceLock<ProgressBar> = OnceLock::new();

/// A `tracing` writer for stderr that prints above the live line.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match LIVE.get() {
            Some(bar) if !bar.is_finished() => bar.suspend(|| std::io::stderr().write_all(buf))?,
            _ => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// `12,345`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One line saying where the sync is.
pub fn line(stats: &RunStats, started: Instant) -> String {
    let rows = stats.stream.rows.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let tables: Vec<String> = stats
        .stream
        .table_rows()
        .iter()
        .map(|(t, n)| format!("{t} {}", thousands(*n)))
        .collect();
    format!(
        "{} rows{} · {} pages · {} requests · {} retries · {} rows/s · {:.0}s",
        thousands(rows),
        if tables.is_empty() {
            String::new()
        } else {
            format!(" ({})", tables.join(", "))
        },
        thousands(stats.stream.pages.load(Ordering::Relaxed)),
        thousands(stats.http.requests.load(Ordering::Relaxed)),
        thousands(stats.http.retries.load(Ordering::Relaxed)),
        thousands(if secs > 0.0 {
            (rows as f64 / secs) as u64
        } else {
            0
        }),
        secs
    )
}

/// Report progress until the returned guard is dropped: a live line when
/// `live`, else an INFO line every `every`.
pub fn start(stats: Arc<RunStats>, started: Instant, live: bool, every: Duration) -> Guard {
    let task = if live {
        let bar = LIVE.get_or_init(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
            b
        });
        bar.enable_steady_tick(Duration::from_millis(120));
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                bar.set_message(line(&stats, started));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    } else {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                tracing::info!("progress: {}", line(&stats, started));
            }
        })
    };
    Guard(task)
}

/// Stops the reporting (and clears the live line) when dropped.
pub struct Guard(tokio::task::JoinHandle<()>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.abort();
        if let Some(bar) = LIVE.get() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_tables_and_counts() {
        let stats = RunStats::default();
        stats.stream.rows.store(12_345, Ordering::Relaxed);
        stats
            .stream
            .tables
            .lock()
            .unwrap()
            .insert("users".into(), 12_345);
        let l = line(&stats, Instant::now());
        assert!(l.starts_with("12,345 rows (users 12,345) · 0 pages"), "{l}");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
    }
}
