//! When to try a request again: the retry policy (attempts, full-jitter
//! backoff, the longest `Retry-After` honoured) and the verdict on a
//! response that is not a success.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

use super::Response;

/// How many times, and how patiently, to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts including the first (≥ 1).
    pub max_attempts: u32,
    /// First backoff ceiling; doubles per attempt, full jitter below it.
    pub base_delay: Duration,
    /// Largest backoff ceiling.
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured; a longer one is capped at this.
    pub max_retry_after: Duration,
    /// Per-request timeout (connect + headers + body).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `attempt + 1` (attempt counts from 1): full jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_delay);
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(if ms == 0 {
            0
        } else {
            rand::rng().random_range(0..=ms)
        })
    }
}

/// What a response that is not a success means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Transient: try again, after this long if the server said.
    Retry(Option<Duration>),
    /// The credentials were refused: refresh them if possible, else fail.
    Unauthorized,
    /// The quota is used up until this long from now: stop.
    Quota(Option<Duration>),
    /// Fail now.
    Fail,
}

/// A source-specific reading of error responses; `None` falls back to the default.
pub type Classifier = Arc<dyn Fn(&Response) -> Option<Verdict> + Send + Sync>;

/// The default reading of an error response.
pub fn default_verdict(resp: &Response) -> Verdict {
    match resp.status.as_u16() {
        401 => Verdict::Unauthorized,
        _ if is_retryable_status(resp.status) => Verdict::Retry(retry_after(&resp.headers)),
        _ => Verdict::Fail,
    }
}

/// Default retry rule for statuses.
pub fn is_retryable_status(s: StatusCode) -> bool {
    matches!(s.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// Parse `Retry-After`: delay-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs));
        }
        return None;
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_seconds_and_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let future = std::time::SystemTime::now() + Duration::from_secs(120);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(future)).unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_is_jittered_below_an_exponential_ceiling() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..Default::default()
        };
        for attempt in 1..10 {
            let ceiling = (100u64 << (attempt - 1)).min(1000);
            for _ in 0..50 {
                assert!(p.backoff(attempt).as_millis() as u64 <= ceiling);
            }
        }
    }
}
