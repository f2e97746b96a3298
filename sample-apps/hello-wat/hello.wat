;; hello-wat: the smallest WAGI app, written by hand in WebAssembly text. Pushed as is, the
;; stager assembles it; as a WASI p1 command it is served the CGI way: what it writes to stdout
;; is the response (headers, an empty line, the body).
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; The response, at offset 16.
  (data (i32.const 16) "Content-Type: text/plain\n\nHello from WebAssembly text!\n")
  (func (export "_start")
    ;; One iovec at offset 0: {buf = 16, len = 55}.
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 55))
    ;; fd 1 (stdout), 1 iovec, bytes written go to offset 8.
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
