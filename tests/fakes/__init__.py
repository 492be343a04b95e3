"""Protocol-level fakes of outside services (X API v2, Bluesky XRPC, Mastodon REST, the Hugging Face hub),
served on 127.0.0.1 for tests."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote


def echo_text(method: str, url: str, headers: dict[str, str], body: bytes) -> str:
    """What a misbehaving upstream (a proxy, a debugging server) puts in an error: the whole request — headers
    (Authorization included), URL with its query, body — as JSON, then URL-encoded once and twice. One line."""
    request = json.dumps({"method": method, "url": url, "headers": dict(headers),
                          "body": body.decode("utf-8", "replace")})
    once = quote(request, safe="")
    return f"upstream echo: {request} urlencoded: {once} twice: {quote(once, safe='')}"


def echo_body(method: str, url: str, headers: dict[str, str], body: bytes) -> dict:
    """An error body every client library shows part of: `error` (tweepy, Mastodon.py, huggingface_hub, XRPC)
    and `message` (XRPC)."""
    text = echo_text(method, url, headers, body)
    return {"error": text, "message": text}


@dataclass
class Failure:
    status: int
    echo: bool


class Failing:
    """`fail(count, status=..., echo=True)`: the next `count` requests are answered with `status` and, with
    `echo`, a body echoing the request (see `echo_body`). Fakes call `take_failure()` first thing."""

    _failure_lock = threading.Lock()

    def fail(self, count: int = 1, *, status: int = 500, echo: bool = True) -> None:
        with self._failure_lock:
            self.__dict__.setdefault("failures", []).extend([Failure(status, echo)] * count)

    def take_failure(self, method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict] | None:
        with self._failure_lock:
            queued = self.__dict__.get("failures")
            if not queued:
                return None
            failure = queued.pop(0)
        return failure.status, echo_body(method, url, headers, body) if failure.echo else {"error": "Upstream error"}


class LocalServer(Failing):
    """Serves a request handler on an ephemeral 127.0.0.1 port from a daemon thread; the handler reaches the
    fake as `self.server.fake`. Subclasses say what they serve in `start()`: `return self.serve(Handler, name)`."""

    _httpd: ThreadingHTTPServer | None = None

    def serve(self, handler: type[BaseHTTPRequestHandler], name: str):
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self
        # stop() waits for the serving loop's next look at its shutdown flag: every 5 ms, so that a test's
        # teardown does not wait (a hundred servers a run, at 0.05 s they cost 3 s of the fast subset)
        threading.Thread(target=self._httpd.serve_forever, args=(0.005,), name=name, daemon=True).start()
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
