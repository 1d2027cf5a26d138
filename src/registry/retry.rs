//! Bounded retries with exponential backoff and jitter, honouring `Retry-After`.
//!
//! Retried: connection errors, 408, 429 and 5xx. A request is retried as a whole (its body is
//! replayable); uploads that resume from a registry-reported offset do their own recovery.

use std::time::{Duration, SystemTime};

/// How often and how long to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub base: Duration,
    /// Longest `Retry-After` we wait for; beyond it the request fails at once.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy { attempts: 4, base: Duration::from_millis(500), max_wait: Duration::from_secs(60) }
    }
}

/// Whether a response status is worth another try.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 499 | 500 | 502 | 503 | 504 | 522)
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (`attempt` counts from 1), with ±20 % jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.base.saturating_mul(1 << attempt.saturating_sub(1).min(10));
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        // Cheap jitter from the clock's low bits: enough to spread clients apart.
        let factor = 0.8 + f64::from(nanos % 1000) / 2500.0;
        base.mul_f64(factor)
    }
}

/// Parses `Retry-After`: delay seconds, or an HTTP date (IMF-fixdate) relative to now.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = crate::oci::time::parse_http_date(value)?;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs(at.saturating_sub(now).max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_grows_and_jitters_within_bounds() {
        let policy = RetryPolicy { attempts: 3, base: Duration::from_millis(100), max_wait: Duration::from_secs(1) };
        let first = policy.backoff(1);
        let second = policy.backoff(2);
        assert!(first >= Duration::from_millis(80) && first <= Duration::from_millis(120), "{first:?}");
        assert!(second >= Duration::from_millis(160) && second <= Duration::from_millis(240), "{second:?}");
        assert!(retryable_status(503) && retryable_status(429) && !retryable_status(404));
    }
}
