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

#[cfg(test)]
mod tests {
    use super::*;

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
