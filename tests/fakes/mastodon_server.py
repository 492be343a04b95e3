"""A protocol-level fake of the Mastodon REST API on 127.0.0.1, as Mastodon.py speaks it: the real paths, JSON
shapes, snowflake ids, `Link` pagination headers, `{"error": ...}` answers and X-RateLimit-* headers.

    server.add_account("alice", display_name="Alice")                # local to server.domain
    server.add_account("bob", domain="remote.example", known=False)  # found only by search with resolve=true
    server.add_status("alice", "<p>hello</p>", visibility="public", reply_to=None, reblog_of=None,
                      spoiler_text="")                                # a content warning when not empty
    server.rate_limit(1, reset_in=30, path="/api/v1/statuses")       # 429 with an ISO 8601 X-RateLimit-Reset
    server.hold() / server.release()                                 # the next request waits for release()
    server.fail(1, status=500, echo=True)                            # 500, the body echoing the request
    server.calls("/api/v1/statuses")                                 # what was asked, in order

Endpoints: GET /api/v1/accounts/lookup?acct, /api/v1/accounts/search?q&resolve&limit (resolve needs a token),
/api/v1/accounts/:id/statuses?limit(<=40)&max_id&min_id&since_id (anonymous readers see public and unlisted
statuses only); POST /api/v1/statuses (Bearer token; form or JSON; status and spoiler_text together <= 500
characters; Idempotency-Key returns the first status again).
"""

from __future__ import annotations

import json
from html import escape
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fakes import LocalServer
from tests.fakes.x_server import _Handler  # the same JSON-over-http.server plumbing as the X fake

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
TOKEN = "test-mastodon-token"


class ApiReply(Exception):
    def __init__(self, status: int, error: str, headers: dict | None = None):
        self.status, self.body, self.headers = status, {"error": error}, headers or {}


@dataclass
class FakeAccount:
    id: str
    username: str
    domain: str | None  # None: local
    display_name: str
    known: bool = True
    suspended: bool = False

    def acct(self) -> str:
        return self.username if self.domain is None else f"{self.username}@{self.domain}"

    def to_json(self, local_domain: str) -> dict:
        host = self.domain or local_domain
        out = {"id": self.id, "username": self.username, "acct": self.acct(), "display_name": self.display_name,
               "locked": False, "bot": False, "discoverable": True, "group": False,
               "created_at": "2024-01-01T00:00:00.000Z", "note": "", "url": f"https://{host}/@{self.username}",
               "avatar": f"https://{local_domain}/avatars/{self.id}.png",
               "avatar_static": f"https://{local_domain}/avatars/{self.id}.png",
               "header": "", "header_static": "", "followers_count": 3, "following_count": 2,
               "statuses_count": 0, "last_status_at": None, "emojis": [], "fields": []}
        return {**out, "suspended": True} if self.suspended else out


@dataclass
class Logged:
    method: str
    path: str
    query: dict[str, str]
    body: dict
    headers: dict[str, str]  # Authorization left out
    authenticated: bool


class FakeMastodon(LocalServer):
    def __init__(self, domain: str = "example.social"):
        self.domain = domain
        self.accounts: dict[str, FakeAccount] = {}
        self.statuses: list[dict] = []  # ascending id
        self.requests: list[Logged] = []
        self.idempotency: dict[str, dict] = {}
        self._clock = EPOCH
        self._next_account = 100
        self._rate_limits: list[tuple[str | None, int]] = []
        self._hold = threading.Event()
        self._holding = 0
        self.held = 0
        self._lock = threading.RLock()
        self.me = self.add_account("mimicbot", display_name="mimicbot")  # whom TOKEN belongs to

    # -- state ------------------------------------------------------------------------------------

    def add_account(self, username: str, *, domain: str | None = None, display_name: str = "",
                    known: bool = True) -> FakeAccount:
        with self._lock:
            self._next_account += 1
            account = FakeAccount(str(self._next_account), username, domain, display_name, known)
            self.accounts[account.id] = account
            return account

    def account(self, acct: str) -> FakeAccount | None:
        user, _, domain = acct.lower().lstrip("@").partition("@")
        domain = None if domain in ("", self.domain) else domain
        return next((a for a in self.accounts.values() if (a.username, a.domain) == (user, domain)), None)

    def add_status(self, author: str | FakeAccount, html: str, *, visibility: str = "public",
                   reply_to: dict | None = None, reblog_of: dict | None = None, spoiler_text: str = "") -> dict:
        account = author if isinstance(author, FakeAccount) else self.account(author)
        with self._lock:
            self._clock += timedelta(minutes=1)
            sid = str((int(self._clock.timestamp() * 1000) << 16) | len(self.statuses))
            host = account.domain or self.domain
            status = {
                "id": sid, "created_at": self._clock.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "in_reply_to_id": reply_to["id"] if reply_to else None,
                "in_reply_to_account_id": reply_to["account"]["id"] if reply_to else None,
                "sensitive": bool(spoiler_text), "spoiler_text": spoiler_text, "visibility": visibility,
                "language": "en",
                "uri": f"https://{host}/users/{account.username}/statuses/{sid}",
                "url": f"https://{host}/@{account.username}/{sid}", "replies_count": 0, "reblogs_count": 0,
                "favourites_count": 0, "edited_at": None, "content": "" if reblog_of else html,
                "reblog": reblog_of, "account": account.to_json(self.domain), "media_attachments": [],
                "mentions": [], "tags": [], "emojis": [], "card": None, "poll": None,
            }
            self.statuses.append(status)
            return status

    def rate_limit(self, count: int = 1, *, reset_in: int = 30, path: str | None = None) -> None:
        """The next `count` requests (to `path`, or any) get 429, X-RateLimit-Reset = now + reset_in."""
        with self._lock:
            self._rate_limits.extend([(path, reset_in)] * count)

    def hold(self) -> None:
        """The next request waits (up to 10 s, then 503) until `release()`."""
        with self._lock:
            self._holding += 1
            self._hold.clear()

    def release(self) -> None:
        self._hold.set()

    def calls(self, path: str) -> list[Logged]:
        return [r for r in self.requests if r.path == path]

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> FakeMastodon:
        return self.serve(_Handler, "fake-mastodon")

    def stop(self) -> None:
        self.release()  # a held request must not keep the server from shutting down
        super().stop()

    # -- protocol ---------------------------------------------------------------------------------

    ROUTES = [
        ("GET", r"/api/v1/accounts/lookup", "_lookup"),
        ("GET", r"/api/v1/accounts/search", "_search"),
        ("GET", r"/api/v1/accounts/(\d+)/statuses", "_account_statuses"),
        ("POST", r"/api/v1/statuses", "_post_status"),
    ]

    def handle(self, method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, Any]:
        if failed := self.take_failure(method, url, headers, body):
            return failed[0], {}, failed[1]
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        kind = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        form = json.loads(body) if body and "json" in kind else {k: v[0] for k, v in parse_qs(body.decode()).items()}
        authenticated = any(k.lower() == "authorization" and v == f"Bearer {TOKEN}" for k, v in headers.items())
        with self._lock:
            self.requests.append(Logged(method, parts.path, query, form,
                                        {k: v for k, v in headers.items() if k.lower() != "authorization"},
                                        authenticated))
            held, self._holding = self._holding > 0, max(0, self._holding - 1)
            limit = next((r for r in self._rate_limits if r[0] in (None, parts.path)), None)
            if limit:
                self._rate_limits.remove(limit)
        try:
            if held:
                self.held += 1
                if not self._hold.wait(10):
                    raise ApiReply(503, "held and never released")
            if limit:
                reset = datetime.now(timezone.utc) + timedelta(seconds=limit[1])
                raise ApiReply(429, "Too many requests", {
                    "X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
            if any(k.lower() == "authorization" for k in headers) and not authenticated:
                raise ApiReply(401, "The access token is invalid")
            for verb, pattern, name in self.ROUTES:
                match = re.fullmatch(pattern, parts.path)
                if match and verb == method:
                    return getattr(self, name)(*match.groups(), query=query, form=form, headers=headers,
                                               authenticated=authenticated)
            raise ApiReply(404, "Record not found")
        except ApiReply as reply:
            return reply.status, reply.headers, reply.body

    def _visible(self, account: FakeAccount | None) -> FakeAccount:
        if account is None or not account.known:
            raise ApiReply(404, "Record not found")
        return account

    def _lookup(self, *, query: dict, **_) -> tuple[int, dict, Any]:
        return 200, {}, self._visible(self.account(query.get("acct", ""))).to_json(self.domain)

    def _search(self, *, query: dict, authenticated: bool, **_) -> tuple[int, dict, Any]:
        resolve = query.get("resolve") in ("1", "true")
        if resolve and not authenticated:
            raise ApiReply(401, "Search queries that resolve remote resources are not supported without "
                                "authentication")
        account = self.account(query.get("q", ""))
        if account is not None and resolve:
            account.known = True  # resolved over WebFinger
        found = [account] if account is not None and account.known else []
        return 200, {}, [a.to_json(self.domain) for a in found[: int(query.get("limit", 40))]]

    def _account_statuses(self, account_id: str, *, query: dict, authenticated: bool, **_) -> tuple[int, dict, Any]:
        account = self._visible(self.accounts.get(account_id))
        limit = min(int(query.get("limit", 20)), 40)
        seen = ("public", "unlisted", "private") if authenticated else ("public", "unlisted")
        with self._lock:
            mine = [s for s in self.statuses if s["account"]["id"] == account.id and s["visibility"] in seen]
        ids = lambda key: int(query[key]) if key in query else None  # noqa: E731
        max_id, min_id, since_id = ids("max_id"), ids("min_id"), ids("since_id")
        pool = [s for s in mine if (max_id is None or int(s["id"]) < max_id)
                and (since_id is None or int(s["id"]) > since_id) and (min_id is None or int(s["id"]) > min_id)]
        page = pool[:limit] if min_id is not None else pool[-limit:]  # min_id: the oldest just after it
        page = list(reversed(page))
        headers = {}
        if page:
            base = f"{self.url}/api/v1/accounts/{account.id}/statuses"
            headers["Link"] = (f'<{base}?max_id={page[-1]["id"]}>; rel="next", '
                               f'<{base}?min_id={page[0]["id"]}>; rel="prev"')
        return 200, headers, page

    def _post_status(self, *, form: dict, headers: dict, authenticated: bool, **_) -> tuple[int, dict, Any]:
        if not authenticated:
            raise ApiReply(401, "The access token is invalid")
        key = next((v for k, v in headers.items() if k.lower() == "idempotency-key"), None)
        if key and key in self.idempotency:
            return 200, {}, self.idempotency[key]
        text = str(form.get("status", ""))
        spoiler = str(form.get("spoiler_text") or "")
        if not text.strip():
            raise ApiReply(422, "Validation failed: Text can't be blank")
        if len(text) + len(spoiler) > 500:  # the content warning counts towards the limit
            raise ApiReply(422, "Validation failed: Text character limit of 500 exceeded")
        reply_to = next((s for s in self.statuses if s["id"] == form.get("in_reply_to_id")), None)
        if form.get("in_reply_to_id") and reply_to is None:
            raise ApiReply(404, "Record not found")
        html = "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n"))
        status = self.add_status(self.me, html, visibility=form.get("visibility", "public"), reply_to=reply_to,
                                 spoiler_text=spoiler)
        if key:
            self.idempotency[key] = status
        return 200, {}, status


@pytest.fixture
def mastodon_server():
    with FakeMastodon() as server:
        yield server


def mastodon_settings(server: FakeMastodon, tmp_path, **overrides):
    """Settings pointing at the fake with its token; nothing from the environment or .env."""
    from bot.config import Settings

    values = {"mimicbot_data_dir": tmp_path / "data", "mimicbot_models_dir": tmp_path / "models",
              "mastodon_api_base": server.url, "mastodon_access_token": TOKEN, **overrides}
    return Settings(_env_file=None, **values)
