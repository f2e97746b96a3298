//! The request-body size limit: a declared `Content-Length` over the limit is refused before
//! the guest runs; a streamed body is counted as the guest reads it, and crossing the limit
//! ends the stream with an error and marks the request, which then gets 413.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use wasmtime_wasi_http::Error;

/// How much of a refused body is read and thrown away before the connection is dropped.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
/// How long a refused body may take to drain.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and discards what is left of a refused request's body, within bounds, in the
/// background. Closing a socket with unread bytes makes the kernel reset it, and a client still
/// uploading (often the router) would then see a reset instead of our 413.
pub(crate) fn drain<B>(body: B)
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
{
    use bytes::Buf as _;
    use http_body_util::BodyExt as _;
    tokio::spawn(async move {
        let mut body = body;
        let mut left = DRAIN_LIMIT;
        let read = async {
            while left > 0
                && let Some(Ok(frame)) = body.frame().await
            {
                if let Ok(data) = frame.into_data() {
                    left = left.saturating_sub(data.remaining());
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, read).await;
    });
}

/// The declared body length, if the request has a valid `Content-Length`.
pub(crate) fn declared_length<B>(request: &http::Request<B>) -> Option<u64> {
    request
        .headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// An incoming body that stops after `limit` bytes. Generic so that benchmarks can feed the
/// same path a body that did not come off a socket; the DEA itself only uses [`Incoming`].
pub(crate) struct LimitedBody<B = Incoming> {
    inner: B,
    limit: u64,
    remaining: u64,
    overflowed: Arc<AtomicBool>,
}

impl<B> LimitedBody<B> {
    /// Wraps `inner`; `overflowed` is set if the body turns out larger than `limit`.
    pub(crate) fn new(inner: B, limit: u64, overflowed: Arc<AtomicBool>) -> LimitedBody<B> {
        LimitedBody {
            inner,
            limit,
            remaining: limit,
            overflowed,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let size = frame.data_ref().map_or(0, |data| data.len() as u64);
                if size > this.remaining {
                    this.overflowed.store(true, Ordering::Relaxed);
                    this.remaining = 0;
                    return Poll::Ready(Some(Err(Error::HttpRequestBodySize(Some(this.limit)))));
                }
                this.remaining -= size;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_declared_length() {
        let request = http::Request::builder()
            .header("content-length", "42")
            .body(())
            .unwrap();
        assert_eq!(declared_length(&request), Some(42));
        let chunked = http::Request::builder().body(()).unwrap();
        assert_eq!(declared_length(&chunked), None);
        let bogus = http::Request::builder()
            .header("content-length", "lots")
            .body(())
            .unwrap();
        assert_eq!(declared_length(&bogus), None);
    }
}
