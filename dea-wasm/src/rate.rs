//! A token bucket: the rate limiter behind log caps and platform notices.

use std::time::Instant;

/// Allows `per_second` units a second on average and bursts of up to `capacity`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(per_second: f64, capacity: f64) -> TokenBucket {
        TokenBucket {
            capacity,
            per_second,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    /// Takes `amount` tokens if the bucket holds them.
    pub(crate) fn try_take(&mut self, amount: f64) -> bool {
        self.try_take_at(amount, Instant::now())
    }

    fn try_take_at(&mut self, amount: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_refills_at_the_rate() {
        let mut bucket = TokenBucket::new(2.0, 3.0);
        let start = bucket.last;
        assert!((0..3).all(|_| bucket.try_take_at(1.0, start)));
        assert!(!bucket.try_take_at(1.0, start));
        let later = start + Duration::from_millis(500);
        assert!(bucket.try_take_at(1.0, later));
        assert!(!bucket.try_take_at(1.0, later));
        // Refills never exceed the capacity.
        let much_later = later + Duration::from_secs(60);
        assert!(bucket.try_take_at(3.0, much_later));
        assert!(!bucket.try_take_at(1.0, much_later));
    }
}
