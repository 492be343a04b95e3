"""A protocol-level fake of Bluesky's XRPC API on 127.0.0.1: the AppView reads and the PDS calls that atproto's
client makes, with the real paths, JSON shapes (camelCase, `$type`), error objects and rate-limit headers.

    server.add_actor("alice.bsky.social", display_name="Alice")      # → FakeActor (did:plc:...)
    server.add_post("alice.bsky.social", "hello", link=("example.com/a...", "https://example.com/a/b"))
    server.add_repost("alice.bsky.social", post)                     # post: the dict add_post returned
    server.rate_limit(1, reset_in=30, nsid="com.atproto.repo.createRecord")
    server.hold()                                                    # the next request waits for release()
    server.fail(1, status=500, echo=True)                            # 500, the body echoing the request
    server.calls("com.atproto.server.createSession")                 # what was asked, in order

Endpoints: GET app.bsky.actor.getProfile, app.bsky.feed.getAuthorFeed (newest first by sort time, limit 1-100,
opaque `cursor`), app.bsky.feed.getPosts; POST com.atproto.server.createSession (handle or DID + app password),
com.atproto.repo.createRecord (Bearer access token, own repo, app.bsky.feed.post of at most 300
graphemes and 3,000 bytes).
Errors: {"error", "message"} with 400/401; 429 carries ratelimit-limit/-remaining/-reset/-policy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import regex

from tests.fakes import LocalServer
from tests.fakes.x_server import _Handler  # the same JSON-over-http.server plumbing as the X fake

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
_S32 = "234567abcdefghijklmnopqrstuvwxyz"  # the sortable base32 of atproto record keys (TIDs)


class XrpcReply(Exception):
    def __init__(self, status: int, error: str, message: str, headers: dict | None = None):
        self.status, self.body, self.headers = status, {"error": error, "message": message}, headers or {}


@dataclass
class FakeActor:
    did: str
    handle: str
    display_name: str
    password: str
    labels: list[str] = field(default_factory=list)
    takendown: bool = False

    def view(self) -> dict:
        return {"did": self.did, "handle": self.handle, "displayName": self.display_name,
                "avatar": f"https://cdn.bsky.app/img/avatar/plain/{self.did}/avatar@jpeg", "createdAt": _ts(EPOCH),
                "labels": [{"src": self.did, "uri": f"at://{self.did}/app.bsky.actor.profile/self",
                            "val": v, "cts": _ts(EPOCH)} for v in self.labels]}


@dataclass
class Logged:
    method: str
    nsid: str
    query: dict[str, list[str]]
    body: Any
    did: str | None  # whose session authenticated it


def _ts(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _cid(data: str) -> str:
    """A real CIDv1 (dag-cbor, sha-256, base32) of `data`."""
    raw = bytes([0x01, 0x71, 0x12, 0x20]) + hashlib.sha256(data.encode()).digest()
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def _tid(n: int) -> str:
    return "".join(_S32[(n >> (5 * i)) & 31] for i in reversed(range(13)))


def _jwt(payload: dict) -> str:
    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{part({'typ': 'at+jwt', 'alg': 'ES256K'})}.{part(payload)}.c2ln"


class FakeBluesky(LocalServer):
    def __init__(self):
        self.actors: dict[str, FakeActor] = {}  # by DID
        self.items: list[dict] = []  # {"by": did, "sort": datetime, "view": FeedViewPost JSON}
        self.posts: dict[str, dict] = {}  # PostView JSON by URI
        self.requests: list[Logged] = []
        self.sessions: dict[str, str] = {}  # access token → DID
        self._clock = EPOCH
        self._seq = 0
        self._rate_limits: list[tuple[str | None, int]] = []
        self._hold = threading.Event()
        self._holding = 0
        self.held = 0
        self._lock = threading.RLock()

    # -- state ------------------------------------------------------------------------------------

    def add_actor(self, handle: str, *, display_name: str = "", password: str = "app-pass-word-0000",
                  labels: list[str] | None = None) -> FakeActor:
        did = "did:plc:" + hashlib.sha256(handle.encode()).hexdigest()[:24]
        actor = FakeActor(did, handle, display_name, password, labels or [])
        self.actors[did] = actor
        return actor

    def actor(self, key: str) -> FakeActor | None:
        key = key.lower().lstrip("@")
        return self.actors.get(key) or next((a for a in self.actors.values() if a.handle == key), None)

    def _tick(self) -> tuple[datetime, str]:
        """The fake's clock, a minute on, and a record key (TID) for that moment."""
        with self._lock:
            self._clock += timedelta(minutes=1)
            self._seq += 1
            return self._clock, _tid(int(self._clock.timestamp() * 1e6) << 10 | self._seq % 1024)

    def add_post(self, author: str, text: str, *, reply_to: dict | None = None, link: tuple[str, str] | None = None,
                 created_at: datetime | None = None) -> dict:
        """A post indexed after all others. `link=(shown, url)`: `shown` is in the text, `url` in a link facet.
        `created_at`: the time its client claims (back-dated, or a clock in the future)."""
        actor = self.actor(author)
        now, rkey = self._tick()
        record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text, "createdAt": _ts(created_at or now),
                                  "langs": ["en"]}
        if link:
            start = text.encode().index(link[0].encode())
            record["facets"] = [{"index": {"byteStart": start, "byteEnd": start + len(link[0].encode())},
                                 "features": [{"$type": "app.bsky.richtext.facet#link", "uri": link[1]}]}]
        if reply_to:
            parent = {"uri": reply_to["uri"], "cid": reply_to["cid"]}
            root = reply_to["record"].get("reply", {}).get("root", parent)
            record["reply"] = {"root": root, "parent": parent}
        return self._publish(actor, rkey, record, now)

    def _publish(self, actor: FakeActor, rkey: str, record: dict, indexed: datetime) -> dict:
        uri = f"at://{actor.did}/app.bsky.feed.post/{rkey}"
        post = {"$type": "app.bsky.feed.defs#postView", "uri": uri, "cid": _cid(json.dumps(record)),
                "author": actor.view(), "record": record, "replyCount": 0, "repostCount": 0, "likeCount": 0,
                "quoteCount": 0, "indexedAt": _ts(indexed), "labels": []}
        created = datetime.fromisoformat(record["createdAt"])
        item: dict[str, Any] = {"post": post}
        if "reply" in record:
            item["reply"] = {"root": self._view(record["reply"]["root"]["uri"], post),
                             "parent": self._view(record["reply"]["parent"]["uri"], post)}
        with self._lock:
            self.posts[uri] = post
            self.items.append({"by": actor.did, "sort": min(created, indexed), "view": item})
        return post

    def _view(self, uri: str, post: dict) -> dict:
        """A reply's root or parent as the AppView shows it: the post (this one, for a thread's first), or a
        notFoundPost once deleted."""
        if uri == post["uri"] or uri in self.posts:
            return self.posts.get(uri, post)
        return {"$type": "app.bsky.feed.defs#notFoundPost", "uri": uri, "notFound": True}

    def add_repost(self, by: str, post: dict) -> dict:
        actor = self.actor(by)
        when, rkey = self._tick()
        reason = {"$type": "app.bsky.feed.defs#reasonRepost", "by": actor.view(), "indexedAt": _ts(when),
                  "uri": f"at://{actor.did}/app.bsky.feed.repost/{rkey}", "cid": _cid(rkey)}
        item = {"post": post, "reason": reason}
        with self._lock:
            self.items.append({"by": actor.did, "sort": when, "view": item})
        return item

    def feed_of(self, did: str) -> list[dict]:
        """An actor's feed items, newest first (sort time, then CID, as cursor keys)."""
        with self._lock:
            mine = [i for i in self.items if i["by"] == did]
        return sorted(mine, key=_key, reverse=True)

    def rate_limit(self, count: int = 1, *, reset_in: int = 30, nsid: str | None = None) -> None:
        """The next `count` requests (to `nsid`, or any) get 429 with ratelimit-reset = now + reset_in."""
        with self._lock:
            self._rate_limits.extend([(nsid, reset_in)] * count)

    def hold(self) -> None:
        """The next request waits (up to 10 s, then 503) until `release()`."""
        with self._lock:
            self._holding += 1
            self._hold.clear()

    def release(self) -> None:
        self._hold.set()

    def calls(self, nsid: str) -> list[Logged]:
        return [r for r in self.requests if r.nsid == nsid]

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> FakeBluesky:
        return self.serve(_Handler, "fake-bsky")

    def stop(self) -> None:
        self.release()  # a held request must not keep the server from shutting down
        super().stop()

    # -- protocol ---------------------------------------------------------------------------------

    def handle(self, method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, dict]:
        if failed := self.take_failure(method, url, headers, body):
            return failed[0], {}, failed[1]
        parts = urlsplit(url)
        nsid = parts.path.removeprefix("/xrpc/")
        query = parse_qs(parts.query)
        payload = json.loads(body) if body else None
        token = next((v for k, v in headers.items() if k.lower() == "authorization"), "").removeprefix("Bearer ")
        with self._lock:
            did = self.sessions.get(token)
            self.requests.append(Logged(method, nsid, query, payload, did))
            held, self._holding = self._holding > 0, max(0, self._holding - 1)
            limit = next((r for r in self._rate_limits if r[0] in (None, nsid)), None)
            if limit:
                self._rate_limits.remove(limit)
        try:
            if held:
                self.held += 1
                if not self._hold.wait(10):
                    raise XrpcReply(503, "Unavailable", "held and never released")
            if limit:
                raise XrpcReply(429, "RateLimitExceeded", "Rate Limit Exceeded", {
                    "ratelimit-limit": "3000", "ratelimit-remaining": "0", "ratelimit-policy": "3000;w=300",
                    "ratelimit-reset": str(int(time.time()) + limit[1])})
            route = getattr(self, "_" + nsid.replace(".", "_"), None)
            if route is None or (method == "GET") != nsid.startswith("app.bsky."):
                raise XrpcReply(501, "MethodNotImplemented", f"Method Not Implemented: {nsid}")
            return 200, {}, route(query=query, body=payload or {}, did=did)
        except XrpcReply as reply:
            return reply.status, reply.headers, reply.body

    def _readable(self, key: str) -> FakeActor:
        actor = self.actor(key)
        if actor is None:
            raise XrpcReply(400, "InvalidRequest", "Profile not found")
        if actor.takendown:
            raise XrpcReply(400, "AccountTakedown", "Account has been suspended")
        return actor

    def _app_bsky_actor_getProfile(self, *, query: dict, **_) -> dict:
        actor = self._readable(query["actor"][0])
        posts = sum(1 for i in self.items if i["by"] == actor.did and "reason" not in i["view"])
        return {**actor.view(), "followersCount": 3, "followsCount": 2, "postsCount": posts,
                "indexedAt": _ts(EPOCH), "description": ""}

    def _app_bsky_feed_getAuthorFeed(self, *, query: dict, **_) -> dict:
        actor = self._readable(query["actor"][0])
        limit = int(query.get("limit", ["50"])[0])
        if not 1 <= limit <= 100:
            raise XrpcReply(400, "InvalidRequest", "Error: limit must be <= 100")
        if query.get("filter", ["posts_with_replies"])[0] != "posts_with_replies":
            raise XrpcReply(400, "InvalidRequest", "this fake serves filter=posts_with_replies only")
        items = self.feed_of(actor.did)
        if "cursor" in query:
            after = query["cursor"][0].split("::")
            after_key = (int(after[0]), after[1])
            items = [i for i in items if _key(i) < after_key]
        page = items[:limit]
        out: dict[str, Any] = {"feed": [i["view"] for i in page]}
        if len(items) > limit:
            out["cursor"] = "::".join(map(str, _key(page[-1])))
        return out

    def _app_bsky_feed_getPosts(self, *, query: dict, **_) -> dict:
        return {"posts": [self.posts[u] for u in query.get("uris", []) if u in self.posts]}

    def _com_atproto_server_createSession(self, *, body: dict, **_) -> dict:
        actor = self.actor(str(body.get("identifier", "")))
        if actor is None or body.get("password") != actor.password:
            raise XrpcReply(401, "AuthenticationRequired", "Invalid identifier or password")
        now = int(time.time())
        access = _jwt({"scope": "com.atproto.appPass", "sub": actor.did, "iat": now, "exp": now + 7200,
                       "aud": "did:web:fake.bsky"})
        refresh = _jwt({"scope": "com.atproto.refresh", "sub": actor.did, "iat": now, "exp": now + 86400 * 60,
                        "jti": _cid(access)})
        with self._lock:
            self.sessions[access] = actor.did
        return {"accessJwt": access, "refreshJwt": refresh, "handle": actor.handle, "did": actor.did,
                "active": True}

    def _com_atproto_repo_createRecord(self, *, body: dict, did: str | None, **_) -> dict:
        if did is None:
            raise XrpcReply(401, "AuthenticationRequired", "Authentication Required")
        actor = self.actors[did]
        if body.get("repo") not in (actor.did, actor.handle):
            raise XrpcReply(400, "InvalidRequest", "Input/repo must be the authenticated account")
        record = body.get("record") or {}
        if body.get("collection") != "app.bsky.feed.post" or record.get("$type") != "app.bsky.feed.post":
            raise XrpcReply(400, "InvalidRequest", "this fake creates app.bsky.feed.post records only")
        text = record.get("text", "")
        if len(regex.findall(r"\X", text)) > 300 or len(text.encode()) > 3000:
            raise XrpcReply(400, "InvalidRecord", "Invalid app.bsky.feed.post record: Record/text must not be "
                                                  "longer than 300 graphemes (3000 bytes)")
        now, rkey = self._tick()
        post = self._publish(actor, rkey, record, now)
        return {"uri": post["uri"], "cid": post["cid"], "commit": {"cid": _cid(rkey), "rev": rkey},
                "validationStatus": "valid"}


def _key(item: dict) -> tuple[int, str]:
    cid = item["view"].get("reason", {}).get("cid") or item["view"]["post"]["cid"]
    return int(item["sort"].timestamp() * 1000), cid


@pytest.fixture
def bsky_server():
    with FakeBluesky() as server:
        yield server


def bsky_settings(server: FakeBluesky, tmp_path, **overrides):
    """Settings pointing both the AppView and the PDS at the fake; nothing from the environment or .env."""
    from bot.config import Settings

    values = {"mimicbot_data_dir": tmp_path / "data", "mimicbot_models_dir": tmp_path / "models",
              "bluesky_appview_url": server.url, "bluesky_base_url": server.url, **overrides}
    return Settings(_env_file=None, **values)

