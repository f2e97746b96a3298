//! Why a request failed, and what the client sees: a status plus `x-nimbus-error`, like
//! gorouter's `X-Cf-RouterError`. Wasmtime's split is kept: a trap is the guest's failure, a
//! host error is ours.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use wasmtime::Trap;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Header naming the cause of a failure the DEA answered for the guest.
pub(crate) const ERROR_HEADER: &str = "x-nimbus-error";

/// A request the guest could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Failure {
    /// The guest trapped (panic, `unreachable`, stack overflow…).
    #[error("the app crashed while handling the request: {0}")]
    Trap(String),
    /// The request ran past the app's wall-clock limit.
    #[error("the request exceeded the app's time limit of {0} ms")]
    Timeout(u64),
    /// The guest returned without ever setting a response.
    #[error("the app finished without sending a response")]
    NoResponse,
    /// The guest answered with a wasi:http error code instead of a response.
    #[error("the app reported an error instead of a response: {0}")]
    GuestError(String),
    /// The request could not be given to the guest (e.g. no `Host`).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Our side failed; logged as a DEA error.
    #[error("the DEA failed to run the app: {0}")]
    Internal(String),
}

/// Where a guest error happened: a start-up failure without a trap is the host's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Instantiate,
    Handle,
}

impl Failure {
    /// Classifies an error from instantiating or calling the guest.
    pub(crate) fn from_guest_error(error: &wasmtime::Error, stage: Stage, timeout_ms: u64) -> Self {
        match trap_of(error) {
            Some(Trap::Interrupt) => Failure::Timeout(timeout_ms),
            Some(trap) => Failure::Trap(trap.to_string()),
            // Errors raised by host functions on the guest's behalf (e.g. misuse of a resource,
            // `exit`) end the guest's call just as a trap does.
            None if stage == Stage::Handle => Failure::Trap(format!("{error:#}")),
            None => Failure::Internal(format!("{error:#}")),
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Failure::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Failure::BadRequest(_) => StatusCode::BAD_REQUEST,
            Failure::Trap(_)
            | Failure::NoResponse
            | Failure::GuestError(_)
            | Failure::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The value of [`ERROR_HEADER`].
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Failure::Trap(_) | Failure::NoResponse => "trap",
            Failure::Timeout(_) => "timeout",
            Failure::GuestError(_) => "app-error",
            Failure::BadRequest(_) => "bad-request",
            Failure::Internal(_) => "internal",
        }
    }

    /// Whether the failure is ours rather than the app's.
    pub(crate) fn is_host_error(&self) -> bool {
        matches!(self, Failure::Internal(_))
    }

    /// The response the client gets. Internal details stay in the logs.
    pub(crate) fn response(&self) -> Response<HyperOutgoingBody> {
        let body = match self {
            Failure::Internal(_) => "the DEA failed to run the app\n".to_string(),
            other => format!("{other}\n"),
        };
        let mut response = Response::new(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(ERROR_HEADER, HeaderValue::from_static(self.code()));
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// The trap behind an error, wherever it sits in the context chain.
fn trap_of(error: &wasmtime::Error) -> Option<Trap> {
    error.downcast_ref::<Trap>().copied().or_else(|| {
        error
            .chain()
            .find_map(|e| e.downcast_ref::<Trap>().copied())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_interrupts_are_timeouts() {
        let error = wasmtime::Error::new(Trap::Interrupt).context("while handling");
        let failure = Failure::from_guest_error(&error, Stage::Handle, 250);
        assert_eq!(failure, Failure::Timeout(250));
        assert_eq!(failure.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(failure.code(), "timeout");
    }

    #[test]
    fn panics_are_traps() {
        let error = wasmtime::Error::new(Trap::UnreachableCodeReached);
        let failure = Failure::from_guest_error(&error, Stage::Handle, 1);
        assert!(matches!(failure, Failure::Trap(_)), "{failure:?}");
        assert_eq!(failure.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(failure.code(), "trap");
    }

    #[test]
    fn start_up_errors_without_a_trap_are_ours() {
        let error = wasmtime::format_err!("instance limit reached");
        let failure = Failure::from_guest_error(&error, Stage::Instantiate, 1);
        assert!(failure.is_host_error());
        assert_eq!(failure.code(), "internal");
        let during_call = Failure::from_guest_error(&error, Stage::Handle, 1);
        assert_eq!(during_call.code(), "trap");
    }

    #[test]
    fn a_missing_response_is_reported_as_a_trap() {
        assert_eq!(
            Failure::NoResponse.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(Failure::NoResponse.code(), "trap");
    }

    #[test]
    fn responses_carry_the_cause_header_and_hide_internal_details() {
        let response = Failure::Internal("secret path /var/x".into()).response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[ERROR_HEADER], "internal");
        let body = futures::executor::block_on(response.into_body().collect())
            .unwrap()
            .to_bytes();
        assert!(!String::from_utf8_lossy(&body).contains("secret"));

        let timeout = Failure::Timeout(10).response();
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(timeout.headers()[ERROR_HEADER], "timeout");
    }
}
