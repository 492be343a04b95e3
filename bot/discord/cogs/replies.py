"""Answers to @mentions: in a channel an admin enabled (`/config replies`), mentioning the bot with some
text gets a reply in the voice of the channel's model, or the server's default model. The model reads the
message (without the bot's mention) before it writes the answer, as X replies do (README, "Replies").

One answer per channel per `DiscordOptions.mention_per` seconds; messages of bots (this one included) are
never answered, so two bots cannot talk each other into a loop.
"""

from __future__ import annotations

import asyncio
import logging
import re

import discord
from discord.ext import commands

from .. import guild_config
from ..errors import explain
from ..formatting import clip, neutralise

log = logging.getLogger("bot.discord.replies")

MAX_PROMPT = 200


class Replies(commands.Cog):
    def __init__(self, bot):
        self.bot = bot
        self.cooldown = commands.CooldownMapping.from_cooldown(1, bot.options.mention_per, commands.BucketType.channel)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or self.bot.closing:
            return
        if self.bot.user is None or self.bot.user not in message.mentions:
            return
        if message.content.startswith(self.bot.options.prefix):
            return  # a command, handled by the command framework
        prompt = mention_prompt(message.content, self.bot.user.id)
        config = await asyncio.to_thread(guild_config.load, self.bot.mimic, message.guild.id)
        model = config.reply_model(message.channel.id)
        if model is None or not prompt:
            return
        if self.cooldown.get_bucket(message).update_rate_limit():
            return  # answered here a moment ago: stay quiet rather than flood the channel
        try:
            async with message.channel.typing():
                result = await self.bot.mimic.areply(model, prompt)
            text = result.texts[0] if result.texts else None
            if text:
                await message.reply(clip(neutralise(text), 2000), mention_author=False)
        except Exception as e:  # noqa: BLE001 - one error path, as for commands
            explanation = explain(e)
            log.log(explanation.level, "mention reply guild=%s channel=%s user=%s failed: %s", message.guild.id,
                    message.channel.id, message.author.id, e, exc_info=e if explanation.reference else None)
            if explanation.reply:
                await message.reply(explanation.reply, mention_author=False)


def mention_prompt(content: str, bot_id: int) -> str:
    """The message's text without the bot's mention, whitespace folded, at most MAX_PROMPT characters."""
    text = re.sub(rf"<@!?{bot_id}>", " ", content)
    return clip(" ".join(text.split()), MAX_PROMPT)


async def setup(bot) -> None:
    await bot.add_cog(Replies(bot))
