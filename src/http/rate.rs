//! One request budget shared by every request of a sync (all streams, all
//! pages in flight, retries and token refreshes included).
//!
//! Slots are handed out at a fixed spacing, first come first served: `1 /
//! rate` widened by 2%, so that a few milliseconds of jitter between a slot
//! and the request's arrival never put `rate + 1` requests into one of the
//! server's seconds. A server that says it is throttled anyway pushes every
//! later slot back ([`RateLimiter::pause_for`]).

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName};
use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    spacing: Duration,
    /// The earliest start of the next request.
    next: Mutex<Instant>,
}

impl RateLimiter {
    /// At most `rate` requests per second (`rate` > 0).
    pub fn per_second(rate: f64) -> Self {
        RateLimiter {
            spacing: Duration::from_secs_f64(1.02 / rate.max(1e-6)),
            next: Mutex::new(Instant::now()),
        }
    }

    /// The spacing between two request starts.
    pub fn spacing(&self) -> Duration {
        self.spacing
    }

    /// Wait for this request's slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap();
            let slot = (*next).max(Instant::now());
            *next = slot + self.spacing;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Start no request for `d` from now (the server said so).
    pub fn pause_for(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut next = self.next.lock().unwrap();
        if *next < until {
            *next = until;
        }
    }
}

/// A budget the server announces on its answers: the requests left
/// (`X-RateLimit-Remaining`) and when the count starts again
/// (`X-RateLimit-Reset`: seconds from now, or a Unix time as GitHub sends).
/// When none are left, the whole rate budget pauses until the reset, so no
/// request is spent on a refusal.
#[derive(Debug, Clone)]
pub struct HeaderBudget {
    pub remaining: HeaderName,
    pub reset: HeaderName,
}

impl HeaderBudget {
    /// How long to hold every request, when the answer says none are left.
    pub fn wait(&self, headers: &HeaderMap) -> Option<Duration> {
        let number = |h: &HeaderName| -> Option<f64> {
            headers.get(h)?.to_str().ok()?.trim().parse::<f64>().ok()
        };
        if number(&self.remaining)? > 0.0 {
            return None;
        }
        let reset = number(&self.reset)?;
        let secs = if reset > 1e9 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            reset - now
        } else {
            reset
        };
        secs.is_finite()
            .then(|| Duration::from_secs_f64(secs.max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_header_budget_waits_until_its_reset() {
        let b = HeaderBudget {
            remaining: HeaderName::from_static("x-ratelimit-remaining"),
            reset: HeaderName::from_static("x-ratelimit-reset"),
        };
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", "3".parse().unwrap());
        h.insert("x-ratelimit-reset", "20".parse().unwrap());
        assert_eq!(b.wait(&h), None);
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        assert_eq!(b.wait(&h), Some(Duration::from_secs(20)));
        let in_a_minute = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        h.insert(
            "x-ratelimit-reset",
            in_a_minute.to_string().parse().unwrap(),
        );
        let w = b.wait(&h).unwrap().as_secs();
        assert!((58..=60).contains(&w), "{w}");
        h.remove("x-ratelimit-reset");
        assert_eq!(b.wait(&h), None);
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_spaced_and_a_pause_moves_them() {
        let r = std::sync::Arc::new(RateLimiter::per_second(2.0));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                r.acquire().await;
                Instant::now() - t0
            }));
        }
        let mut at: Vec<u128> = Vec::new();
        for t in tasks {
            at.push(t.await.unwrap().as_millis());
        }
        at.sort();
        assert_eq!(at, [0, 510, 1020, 1530, 2040]);
        // At 2.04 s the server says "throttled, retry in 3 s".
        r.pause_for(Duration::from_secs(3));
        r.acquire().await;
        assert_eq!((Instant::now() - t0).as_millis(), 5040);
    }
}
