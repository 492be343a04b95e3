"""Bluesky (XRPC through `atproto`'s AsyncClient): the one client factory and the one caller, for reading
(bot/sources/bluesky.py, the public AppView) and posting (bot/posting/bluesky.py, the bot's own PDS) alike.

`BlueskyCaller` awaits an atproto call, waits out a 429 until its `ratelimit-reset` (bot/networks/base.py),
and turns the XRPC errors into ours: `error` for a certain failure, `unknown` when a request that creates
something went out and no clear answer came back, AuthError for refused credentials (posting relies on it to
drop a refused session and log in again).
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx
from atproto_client import AsyncClient
from atproto_client.exceptions import (
    BadRequestError,
    InvokeTimeoutError,
    NetworkError,
    RateLimitExceededError,
    RequestErrorBase,
    RequestException,
    UnauthorizedError,
)
from atproto_client.models.common import XrpcError
from atproto_client.request import AsyncRequest
from atproto_core.exceptions import AtProtocolError

from ..errors import AuthError, MimicbotError
from ..redaction import redact
from .base import DEFAULT_TIMEOUT, Caller, http_base

T = TypeVar("T")


def bsky_client(base_url: str, timeout: float = DEFAULT_TIMEOUT, *, setting: str) -> AsyncClient:
    """atproto's AsyncClient on `base_url` (it appends /xrpc), read from the setting named `setting`.
    Close it with `await client.request.close()`."""
    return AsyncClient(http_base(base_url, setting, "https://bsky.social"),
                       request=AsyncRequest(timeout=timeout, verify=_tls()))


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS settings (SSL_CERT_FILE or SSL_CERT_DIR, else certifi's bundle), built once per process:
    reading the CA bundle takes some 30 ms, and each posting session and each fetch makes a client. For atproto's
    HTTP/1.1 clients only: httpcore sets the context's ALPN protocols on every connection it opens."""
    return httpx.create_ssl_context()


def xrpc_error(error: RequestErrorBase) -> tuple[str, str]:
    """(error name, message) of an XRPC error answer, e.g. ("InvalidRequest", "Profile not found")."""
    content = error.response.content if error.response is not None else None
    if isinstance(content, XrpcError):
        return redact(content.error or ""), redact(content.message or "")
    if isinstance(content, dict) and ("error" in content or "message" in content):  # not quite XRPC's shape
        return redact(str(content.get("error") or "")), redact(str(content.get("message") or ""))
    status = error.response.status_code if error.response is not None else "no answer"
    return f"HTTP {status}", ""


class BlueskyCaller(Caller):
    """`await caller(request, what=...)` with `request` an atproto coroutine function (a partial will do).

    `bad_request(name, message)` (optional) makes the error for a 400 XRPC answer, or None for the general one;
    `auth_hint` is added to the message of a refusal ("check BLUESKY_HANDLE and BLUESKY_APP_PASSWORD").
    """

    network = "Bluesky"

    def __init__(self, *, auth_hint: str = "", **kwargs):
        super().__init__(**kwargs)
        self.auth_hint = auth_hint

    async def __call__(self, request: Callable[[], Awaitable[T]], *, what: str, publishing: bool = False,
                       bad_request: Callable[[str, str], MimicbotError | None] | None = None) -> T:
        return await self.call(request, what=what, publishing=publishing, hooks={"bad_request": bad_request})

    def rate_limit(self, e: BaseException) -> Mapping[str, Any] | None:
        if not isinstance(e, RateLimitExceededError):
            return None
        headers = dict(getattr(e.response, "headers", None) or {})
        if not headers and e.reset_at is not None:
            headers["ratelimit-reset"] = str(e.reset_at.timestamp())
        if not headers and e.retry_after is not None:
            headers["retry-after"] = str(e.retry_after)
        return headers

    def translate(self, e: BaseException, *, what: str, publishing: bool,
                  bad_request: Callable[[str, str], MimicbotError | None] | None = None, **_) -> MimicbotError | None:
        if isinstance(e, BadRequestError):
            name, message = xrpc_error(e)
            return (bad_request and bad_request(name, message)) or self.error(
                f"Bluesky rejected {what} ({name}: {message or 'no detail'})")
        if isinstance(e, UnauthorizedError):
            name, message = xrpc_error(e)
            hint = f"; {self.auth_hint}" if self.auth_hint else ""
            return AuthError(f"Bluesky refused {what} ({name}: {message or 'no detail'}){hint}")
        if isinstance(e, (AtProtocolError, httpx.HTTPError)):
            return self._failure(e, what, publishing)
        return None

    def _failure(self, e: Exception, what: str, publishing: bool) -> MimicbotError:
        """A transport failure, a server error or an answer of the wrong shape."""
        status = e.response.status_code if isinstance(e, RequestErrorBase) and e.response is not None else None
        never_sent = isinstance(e.__cause__, httpx.ConnectError) or isinstance(e, httpx.ConnectError)
        answered_badly = status is not None and (status >= 500 or status in (409, 413))
        timed_out = isinstance(e, (InvokeTimeoutError, httpx.TimeoutException))
        if publishing and not never_sent and (timed_out or answered_badly or isinstance(e, NetworkError)):
            return self.unknown(f"Bluesky did not confirm {what} ({_describe(e)}); it may or may not be posted")
        if isinstance(e, (NetworkError, RequestException, httpx.HTTPError)):
            return self.error(f"could not reach Bluesky for {what}: {_describe(e)}")
        return self.error(f"Bluesky answered {what} with something unexpected: {_describe(e)}")


def _describe(e: Exception) -> str:
    if isinstance(e, InvokeTimeoutError) or isinstance(e.__cause__, httpx.TimeoutException):
        return "timed out"
    cause = e.__cause__ if isinstance(e, RequestErrorBase) and e.response is None and e.__cause__ else e
    return redact(str(cause) or type(cause).__name__)
