//! The crash policy: a crashed index restarts at once a few times, then waits a back-off that
//! doubles with every further crash up to a cap. An index that stays up for a quiet period
//! starts again from zero; a new version of the app starts from zero too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// How crashes turn into restart delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashPolicy {
    /// Crashes restarted without delay.
    pub immediate_restarts: u32,
    /// The first back-off; each later crash doubles it.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A crash this long after the previous one starts the count again.
    pub quiet_period: Duration,
}

impl Default for CrashPolicy {
    fn default() -> Self {
        CrashPolicy {
            immediate_restarts: 3,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(5 * 60),
            quiet_period: Duration::from_secs(10 * 60),
        }
    }
}

impl CrashPolicy {
    /// How long to wait before restarting after the `count`-th crash in a row.
    pub fn delay(&self, count: u32) -> Duration {
        if count <= self.immediate_restarts {
            return Duration::ZERO;
        }
        let doublings = (count - self.immediate_restarts - 1).min(31);
        self.backoff_base
            .saturating_mul(1 << doublings)
            .min(self.backoff_cap)
    }
}

/// The crash history of one index of one version of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashRecord {
    pub version: Uuid,
    /// Crashes in a row (since the last quiet period).
    pub count: u32,
    pub last_crash: Instant,
    pub description: String,
    /// Not restarted before this.
    pub restart_at: Instant,
}

impl CrashRecord {
    /// Whether the index is in back-off beyond its immediate restarts.
    pub fn flapping(&self, policy: &CrashPolicy) -> bool {
        self.count > policy.immediate_restarts
    }
}

/// Crash records by app and index.
#[derive(Debug, Default)]
pub struct Crashes {
    records: HashMap<(Uuid, u32), CrashRecord>,
}

impl Crashes {
    /// Records a crash and returns the index's record after it.
    pub fn record(
        &mut self,
        policy: &CrashPolicy,
        (app_id, version, index): (Uuid, Uuid, u32),
        description: &str,
        now: Instant,
    ) -> &CrashRecord {
        let record = self
            .records
            .entry((app_id, index))
            .or_insert_with(|| CrashRecord {
                version,
                count: 0,
                last_crash: now,
                description: String::new(),
                restart_at: now,
            });
        let quiet = now.saturating_duration_since(record.last_crash) >= policy.quiet_period;
        if record.version != version || quiet {
            record.version = version;
            record.count = 0;
        }
        record.count += 1;
        record.last_crash = now;
        record.description = description.to_string();
        record.restart_at = now + policy.delay(record.count);
        record
    }

    /// The record of an index at this version, if it crashed recently.
    pub fn get(&self, app_id: Uuid, version: Uuid, index: u32) -> Option<&CrashRecord> {
        self.records
            .get(&(app_id, index))
            .filter(|record| record.version == version)
    }

    /// Whether a crashed index may be started now.
    pub fn may_restart(&self, app_id: Uuid, version: Uuid, index: u32, now: Instant) -> bool {
        self.get(app_id, version, index)
            .is_none_or(|record| record.restart_at <= now)
    }

    /// Forgets records whose last crash is older than the quiet period, and apps that are gone.
    pub fn forget_old(
        &mut self,
        policy: &CrashPolicy,
        now: Instant,
        exists: impl Fn(Uuid) -> bool,
    ) {
        self.records.retain(|(app_id, _), record| {
            exists(*app_id)
                && now.saturating_duration_since(record.last_crash) < policy.quiet_period
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CrashPolicy {
        CrashPolicy {
            immediate_restarts: 3,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            quiet_period: Duration::from_secs(600),
        }
    }

    #[test]
    fn three_immediate_restarts_then_doubling_up_to_the_cap() {
        let policy = policy();
        let delays: Vec<u64> = (1..=14).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(
            delays,
            [0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
        );
        assert_eq!(policy.delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn a_crash_loop_backs_off_and_a_quiet_period_resets_it() {
        let policy = policy();
        let (app, version) = (Uuid::new_v4(), Uuid::new_v4());
        let mut crashes = Crashes::default();
        let t0 = Instant::now();
        for n in 0..4 {
            crashes.record(
                &policy,
                (app, version, 0),
                "boom",
                t0 + Duration::from_millis(n),
            );
        }
        let record = crashes.get(app, version, 0).unwrap();
        assert_eq!(record.count, 4);
        assert!(record.flapping(&policy));
        let now = t0 + Duration::from_millis(500);
        assert!(!crashes.may_restart(app, version, 0, now));
        assert!(
            crashes.may_restart(app, version, 1, now),
            "other indices are not held back"
        );
        assert!(crashes.may_restart(app, version, 0, t0 + Duration::from_secs(2)));

        let later = t0 + Duration::from_secs(601);
        let record = crashes.record(&policy, (app, version, 0), "again", later);
        assert_eq!(record.count, 1, "the quiet period reset the count");
        assert_eq!(record.restart_at, later);
    }

    #[test]
    fn a_new_version_starts_from_zero_and_old_records_are_forgotten() {
        let policy = policy();
        let (app, v1, v2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut crashes = Crashes::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            crashes.record(&policy, (app, v1, 0), "boom", t0);
        }
        assert!(crashes.get(app, v2, 0).is_none());
        assert_eq!(crashes.record(&policy, (app, v2, 0), "boom", t0).count, 1);
        crashes.forget_old(&policy, t0, |id| id != app);
        assert!(
            crashes.get(app, v2, 0).is_none(),
            "deleted apps are forgotten"
        );
    }
}
