//! The WAGI executor: a command (`wasi:cli/run`) serves HTTP the CGI way. Each request runs the
//! command once, in a fresh store under the same limits as a component: the request line and
//! headers become CGI environment variables, the body is stdin, and stdout holds the response:
//! header lines, an empty line, then the body. stderr goes to the app's log as usual.
//!
//! The body is read whole before the command starts and the response is collected whole before
//! it is sent (CGI has no streaming back-pressure); both are capped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Body;
use wasmtime::Store;
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::admission::Admitted;
use crate::body::LimitedBody;
use crate::failure::{Failure, RunLimits, Stage};
use crate::guest::{CgiIo, GuestState};
use crate::http::{AppServer, supervise};

/// Largest response a WAGI app may write to stdout.
pub(crate) const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Runs the command for one admitted request and turns its output into the response.
pub(crate) async fn run<B>(
    server: &Arc<AppServer>,
    pre: CommandPre<GuestState>,
    request: Request<B>,
    admitted: Admitted,
) -> Result<Response<HyperOutgoingBody>, Failure>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let max_body = server.limits.max_body_bytes;
    let (parts, body) = request.into_parts();
    let overflowed = Arc::new(AtomicBool::new(false));
    let body = match LimitedBody::new(body, max_body, overflowed.clone())
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) if overflowed.load(Ordering::Relaxed) => {
            return Err(server.report(Failure::BodyTooLarge(max_body)));
        }
        Err(error) => {
            return Err(server.report(Failure::BadRequest(format!(
                "failed to read the request body: {error:?}"
            ))));
        }
    };

    let stdout = MemoryOutputPipe::new(MAX_RESPONSE_BYTES);
    let cgi = CgiIo {
        env: cgi_environment(&parts, body.len()),
        stdin: MemoryInputPipe::new(body),
        stdout: stdout.clone(),
    };
    let store = server
        .new_store(Some(cgi))
        .map_err(|e| server.report(Failure::Internal(format!("{e:#}"))))?;
    let guest = run_command(pre, store, server.run_limits());
    // The supervisor reports a failure itself (log line, event). Its own task, so a client
    // that hangs up cannot cut the run short of its checks.
    let supervised = tokio::spawn(supervise(guest, server.clone(), overflowed, admitted));
    match supervised.await {
        Ok(outcome) => outcome?,
        Err(error) => {
            return Err(server.report(Failure::Internal(format!(
                "the supervisor task failed: {error}"
            ))));
        }
    }

    let output = stdout.contents();
    if output.len() >= MAX_RESPONSE_BYTES {
        return Err(server.report(Failure::BadResponse(format!(
            "the response is larger than {MAX_RESPONSE_BYTES} bytes"
        ))));
    }
    let response = parse_output(output).map_err(|e| server.report(Failure::BadResponse(e)))?;
    Ok(response.map(|body| {
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync()
    }))
}

/// Instantiates the command and runs it to its end. `exit(0)` is a success like returning.
async fn run_command(
    pre: CommandPre<GuestState>,
    mut store: Store<GuestState>,
    run: RunLimits,
) -> Result<(), Failure> {
    let result = match pre.instantiate_async(&mut store).await {
        Ok(command) => command
            .wasi_cli_run()
            .call_run(&mut store)
            .await
            .map_err(|e| (e, Stage::Handle)),
        Err(error) => Err((error, Stage::Instantiate)),
    };
    let error = match result {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(())) => {
            return Err(Failure::Trap("the app exited with a failure status".into()));
        }
        Err((error, stage)) => (error, stage),
    };
    match error.0.downcast_ref::<I32Exit>() {
        Some(I32Exit(0)) => Ok(()),
        Some(I32Exit(code)) => Err(Failure::Trap(format!("the app exited with status {code}"))),
        None => {
            let run = RunLimits {
                grow_denied: store.data().grow_denied(),
                ..run
            };
            Err(Failure::from_guest_error(&error.0, error.1, run))
        }
    }
}

/// The CGI/1.1 meta-variables of a request (RFC 3875, plus WAGI's `X_FULL_URL` and
/// `X_RAW_PATH_INFO`), and one `HTTP_*` variable per header whose value is text.
pub(crate) fn cgi_environment(
    parts: &http::request::Parts,
    body_len: usize,
) -> Vec<(String, String)> {
    let uri = &parts.uri;
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    let (server_name, server_port) = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (name, port),
        _ => (host, "80"),
    };
    let raw_path = uri.path();
    let query = uri.query().unwrap_or("");
    let mut env = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("SERVER_SOFTWARE".into(), "nimbus".into()),
        ("SERVER_PROTOCOL".into(), format!("{:?}", parts.version)),
        ("SERVER_NAME".into(), server_name.into()),
        ("SERVER_PORT".into(), server_port.into()),
        ("REQUEST_METHOD".into(), parts.method.as_str().into()),
        ("SCRIPT_NAME".into(), String::new()),
        ("PATH_INFO".into(), percent_decode(raw_path)),
        ("X_RAW_PATH_INFO".into(), raw_path.into()),
        ("QUERY_STRING".into(), query.into()),
        (
            "X_FULL_URL".into(),
            format!(
                "http://{host}{}",
                uri.path_and_query().map_or("/", |p| p.as_str())
            ),
        ),
        ("CONTENT_LENGTH".into(), body_len.to_string()),
    ];
    if let Some(content_type) = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    {
        env.push(("CONTENT_TYPE".into(), content_type.into()));
    }
    for (name, value) in &parts.headers {
        let Ok(value) = value.to_str() else { continue };
        let name = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        // Repeated headers join with commas, as HTTP allows.
        match env.iter_mut().find(|(existing, _)| *existing == name) {
            Some((_, joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            None => env.push((name, value.into())),
        }
    }
    env
}

/// Decodes `%XX` escapes (a CGI `PATH_INFO` is decoded); invalid escapes stay as they are,
/// and the result is read as UTF-8, lossily.
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a CGI response: header lines (`\n` or `\r\n`), an empty line, the body. `Status:`
/// sets the status (200 without it, 302 for a bare `Location:`); other headers pass through.
pub(crate) fn parse_output(output: Bytes) -> Result<Response<Bytes>, String> {
    let mut response = Response::new(Bytes::new());
    let mut status = None;
    let mut rest = &output[..];
    loop {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(if output.is_empty() {
                "the app wrote nothing to stdout; a WAGI app writes headers such as \
                 `Content-Type: text/plain`, an empty line, then the body"
                    .into()
            } else {
                "the app's output has no empty line after its headers; a WAGI app writes \
                 headers such as `Content-Type: text/plain`, an empty line, then the body"
                    .into()
            });
        };
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        rest = &rest[end + 1..];
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        let Some((name, value)) = text.split_once(':') else {
            return Err(format!(
                "the app's output has a header line without a colon: {text:?}"
            ));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("");
            let parsed = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok());
            status = Some(
                parsed
                    .ok_or_else(|| format!("the app sent an invalid Status header: {value:?}"))?,
            );
            continue;
        }
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("the app sent an invalid header name: {name:?}"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the app sent an invalid value for header {name}"))?;
        response.headers_mut().append(name, value);
    }
    let redirect = response.headers().contains_key(http::header::LOCATION);
    *response.status_mut() = status.unwrap_or(if redirect {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    *response.body_mut() = output.slice_ref(rest);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Response<Bytes>, String> {
        parse_output(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn parses_headers_status_and_body() {
        let response =
            parse("Content-Type: text/plain\r\nStatus: 404 Not Found\r\nX-A: 1\r\n\r\nnope\n")
                .unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert_eq!(response.headers()["x-a"], "1");
        assert_eq!(response.body(), "nope\n");

        let response = parse("content-type: text/html\n\n<p>hi</p>").unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.body(), "<p>hi</p>");

        let redirect = parse("Location: /elsewhere\n\n").unwrap();
        assert_eq!(redirect.status(), 302);
        assert_eq!(redirect.body(), "");
    }

    #[test]
    fn refuses_output_that_is_not_a_cgi_response() {
        assert!(parse("").unwrap_err().contains("wrote nothing"));
        assert!(parse("hello world").unwrap_err().contains("no empty line"));
        assert!(
            parse("just text\n\nbody")
                .unwrap_err()
                .contains("without a colon")
        );
        assert!(
            parse("Status: abc\n\n")
                .unwrap_err()
                .contains("invalid Status")
        );
        assert!(
            parse("Bad Name: x\n\n")
                .unwrap_err()
                .contains("invalid header name")
        );
    }

    #[test]
    fn builds_the_cgi_environment() {
        let request = Request::post("/a%20b/c?x=1&y=2")
            .header("host", "hello.localhost:8080")
            .header("content-type", "text/plain")
            .header("x-token", "t1")
            .header("x-token", "t2")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let env = cgi_environment(&parts, 5);
        let get = |name: &str| {
            env.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{name} missing from {env:?}"))
        };
        assert_eq!(get("REQUEST_METHOD"), "POST");
        assert_eq!(get("PATH_INFO"), "/a b/c");
        assert_eq!(get("X_RAW_PATH_INFO"), "/a%20b/c");
        assert_eq!(get("QUERY_STRING"), "x=1&y=2");
        assert_eq!(get("SERVER_NAME"), "hello.localhost");
        assert_eq!(get("SERVER_PORT"), "8080");
        assert_eq!(get("CONTENT_LENGTH"), "5");
        assert_eq!(get("CONTENT_TYPE"), "text/plain");
        assert_eq!(get("HTTP_X_TOKEN"), "t1, t2");
        assert_eq!(
            get("X_FULL_URL"),
            "http://hello.localhost:8080/a%20b/c?x=1&y=2"
        );
    }

    #[test]
    fn decodes_percent_escapes_and_keeps_invalid_ones() {
        assert_eq!(percent_decode("/caf%C3%A9"), "/café");
        assert_eq!(percent_decode("/100%"), "/100%");
        assert_eq!(percent_decode("/%zz"), "/%zz");
    }
}
