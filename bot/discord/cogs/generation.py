"""Generation: `generate` answers with posts drawn like posts (avatar, name, handle, text)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from ...errors import MimicbotError, UnknownModel, ValidationError
from ...service import DEFAULT_PROMPT, check_prompt
from ..context import MimicContext
from ..converters import mentioned_member, model_autocomplete
from ..formatting import clip, post_embed

MAX_PROMPT = 200  # characters: a post's opening words, not a letter
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.1, 2.0


def _generate_cooldown(ctx: commands.Context) -> app_commands.Cooldown:
    return app_commands.Cooldown(ctx.bot.options.generate_rate, ctx.bot.options.generate_per)


class Generation(commands.Cog):
    def __init__(self, bot):
        self.bot = bot

    @commands.hybrid_command()
    @commands.dynamic_cooldown(_generate_cooldown, commands.BucketType.user)
    @app_commands.describe(model="The model's id (see /models), or a member's @mention for their model", prompt="How the posts start (default: My dream is)",
                           n="How many posts", temperature="Randomness, 0.1 (safe) to 2 (wild); default 1")
    @app_commands.autocomplete(model=model_autocomplete)
    async def generate(self, ctx: MimicContext, model: str, prompt: str = DEFAULT_PROMPT,
                       n: commands.Range[int, 1, 10] = None,  # not Optional[...]: a bad value is an error,
                       temperature: commands.Range[float, MIN_TEMPERATURE, MAX_TEMPERATURE] = None,  # not skipped
                       ) -> None:
        """Write new posts in a model's voice. Works in DMs too.

        Example: `!generate ada_bytes "I think" 3 0.9`"""
        try:
            n, prompt = self._checked(ctx, n, prompt, temperature)
            member = mentioned_member(model) if isinstance(model, str) else None
            if member is not None:  # model:@member — that member's model in this server
                if ctx.guild is None:
                    raise ValidationError("a member's model is named by their mention in their server, not here")
                model = await ctx.run(ctx.mimic.member_model_id, ctx.guild.id, member)
            info = await ctx.run(ctx.mimic.model, model)  # UnknownModel, before any work
            servers = await ctx.run(ctx.mimic.model_servers, model)
            if servers and (ctx.guild is None or ctx.guild.id not in servers):  # a member's voice stays in their server
                raise UnknownModel(f"no model {model!r} here")
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
    def _checked(ctx: MimicContext, n: int | None, prompt: str, temperature: float | None) -> tuple[int, str]:
        """Every value again, as Discord's client would have: a raw interaction carries whatever JSON can (the
        options' min and max are the client's), and a prefix command's Range lets `nan` through."""
        most = ctx.options.generate_max_n
        n = ctx.options.generate_default_n if n is None else n
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValidationError(f"ask for 1 to {most} posts")
        if n > most:
            raise ValidationError(f"at most {most} posts at a time")
        if temperature is not None and not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
                                            and MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE):
            raise ValidationError(f"the temperature must be between {MIN_TEMPERATURE:g} and {MAX_TEMPERATURE:g}")
        return n, check_prompt(prompt, MAX_PROMPT)  # the service's rule (the CLI's too), with Discord's length


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

