"""Fixtures shared by the inference tests."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class _Media(BaseHTTPRequestHandler):
    """/slow drips one byte every 0.5 s (for 100 s at most); anything else is a 404."""

    def do_GET(self):
        if self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                return
        else:
            self.send_error(404)

    def log_message(self, *args):
        return


@pytest.fixture(scope="module")
def media_server():
    """A media host on loopback: its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Media)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
