//! Why a request failed, and what the client sees: a status plus `x-nimbus-error`, like
//! gorouter's `X-Cf-RouterError`. Wasmtime's split is kept: a trap is the guest's failure, a
//! host error is ours.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use nimbus_protocol::messages::EventKind;
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
    /// The request burnt its CPU budget.
    #[error("the request ran out of fuel (its CPU budget of {0} units)")]
    FuelExhausted(u64),
    /// The guest trapped after the DEA refused to grow its memory past the app's limit.
    #[error("the app ran out of memory: it needed more than its limit of {0} MB")]
    MemoryLimit(u64),
    /// Too many requests at once for the instance or the DEA.
    #[error("the app is busy: too many requests at once; retry shortly")]
    Overloaded,
    /// The request body is larger than the app accepts.
    #[error("the request body is larger than the app's limit of {0} bytes")]
    BodyTooLarge(u64),
    /// The guest returned without ever setting a response.
    #[error("the app finished without sending a response")]
    NoResponse,
    /// The guest answered with a wasi:http error code instead of a response.
    #[error("the app reported an error instead of a response: {0}")]
    GuestError(String),
    /// A WAGI app's output is not a CGI response (or is too large).
    #[error("the app's response is malformed: {0}")]
    BadResponse(String),
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

/// What a guest run was allowed and what it hit, to classify how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunLimits {
    pub(crate) timeout_ms: u64,
    pub(crate) fuel: u64,
    pub(crate) memory_mb: u64,
    /// The limiter refused a memory or table growth during this run.
    pub(crate) grow_denied: bool,
}

impl Failure {
    /// Classifies an error from instantiating or calling the guest. A Rust guest whose
    /// allocation fails aborts with `unreachable`, so any failure after a refused growth is
    /// blamed on the memory limit.
    pub(crate) fn from_guest_error(error: &wasmtime::Error, stage: Stage, run: RunLimits) -> Self {
        match trap_of(error) {
            Some(Trap::Interrupt) => Failure::Timeout(run.timeout_ms),
            Some(Trap::OutOfFuel) => Failure::FuelExhausted(run.fuel),
            _ if run.grow_denied => Failure::MemoryLimit(run.memory_mb),
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
            Failure::FuelExhausted(_) | Failure::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Failure::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::BadRequest(_) => StatusCode::BAD_REQUEST,
            Failure::BadResponse(_) => StatusCode::BAD_GATEWAY,
            Failure::MemoryLimit(_)
            | Failure::Trap(_)
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
            Failure::FuelExhausted(_) => "fuel_exhausted",
            Failure::MemoryLimit(_) => "memory_limit",
            Failure::Overloaded => "overloaded",
            Failure::BodyTooLarge(_) => "body_too_large",
            Failure::GuestError(_) => "app_error",
            Failure::BadResponse(_) => "bad_response",
            Failure::BadRequest(_) => "bad_request",
            Failure::Internal(_) => "internal",
        }
    }

    /// The app event this failure is worth, if any (its reason is [`Failure::code`]).
    pub(crate) fn event_kind(&self) -> Option<EventKind> {
        match self {
            Failure::Timeout(_)
            | Failure::FuelExhausted(_)
            | Failure::MemoryLimit(_)
            | Failure::Overloaded
            | Failure::BodyTooLarge(_) => Some(EventKind::LimitExceeded),
            Failure::Trap(_) | Failure::NoResponse => Some(EventKind::Trapped),
            Failure::GuestError(_)
            | Failure::BadResponse(_)
            | Failure::BadRequest(_)
            | Failure::Internal(_) => None,
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
        if *self == Failure::Overloaded {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
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

    const RUN: RunLimits = RunLimits {
        timeout_ms: 250,
        fuel: 100,
        memory_mb: 64,
        grow_denied: false,
    };

    #[test]
    fn epoch_interrupts_are_timeouts() {
        let error = wasmtime::Error::new(Trap::Interrupt).context("while handling");
        let failure = Failure::from_guest_error(&error, Stage::Handle, RUN);
        assert_eq!(failure, Failure::Timeout(250));
        assert_eq!(failure.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(failure.code(), "timeout");
    }

    #[test]
    fn panics_are_traps() {
        let error = wasmtime::Error::new(Trap::UnreachableCodeReached);
        let failure = Failure::from_guest_error(&error, Stage::Handle, RUN);
        assert!(matches!(failure, Failure::Trap(_)), "{failure:?}");
        assert_eq!(failure.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(failure.code(), "trap");
    }

    #[test]
    fn start_up_errors_without_a_trap_are_ours() {
        let error = wasmtime::format_err!("instance limit reached");
        let failure = Failure::from_guest_error(&error, Stage::Instantiate, RUN);
        assert!(failure.is_host_error());
        assert_eq!(failure.code(), "internal");
        let during_call = Failure::from_guest_error(&error, Stage::Handle, RUN);
        assert_eq!(during_call.code(), "trap");
    }

    #[test]
    fn fuel_and_memory_limits_are_named() {
        let fuel =
            Failure::from_guest_error(&wasmtime::Error::new(Trap::OutOfFuel), Stage::Handle, RUN);
        assert_eq!(fuel, Failure::FuelExhausted(100));
        assert_eq!(fuel.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(fuel.code(), "fuel_exhausted");
        let after_denied_grow = RunLimits {
            grow_denied: true,
            ..RUN
        };
        let error = wasmtime::Error::new(Trap::UnreachableCodeReached);
        let memory = Failure::from_guest_error(&error, Stage::Handle, after_denied_grow);
        assert_eq!(memory, Failure::MemoryLimit(64));
        assert_eq!(memory.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(memory.code(), "memory_limit");
        assert_eq!(memory.event_kind(), Some(EventKind::LimitExceeded));
    }

    #[test]
    fn overload_asks_to_retry_and_big_bodies_get_413() {
        let overloaded = Failure::Overloaded.response();
        assert_eq!(overloaded.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(overloaded.headers()[ERROR_HEADER], "overloaded");
        assert_eq!(overloaded.headers()[http::header::RETRY_AFTER], "1");
        let big = Failure::BodyTooLarge(10).response();
        assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(big.headers()[ERROR_HEADER], "body_too_large");
        assert!(!big.headers().contains_key(http::header::RETRY_AFTER));
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
