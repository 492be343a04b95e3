"""Models: `models` (a paginated list), `model` (the card's summary) and `forget` (an account's data)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from .. import checks
from ..context import MimicContext
from ..converters import model_autocomplete, parse_handle
from ..errors import NotAllowed
from ..formatting import BOT_COLOUR, model_embed, neutralise
from ..views import Pages

PER_PAGE = 10


class Models(commands.Cog):
    def __init__(self, bot):
        self.bot = bot

    @commands.hybrid_command()
    @commands.guild_only()
    @app_commands.describe(page="Which page to open first")
    async def models(self, ctx: MimicContext, page: commands.Range[int, 1, 1000] = 1) -> None:
        """The trained models, ten a page.

        Example: `!models` or `!models 2`"""
        rows = await ctx.run(ctx.mimic.models)
        if not rows:
            await ctx.send("No model is trained yet. Start one with `/train`.")
            return
        await Pages(model_pages(rows), ctx.author.id).start(ctx, page)

    @commands.hybrid_command(name="model")
    @commands.guild_only()
    @app_commands.describe(model="The model's id (see /models)")
    @app_commands.autocomplete(model=model_autocomplete)
    async def model_card(self, ctx: MimicContext, model: str) -> None:
        """A model's card: its data, held-out perplexity and sample predictions.

        Example: `!model ada_bytes`"""
        info = await ctx.run(ctx.mimic.model, model)
        embed, file = card_embed(info)
        await ctx.send(embed=embed, **({"file": file} if file else {}))

    @commands.hybrid_command()
    @commands.guild_only()
    @app_commands.describe(handle="The account whose posts and models are deleted")
    async def forget(self, ctx: MimicContext, handle: str) -> None:
        """Delete an account's stored posts and every model trained on them (admins, or the linked person).

        Example: `!forget ada_bytes`"""
        handle = parse_handle(handle)
        if not await checks.is_admin_or_linked(ctx, handle):
            raise NotAllowed(f"Only an admin, or the member linked to @{handle} "
                             "(`/config link`), can make me forget it.")
        preview = await ctx.run(ctx.mimic.forget, handle, dry_run=True)
        if not await ctx.confirm(forget_summary(preview, question=True)):
            await ctx.send("Nothing was deleted.")
            return
        report = await ctx.run(ctx.mimic.forget, handle)
        await ctx.send(forget_summary(report))


def model_pages(rows: list[dict]) -> list[discord.Embed]:
    pages = []
    total = (len(rows) + PER_PAGE - 1) // PER_PAGE
    for start in range(0, len(rows), PER_PAGE):
        lines = []
        for m in rows[start:start + PER_PAGE]:
            handles = ", ".join(f"@{h}" for h in m.get("accounts") or [])
            ppl = f" · perplexity {m['perplexity_after']:,.1f}" if m.get("perplexity_after") is not None else ""
            lines.append(f"**`{m['id']}`** — {m.get('display_name') or m['id']} ({handles}){ppl}")
        embed = discord.Embed(title=f"Models ({len(rows)})", colour=BOT_COLOUR,
                              description=neutralise("\n".join(lines)))
        embed.set_footer(text=f"Page {start // PER_PAGE + 1}/{total} · /model <id> for a model's card")
        pages.append(embed)
    return pages


def card_embed(model: dict) -> tuple[discord.Embed, discord.File | None]:
    training = model.get("training") or {}
    hp = training.get("hyperparameters") or {}
    facts = [f"`/generate model:{model['id']}`"]
    if training.get("base_model"):
        facts.append(f"base model **{neutralise(str(training['base_model']))}**")
    if hp.get("epochs"):
        facts.append(f"{hp['epochs']} epochs")
    if training.get("steps"):
        facts.append(f"{training['steps']:,} steps")
    if model.get("created_at"):
        facts.append(f"trained {str(model['created_at'])[:10]}")
    return model_embed(model, description=" · ".join(facts))


def forget_summary(report: dict, question: bool = False) -> str:
    models = ", ".join(f"`{m}`" for m in report["models"]) or "none"
    what = (f"@{report['handle']}: {report['posts']:,} stored posts from {report['accounts']} account(s), "
            f"models {models}")
    text = f"Delete {what}? This cannot be undone." if question else f"🗑️ Deleted {what}."
    if not question and report.get("cancelled_jobs"):
        text += f" Cancelled training jobs {', '.join(f'#{j}' for j in report['cancelled_jobs'])}."
    return neutralise(text)


async def setup(bot) -> None:
    await bot.add_cog(Models(bot))
