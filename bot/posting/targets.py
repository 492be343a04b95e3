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
from ..errors import ValidationError
from .base import Target


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


def build_target(name: str, settings: Settings, *, discord_client=None, content_warning: str | None = None) -> Target:
    """A Target for `name`. Discord goes through `discord_client` when given (the daemon), else REST (the CLI).
    `content_warning`: for Mastodon only (its `spoiler_text`); a ValidationError for any other target."""
    name = validate_target_name(name)
    network = name.partition(":")[0]
    if content_warning is not None:
        if network != "mastodon":
            raise ValidationError(f"a content warning (--cw) is for Mastodon only, not {name}")
        from .mastodon import MastodonTarget

        return MastodonTarget(settings, content_warning=content_warning)
    return BUILDERS[network](name, settings, discord_client)


def _x(name: str, settings: Settings, _client) -> Target:
    from .x import XTarget

    return XTarget(settings)


def _discord(name: str, settings: Settings, client) -> Target:
    from ..discord.target import DiscordChannelTarget, DiscordRestTarget, channel_id_of

    channel_id = channel_id_of(name)
    if client is not None:
        return DiscordChannelTarget(client, channel_id)
    return DiscordRestTarget(settings.secret("discord_token"), channel_id)


def _bsky(name: str, settings: Settings, _client) -> Target:
    from .bluesky import BlueskyTarget

    return BlueskyTarget(settings)


def _mastodon(name: str, settings: Settings, _client) -> Target:
    from .mastodon import MastodonTarget

    return MastodonTarget(settings)


BUILDERS: dict[str, Callable[[str, Settings, object], Target]] = {
    "x": _x, "discord": _discord, "bsky": _bsky, "mastodon": _mastodon,
}
