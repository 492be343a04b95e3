"""Discord channel targets. Two ways to reach the same channel:

- `DiscordChannelTarget`: inside the daemon, through the running client (`channel.send`), so dpytest and the
  gateway see the message like any other.
- `DiscordRestTarget`: from the CLI (`mimicbot post MODEL --to discord:ID`), where no gateway connection runs:
  discord.py's own `HTTPClient` logs in with DISCORD_TOKEN (REST only, no websocket) and calls
  `POST /channels/{id}/messages`. It reuses discord.py's rate-limit handling and error types, and needs
  nothing but the bot token.

Both send with `AllowedMentions.none()`: the bot never pings anyone (as markov-discord does), on top of the
guards making @handles inert.
"""

from __future__ import annotations

import asyncio

import aiohttp
import discord
from discord.http import HTTPClient, handle_message_parameters

from ..errors import ConfigError
from ..posting.base import DeliveryUnknown, TargetError

DISCORD_MAX_LENGTH = 2000


def channel_id_of(target_name: str) -> int:
    """`discord:123` → 123, or a ConfigError naming the expected form."""
    prefix, _, rest = target_name.partition(":")
    if prefix != "discord" or not rest.isdigit():
        raise ConfigError(f"not a Discord target: {target_name!r} (expected discord:CHANNEL_ID)")
    return int(rest)


class _DiscordTarget:
    max_length = DISCORD_MAX_LENGTH

    def __init__(self, channel_id: int):
        self.channel_id = channel_id
        self.name = f"discord:{channel_id}"

    def length(self, text: str) -> int:
        return len(text)

    async def send(self, text: str, *, reply_to: str | None = None) -> str:
        try:
            return await self._send(text)
        except discord.Forbidden as e:
            raise TargetError(f"the bot may not post in channel {self.channel_id}: {e.text or e}") from None
        except discord.NotFound:
            raise TargetError(f"no Discord channel {self.channel_id} that the bot can see") from None
        except discord.DiscordServerError:
            raise DeliveryUnknown(f"Discord had a server error posting to {self.channel_id}") from None
        except discord.HTTPException as e:
            raise TargetError(f"Discord refused the post to {self.channel_id}: {e.text or e}") from None
        except asyncio.TimeoutError:
            raise DeliveryUnknown(f"Discord did not answer in time posting to {self.channel_id}") from None
        except aiohttp.ClientConnectionError:
            raise TargetError(f"could not reach Discord to post to {self.channel_id}") from None

    async def _send(self, text: str) -> str:
        raise NotImplementedError


class DiscordChannelTarget(_DiscordTarget):
    """A channel reached through a running discord.py client."""

    def __init__(self, client: discord.Client, channel_id: int):
        super().__init__(channel_id)
        self.client = client

    async def _send(self, text: str) -> str:
        channel = self.client.get_channel(self.channel_id) or await self.client.fetch_channel(self.channel_id)
        message = await channel.send(text, allowed_mentions=discord.AllowedMentions.none())
        return str(message.id)


class DiscordRestTarget(_DiscordTarget):
    """A channel reached over REST with the bot token alone (for the CLI). One login per send."""

    def __init__(self, token: str | None, channel_id: int):
        super().__init__(channel_id)
        self._token = token

    async def _send(self, text: str) -> str:
        if not self._token:  # refused before any request: certainly not posted
            raise TargetError("no Discord token: set DISCORD_TOKEN in the environment or .env")
        http = HTTPClient(asyncio.get_running_loop())
        try:
            try:
                await http.static_login(self._token)
            except discord.LoginFailure:
                raise TargetError("Discord refused DISCORD_TOKEN") from None  # before the post was sent
            params = handle_message_parameters(content=text, allowed_mentions=discord.AllowedMentions.none())
            data = await http.send_message(self.channel_id, params=params)
            return str(data["id"])
        finally:
            await http.close()
