"""Target names and how each is built. A new network adds one entry to `NETWORKS` (and a Target class).

Names: `x`, `discord:<channel id>`, `bsky`, `mastodon`. The daemon builds Discord targets on its running client; the CLI over REST
with the bot token. Their code lives with the Discord face (bot/discord/target.py), imported only when a Discord target
is built: the core runs without discord.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Settings
from ..errors import AuthError, ValidationError
from .base import Target, TargetError


@dataclass(frozen=True)
class Network:
    pattern: str  # full-match regex of the target names it accepts
    example: str


NETWORKS: dict[str, Network] = {
    "x": Network(r"x", "x"),
    "discord": Network(r"discord:\d{15,21}", "discord:123456789012345678"),
    "bsky": Network(r"bsky", "bsky"),
    "mastodon": Network(r"mastodon", "mastodon"),
}


def validate_target_name(name: str) -> str:
    """The normalised target name, or a ValidationError listing the accepted forms."""
    clean = name.strip().lower()
    network = NETWORKS.get(clean.partition(":")[0])
    if network is None or not re.fullmatch(network.pattern, clean):
        forms = ", ".join(n.example for n in NETWORKS.values())
        raise ValidationError(f"bad target {name!r}: use one of {forms}")
    return clean


def build_target(name: str, settings: Settings, *, discord_client=None, content_warning: str | None = None,
                 dry_run: bool = False) -> Target:
    """A Target for `name`. Discord goes through `discord_client` when given (the daemon), else REST (the CLI).

    A target whose credentials are missing is refused here (AuthError), before anything is generated or recorded.
    `content_warning`: for Mastodon only (its `spoiler_text`); a ValidationError for any other target.
    `dry_run`: a target that only measures (its network's length rule) and never sends, so it needs no
    credentials."""
    name = validate_target_name(name)
    network = name.partition(":")[0]
    if content_warning is not None and network != "mastodon":
        raise ValidationError(f"a content warning (--cw) is for Mastodon only, not {name}")
    if dry_run:
        return DryRunTarget(name, *LENGTH_RULES[network]())
    if content_warning is not None:
        from .mastodon import MastodonTarget

        return MastodonTarget(settings, content_warning=content_warning)
    return BUILDERS[network](name, settings, discord_client)


@dataclass(frozen=True)
class DryRunTarget:
    """A target for a dry run: the network's name and length rule, no credentials; sending is refused."""

    name: str
    max_length: int
    measure: Callable[[str], int]

    def length(self, text: str) -> int:
        return self.measure(text)

    async def send(self, text: str, *, reply_to: str | None = None) -> str:
        raise TargetError(f"a dry run sends nothing (to {self.name})")


def _x(name: str, settings: Settings, _client) -> Target:
    from .x import XTarget

    if missing := settings.missing_credentials("x"):
        raise AuthError(f"no X account to post as: set {', '.join(missing)} (the bot account's OAuth 1.0a user "
                        "tokens) in the environment or .env")
    return XTarget(settings)


def _discord(name: str, settings: Settings, client) -> Target:
    from ..discord.target import DiscordChannelTarget, DiscordRestTarget, channel_id_of

    channel_id = channel_id_of(name)
    if client is not None:
        return DiscordChannelTarget(client, channel_id)
    token = settings.secret("discord_token")
    if not token:
        raise AuthError(f"cannot post to {name}: no Discord token; set DISCORD_TOKEN in the environment or .env")
    return DiscordRestTarget(token, channel_id)


def _bsky(name: str, settings: Settings, _client) -> Target:
    from .bluesky import BlueskyTarget

    return BlueskyTarget(settings)


def _mastodon(name: str, settings: Settings, _client) -> Target:
    from .mastodon import MastodonTarget

    return MastodonTarget(settings)


BUILDERS: dict[str, Callable[[str, Settings, object], Target]] = {
    "x": _x, "discord": _discord, "bsky": _bsky, "mastodon": _mastodon,
}


def _x_length() -> tuple[int, Callable[[str], int]]:
    from .text import X_MAX_LENGTH, x_length

    return X_MAX_LENGTH, x_length


def _discord_length() -> tuple[int, Callable[[str], int]]:
    from ..discord.target import DISCORD_MAX_LENGTH

    return DISCORD_MAX_LENGTH, len


def _bsky_length() -> tuple[int, Callable[[str], int]]:
    from .bluesky import BLUESKY_MAX_LENGTH, bluesky_length

    return BLUESKY_MAX_LENGTH, bluesky_length


def _mastodon_length() -> tuple[int, Callable[[str], int]]:
    from .mastodon import MASTODON_MAX_LENGTH, mastodon_length

    return MASTODON_MAX_LENGTH, mastodon_length


# each network's (max_length, length function), as its Target measures: what a dry run fits a post to
LENGTH_RULES: dict[str, Callable[[], tuple[int, Callable[[str], int]]]] = {
    "x": _x_length, "discord": _discord_length, "bsky": _bsky_length, "mastodon": _mastodon_length,
}
