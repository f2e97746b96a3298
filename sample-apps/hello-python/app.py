"""hello-python: a wasi:http/proxy app for Nimbus, built with componentize-py.

GET  /any/path?name=Bob -> greeting naming the path, method, app and instance, plus `name`
POST /any/path          -> the same greeting, echoing the request body back
"""

import json
import os
from urllib.parse import parse_qs, urlsplit

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        url = urlsplit(request.path_with_query() or "/")
        method = request.method()
        # Read the environment per request: module-level code runs once, at build time.
        vcap = json.loads(os.environ.get("VCAP_APPLICATION") or "{}")
        lines = [
            f"Hello from Python, {url.path}!",
            f"app {vcap.get('application_name', 'unnamed')}, "
            f"instance {vcap.get('instance_index', 0)}",
        ]
        if name := parse_qs(url.query).get("name"):
            lines.append(f"Nice to meet you, {name[0]}.")
        status = 200
        if isinstance(method, Method_Post):
            body = read_body(request)
            lines.append(f"You posted {len(body)} bytes: {body.decode(errors='replace')}")
        elif not isinstance(method, Method_Get):
            status, lines = 405, ["only GET and POST are supported"]
        print(f"hello-python: {url.path} -> {status}")  # stdout is the app's log
        send(response_out, status, ("\n".join(lines) + "\n").encode())


def read_body(request: IncomingRequest) -> bytes:
    chunks = []
    with request.consume() as body, body.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(64 * 1024))
            except Err as e:
                if isinstance(e.value, StreamError_Closed):
                    return b"".join(chunks)
                raise


def send(response_out: ResponseOutparam, status: int, data: bytes) -> None:
    response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain; charset=utf-8")]))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as stream:  # the stream must be dropped before finish()
        for i in range(0, len(data), 4096):  # at most 4096 bytes per blocking write
            stream.blocking_write_and_flush(data[i : i + 4096])
    OutgoingBody.finish(body, None)
