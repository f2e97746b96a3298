//! A hostile app, used to check that the DEA contains every kind of abuse. One path each:
//! - `/loop` spins on the CPU for ever (ended by fuel or the epoch deadline);
//! - `/memory` allocates until allocation fails (ended by the memory limit);
//! - `/recursion` recurses without end (a stack overflow trap);
//! - `/panic` panics (a trap); `/silent` returns without a response;
//! - `/sleep` sleeps for an hour in a host call (ended by the DEA's wall-clock timeout);
//! - `/flood` prints lines for ever (rate-limited by the DEA's log caps);
//! - `/escape` tries to leave its sandbox through the filesystem and reports what happened;
//! - `/fill?bytes=N` writes N bytes to its scratch directory `/tmp`;
//! - `/egress?url=http://host:port/path` sends an outbound request and reports the result;
//! - `/echo` reads the request body and answers with its length;
//! - `/healthy-until?epoch=S` answers 200 until the Unix time S, then 503 (a health check
//!   that starts failing: its instances crash once the DEA's liveness probes notice);
//! - anything else answers `ok`.

use std::time::Duration;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

wasip2::http::proxy::export!(Abuse);

struct Abuse;

impl wasip2::exports::http::incoming_handler::Guest for Abuse {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let body = match path {
            "/loop" => spin(),
            "/memory" => hog_memory(),
            "/recursion" => format!("depth {}\n", recurse(std::hint::black_box(1))),
            "/panic" => panic!("abuse panics on purpose"),
            "/silent" => return,
            "/sleep" => {
                std::thread::sleep(Duration::from_secs(3600));
                "woke up\n".to_string()
            }
            "/flood" => flood(),
            "/escape" => escape(),
            "/fill" => fill(param(query, "bytes").and_then(|b| b.parse().ok()).unwrap_or(0)),
            "/egress" => egress(param(query, "url").unwrap_or_default()),
            "/echo" => format!("{}\n", body_length(&request)),
            "/healthy-until" => {
                let until: u64 = param(query, "epoch").and_then(|s| s.parse().ok()).unwrap_or(0);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let status = if now < until { 200 } else { 503 };
                return respond(response_out, status, &format!("now {now}, healthy until {until}\n"));
            }
            _ => "ok\n".to_string(),
        };
        respond(response_out, 200, &body);
    }
}

fn spin() -> String {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn hog_memory() -> String {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so the allocation is real.
        hoard.push(vec![1u8; 1024 * 1024]);
        std::hint::black_box(&hoard);
    }
}

fn recurse(depth: u64) -> u64 {
    // Never true at run time; it only tells the compiler the recursion could end.
    if std::hint::black_box(depth) == u64::MAX {
        return depth;
    }
    // Not a tail call: the addition after the call keeps every frame alive.
    std::hint::black_box(recurse(depth + 1)) + 1
}

fn flood() -> String {
    let mut n: u64 = 0;
    loop {
        println!("flood line {n}");
        n += 1;
    }
}

fn escape() -> String {
    let mut report = String::new();
    for path in ["/etc/passwd", "/tmp/../../../etc/passwd", "../../../etc/passwd"] {
        let outcome = match std::fs::read(path) {
            Ok(_) => "allowed",
            Err(_) => "denied",
        };
        report.push_str(&format!("read {path}: {outcome}\n"));
    }
    let outcome = match std::fs::write("/tmp/x", b"scratch") {
        Ok(()) => match std::fs::read("/tmp/x") {
            Ok(back) if back == b"scratch" => "allowed",
            _ => "unreadable",
        },
        Err(_) => "denied",
    };
    report.push_str(&format!("write /tmp/x: {outcome}\n"));
    report
}

fn fill(bytes: usize) -> String {
    match std::fs::write("/tmp/fill", vec![0u8; bytes]) {
        Ok(()) => format!("wrote {bytes} bytes\n"),
        Err(error) => format!("write failed: {error}\n"),
    }
}

fn egress(url: &str) -> String {
    match send(url) {
        Ok(status) => format!("status {status}\n"),
        Err(error) => format!("denied or failed: {error}\n"),
    }
}

fn send(url: &str) -> Result<u16, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", rest)) => (Scheme::Https, rest),
        Some(("http", rest)) => (Scheme::Http, rest),
        _ => return Err(format!("unsupported url {url:?}")),
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request.set_scheme(Some(&scheme)).map_err(|()| "bad scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "bad authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "bad path")?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => Ok(response.status()),
        Some(Ok(Err(code))) => Err(format!("{code:?}")),
        _ => Err("no response".to_string()),
    }
}

fn body_length(request: &IncomingRequest) -> u64 {
    let Ok(body) = request.consume() else {
        return 0;
    };
    let Ok(stream) = body.stream() else {
        return 0;
    };
    let mut length = 0;
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        length += chunk.len() as u64;
    }
    drop(stream);
    let _ = IncomingBody::finish(body);
    length
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

fn respond(response_out: ResponseOutparam, status: u16, body: &str) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let outgoing = response.body().expect("a new response has a body");
    ResponseOutparam::set(response_out, Ok(response));
    let stream = outgoing.write().expect("a new body has a stream");
    // A failed write means the client went away; there is nobody left to tell.
    let _ = stream.blocking_write_and_flush(body.as_bytes());
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}
