//! An instance's log: guest stdout/stderr split into lines, plus the DEA's own lines about the
//! instance, published to `logs.<app_id>`.
//!
//! Guests must never wait for the log: writes always succeed at once, lines go through a bounded
//! queue with `try_send`, and a full queue drops lines rather than block. Guest lines also pass a
//! per-instance rate cap (lines and bytes per second, token buckets); every dropped line is
//! counted and the log gets one "N lines dropped" notice per second, so a flood can neither
//! exhaust the DEA's memory nor the bus.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_protocol::messages::LogStream;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::rate::TokenBucket;
use crate::stdio::GuestOutput;

/// Lines waiting to be published per instance; beyond this, new lines are dropped.
pub(crate) const LOG_QUEUE: usize = 1024;
/// Longest line published; longer output is split into several lines.
pub(crate) const MAX_LINE: usize = 8 * 1024;
/// How much a guest may write per `check-write` permit (writes never wait).
pub(crate) const WRITE_PERMIT: usize = 64 * 1024;

/// How often dropped lines are reported.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// How much guest output an instance may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogRates {
    pub(crate) lines_per_second: u32,
    pub(crate) bytes_per_second: u64,
}

#[cfg(test)]
impl LogRates {
    const UNLIMITED: LogRates = LogRates {
        lines_per_second: u32::MAX,
        bytes_per_second: u64::MAX,
    };
}

/// The rate caps of one instance, and what they dropped since the last report.
struct Budget {
    lines: Mutex<(TokenBucket, TokenBucket)>,
    dropped: AtomicU64,
}

/// One line bound for the app's log stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogLine {
    pub(crate) source: Arc<str>,
    pub(crate) stream: LogStream,
    pub(crate) message: String,
}

/// The log of one instance; clones share the queue.
#[derive(Clone)]
pub(crate) struct AppLog {
    sender: mpsc::Sender<LogLine>,
    app_source: Arc<str>,
    dea_source: Arc<str>,
    budget: Arc<Budget>,
}

impl AppLog {
    /// Starts the task that publishes this instance's lines; it ends when every clone (and every
    /// guest output made from one) is dropped.
    pub(crate) fn spawn(
        nats: async_nats::Client,
        app_id: Uuid,
        index: u32,
        rates: LogRates,
    ) -> AppLog {
        let (log, mut lines) = AppLog::channel_with(index, LOG_QUEUE, rates);
        let budget = log.budget.clone();
        let source = log.dea_source.clone();
        tokio::spawn(async move {
            let mut report = tokio::time::interval(DROP_REPORT_INTERVAL);
            loop {
                let line = tokio::select! {
                    line = lines.recv() => match line {
                        Some(line) => line,
                        None => break,
                    },
                    _ = report.tick() => match dropped_notice(&budget, rates) {
                        Some(message) => LogLine { source: source.clone(), stream: LogStream::Err, message },
                        None => continue,
                    },
                };
                nimbus_bus::log_line(&nats, app_id, &line.source, line.stream, line.message).await;
            }
        });
        log
    }

    /// A log without rate caps, for tests of what it does with lines.
    #[cfg(test)]
    pub(crate) fn channel(index: u32, capacity: usize) -> (AppLog, mpsc::Receiver<LogLine>) {
        AppLog::channel_with(index, capacity, LogRates::UNLIMITED)
    }

    pub(crate) fn channel_with(
        index: u32,
        capacity: usize,
        rates: LogRates,
    ) -> (AppLog, mpsc::Receiver<LogLine>) {
        let (sender, receiver) = mpsc::channel(capacity);
        // Float rounding is harmless here: the caps are approximate by nature.
        let lines = f64::from(rates.lines_per_second);
        let bytes = rates.bytes_per_second as f64;
        let log = AppLog {
            sender,
            // Cloud Foundry's source names: the app's own output vs. the platform's word on it.
            app_source: format!("APP/{index}").into(),
            dea_source: format!("DEA/{index}").into(),
            budget: Arc::new(Budget {
                lines: Mutex::new((
                    TokenBucket::new(lines, lines),
                    TokenBucket::new(bytes, bytes),
                )),
                dropped: AtomicU64::new(0),
            }),
        };
        (log, receiver)
    }

    /// A line of guest output, if the rate caps allow it; otherwise counted as dropped.
    pub(crate) fn guest_line(&self, stream: LogStream, message: String) {
        let allowed = {
            let mut buckets = self.budget.lines.lock().unwrap_or_else(|e| e.into_inner());
            let (lines, bytes) = &mut *buckets;
            // Check both before taking from either, so a refused line costs nothing.
            let size = message.len() as f64 + 1.0;
            let mut lines_probe = lines.clone();
            let mut bytes_probe = bytes.clone();
            if lines_probe.try_take(1.0) && bytes_probe.try_take(size) {
                *lines = lines_probe;
                *bytes = bytes_probe;
                true
            } else {
                false
            }
        };
        if !allowed || !send(&self.sender, &self.app_source, stream, message) {
            self.budget.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A line from the platform about this instance (a trap, a timeout…).
    pub(crate) fn platform(&self, message: impl Into<String>) {
        if !send(
            &self.sender,
            &self.dea_source,
            LogStream::Err,
            message.into(),
        ) {
            tracing::debug!(source = %self.dea_source, "log queue full; dropping a platform line");
        }
    }

    /// A fresh guest stdout or stderr for one request's store.
    pub(crate) fn guest_output(&self, stream: LogStream) -> GuestOutput {
        GuestOutput::new(self.clone(), stream)
    }
}

/// The notice about lines dropped since the last one, if any were.
fn dropped_notice(budget: &Budget, rates: LogRates) -> Option<String> {
    let dropped = budget.dropped.swap(0, Ordering::Relaxed);
    (dropped > 0).then(|| {
        format!(
            "{dropped} log lines dropped: the app wrote more than {} lines or {} bytes per second",
            rates.lines_per_second, rates.bytes_per_second
        )
    })
}

/// Queues a line; `false` if the queue is full (or closed) and the line was dropped.
fn send(
    sender: &mpsc::Sender<LogLine>,
    source: &Arc<str>,
    stream: LogStream,
    message: String,
) -> bool {
    let line = LogLine {
        source: source.clone(),
        stream,
        message,
    };
    sender.try_send(line).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use wasmtime_wasi::p2::OutputStream as _;

    fn drain(lines: &mut mpsc::Receiver<LogLine>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = lines.try_recv() {
            out.push(line.message);
        }
        out
    }

    #[test]
    fn splits_writes_into_lines_and_flushes_the_rest_on_drop() {
        let (log, mut lines) = AppLog::channel(3, 16);
        let mut out = log.guest_output(LogStream::Out);
        out.write(Bytes::from_static(b"one\r\ntw")).unwrap();
        out.write(Bytes::from_static(b"o\nthr")).unwrap();
        assert_eq!(drain(&mut lines), ["one", "two"]);
        drop(out);
        let rest = lines.try_recv().unwrap();
        assert_eq!(rest.message, "thr");
        assert_eq!(&*rest.source, "APP/3");
        assert_eq!(rest.stream, LogStream::Out);
    }

    #[test]
    fn caps_line_length() {
        let (log, mut lines) = AppLog::channel(0, 16);
        let mut out = log.guest_output(LogStream::Err);
        out.write(Bytes::from(vec![b'x'; MAX_LINE * 2 + 5]))
            .unwrap();
        drop(out);
        let lengths: Vec<usize> = drain(&mut lines).iter().map(String::len).collect();
        assert_eq!(lengths, [MAX_LINE, MAX_LINE, 5]);
    }

    #[test]
    fn drops_lines_instead_of_blocking_when_the_queue_is_full() {
        let (log, mut lines) = AppLog::channel(0, 2);
        let mut out = log.guest_output(LogStream::Out);
        out.write(Bytes::from_static(b"a\nb\nc\nd\n")).unwrap();
        assert_eq!(out.check_write().unwrap(), WRITE_PERMIT);
        assert_eq!(drain(&mut lines), ["a", "b"]);
    }

    #[test]
    fn caps_the_line_rate_and_counts_what_it_drops() {
        let rates = LogRates {
            lines_per_second: 3,
            bytes_per_second: 1_000_000,
        };
        let (log, mut lines) = AppLog::channel_with(0, 100, rates);
        let mut out = log.guest_output(LogStream::Out);
        out.write(Bytes::from(b"x\n".repeat(50))).unwrap();
        // The burst passes (three lines, or a fourth if a token refilled meanwhile).
        let passed = drain(&mut lines).len();
        assert!((3..=4).contains(&passed), "{passed}");
        let notice = dropped_notice(&log.budget, rates).unwrap();
        assert!(
            notice.starts_with(&format!("{} log lines dropped", 50 - passed)),
            "{notice}"
        );
        assert_eq!(dropped_notice(&log.budget, rates), None);
    }

    #[test]
    fn caps_the_byte_rate() {
        let rates = LogRates {
            lines_per_second: 1000,
            bytes_per_second: 10,
        };
        let (log, mut lines) = AppLog::channel_with(0, 100, rates);
        let mut out = log.guest_output(LogStream::Out);
        out.write(Bytes::from_static(b"12345678\nabcdefgh\n"))
            .unwrap();
        assert_eq!(drain(&mut lines), ["12345678"]);
        assert!(dropped_notice(&log.budget, rates).is_some());
    }

    #[test]
    fn platform_lines_name_the_dea() {
        let (log, mut lines) = AppLog::channel(1, 4);
        log.platform("request timed out");
        let line = lines.try_recv().unwrap();
        assert_eq!(&*line.source, "DEA/1");
        assert_eq!(line.stream, LogStream::Err);
        assert_eq!(line.message, "request timed out");
    }
}
