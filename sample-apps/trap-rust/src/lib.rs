//! A deliberately broken app, used to check that the DEA contains guest failures:
//! - `/spin` loops for ever on the CPU (ended by the epoch deadline);
//! - `/sleep` sleeps for an hour in a host call (ended by the DEA's wall-clock timeout);
//! - `/silent` returns without sending a response;
//! - anything else panics (a wasm trap).

use std::time::Duration;

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

wasip2::http::proxy::export!(Trap);

struct Trap;

impl wasip2::exports::http::incoming_handler::Guest for Trap {
    fn handle(request: IncomingRequest, _response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        match path.as_str() {
            "/spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/sleep" => std::thread::sleep(Duration::from_secs(3600)),
            "/silent" => {}
            _ => panic!("trap-rust panics on {path}"),
        }
    }
}
