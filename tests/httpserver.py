"""A local HTTP server for tests (127.0.0.1, ephemeral port) that can misbehave on request.

    with LocalServer({"/a.zip": data}) as server:
        server.fail("/a.zip", status=500, times=2)    # the next two requests answer 500
        server.cut("/a.zip", after=1000, times=1)     # the next request closes after 1000 bytes
        url = server.url("/a.zip")

Range requests (``bytes=N-``) are honoured with 206 answers unless ``ranges=False``. ``server.requests``
records (path, Range header) of every request.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class LocalServer:
    def __init__(self, files: dict[str, bytes] | None = None, ranges: bool = True) -> None:
        self.files = dict(files or {})
        self.ranges = ranges
        self.requests: list[tuple[str, str | None]] = []
        self._failures: dict[str, list[int]] = {}
        self._cuts: dict[str, list[int]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add_folder(self, folder: Path, prefix: str = "/") -> None:
        """Serve every file under ``folder`` at ``prefix`` + its relative path."""
        for path in Path(folder).rglob("*"):
            if path.is_file():
                self.files[prefix + path.relative_to(folder).as_posix()] = path.read_bytes()

    def fail(self, path: str, status: int, times: int = 1) -> None:
        self._failures.setdefault(path, []).extend([status] * times)

    def cut(self, path: str, after: int, times: int = 1) -> None:
        self._cuts.setdefault(path, []).extend([after] * times)

    def url(self, path: str = "/") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self) -> "LocalServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                path = self.path.split("?")[0]
                owner.requests.append((path, self.headers.get("Range")))
                if owner._failures.get(path):
                    self.send_error(owner._failures[path].pop(0))
                    return
                if path not in owner.files:
                    self.send_error(404)
                    return
                data, start = owner.files[path], 0
                header = self.headers.get("Range")
                if owner.ranges and header and header.startswith("bytes="):
                    start = int(header[6:].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if not body:
                    return
                payload = data[start:]
                if owner._cuts.get(path):
                    payload = payload[: owner._cuts[path].pop(0)]
                    self.wfile.write(payload)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        return Handler
