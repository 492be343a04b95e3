"""Protocol-level fakes of outside services (X API v2, Bluesky XRPC, Mastodon REST, the Hugging Face hub),
served on 127.0.0.1 for tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalServer:
    """Serves a request handler on an ephemeral 127.0.0.1 port from a daemon thread; the handler reaches the
    fake as `self.server.fake`. Subclasses say what they serve in `start()`: `return self.serve(Handler, name)`."""

    _httpd: ThreadingHTTPServer | None = None

    def serve(self, handler: type[BaseHTTPRequestHandler], name: str):
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name=name, daemon=True).start()
        return self

    def start(self):
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
