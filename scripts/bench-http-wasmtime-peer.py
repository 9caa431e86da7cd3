#!/usr/bin/env python3
"""bench-http-wasmtime-peer.py PORT MODULE: a benchmark peer for scripts/bench-http.sh.

A small HTTP/1.1 server (Python's http.server, a thread per connection, keep-alive) that
answers every request the way the HTTP trigger does: a fresh wasmtime instance of the WAGI
MODULE, with the request's CGI variables and argv, its body on stdin, and its stdout read as a
CGI response. The module is compiled once (wasmtime's JIT), and the linker with WASI is made
once; each request gets its own Store, WasiConfig and instance, so nothing one request leaves
behind reaches the next. Listens on 127.0.0.1 only. Needs PyPI `wasmtime`.

This is a peer, not a product: it implements as much of WAGI as the hello benchmark needs (the
variables, Status and Content-Type), and answers 500 for a guest that traps or exits non-zero.
"""
import os
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from wasmtime import Engine, ExitTrap, Linker, Module, Store, WasiConfig

port = int(sys.argv[1])
module_path = sys.argv[2]
engine = Engine()
module = Module.from_file(engine, module_path)
linker = Linker(engine)
linker.define_wasi()


def run_guest(environment, argv, body):
    """One fresh instance: returns (exit code, stdout bytes)."""
    output = bytearray()
    config = WasiConfig()
    config.argv = argv
    config.env = list(environment.items())
    config.stdout_custom = output.extend
    stdin_path = None
    if body:
        handle, stdin_path = tempfile.mkstemp(prefix="wasmtime-peer-")
        with os.fdopen(handle, "wb") as stdin:
            stdin.write(body)
        config.stdin_file = stdin_path
    store = Store(engine)
    store.set_wasi(config)
    code = 0
    try:
        instance = linker.instantiate(store, module)
        instance.exports(store)["_start"](store)
    except ExitTrap as exit_trap:
        code = exit_trap.code
    except Exception:  # a trap
        code = -1
    finally:
        if stdin_path:
            os.unlink(stdin_path)
    return code, bytes(output)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body are two writes: without this, Nagle's algorithm holds the body
    # back until the client's delayed ACK, 40 ms per request.
    disable_nagle_algorithm = True

    def log_message(self, *_):
        pass

    def answer(self, status, headers, body):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        host = self.headers.get("Host", f"127.0.0.1:{port}")
        environment = {
            "AUTH_TYPE": "", "CONTENT_LENGTH": str(length), "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "GATEWAY_INTERFACE": "CGI/1.1", "PATH_INFO": path, "PATH_TRANSLATED": path, "QUERY_STRING": query,
            "REMOTE_ADDR": self.client_address[0], "REMOTE_HOST": self.client_address[0], "REMOTE_USER": "",
            "REQUEST_METHOD": self.command, "SCRIPT_NAME": "", "SERVER_NAME": host.rsplit(":", 1)[0],
            "SERVER_PORT": str(port), "SERVER_PROTOCOL": self.request_version, "SERVER_SOFTWARE": "wasmtime-py-peer",
            "X_FULL_URL": f"http://{host}{self.path}", "X_MATCHED_ROUTE": "/...", "X_RAW_PATH_INFO": path,
        }
        for name, value in self.headers.items():
            if name.lower() not in ("authorization", "connection"):
                environment["HTTP_" + name.upper().replace("-", "_")] = value
        argv = [path] + (query.split("&") if query else [])
        code, output = run_guest(environment, argv, body)
        # The headers end at the first blank line, LF or CRLF.
        ends = [(output.find(mark), len(mark)) for mark in (b"\n\n", b"\r\n\r\n") if output.find(mark) >= 0]
        if code != 0 or not ends:
            self.answer(500, [("Content-Type", "text/plain")], b"the guest failed\n")
            return
        end, mark = min(ends)
        head, content = output[:end], output[end + mark:]
        status, headers = 200, []
        for line in head.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "status":
                status = int(value.strip().split()[0])
            else:
                headers.append((name.strip(), value.strip()))
        self.answer(status, headers, content)

    do_GET = do_POST = do_HEAD = serve


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # wrk closes its connections mid-answer when a run ends: not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


Server(("127.0.0.1", port), Handler).serve_forever()
