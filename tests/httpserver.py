"""A local HTTP server for tests: 127.0.0.1, an ephemeral port, a daemon thread, faults on request.

    with LocalServer({"/a.zip": data}) as server:      # or LocalServer(folder=some_dir)
        server.fail("/a.zip", status=500, times=2)     # the next two GETs of /a.zip answer 500
        server.cut("/a.zip", after=1000)               # the one after sends 1000 bytes of the body, then hangs up
        server.clear_faults()                          # ... or not: the server recovers
        url = server.url("/a.zip")
    # leaving the block shuts the server down

* Files are served from memory (``files``: URL path -> bytes; ``add_folder`` loads a directory); any other
  path answers 404.
* ``Range: bytes=N-`` is answered 206 with Content-Range (416 past the end) unless ``ranges=False``, which
  makes the server ignore Range like some mirrors do.
* Faults (``fail``, ``cut``) apply to GET requests only, so HEAD requests (sizes) do not use them up.
* ``requests`` records every request as ``Request(method, path, range)``.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple


class Request(NamedTuple):
    method: str
    path: str
    range: str | None


class LocalServer:
    """An HTTP server on 127.0.0.1 for one test; use it as a context manager."""

    def __init__(self, files: dict[str, bytes] | None = None, *, folder: Path | None = None,
                 ranges: bool = True) -> None:
        self.files = dict(files or {})
        self.ranges = ranges
        self.requests: list[Request] = []
        self._faults: dict[str, list[tuple[str, int]]] = {}
        self._lock = threading.Lock()
        if folder is not None:
            self.add_folder(folder)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def add_folder(self, folder: Path, prefix: str = "/") -> None:
        """Serve every file under ``folder`` at ``prefix`` + its path relative to ``folder``."""
        for path in Path(folder).rglob("*"):
            if path.is_file():
                self.files[prefix + path.relative_to(folder).as_posix()] = path.read_bytes()

    def fail(self, path: str, status: int, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` answer ``status`` (500, 503, 404...) instead of the file."""
        with self._lock:
            self._faults.setdefault(path, []).extend([("status", status)] * times)

    def cut(self, path: str, after: int, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` announce the full length but close after ``after`` body bytes."""
        with self._lock:
            self._faults.setdefault(path, []).extend([("cut", after)] * times)

    def clear_faults(self) -> None:
        """Forget the faults not used yet: the server recovers."""
        with self._lock:
            self._faults.clear()

    def url(self, path: str = "/") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self) -> "LocalServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next_fault(self, method: str, path: str) -> tuple[str, int] | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.pop(0) if method == "GET" and queue else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self._answer("HEAD")

            def do_GET(self) -> None:
                self._answer("GET")

            def _answer(self, method: str) -> None:
                path, header = self.path.split("?")[0], self.headers.get("Range")
                owner.requests.append(Request(method, path, header))
                fault = owner._next_fault(method, path)
                if fault is not None and fault[0] == "status":
                    self.send_error(fault[1])
                    return
                if path not in owner.files:
                    self.send_error(404)
                    return
                data, start = owner.files[path], 0
                if owner.ranges and header and header.startswith("bytes="):
                    start = int(header[6:].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if method == "GET":
                    self._send_body(data[start:], fault)

            def _send_body(self, payload: bytes, fault: tuple[str, int] | None) -> None:
                if fault is not None:  # a cut: part of the body, then the connection goes away
                    payload = payload[: fault[1]]
                    self.close_connection = True
                try:
                    self.wfile.write(payload)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the client gave up first
                    self.close_connection = True

        return Handler
