"""A protocol-level fake of the X API v2 on 127.0.0.1, for tweepy's sync (requests) and async (aiohttp) clients.

Point a client at it with `settings_for(server, tmp_path)` (twitter_api_base = server.url). It answers like the
real API: the same paths, JSON shapes, error objects (a 200 with `errors` for unknown/suspended/protected users),
status codes and rate-limit headers, and it returns only the fields a request asks for (`tweet.fields`,
`user.fields`), so a client that forgets to ask notices.

    server.add_user("jack", name="Jack")                 # → FakeUser (ids are numeric strings)
    server.add_tweet("jack", "hello", kind="reply")       # kind: None, "retweet", "reply" or "quote"
    server.add_tweet("jack", "a" * 600)                   # a long post: `text` is its first 280 characters,
                                                          # the whole in `note_tweet` (only when asked)
    server.rate_limit(2, reset_in=1)                      # the next 2 requests get 429 + x-rate-limit-reset
    server.stall(1, seconds=2)                            # the next request answers after 2 s
    server.fail(1, status=500, echo=True)                 # the next request: 500, its body echoing the request
    server.requests[-1].query["since_id"]                 # what was asked (Authorization left out)

Endpoints:
    GET  /2/users/by/username/:username   user.fields
    GET  /2/users/:id/tweets              newest first; max_results (5-100), pagination_token, since_id,
                                          until_id, tweet.fields, expansions=referenced_tweets.id (the
                                          referred-to posts in includes.tweets). Serves the whole timeline:
                                          the 3,200 cap is the client's to enforce.
    GET  /2/users/:id/mentions            tweets containing @username; the same paging; expansions=author_id
    GET  /2/users/me                      OAuth 1.0a only: `server.me`
    POST /2/tweets                        OAuth 1.0a only: {"text", "reply": {"in_reply_to_tweet_id"}, "quote_tweet_id"}

Auth: `Bearer <bearer_token>` or OAuth 1.0a with the fake's consumer key and access token and a valid
HMAC-SHA1 signature over the URL actually requested (so a client signing the wrong host is refused). Anything
else → 401.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849.utils import parse_authorization_header

from tests.fakes import LocalServer

# Settings fields → the credentials the fake accepts.
TEST_CREDENTIALS = {
    "twitter_bearer_token": "test-token",
    "twitter_api_key": "test-consumer-key",
    "twitter_api_secret": "test-consumer-secret",
    "twitter_access_token": "test-access-token",
    "twitter_access_secret": "test-access-secret",
}

PROBLEMS = "https://api.twitter.com/2/problems/"
EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)
KINDS = {"retweet": "retweeted", "reply": "replied_to", "quote": "quoted"}
LONG_POST = 280  # characters of `text`; a longer post's whole text is in `note_tweet`


@dataclass
class FakeUser:
    id: str
    username: str
    name: str
    protected: bool = False
    suspended: bool = False
    profile_image_url: str = ""

    def to_json(self, fields: set[str]) -> dict:
        out = {"id": self.id, "name": self.name, "username": self.username}
        if "protected" in fields:
            out["protected"] = self.protected
        if "profile_image_url" in fields:
            out["profile_image_url"] = self.profile_image_url
        return out


@dataclass
class FakeTweet:
    id: int
    author_id: str
    text: str
    created_at: datetime
    referenced_tweets: list[dict] = field(default_factory=list)
    in_reply_to_user_id: str | None = None
    lang: str = "en"
    note_text: str | None = None  # the whole text of a post over 280 characters (`text` is its start)

    def to_json(self, fields: set[str]) -> dict:
        out = {"id": str(self.id), "text": self.text, "edit_history_tweet_ids": [str(self.id)]}
        if self.note_text is not None and "note_tweet" in fields:  # as X: only when tweet.fields asks for it
            out["note_tweet"] = {"text": self.note_text, "entities": {}}
        optional = {
            "created_at": self.created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "referenced_tweets": self.referenced_tweets or None,
            "in_reply_to_user_id": self.in_reply_to_user_id,
            "lang": self.lang,
            "author_id": self.author_id,
            "conversation_id": str(self.id),
        }
        out.update({k: v for k, v in optional.items() if k in fields and v is not None})
        return out


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # Authorization removed
    body: Any = None
    auth: str | None = None  # "bearer", "oauth", or None when refused


class _Reply(Exception):
    """Raised inside a route to answer with an error."""

    def __init__(self, status: int, body: dict, headers: dict | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def _problem(status: int, title: str, detail: str, kind: str = "about:blank") -> _Reply:
    return _Reply(status, {"title": title, "detail": detail, "type": kind, "status": status})


class FakeXServer(LocalServer):
    def __init__(self, *, first_tweet_id: int = 1_700_000_000_000_000_000, credentials: dict | None = None):
        self.credentials = dict(credentials or TEST_CREDENTIALS)
        self.users: dict[str, FakeUser] = {}
        self.tweets: list[FakeTweet] = []  # ascending id
        self.requests: list[LoggedRequest] = []
        self._next_user_id = 1000
        self._next_tweet_id = first_tweet_id
        self._rate_limited = 0
        self._reset_in = 1
        self._stalls: list[float] = []
        self._lock = threading.RLock()
        self.me = self.add_user("mimicbot", name="mimicbot")  # who OAuth requests act as

    # -- state ------------------------------------------------------------------------------------

    def add_user(self, username: str, *, name: str | None = None, protected: bool = False,
                 suspended: bool = False) -> FakeUser:
        with self._lock:
            uid = str(self._next_user_id)
            self._next_user_id += 1
            user = FakeUser(uid, username, name or username.title(), protected, suspended,
                            f"https://pbs.twimg.com/profile_images/{uid}/avatar_normal.jpg")
            self.users[uid] = user
            return user

    def user(self, username: str) -> FakeUser | None:
        return next((u for u in self.users.values() if u.username.lower() == username.lower()), None)

    def add_tweet(self, author: str | FakeUser, text: str, *, kind: str | None = None,
                  in_reply_to: FakeTweet | None = None, created_at: datetime | None = None) -> FakeTweet:
        """A new tweet, newer (higher id) than every other. `kind`: None, "retweet", "reply" or "quote"."""
        user = author if isinstance(author, FakeUser) else self.user(author)
        if user is None:
            raise KeyError(f"no fake user {author!r}")
        if in_reply_to is not None:
            kind = "reply"
        with self._lock:
            tid = self._next_tweet_id
            self._next_tweet_id += 1
            target = in_reply_to or (self.tweets[0] if self.tweets else None)
            refs = [{"type": KINDS[kind], "id": str(target.id if target else 1)}] if kind else []
            reply_to = (target.author_id if target else user.id) if kind == "reply" else None
            long = len(text) > LONG_POST
            tweet = FakeTweet(tid, user.id, text[:LONG_POST] if long else text,
                              created_at or EPOCH + timedelta(minutes=len(self.tweets)), refs, reply_to,
                              note_text=text if long else None)
            self.tweets.append(tweet)
            return tweet

    def add_tweets(self, author: str | FakeUser, texts: list[str], *, kind: str | None = None) -> list[FakeTweet]:
        return [self.add_tweet(author, t, kind=kind) for t in texts]

    def timeline(self, user_id: str | int) -> list[FakeTweet]:
        """The user's tweets, newest first."""
        with self._lock:
            return [t for t in reversed(self.tweets) if t.author_id == str(user_id)]

    def rate_limit(self, count: int = 1, *, reset_in: int = 1) -> None:
        """The next `count` requests get 429 with x-rate-limit-reset = now + reset_in (epoch seconds)."""
        with self._lock:
            self._rate_limited, self._reset_in = count, reset_in

    def stall(self, count: int = 1, *, seconds: float) -> None:
        """The next `count` requests wait `seconds` before answering (for client timeouts)."""
        with self._lock:
            self._stalls.extend([seconds] * count)

    def requests_to(self, path_pattern: str) -> list[LoggedRequest]:
        return [r for r in self.requests if re.fullmatch(path_pattern, r.path)]

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> FakeXServer:
        return self.serve(_Handler, "fake-x")

    # -- protocol ---------------------------------------------------------------------------------

    ROUTES = [
        ("GET", r"/2/users/by/username/([^/]+)", "_get_user_by_username"),
        ("GET", r"/2/users/me", "_get_me"),
        ("GET", r"/2/users/(\d+)/tweets", "_get_user_tweets"),
        ("GET", r"/2/users/(\d+)/mentions", "_get_mentions"),
        ("POST", r"/2/tweets", "_post_tweet"),
    ]

    def handle(self, method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, dict]:
        """One HTTP request → (status, extra headers, JSON body)."""
        if failed := self.take_failure(method, url, headers, body):
            return failed[0], {}, failed[1]
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        payload = json.loads(body) if body else None
        auth = self._authenticate(method, url, headers)
        with self._lock:
            self.requests.append(LoggedRequest(
                method, parts.path, query, {k: v for k, v in headers.items() if k.lower() != "authorization"},
                payload, auth))
            stall = self._stalls.pop(0) if self._stalls else 0.0
        if stall:
            time.sleep(stall)
        try:
            self._check_rate_limit()
            if auth is None:
                raise _problem(401, "Unauthorized", "Unauthorized")
            for verb, pattern, name in self.ROUTES:
                match = re.fullmatch(pattern, parts.path)
                if match and verb == method:
                    return 200 if method == "GET" else 201, {}, getattr(self, name)(
                        *match.groups(), query=query, body=payload, auth=auth)
            raise _Reply(404, {"errors": [{"message": "Sorry, that page does not exist", "code": 34}]})
        except _Reply as reply:
            return reply.status, reply.headers, reply.body

    def _check_rate_limit(self) -> None:
        with self._lock:
            if self._rate_limited <= 0:
                return
            self._rate_limited -= 1
            reset = int(time.time()) + self._reset_in
        raise _Reply(429, {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank",
                           "status": 429},
                     {"x-rate-limit-limit": "1500", "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)})

    def _authenticate(self, method: str, url: str, headers: dict[str, str]) -> str | None:
        header = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if header == f"Bearer {self.credentials['twitter_bearer_token']}":
            return "bearer"
        if header.startswith("OAuth ") and self._oauth_valid(method, url, headers, header):
            return "oauth"
        return None

    def _oauth_valid(self, method: str, url: str, headers: dict[str, str], header: str) -> bool:
        """HMAC-SHA1 over the URL as requested (JSON bodies are not signed)."""
        try:
            oauth = dict(parse_authorization_header(header))
        except ValueError:
            return False
        creds = self.credentials
        if (oauth.get("oauth_consumer_key"), oauth.get("oauth_token")) != (
                creds["twitter_api_key"], creds["twitter_access_token"]):
            return False
        host = next(v for k, v in headers.items() if k.lower() == "host")
        params = oauth_signature.collect_parameters(uri_query=urlsplit(url).query, headers={"Authorization": header},
                                                    exclude_oauth_signature=False)  # decoded
        request = OAuthRequest(f"http://{host}{url}", http_method=method, headers={"Authorization": header})
        request.params = [(k, v) for k, v in params if k != "oauth_signature"]
        request.signature = dict(params).get("oauth_signature", "")
        return oauth_signature.verify_hmac_sha1(request, creds["twitter_api_secret"], creds["twitter_access_secret"])

    # -- routes -----------------------------------------------------------------------------------

    def _readable_user(self, key: str, value: str, user: FakeUser | None) -> FakeUser:
        """The user, or the API's 200-with-errors answer for unknown, suspended and (to others) protected."""
        def error(detail: str, title: str, kind: str) -> _Reply:
            return _Reply(200, {"errors": [{"value": value, "detail": detail, "title": title, "resource_type": "user",
                                            "parameter": key, "resource_id": value, "type": PROBLEMS + kind}]})
        if user is None:
            raise error(f"Could not find user with {key}: [{value}].", "Not Found Error", "resource-not-found")
        if user.suspended:
            raise error(f"User has been suspended: [{value}].", "Forbidden", "resource-not-found")
        return user

    def _get_user_by_username(self, username: str, *, query: dict, auth: str, **_) -> dict:
        if not re.fullmatch(r"[A-Za-z0-9_]{1,15}", username):
            raise _problem(400, "Invalid Request", f"The `username` value [{username}] is not a valid username.",
                           PROBLEMS + "invalid-request")
        user = self._readable_user("username", username, self.user(username))
        return {"data": user.to_json(_fields(query, "user.fields"))}

    def _get_me(self, *, query: dict, auth: str, **_) -> dict:
        self._require_user_context(auth)
        return {"data": self.me.to_json(_fields(query, "user.fields"))}

    def _get_user_tweets(self, user_id: str, *, query: dict, auth: str, **_) -> dict:
        user = self._readable_user("id", user_id, self.users.get(user_id))
        if user.protected and not (auth == "oauth" and user is self.me):
            raise _Reply(200, {"errors": [{
                "value": user_id, "detail": f"Sorry, you are not authorized to see the user with id: [{user_id}].",
                "title": "Authorization Error", "resource_type": "user", "parameter": "id", "resource_id": user_id,
                "type": PROBLEMS + "not-authorized-for-resource"}]})
        page = self._page(self.timeline(user.id), query)
        if "referenced_tweets.id" in query.get("expansions", "").split(",") and page.get("data"):
            refs = {int(r["id"]) for t in page["data"] for r in self._tweet(int(t["id"])).referenced_tweets}
            found = [t for t in map(self._tweet, sorted(refs)) if t is not None]
            if found:  # as X: the referenced posts it can show; deleted or protected ones are left out
                page["includes"] = {"tweets": [t.to_json(_fields(query, "tweet.fields")) for t in found]}
        return page

    def _get_mentions(self, user_id: str, *, query: dict, auth: str, **_) -> dict:
        user = self._readable_user("id", user_id, self.users.get(user_id))
        handle = re.compile(rf"@{re.escape(user.username)}\b", re.IGNORECASE)
        with self._lock:
            mentions = [t for t in reversed(self.tweets)
                        if handle.search(t.note_text or t.text) and t.author_id != user.id]
        page = self._page(mentions, query)
        if "author_id" in query.get("expansions", "").split(",") and page.get("data"):
            authors = {self._tweet(int(t["id"])).author_id for t in page["data"]}
            fields = _fields(query, "user.fields")
            page["includes"] = {"users": [self.users[a].to_json(fields) for a in sorted(authors)]}
        return page

    def _post_tweet(self, *, body: Any, auth: str, **_) -> dict:
        self._require_user_context(auth)
        text = (body or {}).get("text")
        if not isinstance(text, str) or not text.strip():
            raise _problem(400, "Invalid Request", "One or more parameters to your request was invalid.",
                           PROBLEMS + "invalid-request")
        if len(text) > 280:
            raise _problem(400, "Invalid Request", "Your Tweet text is too long.", PROBLEMS + "invalid-request")
        if any(t.text == text for t in self.timeline(self.me.id)):
            raise _problem(403, "Forbidden", "You are not allowed to create a Tweet with duplicate content.")
        reply_id = ((body or {}).get("reply") or {}).get("in_reply_to_tweet_id")
        parent = self._tweet(int(reply_id)) if reply_id else None
        if reply_id and parent is None:
            raise _problem(400, "Invalid Request", f"The tweet {reply_id} does not exist.",
                           PROBLEMS + "invalid-request")
        quote_id = (body or {}).get("quote_tweet_id")
        tweet = self.add_tweet(self.me, text, in_reply_to=parent, kind="quote" if quote_id and not parent else None)
        if quote_id and not parent:
            tweet.referenced_tweets = [{"type": "quoted", "id": str(quote_id)}]
        return {"data": {"id": str(tweet.id), "text": tweet.text, "edit_history_tweet_ids": [str(tweet.id)]}}

    def _require_user_context(self, auth: str) -> None:
        if auth != "oauth":
            raise _problem(403, "Unsupported Authentication",
                           "Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.  "
                           "Supported authentication types are [OAuth 1.0a User Context, OAuth 2.0 User Context].",
                           PROBLEMS + "unsupported-authentication")

    def _tweet(self, tweet_id: int) -> FakeTweet | None:
        with self._lock:
            return next((t for t in self.tweets if t.id == tweet_id), None)

    @staticmethod
    def _page(newest_first: list[FakeTweet], query: dict) -> dict:
        """One page of a timeline, as the API pages: next_token while older tweets remain."""
        try:
            size = int(query.get("max_results", 10))
            since = int(query["since_id"]) if "since_id" in query else None
            until = int(query["until_id"]) if "until_id" in query else None
            before = int(query["pagination_token"].removeprefix("n")) if "pagination_token" in query else None
        except ValueError:
            raise _problem(400, "Invalid Request", "One or more parameters to your request was invalid.",
                           PROBLEMS + "invalid-request") from None
        if not 5 <= size <= 100:
            raise _problem(400, "Invalid Request", f"The `max_results` query parameter value [{size}] is not "
                           "between 5 and 100", PROBLEMS + "invalid-request")
        pool = [t for t in newest_first if (since is None or t.id > since) and (until is None or t.id < until)
                and (before is None or t.id < before)]
        page = pool[:size]
        meta: dict[str, Any] = {"result_count": len(page)}
        if page:
            meta.update(newest_id=str(page[0].id), oldest_id=str(page[-1].id))
        if len(pool) > size:
            meta["next_token"] = f"n{page[-1].id}"
        fields = _fields(query, "tweet.fields")
        return {"data": [t.to_json(fields) for t in page], "meta": meta} if page else {"meta": meta}


def _fields(query: dict, name: str) -> set[str]:
    return set(filter(None, query.get(name, "").split(",")))


class _Handler(BaseHTTPRequestHandler):
    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload = self.server.fake.handle(self.command, self.path, dict(self.headers.items()), body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args) -> None:  # keep test output quiet
        pass


def settings_for(server: FakeXServer, tmp_path: Path, **overrides):
    """Settings pointing at the fake, with its credentials, nothing from the environment or .env."""
    from bot.config import Settings

    values = {**server.credentials, "mimicbot_data_dir": tmp_path, "mimicbot_models_dir": tmp_path / "models",
              **overrides}
    if "twitter_api_base" not in values:
        values["twitter_api_base"] = server.url
    return Settings(_env_file=None, **values)


@pytest.fixture
def x_server():
    """A running FakeXServer; stopped after the test."""
    with FakeXServer() as server:
        yield server
