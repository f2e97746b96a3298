//! The platform's word on an instance's misbehaviour: one line in the app's log (source
//! `DEA/<index>`) and one [`AppEvent`] on `events.<app_id>` per limit hit, trap or denial.
//!
//! A hostile app can hit limits as fast as clients send requests, so notices pass a token
//! bucket per instance; the excess is counted and mentioned by the next notice that passes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nimbus_protocol::messages::{AppEvent, EventKind};
use nimbus_protocol::{now_ms, subjects};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::failure::Failure;
use crate::logs::AppLog;
use crate::rate::TokenBucket;

/// Notices an instance may publish per second on average.
pub(crate) const NOTICES_PER_SECOND: f64 = 10.0;
/// Notices an instance may publish in a burst.
pub(crate) const NOTICE_BURST: f64 = 50.0;
/// Events waiting to be published per instance; beyond this they are dropped.
const EVENT_QUEUE: usize = 64;

/// Reports one instance's notices; clones share the budget.
#[derive(Clone)]
pub(crate) struct Notices(Arc<Inner>);

struct Inner {
    app_id: Uuid,
    index: u32,
    log: AppLog,
    events: mpsc::Sender<AppEvent>,
    budget: Mutex<TokenBucket>,
    suppressed: AtomicU64,
}

impl Notices {
    /// Starts the task that publishes this instance's events; it ends with the last clone.
    pub(crate) fn spawn(
        nats: async_nats::Client,
        app_id: Uuid,
        index: u32,
        log: AppLog,
    ) -> Notices {
        let (notices, mut events) = Notices::channel(app_id, index, log);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Err(error) =
                    nimbus_bus::publish(&nats, subjects::events(event.app_id), &event).await
                {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "failed to publish an app event"
                    );
                }
            }
        });
        notices
    }

    pub(crate) fn channel(
        app_id: Uuid,
        index: u32,
        log: AppLog,
    ) -> (Notices, mpsc::Receiver<AppEvent>) {
        let (events, receiver) = mpsc::channel(EVENT_QUEUE);
        let inner = Inner {
            app_id,
            index,
            log,
            events,
            budget: Mutex::new(TokenBucket::new(NOTICES_PER_SECOND, NOTICE_BURST)),
            suppressed: AtomicU64::new(0),
        };
        (Notices(Arc::new(inner)), receiver)
    }

    /// The app's log, for lines that are not notices.
    pub(crate) fn log(&self) -> &AppLog {
        &self.0.log
    }

    /// Reports a failed request: a log line, plus an event if the failure is worth one.
    pub(crate) fn failure(&self, failure: &Failure) {
        if failure.is_host_error() {
            tracing::error!(%failure, app_id = %self.0.app_id, "request failed on the host side");
        } else {
            tracing::debug!(%failure, app_id = %self.0.app_id, "request failed in the guest");
        }
        self.notice(failure.event_kind(), failure.code(), failure.to_string());
    }

    /// Reports a limit hit, trap or denial outside a request's failure (egress, scratch).
    pub(crate) fn report(&self, kind: EventKind, reason: &str, description: String) {
        self.notice(Some(kind), reason, description);
    }

    fn notice(&self, kind: Option<EventKind>, reason: &str, description: String) {
        let inner = &self.0;
        let allowed = inner
            .budget
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_take(1.0);
        if !allowed {
            inner.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = inner.suppressed.swap(0, Ordering::Relaxed);
        let line = if suppressed > 0 {
            format!("{description} ({suppressed} similar notices were suppressed)")
        } else {
            description.clone()
        };
        inner.log.platform(line);
        let Some(kind) = kind else { return };
        let event = AppEvent {
            app_id: inner.app_id,
            kind,
            reason: reason.to_string(),
            description,
            instance_index: Some(inner.index),
            timestamp: now_ms(),
        };
        if inner.events.try_send(event).is_err() {
            tracing::debug!(app_id = %inner.app_id, "event queue full; dropping an app event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_become_a_log_line_and_an_event_named_by_the_header() {
        let (log, mut lines) = AppLog::channel(2, 16);
        let app_id = Uuid::new_v4();
        let (notices, mut events) = Notices::channel(app_id, 2, log);
        notices.failure(&Failure::FuelExhausted(10));
        let line = lines.try_recv().unwrap();
        assert_eq!(&*line.source, "DEA/2");
        assert!(line.message.contains("ran out of fuel"), "{line:?}");
        let event = events.try_recv().unwrap();
        assert_eq!(event.app_id, app_id);
        assert_eq!(event.kind, EventKind::LimitExceeded);
        assert_eq!(event.reason, "fuel_exhausted");
        assert_eq!(event.instance_index, Some(2));
    }

    #[test]
    fn a_flood_of_notices_is_capped_and_counted() {
        let (log, mut lines) = AppLog::channel(0, 1024);
        let (notices, mut events) = Notices::channel(Uuid::new_v4(), 0, log);
        for _ in 0..1000 {
            notices.failure(&Failure::Trap("boom".into()));
        }
        assert!(events.try_recv().is_ok());
        let mut count = 0;
        while lines.try_recv().is_ok() {
            count += 1;
        }
        // The burst passes (plus whatever refilled meanwhile); most of the flood does not.
        assert!(count >= NOTICE_BURST as usize && count < 1000, "{count}");
    }
}
