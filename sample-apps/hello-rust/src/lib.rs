//! The hello app: answers every request with a greeting naming the app and the instance that
//! served it, both read from `VCAP_APPLICATION` as a Cloud Foundry app would.

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Hello);

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let (name, index) = app_identity();
        let path = request.path_with_query().unwrap_or_default();
        // stdout goes to the app's log stream (`nimbus logs`).
        println!("hello: serving {path} from instance {index}");
        let body = format!("Hello from {name}, instance {index}!\n");

        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
        let response = OutgoingResponse::new(headers);
        let outgoing = response.body().expect("a new response has a body");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = outgoing.write().expect("a new body has a stream");
        // A failed write means the client went away; there is nobody left to tell.
        let _ = stream.blocking_write_and_flush(body.as_bytes());
        drop(stream);
        let _ = OutgoingBody::finish(outgoing, None);
    }
}

/// The app's name and this instance's index, or placeholders outside Nimbus.
fn app_identity() -> (String, u64) {
    let vcap = std::env::var("VCAP_APPLICATION").unwrap_or_default();
    let parsed: serde_json::Value = serde_json::from_str(&vcap).unwrap_or_default();
    let name = parsed["application_name"]
        .as_str()
        .unwrap_or("an unnamed app")
        .to_string();
    let index = parsed["instance_index"].as_u64().unwrap_or(0);
    (name, index)
}
