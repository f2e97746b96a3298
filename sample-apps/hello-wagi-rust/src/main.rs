//! hello-wagi-rust: a WAGI web app for Nimbus in plain `std` Rust, built for wasm32-wasip1.
//! The request arrives in CGI environment variables and on stdin; the response is written to
//! stdout as headers, an empty line and the body.

use std::io::{Read, Write};

fn main() -> std::io::Result<()> {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let (method, path, query) = (var("REQUEST_METHOD"), var("PATH_INFO"), var("QUERY_STRING"));

    let mut out = std::io::stdout().lock();
    writeln!(out, "Content-Type: text/plain; charset=utf-8")?;
    writeln!(out)?;
    writeln!(out, "Hello from Rust WAGI, {path}!")?;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        writeln!(out, "{key} = {value}")?;
    }
    if method == "POST" {
        let mut body = String::new();
        std::io::stdin().read_to_string(&mut body)?;
        writeln!(out, "You posted {} bytes: {body}", body.len())?;
    }
    // stderr goes to the app's log.
    eprintln!("hello-wagi-rust: {method} {path}");
    Ok(())
}
