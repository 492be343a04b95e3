"""Replies on X: poll the bot's mentions and answer in the model's voice, with loop guards.

- The model reads the mention before it writes its answer: `<|endoftext|>` + the mention (cleaned, its opening
  @mentions dropped) + `<|endoftext|>`, then the reply from the start-of-post token (README, "Replies").

- The cursor (`since_id` of the newest mention handled) is stored after each mention, so a restart never reads
  a mention twice; a reply already in the ledger for a mention is never sent again either.
- Mentions older than MIMICBOT_REPLY_MAX_AGE_MINUTES are never answered: a restart after a long stop skips the
  backlog instead of answering it.
- Loop guards (twitter_ebooks' lessons): never answer ourselves, blocklisted accounts
  (MIMICBOT_REPLY_BLOCKLIST), likely bots (a name, handle or bio that says "bot", or an account we answered
  MIMICBOT_REPLY_BOT_THRESHOLD times in 24 h), more than MIMICBOT_REPLY_PER_CONVERSATION replies in one
  conversation (a thread that answers one of our replies is followed through the ledger), or more than
  MIMICBOT_REPLY_PER_USER_HOUR replies to one account in an hour.
- A 429 waits (asyncio sleep) until the window's x-rate-limit-reset; the event loop keeps running.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..cleaning import context_text
from ..config import Settings
from ..networks.x import NOTE_TWEET, full_text
from ..store import Store
from . import state
from .base import TargetError
from .guards import split_list
from .poster import PostOutcome, Poster
from .x import XCaller, XTarget

log = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_PAGES = 5  # a poll reads at most this many pages of new mentions (old ones are skipped by age anyway)
_BOTLIKE = re.compile(r"bot\b|\bbot|\bautomated\b", re.IGNORECASE)
TWEET_FIELDS = ["created_at", "author_id", "conversation_id", "referenced_tweets", NOTE_TWEET]
USER_FIELDS = ["username", "name", "description"]


@dataclass(frozen=True)
class ReplyConfig:
    model_id: str
    poll_seconds: float = 60.0
    max_age: timedelta = timedelta(minutes=30)
    per_conversation: int = 3
    per_user_hour: int = 3
    bot_threshold: int = 10
    blocklist: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplyConfig | None:
        """None when replies are off (no MIMICBOT_REPLY_MODEL)."""
        if not settings.mimicbot_reply_model:
            return None
        return cls(
            model_id=settings.mimicbot_reply_model,
            poll_seconds=settings.mimicbot_reply_poll_seconds,
            max_age=timedelta(minutes=settings.mimicbot_reply_max_age_minutes),
            per_conversation=settings.mimicbot_reply_per_conversation,
            per_user_hour=settings.mimicbot_reply_per_user_hour,
            bot_threshold=settings.mimicbot_reply_bot_threshold,
            blocklist=frozenset(h.lstrip("@").lower() for h in split_list(settings.mimicbot_reply_blocklist)),
        )


@dataclass(frozen=True)
class Mention:
    id: str
    text: str
    author_id: str
    username: str
    name: str
    description: str
    created_at: datetime | None
    conversation_id: str | None
    replied_to: str | None  # the post this mention answers, if any


@dataclass
class Handled:
    mention: Mention
    outcome: PostOutcome | None = None
    skipped: str | None = None  # why it was not answered


class ReplyLoop:
    def __init__(self, store: Store, settings: Settings, poster: Poster, config: ReplyConfig, *,
                 caller: XCaller | None = None, sleep: Callable[[float], Awaitable] = asyncio.sleep):
        self.store = store
        self.poster = poster
        self.config = config
        self.caller = caller or XCaller(settings, sleep=sleep)
        self.target = XTarget(settings, caller=self.caller)
        self._sleep = sleep

    async def run(self) -> None:
        """Poll forever (the daemon runs this as a task and cancels it on shutdown)."""
        while True:
            try:
                await self.poll_once()
            except TargetError as e:
                log.warning("mention poll failed: %s", e)
            except Exception:
                log.exception("mention poll crashed")
            await self._sleep(self.config.poll_seconds)

    async def me(self) -> tuple[str, str]:
        """(id, username) of the account the tokens act as; asked once, then kept in the database."""
        cached = await asyncio.to_thread(state.read, self.store, state.X_ME)
        if cached:
            user_id, username = cached.split(" ", 1)
            return user_id, username
        response = await self.caller("get_me", what="who the X tokens belong to")
        user_id, username = str(response.data.id), response.data.username
        await asyncio.to_thread(self._remember, state.X_ME, f"{user_id} {username}")
        return user_id, username

    def _remember(self, key: str, value: str) -> None:
        with self.store.transaction() as db:
            state.write(db, key, value)

    async def poll_once(self, now: datetime | None = None) -> list[Handled]:
        """Read new mentions (oldest first) and answer those every guard allows."""
        me_id, _ = await self.me()
        since = await asyncio.to_thread(state.read, self.store, state.X_MENTIONS_SINCE)
        mentions = await self.fetch(me_id, since)
        handled = []
        for mention in mentions:
            handled.append(await self.handle(mention, me_id, now or datetime.now(UTC)))
            await asyncio.to_thread(self._remember, state.X_MENTIONS_SINCE, mention.id)
        return handled

    async def fetch(self, me_id: str, since_id: str | None) -> list[Mention]:
        mentions: list[Mention] = []
        token = None
        for _ in range(MAX_PAGES):
            response = await self.caller(
                "get_users_mentions", what="reading mentions", id=me_id, since_id=since_id, max_results=PAGE_SIZE,
                pagination_token=token, tweet_fields=TWEET_FIELDS, expansions=["author_id"], user_fields=USER_FIELDS)
            users = {str(u.id): u for u in (response.includes or {}).get("users", [])}
            mentions.extend(_mention(t, users.get(str(t.author_id))) for t in response.data or [])
            token = (response.meta or {}).get("next_token")
            if not token or since_id is None:  # first poll ever: one page, the rest is old anyway
                break
        return sorted(mentions, key=lambda m: int(m.id))

    def skip_reason(self, m: Mention, me_id: str, now: datetime) -> str | None:
        """Why this mention gets no reply, or None."""
        ledger, cfg = self.poster.ledger, self.config
        if m.author_id == me_id:
            return "our own post"
        if m.created_at is None or now - m.created_at > cfg.max_age:
            return f"older than {cfg.max_age}"
        if m.username.lower() in cfg.blocklist:
            return f"@{m.username} is blocklisted"
        if _BOTLIKE.search(" ".join((m.username, m.name, m.description))):
            return f"@{m.username} looks like a bot"
        if ledger.replied_to(m.id):
            return "answered already"
        if ledger.replies_to_user_since(m.author_id, now - timedelta(hours=24)) >= cfg.bot_threshold:
            return f"@{m.username} answered {cfg.bot_threshold} times in 24 h: likely a bot"
        if ledger.replies_to_user_since(m.author_id, now - timedelta(hours=1)) >= cfg.per_user_hour:
            return f"@{m.username} answered {cfg.per_user_hour} times this hour"
        if ledger.replies_in_conversation(self.conversation(m)) >= cfg.per_conversation:
            return f"{cfg.per_conversation} replies in this conversation already"
        return None

    def conversation(self, m: Mention) -> str:
        """The thread a mention belongs to; a mention answering one of our replies joins that reply's thread."""
        if m.replied_to and (ours := self.poster.ledger.conversation_of(m.replied_to)):
            return ours
        return m.conversation_id or m.id

    async def handle(self, m: Mention, me_id: str, now: datetime) -> Handled:
        if why := await asyncio.to_thread(self.skip_reason, m, me_id, now):  # the ledger's counts, off the loop
            log.info("mention %s from @%s not answered: %s", m.id, m.username, why)
            return Handled(m, skipped=why)
        conversation = await asyncio.to_thread(self.conversation, m)
        reply = {"reply_to_id": m.id, "reply_to_user_id": m.author_id, "conversation_id": conversation}
        # the mention is what the model reads before it writes (bot/generation/sampling.py, `context`)
        outcome = await self.poster.post(self.config.model_id, self.target, reply_to=reply,
                                         context=context_text(m.text) or None)
        return Handled(m, outcome=outcome)


def _mention(tweet, author) -> Mention:
    replied_to = next((str(r.id) for r in tweet.referenced_tweets or [] if r.type == "replied_to"), None)
    created = tweet.created_at.astimezone(UTC) if tweet.created_at else None
    return Mention(
        id=str(tweet.id), text=full_text(tweet), author_id=str(tweet.author_id),
        username=getattr(author, "username", "") or "", name=getattr(author, "name", "") or "",
        description=getattr(author, "description", "") or "", created_at=created,
        conversation_id=str(tweet.conversation_id) if tweet.conversation_id else None, replied_to=replied_to,
    )
