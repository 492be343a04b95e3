"""The Discord face of mimicbot: a discord.py bot over `bot.service.Mimicbot`, attached to the daemon's app
(bot/app.py) when DISCORD_TOKEN is set.

    bot/discord/bot.py        the Bot subclass: cogs, the one error handler
    bot/discord/cogs/*.py     one cog a feature (training, generation, models, admin, replies, meta)
    bot/discord/face.py       the face the app attaches (log in, connect, close) and `mimicbot discord sync`
    bot/discord/progress.py   training status messages that survive restarts
    bot/discord/options.py    behaviour knobs (MIMICBOT_DISCORD_*); secrets stay in bot.config.Settings

Imports inside this package are absolute, so `import discord` is discord.py, never this package.
"""

from discord.voice_client import VoiceClient

# The bot never joins a voice channel: discord.py's warnings that PyNaCl and davey (voice libraries) are not
# installed would only be noise on every start.
VoiceClient.warn_nacl = False
VoiceClient.warn_dave = False
