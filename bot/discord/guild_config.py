"""Per-server settings as data (Red's way): names, types and defaults registered in one place, values stored
in SQLite through the service (`Mimicbot.guild_settings` / `set_guild_setting`), one row a setting.

A setting never stored has its default here, so a default can change without touching any database.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..errors import ValidationError
from ..service import Mimicbot


@dataclass
class GuildConfig:
    # roles whose members may start trainings; empty: members with the Manage Server permission
    train_role_ids: list[int] = field(default_factory=list)
    # the model that answers @mentions when the channel names none (and the default of /generate)
    default_model: str | None = None
    # channels where the bot answers @mentions: channel id (as text, a JSON key) → model id, or None for
    # the server's default model
    reply_channels: dict[str, str | None] = field(default_factory=dict)
    # handle → Discord user id: who counts as that account's person ("themselves" for /forget)
    linked_handles: dict[str, int] = field(default_factory=dict)
    # trainings this server may have queued or running at once; None: the bot-wide option
    max_queued: int | None = None
    # text channels whose messages (and their threads') are learned from members who opted in (`/config learn`)
    learn_channels: list[int] = field(default_factory=list)

    @classmethod
    def keys(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    def as_dict(self) -> dict:
        return asdict(self)

    def reply_model(self, channel_id: int) -> str | None:
        """The model that answers mentions in this channel; None when the channel is not enabled or no
        model is set for it or for the server."""
        key = str(channel_id)
        if key not in self.reply_channels:
            return None
        return self.reply_channels[key] or self.default_model


def load(mimic: Mimicbot, guild_id: int) -> GuildConfig:
    stored = mimic.guild_settings(guild_id)
    return GuildConfig(**{k: v for k, v in stored.items() if k in GuildConfig.keys()})


def save(mimic: Mimicbot, guild_id: int, key: str, value) -> None:
    """Store one setting; the value equal to its default is stored as absent."""
    if key not in GuildConfig.keys():
        raise ValidationError(f"no server setting {key!r}; settings: {', '.join(sorted(GuildConfig.keys()))}")
    default = getattr(GuildConfig(), key)
    mimic.set_guild_setting(guild_id, key, None if value == default else value)
