"""The Bluesky target: `send_post` as the bot's own account (BLUESKY_HANDLE), with an app password.

One session serves every post of the process: the first send logs in (`com.atproto.server.createSession`), and
the session is kept in memory (never written, never logged) for every later send, by this target or any other
built for the same account, as the daemon builds one per scheduled post. atproto's client refreshes the access
token by itself, and each refresh replaces the kept session. Bluesky allows 30 logins per 5 minutes and 300 a
day per account, so a login per post would soon lock the bot out. When the server refuses a kept session
(expired, revoked), it is dropped and the post is tried once more after a fresh login: a refused request
created nothing, so this cannot post twice.

Each send opens its own HTTP client and closes it, so a target is safe to use from any event loop (the CLI runs
one per command) and leaks nothing. Posts go out as plain text, without facets: an @handle in generated text
is not a mention facet, so nobody is notified (on top of the guards making @handles inert).

Length: the post lexicon allows 300 graphemes and 3,000 UTF-8 bytes. `length()` is the larger of the grapheme
count and a tenth of the byte count, rounded up, so `length(text) <= 300` holds exactly when both limits do
(ordinary text never comes near ten bytes a grapheme; a run of family emoji does).
"""

from __future__ import annotations

import asyncio
from functools import partial

from atproto_client import AsyncClient, models
from atproto_client.client.session import Session, SessionEvent

from ..config import Settings
from ..errors import AuthError
from ..redaction import register
from ..networks.base import DEFAULT_TIMEOUT, Sleep
from ..networks.bluesky import BlueskyCaller, bsky_client
from .base import DeliveryUnknown, TargetError
from .text import graphemes

BLUESKY_MAX_LENGTH = 300  # graphemes
BLUESKY_MAX_BYTES = 3000  # UTF-8

# (base URL, handle) → the logged-in session: shared by every BlueskyTarget of this process, in memory only.
_sessions: dict[tuple[str, str], Session] = {}


def bluesky_length(text: str) -> int:
    """Graphemes, or a tenth of the UTF-8 bytes when that is more (see the module docstring)."""
    scale = BLUESKY_MAX_BYTES // BLUESKY_MAX_LENGTH
    return max(graphemes(text), -(-len(text.encode("utf-8")) // scale))


class BlueskyTarget:
    """Posts to the Bluesky account BLUESKY_HANDLE, logging in at BLUESKY_BASE_URL with BLUESKY_APP_PASSWORD."""

    name = "bsky"
    max_length = BLUESKY_MAX_LENGTH

    def __init__(self, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT, sleep: Sleep = asyncio.sleep,
                 max_rate_limit_wait: float = 60.0):
        handle, password = settings.bluesky_handle, settings.secret("bluesky_app_password")
        if not handle or not password:
            raise AuthError("no Bluesky account to post as: set BLUESKY_HANDLE and BLUESKY_APP_PASSWORD "
                            "(an app password: Settings → Privacy and security → App passwords)")
        register([password])  # the login sends it in a JSON body: an upstream's echo of it is redacted
        self.settings = settings
        self.handle = handle.strip().lstrip("@").lower()
        self._key = (settings.bluesky_base_url.strip().rstrip("/"), self.handle)
        self.timeout = timeout
        self.call = BlueskyCaller(error=TargetError, unknown=DeliveryUnknown, sleep=sleep,
                                  max_wait=max_rate_limit_wait,
                                  auth_hint="check BLUESKY_HANDLE and BLUESKY_APP_PASSWORD")
        self._lock = asyncio.Lock()

    def length(self, text: str) -> int:
        return bluesky_length(text)

    async def send(self, text: str, *, reply_to: str | None = None) -> str:
        """Publish `text` (a reply when `reply_to` is a post's at:// URI); returns the new post's URI."""
        if not text.strip():
            raise TargetError("nothing to post: the text is empty")
        if self.length(text) > self.max_length:
            raise TargetError(f"too long for Bluesky: {graphemes(text)} graphemes and {len(text.encode())} bytes; "
                               f"{self.max_length} and {BLUESKY_MAX_BYTES} allowed")
        async with self._lock:
            tries = 2 if self._key in _sessions else 1  # a refused kept session: once more, logged in afresh
            for _ in range(tries):
                try:
                    return await self._send(text, reply_to)
                except AuthError as e:
                    _sessions.pop(self._key, None)
                    refused = str(e)
            raise TargetError(refused)  # refused credentials: certainly not posted

    async def _send(self, text: str, reply_to: str | None) -> str:
        client = bsky_client(self.settings.bluesky_base_url, self.timeout, setting="BLUESKY_BASE_URL")
        try:
            did = await self._log_in(client)
            reply = await self._reply_ref(client, reply_to) if reply_to else None
            created = await self.call(partial(client.send_post, text, profile_identify=did, reply_to=reply),
                                      what="a post to Bluesky", publishing=True)
            return created.uri
        finally:
            await client.request.close()

    async def _log_in(self, client: AsyncClient) -> str:
        """Resume the kept session (no request) or create one; returns the account's DID."""

        def keep(_event: SessionEvent, session: Session) -> None:
            _sessions[self._key] = session

        client.on_session_change(keep)
        kept = _sessions.get(self._key)
        if kept is not None:
            await client.login(session_string=kept.export(), fetch_bsky_profile=False)
        else:
            password = self.settings.secret("bluesky_app_password")
            await self.call(partial(client.login, self.handle, password, fetch_bsky_profile=False),
                            what=f"the login of {self.handle}")
        return _sessions[self._key].did

    async def _reply_ref(self, client: AsyncClient, uri: str) -> models.AppBskyFeedPost.ReplyRef:
        """Parent and thread root of a reply, both as (uri, cid) strong references."""
        found = await self.call(partial(client.get_posts, [uri]), what=f"the post {uri}")
        if not found.posts:
            raise TargetError(f"cannot reply on Bluesky: no post {uri}")
        parent = models.create_strong_ref(found.posts[0])
        thread = getattr(found.posts[0].record, "reply", None)
        return models.AppBskyFeedPost.ReplyRef(parent=parent, root=thread.root if thread else parent)


def forget_sessions() -> None:
    """Drop every kept session (the next send logs in again)."""
    _sessions.clear()
