"""Generation: `generate` answers with posts drawn like posts (avatar, name, handle, text)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from ...errors import MimicbotError, ValidationError
from ...service import DEFAULT_PROMPT
from ..context import MimicContext
from ..converters import model_autocomplete
from ..formatting import clip, post_embed

MAX_PROMPT = 200


def _generate_cooldown(ctx: commands.Context) -> app_commands.Cooldown:
    return app_commands.Cooldown(ctx.bot.options.generate_rate, ctx.bot.options.generate_per)


class Generation(commands.Cog):
    def __init__(self, bot):
        self.bot = bot

    @commands.hybrid_command()
    @commands.dynamic_cooldown(_generate_cooldown, commands.BucketType.user)
    @app_commands.describe(model="The model's id (see /models)", prompt="How the posts start (default: My dream is)",
                           n="How many posts", temperature="Randomness, 0.1 (safe) to 2 (wild); default 1")
    @app_commands.autocomplete(model=model_autocomplete)
    async def generate(self, ctx: MimicContext, model: str, prompt: str = DEFAULT_PROMPT,
                       n: commands.Range[int, 1, 10] = None,  # not Optional[...]: a bad value is an error,
                       temperature: commands.Range[float, 0.1, 2.0] = None) -> None:  # not skipped
        """Write new posts in a model's voice. Works in DMs too.

        Example: `!generate ada_bytes "I think" 3 0.9`"""
        try:
            n, prompt = self._checked(ctx, n, prompt)
            info = await ctx.run(ctx.mimic.model, model)  # UnknownModel, before any work
        except MimicbotError:
            ctx.command.reset_cooldown(ctx)  # a refused request does not cost the person their turn
            raise
        async with ctx.typing():  # in a slash command this defers the answer (generation takes seconds)
            result = await ctx.mimic.agenerate(model, prompt=prompt, n=n, temperature=temperature)
        embeds = generation_embeds(info, result, prompt)
        if not embeds:
            raise MimicbotError(f"every sample repeated a training post or said nothing new "
                                f"({result.attempts} tried); try again or change the prompt")
        await ctx.send(embeds=embeds)


    @staticmethod
    def _checked(ctx: MimicContext, n: int | None, prompt: str) -> tuple[int, str]:
        n = n or ctx.options.generate_default_n
        if n > ctx.options.generate_max_n:
            raise ValidationError(f"at most {ctx.options.generate_max_n} posts at a time")
        prompt = " ".join(prompt.split())
        if not prompt or len(prompt) > MAX_PROMPT:
            raise ValidationError(f"the prompt must be 1 to {MAX_PROMPT} characters")
        return n, prompt


def generation_embeds(model: dict, result, prompt: str) -> list[discord.Embed]:
    info = {"model_id": model.get("id"), **(model.get("training") or {})}
    settings = getattr(result, "settings", {}) or {}
    temp = settings.get("temperature")
    footer = f"🤖 {model.get('id')} · prompt “{clip(prompt, 60)}”"
    if temp:
        footer += f" · temperature {temp:g}"
    return [post_embed(text, info, footer=footer) for text in result.texts[:10] if text.strip()]


async def setup(bot) -> None:
    await bot.add_cog(Generation(bot))

