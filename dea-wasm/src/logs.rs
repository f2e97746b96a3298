//! An instance's log: guest stdout/stderr split into lines, plus the DEA's own lines about the
//! instance, published to `logs.<app_id>`.
//!
//! Guests must never wait for the log: writes always succeed at once, lines go through a bounded
//! queue with `try_send`, and a full queue drops lines (counted in a trace) rather than block.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use nimbus_protocol::messages::LogStream;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use uuid::Uuid;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Lines waiting to be published per instance; beyond this, new lines are dropped.
pub(crate) const LOG_QUEUE: usize = 1024;
/// Longest line published; longer output is split into several lines.
pub(crate) const MAX_LINE: usize = 8 * 1024;
/// How much a guest may write per `check-write` permit (writes never wait).
const WRITE_PERMIT: usize = 64 * 1024;

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
}

impl AppLog {
    /// Starts the task that publishes this instance's lines; it ends when every clone (and every
    /// guest output made from one) is dropped.
    pub(crate) fn spawn(nats: async_nats::Client, app_id: Uuid, index: u32) -> AppLog {
        let (log, mut lines) = AppLog::channel(index, LOG_QUEUE);
        tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                nimbus_bus::log_line(&nats, app_id, &line.source, line.stream, line.message).await;
            }
        });
        log
    }

    fn channel(index: u32, capacity: usize) -> (AppLog, mpsc::Receiver<LogLine>) {
        let (sender, receiver) = mpsc::channel(capacity);
        let log = AppLog {
            sender,
            // Cloud Foundry's source names: the app's own output vs. the platform's word on it.
            app_source: format!("APP/{index}").into(),
            dea_source: format!("DEA/{index}").into(),
        };
        (log, receiver)
    }

    /// A line from the platform about this instance (a trap, a timeout…).
    pub(crate) fn platform(&self, message: impl Into<String>) {
        send(
            &self.sender,
            &self.dea_source,
            LogStream::Err,
            message.into(),
        );
    }

    /// A fresh guest stdout or stderr for one request's store.
    pub(crate) fn guest_output(&self, stream: LogStream) -> GuestOutput {
        GuestOutput(Arc::new(Mutex::new(LineSplitter {
            buffer: Vec::new(),
            stream,
            source: self.app_source.clone(),
            sender: self.sender.clone(),
        })))
    }
}

fn send(sender: &mpsc::Sender<LogLine>, source: &Arc<str>, stream: LogStream, message: String) {
    let line = LogLine {
        source: source.clone(),
        stream,
        message,
    };
    if let Err(mpsc::error::TrySendError::Full(_)) = sender.try_send(line) {
        tracing::debug!(%source, "log queue full; dropping a guest log line");
    }
}

/// Accumulates bytes into lines; what remains when the last handle drops is sent as a line.
struct LineSplitter {
    buffer: Vec<u8>,
    stream: LogStream,
    source: Arc<str>,
    sender: mpsc::Sender<LogLine>,
}

impl LineSplitter {
    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.buffer.len();
            let take = bytes.len().min(room);
            match bytes[..take].iter().position(|&b| b == b'\n') {
                Some(newline) => {
                    self.buffer.extend_from_slice(&bytes[..newline]);
                    bytes = &bytes[newline + 1..];
                    self.emit();
                }
                None => {
                    self.buffer.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.buffer.len() == MAX_LINE {
                        self.emit();
                    }
                }
            }
        }
    }

    fn emit(&mut self) {
        if self.buffer.last() == Some(&b'\r') {
            self.buffer.pop();
        }
        let message = String::from_utf8_lossy(&self.buffer).into_owned();
        self.buffer.clear();
        send(&self.sender, &self.source, self.stream, message);
    }
}

impl Drop for LineSplitter {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            self.emit();
        }
    }
}

/// A guest's stdout or stderr: every handle the guest opens shares one line buffer.
#[derive(Clone)]
pub(crate) struct GuestOutput(Arc<Mutex<LineSplitter>>);

impl GuestOutput {
    fn push(&self, bytes: &[u8]) {
        // A poisoned lock only means a panic mid-push; the buffer is still a valid Vec.
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(bytes);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn platform_lines_name_the_dea() {
        let (log, mut lines) = AppLog::channel(1, 4);
        log.platform("request timed out");
        let line = lines.try_recv().unwrap();
        assert_eq!(&*line.source, "DEA/1");
        assert_eq!(line.stream, LogStream::Err);
        assert_eq!(line.message, "request timed out");
    }
}
