//! A guest's stdout and stderr: bytes split into lines (at most [`MAX_LINE`] long) and handed
//! to the instance's [`AppLog`], which applies the rate caps. Writes never wait.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use nimbus_protocol::messages::LogStream;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::logs::{AppLog, MAX_LINE, WRITE_PERMIT};

/// Accumulates bytes into lines; what remains when the last handle drops is sent as a line.
pub(crate) struct LineSplitter {
    buffer: Vec<u8>,
    stream: LogStream,
    log: AppLog,
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
        self.log.guest_line(self.stream, message);
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
    pub(crate) fn new(log: AppLog, stream: LogStream) -> GuestOutput {
        GuestOutput(Arc::new(Mutex::new(LineSplitter {
            buffer: Vec::new(),
            stream,
            log,
        })))
    }
}

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
