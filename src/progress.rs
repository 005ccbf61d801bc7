//! Progress of a running sync: on a terminal, a live display on stderr (a
//! line with rows, pages, requests, retries, rate, time, any retry wait in
//! progress and token refreshes, then one line per table with a bar and ETA
//! where the source told its total); off a terminal, an INFO log line at
//! most every few seconds, so a long sync is never silent.
//!
//! Log lines printed while the live display is shown go above it
//! ([`LogWriter`]), so neither tears the other.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Extent, RunStats};

/// The live display, while one is shown.
static LIVE: OnceLock<MultiProgress> = OnceLock::new();

/// A `tracing` writer for stderr that prints above the live display.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match LIVE.get() {
            Some(multi) => multi.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
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

/// `12.3 MB`.
fn megabytes(n: u64) -> String {
    format!("{:.1} MB", n as f64 / 1e6)
}

/// `1,200/5,000 (24%)`, `3.1/12.0 MB (25%)`.
fn of_total(x: &Extent) -> String {
    let pct = (x.done * 100).checked_div(x.total).unwrap_or(100);
    if x.bytes {
        format!("{}/{} ({pct}%)", megabytes(x.done), megabytes(x.total))
    } else {
        format!("{}/{} ({pct}%)", thousands(x.done), thousands(x.total))
    }
}

/// What the HTTP side is doing besides requests: a retry wait in progress
/// (` · waiting 12s after HTTP 429, …`) and token refreshes.
fn http_notes(stats: &RunStats) -> String {
    let mut out = String::new();
    if let Some((left, why)) = stats.http.current_wait() {
        out.push_str(&format!(
            " · waiting {:.0}s after {why}",
            left.as_secs_f64().ceil()
        ));
    }
    match stats.http.token_refreshes.load(Ordering::Relaxed) {
        0 => {}
        1 => out.push_str(" · 1 token refresh"),
        n => out.push_str(&format!(" · {n} token refreshes")),
    }
    out
}

/// The totals: rows, pages, requests, retries, rate, time, HTTP notes.
fn totals(stats: &RunStats, started: Instant) -> String {
    let rows = stats.stream.rows.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    format!(
        "{} rows · {} pages · {} requests · {} retries · {} rows/s · {:.0}s{}",
        thousands(rows),
        thousands(stats.stream.pages.load(Ordering::Relaxed)),
        thousands(stats.http.requests.load(Ordering::Relaxed)),
        thousands(stats.http.retries.load(Ordering::Relaxed)),
        thousands(if secs > 0.0 {
            (rows as f64 / secs) as u64
        } else {
            0
        }),
        secs,
        http_notes(stats)
    )
}

/// One line saying where the sync is (the log line off a terminal).
pub fn line(stats: &RunStats, started: Instant) -> String {
    let extents = stats.stream.extents();
    let mut tables: BTreeMap<String, String> = stats
        .stream
        .table_rows()
        .into_iter()
        .map(|(t, n)| (t, thousands(n)))
        .collect();
    for (t, x) in &extents {
        let rows = tables.remove(t);
        let read = if x.bytes {
            format!("{} rows, ", rows.unwrap_or_else(|| "0".into()))
        } else {
            String::new()
        };
        tables.insert(t.clone(), format!("{read}{}", of_total(x)));
    }
    let tables: Vec<String> = tables.iter().map(|(t, s)| format!("{t} {s}")).collect();
    let all = totals(stats, started);
    if tables.is_empty() {
        all
    } else {
        let (rows, rest) = all.split_once(" · ").unwrap_or((&all, ""));
        format!("{rows} ({}) · {rest}", tables.join(", "))
    }
}

/// The live display: the totals line and a line per table.
struct Live {
    multi: MultiProgress,
    head: ProgressBar,
    /// Per table: its line and whether it has a bar (a known total) yet.
    tables: BTreeMap<String, (ProgressBar, Option<bool>)>,
}

impl Live {
    fn new(multi: MultiProgress) -> Self {
        let head = multi.add(ProgressBar::new_spinner());
        head.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
        head.enable_steady_tick(Duration::from_millis(120));
        Live {
            multi,
            head,
            tables: BTreeMap::new(),
        }
    }

    fn refresh(&mut self, stats: &RunStats, started: Instant) {
        self.head.set_message(totals(stats, started));
        let rows = stats.stream.table_rows();
        let extents = stats.stream.extents();
        let names: std::collections::BTreeSet<&String> =
            rows.keys().chain(extents.keys()).collect();
        for name in names {
            let (bar, shape) = self.tables.entry(name.clone()).or_insert_with(|| {
                let b = self.multi.add(ProgressBar::no_length());
                b.set_prefix(name.clone());
                (b, None)
            });
            let n = rows.get(name).copied().unwrap_or(0);
            match extents.get(name) {
                Some(x) => {
                    if *shape != Some(x.bytes) {
                        let unit = if x.bytes {
                            "{binary_bytes}/{binary_total_bytes} ({percent}%) · {msg}"
                        } else {
                            "{human_pos}/{human_len} rows ({percent}%) · {msg}"
                        };
                        bar.set_style(
                            ProgressStyle::with_template(&format!(
                                "  {{prefix:<16}} [{{bar:30}}] {unit} · ETA {{eta}}"
                            ))
                            .expect("valid template")
                            .progress_chars("=> "),
                        );
                        *shape = Some(x.bytes);
                    }
                    bar.set_length(x.total);
                    bar.set_position(x.done);
                    bar.set_message(if x.bytes {
                        format!("{} rows", thousands(n))
                    } else {
                        format!("{} written", thousands(n))
                    });
                }
                None => {
                    if shape.is_none() {
                        bar.set_style(
                            ProgressStyle::with_template("  {prefix:<16} {msg}")
                                .expect("valid template"),
                        );
                        *shape = Some(false);
                    }
                    bar.set_message(format!("{} rows", thousands(n)));
                    bar.tick();
                }
            }
        }
    }

    fn clear(&self) {
        for (bar, _) in self.tables.values() {
            bar.finish_and_clear();
        }
        self.head.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// Report progress until the returned guard is dropped: a live display
/// when `live`, else an INFO line every `every`.
pub fn start(stats: Arc<RunStats>, started: Instant, live: bool, every: Duration) -> Guard {
    if live {
        let multi = LIVE
            .get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
            .clone();
        let display = Arc::new(Mutex::new(Live::new(multi)));
        let task = tokio::spawn({
            let display = display.clone();
            async move {
                loop {
                    display
                        .lock()
                        .expect("not poisoned")
                        .refresh(&stats, started);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        });
        Guard(task, Some(display))
    } else {
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                tracing::info!("progress: {}", line(&stats, started));
            }
        });
        Guard(task, None)
    }
}

/// Stops the reporting (and clears the live display) when dropped.
pub struct Guard(tokio::task::JoinHandle<()>, Option<Arc<Mutex<Live>>>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.abort();
        if let Some(d) = &self.1 {
            if let Ok(d) = d.lock() {
                d.clear();
            }
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
        // A total from the source, a download's size, a retry wait, a refresh.
        stats.stream.scanned("users", 12_345, 50_000);
        stats.stream.expect_bytes("export", 4_000_000);
        stats.stream.add_bytes("export", 1_000_000);
        stats.http.token_refreshes.store(1, Ordering::Relaxed);
        *stats.http.waiting.lock().unwrap() = Some((
            Instant::now() + Duration::from_secs(12),
            "HTTP 429, as the server's Retry-After asks".into(),
        ));
        let l = line(&stats, Instant::now());
        assert!(
            l.starts_with("12,345 rows (export 0 rows, 1.0 MB/4.0 MB (25%), users 12,345/50,000 (24%)) · 0 pages"),
            "{l}"
        );
        assert!(
            l.ends_with(
                "· waiting 12s after HTTP 429, as the server's Retry-After asks · 1 token refresh"
            ),
            "{l}"
        );
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
    }
}
