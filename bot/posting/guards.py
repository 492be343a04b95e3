"""The guards every post passes before anything is sent, in this order:

1. not empty;
2. no blocklisted word or phrase (MIMICBOT_BLOCKLIST, whole words, any case);
3. not a copy of a training post (the generation rule, `bot.generation.anticopy`);
4. not a repeat of one of the last MIMICBOT_REPEAT_WINDOW posts (the same rule, against our own posts, so a
   near-repeat with one word changed is refused too);
5. @handles made inert (autonomous posts never ping a real account);
6. the disclosure (MIMICBOT_DISCLOSURE, default " 🤖") appended, and the whole fitted to the target's limit
   in the target's own unit without cutting a word.

About disclosure on X: besides the suffix, X lets an automated account carry an "Automated by @owner" label.
Set it on the bot's account under Settings → Your account → Account information → Automation, naming the
human account that runs it. Do both: the label shows on the profile, the suffix on every post.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Settings
from ..generation.anticopy import build_index
from .base import PostRejected, Target
from .text import ZERO_WIDTH_SPACE, fit, neutralise_mentions, squeeze

CopyCheck = Callable[[str], "str | None"]


def split_list(value: str) -> tuple[str, ...]:
    """A comma-separated setting as a tuple of stripped, non-empty items."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class GuardConfig:
    disclosure: str = " 🤖"
    blocklist: tuple[str, ...] = ()
    repeat_window: int = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> GuardConfig:
        return cls(
            disclosure=settings.mimicbot_disclosure,
            blocklist=split_list(settings.mimicbot_blocklist),
            repeat_window=settings.mimicbot_repeat_window,
        )

    def blocklist_pattern(self) -> re.Pattern | None:
        if not self.blocklist:
            return None
        phrases = (r"\s+".join(map(re.escape, phrase.split())) for phrase in self.blocklist)
        return re.compile(r"(?<!\w)(?:" + "|".join(phrases) + r")(?!\w)", re.IGNORECASE)


class Guards:
    """Turns a candidate text into the exact text to send, or raises PostRejected saying why not."""

    def __init__(self, config: GuardConfig, *, copy_check: CopyCheck | None = None, recent: list[str] = ()):
        self.config = config
        self.copy_check = copy_check
        self._blocked = config.blocklist_pattern()
        self._recent = build_index([self.body_of(t) for t in recent]) if recent else None

    def body_of(self, sent: str) -> str:
        """A sent text without what the guards added (disclosure, zero-width spaces), for the repeat rule."""
        if self.config.disclosure:
            sent = sent.removesuffix(self.config.disclosure)
        return sent.replace(ZERO_WIDTH_SPACE, "")

    def reason(self, text: str) -> str | None:
        """Why `text` may not be posted (rules 1-4), or None."""
        body = squeeze(text)
        if not body:
            return "empty"
        if self._blocked is not None and (hit := self._blocked.search(body)):
            return f"contains the blocklisted {hit.group(0)!r}"
        if self.copy_check is not None and (why := self.copy_check(body)):
            return f"copies a training post: {why}"
        if self._recent is not None and (why := self._recent.check(body)):
            why = why.replace("a training post", "a recent post")
            return f"repeats one of the last {self.config.repeat_window} posts: {why}"
        return None

    def prepare(self, text: str, target: Target) -> str:
        """The text to send to `target`: checked, mentions made inert, disclosure added, fitted to the limit."""
        if why := self.reason(text):
            raise PostRejected(f"refused: {why}")
        body = neutralise_mentions(squeeze(text))
        return fit(body, target.max_length, target.length, suffix=self.config.disclosure)

    def first_acceptable(self, candidates: list[str], target: Target) -> tuple[str, str]:
        """(candidate, prepared text) for the first candidate every guard accepts; PostRejected with each reason
        when none does."""
        reasons = []
        for candidate in candidates:
            try:
                return candidate, self.prepare(candidate, target)
            except PostRejected as e:
                reasons.append(str(e))
        summary = "; ".join(sorted(set(reasons))) or "no candidates"
        raise PostRejected(f"no candidate passed the guards ({len(candidates)} tried: {summary})", reasons)
