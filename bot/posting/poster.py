"""One post, start to end: generate candidates in the model's voice → guards → ledger intent → send → ledger
result. Drafts that need a human stop after the guards, in the ledger as "draft", until approved or rejected.

Nothing here knows a network: targets come in through the `Target` interface, drafts leave through the
`ApprovalSink` interface (the Discord cog implements it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from ..config import Settings
from ..redaction import redact
from ..store import Store
from ..errors import AuthError, ConfigError, UnknownOutgoing
from .base import DeliveryUnknown, PostRejected, Target, TargetError
from .guards import CopyCheck, GuardConfig, Guards
from .ledger import Ledger

log = logging.getLogger(__name__)

# (model id, n, opener, context) → candidate texts. The opener is how each post starts ("" lets the model write the
# whole post); the context is the message a reply answers (None for a post).
Generate = Callable[[str, int, str, str | None], Awaitable[list[str]]]


class ApprovalSink(Protocol):
    async def request(self, entry: dict, channel_id: int) -> int:
        """Show the draft `entry` to a human in `channel_id` with Approve / Reject; returns the message id."""
        ...


@dataclass
class PostOutcome:
    """What became of one post. `status`: sent, draft, dry-run, skipped (that fire was handled already),
    rejected (no candidate passed the guards, or a human said no), failed, unknown."""

    status: str
    target: str
    text: str | None = None
    entry_id: int | None = None
    remote_id: str | None = None
    error: str | None = None
    refused: list[str] = field(default_factory=list)

    @classmethod
    def skipped(cls, target: Target, fire_key: str | None) -> PostOutcome:
        """A fire whose post (or draft) the ledger already holds: nothing is done twice."""
        return cls("skipped", target.name, error=f"{fire_key} was handled already")

    def as_dict(self) -> dict:
        return asdict(self)


class Poster:
    def __init__(self, store: Store, settings: Settings, generate: Generate,
                 copy_check_for: Callable[[str], CopyCheck | None] = lambda model_id: None):
        self.store = store
        self.settings = settings
        self.ledger = Ledger(store)
        self.generate = generate
        self.copy_check_for = copy_check_for
        self.guard_config = GuardConfig.from_settings(settings)

    def guards(self, model_id: str, *, exclude_entry: int | None = None) -> Guards:
        recent = self.ledger.recent_texts(self.guard_config.repeat_window, exclude_id=exclude_entry)
        return Guards(self.guard_config, copy_check=self.copy_check_for(model_id), recent=recent)

    async def compose(self, model_id: str, target: Target, *, prompt: str = "", context: str | None = None) -> str:
        """The text to send: the first of MIMICBOT_POST_CANDIDATES samples that every guard accepts. Each sample
        starts with `prompt` ("": from the start-of-post token alone) and reads `context` first (a reply's parent)."""
        candidates = await self.generate(model_id, self.settings.mimicbot_post_candidates, prompt, context)
        guards = await asyncio.to_thread(self.guards, model_id)  # reads the ledger, may load the anti-copy index
        _, text = guards.first_acceptable(candidates, target)
        return text

    async def post(self, model_id: str, target: Target, *, dry_run: bool = False, fire_key: str | None = None,
                   schedule_id: int | None = None, reply_to: dict | None = None, prompt: str = "",
                   context: str | None = None) -> PostOutcome:
        """Compose and send one post (or a reply: `reply_to` = {reply_to_id, reply_to_user_id, conversation_id},
        `context` = the text it answers). `prompt`: a fixed opener ("" by default: the model writes the whole post).

        With `fire_key`, a second call for the same key does nothing (status "skipped")."""
        if fire_key and await asyncio.to_thread(self.ledger.by_fire_key, fire_key):
            return PostOutcome.skipped(target, fire_key)
        try:
            text = await self.compose(model_id, target, prompt=prompt, context=context)
        except PostRejected as e:
            return PostOutcome("rejected", target.name, error=str(e), refused=e.reasons)
        if dry_run:
            return PostOutcome("dry-run", target.name, text=text)
        reply = reply_to or {}
        entry_id = await asyncio.to_thread(self.ledger.open, model_id=model_id, target=target.name, text=text,
                                           fire_key=fire_key, schedule_id=schedule_id,
                                           kind="reply" if reply else "post", **reply)
        if entry_id is None:
            return PostOutcome.skipped(target, fire_key)
        return await self.deliver(entry_id, target, text, reply_to=reply.get("reply_to_id"))

    async def deliver(self, entry_id: int, target: Target, text: str, *, reply_to: str | None = None) -> PostOutcome:
        """Send an entry already claimed as "sending" and record what happened. Error text (the network's words)
        is redacted before it is logged, stored or returned: no secret leaves in it."""
        try:
            remote_id = await target.send(text, reply_to=reply_to)
        except DeliveryUnknown as e:
            why = redact(str(e))
            await asyncio.to_thread(self.ledger.unknown, entry_id, why)
            log.error("post %s to %s: outcome unknown: %s", entry_id, target.name, why)
            return PostOutcome("unknown", target.name, text=text, entry_id=entry_id, error=why)
        except (TargetError, AuthError, ConfigError) as e:  # refused, or stopped before any request went out
            why = redact(str(e))
            await asyncio.to_thread(self.ledger.failed, entry_id, why)
            log.warning("post %s to %s failed: %s", entry_id, target.name, why)
            return PostOutcome("failed", target.name, text=text, entry_id=entry_id, error=why)
        except BaseException as e:
            # anything unexpected after the request may have gone out: never assume it did not
            # (synchronously: a cancelled task may not get to finish another await)
            self.ledger.unknown(entry_id, redact(f"interrupted while sending: {type(e).__name__}: {e}"))
            raise
        await asyncio.to_thread(self.ledger.sent, entry_id, remote_id)
        log.info("posted %s to %s as %s", entry_id, target.name, remote_id)
        return PostOutcome("sent", target.name, text=text, entry_id=entry_id, remote_id=remote_id)

    # -- drafts that need a human ------------------------------------------------------------------

    async def draft(self, model_id: str, target: Target, sink: ApprovalSink, channel_id: int, *,
                    fire_key: str | None = None, schedule_id: int | None = None, prompt: str = "") -> PostOutcome:
        """Compose a post (opener `prompt`, "" by default) and hand it to a human instead of sending it."""
        if fire_key and await asyncio.to_thread(self.ledger.by_fire_key, fire_key):
            return PostOutcome.skipped(target, fire_key)
        try:
            text = await self.compose(model_id, target, prompt=prompt)
        except PostRejected as e:
            return PostOutcome("rejected", target.name, error=str(e), refused=e.reasons)
        entry_id = await asyncio.to_thread(self.ledger.open, model_id=model_id, target=target.name, text=text,
                                           status="draft", fire_key=fire_key, schedule_id=schedule_id)
        if entry_id is None:
            return PostOutcome.skipped(target, fire_key)
        try:
            message_id = await sink.request(await asyncio.to_thread(self.ledger.get, entry_id), channel_id)
        except Exception as e:
            await asyncio.to_thread(self.ledger.failed, entry_id, f"could not show the draft for approval: {e}")
            return PostOutcome("failed", target.name, text=text, entry_id=entry_id, error=redact(str(e)))
        await asyncio.to_thread(self.ledger.set_draft_message, entry_id, channel_id, message_id)
        return PostOutcome("draft", target.name, text=text, entry_id=entry_id)

    async def approve(self, entry_id: int, target: Target, decided_by: str) -> PostOutcome:
        """Send an approved draft. The guards run again first (posts sent since the draft count for the repeat
        rule); only one approval of a draft ever sends it."""
        entry = await asyncio.to_thread(self.ledger.get, entry_id)
        if entry["status"] != "draft":
            raise UnknownOutgoing(f"outgoing post {entry_id} is {entry['status']}, not a draft awaiting approval")
        guards = await asyncio.to_thread(self.guards, entry["model_id"], exclude_entry=entry_id)
        if why := guards.reason(guards.body_of(entry["text"])):
            await asyncio.to_thread(self.ledger.reject_draft, entry_id, decided_by,
                                    f"refused on approval: {why}")
            return PostOutcome("rejected", entry["target"], text=entry["text"], entry_id=entry_id, error=why)
        if not await asyncio.to_thread(self.ledger.claim_draft, entry_id, decided_by, entry["text"]):
            raise UnknownOutgoing(f"outgoing post {entry_id} was decided already")
        return await self.deliver(entry_id, target, entry["text"])

    def reject(self, entry_id: int, decided_by: str) -> PostOutcome:
        entry = self.ledger.get(entry_id)
        if not self.ledger.reject_draft(entry_id, decided_by, f"rejected by {decided_by}"):
            raise UnknownOutgoing(f"outgoing post {entry_id} is {entry['status']}, not a draft awaiting approval")
        return PostOutcome("rejected", entry["target"], text=entry["text"], entry_id=entry_id,
                           error=f"rejected by {decided_by}")
